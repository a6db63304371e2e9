//! SQLite adapter of the storage port: one file, WAL journal, schema migrations by
//! `PRAGMA user_version`. A single connection behind a mutex serialises writers, which is
//! what SQLite does anyway; every multi-statement change runs in one transaction.

use contrail_store::{
    Column, CreateOutcome, EntityKey, EntityKind, EntityRecord, Error, Filter, ListQuery,
    NamedEntityMeta, Op, ProjectRecord, RegistryStore, Result, Store,
};
use rusqlite::{Connection, OptionalExtension, params, types::Value};
use std::path::Path;
use std::sync::Mutex;

mod attributes;
mod catalog;
mod exec;
mod lease;
mod outbox;
mod schedule;

/// Schema versions, applied in order; index + 1 is the `user_version` after each.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE entities (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest BLOB NOT NULL,
    spec BLOB NOT NULL,
    closure BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (kind, project, domain, name, version)
);
CREATE INDEX entities_by_name ON entities (kind, project, domain, name, created_at);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    labels BLOB NOT NULL,
    state INTEGER NOT NULL
);
CREATE TABLE named_entities (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    state INTEGER NOT NULL,
    PRIMARY KEY (kind, project, domain, name)
);
"#,
    r#"
CREATE TABLE executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    phase INTEGER NOT NULL,
    launch_plan TEXT NOT NULL,
    workflow TEXT NOT NULL,
    record BLOB NOT NULL,
    workflow_closure BLOB NOT NULL,
    state BLOB NOT NULL,
    abort_cause TEXT,
    revision INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (project, domain, name)
);
CREATE INDEX executions_by_created ON executions (project, domain, created_at);
CREATE INDEX executions_active ON executions (phase) WHERE phase NOT IN (4, 6, 7, 8);
CREATE TABLE node_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    phase INTEGER NOT NULL,
    record BLOB NOT NULL,
    state BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (project, domain, exec_name, node_id)
);
CREATE INDEX node_executions_by_parent ON node_executions (project, domain, exec_name, parent_id, created_at);
CREATE TABLE task_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    phase INTEGER NOT NULL,
    record BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (project, domain, exec_name, node_id, attempt)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX events_by_exec ON events (project, domain, exec_name, seq);
"#,
    r#"
CREATE TABLE signals (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    type BLOB NOT NULL,
    value BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (project, domain, exec_name, signal_id)
);
"#,
    r#"
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
    src_attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (project, domain, name, version, tag)
);
CREATE INDEX catalog_by_source ON catalog_artifacts (src_project, src_domain, src_exec, src_node);
CREATE TABLE catalog_uses (
    artifact_id TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (artifact_id, project, domain, exec_name, node_id)
);
CREATE INDEX catalog_uses_by_exec ON catalog_uses (project, domain, exec_name, node_id);
CREATE TABLE catalog_datasets (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    metadata BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE catalog_reservations (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    tag TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project, domain, name, version, tag)
);
"#,
    r#"
