//! One round of the engine.

use crate::Nanos;
use crate::plan::{FailurePolicy, NodeKind, Plan};
use crate::state::{
    AttemptState, ErrorKind, ExecState, Failure, NodePhase, TaskPhase, WorkflowPhase,
};

/// Knobs that are not part of the workflow itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most task nodes holding a slot (queued, running or waiting to retry); 0 = unlimited.
    pub max_parallelism: u32,
    /// SYSTEM failures a node may absorb before it fails.
    pub max_system_failures: u32,
    /// Delay before the second attempt; doubles per attempt up to `backoff_max`.
    pub backoff_base: Nanos,
    pub backoff_max: Nanos,
    /// The whole execution fails with TIMED_OUT after this long.
    pub workflow_timeout: Option<Nanos>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_parallelism: 25,
            max_system_failures: 3,
            backoff_base: 500_000_000,
            backoff_max: 30_000_000_000,
            workflow_timeout: None,
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
    /// Launched, waiting for CPU/memory.
    Waiting,
    Running {
        started_at: Option<Nanos>,
    },
    Succeeded,
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Task {
        node: usize,
        attempt: u32,
        status: TaskStatus,
    },
    /// The attempt could not be launched because its inputs cannot be built (a data error;
    /// retrying cannot help).
    LaunchRejected {
        node: usize,
        attempt: u32,
        failure: Failure,
    },
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
    /// Resolve the node's inputs and start this attempt (idempotent per node/attempt).
    Launch { node: usize, attempt: u32 },
    /// Stop this attempt and release what it holds.
    Abort { node: usize, attempt: u32 },
    /// Resolve the workflow's output bindings and write them.
    PublishOutputs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub state: ExecState,
    pub effects: Vec<Effect>,
    /// The engine wants another round at this time even if nothing is observed
    /// (retry backoff, timeouts).
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
    if s.nodes.len() != plan.nodes.len() {
        s = ExecState {
            nodes: ExecState::new(plan.nodes.len()).nodes,
            ..s
        };
    }
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
            .filter(|(i, n)| prev.nodes.get(*i) != Some(n))
            .map(|(i, _)| i)
            .collect();
    Step {
        state: r.s,
        effects: r.fx,
        wake_at,
        changed,
    }
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
            self.stop_all(NodePhase::Aborted);
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
            self.stop_all(NodePhase::Aborted);
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
        let first_failure = self.first_failure();
        if first_failure.is_some() && self.plan.failure_policy == FailurePolicy::FailImmediately {
            self.stop_all(NodePhase::Aborted);
            self.finish(WorkflowPhase::Failed, first_failure);
            return;
        }
        self.walk();
        if let Some(f) = self.first_failure()
            && !self.s.nodes.iter().any(|n| n.phase.is_active())
        {
            self.finish(WorkflowPhase::Failed, Some(f));
        }
    }

    fn finish(&mut self, phase: WorkflowPhase, error: Option<Failure>) {
        self.s.phase = phase;
        self.s.finished_at = Some(self.now);
        if error.is_some() {
            self.s.error = error;
        }
    }

    /// The failure of the first failed or timed-out node, in plan order.
    fn first_failure(&self) -> Option<Failure> {
        self.plan
            .nodes
            .iter()
            .zip(&self.s.nodes)
            .find_map(|(p, n)| match n.phase {
                NodePhase::Failed | NodePhase::TimedOut => {
                    Some(n.error.clone().unwrap_or_else(|| {
                        Failure::system("NodeFailed", format!("node {} failed", p.id), false)
                    }))
                }
                _ => None,
            })
    }

    /// Aborts every live attempt; nodes waiting to retry stop as well.
    fn stop_all(&mut self, phase: NodePhase) {
        for (i, n) in self.s.nodes.iter_mut().enumerate() {
            if !n.phase.is_active() {
                continue;
            }
            if matches!(n.phase, NodePhase::Queued | NodePhase::Running) {
                self.fx.push(Effect::Abort {
                    node: i,
                    attempt: n.attempt,
                });
                if let Some(t) = n.task.as_mut().filter(|t| !t.phase.is_terminal()) {
                    t.phase = TaskPhase::Aborted;
                    t.finished_at = Some(self.now);
                }
            }
            n.phase = phase;
            n.finished_at = Some(self.now);
            n.retry_at = None;
        }
    }

    fn start_due_retries(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            if n.phase == NodePhase::RetryWait && n.retry_at.is_some_and(|t| t <= self.now) {
                let attempt = n.attempt + 1;
                self.launch(i, attempt);
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
        });
        self.fx.push(Effect::Launch { node: i, attempt });
    }

    fn observe(&mut self, o: &Observation) {
        let now = self.now;
        let (node, attempt) = match o {
            Observation::Task { node, attempt, .. }
            | Observation::LaunchRejected { node, attempt, .. } => (*node, *attempt),
            _ => return,
        };
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.attempt != attempt || !matches!(n.phase, NodePhase::Queued | NodePhase::Running) {
            return; // about an older attempt, or the node moved on
        }
        match o {
            Observation::Task { status, .. } => match status {
                TaskStatus::Unknown => {
                    if !self.fx.contains(&Effect::Launch { node, attempt }) {
                        self.fx.push(Effect::Launch { node, attempt });
                    }
                }
                TaskStatus::Queued => {}
                TaskStatus::Waiting => {
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::WaitingForResources;
                    }
                }
                TaskStatus::Running { started_at } => {
                    let at = started_at.unwrap_or(now);
                    n.phase = NodePhase::Running;
                    n.started_at.get_or_insert(at);
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::Running;
                        t.started_at.get_or_insert(at);
                    }
                }
                TaskStatus::Succeeded => {
                    n.phase = NodePhase::Succeeded;
                    n.started_at.get_or_insert(now);
                    n.finished_at = Some(now);
                    n.error = None;
                    if let Some(t) = n.task.as_mut() {
                        t.phase = TaskPhase::Succeeded;
                        t.started_at.get_or_insert(now);
                        t.finished_at = Some(now);
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
            let shift = n.attempt.min(30);
            let delay = self
                .cfg
                .backoff_base
                .saturating_mul(1i64 << shift)
                .min(self.cfg.backoff_max)
                .max(1);
            n.phase = NodePhase::RetryWait;
            n.retry_at = Some(now.saturating_add(delay));
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
            if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) {
                continue;
            }
            let Some(t) = &n.task else { continue };
            let since = t.started_at.unwrap_or(t.created_at);
            if self.now >= since.saturating_add(timeout) {
                let attempt = n.attempt;
                self.fx.push(Effect::Abort { node: i, attempt });
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
    }

    /// Skips what can never run, launches what is ready (within the parallelism budget, in
    /// plan order so no branch starves), and starts publishing outputs when all is done.
    fn walk(&mut self) {
        let mut active = self.s.nodes.iter().filter(|n| n.phase.is_active()).count() as u32;
        let max = self.cfg.max_parallelism;
        for i in 1..self.plan.nodes.len() {
            if self.s.nodes[i].phase != NodePhase::NotYetStarted {
                continue;
            }
            let p = &self.plan.nodes[i];
            let ups = p.upstream.iter().map(|&u| &self.s.nodes[u]);
            if ups.clone().any(|u| u.blocks_downstream()) {
                let n = &mut self.s.nodes[i];
                n.phase = NodePhase::Skipped;
                n.finished_at = Some(self.now);
                continue;
            }
            if !ups.clone().all(|u| u.phase == NodePhase::Succeeded) {
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
                    if max == 0 || active < max {
                        active += 1;
                        self.launch(i, 0);
                    }
                }
                NodeKind::Unsupported(kind) => {
                    let n = &mut self.s.nodes[i];
                    n.phase = NodePhase::Failed;
                    n.queued_at = Some(self.now);
                    n.started_at = Some(self.now);
                    n.finished_at = Some(self.now);
                    n.error = Some(Failure::system(
                        "UnsupportedNode",
                        format!(
                            "node {}: {kind} nodes are not supported by this engine yet",
                            p.id
                        ),
                        false,
                    ));
                }
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
            if let (Some(timeout), Some(t)) = (p.timeout, &n.task)
                && matches!(n.phase, NodePhase::Queued | NodePhase::Running)
            {
                consider(t.started_at.unwrap_or(t.created_at).saturating_add(timeout));
            }
        }
        at
    }
}
