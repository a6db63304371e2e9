//! Task nodes: attempts through the executor, retried within the node's budgets, timed
//! out by the node's timeout; a cacheable task asks the catalog first (`cache.rs`), and a
//! dynamic task runs the workflow it produced (`dynamic.rs`).

use super::handler::Handler;
use super::{Effect, Observation, Round, TaskStatus, Watch, backoff, lost_attempt};
use crate::Nanos;
use crate::plan::PlanNode;
use crate::state::{
    AttemptState, CacheState, CacheStatus, DynamicPhase, ErrorKind, Failure, NodePhase, NodeState,
    TaskPhase,
};

pub(super) struct TaskNode;

impl Handler for TaskNode {
    fn begin(&self, r: &mut Round<'_>, i: usize) {
        let p = &r.plan.nodes[i];
        match p.cache {
            Some(_) if r.cfg.overwrite_cache => {
                r.s.nodes[i].set_cache(CacheState {
                    status: CacheStatus::Skipped,
                    catalog: None,
                    poll_at: None,
                });
                r.launch(i, 0);
            }
            Some(_) => {
                let n = &mut r.s.nodes[i];
                n.phase = NodePhase::Queued;
                n.queued_at = Some(r.now);
                n.set_cache(CacheState {
                    status: CacheStatus::Lookup,
                    catalog: None,
                    poll_at: None,
                });
                r.fx.push(Effect::CacheLookup { node: i });
            }
            None => r.launch(i, 0),
        }
    }

    fn observe(&self, r: &mut Round<'_>, node: usize, o: &Observation) {
        match o {
            Observation::Task { attempt, .. } | Observation::LaunchRejected { attempt, .. } => {
                r.observe_task(node, *attempt, o)
            }
            Observation::Dynamic { result, .. } => r.observe_dynamic(node, result),
            Observation::Cache { outcome, .. } => r.observe_cache(node, outcome),
            Observation::CacheReleased { .. } => r.observe_cache_released(node),
            Observation::CachePut { result, .. } => r.observe_cache_put(node, result),
            _ => {}
        }
    }

    fn settle(&self, r: &mut Round<'_>, i: usize) {
        r.settle_dynamic(i);
    }

