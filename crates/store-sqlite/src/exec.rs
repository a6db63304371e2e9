//! The execution half of the SQLite adapter.

use crate::{SqliteStore, backend};
use contrail_store::{
    AbortOutcome, Column, CommitOutcome, Error, EventRecord, ExecHead, ExecKey, ExecutionRecord,
    ExecutionStore, ListQuery, NodeRecord, Result, RoundCommit, RoundStore, SignalRecord,
    SignalStore, TaskRecord, is_terminal_phase,
};
use rusqlite::{OptionalExtension, params, types::Value};

const EXEC_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     workflow_closure, state, abort_cause, revision, created_at, updated_at, inputs_uri";
/// The columns without the workflow closure (reads).
const EXEC_READ_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     x'', state, abort_cause, revision, created_at, updated_at, inputs_uri";
/// The same columns with the two large immutable/derived blobs blanked (lists).
const EXEC_LIST_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     x'', x'', abort_cause, revision, created_at, updated_at, inputs_uri";

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        key: ExecKey {
            project: r.get(0)?,
            domain: r.get(1)?,
            name: r.get(2)?,
        },
        phase: r.get(3)?,
        launch_plan: r.get(4)?,
        workflow: r.get(5)?,
        record: r.get(6)?,
        workflow_closure: r.get(7)?,
        state: r.get(8)?,
        abort_cause: r.get(9)?,
        revision: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        inputs_uri: r.get(13)?,
    })
}

const NODE_COLS: &str =
    "project, domain, exec_name, node_id, parent_id, phase, record, state, created_at, updated_at";
const TASK_COLS: &str =
    "project, domain, exec_name, node_id, attempt, phase, record, created_at, updated_at";

fn node_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        exec: ExecKey {
            project: r.get(0)?,
            domain: r.get(1)?,
            name: r.get(2)?,
        },
        node_id: r.get(3)?,
        parent_id: r.get(4)?,
        phase: r.get(5)?,
        record: r.get(6)?,
        state: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        exec: ExecKey {
            project: r.get(0)?,
            domain: r.get(1)?,
            name: r.get(2)?,
        },
        node_id: r.get(3)?,
        attempt: r.get(4)?,
        phase: r.get(5)?,
        record: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn key_args(k: &ExecKey) -> Vec<Value> {
    vec![
        Value::Text(k.project.clone()),
        Value::Text(k.domain.clone()),
        Value::Text(k.name.clone()),
    ]
}

