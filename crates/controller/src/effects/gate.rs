//! Gate nodes: sleeps (the engine's timer), signals and approvals (a row in the signals
//! table, made when the gate starts and set through the API).

use super::Cx;
use crate::Error;
use contrail_blob::layout;
use contrail_engine::{Failure, Gate, NodeKind, Observation, Plan};
use contrail_idl::core;
use prost::Message;

impl Cx<'_> {
    /// Makes the gate's signal exist, so it can be listed and set.
    pub(super) fn create_signal(
        &self,
        plan: &Plan,
        node: usize,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        use core::gate_node::Condition;
        let (id, ty) = match plan.nodes[node].node.target.as_ref() {
            Some(core::node::Target::GateNode(g)) => match &g.condition {
                Some(Condition::Signal(s)) => {
                    (s.signal_id.clone(), s.r#type.clone().unwrap_or_default())
                }
                Some(Condition::Approve(a)) => (
                    a.signal_id.clone(),
                    core::LiteralType {
                        r#type: Some(core::literal_type::Type::Simple(
                            core::SimpleType::Boolean as i32,
                        )),
                        ..Default::default()
                    },
                ),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        self.c
            .store
            .get_or_create_signal(k, &id, &ty.encode_to_vec(), self.c.clock.now())?;
        Ok(None)
    }

    /// The signal's value, if it has one.
    pub(super) fn observe_signal(&self, plan: &Plan, node: usize) -> Result<Observation, Error> {
        let id = match &plan.nodes[node].kind {
            NodeKind::Gate(Gate::Signal { signal_id, .. } | Gate::Approve { signal_id }) => {
                signal_id.clone()
            }
            _ => String::new(),
        };
        let value = self
            .c
            .store
            .get_signal(self.k, &id)?
            .and_then(|s| s.value)
            .map(|v| core::Literal::decode(v.as_slice()).map(Box::new))
            .transpose()
            .map_err(|e| Error::Corrupt("signal value", e.to_string()))?;
        Ok(Observation::Signal { node, value })
    }

    /// Writes a finished gate's outputs: nothing for a sleep, the approved value for an
    /// approval, the signal's value for a signal.
    pub(super) fn publish_gate(
        &self,
        plan: &Plan,
        gate: &Gate,
        i: usize,
        out: &str,
    ) -> Result<Result<(), Failure>, Error> {
        let blob = &self.c.blob;
        let inputs_key = layout::node_inputs(self.wdir, &plan.nodes[i].id);
        match gate {
            Gate::Sleep(_) => blob.put(out, &core::LiteralMap::default().encode_to_vec())?,
            Gate::Approve { .. } => {
                if let Err(f) = self.copy_map(&inputs_key, out)? {
                    return Ok(Err(f));
                }
            }
            Gate::Signal { signal_id, var } => {
                let value = self
                    .c
                    .store
                    .get_signal(self.k, signal_id)?
                    .and_then(|s| s.value)
                    .map(|v| core::Literal::decode(v.as_slice()))
                    .transpose()
                    .map_err(|e| Error::Corrupt("signal value", e.to_string()))?;
                let Some(v) = value else {
                    return Ok(Err(Failure::system(
                        "SignalMissing",
                        format!("signal {signal_id} has no value"),
                        true,
                    )));
                };
                let m = core::LiteralMap {
                    literals: [(var.clone(), v)].into_iter().collect(),
                };
                blob.put(out, &m.encode_to_vec())?;
            }
        }
        Ok(Ok(()))
    }
}