    fn deadline(&self, r: &mut Round<'_>, i: usize, timeout: Nanos) {
        let n = &r.s.nodes[i];
        let Some(t) = n.task().filter(|t| !t.phase.is_terminal()) else {
            return;
        };
        let since = t.started_at.unwrap_or(t.created_at);
        if r.now >= since.saturating_add(timeout) {
            let attempt = n.attempt;
            r.fx.push(Effect::Abort {
                node: i,
                item: None,
                attempt,
            });
            let secs = timeout as f64 / 1e9;
            r.fail_attempt(
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

    fn watches(&self, p: &PlanNode, i: usize, n: &NodeState, out: &mut Vec<Watch>) {
        if n.task().is_some_and(|t| !t.phase.is_terminal()) {
            out.push(Watch::Attempt {
                node: i,
                item: None,
                attempt: n.attempt,
            });
            if p.cache == Some(true) && n.cache().is_some_and(|c| c.status == CacheStatus::Miss) {
                out.push(Watch::Reservation { node: i });
            }
        }
    }

    fn wake_at(&self, p: &PlanNode, n: &NodeState) -> Option<Nanos> {
        // A serialized cache entry held elsewhere: look again when the poll is due.
        let poll = n
            .cache()
            .filter(|c| n.phase == NodePhase::Queued && c.status == CacheStatus::Waiting)
            .and_then(|c| c.poll_at);
        let active = matches!(n.phase, NodePhase::Queued | NodePhase::Running) && !n.publishing;
        let timeout = match (p.timeout, n.task()) {
            (Some(timeout), Some(t)) if active && !t.phase.is_terminal() => {
                Some(t.started_at.unwrap_or(t.created_at).saturating_add(timeout))
            }
            _ => None,
        };
        [poll, timeout].into_iter().flatten().min()
    }

    fn stop(&self, r: &mut Round<'_>, i: usize) {
        let now = r.now;
        let n = &mut r.s.nodes[i];
        if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) {
            return;
        }
        let attempt = n.attempt;
        if let Some(t) = n.task_mut().filter(|t| !t.phase.is_terminal()) {
            r.fx.push(Effect::Abort {
                node: i,
                item: None,
                attempt,
            });
            t.phase = TaskPhase::Aborted;
            t.finished_at = Some(now);
        }
    }

    fn unrecorded_launch(&self, node: usize, _n: &NodeState, next: u32) -> Option<Effect> {
        Some(Effect::Abort {
            node,
            item: None,
            attempt: next,
        })
    }

    fn takes_slot(&self) -> bool {
        true
    }

    fn holds_slot(&self, n: &NodeState) -> bool {
        n.dynamic().is_none()
    }

    fn is_container(&self, n: &NodeState) -> bool {
        n.dynamic().is_some()
    }

    fn admits(&self, n: &NodeState, _inner_id: &str) -> Option<Option<bool>> {
        (n.dynamic() != Some(DynamicPhase::Executing)).then_some(None)
    }

    fn waits_for_inputs(&self) -> bool {
        false
    }
}

impl Round<'_> {
    pub(super) fn launch(&mut self, i: usize, attempt: u32) {
        let now = self.now;
        let n = &mut self.s.nodes[i];
        n.phase = NodePhase::Queued;
        n.attempt = attempt;
        n.retry_at = None;
        n.queued_at.get_or_insert(now);
        n.set_task(AttemptState {
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

    pub(super) fn observe_task(&mut self, node: usize, attempt: u32, o: &Observation) {
        let now = self.now;
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.attempt != attempt
            || !matches!(n.phase, NodePhase::Queued | NodePhase::Running)
            || n.task().is_none_or(|t| t.phase.is_terminal())
        {
            return; // about an older attempt, or the node moved on
        }
        match o {
            Observation::Task { status, .. } => match status {
                // An attempt seen running whose executor now knows nothing of it ran where
                // this replica cannot look (another machine's local executor): it is lost.
                TaskStatus::Unknown if n.task().is_some_and(|t| t.phase == TaskPhase::Running) => {
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
                    if let Some(t) = n.task_mut() {
                        t.phase = TaskPhase::WaitingForResources;
                        t.reason = Some(reason.clone());
                    }
                }
                TaskStatus::Initializing { reason } => {
                    if let Some(t) = n.task_mut() {
                        t.phase = TaskPhase::Initializing;
                        t.reason = Some(reason.clone());
                    }
                }
                TaskStatus::Running { started_at } => {
                    let at = started_at.unwrap_or(now);
                    n.phase = NodePhase::Running;
                    n.started_at.get_or_insert(at);
                    if let Some(t) = n.task_mut() {
                        t.phase = TaskPhase::Running;
                        t.reason = None;
                        t.started_at.get_or_insert(at);
                    }
                }
                TaskStatus::Succeeded | TaskStatus::Dynamic => {
                    if let Some(t) = n.task_mut() {
                        t.phase = TaskPhase::Succeeded;
                        t.started_at.get_or_insert(now);
                        t.finished_at = Some(now);
                    }
                    n.started_at.get_or_insert(now);
                    n.error = None;
                    if *status == TaskStatus::Dynamic {
                        n.phase = NodePhase::Running;
                        n.set_dynamic(DynamicPhase::Compiling);
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

    /// Records a failed attempt and decides between another attempt and failing the node.
    pub(super) fn fail_attempt(&mut self, node: usize, f: Failure, may_retry: bool) {
        let now = self.now;
        let max_attempts = self.plan.nodes[node].max_attempts;
        let n = &mut self.s.nodes[node];
        if let Some(t) = n.task_mut() {
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
}
