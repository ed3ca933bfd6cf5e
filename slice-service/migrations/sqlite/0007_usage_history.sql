-- Usage history of slivers and nodes (issue 15). Keep in step with
-- ../postgres/0007_usage_history.sql.
--
-- One row per 5-minute bucket of one sliver (kind 'sliver', subject its id) or one node's
-- slivers together (kind 'node', subject the node's name): the mean and the peak of each
-- figure. Written in batches when buckets close, never per heartbeat; rows older than two days
-- and rows of ended slices are deleted by the service's sweep.
CREATE TABLE usage_buckets (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    slice_id TEXT NOT NULL,
    node TEXT NOT NULL,
    samples BIGINT NOT NULL,
    cpu_mean BIGINT NOT NULL,
    cpu_peak BIGINT NOT NULL,
    memory_mean BIGINT NOT NULL,
    memory_peak BIGINT NOT NULL,
    disk_mean BIGINT NOT NULL,
    disk_peak BIGINT NOT NULL,
    rx_mean BIGINT NOT NULL,
    rx_peak BIGINT NOT NULL,
    tx_mean BIGINT NOT NULL,
    tx_peak BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, start_at)
);
CREATE INDEX usage_buckets_start ON usage_buckets(start_at);
CREATE INDEX usage_buckets_slice ON usage_buckets(slice_id);
