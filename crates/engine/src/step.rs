//! One round of the engine.
//!
//! A round: apply what was observed, settle containers from the inside out (a branch whose
//! chosen node finished, a subworkflow whose members are all done, an array whose items
//! are), then walk the plan forward starting whatever became ready. Every node kind is a
//! small state machine over `NodeState`; anything that touches the world is an [`Effect`]
//! and comes back as an [`Observation`].

use crate::Nanos;
use crate::plan::{FailurePolicy, Gate, NodeKind, Plan};
use crate::state::{
    ArrayState, AttemptState, CacheState, CacheStatus, CatalogRef, DynamicPhase, ErrorKind,
    ExecState, Failure, Item, NodePhase, NodeState, TaskPhase, WorkflowPhase,
};
use contrail_idl::core;

/// Knobs that are not part of the workflow itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most task nodes holding a slot (queued, running or waiting to retry); 0 = unlimited.
    /// Also the default number of items an array node runs at once.
    pub max_parallelism: u32,
    /// SYSTEM failures a node may absorb before it fails.
    pub max_system_failures: u32,
    /// Delay before the second attempt; doubles per attempt up to `backoff_max`.
    pub backoff_base: Nanos,
    pub backoff_max: Nanos,
    /// The whole execution fails with TIMED_OUT after this long.
    pub workflow_timeout: Option<Nanos>,
    /// This execution recovers another one: each node first asks for the original's result.
    pub recover: bool,
    /// `overwrite_cache`: cacheable nodes run without looking up and replace what is filed.
    pub overwrite_cache: bool,
    /// How often a node waiting for a serialized identical run looks again.
    pub cache_poll: Nanos,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_parallelism: 25,
            max_system_failures: 3,
            backoff_base: 500_000_000,
            backoff_max: 30_000_000_000,
            workflow_timeout: None,
            recover: false,
            overwrite_cache: false,
            cache_poll: 1_000_000_000,
        }
    }
}

/// What one task attempt looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// The executor knows nothing of this attempt (never launched, or lost).
    Unknown,
    /// Launched; not running yet.
    Queued,
    /// Launched, waiting for CPU/memory; why, for the task's records.
    Waiting {
        reason: String,
    },
    /// Placed, being prepared to run (a pod pulling its image); why, for the records.
    Initializing {
        reason: String,
    },
    Running {
        started_at: Option<Nanos>,
    },
    Succeeded,
    /// Finished by writing `futures.pb`: a workflow to run instead of outputs.
    Dynamic,
    Failed(Failure),
}

/// What a child execution looks like from its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildStatus {
    /// No such execution (yet).
    Unknown,
    Running,
    Succeeded,
    Failed(Failure),
    Aborted,
}

/// The answer to a cache lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Filed outputs were copied to the node's outputs.
    Hit(CatalogRef),
    /// Not filed; the node may run (and holds the reservation when serialized).
    Miss(CatalogRef),
    /// Another run of the same inputs holds the reservation.
    Wait,
    /// No key can be made; the node runs uncached.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A task attempt (of a task node, or of one item of an array node).
    Task {
        node: usize,
        item: Option<u32>,
        attempt: u32,
        status: TaskStatus,
    },
    /// The attempt could not be launched because its inputs cannot be built (a data error;
    /// retrying cannot help).
    LaunchRejected {
        node: usize,
        item: Option<u32>,
        attempt: u32,
        failure: Failure,
    },
    /// A non-task node's inputs were resolved and written (or cannot be).
    Inputs {
        node: usize,
        result: Result<core::LiteralMap, Failure>,
    },
    /// A node's outputs were written (or cannot be built).
    NodeOutputs {
        node: usize,
        result: Result<(), Failure>,
    },
    /// A dynamic node's futures were compiled and added to the plan (or do not compile).
    Dynamic {
        node: usize,
        result: Result<(), Failure>,
    },
    /// The child execution of a launch-plan node.
    Child { node: usize, status: ChildStatus },
    /// The child execution of one item of an array node over a launch plan (its outputs
    /// are in the item's directory once it succeeded).
    ChildItem {
        node: usize,
        item: u32,
        status: ChildStatus,
    },
    /// The value of a gate's signal, if set.
    Signal {
        node: usize,
        value: Option<Box<core::Literal>>,
    },
    /// Whether the recovered execution's result for this node was reused.
    Recovery { node: usize, recovered: bool },
    /// What the catalog said about a cacheable node's inputs.
    Cache { node: usize, outcome: CacheOutcome },
    /// A cacheable node's outputs were filed (or could not be).
    CachePut {
        node: usize,
        result: Result<CatalogRef, String>,
    },
    /// What the catalog said about one array item's inputs.
    CacheItem {
        node: usize,
        item: u32,
        outcome: CacheOutcome,
    },
    /// One array item's outputs were filed (or could not be: the item stays succeeded).
    CachePutItem { node: usize, item: u32 },
    /// A failed serialized node gave its reservation back.
    CacheReleased { node: usize },
    /// The workflow outputs were written.
    OutputsPublished,
    /// The workflow outputs cannot be built from the node outputs.
    OutputsRejected(Failure),
    /// Someone asked for the execution to stop.
    AbortRequested { cause: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Make the workflow inputs available as the start node's outputs.
    PublishStart,
    /// Resolve the node's inputs and start this attempt (idempotent per node/item/attempt).
    Launch {
        node: usize,
        item: Option<u32>,
        attempt: u32,
    },
    /// Stop this attempt and release what it holds.
    Abort {
        node: usize,
        item: Option<u32>,
        attempt: u32,
    },
    /// Resolve a non-task node's input bindings, write them, report them back.
    ResolveInputs {
        node: usize,
    },
    /// Write a non-task (or dynamic) node's outputs, as its kind defines them.
    PublishNode {
        node: usize,
    },
    /// Compile the futures.pb of a dynamic node and extend the plan with it.
    CompileDynamic {
        node: usize,
    },
    /// Create the child execution of a launch-plan node (idempotent by name).
    LaunchChild {
        node: usize,
    },
    AbortChild {
        node: usize,
    },
    /// Create the child execution of one item of an array over a launch plan.
    LaunchChildItem {
        node: usize,
        item: u32,
    },
    AbortChildItem {
        node: usize,
        item: u32,
    },
    /// Make the gate's signal exist so it can be listed and set.
    CreateSignal {
        node: usize,
    },
    /// Reuse the recovered execution's result for this node, if it had one.
    TryRecover {
        node: usize,
    },
    /// Resolve a cacheable node's inputs and look them up (taking the reservation when
    /// serialized).
    CacheLookup {
        node: usize,
    },
    /// File a cacheable node's outputs (and release its reservation).
    CachePut {
        node: usize,
    },
    /// Give a failed serialized node's reservation back, so a waiting run need not wait
    /// for it to expire.
    CacheRelease {
        node: usize,
    },
    /// Look one array item's inputs up; a hit writes the item's outputs.
    CacheLookupItem {
        node: usize,
        item: u32,
    },
    /// File one array item's outputs.
    CachePutItem {
        node: usize,
        item: u32,
        attempt: u32,
    },
    /// Resolve the workflow's output bindings and write them.
    PublishOutputs,
}

