-- Placement commits with conditions the database checks (issue 11). Keep in step with
-- ../postgres/0006_node_usage.sql.
--
-- What the slivers not yet deleted hold on each node, kept with every placement and every
-- deletion in the same transaction: a placement adds to these counters only where the result
-- stays within the node's capacity, so no second writer can ever overcommit a node.
ALTER TABLE nodes ADD COLUMN cpu_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN memory_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN disk_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN slivers_held BIGINT NOT NULL DEFAULT 0;
UPDATE nodes SET
    cpu_used = COALESCE((SELECT SUM(cpu_millis) FROM slivers v WHERE v.node = nodes.name AND v.state <> 'deleted'), 0),
    memory_used = COALESCE((SELECT SUM(memory_bytes) FROM slivers v WHERE v.node = nodes.name AND v.state <> 'deleted'), 0),
    disk_used = COALESCE((SELECT SUM(disk_bytes) FROM slivers v WHERE v.node = nodes.name AND v.state <> 'deleted'), 0),
    slivers_held = (SELECT COUNT(*) FROM slivers v WHERE v.node = nodes.name AND v.state <> 'deleted');

-- Host ports held by slivers not yet deleted: the primary key makes a port taken twice on one
-- node a conflict the database refuses.
CREATE TABLE node_ports (
    node TEXT NOT NULL,
    port BIGINT NOT NULL,
    sliver_id TEXT NOT NULL,
    PRIMARY KEY (node, port)
);
CREATE INDEX node_ports_sliver ON node_ports(sliver_id);
INSERT OR IGNORE INTO node_ports (node, port, sliver_id)
    SELECT v.node, json_extract(p.value, '$.host_port'), v.id
    FROM slivers v, json_each(v.ports) p
    WHERE v.state <> 'deleted';
