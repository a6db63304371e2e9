//! The controller's hands and eyes: what each [`Effect`] does to the world and how each
//! [`Watch`] is looked at. Every effect is safe to repeat; data problems come back as
//! observations (the node fails), IO problems as errors (the round is retried).

use crate::telemetry;
use crate::{ChildRequest, Controller, Error, LaunchError, attempt_id};
use contrail_blob::layout;
use contrail_compiler::{Key, References, compile_workflow};
use contrail_engine::{CacheOutcome, CatalogRef};
use contrail_engine::{
    ChildStatus, Effect, ExecState, Failure, Gate, Item, NodeKind, Observation, Plan, Watch, ids,
    resolve,
};
use contrail_executor::{AttemptPaths, AttemptSpec};
use contrail_idl::{admin, core};
use contrail_store::{ArtifactRecord, ArtifactUse, CatalogKey, ExecKey};

/// How long a serialized cache reservation lives without being renewed (Flyte: 3 × 10 s).
const RESERVATION_LEASE: i64 = 30_000_000_000;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Promises on this node id (or `""`) read the scope's inputs.
const START_NODE: &str = "start-node";

/// The deterministic name of a launch-plan node's child execution (Flyte's rule:
/// `<parent>-<node>-<attempt>`, hashed beyond 20 characters).
pub(crate) fn child_id(k: &ExecKey, plan: &Plan, i: usize) -> core::WorkflowExecutionIdentifier {
    core::WorkflowExecutionIdentifier {
        project: k.project.clone(),
        domain: k.domain.clone(),
        name: ids::fixed_length_unique_id(20, &[&k.name, &plan.nodes[i].id, "0"]),
        org: String::new(),
    }
}

/// The child execution of one item of an array over a launch plan.
pub(crate) fn child_item_id(
    k: &ExecKey,
    plan: &Plan,
    i: usize,
    item: u32,
) -> core::WorkflowExecutionIdentifier {
    core::WorkflowExecutionIdentifier {
        name: ids::fixed_length_unique_id(
            20,
            &[&k.name, &plan.nodes[i].id, &item.to_string(), "0"],
        ),
        ..child_id(k, plan, i)
    }
}

/// Flyte's cache key of running `task` on `inputs`, as the store files it.
fn catalog_key(task: &core::TaskTemplate, inputs: &core::LiteralMap) -> Result<CatalogKey, String> {
    contrail_catalog::cache_key(task, inputs)
        .map(|k| CatalogKey {
            project: k.project,
            domain: k.domain,
            name: k.name,
            version: k.version,
            tag: k.tag,
        })
        .map_err(|e| e.to_string())
}

fn key_of(id: &core::WorkflowExecutionIdentifier) -> ExecKey {
    ExecKey {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: id.name.clone(),
    }
}

