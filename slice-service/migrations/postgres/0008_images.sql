-- The image store (issue 13). Keep in step with ../sqlite/0008_images.sql.
--
-- Blobs (manifests, configs, layers) live as files under <data-dir>/blobs/sha256/<hex>; a
-- row here says the file is complete and verified. A blob is stored once, whatever the number
-- of images that use it. touched_at marks push activity (BlobStatus said present, PushBlob
-- completed): garbage collection keeps an unreferenced blob touched within the grace period,
-- because an unfinished push may be about to commit it; committing an image clears it.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    touched_at BIGINT NOT NULL
);

-- Users who proved they hold a blob's bytes by uploading them: only they (and readers of an
-- image using it) may reference it in a manifest, so a known digest alone opens nothing.
CREATE TABLE blob_holders (
    digest TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    PRIMARY KEY (digest, user_name)
);

-- A repository: owner, the owner's site ('' for system images), and who may read its images
-- ('private', 'site' or 'public').
CREATE TABLE image_repos (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    site TEXT NOT NULL,
    visibility TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX image_repos_owner ON image_repos(owner);

-- One manifest of a repository. size = manifest + config + layers; layers as JSON
-- [[digest, size], ...] in order.
CREATE TABLE image_manifests (
    name TEXT NOT NULL REFERENCES image_repos(name),
    digest TEXT NOT NULL,
    config_digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    layers TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, digest)
);
CREATE INDEX image_manifests_digest ON image_manifests(digest);

-- Every blob a manifest needs (the manifest itself, its config, its layers): what garbage
-- collection, quotas and node fetch authorization read.
CREATE TABLE image_blobs (
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    blob TEXT NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (name, manifest, blob)
);
CREATE INDEX image_blobs_blob ON image_blobs(blob);

CREATE TABLE image_tags (
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (name, tag)
);
CREATE INDEX image_tags_digest ON image_tags(name, digest);
