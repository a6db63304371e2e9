//! The execution half of the SQLite adapter.

use crate::{SqliteStore, backend, column};
use contrail_store::{
    AbortOutcome, Column, CommitOutcome, Error, EventRecord, ExecHead, ExecKey, ExecutionRecord,
    ExecutionStore, ListQuery, NodeRecord, Result, RoundCommit, SignalRecord, TaskRecord,
    is_terminal_phase,
};
use rusqlite::{OptionalExtension, params, types::Value};

const EXEC_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     workflow_closure, state, abort_cause, revision, created_at, updated_at";
/// The columns without the workflow closure (reads).
const EXEC_READ_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     x'', state, abort_cause, revision, created_at, updated_at";
/// The same columns with the two large immutable/derived blobs blanked (lists).
const EXEC_LIST_COLS: &str = "project, domain, name, phase, launch_plan, workflow, record, \
     x'', x'', abort_cause, revision, created_at, updated_at";

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
    })
}

fn exec_column(c: Column) -> &'static str {
    match c {
        Column::Version => "name",
        Column::State => "phase",
        other => column(other),
    }
}

fn node_column(c: Column) -> &'static str {
    match c {
        Column::Name | Column::Version => "node_id",
        Column::State => "phase",
        other => column(other),
    }
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
                    "INSERT INTO executions ({EXEC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) \
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
                    r.updated_at
                ],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

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

    fn list_executions(&self, q: &ListQuery) -> Result<Vec<ExecutionRecord>> {
        self.select_page(
            format!("SELECT {EXEC_LIST_COLS} FROM executions WHERE project=? AND domain=?"),
            vec![
                Value::Text(q.project.clone()),
                Value::Text(q.domain.clone()),
            ],
            q,
            exec_column,
            true,
            exec_row,
        )
    }

    fn list_active_executions(&self) -> Result<Vec<ExecKey>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT project, domain, name FROM executions WHERE phase NOT IN (4, 6, 7, 8) \
                 ORDER BY seq",
            )
            .map_err(backend)?;
        stmt.query_map([], |r| {
            Ok(ExecKey {
                project: r.get(0)?,
                domain: r.get(1)?,
                name: r.get(2)?,
            })
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
                    "INSERT INTO events (project, domain, exec_name, kind, payload) VALUES (?,?,?,?,?)",
                )
                .map_err(backend)?;
            for e in &c.events {
                ev.execute(params![k.project, k.domain, k.name, e.kind, e.payload])
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(CommitOutcome::Committed)
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
            node_column,
            false,
            node_row,
        )
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
            node_column,
            false,
            task_row,
        )
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

    fn list_events(&self, k: &ExecKey) -> Result<Vec<EventRecord>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, payload FROM events WHERE project=? AND domain=? AND exec_name=? \
                 ORDER BY seq",
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
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
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

    fn set_signal(&self, k: &ExecKey, signal_id: &str, value: &[u8], now: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE signals SET value=?, updated_at=? \
                 WHERE project=? AND domain=? AND exec_name=? AND signal_id=?",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ExecKey {
        ExecKey {
            project: "p".into(),
            domain: "d".into(),
            name: name.into(),
        }
    }

    fn exec(name: &str, t: i64) -> ExecutionRecord {
        ExecutionRecord {
            key: key(name),
            phase: 1,
            launch_plan: "lp".into(),
            workflow: "wf".into(),
            record: vec![1],
            workflow_closure: vec![2],
            created_at: t,
            updated_at: t,
            ..Default::default()
        }
    }

    fn q(limit: u32) -> ListQuery {
        ListQuery {
            project: "p".into(),
            domain: "d".into(),
            name: None,
            filters: vec![],
            sort: None,
            limit,
            offset: 0,
        }
    }

    #[test]
    fn commits_are_conditional_and_atomic_with_records_and_events() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(s.create_execution(&exec("e1", 1)).unwrap());
        assert!(
            !s.create_execution(&exec("e1", 2)).unwrap(),
            "names are unique"
        );
        let node = |phase| NodeRecord {
            exec: key("e1"),
            node_id: "n0".into(),
            phase,
            record: vec![phase as u8],
            created_at: 5,
            updated_at: 5,
            ..Default::default()
        };
        let commit = RoundCommit {
            key: key("e1"),
            revision: 0,
            phase: 2,
            record: vec![9],
            state: b"{}".to_vec(),
            nodes: vec![node(1)],
            tasks: vec![TaskRecord {
                exec: key("e1"),
                node_id: "n0".into(),
                attempt: 0,
                phase: 1,
                record: vec![7],
                created_at: 5,
                updated_at: 5,
            }],
            events: vec![EventRecord {
                kind: "workflow",
                payload: vec![1],
            }],
            now: 6,
        };
        assert_eq!(s.commit_round(&commit).unwrap(), CommitOutcome::Committed);
        // The same revision again is a conflict and changes nothing.
        let stale = RoundCommit {
            phase: 6,
            nodes: vec![node(5)],
            ..commit.clone()
        };
        assert_eq!(s.commit_round(&stale).unwrap(), CommitOutcome::Conflict);
        let e = s.get_execution(&key("e1")).unwrap().unwrap();
        assert_eq!(
            (e.phase, e.revision, e.record.as_slice()),
            (2, 1, &[9u8][..])
        );
        assert_eq!(
            s.get_node_execution(&key("e1"), "n0")
                .unwrap()
                .unwrap()
                .phase,
            1
        );
        assert_eq!(s.list_events(&key("e1")).unwrap().len(), 1);
        // The next revision updates the node in place and appends to the log.
        let next = RoundCommit {
            revision: 1,
            phase: 4,
            nodes: vec![node(3)],
            tasks: vec![],
            ..commit.clone()
        };
        assert_eq!(s.commit_round(&next).unwrap(), CommitOutcome::Committed);
        let n = s.get_node_execution(&key("e1"), "n0").unwrap().unwrap();
        assert_eq!((n.phase, n.created_at), (3, 5));
        assert_eq!(s.list_events(&key("e1")).unwrap().len(), 2);
        assert_eq!(
            s.list_node_executions(&key("e1"), "", &q(10))
                .unwrap()
                .len(),
            1
        );
        assert!(
            s.list_node_executions(&key("e1"), "n0", &q(10))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.get_task_execution(&key("e1"), "n0", 0)
                .unwrap()
                .unwrap()
                .record,
            vec![7]
        );
        assert!(
            s.list_active_executions().unwrap().is_empty(),
            "SUCCEEDED is terminal"
        );
    }

    #[test]
    fn abort_requests_are_recorded_once_and_not_for_finished_executions() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_execution(&exec("a", 1)).unwrap();
        assert_eq!(s.request_abort(&key("zz"), "x", 2).unwrap(), None);
        assert_eq!(
            s.request_abort(&key("a"), "stop", 2).unwrap(),
            Some(AbortOutcome::Requested)
        );
        assert_eq!(
            s.request_abort(&key("a"), "again", 3).unwrap(),
            Some(AbortOutcome::AlreadyRequested)
        );
        assert_eq!(
            s.get_execution(&key("a"))
                .unwrap()
                .unwrap()
                .abort_cause
                .as_deref(),
            Some("stop")
        );
        assert_eq!(s.list_active_executions().unwrap(), vec![key("a")]);
        let mut done = exec("b", 1);
        done.phase = 6;
        s.create_execution(&done).unwrap();
        assert_eq!(
            s.request_abort(&key("b"), "x", 2).unwrap(),
            Some(AbortOutcome::AlreadyTerminal)
        );
    }

    #[test]
    fn execution_lists_filter_by_phase_and_page() {
        let s = SqliteStore::in_memory().unwrap();
        for i in 0..5 {
            let mut e = exec(&format!("e{i}"), i);
            e.phase = if i % 2 == 0 { 4 } else { 6 };
            s.create_execution(&e).unwrap();
        }
        let mut query = q(2);
        query.filters = vec![contrail_store::Filter {
            column: Column::Phase,
            op: contrail_store::Op::Eq,
            values: vec!["4".into()],
        }];
        let page: Vec<String> = s
            .list_executions(&query)
            .unwrap()
            .into_iter()
            .map(|e| e.key.name)
            .collect();
        assert_eq!(page, vec!["e4", "e2"], "newest first");
        query.offset = 2;
        let rest = s.list_executions(&query).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(
            rest[0].workflow_closure.is_empty(),
            "lists leave the closure out"
        );
    }
}
