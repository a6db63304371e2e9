//! The execution half of the PostgreSQL adapter.

use crate::{PgStore, Sql, WAKE_CHANNEL, backend};
use contrail_store::{
    AbortOutcome, Column, CommitOutcome, EventRecord, ExecHead, ExecKey, ExecutionRecord,
    ExecutionStore, ListQuery, NodeRecord, Result, RoundCommit, RoundStore, SignalRecord,
    SignalStore, TaskRecord, is_terminal_phase,
};
use tokio_postgres::Row;

const EXEC_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     workflow_closure, state, abort_cause, revision, created_at, updated_at, inputs_uri";
/// The columns without the workflow closure (reads).
const EXEC_READ_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     ''::bytea, state, abort_cause, revision, created_at, updated_at, inputs_uri";
/// The same columns with the two large immutable/derived blobs blanked (lists).
const EXEC_LIST_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     ''::bytea, ''::bytea, abort_cause, revision, created_at, updated_at, inputs_uri";
const NODE_COLS: &str =
    "project, domain, exec_name, node_id, parent_id, phase, record, state, created_at, updated_at";
const TASK_COLS: &str =
    "project, domain, exec_name, node_id, attempt, phase, record, created_at, updated_at";
const SIGNAL_COLS: &str =
    "project, domain, exec_name, signal_id, type, value, created_at, updated_at";

fn key_at(r: &Row, i: usize) -> ExecKey {
    ExecKey {
        project: r.get(i),
        domain: r.get(i + 1),
        name: r.get(i + 2),
    }
}

fn exec_row(r: &Row) -> ExecutionRecord {
    ExecutionRecord {
        key: key_at(r, 0),
        phase: r.get::<_, i64>(3) as i32,
        launch_plan: r.get(4),
        workflow: r.get(5),
        record: r.get(6),
        workflow_closure: r.get(7),
        state: r.get(8),
        abort_cause: r.get(9),
        revision: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
        inputs_uri: r.get(13),
    }
}