impl Effect {
    /// Whether this effect starts work outside the store (an attempt, a child execution).
    ///
    /// Such effects are performed only after the round that decided them is committed: a
    /// round that is lost (a conflict, a failed commit, a crash) has then started nothing,
    /// and the committed round's next look finds its attempt unknown to the executor and
    /// starts it again under the same id.
    pub fn starts_work(&self) -> bool {
        matches!(
            self,
            Effect::Launch { .. } | Effect::LaunchChild { .. } | Effect::LaunchChildItem { .. }
        )
    }
}

/// Something outside the engine the controller must look at before a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Attempt {
        node: usize,
        item: Option<u32>,
        attempt: u32,
    },
    Child {
        node: usize,
    },
    Signal {
        node: usize,
    },
    /// A serialized cacheable node holds a reservation that must be kept alive.
    Reservation {
        node: usize,
    },
    /// The child execution of one item of an array over a launch plan.
    ChildItem {
        node: usize,
        item: u32,
    },
}

/// What the controller must observe for the next round.
pub fn watches(plan: &Plan, s: &ExecState) -> Vec<Watch> {
    let mut out = Vec::new();
    for (i, (p, n)) in plan.nodes.iter().zip(&s.nodes).enumerate() {
        if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) || n.publishing {
            continue;
        }
        match &p.kind {
            NodeKind::Task(_) if n.task.as_ref().is_some_and(|t| !t.phase.is_terminal()) => {
                out.push(Watch::Attempt {
                    node: i,
                    item: None,
                    attempt: n.attempt,
                });
                if p.cache == Some(true)
                    && n.cache
                        .as_ref()
                        .is_some_and(|c| c.status == CacheStatus::Miss)
                {
                    out.push(Watch::Reservation { node: i });
                }
            }
            NodeKind::Array(spec) => {
                if let Some(a) = &n.array {
                    if spec.launch_plan.is_some() {
                        out.extend(a.live().map(|(item, _)| Watch::ChildItem { node: i, item }));
                    } else {
                        out.extend(a.live().map(|(item, attempt)| Watch::Attempt {
                            node: i,
                            item: Some(item),
                            attempt,
                        }));
                    }
                }
            }
            NodeKind::LaunchPlan(_) if n.phase == NodePhase::Running => {
                out.push(Watch::Child { node: i })
            }
            NodeKind::Gate(Gate::Signal { .. } | Gate::Approve { .. })
                if n.phase == NodePhase::Running =>
            {
                out.push(Watch::Signal { node: i })
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub state: ExecState,
    pub effects: Vec<Effect>,
    /// The engine wants another round at this time even if nothing is observed
    /// (retry backoff, timeouts, sleeping gates).
    pub wake_at: Option<Nanos>,
    /// Indexes of the nodes whose state differs from the previous state.
    pub changed: Vec<usize>,
}

impl Step {
    /// Whether this round changed nothing and asks for nothing.
    pub fn is_noop(&self, prev: &ExecState) -> bool {
        self.effects.is_empty()
            && self.changed.is_empty()
            && self.state.phase == prev.phase
            && self.state.started_at == prev.started_at
            && self.state.finished_at == prev.finished_at
            && self.state.error == prev.error
            && self.state.abort_cause == prev.abort_cause
    }
}

struct Round<'a> {
    plan: &'a Plan,
    cfg: &'a Config,
    s: ExecState,
    fx: Vec<Effect>,
    now: Nanos,
}

/// Runs one round. Pure: the result depends only on the arguments.
pub fn step(plan: &Plan, cfg: &Config, prev: &ExecState, obs: &[Observation], now: Nanos) -> Step {
    let mut s = prev.clone();
    // A plan grows when dynamic nodes add their workflows; their nodes start fresh.
    s.nodes.resize(plan.nodes.len(), NodeState::default());
    let mut r = Round {
        plan,
        cfg,
        s,
        fx: Vec::new(),
        now,
    };
    r.run(obs);
    let wake_at = r.wake_at();
    let changed =
        r.s.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                prev.nodes
                    .get(*i)
                    .map_or(**n != NodeState::default(), |p| p != *n)
            })
            .map(|(i, _)| i)
            .collect();
    Step {
        state: r.s,
        effects: without_cancelled_starts(r.fx),
        wake_at,
        changed,
    }
}

/// A round that both starts and stops the same work (a retry launched, then the execution
/// failed) keeps only the stop: starts are performed after the commit, so a start left in
/// would run after its own abort.
fn without_cancelled_starts(effects: Vec<Effect>) -> Vec<Effect> {
    let stopped = |e: &Effect| match *e {
        Effect::Launch {
            node,
            item,
            attempt,
        } => effects.contains(&Effect::Abort {
            node,
            item,
            attempt,
        }),
        Effect::LaunchChild { node } => effects.contains(&Effect::AbortChild { node }),
        Effect::LaunchChildItem { node, item } => {
            effects.contains(&Effect::AbortChildItem { node, item })
        }
        _ => false,
    };
    let keep: Vec<bool> = effects.iter().map(|e| !stopped(e)).collect();
    effects
        .into_iter()
        .zip(keep)
        .filter_map(|(e, keep)| keep.then_some(e))
        .collect()
}

fn backoff(cfg: &Config, attempt: u32) -> Nanos {
    cfg.backoff_base
        .saturating_mul(1i64 << attempt.min(30))
        .min(cfg.backoff_max)
        .max(1)
}

