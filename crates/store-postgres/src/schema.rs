//! Versioned migrations. Text columns compare bytewise (`COLLATE "C"`), as SQLite's do,
//! so lists sort the same on every adapter.

/// Applied in order, each once; index + 1 is the version recorded after it.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE entities (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest BYTEA NOT NULL,
    spec BYTEA NOT NULL,
    closure BYTEA NOT NULL,
    state BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (kind, project, domain, name, version)
);
CREATE INDEX entities_by_name ON entities (kind, project, domain, name, created_at);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    labels BYTEA NOT NULL,
    state BIGINT NOT NULL
);
CREATE TABLE named_entities (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    state BIGINT NOT NULL,
    PRIMARY KEY (kind, project, domain, name)
);
CREATE TABLE executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    phase BIGINT NOT NULL,
    launch_plan TEXT NOT NULL,
    workflow TEXT NOT NULL,
    record BYTEA NOT NULL,
    workflow_closure BYTEA NOT NULL,
    state BYTEA NOT NULL,
    abort_cause TEXT,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    inputs_uri TEXT NOT NULL DEFAULT '',
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (project, domain, name)
);
CREATE INDEX executions_by_created ON executions (project, domain, created_at);
CREATE INDEX executions_active ON executions (seq) WHERE phase NOT IN (4, 6, 7, 8);
CREATE TABLE node_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    phase BIGINT NOT NULL,
    record BYTEA NOT NULL,
    state BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (project, domain, exec_name, node_id)
);
CREATE INDEX node_executions_by_parent ON node_executions (project, domain, exec_name, parent_id, created_at);
CREATE TABLE task_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    phase BIGINT NOT NULL,
    record BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (project, domain, exec_name, node_id, attempt)
);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_by_exec ON events (project, domain, exec_name, seq);
CREATE TABLE signals (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    type BYTEA NOT NULL,
    value BYTEA,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (project, domain, exec_name, signal_id)
);
CREATE TABLE catalog_artifacts (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    tag TEXT NOT NULL,
    artifact_id TEXT NOT NULL UNIQUE,
    outputs_uri TEXT NOT NULL,
    src_project TEXT NOT NULL,
    src_domain TEXT NOT NULL,
    src_exec TEXT NOT NULL,
    src_node TEXT NOT NULL,
    src_attempt BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    seq BIGSERIAL PRIMARY KEY,
    UNIQUE (project, domain, name, version, tag)
);
CREATE INDEX catalog_by_source ON catalog_artifacts (src_project, src_domain, src_exec, src_node);
CREATE TABLE catalog_uses (
    artifact_id TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    UNIQUE (artifact_id, project, domain, exec_name, node_id)
);
CREATE INDEX catalog_uses_by_exec ON catalog_uses (project, domain, exec_name, node_id);
CREATE TABLE catalog_datasets (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    metadata BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE catalog_reservations (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    tag TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name, version, tag)
);
CREATE TABLE leases (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE INDEX leases_by_owner ON leases (owner);
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE schedules (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    last_fire BIGINT,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    phase BIGINT NOT NULL,
    channel TEXT NOT NULL,
    recipients TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    seq BIGSERIAL
);
CREATE INDEX notifications_due ON notifications (delivered_at, next_attempt_at);
CREATE INDEX notifications_by_execution ON notifications (project, domain, exec_name);
CREATE TABLE matchable_attributes (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    workflow TEXT NOT NULL,
    resource_type BIGINT NOT NULL,
    attributes BYTEA NOT NULL,
    PRIMARY KEY (project, domain, workflow, resource_type)
);
"#,
];

/// A migration with every text column collated bytewise.
pub(crate) fn collated(sql: &str) -> String {
    sql.replace(" TEXT ", " TEXT COLLATE \"C\" ")
        .replace(" TEXT,", " TEXT COLLATE \"C\",")
}