CREATE TABLE leases (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE INDEX leases_by_owner ON leases (owner);
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
ALTER TABLE events ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN inputs_uri TEXT NOT NULL DEFAULT '';
"#,
    r#"
CREATE TABLE schedules (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    last_fire INTEGER,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    exec_name TEXT NOT NULL,
    phase INTEGER NOT NULL,
    channel TEXT NOT NULL,
    recipients TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX notifications_due ON notifications (delivered_at, next_attempt_at);
CREATE INDEX notifications_by_execution ON notifications (project, domain, exec_name);
CREATE TABLE matchable_attributes (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    workflow TEXT NOT NULL,
    resource_type INTEGER NOT NULL,
    attributes BLOB NOT NULL,
    PRIMARY KEY (project, domain, workflow, resource_type)
);
"#,
];

pub struct SqliteStore {
    /// The one writer (SQLite serialises writers anyway).
    conn: Mutex<Connection>,
    /// Read-only connections: in WAL mode readers never wait for the writer, so API reads
    /// do not queue behind controller commits. Empty for an in-memory database.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

/// Read-only connections per database file.
const READERS: usize = 4;

fn backend(e: rusqlite::Error) -> Error {
    Error::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    /// Opens (or creates) the database file. A new file is created readable by its owner
    /// only (0600); SQLite gives its `-wal` and `-shm` files the same mode.
    pub fn open(path: &Path) -> Result<Self> {
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        let mut store = Self::init(conn)?;
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            reader
                .busy_timeout(std::time::Duration::from_secs(10))
                .map_err(backend)?;
            store.readers.push(Mutex::new(reader));
        }
        Ok(store)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute_batch(m).map_err(backend)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            readers: Vec::new(),
            next_reader: Default::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for reads: a free reader if there is one, else the next in turn.
    fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.conn();
        }
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[turn % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl SqliteStore {
    /// Runs a filtered, sorted, paged select; `base` ends in a WHERE clause.
    pub(crate) fn select_page<T>(
        &self,
        base: String,
        mut args: Vec<Value>,
        q: &ListQuery,
        map: fn(Column) -> &'static str,
        default_desc: bool,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut sql = base;
        push_filters_on(&q.filters, map, &mut sql, &mut args);
        let (col, desc) = q.sort.unwrap_or((Column::CreatedAt, default_desc));
        let dir = if desc { "DESC" } else { "ASC" };
        sql.push_str(&format!(
            " ORDER BY {} {dir}, seq {dir} LIMIT ? OFFSET ?",
            map(col)
        ));
        args.push(Value::Integer(q.limit as i64));
        args.push(Value::Integer(q.offset as i64));
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        stmt.query_map(rusqlite::params_from_iter(args), row)
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)
    }
}

const PROJECT_COLS: &str = "id, name, description, labels, state";

const ENTITY_COLS: &str =
    "kind, project, domain, name, version, digest, spec, closure, state, created_at, updated_at";

fn kind_of(s: &str) -> Result<EntityKind> {
    Ok(match s {
        "task" => EntityKind::Task,
        "workflow" => EntityKind::Workflow,
        "launch_plan" => EntityKind::LaunchPlan,
        other => return Err(Error::Corrupt(format!("unknown entity kind {other}"))),
    })
}

fn entity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, EntityRecord)> {
    Ok((
        r.get(0)?,
        EntityRecord {
            kind: EntityKind::Task,
            key: EntityKey {
                project: r.get(1)?,
                domain: r.get(2)?,
                name: r.get(3)?,
                version: r.get(4)?,
            },
            digest: r.get(5)?,
            spec: r.get(6)?,
            closure: r.get(7)?,
            state: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        },
    ))
}

/// One entity by kind and key (also used inside transactions: `Transaction` derefs to `Connection`).
fn select_entity(
    conn: &Connection,
    kind: EntityKind,
    k: &EntityKey,
) -> Result<Option<EntityRecord>> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {ENTITY_COLS} FROM entities WHERE kind=? AND project=? AND domain=? AND name=? AND version=?"
            ),
            params![kind.as_str(), k.project, k.domain, k.name, k.version],
            entity_row,
        )
        .optional()
        .map_err(backend)?;
    row.map(finish).transpose()
}

fn finish((kind, mut rec): (String, EntityRecord)) -> Result<EntityRecord> {
    rec.kind = kind_of(&kind)?;
    Ok(rec)
}

/// Appends `AND …` for each filter to `sql`, pushing bound parameters.
fn push_filters(filters: &[Filter], sql: &mut String, args: &mut Vec<Value>) {
    push_filters_on(filters, Column::sql_name, sql, args)
}

