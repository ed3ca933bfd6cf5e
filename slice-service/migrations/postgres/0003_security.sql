-- Security (issue 10). Keep in step with ../sqlite/0003_security.sql.
--
-- Events carry the id of the slice they concern: a slice name is reused once the slice ends,
-- so a lookup by name would show the previous owner's history to the next owner of the name.
ALTER TABLE events ADD COLUMN slice_id TEXT NOT NULL DEFAULT '';
-- Backfill: a sliver's events belong to that sliver's slice, exactly.
UPDATE events SET slice_id = COALESCE(
    (SELECT v.slice_id FROM slivers v WHERE 'sliver/' || v.id = events.object), '')
WHERE slice <> '' AND object LIKE 'sliver/%';
-- The slice's own events belong to the slice of that name placed last before them: names are
-- unique among live slices, and a slice's own events happen only while it is live (what follows
-- its end are its slivers' events, mapped exactly above). Ordered by event id, not by time, so
-- clocks do not matter.
UPDATE events SET slice_id = COALESCE(
    (SELECT f.slice_id FROM events f
     WHERE f.slice = events.slice AND f.slice_id <> '' AND f.action = 'placed'
       AND f.object LIKE 'sliver/%' AND f.id < events.id
     ORDER BY f.id DESC LIMIT 1), '')
WHERE slice <> '' AND slice_id = '';
-- Rows that match no slice keep '' and are then visible to admins only.
CREATE INDEX events_slice_id ON events(slice_id, id);

-- Tokens minted with another token remember it, so they cannot outlive it and its revocation
-- reaches them. NULL: created with a user, at bootstrap, or before this migration.
ALTER TABLE tokens ADD COLUMN parent_id TEXT;
CREATE INDEX tokens_parent ON tokens(parent_id);
