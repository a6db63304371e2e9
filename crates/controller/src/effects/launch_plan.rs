//! Launch-plan nodes: a child execution, created through the [`Launcher`](crate::Launcher)
//! under a deterministic name, followed, and aborted with its parent.

use super::{Cx, child_id, key_of};
use crate::{ChildRequest, Controller, Error, LaunchError};
use contrail_blob::layout;
use contrail_compiler::Key;
use contrail_engine::{ChildStatus, Failure, NodeKind, Observation, Plan};
use contrail_idl::{admin, core};
use contrail_store::ExecKey;
use prost::Message;

impl Cx<'_> {
    /// Creates a child execution of `lp` for node `node`; `Some(failure)` when the request
    /// is refused (the node or item fails), an error when it should be retried.
    pub(super) fn launch_child(
        &self,
        plan: &Plan,
        node: usize,
        child: core::WorkflowExecutionIdentifier,
        lp: &core::Identifier,
        inputs: core::LiteralMap,
    ) -> Result<Option<Failure>, Error> {
        let launcher = crate::lock(&self.c.launcher).clone();
        let Some(launcher) = launcher else {
            return Err(Error::Launch("no launcher is configured".into()));
        };
        let parent_spec = self.exec.spec.clone().unwrap_or_default();
        let meta = parent_spec.metadata.clone().unwrap_or_default();
        let spec = admin::ExecutionSpec {
            launch_plan: Some(lp.clone()),
            metadata: Some(admin::ExecutionMetadata {
                mode: admin::execution_metadata::ExecutionMode::ChildWorkflow as i32,
                principal: meta.principal.clone(),
                nesting: meta.nesting + 1,
                parent_node_execution: Some(core::NodeExecutionIdentifier {
                    node_id: plan.nodes[node].id.clone(),
                    execution_id: self.exec.id.clone(),
                }),
                ..Default::default()
            }),
            labels: parent_spec.labels.clone(),
            annotations: parent_spec.annotations.clone(),
            security_context: parent_spec.security_context.clone(),
            raw_output_data_config: parent_spec.raw_output_data_config.clone(),
            max_parallelism: parent_spec.max_parallelism,
            interruptible: parent_spec.interruptible,
            overwrite_cache: parent_spec.overwrite_cache,
            envs: parent_spec.envs.clone(),
            // A child runs where its parent was sent.
            execution_cluster_label: parent_spec.execution_cluster_label.clone(),
            ..Default::default()
        };
        match launcher.launch_child(ChildRequest {
            child: key_of(&child),
            spec,
            inputs,
        }) {
            Ok(()) => {
                self.c.wake(key_of(&child));
                Ok(None)
            }
            Err(LaunchError::Invalid(msg)) => {
                Ok(Some(Failure::user("ChildExecutionRejected", msg, false)))
            }
            Err(LaunchError::Unavailable(msg)) => Err(Error::Launch(msg)),
        }
    }

    /// Asks a child execution to stop because its parent stopped.
    pub(super) fn abort_child(&self, child: ExecKey) -> Result<(), Error> {
        let cause = format!(
            "cascading abort: parent execution {} was stopped",
            self.k.name
        );
        self.c
            .store
            .request_abort(&child, &cause, self.c.clock.now())?;
        self.c.wake(child);
        Ok(())
    }

    /// How a child execution stands, seen from its parent.
    pub(super) fn child_status(&self, child: &ExecKey) -> Result<ChildStatus, Error> {
        Ok(match self.c.store.get_execution(child)? {
            None => ChildStatus::Unknown,
            Some(rec) if !rec.is_terminal() => ChildStatus::Running,
            Some(rec) => {
                use core::workflow_execution::Phase;
                let e = admin::Execution::decode(rec.record.as_slice()).unwrap_or_default();
                let closure = e.closure.unwrap_or_default();
                match Phase::try_from(rec.phase) {
                    Ok(Phase::Succeeded) => ChildStatus::Succeeded,
                    Ok(Phase::Aborted) => ChildStatus::Aborted,
                    _ => {
                        use admin::execution_closure::OutputResult;
                        let (code, msg) = match closure.output_result {
                            Some(OutputResult::Error(err)) => (err.code, err.message),
                            _ => ("ChildFailed".into(), "failed".into()),
                        };
                        ChildStatus::Failed(Failure::user(
                            &code,
                            format!("child execution {} failed: {msg}", child.name),
                            false,
                        ))
                    }
                }
            }
        })
    }

    /// Creates the child execution of launch-plan node `node`.
    pub(super) fn launch_child_node(
        &self,
        plan: &Plan,
        node: usize,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        let NodeKind::LaunchPlan(lp) = &plan.nodes[node].kind else {
            return Ok(None);
        };
        let inputs = self
            .c
            .read_map(&layout::node_inputs(self.wdir, &plan.nodes[node].id))?;
        let rejected = self.launch_child(plan, node, child_id(k, plan, node), lp, inputs)?;
        Ok(rejected.map(|f| Observation::Child {
            node,
            status: ChildStatus::Failed(f),
        }))
    }

    pub(super) fn abort_child_node(
        &self,
        plan: &Plan,
        node: usize,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        self.abort_child(key_of(&child_id(k, plan, node)))?;
        Ok(None)
    }

    /// How the node's child execution stands.
    pub(super) fn observe_child(&self, plan: &Plan, node: usize) -> Result<Observation, Error> {
        let child = key_of(&child_id(self.k, plan, node));
        Ok(Observation::Child {
            node,
            status: self.child_status(&child)?,
        })
    }

    /// Writes a finished launch-plan node's outputs: its child's.
    pub(super) fn publish_launch_plan(
        &self,
        plan: &Plan,
        i: usize,
        out: &str,
    ) -> Result<Result<(), Failure>, Error> {
        let child = child_id(self.k, plan, i);
        let from = layout::attempt_outputs(
            &layout::workflow_dir(&child.project, &child.domain, &child.name),
            "end-node",
            0,
        );
        if let Err(f) = self.copy_map(&from, out)? {
            return Ok(Err(f));
        }
        Ok(Ok(()))
    }
}

impl Controller {
    /// The interface of a registered launch plan (for launch-plan nodes inside dynamic
    /// workflows).
    pub(super) fn launch_plan_interface(
        &self,
        key: &Key,
    ) -> Result<Option<contrail_compiler::LaunchPlanInterface>, Error> {
        let ek = contrail_store::EntityKey {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: key.name.clone(),
            version: key.version.clone(),
        };
        let Some(rec) = self
            .store
            .get_entity(contrail_store::EntityKind::LaunchPlan, &ek)?
        else {
            return Ok(None);
        };
        let c = admin::LaunchPlanClosure::decode(rec.closure.as_slice())
            .map_err(|e| Error::Corrupt("launch plan", e.to_string()))?;
        Ok(Some(contrail_compiler::LaunchPlanInterface {
            inputs: c.expected_inputs.unwrap_or_default(),
            outputs: c.expected_outputs.unwrap_or_default(),
        }))
    }
}