/// `push_filters` with a table-specific column mapping.
fn push_filters_on(
    filters: &[Filter],
    column: fn(Column) -> &'static str,
    sql: &mut String,
    args: &mut Vec<Value>,
) {
    for f in filters {
        let col = column(f.column);
        let val = |v: &str| -> Value {
            if f.column.is_numeric() {
                v.parse::<i64>()
                    .map(Value::Integer)
                    .unwrap_or(Value::Text(v.to_string()))
            } else {
                Value::Text(v.to_string())
            }
        };
        let first = f.values.first().map(String::as_str).unwrap_or("");
        let cmp = match f.op {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Contains => {
                sql.push_str(&format!(" AND instr({col}, ?) > 0"));
                args.push(Value::Text(first.to_string()));
                continue;
            }
            Op::ValueIn => {
                let marks = vec!["?"; f.values.len().max(1)].join(",");
                sql.push_str(&format!(" AND {col} IN ({marks})"));
                if f.values.is_empty() {
                    args.push(Value::Null);
                }
                args.extend(f.values.iter().map(|v| val(v)));
                continue;
            }
        };
        sql.push_str(&format!(" AND {col} {cmp} ?"));
        args.push(val(first));
    }
}

impl Store for SqliteStore {
    fn create_entity(&self, rec: &EntityRecord) -> Result<CreateOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let k = &rec.key;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO entities ({ENTITY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
                ),
                params![
                    rec.kind.as_str(),
                    k.project,
                    k.domain,
                    k.name,
                    k.version,
                    rec.digest,
                    rec.spec,
                    rec.closure,
                    rec.state,
                    rec.created_at,
                    rec.updated_at
                ],
            )
            .map_err(backend)?;
        let outcome = if inserted == 1 {
            CreateOutcome::Created
        } else {
            let existing = select_entity(&tx, rec.kind, k)?.ok_or_else(|| {
                Error::Backend("conflicting row vanished inside a transaction".into())
            })?;
            CreateOutcome::Exists(Box::new(existing))
        };
        tx.commit().map_err(backend)?;
        Ok(outcome)
    }

    fn list_entities(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<EntityRecord>> {
        let mut sql =
            format!("SELECT {ENTITY_COLS} FROM entities WHERE kind=? AND project=? AND domain=?");
        let mut args = vec![
            Value::Text(kind.as_str().into()),
            Value::Text(q.project.clone()),
            Value::Text(q.domain.clone()),
        ];
        if let Some(name) = &q.name {
            sql.push_str(" AND name=?");
            args.push(Value::Text(name.clone()));
        }
        let rows = self.select_page(sql, args, q, Column::sql_name, true, entity_row)?;
        rows.into_iter().map(finish).collect()
    }

    fn list_entity_names(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<String>> {
        let mut sql = "SELECT DISTINCT name FROM entities WHERE kind=? AND project=? AND domain=?"
            .to_string();
        let mut args = vec![
            Value::Text(kind.as_str().into()),
            Value::Text(q.project.clone()),
            Value::Text(q.domain.clone()),
        ];
        push_filters(&q.filters, &mut sql, &mut args);
        let desc = matches!(q.sort, Some((Column::Name, true)));
        sql.push_str(&format!(
            " ORDER BY name {} LIMIT ? OFFSET ?",
            if desc { "DESC" } else { "ASC" }
        ));
        args.push(Value::Integer(q.limit as i64));
        args.push(Value::Integer(q.offset as i64));
        let conn = self.read();
        let mut stmt = conn.prepare(&sql).map_err(backend)?;
        let names = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get(0))
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(backend)?;
        Ok(names)
    }

    fn set_launch_plan_state(&self, k: &EntityKey, active: bool, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        if active {
            tx.execute(
                "UPDATE entities SET state=0, updated_at=? WHERE kind='launch_plan' AND project=? AND domain=? AND name=? AND version<>? AND state<>0",
                params![now, k.project, k.domain, k.name, k.version],
            )
            .map_err(backend)?;
        }
        let n = tx
            .execute(
                "UPDATE entities SET state=?, updated_at=? WHERE kind='launch_plan' AND project=? AND domain=? AND name=? AND version=?",
                params![active as i32, now, k.project, k.domain, k.name, k.version],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(n == 1)
    }

    fn get_active_launch_plan(
        &self,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<EntityRecord>> {
        let conn = self.read();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {ENTITY_COLS} FROM entities WHERE kind='launch_plan' AND project=? AND domain=? AND name=? AND state=1 ORDER BY updated_at DESC LIMIT 1"
                ),
                params![project, domain, name],
                entity_row,
            )
            .optional()
            .map_err(backend)?;
        row.map(finish).transpose()
    }

    fn create_project(&self, p: &ProjectRecord) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO projects (id, name, description, labels, state) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                params![p.id, p.name, p.description, p.labels, p.state],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn update_project(&self, p: &ProjectRecord) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE projects SET name=?, description=?, labels=?, state=? WHERE id=?",
                params![p.name, p.description, p.labels, p.state, p.id],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>> {
        self.read()
            .query_row(
                &format!("SELECT {PROJECT_COLS} FROM projects WHERE id=?"),
                params![id],
                project_row,
            )
            .optional()
            .map_err(backend)
    }

    fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(&format!("SELECT {PROJECT_COLS} FROM projects ORDER BY id"))
            .map_err(backend)?;
        let rows = stmt
            .query_map([], project_row)
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)?;
        Ok(rows)
    }

    fn get_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<NamedEntityMeta>> {
        self.read()
            .query_row(
                "SELECT description, state FROM named_entities WHERE kind=? AND project=? AND domain=? AND name=?",
                params![kind.as_str(), project, domain, name],
                |r| Ok(NamedEntityMeta { description: r.get(0)?, state: r.get(1)? }),
            )
            .optional()
            .map_err(backend)
    }

    fn put_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
        meta: &NamedEntityMeta,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO named_entities (kind, project, domain, name, description, state) VALUES (?,?,?,?,?,?)
                 ON CONFLICT (kind, project, domain, name) DO UPDATE SET description=excluded.description, state=excluded.state",
                params![kind.as_str(), project, domain, name, meta.description, meta.state],
            )
            .map_err(backend)?;
        Ok(())
    }
}

