-- Soft state and failures: node-loss policy per slice, lease warnings, drain deadlines.
ALTER TABLE slices ADD COLUMN node_loss TEXT NOT NULL DEFAULT 'keep';
ALTER TABLE slices ADD COLUMN replace_after_ms BIGINT NOT NULL DEFAULT 300000;
ALTER TABLE slices ADD COLUMN lease_warned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN drain_deadline BIGINT;
