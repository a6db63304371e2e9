//! Launch-plan nodes: a child execution, created once the inputs are resolved, followed
//! until it ends, and aborted when the node is stopped.

use super::handler::Handler;
use super::{ChildStatus, Effect, Observation, Round, Watch};
use crate::plan::PlanNode;
use crate::state::{Failure, NodePhase, NodeState};
use contrail_idl::core;

pub(super) struct LaunchPlanNode;

impl Handler for LaunchPlanNode {
    fn start(&self, r: &mut Round<'_>, node: usize, _inputs: &core::LiteralMap) {
        r.run_node(node);
        r.fx.push(Effect::LaunchChild { node });
    }

    fn observe(&self, r: &mut Round<'_>, node: usize, o: &Observation) {
        if let Observation::Child { status, .. } = o {
            r.observe_child(node, status);
        }
    }

    fn watches(&self, _p: &PlanNode, i: usize, n: &NodeState, out: &mut Vec<Watch>) {
        if n.phase == NodePhase::Running {
            out.push(Watch::Child { node: i })
        }
    }

    fn stop(&self, r: &mut Round<'_>, i: usize) {
        if r.s.nodes[i].phase == NodePhase::Running {
            r.fx.push(Effect::AbortChild { node: i });
        }
    }

    fn unrecorded_launch(&self, node: usize, n: &NodeState, _next: u32) -> Option<Effect> {
        (n.phase == NodePhase::NotYetStarted).then_some(Effect::AbortChild { node })
    }

    fn takes_slot(&self) -> bool {
        true
    }

    fn holds_slot(&self, _n: &NodeState) -> bool {
        true
    }
}

impl Round<'_> {
    pub(super) fn observe_child(&mut self, node: usize, status: &ChildStatus) {
        let Some(n) = self.s.nodes.get(node) else {
            return;
        };
        if n.phase != NodePhase::Running || n.publishing {
            return;
        }
        match status {
            ChildStatus::Unknown => {
                if !self.fx.contains(&Effect::LaunchChild { node }) {
                    self.fx.push(Effect::LaunchChild { node });
                }
            }
            ChildStatus::Running => {}
            ChildStatus::Succeeded => self.s.nodes[node].publishing = true,
            ChildStatus::Failed(f) => self.fail_node(node, f.clone()),
            ChildStatus::Aborted => self.fail_node(
                node,
                Failure::user(
                    "RemoteChildWorkflowExecutionFailed",
                    "the child execution was aborted",
                    false,
                ),
            ),
        }
    }
}