impl ExecutionStore for SqliteStore {
    fn create_execution(&self, r: &ExecutionRecord) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO executions ({EXEC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
                     ON CONFLICT DO NOTHING"
                ),
                params![
                    r.key.project,
                    r.key.domain,
                    r.key.name,
                    r.phase,
                    r.launch_plan,
                    r.workflow,
                    r.record,
                    r.workflow_closure,
                    r.state,
                    r.abort_cause,
                    r.revision,
                    r.created_at,
                    r.updated_at,
                    r.inputs_uri
                ],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn list_executions(&self, q: &ListQuery) -> Result<Vec<ExecutionRecord>> {
        self.select_page(
            format!("SELECT {EXEC_LIST_COLS} FROM executions WHERE project=? AND domain=?"),
            vec![
                Value::Text(q.project.clone()),
                Value::Text(q.domain.clone()),
            ],
            q,
            Column::execution_sql_name,
            true,
            exec_row,
        )
    }

    fn list_node_executions(
        &self,
        k: &ExecKey,
        parent_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<NodeRecord>> {
        let mut args = key_args(k);
        args.push(Value::Text(parent_id.to_string()));
        self.select_page(
            format!(
                "SELECT {NODE_COLS} FROM node_executions \
                 WHERE project=? AND domain=? AND exec_name=? AND parent_id=?"
            ),
            args,
            q,
            Column::node_sql_name,
            false,
            node_row,
        )
    }

    fn list_task_executions(
        &self,
        k: &ExecKey,
        node_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<TaskRecord>> {
        let mut args = key_args(k);
        args.push(Value::Text(node_id.to_string()));
        self.select_page(
            format!(
                "SELECT {TASK_COLS} FROM task_executions \
                 WHERE project=? AND domain=? AND exec_name=? AND node_id=?"
            ),
            args,
            q,
            Column::node_sql_name,
            false,
            task_row,
        )
    }

    fn list_events(&self, k: &ExecKey) -> Result<Vec<EventRecord>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, payload, owner FROM events \
                 WHERE project=? AND domain=? AND exec_name=? ORDER BY seq",
            )
            .map_err(backend)?;
        stmt.query_map(params![k.project, k.domain, k.name], |r| {
            let kind: String = r.get(0)?;
            Ok(EventRecord {
                kind: match kind.as_str() {
                    "workflow" => "workflow",
                    "node" => "node",
                    _ => "task",
                },
                payload: r.get(1)?,
                owner: r.get(2)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }

    fn set_signal(&self, k: &ExecKey, signal_id: &str, value: &[u8], now: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE signals SET value=?, updated_at=? \
                 WHERE project=? AND domain=? AND exec_name=? AND signal_id=? AND value IS NULL",
                params![value, now, k.project, k.domain, k.name, signal_id],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn list_signals(&self, k: &ExecKey, q: &ListQuery) -> Result<Vec<SignalRecord>> {
        self.select_page(
            format!(
                "SELECT {SIGNAL_COLS} FROM signals WHERE project=? AND domain=? AND exec_name=?"
            ),
            vec![
                Value::Text(k.project.clone()),
                Value::Text(k.domain.clone()),
                Value::Text(k.name.clone()),
            ],
            q,
            |c| match c {
                Column::Name => "signal_id",
                Column::UpdatedAt => "updated_at",
                _ => "created_at",
            },
            false,
            signal_row,
        )
    }
}

impl RoundStore for SqliteStore {
    fn get_execution(&self, k: &ExecKey) -> Result<Option<ExecutionRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {EXEC_READ_COLS} FROM executions WHERE project=? AND domain=? AND name=?"
            ))
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name], exec_row)
                    .optional()
            })
            .map_err(backend)
    }
    fn get_execution_head(&self, k: &ExecKey) -> Result<Option<ExecHead>> {
        self.read()
            .prepare_cached(
                "SELECT phase, revision, abort_cause FROM executions \
                 WHERE project=? AND domain=? AND name=?",
            )
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name], |r| {
                    Ok(ExecHead {
                        phase: r.get(0)?,
                        revision: r.get(1)?,
                        abort_cause: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }
    fn get_workflow_closure(&self, k: &ExecKey) -> Result<Option<Vec<u8>>> {
        self.read()
            .prepare_cached(
                "SELECT workflow_closure FROM executions WHERE project=? AND domain=? AND name=?",
            )
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name], |r| r.get(0))
                    .optional()
            })
            .map_err(backend)
    }
    fn list_node_states(&self, k: &ExecKey) -> Result<Vec<(String, Vec<u8>)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT node_id, state FROM node_executions \
                 WHERE project=? AND domain=? AND exec_name=?",
            )
            .map_err(backend)?;
        stmt.query_map(params![k.project, k.domain, k.name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }
    fn request_abort(&self, k: &ExecKey, cause: &str, now: i64) -> Result<Option<AbortOutcome>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let found: Option<(i32, Option<String>)> = tx
            .query_row(
                "SELECT phase, abort_cause FROM executions WHERE project=? AND domain=? AND name=?",
                params![k.project, k.domain, k.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let outcome = match found {
            None => None,
            Some((phase, _)) if is_terminal_phase(phase) => Some(AbortOutcome::AlreadyTerminal),
            Some((_, Some(_))) => Some(AbortOutcome::AlreadyRequested),
            Some((_, None)) => {
                tx.execute(
                    "UPDATE executions SET abort_cause=?, updated_at=? \
                     WHERE project=? AND domain=? AND name=?",
                    params![cause, now, k.project, k.domain, k.name],
                )
                .map_err(backend)?;
                Some(AbortOutcome::Requested)
            }
        };
        tx.commit().map_err(backend)?;
        Ok(outcome)
    }
    fn commit_round(&self, c: &RoundCommit) -> Result<CommitOutcome> {
        let k = &c.key;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        if let Some(fence) = &c.fence {
            // The one writer connection serialises this check with every takeover.
            let held: Option<(String, i64)> = tx
                .prepare_cached(
                    "SELECT owner, epoch FROM leases WHERE project=? AND domain=? AND name=?",
                )
                .and_then(|mut s| {
                    s.query_row(params![k.project, k.domain, k.name], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(backend)?;
            if held.as_ref() != Some(&(fence.owner.clone(), fence.epoch)) {
                return Ok(CommitOutcome::Fenced);
            }
        }
        let n = tx
            .prepare_cached(
                "UPDATE executions SET phase=?, record=?, state=?, revision=revision+1, updated_at=? \
                 WHERE project=? AND domain=? AND name=? AND revision=?",
            )
            .and_then(|mut s| {
                s.execute(params![
                    c.phase, c.record, c.state, c.now, k.project, k.domain, k.name, c.revision
                ])
            })
            .map_err(backend)?;
        if n != 1 {
            return Ok(CommitOutcome::Conflict);
        }
        {
            let mut node = tx
                .prepare_cached(&format!(
                    "INSERT INTO node_executions ({NODE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?) \
                     ON CONFLICT (project, domain, exec_name, node_id) DO UPDATE SET \
                     phase=excluded.phase, record=excluded.record, state=excluded.state, \
                     updated_at=excluded.updated_at"
                ))
                .map_err(backend)?;
            for r in &c.nodes {
                node.execute(params![
                    k.project,
                    k.domain,
                    k.name,
                    r.node_id,
                    r.parent_id,
                    r.phase,
                    r.record,
                    r.state,
                    r.created_at,
                    r.updated_at
                ])
                .map_err(backend)?;
            }
            let mut task = tx
                .prepare_cached(&format!(
                    "INSERT INTO task_executions ({TASK_COLS}) VALUES (?,?,?,?,?,?,?,?,?) \
                     ON CONFLICT (project, domain, exec_name, node_id, attempt) DO UPDATE SET \
                     phase=excluded.phase, record=excluded.record, updated_at=excluded.updated_at"
                ))
                .map_err(backend)?;
            for r in &c.tasks {
                task.execute(params![
                    k.project,
                    k.domain,
                    k.name,
                    r.node_id,
                    r.attempt,
                    r.phase,
                    r.record,
                    r.created_at,
                    r.updated_at
                ])
                .map_err(backend)?;
            }
            let mut ev = tx
                .prepare_cached(
                    "INSERT INTO events (project, domain, exec_name, kind, payload, owner) \
                     VALUES (?,?,?,?,?,?)",
                )
                .map_err(backend)?;
            let owner = c.fence.as_ref().map_or("", |f| f.owner.as_str());
            for e in &c.events {
                ev.execute(params![
                    k.project, k.domain, k.name, e.kind, e.payload, owner
                ])
                .map_err(backend)?;
            }
        }
        crate::outbox::insert(&tx, &c.notifications)?;
        if is_terminal_phase(c.phase) {
            tx.execute(
                "DELETE FROM leases WHERE project=? AND domain=? AND name=?",
                params![k.project, k.domain, k.name],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(CommitOutcome::Committed)
    }
    fn get_node_execution(&self, k: &ExecKey, node_id: &str) -> Result<Option<NodeRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {NODE_COLS} FROM node_executions \
                 WHERE project=? AND domain=? AND exec_name=? AND node_id=?"
            ))
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name, node_id], node_row)
                    .optional()
            })
            .map_err(backend)
    }
    fn get_task_execution(
        &self,
        k: &ExecKey,
        node_id: &str,
        attempt: u32,
    ) -> Result<Option<TaskRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM task_executions \
                 WHERE project=? AND domain=? AND exec_name=? AND node_id=? AND attempt=?"
            ))
            .and_then(|mut s| {
                s.query_row(
                    params![k.project, k.domain, k.name, node_id, attempt],
                    task_row,
                )
                .optional()
            })
            .map_err(backend)
    }
}

impl SignalStore for SqliteStore {
    fn get_signal(&self, k: &ExecKey, signal_id: &str) -> Result<Option<SignalRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {SIGNAL_COLS} FROM signals \
                 WHERE project=? AND domain=? AND exec_name=? AND signal_id=?"
            ))
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name, signal_id], signal_row)
                    .optional()
            })
            .map_err(backend)
    }
    fn get_or_create_signal(
        &self,
        k: &ExecKey,
        signal_id: &str,
        ty: &[u8],
        now: i64,
    ) -> Result<SignalRecord> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO signals \
                 (project, domain, exec_name, signal_id, type, value, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                params![k.project, k.domain, k.name, signal_id, ty, now, now],
            )
            .map_err(backend)?;
        self.get_signal(k, signal_id)?
            .ok_or_else(|| Error::Backend(format!("signal {signal_id} vanished")))
    }
}

const SIGNAL_COLS: &str =
    "project, domain, exec_name, signal_id, type, value, created_at, updated_at";

fn signal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SignalRecord> {
    Ok(SignalRecord {
        exec: ExecKey {
            project: r.get(0)?,
            domain: r.get(1)?,
            name: r.get(2)?,
        },
        signal_id: r.get(3)?,
        ty: r.get(4)?,
        value: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}
