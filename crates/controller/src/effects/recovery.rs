//! Recovery: a node of an execution that recovers another takes the original's result
//! when it has one.

use super::{Cx, key_of};
use crate::Error;
use contrail_blob::layout;
use contrail_engine::Plan;
use contrail_idl::{admin, core};
use prost::Message;

impl Cx<'_> {
    /// Reuses the recovered execution's result for node `i`, if it succeeded there.
    pub(super) fn try_recover(&self, plan: &Plan, i: usize) -> Result<bool, Error> {
        let Some(orig) = self
            .exec
            .spec
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .and_then(|m| m.reference_execution.as_ref())
        else {
            return Ok(false);
        };
        let orig = key_of(orig);
        let id = &plan.nodes[i].id;
        let Some(rec) = self.c.store.get_node_execution(&orig, id)? else {
            return Ok(false);
        };
        use core::node_execution::Phase;
        if rec.phase != Phase::Succeeded as i32 && rec.phase != Phase::Recovered as i32 {
            return Ok(false);
        }
        let ne = admin::NodeExecution::decode(rec.record.as_slice())
            .map_err(|e| Error::Corrupt("node execution", e.to_string()))?;
        #[allow(deprecated)]
        let out_uri = match ne.closure.and_then(|c| c.output_result) {
            Some(admin::node_execution_closure::OutputResult::OutputUri(u)) => u,
            _ => return Ok(false),
        };
        let from = self.c.blob.key_of(&out_uri)?.to_string();
        // Outputs that are gone cannot be recovered: the node runs again.
        if self
            .copy_map(&from, &self.outputs_key(plan, i, 0))?
            .is_err()
        {
            return Ok(false);
        }
        if !ne.input_uri.is_empty()
            && let Ok(from) = self.c.blob.key_of(&ne.input_uri)
        {
            // Inputs are shown, not used: a missing copy changes nothing.
            let _shown = self.copy_map(from, &layout::node_inputs(self.wdir, id))?;
        }
        Ok(true)
    }
}
