//! The start and end nodes, and nodes of a kind Contrail does not run.

use super::handler::Handler;
use super::{Effect, Round};
use crate::plan::NodeKind;
use crate::state::{Failure, NodePhase, WorkflowPhase};

pub(super) struct StartNode;

impl Handler for StartNode {
    fn begin(&self, _r: &mut Round<'_>, _node: usize) {}
    fn recoverable(&self) -> bool {
        false
    }
}

/// The end node: once everything before it is done, the workflow publishes its outputs.
pub(super) struct EndNode;

impl Handler for EndNode {
    fn begin(&self, r: &mut Round<'_>, _node: usize) {
        let i = r.plan.end;
        let n = &mut r.s.nodes[i];
        n.phase = NodePhase::Running;
        n.queued_at = Some(r.now);
        n.started_at = Some(r.now);
        r.s.phase = WorkflowPhase::Succeeding;
        r.fx.push(Effect::PublishOutputs);
    }
    fn recoverable(&self) -> bool {
        false
    }
}

pub(super) struct UnsupportedNode;

impl Handler for UnsupportedNode {
    fn begin(&self, r: &mut Round<'_>, node: usize) {
        let p = &r.plan.nodes[node];
        let NodeKind::Unsupported(kind) = &p.kind else {
            return;
        };
        let msg = format!("node {}: {kind} is not supported", p.id);
        r.fail_node(node, Failure::system("UnsupportedNode", msg, false));
    }
}
