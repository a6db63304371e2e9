//! PostgreSQL adapter of the storage port, for several replicas sharing one database.
//!
//! The port is synchronous (callers run it on blocking pools), and this adapter drives
//! `tokio-postgres` connections from a `deadpool-postgres` pool on its own small runtime:
//! a call blocks only the blocking-pool thread that made it, never an async worker.
//! Migrations run at start inside one transaction under an advisory lock, so replicas
//! starting together migrate once. Wake-ups cross processes through `LISTEN/NOTIFY`.

mod attributes;
mod catalog;
mod exec;
mod lease;
mod outbox;
mod schedule;
mod schema;

use contrail_store::{
    Column, CreateOutcome, EntityKey, EntityKind, EntityRecord, Error, Filter, ListQuery,
    NamedEntityMeta, Op, ProjectRecord, RegistryStore, Result, Store,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// The channel wake-ups travel on; the payload is `project/domain/name`.
const WAKE_CHANNEL: &str = "contrail_wake";
/// Serialises migrations across replicas (an arbitrary, fixed advisory-lock key).
const MIGRATION_LOCK: i64 = 0x636f_6e74_7261_696c;
/// Pooled connections per replica.
const POOL_SIZE: usize = 16;

type Callback = Arc<dyn Fn(contrail_store::ExecKey) + Send + Sync>;
pub(crate) type Listeners = Arc<Mutex<Vec<Callback>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct PgStore {
    /// Drives the pool's connections and the listener. `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    config: tokio_postgres::Config,
    listeners: Listeners,
    listening: std::sync::atomic::AtomicBool,
}

pub(crate) fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// One dynamically built statement: its text and its bound arguments.
#[derive(Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds an argument; its placeholder (`$n`).
    pub(crate) fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.args.push(Box::new(v));
        format!("${}", self.args.len())
    }

    pub(crate) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// `<head> WHERE TRUE`, then ` AND <col>=$n` for each pair.
    pub(crate) fn matching(head: &str, eqs: &[(&str, &str)]) -> Self {
        let mut sql = Sql::new(format!("{head} WHERE TRUE"));
        for (col, value) in eqs {
            sql.and_eq(col, value);
        }
        sql
    }

    /// Appends ` AND <col>=$n`, binding `value`.
    pub(crate) fn and_eq(&mut self, col: &str, value: &str) {
        let p = self.bind(value.to_string());
        self.push(&format!(" AND {col}={p}"));
    }

    /// Appends ` LIMIT $n OFFSET $m` for the query's page.
    pub(crate) fn page(&mut self, q: &ListQuery) {
        let limit = self.bind(q.limit as i64);
        let offset = self.bind(q.offset.min(i64::MAX as u64) as i64);
        self.push(&format!(" LIMIT {limit} OFFSET {offset}"));
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), and brings the schema up
    /// to date. `hold_limit` bounds how long a session may sit idle inside a transaction
    /// or wait for a row lock: a replica paused mid-transaction (SIGSTOP, a long GC
    /// pause, a partition) loses its session and its locks after that long, so it cannot
    /// keep others from taking its leases over. Keep it below the lease TTL.
    pub fn open(url: &str, hold_limit: std::time::Duration) -> Result<Self> {
        Self::open_in_schema(url, None, hold_limit)
    }

    /// As `open`, with every table in `schema` (created if missing): tests give each
    /// store its own.
    pub fn open_in_schema(
        url: &str,
        schema: Option<&str>,
        hold_limit: std::time::Duration,
    ) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("database url: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("contrail");
        }
        let hold_ms = hold_limit.as_millis().clamp(100, 3_600_000);
        let mut options =
            format!("-c idle_in_transaction_session_timeout={hold_ms} -c lock_timeout={hold_ms}");
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Error::Backend(format!("bad schema name {schema:?}")));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        if let Some(given) = config.get_options() {
            options = format!("{given} {options}");
        }
        config.options(options);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("contrail-pg")
            .enable_all()
            .build()
            .map_err(backend)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _guard = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(backend)?
        };
        let store = PgStore {
            rt: Some(rt),
            pool,
            config,
            listeners: Default::default(),
            listening: Default::default(),
        };
        store.run(async {
            let mut conn = store.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(backend)?;
            // Under the lock: IF NOT EXISTS alone races with a concurrent creator.
            if let Some(schema) = schema {
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .await
                    .map_err(backend)?;
            }
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS contrail_migrations \
                 (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .map_err(backend)?;
            let done: i64 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM contrail_migrations",
                    &[],
                )
                .await
                .map_err(backend)?
                .get(0);
            for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(done as usize) {
                tx.batch_execute(&schema::collated(m))
                    .await
                    .map_err(backend)?;
                tx.execute(
                    "INSERT INTO contrail_migrations (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )
                .await
                .map_err(backend)?;
                tracing::info!(version = i + 1, "database migrated");
            }
            tx.commit().await.map_err(backend)
        })?;
        Ok(store)
    }

    pub(crate) fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives until drop")
    }

    /// Runs a database future to completion on this store's runtime, from whatever thread
    /// calls: a blocking-pool thread (the normal case) blocks; an async worker of another
    /// multi-threaded runtime hands its other tasks off first.
    pub(crate) fn run<T: Send>(&self, fut: impl Future<Output = Result<T>> + Send) -> Result<T> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Err(_) => self.rt().block_on(fut),
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.rt().block_on(fut))
            }
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| self.rt().block_on(fut))
                    .join()
                    .unwrap_or_else(|_| Err(Error::Backend("database call panicked".into())))
            }),
        }
    }

    /// Rows of one statement.
    pub(crate) fn rows(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.run(async {
            let conn = self.pool.get().await.map_err(backend)?;
            let stmt = conn.prepare_cached(sql).await.map_err(backend)?;
            conn.query(&stmt, args).await.map_err(backend)
        })
    }

    pub(crate) fn opt_row(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        self.run(async {
            let conn = self.pool.get().await.map_err(backend)?;
            let stmt = conn.prepare_cached(sql).await.map_err(backend)?;
            conn.query_opt(&stmt, args).await.map_err(backend)
        })
    }

    /// Rows changed by one statement.
    pub(crate) fn exec(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.run(async {
            let conn = self.pool.get().await.map_err(backend)?;
            let stmt = conn.prepare_cached(sql).await.map_err(backend)?;
            conn.execute(&stmt, args).await.map_err(backend)
        })
    }

    /// Runs a filtered, sorted, paged select; `sql` ends in a WHERE clause.
    pub(crate) fn select_page(
        &self,
        mut sql: Sql,
        q: &ListQuery,
        map: fn(Column) -> &'static str,
        default_desc: bool,
    ) -> Result<Vec<Row>> {
        push_filters(&q.filters, map, &mut sql);
        let (col, desc) = q.sort.unwrap_or((Column::CreatedAt, default_desc));
        let dir = if desc { "DESC" } else { "ASC" };
        sql.push(&format!(" ORDER BY {} {dir}, seq {dir}", map(col)));
        sql.page(q);
        self.rows(&sql.text, &sql.params())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime may block; never do that on an async worker.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Appends `AND …` for each filter. A non-numeric value for a numeric column compares as
/// SQLite compares an integer with text (every integer sorts before every text), so both
/// adapters answer alike.
pub(crate) fn push_filters(filters: &[Filter], column: fn(Column) -> &'static str, sql: &mut Sql) {
    for f in filters {
        let col = column(f.column);
        let first = f.values.first().map(String::as_str).unwrap_or("");
        if f.op == Op::Contains {
            let p = sql.bind(first.to_string());
            sql.push(&format!(" AND strpos({col}, {p}) > 0"));
            continue;
        }
        if f.column.is_numeric() {
            if f.op == Op::ValueIn {
                let nums: Vec<i64> = f.values.iter().filter_map(|v| v.parse().ok()).collect();
                let p = sql.bind(nums);
                sql.push(&format!(" AND {col} = ANY({p})"));
                continue;
            }
            let Ok(n) = first.parse::<i64>() else {
                let always = matches!(f.op, Op::Ne | Op::Lt | Op::Lte);
                sql.push(if always { " AND TRUE" } else { " AND FALSE" });
                continue;
            };
            let p = sql.bind(n);
            sql.push(&format!(" AND {col} {} {p}", cmp(f.op)));
        } else {
            if f.op == Op::ValueIn {
                let p = sql.bind(f.values.clone());
                sql.push(&format!(" AND {col} = ANY({p})"));
                continue;
            }
            let p = sql.bind(first.to_string());
            sql.push(&format!(" AND {col} {} {p}", cmp(f.op)));
        }
    }
}

fn cmp(op: Op) -> &'static str {
    match op {
        Op::Eq | Op::Contains | Op::ValueIn => "=",
        Op::Ne => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
    }
}

