//! Execution records: what the API declares (an execution and its termination request) and
//! what the controller observes and commits (status, node and task records, events).
//!
//! Payloads are opaque bytes here as well: `record` fields hold canonically encoded
//! `admin.Execution` / `admin.NodeExecution` / `admin.TaskExecution` messages, `state` the
//! engine's own snapshot. The store only keys, orders and filters them.

use crate::{Fence, ListQuery, Result};
use crate::{RoundStore, SignalStore};

/// project / domain / name of one workflow execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ExecKey {
    pub project: String,
    pub domain: String,
    pub name: String,
}

impl std::fmt::Display for ExecKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.domain, self.name)
    }
}

/// Whether a `core.WorkflowExecution.Phase` is final: SUCCEEDED 4, FAILED 6, ABORTED 7,
/// TIMED_OUT 8. (Adapters filtering in SQL spell the same set as `NOT IN (4, 6, 7, 8)`.)
pub fn is_terminal_phase(phase: i32) -> bool {
    matches!(phase, 4 | 6..=8)
}

/// One execution row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionRecord {
    pub key: ExecKey,
    /// `core.WorkflowExecution.Phase` as last committed (for filters and the claims of controllers).
    pub phase: i32,
    /// Launch plan (or task, for single-task executions) name, for filters.
    pub launch_plan: String,
    /// Workflow name, for filters.
    pub workflow: String,
    /// Canonical `admin.Execution` (id, spec, closure), rewritten by every controller commit.
    pub record: Vec<u8>,
    /// Canonical `core.CompiledWorkflowClosure` this execution runs. Immutable; only
    /// `create_execution` and `get_workflow_closure` carry it (reads leave it empty).
    pub workflow_closure: Vec<u8>,
    /// The engine's execution-level snapshot (node states live in the node rows); empty
    /// until the controller's first round.
    pub state: Vec<u8>,
    /// Set once by `TerminateExecution`; the controller reads it (desired state).
    pub abort_cause: Option<String>,
    /// Where the execution's inputs (`LiteralMap`) are. Named by their digest, so creators
    /// racing for one name never overwrite each other's: the row that wins names its own.
    /// Empty for executions made before this field (their inputs sit at the legacy key).
    pub inputs_uri: String,
    /// Bumped by every commit; commits are conditional on it (optimistic concurrency).
    pub revision: i64,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl ExecutionRecord {
    pub fn is_terminal(&self) -> bool {
        is_terminal_phase(self.phase)
    }
}

/// One node execution row (a node of the top-level workflow or nested under a parent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRecord {
    pub exec: ExecKey,
    pub node_id: String,
    /// The unique id of the parent node; empty for top-level nodes.
    pub parent_id: String,
    pub phase: i32,
    /// Canonical `admin.NodeExecution`.
    pub record: Vec<u8>,
    /// The engine's snapshot of this node (opaque here).
    pub state: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The small, often-read part of an execution row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecHead {
    pub phase: i32,
    pub revision: i64,
    pub abort_cause: Option<String>,
}

impl ExecHead {
    pub fn is_terminal(&self) -> bool {
        is_terminal_phase(self.phase)
    }
}

/// One task attempt row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRecord {
    pub exec: ExecKey,
    pub node_id: String,
    pub attempt: u32,
    pub phase: i32,
    /// Canonical `admin.TaskExecution`.
    pub record: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One entry of an execution's append-only event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// "workflow", "node" or "task".
    pub kind: &'static str,
    /// Canonical `event.{Workflow,Node,Task}ExecutionEvent`.
    pub payload: Vec<u8>,
    /// The replica whose round appended it: adapters write the commit's fence owner
    /// (empty without a fence) and ignore this field on writes.
    pub owner: String,
}

impl EventRecord {
    /// An event to append (its owner is the commit's fence owner).
    pub fn new(kind: &'static str, payload: Vec<u8>) -> Self {
        EventRecord {
            kind,
            payload,
            owner: String::new(),
        }
    }
}

/// Everything one controller round changes, committed atomically.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoundCommit {
    pub key: ExecKey,
    /// The revision the round started from; the commit fails with `Conflict` otherwise.
    pub revision: i64,
    pub phase: i32,
    pub record: Vec<u8>,
    pub state: Vec<u8>,
    pub nodes: Vec<NodeRecord>,
    pub tasks: Vec<TaskRecord>,
    pub events: Vec<EventRecord>,
    pub now: i64,
    /// The lease the round ran under; the commit fails with `Fenced` unless its owner
    /// still holds that epoch. `None` commits without a lease (tests, one-off repairs).
    pub fence: Option<Fence>,
    /// Messages about the phase this round moves the execution into (the outbox); a
    /// message whose id exists is not written again.
    pub notifications: Vec<crate::NotificationRecord>,
}

/// What a conditional commit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Someone else committed first (or the row is gone): reload and run the round again.
    Conflict,
    /// The fence's lease was taken over: this replica no longer owns the execution.
    Fenced,
}

/// The execution half of the storage port.
/// The rest of the execution tables, for the API: creation, listings, signals.
pub trait ExecutionStore: RoundStore + SignalStore {
    /// Inserts a new execution; false when the name is taken.
    fn create_execution(&self, rec: &ExecutionRecord) -> Result<bool>;
    /// Executions of a project/domain (`q.name` is ignored); `workflow_closure` and `state`
    /// are left empty.
    fn list_executions(&self, q: &ListQuery) -> Result<Vec<ExecutionRecord>>;

    /// Node executions of one execution under one parent (`""` = top level), in the
    /// query's order (default created_at ascending).
    fn list_node_executions(
        &self,
        key: &ExecKey,
        parent_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<NodeRecord>>;
    fn list_task_executions(
        &self,
        key: &ExecKey,
        node_id: &str,
        q: &ListQuery,
    ) -> Result<Vec<TaskRecord>>;
    /// The event log of one execution, oldest first.
    fn list_events(&self, key: &ExecKey) -> Result<Vec<EventRecord>>;

    /// Sets an existing signal's value once; `false` when there is no such signal or it
    /// has a value already (a value, once set, is the one the gate sees).
    fn set_signal(&self, key: &ExecKey, signal_id: &str, value: &[u8], now: i64) -> Result<bool>;
    fn list_signals(&self, key: &ExecKey, q: &ListQuery) -> Result<Vec<SignalRecord>>;
}

/// A signal a gate node waits for: its type (an encoded `core.LiteralType`) and, once
/// someone set it, its value (an encoded `core.Literal`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignalRecord {
    pub exec: ExecKey,
    pub signal_id: String,
    pub ty: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `request_abort` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    Requested,
    AlreadyRequested,
    AlreadyTerminal,
}
