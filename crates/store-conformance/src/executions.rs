//! Executions, their node, task and event records, aborts and signals.

use crate::{key, query};
use contrail_store::{
    AbortOutcome, Column, CommitOutcome, EventRecord, ExecutionRecord, Filter, ListQuery,
    NodeRecord, Op, RoundCommit, Store, TaskRecord,
};
use std::sync::Arc;

/// The unfinished executions, oldest first, as a controller's claim finds them (nothing
/// else holds a lease in these checks).
fn unfinished(s: &dyn Store) -> Vec<contrail_store::ExecKey> {
    s.claim_executions("probe", 0, 0, 1000, true)
        .unwrap()
        .into_iter()
        .map(|g| g.key)
        .collect()
}

pub(crate) fn exec(name: &str, t: i64) -> ExecutionRecord {
    ExecutionRecord {
        key: key(name),
        phase: 1,
        launch_plan: "lp".into(),
        workflow: "wf".into(),
        record: vec![1],
        workflow_closure: vec![2],
        inputs_uri: format!("s3://b/{name}/inputs-1"),
        created_at: t,
        updated_at: t,
        ..Default::default()
    }
}

fn node(exec: &str, id: &str, parent: &str, phase: i32, t: i64) -> NodeRecord {
    NodeRecord {
        exec: key(exec),
        node_id: id.into(),
        parent_id: parent.into(),
        phase,
        record: vec![phase as u8],
        state: vec![7, phase as u8],
        created_at: t,
        updated_at: t,
    }
}

fn task(exec: &str, node: &str, attempt: u32, phase: i32, t: i64) -> TaskRecord {
    TaskRecord {
        exec: key(exec),
        node_id: node.into(),
        attempt,
        phase,
        record: vec![attempt as u8, phase as u8],
        created_at: t,
        updated_at: t,
    }
}

pub(crate) fn round(name: &str, revision: i64, phase: i32) -> RoundCommit {
    RoundCommit {
        key: key(name),
        revision,
        phase,
        record: vec![9, phase as u8],
        state: b"{}".to_vec(),
        now: 6,
        ..Default::default()
    }
}

pub fn commits_are_conditional_and_atomic(s: Arc<dyn Store>) {
    assert!(s.create_execution(&exec("e1", 1)).unwrap());
    assert!(
        !s.create_execution(&exec("e1", 2)).unwrap(),
        "names are unique"
    );
    let got = s.get_execution(&key("e1")).unwrap().unwrap();
    assert!(
        got.workflow_closure.is_empty(),
        "reads leave the closure out"
    );
    assert_eq!(s.get_workflow_closure(&key("e1")).unwrap(), Some(vec![2]));
    let first = RoundCommit {
        nodes: vec![node("e1", "n0", "", 1, 5)],
        tasks: vec![task("e1", "n0", 0, 1, 5)],
        events: vec![EventRecord {
            kind: "workflow",
            payload: vec![1],
            owner: String::new(),
        }],
        ..round("e1", 0, 2)
    };
    assert_eq!(s.commit_round(&first).unwrap(), CommitOutcome::Committed);
    // The same revision again is a conflict and changes nothing.
    let stale = RoundCommit {
        phase: 6,
        nodes: vec![node("e1", "n0", "", 5, 5)],
        events: vec![EventRecord {
            kind: "node",
            payload: vec![2],
            owner: String::new(),
        }],
        ..first.clone()
    };
    assert_eq!(s.commit_round(&stale).unwrap(), CommitOutcome::Conflict);
    let e = s.get_execution(&key("e1")).unwrap().unwrap();
    assert_eq!((e.phase, e.revision, e.record), (2, 1, vec![9, 2]));
    let head = s.get_execution_head(&key("e1")).unwrap().unwrap();
    assert_eq!((head.phase, head.revision), (2, 1));
    assert_eq!(
        s.get_node_execution(&key("e1"), "n0")
            .unwrap()
            .unwrap()
            .phase,
        1
    );
    assert_eq!(s.list_events(&key("e1")).unwrap().len(), 1);
    assert_eq!(unfinished(s.as_ref()), vec![key("e1")]);
    // The next revision updates rows in place and appends to the log.
    let next = RoundCommit {
        nodes: vec![
            node("e1", "n0", "", 3, 9),
            node("e1", "n0-0-n1", "n0", 1, 9),
        ],
        tasks: vec![task("e1", "n0", 0, 3, 9), task("e1", "n0", 1, 1, 9)],
        events: vec![EventRecord {
            kind: "task",
            payload: vec![3],
            owner: String::new(),
        }],
        ..round("e1", 1, 4)
    };
    assert_eq!(s.commit_round(&next).unwrap(), CommitOutcome::Committed);
    let n = s.get_node_execution(&key("e1"), "n0").unwrap().unwrap();
    assert_eq!((n.phase, n.created_at, n.updated_at), (3, 5, 9));
    let events = s.list_events(&key("e1")).unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, e.payload.clone()))
            .collect::<Vec<_>>(),
        [("workflow", vec![1]), ("task", vec![3])],
        "oldest first"
    );
    let mut states = s.list_node_states(&key("e1")).unwrap();
    states.sort();
    assert_eq!(
        states,
        [
            ("n0".to_string(), vec![7, 3]),
            ("n0-0-n1".to_string(), vec![7, 1])
        ]
    );
    assert!(unfinished(s.as_ref()).is_empty(), "SUCCEEDED is terminal");
    assert_eq!(
        s.get_task_execution(&key("e1"), "n0", 0)
            .unwrap()
            .unwrap()
            .phase,
        3
    );
    assert!(s.get_task_execution(&key("e1"), "n0", 7).unwrap().is_none());
    assert_eq!(
        s.commit_round(&round("gone", 0, 2)).unwrap(),
        CommitOutcome::Conflict,
        "a missing execution is a conflict"
    );
}

