//! The engine's snapshot of one execution, persisted by the controller between rounds.

use crate::Nanos;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum WorkflowPhase {
    /// Created by the API; no round has run yet.
    #[default]
    Queued,
    Running,
    /// Every node is done; the workflow's outputs are being published.
    Succeeding,
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
}

impl WorkflowPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::TimedOut
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodePhase {
    #[default]
    NotYetStarted,
    /// The current attempt was handed to the executor.
    Queued,
    Running,
    /// The last attempt failed and another one starts at `retry_at`.
    RetryWait,
    Succeeded,
    Failed,
    Skipped,
    TimedOut,
    Aborted,
    /// Outputs taken from the execution this one recovers.
    Recovered,
}

impl NodePhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Skipped
                | Self::TimedOut
                | Self::Aborted
                | Self::Recovered
        )
    }
    /// Produced its outputs (itself or by recovery).
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Recovered)
    }
    /// Holds a parallelism slot.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::RetryWait)
    }
    fn blocks_downstream(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Skipped | Self::TimedOut | Self::Aborted
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TaskPhase {
    #[default]
    Queued,
    WaitingForResources,
    Running,
    Succeeded,
    Failed,
    Aborted,
    /// Placed and being prepared (images pulled, containers created).
    Initializing,
}

impl TaskPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Aborted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    User,
    System,
}

/// A failure as data: what the user sees in `ExecutionError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
    /// Whether another attempt may help (RECOVERABLE user errors, most system errors).
    pub recoverable: bool,
}

impl Failure {
    pub fn system(code: &str, message: impl Into<String>, recoverable: bool) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            kind: ErrorKind::System,
            recoverable,
        }
    }
    pub fn user(code: &str, message: impl Into<String>, recoverable: bool) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            kind: ErrorKind::User,
            recoverable,
        }
    }
}

/// The current attempt of a task node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptState {
    pub attempt: u32,
    pub phase: TaskPhase,
    pub created_at: Nanos,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub error: Option<Failure>,
    /// Why the attempt is not running yet (waiting for resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeState {
    pub phase: NodePhase,
    /// Current attempt number (0-based, Flyte's `retry_attempt`).
    pub attempt: u32,
    pub user_failures: u32,
    pub system_failures: u32,
    pub queued_at: Option<Nanos>,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub retry_at: Option<Nanos>,
    pub error: Option<Failure>,
    /// Everything it waited for is done; its outputs are being written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publishing: bool,
    /// Recovery: the original execution had no usable result for this node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_recoverable: bool,
    /// What only a node of its kind keeps.
    #[serde(default, skip_serializing_if = "KindState::is_plain")]
    pub kind: KindState,
}

/// The state only nodes of some kinds keep. Gates, subworkflows, launch plans and the
/// workflow's boundaries keep none beyond the common fields (`Plain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KindState {
    #[default]
    Plain,
    /// A task node, and a dynamic node (a task whose result may be a workflow).
    Task(Box<TaskState>),
    Branch(BranchState),
    Array(ArrayState),
}

impl KindState {
    fn is_plain(&self) -> bool {
        *self == KindState::Plain
    }
}

/// A task or dynamic node's attempt, memoization and generated workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptState>,
    /// Memoization of a cacheable task node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheState>,
    /// Dynamic node: where its generated workflow stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicPhase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BranchState {
    /// The unique id of the node the conditions chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
}

