-- Cluster agents (issue 12): one agent speaks for every node of a Kubernetes cluster.
-- Keep in step with ../sqlite/0010_clusters.sql.
--
-- A cluster enrolled into a site. Its agent holds a cluster certificate (below) and speaks
-- for the member nodes it creates, each recorded with its cluster in nodes.cluster.
CREATE TABLE clusters (
    name TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites(name),
    port_first BIGINT NOT NULL,
    port_last BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Every certificate issued to a cluster agent, by serial (hex). Apart from node_certs, so a
-- node's serial can never be taken for a cluster's or the reverse.
CREATE TABLE cluster_certs (
    serial TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX cluster_certs_cluster ON cluster_certs(cluster);

-- The cluster a node is a member of; NULL for a node with its own node manager.
ALTER TABLE nodes ADD COLUMN cluster TEXT;
CREATE INDEX nodes_cluster ON nodes(cluster);
