//! Gate nodes: a sleep ends by the clock; a signal or an approval waits for its value
//! (an approval fails when rejected); a gate with a timeout fails when it passes.

use super::handler::Handler;
use super::{Effect, Observation, Round, Watch};
use crate::Nanos;
use crate::plan::{Gate, NodeKind, PlanNode};
use crate::state::{Failure, NodePhase, NodeState};
use contrail_idl::core;

pub(super) struct GateNode;

fn gate_of(p: &PlanNode) -> Option<&Gate> {
    match &p.kind {
        NodeKind::Gate(g) => Some(g),
        _ => None,
    }
}

impl Handler for GateNode {
    fn start(&self, r: &mut Round<'_>, node: usize, _inputs: &core::LiteralMap) {
        r.run_node(node);
        if matches!(
            gate_of(&r.plan.nodes[node]),
            Some(Gate::Signal { .. } | Gate::Approve { .. })
        ) {
            r.fx.push(Effect::CreateSignal { node });
        }
    }

    fn observe(&self, r: &mut Round<'_>, node: usize, o: &Observation) {
        if let Observation::Signal { value, .. } = o {
            r.observe_signal(node, value.as_deref());
        }
    }

    fn settle(&self, r: &mut Round<'_>, i: usize) {
        let Some(Gate::Sleep(d)) = gate_of(&r.plan.nodes[i]) else {
            return;
        };
        let since = r.s.nodes[i].started_at.unwrap_or(r.now);
        if r.now >= since.saturating_add(*d) {
            r.publish(i);
        }
    }

    fn deadline(&self, r: &mut Round<'_>, i: usize, timeout: Nanos) {
        let n = &r.s.nodes[i];
        let Some(since) = n.started_at else { return };
        if r.now >= since.saturating_add(timeout) {
            let secs = timeout as f64 / 1e9;
            let id = r.plan.nodes[i].id.clone();
            r.fail_node(
                i,
                Failure::user(
                    "TimeoutExpired",
                    format!("gate {id} was not satisfied within {secs}s"),
                    false,
                ),
            );
            r.s.nodes[i].phase = NodePhase::TimedOut;
        }
    }

    fn watches(&self, p: &PlanNode, i: usize, n: &NodeState, out: &mut Vec<Watch>) {
        if n.phase == NodePhase::Running
            && matches!(gate_of(p), Some(Gate::Signal { .. } | Gate::Approve { .. }))
        {
            out.push(Watch::Signal { node: i })
        }
    }

    fn wake_at(&self, p: &PlanNode, n: &NodeState) -> Option<Nanos> {
        if !matches!(n.phase, NodePhase::Queued | NodePhase::Running) || n.publishing {
            return None;
        }
        let since = n.started_at?;
        let timeout = p.timeout.map(|t| since.saturating_add(t));
        let sleep = match gate_of(p) {
            Some(Gate::Sleep(d)) => Some(since.saturating_add(*d)),
            _ => None,
        };
        [timeout, sleep].into_iter().flatten().min()
    }
}

impl Round<'_> {
    pub(super) fn observe_signal(&mut self, node: usize, value: Option<&core::Literal>) {
        let Some(n) = self.s.nodes.get(node) else {
            return;
        };
        if n.phase != NodePhase::Running || n.publishing {
            return;
        }
        let Some(v) = value else { return };
        match &self.plan.nodes[node].kind {
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
                    Some(true) => self.s.nodes[node].publishing = true,
                    Some(false) => self.fail_node(
                        node,
                        Failure::user(
                            "ReceivedRejectSignal",
                            format!("approval '{signal_id}' was rejected"),
                            false,
                        ),
                    ),
                    None => self.fail_node(
                        node,
                        Failure::user(
                            "InvalidSignal",
                            format!("approval '{signal_id}' was set to a non-boolean"),
                            false,
                        ),
                    ),
                }
            }
            _ => self.s.nodes[node].publishing = true,
        }
    }
}