impl NodeState {
    /// The current attempt of a task or dynamic node.
    pub fn task(&self) -> Option<&AttemptState> {
        self.task_state()?.attempt.as_ref()
    }
    pub fn task_mut(&mut self) -> Option<&mut AttemptState> {
        match &mut self.kind {
            KindState::Task(t) => t.attempt.as_mut(),
            _ => None,
        }
    }
    pub fn cache(&self) -> Option<&CacheState> {
        self.task_state()?.cache.as_ref()
    }
    pub fn cache_mut(&mut self) -> Option<&mut CacheState> {
        match &mut self.kind {
            KindState::Task(t) => t.cache.as_mut(),
            _ => None,
        }
    }
    pub fn dynamic(&self) -> Option<DynamicPhase> {
        self.task_state()?.dynamic
    }
    pub fn array(&self) -> Option<&ArrayState> {
        match &self.kind {
            KindState::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn array_mut(&mut self) -> Option<&mut ArrayState> {
        match &mut self.kind {
            KindState::Array(a) => Some(a),
            _ => None,
        }
    }
    /// A branch's chosen node (its unique id).
    pub fn chosen(&self) -> Option<&str> {
        match &self.kind {
            KindState::Branch(b) => b.chosen.as_deref(),
            _ => None,
        }
    }
    fn task_state(&self) -> Option<&TaskState> {
        match &self.kind {
            KindState::Task(t) => Some(t),
            _ => None,
        }
    }
    /// The task state, made if the node had none yet.
    pub fn task_state_mut(&mut self) -> &mut TaskState {
        if !matches!(self.kind, KindState::Task(_)) {
            self.kind = KindState::Task(Box::default());
        }
        match &mut self.kind {
            KindState::Task(t) => t,
            _ => unreachable!("set just above"),
        }
    }
    pub fn set_task(&mut self, attempt: AttemptState) {
        self.task_state_mut().attempt = Some(attempt);
    }
    pub fn set_cache(&mut self, cache: CacheState) {
        self.task_state_mut().cache = Some(cache);
    }
    pub fn set_dynamic(&mut self, phase: DynamicPhase) {
        self.task_state_mut().dynamic = Some(phase);
    }
    pub fn set_array(&mut self, array: ArrayState) {
        self.kind = KindState::Array(array);
    }
    pub fn set_chosen(&mut self, unique_id: String) {
        self.kind = KindState::Branch(BranchState {
            chosen: Some(unique_id),
        });
    }
}

/// Where a cacheable node stands with the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStatus {
    /// Looking its inputs up.
    Lookup,
    /// An identical run holds the reservation (cache_serialize); looking again later.
    Waiting,
    /// Reused an artifact; the task did not run.
    Hit,
    /// Not in the catalog: the task runs, then its outputs are filed.
    Miss,
    /// The outputs were filed.
    Populated,
    PutFailure,
    /// No key could be made (e.g. no cache version): runs uncached.
    LookupFailure,
    /// `overwrite_cache`: ran without looking; its outputs replace the filed ones.
    Skipped,
    /// A serialized run failed and gave its reservation back.
    Released,
}

/// A catalog entry a node reused or filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CatalogRef {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub version: String,
    pub tag: String,
    pub artifact_id: String,
    pub source_execution: String,
    pub source_node: String,
    pub source_attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheState {
    pub status: CacheStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogRef>,
    /// While `Waiting`: when to look the entry up again (its own time, not the node's
    /// `retry_at`, which is only a retry's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_at: Option<Nanos>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DynamicPhase {
    /// The task wrote futures.pb; it is being compiled into a workflow.
    Compiling,
    /// The generated workflow is part of the plan and runs.
    Executing,
}

/// Per-item state of an array node, kept compact: one byte per item plus sparse maps for
/// what only some items have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ArrayState {
    /// One character per item: see [`Item`].
    pub items: String,
    /// Current attempt of items past their first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempts: BTreeMap<u32, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_failures: BTreeMap<u32, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retry_at: BTreeMap<u32, Nanos>,
    /// The failure of items that failed for good (or last failed, while waiting to retry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<u32, Failure>,
    /// Items whose outputs came from the catalog.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub cache_hits: BTreeSet<u32>,
}

/// The phase of one array item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    NotStarted,
    /// Its inputs are being looked up in the catalog (cacheable task).
    Lookup,
    Queued,
    Running,
    RetryWait,
    Succeeded,
    /// Succeeded; its outputs are being filed in the catalog.
    Filing,
    Failed,
    Aborted,
}

impl Item {
    fn code(self) -> char {
        match self {
            Item::NotStarted => '.',
            Item::Lookup => 'c',
            Item::Filing => 'p',
            Item::Queued => 'q',
            Item::Running => 'r',
            Item::RetryWait => 'w',
            Item::Succeeded => 's',
            Item::Failed => 'f',
            Item::Aborted => 'a',
        }
    }
    fn of(c: u8) -> Item {
        match c {
            b'c' => Item::Lookup,
            b'p' => Item::Filing,
            b'q' => Item::Queued,
            b'r' => Item::Running,
            b'w' => Item::RetryWait,
            b's' => Item::Succeeded,
            b'f' => Item::Failed,
            b'a' => Item::Aborted,
            _ => Item::NotStarted,
        }
    }
    /// The phase a state character stands for.
    pub fn of_code(c: u8) -> Item {
        Item::of(c)
    }
    pub fn is_live(self) -> bool {
        matches!(self, Item::Queued | Item::Running)
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, Item::Succeeded | Item::Failed | Item::Aborted)
    }
}