const PROJECT_COLS: &str = "id, name, description, labels, state";
const ENTITY_COLS: &str =
    "kind, project, domain, name, version, digest, spec, closure, state, created_at, updated_at";

fn entity_row(r: &Row) -> Result<EntityRecord> {
    let kind: String = r.get(0);
    Ok(EntityRecord {
        kind: match kind.as_str() {
            "task" => EntityKind::Task,
            "workflow" => EntityKind::Workflow,
            "launch_plan" => EntityKind::LaunchPlan,
            other => return Err(Error::Corrupt(format!("unknown entity kind {other}"))),
        },
        key: EntityKey {
            project: r.get(1),
            domain: r.get(2),
            name: r.get(3),
            version: r.get(4),
        },
        digest: r.get(5),
        spec: r.get(6),
        closure: r.get(7),
        state: r.get::<_, i64>(8) as i32,
        created_at: r.get(9),
        updated_at: r.get(10),
    })
}

fn project_row(r: &Row) -> ProjectRecord {
    ProjectRecord {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        labels: r.get(3),
        state: r.get::<_, i64>(4) as i32,
    }
}

impl PgStore {
    fn select_entity(&self, kind: EntityKind, k: &EntityKey) -> Result<Option<EntityRecord>> {
        self.opt_row(
            &format!(
                "SELECT {ENTITY_COLS} FROM entities \
                 WHERE kind=$1 AND project=$2 AND domain=$3 AND name=$4 AND version=$5"
            ),
            &[&kind.as_str(), &k.project, &k.domain, &k.name, &k.version],
        )?
        .as_ref()
        .map(entity_row)
        .transpose()
    }
}