fn node_row(r: &Row) -> NodeRecord {
    NodeRecord {
        exec: key_at(r, 0),
        node_id: r.get(3),
        parent_id: r.get(4),
        phase: r.get::<_, i64>(5) as i32,
        record: r.get(6),
        state: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

fn task_row(r: &Row) -> TaskRecord {
    TaskRecord {
        exec: key_at(r, 0),
        node_id: r.get(3),
        attempt: r.get::<_, i64>(4) as u32,
        phase: r.get::<_, i64>(5) as i32,
        record: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

fn signal_row(r: &Row) -> SignalRecord {
    SignalRecord {
        exec: key_at(r, 0),
        signal_id: r.get(3),
        ty: r.get(4),
        value: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
    }
}

/// The `NOTIFY` payload naming an execution.
pub(crate) fn wake_payload(k: &ExecKey) -> String {
    format!("{}/{}/{}", k.project, k.domain, k.name)
}

/// `<head> WHERE` the rows of execution `k` (its name in `name_col`).
fn of_execution(head: &str, name_col: &str, k: &ExecKey) -> Sql {
    Sql::matching(
        head,
        &[
            ("project", &k.project),
            ("domain", &k.domain),
            (name_col, &k.name),
        ],
    )
}

impl ExecutionStore for PgStore {
    fn create_execution(&self, r: &ExecutionRecord) -> Result<bool> {
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            let n = tx
                .execute(
                    &format!(
                        "INSERT INTO executions ({EXEC_COLS}) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT DO NOTHING"
                    ),
                    &[
                        &r.key.project,
                        &r.key.domain,
                        &r.key.name,
                        &(r.phase as i64),
                        &r.launch_plan,
                        &r.workflow,
                        &r.record,
                        &r.workflow_closure,
                        &r.state,
                        &r.abort_cause,
                        &r.revision,
                        &r.created_at,
                        &r.updated_at,
                        &r.inputs_uri,
                    ],
                )
                .await
                .map_err(backend)?;
            if n == 1 {
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&WAKE_CHANNEL, &wake_payload(&r.key)],
                )
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn list_executions(&self, q: &ListQuery) -> Result<Vec<ExecutionRecord>> {
        let sql = Sql::matching(
            &format!("SELECT {EXEC_LIST_COLS} FROM executions"),
            &[("project", &q.project), ("domain", &q.domain)],
        );
        Ok(self
            .select_page(sql, q, Column::execution_sql_name, true)?
            .iter()
            .map(exec_row)
            .collect())
    }

    fn list_node_executions(
        &self,
        k: &ExecKey,
        parent_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<NodeRecord>> {
        let mut sql = of_execution(
            &format!("SELECT {NODE_COLS} FROM node_executions"),
            "exec_name",
            k,
        );
        sql.and_eq("parent_id", parent_id);
        Ok(self
            .select_page(sql, q, Column::node_sql_name, false)?
            .iter()
            .map(node_row)
            .collect())
    }

    fn list_task_executions(
        &self,
        k: &ExecKey,
        node_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<TaskRecord>> {
        let mut sql = of_execution(
            &format!("SELECT {TASK_COLS} FROM task_executions"),
            "exec_name",
            k,
        );
        sql.and_eq("node_id", node_id);
        Ok(self
            .select_page(sql, q, Column::node_sql_name, false)?
            .iter()
            .map(task_row)
            .collect())
    }

    fn list_events(&self, k: &ExecKey) -> Result<Vec<EventRecord>> {
        Ok(self
            .rows(
                "SELECT kind, payload, owner FROM events \
                 WHERE project=$1 AND domain=$2 AND exec_name=$3 ORDER BY seq",
                &[&k.project, &k.domain, &k.name],
            )?
            .iter()
            .map(|r| EventRecord {
                kind: match r.get::<_, &str>(0) {
                    "workflow" => "workflow",
                    "node" => "node",
                    _ => "task",
                },
                payload: r.get(1),
                owner: r.get(2),
            })
            .collect())
    }

    fn set_signal(&self, k: &ExecKey, signal_id: &str, value: &[u8], now: i64) -> Result<bool> {
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE signals SET value=$1, updated_at=$2 \
                     WHERE project=$3 AND domain=$4 AND exec_name=$5 AND signal_id=$6 \
                       AND value IS NULL",
                    &[&value, &now, &k.project, &k.domain, &k.name, &signal_id],
                )
                .await
                .map_err(backend)?;
            if n > 0 {
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&WAKE_CHANNEL, &wake_payload(k)],
                )
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn list_signals(&self, k: &ExecKey, q: &ListQuery) -> Result<Vec<SignalRecord>> {
        let sql = of_execution(
            &format!("SELECT {SIGNAL_COLS} FROM signals"),
            "exec_name",
            k,
        );
        Ok(self
            .select_page(
                sql,
                q,
                |c| match c {
                    Column::Name => "signal_id",
                    Column::UpdatedAt => "updated_at",
                    _ => "created_at",
                },
                false,
            )?
            .iter()
            .map(signal_row)
            .collect())
    }
}

impl RoundStore for PgStore {
    fn get_execution(&self, k: &ExecKey) -> Result<Option<ExecutionRecord>> {
        Ok(self
            .opt_row(
                &format!(
                    "SELECT {EXEC_READ_COLS} FROM executions WHERE project=$1 AND domain=$2 AND name=$3"
                ),
                &[&k.project, &k.domain, &k.name],
            )?
            .as_ref()
            .map(exec_row))
    }
    fn get_execution_head(&self, k: &ExecKey) -> Result<Option<ExecHead>> {
        Ok(self
            .opt_row(
                "SELECT phase, revision, abort_cause FROM executions \
                 WHERE project=$1 AND domain=$2 AND name=$3",
                &[&k.project, &k.domain, &k.name],
            )?
            .map(|r| ExecHead {
                phase: r.get::<_, i64>(0) as i32,
                revision: r.get(1),
                abort_cause: r.get(2),
            }))
    }
    fn get_workflow_closure(&self, k: &ExecKey) -> Result<Option<Vec<u8>>> {
        Ok(self
            .opt_row(
                "SELECT workflow_closure FROM executions WHERE project=$1 AND domain=$2 AND name=$3",
                &[&k.project, &k.domain, &k.name],
            )?
            .map(|r| r.get(0)))
    }
    fn list_node_states(&self, k: &ExecKey) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .rows(
                "SELECT node_id, state FROM node_executions \
                 WHERE project=$1 AND domain=$2 AND exec_name=$3",
                &[&k.project, &k.domain, &k.name],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }
    fn request_abort(&self, k: &ExecKey, cause: &str, now: i64) -> Result<Option<AbortOutcome>> {
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            let found = tx
                .query_opt(
                    "SELECT phase, abort_cause FROM executions \
                     WHERE project=$1 AND domain=$2 AND name=$3 FOR UPDATE",
                    &[&k.project, &k.domain, &k.name],
                )
                .await
                .map_err(backend)?
                .map(|r| (r.get::<_, i64>(0) as i32, r.get::<_, Option<String>>(1)));
            let outcome = match found {
                None => None,
                Some((phase, _)) if is_terminal_phase(phase) => Some(AbortOutcome::AlreadyTerminal),
                Some((_, Some(_))) => Some(AbortOutcome::AlreadyRequested),
                Some((_, None)) => {
                    tx.execute(
                        "UPDATE executions SET abort_cause=$1, updated_at=$2 \
                         WHERE project=$3 AND domain=$4 AND name=$5",
                        &[&cause, &now, &k.project, &k.domain, &k.name],
                    )
                    .await
                    .map_err(backend)?;
                    tx.execute(
                        "SELECT pg_notify($1, $2)",
                        &[&WAKE_CHANNEL, &wake_payload(k)],
                    )
                    .await
                    .map_err(backend)?;
                    Some(AbortOutcome::Requested)
                }
            };
            tx.commit().await.map_err(backend)?;
            Ok(outcome)
        })
    }
    fn commit_round(&self, c: &RoundCommit) -> Result<CommitOutcome> {
        let k = &c.key;
        let phase = c.phase as i64;
        let node_phases: Vec<i64> = c.nodes.iter().map(|r| r.phase as i64).collect();
        let task_nums: Vec<(i64, i64)> = c
            .tasks
            .iter()
            .map(|r| (r.attempt as i64, r.phase as i64))
            .collect();
        let owner = c.fence.as_ref().map_or("", |f| f.owner.as_str());
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            // Statements of one step are pipelined: one round trip each step.
            let update = tx
                .prepare_cached(
                    "UPDATE executions SET phase=$1, record=$2, state=$3, revision=revision+1, \
                     updated_at=$4 WHERE project=$5 AND domain=$6 AND name=$7 AND revision=$8",
                )
                .await
                .map_err(backend)?;
            let lease = tx
                .prepare_cached(
                    "SELECT owner, epoch FROM leases \
                     WHERE project=$1 AND domain=$2 AND name=$3 FOR SHARE",
                )
                .await
                .map_err(backend)?;
            // Locks in the order claims take them (execution row, then lease row), so the
            // two never deadlock. FOR SHARE holds off any takeover (an UPDATE of the lease
            // row) until this commits; a conflicting or fenced round rolls back.
            let update_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &phase,
                &c.record,
                &c.state,
                &c.now,
                &k.project,
                &k.domain,
                &k.name,
                &c.revision,
            ];
            let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&k.project, &k.domain, &k.name];
            let updated = tx.execute(&update, &update_params);
            let (n, held) = if c.fence.is_some() {
                let held = tx.query_opt(&lease, &key_params);
                let (n, held) = futures_util::future::try_join(updated, held)
                    .await
                    .map_err(backend)?;
                (n, held.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))))
            } else {
                (updated.await.map_err(backend)?, None)
            };
            if let Some(fence) = &c.fence
                && held != Some((fence.owner.clone(), fence.epoch))
            {
                return Ok(CommitOutcome::Fenced);
            }
            if n != 1 {
                return Ok(CommitOutcome::Conflict);
            }
            let node_stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO node_executions ({NODE_COLS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) \
                     ON CONFLICT (project, domain, exec_name, node_id) DO UPDATE SET \
                     phase=excluded.phase, record=excluded.record, state=excluded.state, \
                     updated_at=excluded.updated_at"
                ))
                .await
                .map_err(backend)?;
            let task_stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO task_executions ({TASK_COLS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                     ON CONFLICT (project, domain, exec_name, node_id, attempt) DO UPDATE SET \
                     phase=excluded.phase, record=excluded.record, updated_at=excluded.updated_at"
                ))
                .await
                .map_err(backend)?;
            let event_stmt = tx
                .prepare_cached(
                    "INSERT INTO events (project, domain, exec_name, kind, payload, owner) \
                     VALUES ($1,$2,$3,$4,$5,$6)",
                )
                .await
                .map_err(backend)?;
            type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;
            let mut rows: Vec<(&tokio_postgres::Statement, Params<'_>)> = Vec::new();
            for (r, phase) in c.nodes.iter().zip(&node_phases) {
                rows.push((
                    &node_stmt,
                    vec![
                        &k.project,
                        &k.domain,
                        &k.name,
                        &r.node_id,
                        &r.parent_id,
                        phase,
                        &r.record,
                        &r.state,
                        &r.created_at,
                        &r.updated_at,
                    ],
                ));
            }
            for (r, (attempt, phase)) in c.tasks.iter().zip(&task_nums) {
                rows.push((
                    &task_stmt,
                    vec![
                        &k.project,
                        &k.domain,
                        &k.name,
                        &r.node_id,
                        attempt,
                        phase,
                        &r.record,
                        &r.created_at,
                        &r.updated_at,
                    ],
                ));
            }
            for e in &c.events {
                rows.push((
                    &event_stmt,
                    vec![&k.project, &k.domain, &k.name, &e.kind, &e.payload, &owner],
                ));
            }
            let writes = rows
                .iter()
                .map(|(stmt, params)| tx.execute(*stmt, params.as_slice()));
            futures_util::future::try_join_all(writes)
                .await
                .map_err(backend)?;
            crate::outbox::insert(&tx, &c.notifications).await?;
            if is_terminal_phase(c.phase) {
                tx.execute(
                    "DELETE FROM leases WHERE project=$1 AND domain=$2 AND name=$3",
                    &[&k.project, &k.domain, &k.name],
                )
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(CommitOutcome::Committed)
        })
    }
    fn get_node_execution(&self, k: &ExecKey, node_id: &str) -> Result<Option<NodeRecord>> {
        Ok(self
            .opt_row(
                &format!(
                    "SELECT {NODE_COLS} FROM node_executions \
                     WHERE project=$1 AND domain=$2 AND exec_name=$3 AND node_id=$4"
                ),
                &[&k.project, &k.domain, &k.name, &node_id],
            )?
            .as_ref()
            .map(node_row))
    }
    fn get_task_execution(
        &self,
        k: &ExecKey,
        node_id: &str,
        attempt: u32,
    ) -> Result<Option<TaskRecord>> {
        Ok(self
            .opt_row(
                &format!(
                    "SELECT {TASK_COLS} FROM task_executions \
                     WHERE project=$1 AND domain=$2 AND exec_name=$3 AND node_id=$4 AND attempt=$5"
                ),
                &[&k.project, &k.domain, &k.name, &node_id, &(attempt as i64)],
            )?
            .as_ref()
            .map(task_row))
    }
}

impl SignalStore for PgStore {
    fn get_signal(&self, k: &ExecKey, signal_id: &str) -> Result<Option<SignalRecord>> {
        Ok(self
            .opt_row(
                &format!(
                    "SELECT {SIGNAL_COLS} FROM signals \
                     WHERE project=$1 AND domain=$2 AND exec_name=$3 AND signal_id=$4"
                ),
                &[&k.project, &k.domain, &k.name, &signal_id],
            )?
            .as_ref()
            .map(signal_row))
    }
    fn get_or_create_signal(
        &self,
        k: &ExecKey,
        signal_id: &str,
        ty: &[u8],
        now: i64,
    ) -> Result<SignalRecord> {
        self.exec(
            "INSERT INTO signals \
             (project, domain, exec_name, signal_id, type, value, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $6) ON CONFLICT DO NOTHING",
            &[&k.project, &k.domain, &k.name, &signal_id, &ty, &now],
        )?;
        self.get_signal(k, signal_id)?
            .ok_or_else(|| contrail_store::Error::Backend(format!("signal {signal_id} vanished")))
    }
}
