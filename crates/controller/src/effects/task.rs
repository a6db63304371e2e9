//! Task nodes (and the items of arrays over tasks): what an attempt is given to run, and
//! how it is started, stopped and looked at through the executor.

use super::Cx;
use crate::{Error, attempt_id, telemetry};
use contrail_blob::layout;
use contrail_engine::{ExecState, Failure, NodeKind, Observation, Plan, ids};
use contrail_executor::{AttemptPaths, AttemptSpec};
use contrail_idl::{admin, core};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A task as one node runs it: the node's `with_overrides` (resources, per name; the
/// container image; a pod template, which replaces the container) applied.
pub(super) fn with_overrides(
    mut task: core::TaskTemplate,
    node: &core::Node,
) -> core::TaskTemplate {
    use core::node::Target;
    let task_node = match &node.target {
        Some(Target::TaskNode(t)) => Some(t),
        Some(Target::ArrayNode(a)) => a.node.as_ref().and_then(|n| match &n.target {
            Some(Target::TaskNode(t)) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    let Some(overrides) = task_node.and_then(|t| t.overrides.as_ref()) else {
        return task;
    };
    if let Some(pod) = &overrides.pod_template {
        if !pod.primary_container_name.is_empty() {
            task.config.insert(
                "primary_container_name".into(),
                pod.primary_container_name.clone(),
            );
        }
        task.target = Some(core::task_template::Target::K8sPod(pod.clone()));
        return task;
    }
    if let Some(core::task_template::Target::Container(c)) = &mut task.target {
        if !overrides.container_image.is_empty() {
            c.image = overrides.container_image.clone();
        }
        if let Some(wanted) = &overrides.resources {
            let own = c.resources.get_or_insert_with(Default::default);
            let merge = |own: &mut Vec<core::resources::ResourceEntry>,
                         wanted: &[core::resources::ResourceEntry]| {
                for w in wanted {
                    own.retain(|e| e.name != w.name);
                    own.push(w.clone());
                }
            };
            merge(&mut own.requests, &wanted.requests);
            merge(&mut own.limits, &wanted.limits);
        }
    }
    task
}

/// The executor an execution asked for by its `execution_cluster_label` (empty: none).
pub(crate) fn cluster_label(spec: Option<&admin::ExecutionSpec>) -> String {
    spec.and_then(|s| s.execution_cluster_label.as_ref())
        .map(|l| l.value.clone())
        .unwrap_or_default()
}

/// Labels or annotations, in name order.
pub(super) fn sorted_map(values: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    values
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The service account an execution runs as: its security context's, else the one in the
/// deprecated `auth_role` (older clients still send it, and Flyte still honours it).
#[allow(deprecated)]
pub(super) fn service_account(spec: Option<&admin::ExecutionSpec>) -> String {
    spec.and_then(|s| {
        let run_as = s.security_context.as_ref().and_then(|c| c.run_as.as_ref());
        run_as
            .map(|r| r.k8s_service_account.clone())
            .filter(|a| !a.is_empty())
            .or_else(|| {
                s.auth_role
                    .as_ref()
                    .map(|r| r.kubernetes_service_account.clone())
            })
    })
    .unwrap_or_default()
}

/// The task's own `interruptible`, else the execution's.
pub(super) fn interruptible(
    task: &Option<core::TaskMetadata>,
    spec: Option<&admin::ExecutionSpec>,
) -> bool {
    use core::task_metadata::InterruptibleValue;
    match task.as_ref().and_then(|m| m.interruptible_value.as_ref()) {
        Some(InterruptibleValue::Interruptible(v)) => *v,
        None => spec.and_then(|s| s.interruptible).unwrap_or(false),
    }
}

impl Cx<'_> {
    pub(crate) fn attempt_spec(
        &self,
        plan: &Plan,
        node: usize,
        item: Option<u32>,
        attempt: u32,
    ) -> AttemptSpec {
        let (k, p) = (self.k, &plan.nodes[node]);
        let task = with_overrides(plan.task(node).cloned().unwrap_or_default(), &p.node);
        let spec = self.exec.spec.as_ref();
        let raw_base = spec
            .and_then(|s| s.raw_output_data_config.as_ref())
            .map(|r| r.output_location_prefix.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.c.blob.uri(layout::RAW_DATA));
        let raw_for = |a: u32| {
            let unique = attempt_id(k, &p.id, item, a);
            format!("{raw_base}/{}/{unique}", ids::shard(&unique))
        };
        let raw = raw_for(attempt);
        let mut envs: Vec<(String, String)> = spec
            .and_then(|s| s.envs.as_ref())
            .map(|e| {
                e.values
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut inputs = layout::node_inputs(self.wdir, &p.id);
        let output_prefix = match item {
            None => self.node_dir(plan, node, attempt),
            Some(i) => {
                if let NodeKind::Array(a) = &p.kind
                    && a.individual_inputs
                {
                    inputs = self.item_inputs_key(plan, node, i);
                }
                envs.push(("FLYTE_K8S_ARRAY_INDEX".into(), i.to_string()));
                envs.push((
                    "BATCH_JOB_ARRAY_INDEX_VAR_NAME".into(),
                    "FLYTE_K8S_ARRAY_INDEX".into(),
                ));
                layout::item_dir(self.wdir, &p.id, i, attempt)
            }
        };
        let closure = self.exec.closure.as_ref();
        let task_meta = task.metadata.clone();
        AttemptSpec {
            id: attempt_id(k, &p.id, item, attempt),
            project: k.project.clone(),
            domain: k.domain.clone(),
            execution: k.name.clone(),
            workflow: closure
                .and_then(|c| c.workflow_id.as_ref())
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            launch_plan: spec
                .and_then(|s| s.launch_plan.as_ref())
                .map(|lp| lp.name.clone())
                .unwrap_or_default(),
            node_id: p.id.clone(),
            attempt,
            task,
            paths: AttemptPaths {
                inputs: self.c.blob.uri(&inputs),
                output_prefix: self.c.blob.uri(&output_prefix),
                checkpoint_prefix: format!("{raw}/_flytecheckpoints"),
                prev_checkpoint_prefix: (attempt > 0)
                    .then(|| format!("{}/_flytecheckpoints", raw_for(attempt - 1))),
                raw_output_prefix: raw,
            },
            inputs: core::LiteralMap::default(),
            envs,
            cluster_label: cluster_label(spec),
            labels: sorted_map(spec.and_then(|s| s.labels.as_ref()).map(|l| &l.values)),
            annotations: sorted_map(spec.and_then(|s| s.annotations.as_ref()).map(|a| &a.values)),
            service_account: service_account(spec),
            interruptible: interruptible(&task_meta, spec),
        }
    }

    /// Records how long after its last upstream node ended a node is launched.
    pub(super) fn record_edge_latency(&self, plan: &Plan, state: &ExecState, node: usize) {
        let upstream_end = plan.nodes[node]
            .upstream
            .iter()
            .filter_map(|&u| state.nodes.get(u).and_then(|n| n.finished_at))
            .max();
        if let Some(end) = upstream_end {
            let after = (self.c.clock.now() - end).max(0) as u64;
            telemetry::edge_latency(std::time::Duration::from_nanos(after));
        }
    }

    /// Resolves the attempt's inputs, writes them, and starts it (idempotent per id).
    pub(super) fn launch_attempt(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
        item: Option<u32>,
        attempt: u32,
    ) -> Result<Option<Observation>, Error> {
        let (k, blob) = (self.k, &self.c.blob);
        let p = &plan.nodes[node];
        let inputs_key = layout::node_inputs(self.wdir, &p.id);
        // Where this attempt's inputs are written, and what they are. Items that
        // share the node's single inputs file read and index it themselves:
        // nothing is loaded for them (10,000 items would load it 10,000 times).
        let resolved = match (item, &p.kind) {
            (None, _) => Some((
                inputs_key,
                self.resolve(plan, state, p.scope, &p.node.inputs)?,
            )),
            (Some(i), NodeKind::Array(a)) if a.individual_inputs => Some((
                self.item_inputs_key(plan, node, i),
                self.item_inputs(plan, node, i)?,
            )),
            _ => None,
        };
        let inputs = match resolved {
            None => core::LiteralMap::default(),
            Some((key, Ok(m))) => {
                blob.put(&key, &m.encode_to_vec())?;
                m
            }
            Some((_, Err(msg))) => {
                return Ok(Some(Observation::LaunchRejected {
                    node,
                    item,
                    attempt,
                    failure: Failure::system("BindingResolutionFailure", msg, false),
                }));
            }
        };
        let mut spec = self.attempt_spec(plan, node, item, attempt);
        spec.inputs = inputs;
        if item.is_none() && attempt == 0 {
            self.record_edge_latency(plan, state, node);
        }
        let me = Arc::downgrade(self.c);
        let key = k.clone();
        self.c.executor.launch(
            &spec,
            Box::new(move || {
                if let Some(c) = me.upgrade() {
                    c.wake(key.clone());
                }
            }),
        )?;
        Ok(None)
    }

    pub(super) fn abort_attempt(
        &self,
        plan: &Plan,
        node: usize,
        item: Option<u32>,
        attempt: u32,
    ) -> Result<Option<Observation>, Error> {
        let spec = self.attempt_spec(plan, node, item, attempt);
        self.c.executor.abort(&spec)?;
        Ok(None)
    }

    /// What the executor says of an attempt.
    pub(super) fn observe_attempt(
        &self,
        plan: &Plan,
        node: usize,
        item: Option<u32>,
        attempt: u32,
    ) -> Result<Observation, Error> {
        let spec = self.attempt_spec(plan, node, item, attempt);
        Ok(Observation::Task {
            node,
            item,
            attempt,
            status: self.c.executor.status(&spec)?,
        })
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::resources::{ResourceEntry, ResourceName};

    fn entry(name: ResourceName, value: &str) -> ResourceEntry {
        ResourceEntry {
            name: name as i32,
            value: value.into(),
        }
    }

    #[test]
    fn node_overrides_replace_resources_by_name_and_the_image() {
        let task = core::TaskTemplate {
            target: Some(core::task_template::Target::Container(core::Container {
                image: "img:1".into(),
                resources: Some(core::Resources {
                    requests: vec![
                        entry(ResourceName::Cpu, "1"),
                        entry(ResourceName::Memory, "1Gi"),
                    ],
                    limits: vec![],
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let node = core::Node {
            target: Some(core::node::Target::TaskNode(core::TaskNode {
                overrides: Some(core::TaskNodeOverrides {
                    resources: Some(core::Resources {
                        requests: vec![entry(ResourceName::Memory, "4Gi")],
                        limits: vec![entry(ResourceName::Gpu, "1")],
                    }),
                    container_image: "img:2".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let out = with_overrides(task.clone(), &node);
        let Some(core::task_template::Target::Container(c)) = &out.target else {
            panic!("a container")
        };
        assert_eq!(c.image, "img:2");
        let r = c.resources.clone().unwrap();
        assert_eq!(
            r.requests,
            [
                entry(ResourceName::Cpu, "1"),
                entry(ResourceName::Memory, "4Gi")
            ]
        );
        assert_eq!(r.limits, [entry(ResourceName::Gpu, "1")]);
        assert_eq!(with_overrides(task.clone(), &core::Node::default()), task);
    }
}