/// A task as one node runs it: the node's `with_overrides` (resources, per name; the
/// container image; a pod template, which replaces the container) applied.
fn with_overrides(mut task: core::TaskTemplate, node: &core::Node) -> core::TaskTemplate {
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
fn sorted_map(values: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    values
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The service account an execution runs as: its security context's, else the one in the
/// deprecated `auth_role` (older clients still send it, and Flyte still honours it).
#[allow(deprecated)]
fn service_account(spec: Option<&admin::ExecutionSpec>) -> String {
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
fn interruptible(task: &Option<core::TaskMetadata>, spec: Option<&admin::ExecutionSpec>) -> bool {
    use core::task_metadata::InterruptibleValue;
    match task.as_ref().and_then(|m| m.interruptible_value.as_ref()) {
        Some(InterruptibleValue::Interruptible(v)) => *v,
        None => spec.and_then(|s| s.interruptible).unwrap_or(false),
    }
}

fn none_literal() -> core::Literal {
    resolve::scalar_literal(core::scalar::Value::NoneType(core::Void {}))
}

/// One execution's context for a round.
pub(crate) struct Cx<'a> {
    pub c: &'a Arc<Controller>,
    pub k: &'a ExecKey,
    pub exec: &'a admin::Execution,
    /// Where the execution's inputs are.
    pub inputs_key: &'a str,
    pub wdir: &'a str,
    /// The last whole inputs file an array item's cache key was derived from (one map
    /// serves every item of a round).
    pub inputs_memo: std::cell::RefCell<Option<(String, Arc<core::LiteralMap>)>>,
}

impl Controller {
    pub(crate) fn read_map(&self, key: &str) -> Result<core::LiteralMap, Error> {
        let bytes = self.blob.get(key)?;
        core::LiteralMap::decode(bytes.as_slice())
            .map_err(|e| Error::Corrupt("literal map", format!("{key}: {e}")))
    }

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
    fn node_dir(&self, plan: &Plan, i: usize, attempt: u32) -> String {
        layout::attempt_dir(self.wdir, &plan.nodes[i].id, attempt)
    }

    fn outputs_key(&self, plan: &Plan, i: usize, attempt: u32) -> String {
        layout::attempt_outputs(self.wdir, &plan.nodes[i].id, attempt)
    }

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

    /// Looks at one thing the engine waits on.
    pub(crate) fn observe(
        &self,
        plan: &Plan,
        state: &ExecState,
        w: Watch,
    ) -> Result<Option<Observation>, Error> {
        Ok(Some(match w {
            Watch::Attempt {
                node,
                item,
                attempt,
            } => {
                let spec = self.attempt_spec(plan, node, item, attempt);
                Observation::Task {
                    node,
                    item,
                    attempt,
                    status: self.c.executor.status(&spec)?,
                }
            }
            Watch::Child { node } => {
                let child = key_of(&child_id(self.k, plan, node));
                Observation::Child {
                    node,
                    status: self.child_status(&child)?,
                }
            }
            Watch::ChildItem { node, item } => {
                let child = key_of(&child_item_id(self.k, plan, node, item));
                let mut status = self.child_status(&child)?;
                if status == ChildStatus::Succeeded {
                    // The item's outputs are the child's; gathered like a task item's.
                    let from = layout::attempt_outputs(
                        &layout::workflow_dir(&child.project, &child.domain, &child.name),
                        "end-node",
                        0,
                    );
                    let to = layout::outputs_in(&self.item_dir(plan, node, item, 0));
                    if let Err(f) = self.copy_map(&from, &to)? {
                        status = ChildStatus::Failed(f);
                    }
                }
                Observation::ChildItem { node, item, status }
            }
            Watch::Signal { node } => {
                let id = match &plan.nodes[node].kind {
                    NodeKind::Gate(
                        Gate::Signal { signal_id, .. } | Gate::Approve { signal_id },
                    ) => signal_id.clone(),
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
                Observation::Signal { node, value }
            }
            Watch::Reservation { node } => {
                // Keeps the lease of a serialized cache entry alive while its holder runs.
                if let Some(key) = self.cache_key(plan, state, node)? {
                    let now = self.c.clock.now();
                    self.c.store.reserve(
                        &key,
                        &self.owner(plan, node),
                        now,
                        now + RESERVATION_LEASE,
                    )?;
                }
                return Ok(None);
            }
        }))
    }

    /// Creates a child execution of `lp` for node `node`; `Some(failure)` when the request
    /// is refused (the node or item fails), an error when it should be retried.
    fn launch_child(
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
    fn abort_child(&self, child: ExecKey) -> Result<(), Error> {
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
    fn child_status(&self, child: &ExecKey) -> Result<ChildStatus, Error> {
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

    /// Who holds a serialized cache reservation: the node of this execution.
    fn owner(&self, plan: &Plan, node: usize) -> String {
        ids::fixed_length_unique_id(50, &[&self.k.name, &plan.nodes[node].id])
    }

    /// The cache key of a node: the one its lookup recorded in its state, else derived
    /// from its written inputs (`overwrite_cache` skips the lookup); `None` when none can
    /// be made.
    fn cache_key(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<Option<CatalogKey>, Error> {
        if let Some(r) = state.nodes[node]
            .cache
            .as_ref()
            .and_then(|c| c.catalog.as_ref())
        {
            return Ok(Some(CatalogKey {
                project: r.project.clone(),
                domain: r.domain.clone(),
                name: r.name.clone(),
                version: r.version.clone(),
                tag: r.tag.clone(),
            }));
        }
        let Some(task) = plan.task(node) else {
            return Ok(None);
        };
        let inputs = self
            .c
            .read_map(&layout::node_inputs(self.wdir, &plan.nodes[node].id))?;
        Ok(catalog_key(task, &inputs).ok())
    }

    fn catalog_ref(key: &CatalogKey, a: Option<&ArtifactRecord>) -> CatalogRef {
        CatalogRef {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: key.name.clone(),
            version: key.version.clone(),
            tag: key.tag.clone(),
            artifact_id: a.map(|a| a.artifact_id.clone()).unwrap_or_default(),
            source_execution: a.map(|a| a.source.name.clone()).unwrap_or_default(),
            source_node: a.map(|a| a.source_node.clone()).unwrap_or_default(),
            source_attempt: a.map_or(0, |a| a.source_attempt),
        }
    }

    /// Records how long after its last upstream node ended a node is launched.
    fn record_edge_latency(&self, plan: &Plan, state: &ExecState, node: usize) {
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

    /// Resolves a cacheable node's inputs, writes them, and asks the catalog.
    fn cache_lookup(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<CacheOutcome, Error> {
        let p = &plan.nodes[node];
        let inputs = match self.resolve(plan, state, p.scope, &p.node.inputs)? {
            Ok(m) => m,
            Err(msg) => return Ok(CacheOutcome::Failed(msg)),
        };
        self.c.blob.put(
            &layout::node_inputs(self.wdir, &p.id),
            &inputs.encode_to_vec(),
        )?;
        let Some(task) = plan.task(node) else {
            return Ok(CacheOutcome::Failed("not a task".into()));
        };
        let key = match catalog_key(task, &inputs) {
            Ok(k) => k,
            Err(e) => return Ok(CacheOutcome::Failed(e)),
        };
        let now = self.c.clock.now();
        if let Some(a) = self.c.store.get_artifact(&key)? {
            let from = self.c.blob.key_of(&a.outputs_uri)?.to_string();
            if let Err(f) = self.copy_map(&from, &self.outputs_key(plan, node, 0))? {
                return Ok(CacheOutcome::Failed(f.message));
            }
            self.c.store.record_use(&ArtifactUse {
                artifact_id: a.artifact_id.clone(),
                exec: self.k.clone(),
                node_id: p.id.clone(),
                at: now,
            })?;
            return Ok(CacheOutcome::Hit(Self::catalog_ref(&key, Some(&a))));
        }
        if p.cache == Some(true) {
            let owner = self.owner(plan, node);
            let holder = self
                .c
                .store
                .reserve(&key, &owner, now, now + RESERVATION_LEASE)?;
            if holder != owner {
                return Ok(CacheOutcome::Wait);
            }
        }
        Ok(CacheOutcome::Miss(Self::catalog_ref(&key, None)))
    }

    /// One array item's inputs: its element of every split input, from the node's whole
    /// inputs (read once per round, however many items ask); `Ok(Err(_))` is a data error.
    fn item_inputs(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Result<core::LiteralMap, String>, Error> {
        let NodeKind::Array(a) = &plan.nodes[node].kind else {
            return Ok(Err("not an array node".into()));
        };
        let key = layout::node_inputs(self.wdir, &plan.nodes[node].id);
        let whole = {
            let mut memo = self.inputs_memo.borrow_mut();
            match memo.as_ref() {
                Some((k, m)) if *k == key => m.clone(),
                _ => {
                    let m = Arc::new(self.c.read_map(&key)?);
                    *memo = Some((key, m.clone()));
                    m
                }
            }
        };
        Ok(resolve::item_inputs(&whole, item as usize, &a.bound_inputs).map_err(|e| e.0))
    }

    /// The cache key of one array item.
    fn item_key(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Result<CatalogKey, String>, Error> {
        let Some(task) = plan.task(node) else {
            return Ok(Err("no task".into()));
        };
        Ok(self
            .item_inputs(plan, node, item)?
            .and_then(|inputs| catalog_key(task, &inputs)))
    }

    /// Where an array item with its own inputs file finds it.
    fn item_inputs_key(&self, plan: &Plan, node: usize, item: u32) -> String {
        layout::item_inputs(self.wdir, &plan.nodes[node].id, item)
    }

    fn item_dir(&self, plan: &Plan, node: usize, item: u32, attempt: u32) -> String {
        layout::item_dir(self.wdir, &plan.nodes[node].id, item, attempt)
    }

    fn item_lookup(&self, plan: &Plan, node: usize, item: u32) -> Result<CacheOutcome, Error> {
        let key = match self.item_key(plan, node, item)? {
            Ok(k) => k,
            Err(e) => return Ok(CacheOutcome::Failed(e)),
        };
        let Some(a) = self.c.store.get_artifact(&key)? else {
            return Ok(CacheOutcome::Miss(Self::catalog_ref(&key, None)));
        };
        let from = self.c.blob.key_of(&a.outputs_uri)?.to_string();
        let to = layout::outputs_in(&self.item_dir(plan, node, item, 0));
        if let Err(f) = self.copy_map(&from, &to)? {
            return Ok(CacheOutcome::Failed(f.message));
        }
        self.c.store.record_use(&ArtifactUse {
            artifact_id: a.artifact_id.clone(),
            exec: self.k.clone(),
            node_id: format!("{}[{item}]", plan.nodes[node].id),
            at: self.c.clock.now(),
        })?;
        Ok(CacheOutcome::Hit(Self::catalog_ref(&key, Some(&a))))
    }

    fn item_put(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
        attempt: u32,
    ) -> Result<Result<(), String>, Error> {
        let key = match self.item_key(plan, node, item)? {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let p = &plan.nodes[node];
        let artifact_id = ids::fixed_length_unique_id(
            50,
            &[&self.k.name, &p.id, &item.to_string(), &attempt.to_string()],
        );
        let outputs = layout::outputs_in(&self.item_dir(plan, node, item, attempt));
        let outputs_uri = match self.file_outputs(&key, &artifact_id, &outputs)? {
            Ok(uri) => uri,
            Err(message) => return Ok(Err(message)),
        };
        let overwrite = self.exec.spec.as_ref().is_some_and(|s| s.overwrite_cache);
        self.c.store.put_artifact(
            &ArtifactRecord {
                key,
                artifact_id,
                outputs_uri,
                source: self.k.clone(),
                source_node: format!("{}[{item}]", p.id),
                source_attempt: attempt,
                created_at: self.c.clock.now(),
            },
            overwrite,
        )?;
        Ok(Ok(()))
    }

    /// Copies outputs to where the catalog files them; returns their URI.
    fn file_outputs(
        &self,
        key: &CatalogKey,
        artifact_id: &str,
        outputs: &str,
    ) -> Result<Result<String, String>, Error> {
        let filed = layout::catalog_outputs(
            &key.project,
            &key.domain,
            &key.name,
            &key.version,
            artifact_id,
        );
        Ok(match self.copy_map(outputs, &filed)? {
            Ok(()) => Ok(self.c.blob.uri(&filed)),
            Err(f) => Err(f.message),
        })
    }

    /// Files a succeeded cacheable node's outputs under its key.
    fn cache_put(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<Result<CatalogRef, String>, Error> {
        let Some(key) = self.cache_key(plan, state, node)? else {
            return Ok(Err("no cache key".into()));
        };
        let p = &plan.nodes[node];
        let attempt = state.nodes[node].attempt;
        let artifact_id =
            ids::fixed_length_unique_id(50, &[&self.k.name, &p.id, &attempt.to_string()]);
        let outputs = self.outputs_key(plan, node, attempt);
        let outputs_uri = match self.file_outputs(&key, &artifact_id, &outputs)? {
            Ok(uri) => uri,
            Err(message) => return Ok(Err(message)),
        };
        let rec = ArtifactRecord {
            key: key.clone(),
            artifact_id,
            outputs_uri,
            source: self.k.clone(),
            source_node: p.id.clone(),
            source_attempt: attempt,
            created_at: self.c.clock.now(),
        };
        let overwrite = self.exec.spec.as_ref().is_some_and(|s| s.overwrite_cache);
        self.c.store.put_artifact(&rec, overwrite)?;
        if p.cache == Some(true) {
            self.c.store.release(&key, &self.owner(plan, node))?;
        }
        let filed = self.c.store.get_artifact(&key)?;
        Ok(Ok(Self::catalog_ref(&key, filed.as_ref().or(Some(&rec)))))
    }

    /// Where the scope of node `i`'s bindings takes a promise's node outputs from.
    fn source_key(&self, plan: &Plan, state: &ExecState, scope: usize, id: &str) -> Option<String> {
        if id.is_empty() || id == START_NODE {
            return Some(match plan.scopes[scope].owner {
                None => self.inputs_key.to_string(),
                Some(o) => layout::node_inputs(self.wdir, &plan.nodes[o].id),
            });
        }
        let &i = plan.scopes[scope].ids.get(id)?;
        Some(self.outputs_key(plan, i, state.nodes[i].attempt))
    }

    /// Resolves bindings in a scope; `Ok(Err(_))` is a data error.
    fn resolve(
        &self,
        plan: &Plan,
        state: &ExecState,
        scope: usize,
        bindings: &[core::Binding],
    ) -> Result<Result<core::LiteralMap, String>, Error> {
        fn sources(b: &core::BindingData, out: &mut Vec<String>) {
            use core::binding_data::Value;
            match &b.value {
                Some(Value::Promise(p)) => out.push(p.node_id.clone()),
                Some(Value::Collection(c)) => c.bindings.iter().for_each(|x| sources(x, out)),
                Some(Value::Map(m)) => m.bindings.values().for_each(|x| sources(x, out)),
                _ => {}
            }
        }
        let mut wanted = Vec::new();
        for b in bindings.iter().filter_map(|b| b.binding.as_ref()) {
            sources(b, &mut wanted);
        }
        let mut ups = BTreeMap::new();
        for id in wanted {
            if ups.contains_key(&id) {
                continue;
            }
            let Some(key) = self.source_key(plan, state, scope, &id) else {
                continue;
            };
            ups.insert(id, self.c.read_map(&key)?);
        }
        Ok(resolve::resolve_bindings(bindings, &|id| ups.get(id)).map_err(|e| e.0))
    }

    /// Copies a literal map. A missing source is a recoverable system failure naming the
    /// object, never an empty map.
    fn copy_map(&self, from: &str, to: &str) -> Result<Result<(), Failure>, Error> {
        match self.c.blob.get(from) {
            Ok(bytes) => {
                self.c.blob.put(to, &bytes)?;
                Ok(Ok(()))
            }
            Err(contrail_blob::Error::NotFound(_)) => Ok(Err(Failure::system(
                "MissingObject",
                format!("{} does not exist", self.c.blob.uri(from)),
                true,
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Performs one effect. `plan` grows when a dynamic node's workflow is compiled.
    pub(crate) fn perform(
        &self,
        plan: &mut Arc<Plan>,
        state: &ExecState,
        e: &Effect,
    ) -> Result<Option<Observation>, Error> {
        let (k, blob) = (self.k, &self.c.blob);
        match e {
            Effect::PublishStart => {
                let inputs = blob.get(self.inputs_key)?;
                blob.put(&layout::attempt_outputs(self.wdir, START_NODE, 0), &inputs)?;
                Ok(None)
            }
            Effect::Launch {
                node,
                item,
                attempt,
            } => {
                let p = &plan.nodes[*node];
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
                        self.item_inputs_key(plan, *node, *i),
                        self.item_inputs(plan, *node, *i)?,
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
                            node: *node,
                            item: *item,
                            attempt: *attempt,
                            failure: Failure::system("BindingResolutionFailure", msg, false),
                        }));
                    }
                };
                let mut spec = self.attempt_spec(plan, *node, *item, *attempt);
                spec.inputs = inputs;
                if item.is_none() && *attempt == 0 {
                    self.record_edge_latency(plan, state, *node);
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
            Effect::Abort {
                node,
                item,
                attempt,
            } => {
                let spec = self.attempt_spec(plan, *node, *item, *attempt);
                self.c.executor.abort(&spec)?;
                Ok(None)
            }
            Effect::ResolveInputs { node } => {
                let p = &plan.nodes[*node];
                let result = match self.resolve(plan, state, p.scope, &p.node.inputs)? {
                    Ok(mut m) => {
                        if matches!(p.kind, NodeKind::Array(_)) {
                            resolve::spread_msgpack_lists(&mut m);
                        }
                        blob.put(&layout::node_inputs(self.wdir, &p.id), &m.encode_to_vec())?;
                        Ok(m)
                    }
                    Err(msg) => Err(Failure::system("BindingResolutionFailure", msg, false)),
                };
                Ok(Some(Observation::Inputs {
                    node: *node,
                    result,
                }))
            }
            Effect::PublishNode { node } => {
                let result = self.publish_node(plan, state, *node)?;
                Ok(Some(Observation::NodeOutputs {
                    node: *node,
                    result,
                }))
            }
            Effect::CompileDynamic { node } => {
                let attempt = state.nodes[*node].attempt;
                let result = match self.compile_dynamic(plan, *node, attempt)? {
                    Ok(closure) => {
                        let dir = self.node_dir(plan, *node, attempt);
                        blob.put(&layout::dynamic_compiled_in(&dir), &closure.encode_to_vec())?;
                        if plan.scope_of(*node).is_none() {
                            Arc::make_mut(plan)
                                .extend_dynamic(*node, attempt, &closure)
                                .map_err(|e| Error::Corrupt("dynamic workflow", e.to_string()))?;
                        }
                        Ok(())
                    }
                    Err(msg) => Err(Failure::user("DynamicWorkflowBuildFailed", msg, false)),
                };
                Ok(Some(Observation::Dynamic {
                    node: *node,
                    result,
                }))
            }
            Effect::LaunchChild { node } => {
                let NodeKind::LaunchPlan(lp) = &plan.nodes[*node].kind else {
                    return Ok(None);
                };
                let inputs = self
                    .c
                    .read_map(&layout::node_inputs(self.wdir, &plan.nodes[*node].id))?;
                let rejected =
                    self.launch_child(plan, *node, child_id(k, plan, *node), lp, inputs)?;
                Ok(rejected.map(|f| Observation::Child {
                    node: *node,
                    status: ChildStatus::Failed(f),
                }))
            }
            Effect::LaunchChildItem { node, item } => {
                let NodeKind::Array(a) = &plan.nodes[*node].kind else {
                    return Ok(None);
                };
                let Some(lp) = &a.launch_plan else {
                    return Ok(None);
                };
                let rejected = match self.item_inputs(plan, *node, *item)? {
                    Ok(inputs) => {
                        let child = child_item_id(k, plan, *node, *item);
                        self.launch_child(plan, *node, child, lp, inputs)?
                    }
                    Err(e) => Some(Failure::system("BindingResolutionFailure", e, false)),
                };
                Ok(rejected.map(|f| Observation::ChildItem {
                    node: *node,
                    item: *item,
                    status: ChildStatus::Failed(f),
                }))
            }
            Effect::AbortChildItem { node, item } => {
                self.abort_child(key_of(&child_item_id(k, plan, *node, *item)))?;
                Ok(None)
            }
            Effect::AbortChild { node } => {
                self.abort_child(key_of(&child_id(k, plan, *node)))?;
                Ok(None)
            }
            Effect::CreateSignal { node } => {
                use core::gate_node::Condition;
                let (id, ty) = match plan.nodes[*node].node.target.as_ref() {
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
                self.c.store.get_or_create_signal(
                    k,
                    &id,
                    &ty.encode_to_vec(),
                    self.c.clock.now(),
                )?;
                Ok(None)
            }
            Effect::CacheLookup { node } => {
                let outcome = self.cache_lookup(plan, state, *node)?;
                telemetry::cache_lookup(&outcome);
                Ok(Some(Observation::Cache {
                    node: *node,
                    outcome,
                }))
            }
            Effect::CachePut { node } => {
                let result = self.cache_put(plan, state, *node)?;
                telemetry::cache_put(result.is_ok());
                Ok(Some(Observation::CachePut {
                    node: *node,
                    result,
                }))
            }
            Effect::CacheRelease { node } => {
                if let Some(key) = self.cache_key(plan, state, *node)? {
                    self.c.store.release(&key, &self.owner(plan, *node))?;
                }
                Ok(Some(Observation::CacheReleased { node: *node }))
            }
            Effect::CacheLookupItem { node, item } => {
                let outcome = self.item_lookup(plan, *node, *item)?;
                telemetry::cache_lookup(&outcome);
                Ok(Some(Observation::CacheItem {
                    node: *node,
                    item: *item,
                    outcome,
                }))
            }
            Effect::CachePutItem {
                node,
                item,
                attempt,
            } => {
                let put = self.item_put(plan, *node, *item, *attempt)?;
                telemetry::cache_put(put.is_ok());
                if let Err(e) = put {
                    tracing::warn!(execution = %k, node = %plan.nodes[*node].id, item, "cannot cache the item: {e}");
                }
                Ok(Some(Observation::CachePutItem {
                    node: *node,
                    item: *item,
                }))
            }
            Effect::TryRecover { node } => {
                let recovered = self.try_recover(plan, *node)?;
                Ok(Some(Observation::Recovery {
                    node: *node,
                    recovered,
                }))
            }
            Effect::PublishOutputs => match self.resolve(plan, state, 0, &plan.outputs)? {
                Ok(m) => {
                    blob.put(
                        &layout::attempt_outputs(self.wdir, "end-node", 0),
                        &m.encode_to_vec(),
                    )?;
                    Ok(Some(Observation::OutputsPublished))
                }
                Err(msg) => Ok(Some(Observation::OutputsRejected(Failure::system(
                    "OutputResolutionFailure",
                    msg,
                    false,
                )))),
            },
        }
    }

    /// Writes a finished container's outputs, as its kind defines them.
    fn publish_node(
        &self,
        plan: &Plan,
        state: &ExecState,
        i: usize,
    ) -> Result<Result<(), Failure>, Error> {
        let blob = &self.c.blob;
        let attempt = state.nodes[i].attempt;
        let out = self.outputs_key(plan, i, attempt);
        let inputs_key = layout::node_inputs(self.wdir, &plan.nodes[i].id);
        match &plan.nodes[i].kind {
            NodeKind::Branch(_) => {
                let chosen = state.nodes[i]
                    .chosen
                    .as_ref()
                    .and_then(|c| plan.index.get(c).copied());
                if let Some(c) = chosen
                    && let Err(f) =
                        self.copy_map(&self.outputs_key(plan, c, state.nodes[c].attempt), &out)?
                {
                    return Ok(Err(f));
                }
            }
            NodeKind::Subworkflow(_) | NodeKind::Task(_) => {
                let Some(scope) = plan.scope_of(i) else {
                    return Ok(Err(Failure::system(
                        "SubWorkflowMissing",
                        "the node's workflow is not part of the plan",
                        false,
                    )));
                };
                match self.resolve(plan, state, scope, &plan.scopes[scope].outputs)? {
                    Ok(m) => blob.put(&out, &m.encode_to_vec())?,
                    Err(msg) => {
                        return Ok(Err(Failure::system("OutputResolutionFailure", msg, false)));
                    }
                }
            }
            NodeKind::Gate(Gate::Sleep(_)) => {
                blob.put(&out, &core::LiteralMap::default().encode_to_vec())?
            }
            NodeKind::Gate(Gate::Approve { .. }) => {
                if let Err(f) = self.copy_map(&inputs_key, &out)? {
                    return Ok(Err(f));
                }
            }
            NodeKind::Gate(Gate::Signal { signal_id, var }) => {
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
                blob.put(&out, &m.encode_to_vec())?;
            }
            NodeKind::LaunchPlan(_) => {
                let child = child_id(self.k, plan, i);
                let from = layout::attempt_outputs(
                    &layout::workflow_dir(&child.project, &child.domain, &child.name),
                    "end-node",
                    0,
                );
                if let Err(f) = self.copy_map(&from, &out)? {
                    return Ok(Err(f));
                }
            }
            NodeKind::Array(_) => {
                let Some(a) = &state.nodes[i].array else {
                    return Ok(Ok(()));
                };
                let mut names: Vec<String> = plan
                    .task(i)
                    .and_then(|t| t.interface.as_ref())
                    .and_then(|x| x.outputs.as_ref())
                    .map(|v| v.variables.keys().cloned().collect())
                    .unwrap_or_default();
                if plan.task(i).is_none() {
                    // Over a launch plan: the outputs are named as the children's are.
                    if let Some(first) = (0..a.len() as u32).find(|x| a.get(*x) == Item::Succeeded)
                    {
                        let key =
                            layout::outputs_in(&self.item_dir(plan, i, first, a.attempt(first)));
                        names = self.c.read_map(&key)?.literals.into_keys().collect();
                    }
                }
                let mut cols: BTreeMap<String, Vec<core::Literal>> =
                    names.iter().map(|n| (n.clone(), Vec::new())).collect();
                for item in 0..a.len() as u32 {
                    let got = if a.get(item) == Item::Succeeded && !names.is_empty() {
                        let key =
                            layout::outputs_in(&self.item_dir(plan, i, item, a.attempt(item)));
                        Some(self.c.read_map(&key)?)
                    } else {
                        None
                    };
                    for (name, col) in cols.iter_mut() {
                        let lit = got
                            .as_ref()
                            .and_then(|m| m.literals.get(name).cloned())
                            .unwrap_or_else(none_literal);
                        col.push(lit);
                    }
                }
                let m = core::LiteralMap {
                    literals: cols
                        .into_iter()
                        .map(|(n, literals)| {
                            (
                                n,
                                core::Literal {
                                    value: Some(core::literal::Value::Collection(
                                        core::LiteralCollection { literals },
                                    )),
                                    ..Default::default()
                                },
                            )
                        })
                        .collect(),
                };
                blob.put(&out, &m.encode_to_vec())?;
            }
            _ => {}
        }
        Ok(Ok(()))
    }

    /// Compiles a dynamic node's futures.pb into a workflow closure; `Ok(Err(_))` is the
    /// user's mistake.
    fn compile_dynamic(
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

    /// Reuses the recovered execution's result for node `i`, if it succeeded there.
    fn try_recover(&self, plan: &Plan, i: usize) -> Result<bool, Error> {
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

impl Controller {
    /// The interface of a registered launch plan (for launch-plan nodes inside dynamic
    /// workflows).
    fn launch_plan_interface(
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
