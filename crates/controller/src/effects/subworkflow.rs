//! Subworkflow nodes (and dynamic nodes, whose generated workflow is a scope the same
//! way): a finished scope's outputs are its output bindings, resolved inside it.

use super::Cx;
use crate::Error;
use contrail_engine::{ExecState, Failure, Plan};
use prost::Message;

impl Cx<'_> {
    /// Writes the outputs of a finished subworkflow (or dynamic) node.
    pub(super) fn publish_scope(
        &self,
        plan: &Plan,
        state: &ExecState,
        i: usize,
        out: &str,
    ) -> Result<Result<(), Failure>, Error> {
        let blob = &self.c.blob;
        let Some(scope) = plan.scope_of(i) else {
            return Ok(Err(Failure::system(
                "SubWorkflowMissing",
                "the node's workflow is not part of the plan",
                false,
            )));
        };
        match self.resolve(plan, state, scope, &plan.scopes[scope].outputs)? {
            Ok(m) => blob.put(out, &m.encode_to_vec())?,
            Err(msg) => {
                return Ok(Err(Failure::system("OutputResolutionFailure", msg, false)));
            }
        }
        Ok(Ok(()))
    }
}
