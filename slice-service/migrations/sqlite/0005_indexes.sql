-- Indexes for the hot paths (issue 11). Keep in step with ../postgres/0005_indexes.sql.
-- Every query they serve is checked in slice-service/src/store/plans.rs, on both databases:
-- no full scan of slices, slivers, events, tokens or slice_members.

-- GetSlice by name, in any state (a name's whole history, not every slice ever created), and
-- the admin's ListSlices in name order with keyset paging (name, created_at, id).
CREATE INDEX slices_name ON slices(name, created_at, id);
-- The admin's ListSlices of live slices, in the same order, reading no ended slice.
CREATE INDEX slices_live_key ON slices(name, created_at, id) WHERE life = 'live';
-- ListSlices of a user: the slices they own ...
CREATE INDEX slices_owner ON slices(owner, life, id);
-- ... and those they are a member of.
CREATE INDEX slice_members_user ON slice_members(user_name, slice_id);
-- A site's slices: a PI's ListSlices, the site filter, quota counts and site references.
CREATE INDEX slices_site ON slices(site, life, name, created_at, id);
-- Reaping and lease warnings: live slices by lease end. Partial, so ended slices (most rows,
-- in time) cost nothing; it replaces slices_lease(life, lease_expires_at).
CREATE INDEX slices_live_lease ON slices(lease_expires_at) WHERE life = 'live';
DROP INDEX slices_lease;
-- A user's own events (ListEvents and WatchEvents without an object).
CREATE INDEX events_actor ON events(actor, id);
-- Events are read by slice id (events_slice_id), never by the reused name: events_slice only
-- cost every append.
DROP INDEX events_slice;