/// `<select> FROM entities WHERE` the kind and the query's project and domain.
fn entities_in(select: &str, kind: EntityKind, q: &ListQuery) -> Sql {
    Sql::matching(
        &format!("{select} FROM entities"),
        &[
            ("kind", kind.as_str()),
            ("project", &q.project),
            ("domain", &q.domain),
        ],
    )
}

impl Store for PgStore {
    fn create_entity(&self, rec: &EntityRecord) -> Result<CreateOutcome> {
        let k = &rec.key;
        let inserted = self.exec(
            &format!(
                "INSERT INTO entities ({ENTITY_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) \
                 ON CONFLICT DO NOTHING"
            ),
            &[
                &rec.kind.as_str(),
                &k.project,
                &k.domain,
                &k.name,
                &k.version,
                &rec.digest,
                &rec.spec,
                &rec.closure,
                &(rec.state as i64),
                &rec.created_at,
                &rec.updated_at,
            ],
        )?;
        if inserted == 1 {
            return Ok(CreateOutcome::Created);
        }
        // Entities are never deleted, so the conflicting row is still there.
        let existing = self
            .select_entity(rec.kind, k)?
            .ok_or_else(|| Error::Backend("a conflicting entity row vanished".into()))?;
        Ok(CreateOutcome::Exists(Box::new(existing)))
    }

