//! Branch nodes: the engine chooses the case; a finished branch takes the chosen node's
//! outputs as its own.

use super::Cx;
use crate::Error;
use contrail_engine::{ExecState, Failure, Plan};

impl Cx<'_> {
    /// Writes a finished branch's outputs: those of the node its conditions chose.
    pub(super) fn publish_branch(
        &self,
        plan: &Plan,
        state: &ExecState,
        i: usize,
        out: &str,
    ) -> Result<Result<(), Failure>, Error> {
        let chosen = state.nodes[i]
            .chosen()
            .and_then(|c| plan.index.get(c).copied());
        if let Some(c) = chosen
            && let Err(f) =
                self.copy_map(&self.outputs_key(plan, c, state.nodes[c].attempt), out)?
        {
            return Ok(Err(f));
        }
        Ok(Ok(()))
    }
}
