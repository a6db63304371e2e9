//! One round of the engine.
//!
//! A round: apply what was observed, settle containers from the inside out (a branch whose
//! chosen node finished, a subworkflow whose members are all done, an array whose items
//! are), then walk the plan forward starting whatever became ready. Every node kind is a
//! small state machine over `NodeState`, in its own module implementing
//! [`handler::Handler`] (`task`, `cache`, `dynamic`, `branch`, `subworkflow` with failure
//! nodes, `launch_plan`, `gate`, `array`, `boundary`); this module runs the round and hands
//! each node to its kind. Anything that touches the world is an [`Effect`] and comes back
//! as an [`Observation`].

use crate::Nanos;
use crate::plan::{FailurePolicy, Plan};
use crate::state::{CatalogRef, ExecState, Failure, NodePhase, NodeState, WorkflowPhase};
use contrail_idl::core;
use handler::handler;

mod array;
mod boundary;
mod branch;
mod cache;
mod dynamic;
mod gate;
mod handler;
mod launch_plan;
mod subworkflow;
mod task;

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

impl Observation {
    /// The node an observation is about, if it is about one.
    pub fn node(&self) -> Option<usize> {
        match self {
            Observation::Task { node, .. }
            | Observation::LaunchRejected { node, .. }
            | Observation::Inputs { node, .. }
            | Observation::NodeOutputs { node, .. }
            | Observation::Dynamic { node, .. }
            | Observation::Child { node, .. }
            | Observation::ChildItem { node, .. }
            | Observation::Signal { node, .. }
            | Observation::Recovery { node, .. }
            | Observation::Cache { node, .. }
            | Observation::CacheItem { node, .. }
            | Observation::CacheReleased { node }
            | Observation::CachePut { node, .. }
            | Observation::CachePutItem { node, .. } => Some(*node),
            Observation::OutputsPublished
            | Observation::OutputsRejected(_)
            | Observation::AbortRequested { .. } => None,
        }
    }
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
        handler(&p.kind).watches(p, i, n, &mut out);
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
        let targets: Vec<usize> = (0..self.s.nodes.len())
            .filter(|&i| stopped(i) && self.s.nodes[i].phase.is_active())
            .collect();
        for &i in &targets {
            self.plan.handler(i).stop(self, i);
            let now = self.now;
            let n = &mut self.s.nodes[i];
            n.phase = phase;
            n.finished_at = Some(now);
            n.retry_at = None;
            n.publishing = false;
        }
        for &i in &targets {
            self.plan.handler(i).stop_after(self, i);
        }
    }

    /// What an executor may run for a node that no committed state names: the next attempt
    /// of a node that waits to retry, or the first of one that was ready to start. Starts
    /// are performed only after their round commits (`Effect::starts_work`), so a lost
    /// round leaves none behind; this is the second line of defence (a controller before
    /// that rule, an executor that started what it reported as failed). Stopping the node
    /// stops that one too; the abort of what was never launched does nothing.
    fn unrecorded_launch(&self, i: usize) -> Option<Effect> {
        let n = &self.s.nodes[i];
        let next = match n.phase {
            NodePhase::NotYetStarted if self.readiness(i) == Some(true) => 0,
            NodePhase::RetryWait => n.attempt + 1,
            _ => return None,
        };
        self.plan.handler(i).unrecorded_launch(i, n, next)
    }

    /// Marks a node failed for good. A container (branch, subworkflow, dynamic node)
    /// that fails stops everything still running inside it.
    fn start_due_retries(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            if n.phase == NodePhase::RetryWait && n.retry_at.is_some_and(|t| t <= self.now) {
                let attempt = n.attempt + 1;
                self.launch(i, attempt);
            }
            self.start_due_items(i);
        }
    }

    /// A node that is not a task begins by waiting in QUEUED for its inputs.
    fn queue_for_inputs(&mut self, i: usize) {
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Queued;
        n.queued_at = Some(self.now);
        self.fx.push(Effect::ResolveInputs { node: i });
    }

    fn fail_node(&mut self, i: usize, f: Failure) {
        let now = self.now;
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Failed;
        n.started_at.get_or_insert(now);
        n.finished_at = Some(now);
        n.publishing = false;
        n.error = Some(f);
        let container = self.plan.handler(i).is_container(n);
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
            Observation::OutputsPublished
            | Observation::OutputsRejected(_)
            | Observation::AbortRequested { .. } => {}
            // Everything else is about one node, and its kind knows what it means.
            _ => {
                if let Some(node) = o.node().filter(|&n| n < self.plan.nodes.len()) {
                    self.plan.handler(node).observe(self, node, o);
                }
            }
        }
    }

    fn observe_inputs(&mut self, node: usize, result: &Result<core::LiteralMap, Failure>) {
        let Some(n) = self.s.nodes.get(node) else {
            return;
        };
        if n.phase != NodePhase::Queued || n.task().is_some() {
            return;
        }
        let inputs = match result {
            Ok(m) => m,
            Err(f) => return self.fail_node(node, f.clone()),
        };
        self.plan.handler(node).start(self, node, inputs);
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
            self.plan.handler(i).deadline(self, i, timeout);
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
            self.plan.handler(i).settle(self, i);
        }
    }

    /// A node that is not a task waits in QUEUED only for its inputs. The answer to that
    /// request lives in memory until the next round, so a crash loses it: ask again.
    fn settle_inputs(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            let waiting = n.phase == NodePhase::Queued
                && n.task().is_none()
                && self.plan.handler(i).waits_for_inputs();
            let ask = Effect::ResolveInputs { node: i };
            if waiting && !self.fx.contains(&ask) {
                self.fx.push(ask);
            }
        }
    }

    fn publish(&mut self, i: usize) {
        self.s.nodes[i].publishing = true;
        self.fx.push(Effect::PublishNode { node: i });
    }

    /// Whether node `i` may start now, must be skipped, or waits.
    fn readiness(&self, i: usize) -> Option<bool> {
        let p = &self.plan.nodes[i];
        if let Some(par) = p.parent {
            let ps = &self.s.nodes[par];
            if ps.phase != NodePhase::Running || ps.publishing {
                return None;
            }
            if let Some(answer) = self.plan.handler(par).admits(ps, &p.id) {
                return answer;
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
            .filter(|(p, n)| n.phase.is_active() && handler(&p.kind).holds_slot(n))
            .count() as u32;
        for i in 1..self.plan.nodes.len() {
            if self.s.nodes[i].phase == NodePhase::Running {
                self.plan.handler(i).top_up(self, i, max);
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
            let kind = self.plan.handler(i);
            let slot = kind.takes_slot();
            if slot && max != 0 && active >= max {
                continue;
            }
            if self.cfg.recover && !self.s.nodes[i].not_recoverable && kind.recoverable() {
                self.fx.push(Effect::TryRecover { node: i });
                continue;
            }
            kind.begin(self, i);
            if slot {
                active += 1;
            }
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
            if let Some(t) = handler(&p.kind).wake_at(p, n) {
                consider(t);
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
