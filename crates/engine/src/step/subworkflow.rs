//! Subworkflow nodes: the node runs its workflow as a scope of the plan, ends when every
//! member has, and fails (after the scope's failure node) when one failed. Failure nodes
//! of the root workflow and of subworkflows are handled here too.

use super::Round;
use super::handler::Handler;
use crate::plan::{FailurePolicy, NodeKind};
use crate::state::{Failure, NodePhase, NodeState, WorkflowPhase};
use contrail_idl::core;

pub(super) struct SubworkflowNode;

impl Handler for SubworkflowNode {
    fn start(&self, r: &mut Round<'_>, node: usize, _inputs: &core::LiteralMap) {
        r.run_node(node);
    }

    fn settle(&self, r: &mut Round<'_>, i: usize) {
        if let NodeKind::Subworkflow(s) = r.plan.nodes[i].kind {
            r.settle_scope(i, s);
        }
    }

    fn is_container(&self, _n: &NodeState) -> bool {
        true
    }
}

impl Round<'_> {
    /// A subworkflow or dynamic node whose scope runs: fail or publish when it is done.
    pub(super) fn settle_scope(&mut self, owner: usize, scope: usize) {
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

    /// The root failed with `f`: run its failure node first, if it has one.
    pub(super) fn fail_root(&mut self, f: Failure) {
        if self.failure_handled(0) {
            self.finish(WorkflowPhase::Failed, Some(f));
        }
    }

    /// A failed scope first runs its failure node (`on_failure`), if it has one. True once
    /// the scope may end: it has no handler, or the handler finished.
    pub(super) fn failure_handled(&mut self, scope: usize) -> bool {
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
    pub(super) fn first_failure(&self, scope: usize) -> Option<Failure> {
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
}
