//! Dynamic nodes: a task that wrote `futures.pb` has its workflow compiled (against the
//! launch plans it names), stored beside it, and added to the plan as its scope.

use super::Cx;
use crate::{Controller, Error};
use contrail_blob::layout;
use contrail_compiler::{Key, References, compile_workflow};
use contrail_engine::{ExecState, Failure, Observation, Plan};
use contrail_idl::{admin, core};
use prost::Message;
use std::sync::Arc;

impl Controller {
    /// The compiled workflow a dynamic node produced (written when it was compiled).
    pub(crate) fn read_dynamic(
        &self,
        wdir: &str,
        node_id: &str,
        attempt: u32,
    ) -> Result<core::CompiledWorkflowClosure, Error> {
        let key = layout::dynamic_compiled_in(&layout::attempt_dir(wdir, node_id, attempt));
        let bytes = self.blob.get(&key)?;
        core::CompiledWorkflowClosure::decode(bytes.as_slice())
            .map_err(|e| Error::Corrupt("dynamic workflow", format!("{key}: {e}")))
    }
}

impl Cx<'_> {
    /// Compiles a dynamic node's futures.pb into a workflow closure; `Ok(Err(_))` is the
    /// user's mistake.
    pub(super) fn compile_dynamic(
        &self,
        plan: &Plan,
        node: usize,
        attempt: u32,
    ) -> Result<Result<core::CompiledWorkflowClosure, String>, Error> {
        let dir = self.node_dir(plan, node, attempt);
        let bytes = self.c.blob.get(&layout::futures_in(&dir))?;
        let djs = match core::DynamicJobSpec::decode(bytes.as_slice()) {
            Ok(d) => d,
            Err(e) => return Ok(Err(format!("futures.pb does not decode: {e}"))),
        };
        let parent = plan.task(node).cloned().unwrap_or_default();
        let parent_id = parent.id.clone().unwrap_or_default();
        let id = core::Identifier {
            resource_type: core::ResourceType::Workflow as i32,
            project: parent_id.project.clone(),
            domain: parent_id.domain.clone(),
            name: format!("dynamic_{}", plan.nodes[node].id),
            version: parent_id.version.clone(),
            org: String::new(),
        };
        let spec = admin::WorkflowSpec {
            template: Some(core::WorkflowTemplate {
                id: Some(id),
                interface: parent.interface.clone(),
                nodes: djs.nodes.clone(),
                outputs: djs.outputs.clone(),
                metadata: Some(core::WorkflowMetadata::default()),
                ..Default::default()
            }),
            sub_workflows: djs.subworkflows.clone(),
            description: None,
        };
        let mut refs = References::default();
        for t in &djs.tasks {
            if let Some(tid) = &t.id {
                refs.tasks.insert(Key::of(tid), t.clone());
            }
        }
        let req = contrail_compiler::requirements(&spec);
        for lp in &req.launch_plans {
            if let Some(iface) = self.c.launch_plan_interface(lp)? {
                refs.launch_plans.insert(lp.clone(), iface);
            }
        }
        Ok(compile_workflow(&spec, &refs).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        }))
    }

    /// Compiles node `node`'s futures, writes the closure, and grows the plan with it.
    pub(super) fn compile_dynamic_node(
        &self,
        plan: &mut Arc<Plan>,
        state: &ExecState,
        node: usize,
    ) -> Result<Option<Observation>, Error> {
        let blob = &self.c.blob;
        let attempt = state.nodes[node].attempt;
        let result = match self.compile_dynamic(plan, node, attempt)? {
            Ok(closure) => {
                let dir = self.node_dir(plan, node, attempt);
                blob.put(&layout::dynamic_compiled_in(&dir), &closure.encode_to_vec())?;
                if plan.scope_of(node).is_none() {
                    Arc::make_mut(plan)
                        .extend_dynamic(node, attempt, &closure)
                        .map_err(|e| Error::Corrupt("dynamic workflow", e.to_string()))?;
                }
                Ok(())
            }
            Err(msg) => Err(Failure::user("DynamicWorkflowBuildFailed", msg, false)),
        };
        Ok(Some(Observation::Dynamic { node, result }))
    }
}
