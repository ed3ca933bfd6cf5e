-- Slicebed schema v1 (SQLite). Times are epoch milliseconds; booleans are 0/1 integers;
-- lists and maps are JSON text. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE sites (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    enabled BIGINT NOT NULL,
    max_slices BIGINT NOT NULL,
    max_slivers BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    site TEXT REFERENCES sites(name),
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX tokens_subject ON tokens(kind, subject);

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites(name),
    address TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL,
    port_first BIGINT NOT NULL,
    port_last BIGINT NOT NULL,
    labels TEXT NOT NULL,
    admin_state TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    last_heartbeat BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE slices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    description TEXT NOT NULL,
    site TEXT NOT NULL,
    image TEXT NOT NULL,
    command TEXT NOT NULL,
    env TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL,
    ports TEXT NOT NULL,
    placement TEXT NOT NULL,
    restart_policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    life TEXT NOT NULL,
    ended_at BIGINT
);
-- A name is unique among live slices; deleted ones keep their history under their id.
CREATE UNIQUE INDEX slices_live_name ON slices(name) WHERE life = 'live';
CREATE INDEX slices_lease ON slices(life, lease_expires_at);

CREATE TABLE slice_members (
    slice_id TEXT NOT NULL REFERENCES slices(id),
    user_name TEXT NOT NULL,
    PRIMARY KEY (slice_id, user_name)
);

CREATE TABLE slivers (
    id TEXT PRIMARY KEY,
    slice_id TEXT NOT NULL REFERENCES slices(id),
    idx BIGINT NOT NULL,
    node TEXT NOT NULL,
    site TEXT NOT NULL,
    state TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL,
    ports TEXT NOT NULL,
    last_error TEXT NOT NULL,
    exit_code BIGINT,
    generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX slivers_slice ON slivers(slice_id);
CREATE INDEX slivers_node ON slivers(node, state);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    object TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    -- Name of the slice an event concerns (its own or its slivers'), '' otherwise.
    slice TEXT NOT NULL
);
CREATE INDEX events_object ON events(object, id);
CREATE INDEX events_slice ON events(slice, id);
