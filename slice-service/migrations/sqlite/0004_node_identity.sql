-- Node identity by mutual TLS (issue 10). Keep in step with ../postgres/0004_node_identity.sql.
--
-- Every client certificate issued to a node, by serial (hex): the node API accepts a peer
-- certificate only if its serial is here, names the same node, and is not revoked.
CREATE TABLE node_certs (
    serial TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX node_certs_node ON node_certs(node);

-- What a node enrolled with, which bounds what it may claim later (capacity above it is
-- capped), and whether an admin revoked its identity (it must then enroll again).
CREATE TABLE node_identity (
    node TEXT PRIMARY KEY,
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL,
    revoked_at BIGINT
);
-- Nodes enrolled before this migration hold only a bearer credential, which is no longer
-- accepted: they have no certificate, so they may enroll again under the same name.
INSERT INTO node_identity (node, cpu_millis, memory_bytes, disk_bytes, revoked_at)
    SELECT name, cpu_millis, memory_bytes, disk_bytes, NULL FROM nodes;
