//! Dynamic nodes: a task that produced a workflow has it compiled, then runs it as the
//! node's scope and publishes its outputs when it is done.

use super::{Effect, Round};
use crate::state::{DynamicPhase, Failure};

impl Round<'_> {
    pub(super) fn observe_dynamic(&mut self, node: usize, result: &Result<(), Failure>) {
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        if n.dynamic() != Some(DynamicPhase::Compiling) || n.phase.is_terminal() {
            return;
        }
        match result {
            Ok(()) => n.set_dynamic(DynamicPhase::Executing),
            Err(f) => self.fail_node(node, f.clone()),
        }
    }

    /// A dynamic task whose workflow is compiling asks again; one that executes it settles
    /// like a subworkflow.
    pub(super) fn settle_dynamic(&mut self, i: usize) {
        match self.s.nodes[i].dynamic() {
            Some(DynamicPhase::Compiling) => self.fx.push(Effect::CompileDynamic { node: i }),
            Some(DynamicPhase::Executing) => {
                if let Some(s) = self.plan.scope_of(i) {
                    self.settle_scope(i, s);
                }
            }
            None => {}
        }
    }
}