impl RegistryStore for SqliteStore {
    fn get_entity(&self, kind: EntityKind, k: &EntityKey) -> Result<Option<EntityRecord>> {
        select_entity(&self.read(), kind, k)
    }
}

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        labels: r.get(3)?,
        state: r.get(4)?,
    })
}

#[cfg(test)]
mod conformance {
    use super::SqliteStore;

    /// A file-backed store (readers and writer apart, as in production) in a directory
    /// that lives as long as the test process.
    fn fresh() -> std::sync::Arc<SqliteStore> {
        let dir = tempfile::tempdir().unwrap().keep();
        std::sync::Arc::new(SqliteStore::open(&dir.join("contrail.db")).unwrap())
    }

    contrail_store_conformance::conformance_tests!(fresh());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_project(store: &SqliteStore) {
        store
            .create_project(&ProjectRecord {
                id: "p".into(),
                name: "p".into(),
                description: String::new(),
                labels: Vec::new(),
                state: 0,
            })
            .unwrap();
    }

    #[test]
    fn the_database_and_its_journal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("contrail.db")).unwrap();
        add_project(&store);
        for name in ["contrail.db", "contrail.db-wal"] {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        add_project(&store);
        // The writer is busy in a long transaction (as during a large controller commit).
        let writer = store.conn();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.get_project("p").map(|p| p.is_some()));
        });
        let seen = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a read waited for the writer");
        assert!(seen.unwrap());
        writer.execute_batch("ROLLBACK").unwrap();
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let rec = EntityRecord {
            kind: EntityKind::Task,
            key: EntityKey {
                project: "p".into(),
                domain: "d".into(),
                name: "a".into(),
                version: "v1".into(),
            },
            digest: vec![7],
            spec: vec![],
            closure: vec![],
            state: 0,
            created_at: 1,
            updated_at: 1,
        };
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create_entity(&rec).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.get_entity(EntityKind::Task, &rec.key)
                .unwrap()
                .unwrap()
                .digest,
            vec![7]
        );
    }
}
