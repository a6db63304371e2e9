//! The node-kind handlers. Each kind of node is one module implementing [`Handler`]: how
//! it begins, starts once its inputs are resolved, takes what the controller observed,
//! settles while it runs, meets its deadline, what it asks the controller to watch, when it
//! next needs a round, and how it stops. The round (`mod.rs`) walks the plan and hands
//! each node to its kind's handler; what is common to every kind (phases, retries of a
//! node, publishing outputs, failure scopes) stays there.

use super::{Effect, Observation, Round, Watch};
use crate::Nanos;
use crate::plan::{NodeKind, Plan, PlanNode};
use crate::state::NodeState;
use contrail_idl::core;

pub(super) trait Handler: Sync {
    /// The node is ready (and within the parallelism budget): begin. By default it waits
    /// in QUEUED for its inputs, which the controller resolves and reports.
    fn begin(&self, r: &mut Round<'_>, node: usize) {
        r.queue_for_inputs(node);
    }
    /// Its inputs are resolved: start running.
    fn start(&self, _r: &mut Round<'_>, _node: usize, _inputs: &core::LiteralMap) {}
    /// An observation about this node (its attempt, child, signal, cache entry).
    fn observe(&self, _r: &mut Round<'_>, _node: usize, _o: &Observation) {}
    /// The node runs: bring it up to date with what runs inside it or what it waits for.
    fn settle(&self, _r: &mut Round<'_>, _node: usize) {}
    /// The node runs: start more of what it runs in parallel, within `max_parallelism`
    /// (the execution's, when the node sets none).
    fn top_up(&self, _r: &mut Round<'_>, _node: usize, _max_parallelism: u32) {}
    /// The node is active and has a timeout: act when it has passed.
    fn deadline(&self, _r: &mut Round<'_>, _node: usize, _timeout: Nanos) {}
    /// What the controller must look at before the next round (the node is active).
    fn watches(&self, _p: &PlanNode, _node: usize, _n: &NodeState, _out: &mut Vec<Watch>) {}
    /// When the node next needs a round by the clock, if it does.
    fn wake_at(&self, _p: &PlanNode, _n: &NodeState) -> Option<Nanos> {
        None
    }
    /// The node is stopped while active: abort what it started.
    fn stop(&self, _r: &mut Round<'_>, _node: usize) {}
    /// After every stopped node was stopped: stop what they hold in turn (array items).
    fn stop_after(&self, _r: &mut Round<'_>, _node: usize) {}
    /// What an executor may run for this node that no committed state names, when the
    /// node waited to start attempt `next`.
    fn unrecorded_launch(&self, _node: usize, _n: &NodeState, _next: u32) -> Option<Effect> {
        None
    }
    /// Whether starting the node takes a slot of the execution's parallelism.
    fn takes_slot(&self) -> bool {
        false
    }
    /// Whether the active node holds a slot of the parallelism now.
    fn holds_slot(&self, _n: &NodeState) -> bool {
        false
    }
    /// Whether a failure of the node stops what runs inside it.
    fn is_container(&self, _n: &NodeState) -> bool {
        false
    }
    /// Whether a node inside this running one may start: `Some(answer)` decides (`None`
    /// waits), `None` leaves it to the node's upstream.
    fn admits(&self, _n: &NodeState, _inner_id: &str) -> Option<Option<bool>> {
        None
    }
    /// Whether the node asks for its inputs while QUEUED (tasks resolve their own).
    fn waits_for_inputs(&self) -> bool {
        true
    }
    /// Whether an execution that recovers another may take this node's result from it.
    fn recoverable(&self) -> bool {
        true
    }
}

/// The handler of a node kind.
pub(super) fn handler(kind: &NodeKind) -> &'static dyn Handler {
    match kind {
        NodeKind::Start => &super::boundary::StartNode,
        NodeKind::End => &super::boundary::EndNode,
        NodeKind::Task(_) => &super::task::TaskNode,
        NodeKind::Branch(_) => &super::branch::BranchNode,
        NodeKind::Subworkflow(_) => &super::subworkflow::SubworkflowNode,
        NodeKind::LaunchPlan(_) => &super::launch_plan::LaunchPlanNode,
        NodeKind::Gate(_) => &super::gate::GateNode,
        NodeKind::Array(_) => &super::array::ArrayNode,
        NodeKind::Unsupported(_) => &super::boundary::UnsupportedNode,
    }
}

impl Plan {
    pub(super) fn handler(&self, node: usize) -> &'static dyn Handler {
        handler(&self.nodes[node].kind)
    }
}