impl ArrayState {
    pub fn new(size: usize) -> Self {
        ArrayState {
            items: ".".repeat(size),
            ..Default::default()
        }
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, i: u32) -> Item {
        self.items
            .as_bytes()
            .get(i as usize)
            .map_or(Item::NotStarted, |c| Item::of(*c))
    }
    pub fn set(&mut self, i: u32, p: Item) {
        let i = i as usize;
        if i < self.items.len() {
            let mut buf = [0u8; 4];
            self.items
                .replace_range(i..i + 1, p.code().encode_utf8(&mut buf));
        }
    }
    pub fn attempt(&self, i: u32) -> u32 {
        self.attempts.get(&i).copied().unwrap_or(0)
    }
    pub fn count(&self, p: Item) -> usize {
        let c = p.code() as u8;
        self.items.bytes().filter(|b| *b == c).count()
    }
    /// Items whose phase or attempt differs from `before` (every item when there was none).
    pub fn changed_since(&self, before: Option<&ArrayState>) -> Vec<u32> {
        let old = before.map(|b| b.items.as_bytes()).unwrap_or_default();
        self.items
            .bytes()
            .enumerate()
            .map(|(i, c)| (i as u32, c))
            .filter(|&(i, c)| {
                old.get(i as usize) != Some(&c)
                    || before.is_some_and(|b| b.attempt(i) != self.attempt(i))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// A number that grows whenever any item moves on (a new attempt, a later phase):
    /// the version of the array's TaskExecution within one phase.
    pub fn progress(&self) -> u64 {
        // A retry waits at the start of a new attempt, which outweighs any phase.
        let rank = |c: u8| match Item::of(c) {
            Item::NotStarted => 0u64,
            Item::Lookup => 1,
            Item::RetryWait => 2,
            Item::Queued => 3,
            Item::Running => 4,
            Item::Filing => 5,
            Item::Succeeded | Item::Failed | Item::Aborted => 6,
        };
        let phases: u64 = self.items.bytes().map(rank).sum();
        let attempts: u64 = self.attempts.values().map(|a| u64::from(*a) * 7).sum();
        phases + attempts
    }

    /// Items (and their attempts) the executor should be asked about.
    pub fn live(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.items
            .bytes()
            .enumerate()
            .filter(|(_, c)| Item::of(*c).is_live())
            .map(|(i, _)| (i as u32, self.attempt(i as u32)))
    }
}

impl NodeState {
    pub(crate) fn blocks_downstream(&self) -> bool {
        self.phase.blocks_downstream()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecState {
    pub phase: WorkflowPhase,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub error: Option<Failure>,
    pub abort_cause: Option<String>,
    /// One entry per plan node, in plan order. Not part of the header encoding: the
    /// controller stores each node's state with that node (see `NodeState::encode`), so a
    /// round writes only what changed.
    #[serde(skip)]
    pub nodes: Vec<NodeState>,
}

impl ExecState {
    /// The state of a fresh execution of a plan with `n` nodes.
    pub fn new(n: usize) -> Self {
        ExecState {
            nodes: vec![NodeState::default(); n],
            ..Default::default()
        }
    }

    /// The execution-level part (everything but `nodes`).
    pub fn encode_header(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Rebuilds a state from its header and the encoded states of some nodes (by plan
    /// index); nodes without one have not started.
    pub fn decode(
        header: &[u8],
        n: usize,
        nodes: impl IntoIterator<Item = (usize, Vec<u8>)>,
    ) -> Result<Self, serde_json::Error> {
        let mut s: ExecState = if header.is_empty() {
            ExecState::default()
        } else {
            serde_json::from_slice(header)?
        };
        s.nodes = vec![NodeState::default(); n];
        for (i, bytes) in nodes {
            if let Some(slot) = s.nodes.get_mut(i) {
                *slot = NodeState::decode(&bytes)?;
            }
        }
        Ok(s)
    }
}

impl NodeState {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// Decodes a stored node state, upgrading rows written by earlier versions: their
    /// kind-specific fields (`task`, `cache`, `dynamic`, `chosen`, `array`) sat beside the
    /// common ones, and a waiting cache lookup kept its poll time in `retry_at`. A row is
    /// written back in the current form by the next round that changes the node.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut row: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(fields) = row.as_object_mut()
            && !fields.contains_key("kind")
        {
            let mut take = |key: &str| fields.remove(key).filter(|v| !v.is_null());
            let (attempt, cache, dynamic) = (take("task"), take("cache"), take("dynamic"));
            let (chosen, array) = (take("chosen"), take("array"));
            let kind = if let Some(array) = array {
                Some(serde_json::json!({ "array": array }))
            } else if let Some(chosen) = chosen {
                Some(serde_json::json!({ "branch": { "chosen": chosen } }))
            } else if attempt.is_some() || cache.is_some() || dynamic.is_some() {
                let mut task = serde_json::Map::new();
                for (key, value) in [("attempt", attempt), ("cache", cache), ("dynamic", dynamic)] {
                    if let Some(value) = value {
                        task.insert(key.into(), value);
                    }
                }
                Some(serde_json::json!({ "task": task }))
            } else {
                None
            };
            if let Some(kind) = kind {
                fields.insert("kind".into(), kind);
            }
        }
        let mut n: NodeState = serde_json::from_value(row)?;
        n.upgrade();
        Ok(n)
    }

    fn upgrade(&mut self) {
        let queued = self.phase == NodePhase::Queued;
        let retry_at = self.retry_at;
        if let Some(c) = self.cache_mut()
            && c.status == CacheStatus::Waiting
            && c.poll_at.is_none()
            && queued
        {
            c.poll_at = retry_at;
            self.retry_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_waiting_lookup_keeps_its_poll_time_apart_from_retries() {
        // A row written before the poll time had its own field.
        let old = br#"{"phase":"Queued","attempt":0,"user_failures":0,"system_failures":0,
            "queued_at":5,"started_at":null,"finished_at":null,"retry_at":42,"error":null,
            "task":null,"cache":{"status":"Waiting"}}"#;
        let n = NodeState::decode(old).unwrap();
        assert_eq!(n.retry_at, None);
        assert_eq!(n.cache().unwrap().poll_at, Some(42));
        // A node waiting to retry keeps its retry time.
        let retrying = br#"{"phase":"RetryWait","attempt":0,"user_failures":1,
            "system_failures":0,"queued_at":5,"started_at":6,"finished_at":null,
            "retry_at":42,"error":null,"task":null,"cache":{"status":"Miss"}}"#;
        assert_eq!(NodeState::decode(retrying).unwrap().retry_at, Some(42));
        // What is written now reads back as it was.
        assert_eq!(NodeState::decode(&n.encode()).unwrap(), n);
    }

    #[test]
    fn stored_rows_of_every_kind_move_their_fields_into_the_kind_state() {
        let common = r#""phase":"Running","attempt":1,"user_failures":1,"system_failures":0,
            "queued_at":5,"started_at":6,"finished_at":null,"retry_at":null,"error":null"#;
        let attempt = r#"{"attempt":1,"phase":"Running","created_at":7,"started_at":8,
            "finished_at":null,"error":null}"#;
        let row = |rest: &str| format!("{{{common},{rest}}}");
        let decode = |rest: &str| NodeState::decode(row(rest).as_bytes()).unwrap();

        let task = decode(&format!(
            r#""task":{attempt},"cache":{{"status":"Miss"}},"dynamic":"Executing""#
        ));
        assert_eq!(
            task.task().map(|t| (t.attempt, t.phase)),
            Some((1, TaskPhase::Running))
        );
        assert_eq!(task.cache().map(|c| c.status), Some(CacheStatus::Miss));
        assert_eq!(task.dynamic(), Some(DynamicPhase::Executing));
        assert_eq!(
            (task.attempt, task.user_failures, task.started_at),
            (1, 1, Some(6))
        );

        let branch = decode(r#""task":null,"chosen":"n0-0-n1""#);
        assert_eq!(branch.chosen(), Some("n0-0-n1"));
        assert_eq!(branch.task(), None);

        let array = decode(r#""task":null,"array":{"items":"sr.","attempts":{"1":2}}"#);
        let items = array.array().unwrap();
        assert_eq!(
            (items.get(0), items.get(1), items.attempt(1)),
            (Item::Succeeded, Item::Running, 2)
        );

        let gate = decode(r#""task":null"#);
        assert_eq!(gate.kind, KindState::Plain);
        assert_eq!(gate.phase, NodePhase::Running);

        // Each reads back as it was once written in the current form, which keeps the
        // kind's fields under `kind` only.
        for n in [task, branch, array, gate] {
            let written = n.encode();
            let fields: serde_json::Value = serde_json::from_slice(&written).unwrap();
            for legacy in ["task", "cache", "dynamic", "chosen", "array"] {
                assert!(
                    fields.get(legacy).is_none(),
                    "{legacy} written beside the kind"
                );
            }
            assert_eq!(NodeState::decode(&written).unwrap(), n);
        }
    }

    #[test]
    fn changes_of_a_large_array_are_the_items_that_moved() {
        let before = ArrayState::new(10_000);
        let mut after = before.clone();
        after.set(7, Item::Running);
        after.set(9_999, Item::Succeeded);
        after.attempts.insert(42, 1);
        assert_eq!(after.changed_since(Some(&before)), vec![7, 42, 9_999]);
        assert_eq!(after.changed_since(Some(&after)), Vec::<u32>::new());
        assert_eq!(after.changed_since(None).len(), 10_000);
    }

    #[test]
    fn progress_grows_with_every_move_including_retries() {
        let mut a = ArrayState::new(3);
        let mut last = a.progress();
        let steps: [(u32, Item, Option<u32>); 6] = [
            (0, Item::Queued, None),
            (0, Item::Running, None),
            (0, Item::RetryWait, Some(1)),
            (0, Item::Queued, None),
            (0, Item::Running, None),
            (0, Item::Succeeded, None),
        ];
        for (item, phase, attempt) in steps {
            a.set(item, phase);
            if let Some(n) = attempt {
                a.attempts.insert(item, n);
            }
            let now = a.progress();
            assert!(now > last, "{phase:?}: {now} <= {last}");
            last = now;
        }
    }
}