pub fn abort_requests_are_recorded_once(s: Arc<dyn Store>) {
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
    let a = s.get_execution(&key("a")).unwrap().unwrap();
    assert_eq!(a.abort_cause.as_deref(), Some("stop"));
    let mut done = exec("b", 1);
    done.phase = 6;
    s.create_execution(&done).unwrap();
    assert_eq!(
        s.request_abort(&key("b"), "x", 2).unwrap(),
        Some(AbortOutcome::AlreadyTerminal)
    );
    assert_eq!(unfinished(s.as_ref()), vec![key("a")]);
}

pub fn execution_lists_filter_and_page(s: Arc<dyn Store>) {
    for i in 0..5 {
        let mut e = exec(&format!("e{i}"), i);
        e.phase = if i % 2 == 0 { 4 } else { 6 };
        s.create_execution(&e).unwrap();
    }
    let mut q = query(2);
    q.filters = vec![Filter {
        column: Column::Phase,
        op: Op::Eq,
        values: vec!["4".into()],
    }];
    let names = |q: &ListQuery| -> Vec<String> {
        s.list_executions(q)
            .unwrap()
            .into_iter()
            .map(|e| e.key.name)
            .collect()
    };
    assert_eq!(names(&q), ["e4", "e2"], "newest first");
    q.offset = 2;
    assert_eq!(names(&q), ["e0"]);
    let mut by_name = query(10);
    by_name.sort = Some((Column::Name, false));
    by_name.filters = vec![Filter {
        column: Column::Phase,
        op: Op::ValueIn,
        values: vec!["6".into(), "9".into()],
    }];
    assert_eq!(names(&by_name), ["e1", "e3"]);
    let listed = s.list_executions(&query(1)).unwrap();
    assert!(listed[0].workflow_closure.is_empty() && listed[0].state.is_empty());
}

pub fn node_and_task_lists_filter_and_page(s: Arc<dyn Store>) {
    s.create_execution(&exec("e", 1)).unwrap();
    let c = RoundCommit {
        nodes: vec![
            node("e", "b", "", 3, 2),
            node("e", "a", "", 5, 1),
            node("e", "c", "", 3, 3),
            node("e", "b-0-x", "b", 3, 4),
        ],
        tasks: vec![
            task("e", "a", 0, 5, 1),
            task("e", "a", 1, 3, 2),
            task("e", "a", 2, 3, 3),
        ],
        ..round("e", 0, 2)
    };
    assert_eq!(s.commit_round(&c).unwrap(), CommitOutcome::Committed);
    let ids = |parent: &str, q: &ListQuery| -> Vec<String> {
        s.list_node_executions(&key("e"), parent, q)
            .unwrap()
            .into_iter()
            .map(|n| n.node_id)
            .collect()
    };
    assert_eq!(ids("", &query(10)), ["a", "b", "c"], "oldest first");
    assert_eq!(ids("b", &query(10)), ["b-0-x"]);
    let mut running = query(10);
    running.filters = vec![Filter {
        column: Column::Phase,
        op: Op::Eq,
        values: vec!["3".into()],
    }];
    running.sort = Some((Column::CreatedAt, true));
    running.limit = 1;
    running.offset = 1;
    assert_eq!(ids("", &running), ["b"]);
    let attempts: Vec<u32> = s
        .list_task_executions(&key("e"), "a", &query(2))
        .unwrap()
        .into_iter()
        .map(|t| t.attempt)
        .collect();
    assert_eq!(attempts, [0, 1]);
}

pub fn signals_are_created_once_and_set(s: Arc<dyn Store>) {
    let first = s
        .get_or_create_signal(&key("e"), "approve", b"bool", 1)
        .unwrap();
    assert_eq!(
        (first.ty.as_slice(), first.value.as_ref()),
        (&b"bool"[..], None)
    );
    let again = s
        .get_or_create_signal(&key("e"), "approve", b"int", 2)
        .unwrap();
    assert_eq!(
        (again.ty, again.created_at),
        (b"bool".to_vec(), 1),
        "created once"
    );
    assert!(!s.set_signal(&key("e"), "nope", b"v", 3).unwrap());
    assert!(s.set_signal(&key("e"), "approve", b"yes", 3).unwrap());
    let set = s.get_signal(&key("e"), "approve").unwrap().unwrap();
    assert_eq!((set.value, set.updated_at), (Some(b"yes".to_vec()), 3));
    // Set once: a second value never replaces the one the gate may have taken.
    assert!(!s.set_signal(&key("e"), "approve", b"no", 4).unwrap());
    let set = s.get_signal(&key("e"), "approve").unwrap().unwrap();
    assert_eq!(set.value, Some(b"yes".to_vec()));
    s.get_or_create_signal(&key("e"), "second", b"int", 4)
        .unwrap();
    s.get_or_create_signal(&key("other"), "third", b"int", 5)
        .unwrap();
    let listed: Vec<String> = s
        .list_signals(&key("e"), &query(10))
        .unwrap()
        .into_iter()
        .map(|s| s.signal_id)
        .collect();
    assert_eq!(listed, ["approve", "second"]);
}
