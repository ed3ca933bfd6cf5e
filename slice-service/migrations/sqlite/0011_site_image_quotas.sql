-- Per-site image storage quotas and upload reservations (issue 13). Keep in step with
-- ../postgres/0010_site_image_quotas.sql.
--
-- An admin's override of the service-wide images.site_quota for one site, in bytes
-- (0 = no quota). No row: the default applies.
CREATE TABLE site_image_quotas (
    site TEXT PRIMARY KEY REFERENCES sites(name) ON DELETE CASCADE,
    quota BIGINT NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL
);

-- Uploads in progress reserve their declared size against their site's quota, so parallel
-- pushes cannot together overshoot it. A reservation ends when an image using the blob is
-- committed by that user (the bytes then count as the site's), or when the sweep finds the
-- upload abandoned (no writer, no partial file, older than images.gc_grace).
CREATE TABLE upload_reservations (
    user_name TEXT NOT NULL,
    digest TEXT NOT NULL,
    site TEXT NOT NULL,
    size BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, digest)
);
CREATE INDEX upload_reservations_site ON upload_reservations(site);
