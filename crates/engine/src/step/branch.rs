//! Branch nodes: once the inputs are resolved the conditions choose one node, the others
//! are skipped, and the branch ends as its chosen node does.

use super::Round;
use super::handler::Handler;
use crate::plan::NodeKind;
use crate::state::{Failure, NodePhase, NodeState};
use contrail_idl::core;

pub(super) struct BranchNode;

impl Handler for BranchNode {
    fn start(&self, r: &mut Round<'_>, node: usize, inputs: &core::LiteralMap) {
        let now = r.now;
        let p = &r.plan.nodes[node];
        let NodeKind::Branch(b) = &p.kind else { return };
        let mut chosen = None;
        for (cond, child) in &b.cases {
            match crate::branch::evaluate(cond, inputs) {
                Ok(true) => {
                    chosen = Some(*child);
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    return r.fail_node(
                        node,
                        Failure::user(
                            "BranchEvaluationFailed",
                            format!("branch {}: {e}", p.id),
                            false,
                        ),
                    );
                }
            }
        }
        let Some(chosen) = chosen.or(b.else_node) else {
            let msg = b
                .else_fail
                .clone()
                .unwrap_or_else(|| format!("branch {}: no branch satisfied its condition", p.id));
            let code = if b.else_fail.is_some() {
                "UserDefinedError"
            } else {
                "MalformedBranchUserError"
            };
            return r.fail_node(node, Failure::user(code, msg, false));
        };
        let others = b
            .cases
            .iter()
            .map(|c| c.1)
            .chain(b.else_node)
            .filter(|c| *c != chosen);
        for o in others {
            let n = &mut r.s.nodes[o];
            n.phase = NodePhase::Skipped;
            n.queued_at = Some(now);
            n.finished_at = Some(now);
        }
        r.s.nodes[node].set_chosen(r.plan.nodes[chosen].id.clone());
        r.run_node(node);
    }

    fn settle(&self, r: &mut Round<'_>, i: usize) {
        let chosen = r.s.nodes[i]
            .chosen()
            .and_then(|c| r.plan.index.get(c).copied());
        let Some(c) = chosen else { return };
        let child = &r.s.nodes[c];
        if child.phase.is_success() {
            r.publish(i);
        } else if child.phase.is_terminal() {
            let f = child.error.clone().unwrap_or_else(|| {
                Failure::system("BranchNodeFailed", "the chosen node did not finish", false)
            });
            r.fail_node(i, f);
        }
    }

    fn is_container(&self, _n: &NodeState) -> bool {
        true
    }

    fn admits(&self, n: &NodeState, inner_id: &str) -> Option<Option<bool>> {
        Some((n.chosen() == Some(inner_id)).then_some(true))
    }
}
