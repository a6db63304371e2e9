//! Array nodes (map tasks, and arrays over launch plans): items started within the
//! array's parallelism, each retried within the task's budgets (or looked up in the cache),
//! and the node ends when enough succeeded or fails when too many failed.

use super::handler::Handler;
use super::{
    CacheOutcome, ChildStatus, Effect, Observation, Round, TaskStatus, Watch, backoff, lost_attempt,
};
use crate::Nanos;
use crate::plan::{NodeKind, PlanNode};
use crate::state::{ArrayState, ErrorKind, Failure, Item, NodePhase, NodeState};
use contrail_idl::core;

pub(super) struct ArrayNode;

impl Handler for ArrayNode {
    fn start(&self, r: &mut Round<'_>, node: usize, inputs: &core::LiteralMap) {
        let p = &r.plan.nodes[node];
        let NodeKind::Array(spec) = &p.kind else {
            return;
        };
        let mut size: Option<usize> = None;
        for (name, lit) in &inputs.literals {
            if spec.bound_inputs.contains(name) {
                continue;
            }
            if let Some(core::literal::Value::Collection(c)) = &lit.value {
                let len = c.literals.len();
                if size.is_some_and(|s| s != len) {
                    return r.fail_node(
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
                return r.fail_node(
                    node,
                    Failure::user(
                        "InvalidArrayLength",
                        format!("array node {}: no input is a collection", p.id),
                        false,
                    ),
                );
            }
        };
        r.s.nodes[node].set_array(ArrayState::new(size));
        r.run_node(node);
    }

    fn observe(&self, r: &mut Round<'_>, node: usize, o: &Observation) {
        match o {
            Observation::Task {
                item: Some(item),
                attempt,
                status,
                ..
            } => r.observe_item(node, *item, *attempt, Ok(status)),
            Observation::LaunchRejected {
                item: Some(item),
                attempt,
                failure,
                ..
            } => r.observe_item(node, *item, *attempt, Err(failure)),
            Observation::CacheItem { item, outcome, .. } => {
                r.observe_cache_item(node, *item, outcome)
            }
            Observation::ChildItem { item, status, .. } => {
                r.observe_child_item(node, *item, status)
            }
            Observation::CachePutItem { item, .. } => r.observe_item_filed(node, *item),
            _ => {}
        }
    }

    fn settle(&self, r: &mut Round<'_>, i: usize) {
        let NodeKind::Array(spec) = &r.plan.nodes[i].kind else {
            return;
        };
        let Some(a) = r.s.nodes[i].array() else {
            return;
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
            r.stop_items(i);
            r.fail_node(i, f);
        } else if a.items.bytes().all(|c| matches!(c, b's' | b'f' | b'a')) {
            r.publish(i);
        }
    }

    fn watches(&self, p: &PlanNode, i: usize, n: &NodeState, out: &mut Vec<Watch>) {
        let NodeKind::Array(spec) = &p.kind else {
            return;
        };
        if let Some(a) = n.array() {
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

    fn wake_at(&self, _p: &PlanNode, n: &NodeState) -> Option<Nanos> {
        let a = n.array().filter(|_| n.phase == NodePhase::Running)?;
        a.retry_at.values().min().copied()
    }

    fn top_up(&self, r: &mut Round<'_>, i: usize, max_parallelism: u32) {
        if let NodeKind::Array(spec) = &r.plan.nodes[i].kind {
            let limit = spec.parallelism.unwrap_or(max_parallelism);
            r.top_up_items(i, limit);
        }
    }

    fn stop_after(&self, r: &mut Round<'_>, i: usize) {
        r.stop_items(i);
    }
}

impl Round<'_> {
    pub(super) fn observe_item(
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
        let Some(a) = n.array_mut() else { return };
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

    pub(super) fn observe_cache_item(&mut self, node: usize, item: u32, outcome: &CacheOutcome) {
        let Some(a) = self.s.nodes.get_mut(node).and_then(|n| n.array_mut()) else {
            return;
        };
        if a.get(item) != Item::Lookup {
            return;
        }
        if matches!(outcome, CacheOutcome::Hit(_)) {
            a.set(item, Item::Succeeded);
            a.cache_hits.insert(item);
        } else {
            a.set(item, Item::Queued);
            self.fx.push(Effect::Launch {
                node,
                item: Some(item),
                attempt: a.attempt(item),
            });
        }
    }

    pub(super) fn observe_child_item(&mut self, node: usize, item: u32, status: &ChildStatus) {
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.phase != NodePhase::Running {
            return;
        }
        let Some(a) = n.array_mut() else { return };
        if !a.get(item).is_live() {
            return;
        }
        let failed = |code: &str, msg: String| Failure::user(code, msg, false);
        match status {
            ChildStatus::Unknown => {
                let e = Effect::LaunchChildItem { node, item };
                if !self.fx.contains(&e) {
                    self.fx.push(e);
                }
            }
            ChildStatus::Running => a.set(item, Item::Running),
            ChildStatus::Succeeded => a.set(item, Item::Succeeded),
            ChildStatus::Failed(f) => {
                a.set(item, Item::Failed);
                a.errors.insert(item, f.clone());
            }
            ChildStatus::Aborted => {
                a.set(item, Item::Failed);
                a.errors.insert(
                    item,
                    failed(
                        "RemoteChildWorkflowExecutionFailed",
                        format!("the child execution of item {item} was aborted"),
                    ),
                );
            }
        }
    }

    pub(super) fn observe_item_filed(&mut self, node: usize, item: u32) {
        if let Some(a) = self.s.nodes.get_mut(node).and_then(|n| n.array_mut())
            && a.get(item) == Item::Filing
        {
            a.set(item, Item::Succeeded);
        }
    }

    /// Items whose retry is due start their next attempt.
    pub(super) fn start_due_items(&mut self, i: usize) {
        let now = self.now;
        if let Some(a) = self.s.nodes[i].array_mut() {
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

    pub(super) fn is_lp_array(&self, i: usize) -> bool {
        matches!(&self.plan.nodes[i].kind, NodeKind::Array(a) if a.launch_plan.is_some())
    }

    pub(super) fn stop_items(&mut self, i: usize) {
        let lp = self.is_lp_array(i);
        if let Some(a) = self.s.nodes[i].array_mut() {
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

    pub(super) fn top_up_items(&mut self, i: usize, limit: u32) {
        let cache = matches!(&self.plan.nodes[i].kind, NodeKind::Array(a) if a.cache)
            && !self.cfg.overwrite_cache;
        let lp = self.is_lp_array(i);
        if self.s.nodes[i].publishing {
            return;
        }
        let Some(a) = self.s.nodes[i].array_mut() else {
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
}
