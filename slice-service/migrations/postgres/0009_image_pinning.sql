-- Digest-pinned slices (issue 13). Keep in step with ../sqlite/0009_image_pinning.sql.
--
-- The digest a slice's image tag resolved to in the image store when it was created: every
-- sliver runs exactly that image. Empty for slices created before pinning, which keep
-- running whatever their image names on each node.
ALTER TABLE slices ADD COLUMN image_digest TEXT NOT NULL DEFAULT '';