impl Round<'_> {
    fn run(&mut self, obs: &[Observation]) {
        if self.s.phase.is_terminal() {
            return;
        }
        if let Some(cause) = obs.iter().find_map(|o| match o {
            Observation::AbortRequested { cause } => Some(cause.clone()),
            _ => None,
        }) {
            self.stop(None, NodePhase::Aborted, true);
            self.s.abort_cause = Some(cause);
            self.finish(WorkflowPhase::Aborted, None);
            return;
        }
        if self.s.phase == WorkflowPhase::Queued {
            self.s.phase = WorkflowPhase::Running;
            self.s.started_at = Some(self.now);
            let start = &mut self.s.nodes[0];
            start.phase = NodePhase::Succeeded;
            start.queued_at = Some(self.now);
            start.started_at = Some(self.now);
            start.finished_at = Some(self.now);
            self.fx.push(Effect::PublishStart);
        }
        if let (Some(t), Some(started)) = (self.cfg.workflow_timeout, self.s.started_at)
            && self.now >= started.saturating_add(t)
        {
            self.stop(None, NodePhase::Aborted, true);
            let secs = t as f64 / 1e9;
            self.finish(
                WorkflowPhase::TimedOut,
                Some(Failure::user(
                    "Timeout",
                    format!("execution exceeded its timeout of {secs}s"),
                    false,
                )),
            );
            return;
        }
        self.start_due_retries();
        for o in obs {
            self.observe(o);
        }
        self.check_deadlines();
        self.settle();
        if self.s.phase == WorkflowPhase::Succeeding {
            if obs.contains(&Observation::OutputsPublished) {
                let end = &mut self.s.nodes[self.plan.end];
                end.phase = NodePhase::Succeeded;
                end.finished_at = Some(self.now);
                self.finish(WorkflowPhase::Succeeded, None);
            } else if let Some(f) = obs.iter().find_map(|o| match o {
                Observation::OutputsRejected(f) => Some(f.clone()),
                _ => None,
            }) {
                let end = &mut self.s.nodes[self.plan.end];
                end.phase = NodePhase::Failed;
                end.error = Some(f.clone());
                end.finished_at = Some(self.now);
                self.finish(WorkflowPhase::Failed, Some(f));
            } else {
                self.fx.push(Effect::PublishOutputs);
            }
            return;
        }
        if let Some(f) = self.first_failure(0) {
            if self.plan.failure_policy == FailurePolicy::FailImmediately {
                self.stop(None, NodePhase::Aborted, false);
            }
            if self.plan.failure_policy == FailurePolicy::FailImmediately || !self.scope_active(0) {
                self.fail_root(f);
                return;
            }
        }
        self.walk();
        if let Some(f) = self.first_failure(0)
            && !self.scope_active(0)
        {
            self.fail_root(f);
        }
    }

    fn finish(&mut self, phase: WorkflowPhase, error: Option<Failure>) {
        self.s.phase = phase;
        self.s.finished_at = Some(self.now);
        if error.is_some() {
            self.s.error = error;
        }
    }

    /// The root failed with `f`: run its failure node first, if it has one.
    fn fail_root(&mut self, f: Failure) {
        if self.failure_handled(0) {
            self.finish(WorkflowPhase::Failed, Some(f));
        }
    }

    /// A failed scope first runs its failure node (`on_failure`), if it has one. True once
    /// the scope may end: it has no handler, or the handler finished.
    fn failure_handled(&mut self, scope: usize) -> bool {
        let Some(h) = self.plan.scopes[scope].failure_node else {
            return true;
        };
        match self.s.nodes[h].phase {
            NodePhase::NotYetStarted if matches!(self.plan.nodes[h].kind, NodeKind::Task(_)) => {
                self.launch(h, 0);
                false
            }
            p if p.is_active() => false,
            _ => true,
        }
    }

    /// The failure of the first failed or timed-out member of a scope, in plan order.
    fn first_failure(&self, scope: usize) -> Option<Failure> {
        self.plan.scopes[scope].members.iter().find_map(|&i| {
            let n = &self.s.nodes[i];
            match n.phase {
                NodePhase::Failed | NodePhase::TimedOut => {
                    Some(n.error.clone().unwrap_or_else(|| {
                        Failure::system(
                            "NodeFailed",
                            format!("node {} failed", self.plan.nodes[i].id),
                            false,
                        )
                    }))
                }
                _ => None,
            }
        })
    }

    /// Whether a scope still has work: a member holding a slot, or one ready to start
    /// (its upstream succeeded in this very round). A failed scope that lets its other
    /// nodes finish ends only once neither is left.
    fn scope_active(&self, scope: usize) -> bool {
        self.plan.scopes[scope].members.iter().any(|&i| {
            let n = &self.s.nodes[i];
            n.phase.is_active()
                || (n.phase == NodePhase::NotYetStarted
                    && !self.plan.nodes[i].on_failure
                    && self.readiness(i) == Some(true))
        })
    }

    /// Stops every active node (inside `within`, or everywhere), aborting what runs.
    /// Failure handlers keep running unless `handlers_too`.
    fn stop(&mut self, within: Option<usize>, phase: NodePhase, handlers_too: bool) {
        let stopped = |i: usize| {
            !(within.is_some_and(|w| !self.plan.is_inside(i, w))
                || (self.plan.nodes[i].on_failure && !handlers_too))
        };
        // Judged before any node changes: whether a node could have been launched.
        let unrecorded: Vec<Effect> = (0..self.s.nodes.len())
            .filter(|&i| stopped(i))
            .filter_map(|i| self.unrecorded_launch(i))
            .collect();
        self.fx.extend(unrecorded);
        let mut arrays = Vec::new();
        for i in 0..self.s.nodes.len() {
            let p = &self.plan.nodes[i];
            if !stopped(i) || !self.s.nodes[i].phase.is_active() {
                continue;
            }
            let now = self.now;
            let n = &mut self.s.nodes[i];
            match &p.kind {
                NodeKind::Task(_) if matches!(n.phase, NodePhase::Queued | NodePhase::Running) => {
                    if let Some(t) = n.task.as_mut().filter(|t| !t.phase.is_terminal()) {
                        self.fx.push(Effect::Abort {
                            node: i,
                            item: None,
                            attempt: n.attempt,
                        });
                        t.phase = TaskPhase::Aborted;
                        t.finished_at = Some(now);
                    }
                }
                NodeKind::Array(_) => arrays.push(i),
                NodeKind::LaunchPlan(_) if n.phase == NodePhase::Running => {
                    self.fx.push(Effect::AbortChild { node: i });
                }
                _ => {}
            }
            n.phase = phase;
            n.finished_at = Some(now);
            n.retry_at = None;
            n.publishing = false;
        }
        for i in arrays {
            self.stop_items(i);
        }
    }

    /// A launch is performed before the round that asked for it commits, so a crash in
    /// between can leave an attempt (or a child execution) running that no committed state
    /// names: the next attempt of a node that waits to retry, or the first of a node that
    /// was ready to start. Stopping the node stops that one too (the abort of what was
    /// never launched does nothing).
    fn unrecorded_launch(&self, i: usize) -> Option<Effect> {
        let n = &self.s.nodes[i];
        let next = match n.phase {
            NodePhase::NotYetStarted if self.readiness(i) == Some(true) => 0,
            NodePhase::RetryWait => n.attempt + 1,
            _ => return None,
        };
        match &self.plan.nodes[i].kind {
            NodeKind::Task(_) => Some(Effect::Abort {
                node: i,
                item: None,
                attempt: next,
            }),
            NodeKind::LaunchPlan(_) if n.phase == NodePhase::NotYetStarted => {
                Some(Effect::AbortChild { node: i })
            }
            _ => None,
        }
    }

    fn start_due_retries(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            if n.phase == NodePhase::RetryWait && n.retry_at.is_some_and(|t| t <= self.now) {
                let attempt = n.attempt + 1;
                self.launch(i, attempt);
            }
            let now = self.now;
            if let Some(a) = self.s.nodes[i].array.as_mut() {
                let due: Vec<u32> = a
                    .retry_at
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(k, _)| *k)
                    .collect();
                for item in due {
                    a.retry_at.remove(&item);
                    a.set(item, Item::Queued);
                    self.fx.push(Effect::Launch {
                        node: i,
                        item: Some(item),
                        attempt: a.attempt(item),
                    });
                }
            }
        }
    }

    fn launch(&mut self, i: usize, attempt: u32) {
        let now = self.now;
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Queued;
        n.attempt = attempt;
        n.retry_at = None;
        n.queued_at.get_or_insert(now);
        n.task = Some(AttemptState {
            attempt,
            phase: TaskPhase::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
            reason: None,
        });
        self.fx.push(Effect::Launch {
            node: i,
            item: None,
            attempt,
        });
    }

    /// Marks a node failed for good. A container (branch, subworkflow, dynamic node)
    /// that fails stops everything still running inside it.
    fn fail_node(&mut self, i: usize, f: Failure) {
        let now = self.now;
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Failed;
        n.started_at.get_or_insert(now);
        n.finished_at = Some(now);
        n.publishing = false;
        n.error = Some(f);
        let container = match self.plan.nodes[i].kind {
            NodeKind::Branch(_) | NodeKind::Subworkflow(_) => true,
            NodeKind::Task(_) => n.dynamic.is_some(),
            _ => false,
        };
        if container {
            self.stop(Some(i), NodePhase::Aborted, true);
        }
    }

    fn run_node(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Running;
        n.started_at.get_or_insert(now);
    }

    fn observe(&mut self, o: &Observation) {
        match o {
            Observation::Task {
                node,
                item: Some(item),
                attempt,
                status,
            } => self.observe_item(*node, *item, *attempt, Ok(status)),
            Observation::LaunchRejected {
                node,
                item: Some(item),
                attempt,
                failure,
            } => self.observe_item(*node, *item, *attempt, Err(failure)),
            Observation::Task { node, attempt, .. }
            | Observation::LaunchRejected { node, attempt, .. } => {
                self.observe_task(*node, *attempt, o)
            }
            Observation::Inputs { node, result } => self.observe_inputs(*node, result),
            Observation::NodeOutputs { node, result } => {
                let Some(n) = self.s.nodes.get_mut(*node) else {
                    return;
                };
                if !n.publishing || n.phase.is_terminal() {
                    return;
                }
                match result {
                    Ok(()) => {
                        n.publishing = false;
                        n.phase = NodePhase::Succeeded;
                        n.error = None;
                        n.finished_at = Some(self.now);
                    }
                    // A recoverable system failure (an object not there yet) is tried again
                    // next round, within the node's system-failure budget.
                    Err(f) if f.recoverable && n.system_failures < self.cfg.max_system_failures => {
                        n.system_failures += 1;
                        n.error = Some(f.clone());
                    }
                    Err(f) => self.fail_node(*node, f.clone()),
                }
            }
            Observation::Dynamic { node, result } => {
                let Some(n) = self.s.nodes.get_mut(*node) else {
                    return;
                };
                if n.dynamic != Some(DynamicPhase::Compiling) || n.phase.is_terminal() {
                    return;
                }
                match result {
                    Ok(()) => n.dynamic = Some(DynamicPhase::Executing),
                    Err(f) => self.fail_node(*node, f.clone()),
                }
            }
            Observation::Child { node, status } => {
                let Some(n) = self.s.nodes.get(*node) else {
                    return;
                };
                if n.phase != NodePhase::Running || n.publishing {
                    return;
                }
                match status {
                    ChildStatus::Unknown => {
                        if !self.fx.contains(&Effect::LaunchChild { node: *node }) {
                            self.fx.push(Effect::LaunchChild { node: *node });
                        }
                    }
                    ChildStatus::Running => {}
                    ChildStatus::Succeeded => self.s.nodes[*node].publishing = true,
                    ChildStatus::Failed(f) => self.fail_node(*node, f.clone()),
                    ChildStatus::Aborted => self.fail_node(
                        *node,
                        Failure::user(
                            "RemoteChildWorkflowExecutionFailed",
                            "the child execution was aborted",
                            false,
                        ),
                    ),
                }
            }
            Observation::Signal { node, value } => {
                let Some(n) = self.s.nodes.get(*node) else {
                    return;
                };
                if n.phase != NodePhase::Running || n.publishing {
                    return;
                }
                let Some(v) = value else { return };
                match &self.plan.nodes[*node].kind {
                    NodeKind::Gate(Gate::Approve { signal_id }) => {
                        use contrail_idl::core::{literal, primitive, scalar};
                        let approved = match &v.value {
                            Some(literal::Value::Scalar(sc)) => match &sc.value {
                                Some(scalar::Value::Primitive(p)) => match p.value {
                                    Some(primitive::Value::Boolean(b)) => Some(b),
                                    _ => None,
                                },
                                _ => None,
                            },
                            _ => None,
                        };
                        match approved {
                            Some(true) => self.s.nodes[*node].publishing = true,
                            Some(false) => self.fail_node(
                                *node,
                                Failure::user(
                                    "ReceivedRejectSignal",
                                    format!("approval '{signal_id}' was rejected"),
                                    false,
                                ),
                            ),
                            None => self.fail_node(
                                *node,
                                Failure::user(
                                    "InvalidSignal",
                                    format!("approval '{signal_id}' was set to a non-boolean"),
                                    false,
                                ),
                            ),
                        }
                    }
                    _ => self.s.nodes[*node].publishing = true,
                }
            }
            Observation::Recovery { node, recovered } => {
                let now = self.now;
                let Some(n) = self.s.nodes.get_mut(*node) else {
                    return;
                };
                if n.phase != NodePhase::NotYetStarted {
                    return;
                }
                if *recovered {
                    n.phase = NodePhase::Recovered;
                    n.queued_at = Some(now);
                    n.started_at = Some(now);
                    n.finished_at = Some(now);
                } else {
                    n.not_recoverable = true;
                }
            }
            Observation::Cache { node, outcome } => self.observe_cache(*node, outcome),
            Observation::CacheItem {
                node,
                item,
                outcome,
            } => {
                let Some(a) = self.s.nodes.get_mut(*node).and_then(|n| n.array.as_mut()) else {
                    return;
                };
                if a.get(*item) != Item::Lookup {
                    return;
                }
                if matches!(outcome, CacheOutcome::Hit(_)) {
                    a.set(*item, Item::Succeeded);
                    a.cache_hits.insert(*item);
                } else {
                    a.set(*item, Item::Queued);
                    self.fx.push(Effect::Launch {
                        node: *node,
                        item: Some(*item),
                        attempt: a.attempt(*item),
                    });
                }
            }
            Observation::ChildItem { node, item, status } => {
                let Some(n) = self.s.nodes.get_mut(*node) else {
                    return;
                };
                if n.phase != NodePhase::Running {
                    return;
                }
                let Some(a) = n.array.as_mut() else { return };
                if !a.get(*item).is_live() {
                    return;
                }
                let failed = |code: &str, msg: String| Failure::user(code, msg, false);
                match status {
                    ChildStatus::Unknown => {
                        let e = Effect::LaunchChildItem {
                            node: *node,
                            item: *item,
                        };
                        if !self.fx.contains(&e) {
                            self.fx.push(e);
                        }
                    }
                    ChildStatus::Running => a.set(*item, Item::Running),
                    ChildStatus::Succeeded => a.set(*item, Item::Succeeded),
                    ChildStatus::Failed(f) => {
                        a.set(*item, Item::Failed);
                        a.errors.insert(*item, f.clone());
                    }
                    ChildStatus::Aborted => {
                        a.set(*item, Item::Failed);
                        a.errors.insert(
                            *item,
                            failed(
                                "RemoteChildWorkflowExecutionFailed",
                                format!("the child execution of item {item} was aborted"),
                            ),
                        );
                    }
                }
            }
            Observation::CacheReleased { node } => {
                if let Some(c) = self.s.nodes.get_mut(*node).and_then(|n| n.cache.as_mut())
                    && c.status == CacheStatus::Miss
                {
                    c.status = CacheStatus::Released;
                }
            }
            Observation::CachePutItem { node, item } => {
                if let Some(a) = self.s.nodes.get_mut(*node).and_then(|n| n.array.as_mut())
                    && a.get(*item) == Item::Filing
                {
                    a.set(*item, Item::Succeeded);
                }
            }
            Observation::CachePut { node, result } => {
                let Some(c) = self.s.nodes.get_mut(*node).and_then(|n| n.cache.as_mut()) else {
                    return;
                };
                if !matches!(c.status, CacheStatus::Miss | CacheStatus::Skipped) {
                    return;
                }
                match result {
                    Ok(r) => {
                        c.status = CacheStatus::Populated;
                        c.catalog = Some(r.clone());
                    }
                    Err(_) => c.status = CacheStatus::PutFailure,
                }
            }
            Observation::OutputsPublished
            | Observation::OutputsRejected(_)
            | Observation::AbortRequested { .. } => {}
        }
    }

    fn observe_cache(&mut self, node: usize, outcome: &CacheOutcome) {
        let now = self.now;
        let poll = self.cfg.cache_poll;
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        let pending = n
            .cache
            .as_ref()
            .is_some_and(|c| matches!(c.status, CacheStatus::Lookup | CacheStatus::Waiting));
        if n.phase != NodePhase::Queued || n.task.is_some() || !pending {
            return;
        }
        let set = |n: &mut NodeState, status, catalog| {
            n.cache = Some(CacheState { status, catalog });
        };
        match outcome {
            CacheOutcome::Hit(r) => {
                set(n, CacheStatus::Hit, Some(r.clone()));
                n.phase = NodePhase::Succeeded;
                n.retry_at = None;
                n.started_at = Some(now);
                n.finished_at = Some(now);
            }
            CacheOutcome::Miss(r) => {
                set(n, CacheStatus::Miss, Some(r.clone()));
                self.launch(node, 0);
            }
            CacheOutcome::Wait => {
                set(n, CacheStatus::Waiting, None);
                n.retry_at = Some(now.saturating_add(poll));
            }
            CacheOutcome::Failed(_) => {
                set(n, CacheStatus::LookupFailure, None);
                self.launch(node, 0);
            }
        }
    }

    fn observe_task(&mut self, node: usize, attempt: u32, o: &Observation) {
        let now = self.now;
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.attempt != attempt
            || !matches!(n.phase, NodePhase::Queued | NodePhase::Running)
            || n.task.as_ref().is_none_or(|t| t.phase.is_terminal())
        {
            return; // about an older attempt, or the node moved on
        }
        match o {
            Observation::Task { status, .. } => match status {
                // An attempt seen running whose executor now knows nothing of it ran where
                // this replica cannot look (another machine's local executor): it is lost.
                TaskStatus::Unknown
                    if n.task
                        .as_ref()
                        .is_some_and(|t| t.phase == TaskPhase::Running) =>
                {
                    self.fail_attempt(node, lost_attempt(), true)
                }
                TaskStatus::Unknown => {
                    let e = Effect::Launch {
                        node,
                        item: None,
                        attempt,
                    };
                    if !self.fx.contains(&e) {
                        self.fx.push(e);
                    }
                }
                TaskStatus::Queued => {}
                TaskStatus::Waiting { reason } => {
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::WaitingForResources;
                        t.reason = Some(reason.clone());
                    }
                }
                TaskStatus::Initializing { reason } => {
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::Initializing;
                        t.reason = Some(reason.clone());
                    }
                }
                TaskStatus::Running { started_at } => {
                    let at = started_at.unwrap_or(now);
                    n.phase = NodePhase::Running;
                    n.started_at.get_or_insert(at);
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::Running;
                        t.reason = None;
                        t.started_at.get_or_insert(at);
                    }
                }
                TaskStatus::Succeeded | TaskStatus::Dynamic => {
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::Succeeded;
                        t.started_at.get_or_insert(now);
                        t.finished_at = Some(now);
                    }
                    n.started_at.get_or_insert(now);
                    n.error = None;
                    if *status == TaskStatus::Dynamic {
                        n.phase = NodePhase::Running;
                        n.dynamic = Some(DynamicPhase::Compiling);
                    } else {
                        n.phase = NodePhase::Succeeded;
                        n.finished_at = Some(now);
                    }
                }
                TaskStatus::Failed(f) => self.fail_attempt(node, f.clone(), true),
            },
            Observation::LaunchRejected { failure, .. } => {
                self.fail_attempt(node, failure.clone(), false)
            }
            _ => {}
        }
    }

    fn observe_item(
        &mut self,
        node: usize,
        item: u32,
        attempt: u32,
        status: Result<&TaskStatus, &Failure>,
    ) {
        let now = self.now;
        let max_attempts = self.plan.nodes[node].max_attempts;
        let max_sys = self.cfg.max_system_failures;
        let cacheable = matches!(&self.plan.nodes[node].kind, NodeKind::Array(a) if a.cache);
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.phase != NodePhase::Running {
            return;
        }
        let Some(a) = n.array.as_mut() else { return };
        if !a.get(item).is_live() || a.attempt(item) != attempt {
            return;
        }
        let (f, may_retry) = match status {
            Ok(TaskStatus::Unknown) if a.get(item) == Item::Running => (lost_attempt(), true),
            Ok(TaskStatus::Unknown) => {
                let e = Effect::Launch {
                    node,
                    item: Some(item),
                    attempt,
                };
                if !self.fx.contains(&e) {
                    self.fx.push(e);
                }
                return;
            }
            Ok(
                TaskStatus::Queued | TaskStatus::Waiting { .. } | TaskStatus::Initializing { .. },
            ) => return,
            Ok(TaskStatus::Running { .. }) => {
                a.set(item, Item::Running);
                return;
            }
            Ok(TaskStatus::Succeeded) => {
                a.errors.remove(&item);
                if cacheable {
                    a.set(item, Item::Filing);
                    self.fx.push(Effect::CachePutItem {
                        node,
                        item,
                        attempt,
                    });
                } else {
                    a.set(item, Item::Succeeded);
                }
                return;
            }
            Ok(TaskStatus::Dynamic) => (
                Failure::user(
                    "DynamicInArray",
                    "an array item produced a dynamic workflow, which array nodes do not run",
                    false,
                ),
                false,
            ),
            Ok(TaskStatus::Failed(f)) => (f.clone(), true),
            Err(f) => (f.clone(), false),
        };
        let sys = a.system_failures.get(&item).copied().unwrap_or(0);
        let retry = may_retry
            && f.recoverable
            && match f.kind {
                ErrorKind::System => sys < max_sys,
                ErrorKind::User => attempt + 1 - sys < max_attempts,
            };
        if f.kind == ErrorKind::System {
            a.system_failures.insert(item, sys + 1);
        }
        if retry {
            a.attempts.insert(item, attempt + 1);
            a.set(item, Item::RetryWait);
            a.retry_at
                .insert(item, now.saturating_add(backoff(self.cfg, attempt)));
        } else {
            a.set(item, Item::Failed);
        }
        a.errors.insert(item, f);
    }

    fn observe_inputs(&mut self, node: usize, result: &Result<core::LiteralMap, Failure>) {
        let now = self.now;
        let Some(n) = self.s.nodes.get(node) else {
            return;
        };
        if n.phase != NodePhase::Queued || n.task.is_some() {
            return;
        }
        let inputs = match result {
            Ok(m) => m,
            Err(f) => return self.fail_node(node, f.clone()),
        };
        let p = &self.plan.nodes[node];
        match &p.kind {
            NodeKind::Branch(b) => {
                let mut chosen = None;
                for (cond, child) in &b.cases {
                    match crate::branch::evaluate(cond, inputs) {
                        Ok(true) => {
                            chosen = Some(*child);
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            return self.fail_node(
                                node,
                                Failure::user(
                                    "BranchEvaluationFailed",
                                    format!("branch {}: {e}", p.id),
                                    false,
                                ),
                            );
                        }
                    }
                }
                let Some(chosen) = chosen.or(b.else_node) else {
                    let msg = b.else_fail.clone().unwrap_or_else(|| {
                        format!("branch {}: no branch satisfied its condition", p.id)
                    });
                    let code = if b.else_fail.is_some() {
                        "UserDefinedError"
                    } else {
                        "MalformedBranchUserError"
                    };
                    return self.fail_node(node, Failure::user(code, msg, false));
                };
                let others = b
                    .cases
                    .iter()
                    .map(|c| c.1)
                    .chain(b.else_node)
                    .filter(|c| *c != chosen);
                for o in others {
                    let n = &mut self.s.nodes[o];
                    n.phase = NodePhase::Skipped;
                    n.queued_at = Some(now);
                    n.finished_at = Some(now);
                }
                self.s.nodes[node].chosen = Some(self.plan.nodes[chosen].id.clone());
                self.run_node(node);
            }
            NodeKind::Array(spec) => {
                let mut size: Option<usize> = None;
                for (name, lit) in &inputs.literals {
                    if spec.bound_inputs.contains(name) {
                        continue;
                    }
                    if let Some(core::literal::Value::Collection(c)) = &lit.value {
                        let len = c.literals.len();
                        if size.is_some_and(|s| s != len) {
                            return self.fail_node(
                                node,
                                Failure::user(
                                    "InvalidArrayLength",
                                    format!(
                                        "array node {}: input '{name}' has {len} items, others have {}",
                                        p.id,
                                        size.unwrap_or_default()
                                    ),
                                    false,
                                ),
                            );
                        }
                        size = Some(len);
                    }
                }
                let size = match size {
                    Some(s) => s,
                    None if !inputs.literals.is_empty()
                        && inputs
                            .literals
                            .keys()
                            .all(|k| spec.bound_inputs.contains(k)) =>
                    {
                        1
                    }
                    None => {
                        return self.fail_node(
                            node,
                            Failure::user(
                                "InvalidArrayLength",
                                format!("array node {}: no input is a collection", p.id),
                                false,
                            ),
                        );
                    }
                };
                self.s.nodes[node].array = Some(ArrayState::new(size));
                self.run_node(node);
            }
            NodeKind::LaunchPlan(_) => {
                self.run_node(node);
                self.fx.push(Effect::LaunchChild { node });
            }
            NodeKind::Gate(Gate::Signal { .. } | Gate::Approve { .. }) => {
                self.run_node(node);
                self.fx.push(Effect::CreateSignal { node });
            }
            NodeKind::Subworkflow(_) | NodeKind::Gate(Gate::Sleep(_)) => self.run_node(node),
            _ => {}
        }
    }

    /// Records a failed attempt and decides between another attempt and failing the node.
    fn fail_attempt(&mut self, node: usize, f: Failure, may_retry: bool) {
        let now = self.now;
        let max_attempts = self.plan.nodes[node].max_attempts;
        let n = &mut self.s.nodes[node];
        if let Some(t) = n.task.as_mut() {
            t.phase = TaskPhase::Failed;
            t.started_at.get_or_insert(now);
            t.finished_at = Some(now);
            t.error = Some(f.clone());
        }
        let retry = may_retry
            && f.recoverable
            && match f.kind {
                ErrorKind::System => {
                    n.system_failures += 1;
                    n.system_failures <= self.cfg.max_system_failures
                }
                ErrorKind::User => {
                    n.user_failures += 1;
                    n.user_failures < max_attempts
                }
            };
        n.started_at.get_or_insert(now);
        if retry {
            n.phase = NodePhase::RetryWait;
            n.retry_at = Some(now.saturating_add(backoff(self.cfg, n.attempt)));
            n.error = Some(f);
        } else {
            let attempts = n.attempt + 1;
            n.phase = NodePhase::Failed;
            n.finished_at = Some(now);
            n.error = Some(if may_retry && f.recoverable {
                Failure {
                    code: format!("RetriesExhausted|{}", f.code),
                    message: format!(
                        "[{attempts}/{attempts}] currentAttempt done. Last Error: {}",
                        f.message
                    ),
                    ..f
                }
            } else {
                f
            });
        }
    }

    fn check_deadlines(&mut self) {
        for i in 0..self.s.nodes.len() {
            let Some(timeout) = self.plan.nodes[i].timeout else {
                continue;
            };
            let n = &self.s.nodes[i];
            if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) || n.publishing {
                continue;
            }
            match &self.plan.nodes[i].kind {
                NodeKind::Task(_) => {
                    let Some(t) = n.task.as_ref().filter(|t| !t.phase.is_terminal()) else {
                        continue;
                    };
                    let since = t.started_at.unwrap_or(t.created_at);
                    if self.now >= since.saturating_add(timeout) {
                        let attempt = n.attempt;
                        self.fx.push(Effect::Abort {
                            node: i,
                            item: None,
                            attempt,
                        });
                        let secs = timeout as f64 / 1e9;
                        self.fail_attempt(
                            i,
                            Failure::user(
                                "TimeoutExpired",
                                format!("task attempt {attempt} exceeded its timeout of {secs}s"),
                                true,
                            ),
                            true,
                        );
                    }
                }
                NodeKind::Gate(_) => {
                    let Some(since) = n.started_at else { continue };
                    if self.now >= since.saturating_add(timeout) {
                        let secs = timeout as f64 / 1e9;
                        let id = self.plan.nodes[i].id.clone();
                        self.fail_node(
                            i,
                            Failure::user(
                                "TimeoutExpired",
                                format!("gate {id} was not satisfied within {secs}s"),
                                false,
                            ),
                        );
                        self.s.nodes[i].phase = NodePhase::TimedOut;
                    }
                }
                _ => {}
            }
        }
    }

    /// Brings running containers up to date with what runs inside them, innermost first.
    fn settle(&mut self) {
        self.settle_cache();
        self.settle_inputs();
        for i in (0..self.s.nodes.len()).rev() {
            if self.s.nodes[i].phase != NodePhase::Running {
                continue;
            }
            if self.s.nodes[i].publishing {
                self.fx.push(Effect::PublishNode { node: i });
                continue;
            }
            let p = &self.plan.nodes[i];
            match &p.kind {
                NodeKind::Branch(_) => {
                    let chosen = self.s.nodes[i]
                        .chosen
                        .as_ref()
                        .and_then(|c| self.plan.index.get(c).copied());
                    let Some(c) = chosen else { continue };
                    let child = &self.s.nodes[c];
                    if child.phase.is_success() {
                        self.publish(i);
                    } else if child.phase.is_terminal() {
                        let f = child.error.clone().unwrap_or_else(|| {
                            Failure::system(
                                "BranchNodeFailed",
                                "the chosen node did not finish",
                                false,
                            )
                        });
                        self.fail_node(i, f);
                    }
                }
                NodeKind::Subworkflow(s) => self.settle_scope(i, *s),
                NodeKind::Task(_) => match self.s.nodes[i].dynamic {
                    Some(DynamicPhase::Compiling) => {
                        self.fx.push(Effect::CompileDynamic { node: i })
                    }
                    Some(DynamicPhase::Executing) => {
                        if let Some(s) = self.plan.scope_of(i) {
                            self.settle_scope(i, s);
                        }
                    }
                    None => {}
                },
                NodeKind::Gate(Gate::Sleep(d)) => {
                    let since = self.s.nodes[i].started_at.unwrap_or(self.now);
                    if self.now >= since.saturating_add(*d) {
                        self.publish(i);
                    }
                }
                NodeKind::Array(spec) => {
                    let Some(a) = &self.s.nodes[i].array else {
                        continue;
                    };
                    let size = a.len() as u32;
                    let failed = a.count(Item::Failed) as u32;
                    let min = spec
                        .min_successes
                        .or(spec
                            .min_success_ratio
                            .map(|r| (r.clamp(0.0, 1.0) as f64 * size as f64).ceil() as u32))
                        .unwrap_or(size)
                        .min(size);
                    if size - failed < min {
                        let first = a.errors.iter().find(|(k, _)| a.get(**k) == Item::Failed);
                        let detail = first
                            .map(|(k, f)| format!("; item {k}: {}", f.message))
                            .unwrap_or_default();
                        let kind = first.map_or(ErrorKind::User, |(_, f)| f.kind);
                        let f = Failure {
                            code: "ArrayNodeFailed".into(),
                            message: format!(
                                "{failed} of {size} items failed, at most {} may fail{detail}",
                                size - min
                            ),
                            kind,
                            recoverable: false,
                        };
                        self.stop_items(i);
                        self.fail_node(i, f);
                    } else if a.items.bytes().all(|c| matches!(c, b's' | b'f' | b'a')) {
                        self.publish(i);
                    }
                }
                _ => {}
            }
        }
    }

    /// A node that is not a task waits in QUEUED only for its inputs. The answer to that
    /// request lives in memory until the next round, so a crash loses it: ask again.
    fn settle_inputs(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            let waiting = n.phase == NodePhase::Queued
                && n.task.is_none()
                && !matches!(self.plan.nodes[i].kind, NodeKind::Task(_));
            let ask = Effect::ResolveInputs { node: i };
            if waiting && !self.fx.contains(&ask) {
                self.fx.push(ask);
            }
        }
    }

    /// Cache requests whose answers were not seen yet are asked again: a lookup until it
    /// is answered (a waiting node only when its poll is due), a put until it is confirmed.
    fn settle_cache(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            if let Some(a) = n.array.as_ref().filter(|_| n.phase == NodePhase::Running) {
                for (item, c) in a.items.bytes().enumerate() {
                    let item = item as u32;
                    let e = match Item::of_code(c) {
                        Item::Lookup => Effect::CacheLookupItem { node: i, item },
                        Item::Filing => Effect::CachePutItem {
                            node: i,
                            item,
                            attempt: a.attempt(item),
                        },
                        _ => continue,
                    };
                    if !self.fx.contains(&e) {
                        self.fx.push(e);
                    }
                }
                continue;
            }
            let Some(c) = &n.cache else { continue };
            let e = match (n.phase, c.status) {
                (NodePhase::Queued, CacheStatus::Lookup) if n.task.is_none() => {
                    Effect::CacheLookup { node: i }
                }
                (NodePhase::Queued, CacheStatus::Waiting)
                    if n.task.is_none() && n.retry_at.is_none_or(|t| t <= self.now) =>
                {
                    Effect::CacheLookup { node: i }
                }
                (NodePhase::Succeeded, CacheStatus::Miss | CacheStatus::Skipped) => {
                    Effect::CachePut { node: i }
                }
                (NodePhase::Failed | NodePhase::TimedOut, CacheStatus::Miss)
                    if self.plan.nodes[i].cache == Some(true) =>
                {
                    Effect::CacheRelease { node: i }
                }
                _ => continue,
            };
            if !self.fx.contains(&e) {
                self.fx.push(e);
            }
        }
    }

    fn publish(&mut self, i: usize) {
        self.s.nodes[i].publishing = true;
        self.fx.push(Effect::PublishNode { node: i });
    }

    fn is_lp_array(&self, i: usize) -> bool {
        matches!(&self.plan.nodes[i].kind, NodeKind::Array(a) if a.launch_plan.is_some())
    }

    fn stop_items(&mut self, i: usize) {
        let lp = self.is_lp_array(i);
        if let Some(a) = self.s.nodes[i].array.as_mut() {
            for (item, attempt) in a.live().collect::<Vec<_>>() {
                self.fx.push(if lp {
                    Effect::AbortChildItem { node: i, item }
                } else {
                    Effect::Abort {
                        node: i,
                        item: Some(item),
                        attempt,
                    }
                });
            }
            for item in 0..a.len() as u32 {
                if !a.get(item).is_terminal() {
                    a.set(item, Item::Aborted);
                }
            }
            a.retry_at.clear();
        }
    }

    /// A subworkflow or dynamic node whose scope runs: fail or publish when it is done.
    fn settle_scope(&mut self, owner: usize, scope: usize) {
        if let Some(f) = self.first_failure(scope) {
            let immediately =
                self.plan.scopes[scope].failure_policy == FailurePolicy::FailImmediately;
            if immediately {
                self.stop(Some(owner), NodePhase::Aborted, false);
            }
            if (immediately || !self.scope_active(scope)) && self.failure_handled(scope) {
                self.fail_node(owner, f);
            }
            return;
        }
        let done = self.plan.scopes[scope]
            .members
            .iter()
            .all(|&m| self.s.nodes[m].phase.is_terminal());
        if done {
            self.publish(owner);
        }
    }

    /// Whether node `i` may start now, must be skipped, or waits.
    fn readiness(&self, i: usize) -> Option<bool> {
        let p = &self.plan.nodes[i];
        if let Some(par) = p.parent {
            let ps = &self.s.nodes[par];
            if ps.phase != NodePhase::Running || ps.publishing {
                return None;
            }
            match &self.plan.nodes[par].kind {
                NodeKind::Branch(_) => {
                    return (ps.chosen.as_deref() == Some(p.id.as_str())).then_some(true);
                }
                NodeKind::Task(_) if ps.dynamic != Some(DynamicPhase::Executing) => return None,
                _ => {}
            }
        }
        let ups = p.upstream.iter().map(|&u| &self.s.nodes[u]);
        if ups.clone().any(|u| u.blocks_downstream()) {
            return Some(false);
        }
        ups.clone().all(|u| u.phase.is_success()).then_some(true)
    }

    /// Skips what can never run, starts what is ready (task nodes within the parallelism
    /// budget, in plan order so no branch starves), tops up array items, and starts
    /// publishing the workflow outputs when all is done.
    fn walk(&mut self) {
        let max = self.cfg.max_parallelism;
        let mut active = self
            .plan
            .nodes
            .iter()
            .zip(&self.s.nodes)
            .filter(|(p, n)| {
                n.phase.is_active()
                    && match p.kind {
                        NodeKind::Task(_) => n.dynamic.is_none(),
                        NodeKind::LaunchPlan(_) => true,
                        _ => false,
                    }
            })
            .count() as u32;
        for i in 1..self.plan.nodes.len() {
            if self.s.nodes[i].phase == NodePhase::Running
                && let NodeKind::Array(spec) = &self.plan.nodes[i].kind
            {
                let limit = spec.parallelism.unwrap_or(max);
                self.top_up_items(i, limit);
                continue;
            }
            if self.s.nodes[i].phase != NodePhase::NotYetStarted || self.plan.nodes[i].on_failure {
                continue;
            }
            match self.readiness(i) {
                None => continue,
                Some(false) => {
                    let n = &mut self.s.nodes[i];
                    n.phase = NodePhase::Skipped;
                    n.finished_at = Some(self.now);
                    continue;
                }
                Some(true) => {}
            }
            let p = &self.plan.nodes[i];
            let slot = matches!(p.kind, NodeKind::Task(_) | NodeKind::LaunchPlan(_));
            if slot && max != 0 && active >= max {
                continue;
            }
            if self.cfg.recover
                && !self.s.nodes[i].not_recoverable
                && !matches!(p.kind, NodeKind::Start | NodeKind::End)
            {
                self.fx.push(Effect::TryRecover { node: i });
                continue;
            }
            match &p.kind {
                NodeKind::Start => {}
                NodeKind::End => {
                    let n = &mut self.s.nodes[i];
                    n.phase = NodePhase::Running;
                    n.queued_at = Some(self.now);
                    n.started_at = Some(self.now);
                    self.s.phase = WorkflowPhase::Succeeding;
                    self.fx.push(Effect::PublishOutputs);
                }
                NodeKind::Task(_) => {
                    active += 1;
                    match p.cache {
                        Some(_) if self.cfg.overwrite_cache => {
                            self.s.nodes[i].cache = Some(CacheState {
                                status: CacheStatus::Skipped,
                                catalog: None,
                            });
                            self.launch(i, 0);
                        }
                        Some(_) => {
                            let n = &mut self.s.nodes[i];
                            n.phase = NodePhase::Queued;
                            n.queued_at = Some(self.now);
                            n.cache = Some(CacheState {
                                status: CacheStatus::Lookup,
                                catalog: None,
                            });
                            self.fx.push(Effect::CacheLookup { node: i });
                        }
                        None => self.launch(i, 0),
                    }
                }
                NodeKind::Unsupported(kind) => {
                    let msg = format!("node {}: {kind} is not supported", p.id);
                    self.fail_node(i, Failure::system("UnsupportedNode", msg, false));
                }
                _ => {
                    if slot {
                        active += 1;
                    }
                    let n = &mut self.s.nodes[i];
                    n.phase = NodePhase::Queued;
                    n.queued_at = Some(self.now);
                    self.fx.push(Effect::ResolveInputs { node: i });
                }
            }
        }
    }

    fn top_up_items(&mut self, i: usize, limit: u32) {
        let cache = matches!(&self.plan.nodes[i].kind, NodeKind::Array(a) if a.cache)
            && !self.cfg.overwrite_cache;
        let lp = self.is_lp_array(i);
        if self.s.nodes[i].publishing {
            return;
        }
        let Some(a) = self.s.nodes[i].array.as_mut() else {
            return;
        };
        let mut live = a
            .items
            .bytes()
            .filter(|c| matches!(c, b'q' | b'r' | b'w' | b'c'))
            .count() as u32;
        let mut item = 0u32;
        while (limit == 0 || live < limit) && (item as usize) < a.len() {
            match a.items.as_bytes()[item as usize..]
                .iter()
                .position(|c| *c == b'.')
            {
                Some(off) => item += off as u32,
                None => break,
            }
            if lp {
                a.set(item, Item::Queued);
                self.fx.push(Effect::LaunchChildItem { node: i, item });
            } else if cache {
                a.set(item, Item::Lookup);
                self.fx.push(Effect::CacheLookupItem { node: i, item });
            } else {
                a.set(item, Item::Queued);
                self.fx.push(Effect::Launch {
                    node: i,
                    item: Some(item),
                    attempt: a.attempt(item),
                });
            }
            live += 1;
            item += 1;
        }
    }

    fn wake_at(&self) -> Option<Nanos> {
        if self.s.phase.is_terminal() {
            return None;
        }
        let mut at: Option<Nanos> = None;
        let mut consider = |t: Nanos| at = Some(at.map_or(t, |a| a.min(t)));
        if let (Some(t), Some(s)) = (self.cfg.workflow_timeout, self.s.started_at) {
            consider(s.saturating_add(t));
        }
        for (p, n) in self.plan.nodes.iter().zip(&self.s.nodes) {
            if let Some(r) = n.retry_at.filter(|_| n.phase == NodePhase::RetryWait) {
                consider(r);
            }
            if let Some(r) = n.retry_at.filter(|_| {
                n.phase == NodePhase::Queued
                    && n.cache
                        .as_ref()
                        .is_some_and(|c| c.status == CacheStatus::Waiting)
            }) {
                consider(r);
            }
            if let Some(a) = &n.array
                && n.phase == NodePhase::Running
                && let Some(r) = a.retry_at.values().min()
            {
                consider(*r);
            }
            if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) || n.publishing {
                continue;
            }
            if let (Some(timeout), Some(t)) = (p.timeout, &n.task)
                && !t.phase.is_terminal()
            {
                consider(t.started_at.unwrap_or(t.created_at).saturating_add(timeout));
            }
            if let (NodeKind::Gate(g), Some(since)) = (&p.kind, n.started_at) {
                if let Some(timeout) = p.timeout {
                    consider(since.saturating_add(timeout));
                }
                if let Gate::Sleep(d) = g {
                    consider(since.saturating_add(*d));
                }
            }
        }
        at
    }
}

/// A running attempt its executor no longer knows: a system failure, retried under the
/// system retry budget.
fn lost_attempt() -> Failure {
    Failure::system(
        "AttemptLost",
        "the attempt was running where this controller cannot observe it (its replica's \
         machine); it is counted lost and retried",
        true,
    )
}