    fn list_entities(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<EntityRecord>> {
        let mut sql = entities_in(&format!("SELECT {ENTITY_COLS}"), kind, q);
        if let Some(name) = &q.name {
            sql.and_eq("name", name);
        }
        self.select_page(sql, q, Column::sql_name, true)?
            .iter()
            .map(entity_row)
            .collect()
    }

    fn list_entity_names(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<String>> {
        let mut sql = entities_in("SELECT DISTINCT name", kind, q);
        push_filters(&q.filters, Column::sql_name, &mut sql);
        let desc = matches!(q.sort, Some((Column::Name, true)));
        sql.push(if desc {
            " ORDER BY name DESC"
        } else {
            " ORDER BY name ASC"
        });
        sql.page(q);
        Ok(self
            .rows(&sql.text, &sql.params())?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn set_launch_plan_state(&self, k: &EntityKey, active: bool, now: i64) -> Result<bool> {
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            if active {
                tx.execute(
                    "UPDATE entities SET state=0, updated_at=$1 WHERE kind='launch_plan' \
                     AND project=$2 AND domain=$3 AND name=$4 AND version<>$5 AND state<>0",
                    &[&now, &k.project, &k.domain, &k.name, &k.version],
                )
                .await
                .map_err(backend)?;
            }
            let n = tx
                .execute(
                    "UPDATE entities SET state=$1, updated_at=$2 WHERE kind='launch_plan' \
                     AND project=$3 AND domain=$4 AND name=$5 AND version=$6",
                    &[
                        &(active as i64),
                        &now,
                        &k.project,
                        &k.domain,
                        &k.name,
                        &k.version,
                    ],
                )
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn get_active_launch_plan(
        &self,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<EntityRecord>> {
        self.opt_row(
            &format!(
                "SELECT {ENTITY_COLS} FROM entities WHERE kind='launch_plan' AND project=$1 \
                 AND domain=$2 AND name=$3 AND state=1 ORDER BY updated_at DESC LIMIT 1"
            ),
            &[&project, &domain, &name],
        )?
        .as_ref()
        .map(entity_row)
        .transpose()
    }

    fn create_project(&self, p: &ProjectRecord) -> Result<bool> {
        Ok(self.exec(
            "INSERT INTO projects (id, name, description, labels, state) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT DO NOTHING",
            &[&p.id, &p.name, &p.description, &p.labels, &(p.state as i64)],
        )? == 1)
    }

    fn update_project(&self, p: &ProjectRecord) -> Result<bool> {
        Ok(self.exec(
            "UPDATE projects SET name=$1, description=$2, labels=$3, state=$4 WHERE id=$5",
            &[&p.name, &p.description, &p.labels, &(p.state as i64), &p.id],
        )? == 1)
    }

    fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>> {
        Ok(self
            .opt_row(
                &format!("SELECT {PROJECT_COLS} FROM projects WHERE id=$1"),
                &[&id],
            )?
            .as_ref()
            .map(project_row))
    }

    fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        Ok(self
            .rows(
                &format!("SELECT {PROJECT_COLS} FROM projects ORDER BY id"),
                &[],
            )?
            .iter()
            .map(project_row)
            .collect())
    }

    fn get_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<NamedEntityMeta>> {
        Ok(self
            .opt_row(
                "SELECT description, state FROM named_entities \
                 WHERE kind=$1 AND project=$2 AND domain=$3 AND name=$4",
                &[&kind.as_str(), &project, &domain, &name],
            )?
            .map(|r| NamedEntityMeta {
                description: r.get(0),
                state: r.get::<_, i64>(1) as i32,
            }))
    }

    fn put_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
        meta: &NamedEntityMeta,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO named_entities (kind, project, domain, name, description, state) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (kind, project, domain, name) \
             DO UPDATE SET description=excluded.description, state=excluded.state",
            &[
                &kind.as_str(),
                &project,
                &domain,
                &name,
                &meta.description,
                &(meta.state as i64),
            ],
        )?;
        Ok(())
    }
}

impl RegistryStore for PgStore {
    fn get_entity(&self, kind: EntityKind, k: &EntityKey) -> Result<Option<EntityRecord>> {
        self.select_entity(kind, k)
    }
}

#[cfg(test)]
mod conformance {
    //! Runs against the database `CONTRAIL_TEST_POSTGRES` names, each check in a schema of
    //! its own. Without it every check fails (never silently passes): the test tiers
    //! without PostgreSQL exclude this crate, and the tier that starts one runs it.
    use super::PgStore;

    const HOLD: std::time::Duration = std::time::Duration::from_secs(5);

    fn fresh() -> std::sync::Arc<PgStore> {
        let url = std::env::var("CONTRAIL_TEST_POSTGRES").expect(
            "set CONTRAIL_TEST_POSTGRES=postgres://... (scripts/pg.sh starts one) to run the \
             PostgreSQL conformance suite",
        );
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "t{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        std::sync::Arc::new(PgStore::open_in_schema(&url, Some(&schema), HOLD).unwrap())
    }

    contrail_store_conformance::conformance_tests!(fresh());
}

#[cfg(test)]
mod tests {
    use super::PgStore;
    use contrail_store::{ExecKey, ExecutionRecord, ExecutionStore, LeaseStore};
    use std::time::{Duration, Instant};

    const HOLD: Duration = Duration::from_secs(5);

    fn url_and_schema(tag: &str) -> (String, String) {
        let url = std::env::var("CONTRAIL_TEST_POSTGRES")
            .expect("set CONTRAIL_TEST_POSTGRES=postgres://... to run the PostgreSQL tests");
        let schema = format!(
            "{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        (url, schema)
    }

    #[test]
    fn replicas_starting_together_migrate_once() {
        let (url, schema) = url_and_schema("mig");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (url, schema) = (url.clone(), schema.clone());
                std::thread::spawn(move || {
                    PgStore::open_in_schema(&url, Some(&schema), HOLD).is_ok()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap(), "every replica opens the store");
        }
        let store = PgStore::open_in_schema(&url, Some(&schema), HOLD).unwrap();
        let versions: Vec<i64> = store
            .rows(
                "SELECT version FROM contrail_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            versions,
            (1..=super::schema::MIGRATIONS.len() as i64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_created_execution_wakes_listeners_in_other_processes() {
        let (url, schema) = url_and_schema("wake");
        let api = PgStore::open_in_schema(&url, Some(&schema), HOLD).unwrap();
        let controller = PgStore::open_in_schema(&url, Some(&schema), HOLD).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        assert!(controller.subscribe(Box::new(move |k| {
            let _ = tx.lock().unwrap().send(k);
        })));
        // Notifications are database-wide and other tests create executions at the same
        // time: this test's keys carry its own project, and only those count.
        let key = ExecKey {
            project: schema.clone(),
            domain: "d".into(),
            name: "e1".into(),
        };
        let ours = |k: &ExecKey| k.project == key.project;
        // The listener connects asynchronously: create until a wake-up for one arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        let woke = 'woke: loop {
            n += 1;
            let k = ExecKey {
                name: format!("e{n}"),
                ..key.clone()
            };
            api.create_execution(&ExecutionRecord {
                key: k,
                phase: 1,
                ..Default::default()
            })
            .unwrap();
            while let Ok(k) = rx.recv_timeout(Duration::from_millis(200)) {
                if ours(&k) {
                    break 'woke k;
                }
            }
            assert!(Instant::now() < deadline, "no wake-up within 10 s");
        };
        assert!(woke.name.starts_with('e'), "{woke}");
        api.nudge(&key).unwrap();
        let nudged = loop {
            let k = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("nudge arrives");
            if k == key {
                break k;
            }
        };
        assert_eq!(nudged, key);
    }
}
