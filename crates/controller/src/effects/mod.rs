//! The controller's hands and eyes: what each [`Effect`] does to the world and how each
//! [`Watch`] is looked at. Every effect is safe to repeat; data problems come back as
//! observations (the node fails), IO problems as errors (the round is retried).
//!
//! One module per node kind ([`task`], [`cache`], [`branch`], [`subworkflow`], [`dynamic`],
//! [`launch_plan`], [`gate`], [`array`], [`recovery`]); this one dispatches effects and
//! watches to them and holds what they share (binding resolution, copying outputs).

mod array;
mod branch;
mod cache;
mod dynamic;
mod gate;
mod launch_plan;
mod recovery;
mod subworkflow;
mod task;

pub(crate) use task::cluster_label;

use crate::{Controller, Error};
use contrail_blob::layout;
use contrail_engine::{
    Effect, ExecState, Failure, NodeKind, Observation, Plan, Watch, ids, resolve,
};
use contrail_idl::{admin, core};
use contrail_store::ExecKey;
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

pub(super) fn key_of(id: &core::WorkflowExecutionIdentifier) -> ExecKey {
    ExecKey {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: id.name.clone(),
    }
}

pub(super) fn none_literal() -> core::Literal {
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
}

impl<'a> Cx<'a> {
    pub(crate) fn new(
        c: &'a Arc<Controller>,
        k: &'a ExecKey,
        exec: &'a admin::Execution,
        inputs_key: &'a str,
        wdir: &'a str,
    ) -> Self {
        Cx {
            c,
            k,
            exec,
            inputs_key,
            wdir,
            inputs_memo: Default::default(),
        }
    }
}

impl Cx<'_> {
    pub(super) fn node_dir(&self, plan: &Plan, i: usize, attempt: u32) -> String {
        layout::attempt_dir(self.wdir, &plan.nodes[i].id, attempt)
    }

    pub(super) fn outputs_key(&self, plan: &Plan, i: usize, attempt: u32) -> String {
        layout::attempt_outputs(self.wdir, &plan.nodes[i].id, attempt)
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
            } => self.observe_attempt(plan, node, item, attempt)?,
            Watch::Child { node } => self.observe_child(plan, node)?,
            Watch::ChildItem { node, item } => self.observe_child_item(plan, node, item)?,
            Watch::Signal { node } => self.observe_signal(plan, node)?,
            Watch::Reservation { node } => {
                self.keep_reservation(plan, state, node)?;
                return Ok(None);
            }
        }))
    }

    /// Performs one effect. `plan` grows when a dynamic node's workflow is compiled.
    pub(crate) fn perform(
        &self,
        plan: &mut Arc<Plan>,
        state: &ExecState,
        e: &Effect,
    ) -> Result<Option<Observation>, Error> {
        match *e {
            Effect::PublishStart => self.publish_start(),
            Effect::Launch {
                node,
                item,
                attempt,
            } => self.launch_attempt(plan, state, node, item, attempt),
            Effect::Abort {
                node,
                item,
                attempt,
            } => self.abort_attempt(plan, node, item, attempt),
            Effect::ResolveInputs { node } => self.resolve_inputs(plan, state, node),
            Effect::PublishNode { node } => {
                let result = self.publish_node(plan, state, node)?;
                Ok(Some(Observation::NodeOutputs { node, result }))
            }
            Effect::CompileDynamic { node } => self.compile_dynamic_node(plan, state, node),
            Effect::LaunchChild { node } => self.launch_child_node(plan, node),
            Effect::AbortChild { node } => self.abort_child_node(plan, node),
            Effect::LaunchChildItem { node, item } => self.launch_child_item(plan, node, item),
            Effect::AbortChildItem { node, item } => self.abort_child_item(plan, node, item),
            Effect::CreateSignal { node } => self.create_signal(plan, node),
            Effect::TryRecover { node } => {
                let recovered = self.try_recover(plan, node)?;
                Ok(Some(Observation::Recovery { node, recovered }))
            }
            Effect::CacheLookup { .. }
            | Effect::CachePut { .. }
            | Effect::CacheRelease { .. }
            | Effect::CacheLookupItem { .. }
            | Effect::CachePutItem { .. } => self.perform_cache(plan, state, e),
            Effect::PublishOutputs => self.publish_outputs(plan, state),
        }
    }

    /// Makes the workflow inputs available as the start node's outputs.
    fn publish_start(&self) -> Result<Option<Observation>, Error> {
        let blob = &self.c.blob;
        let inputs = blob.get(self.inputs_key)?;
        blob.put(&layout::attempt_outputs(self.wdir, START_NODE, 0), &inputs)?;
        Ok(None)
    }

    /// Resolves a non-task node's input bindings, writes them, and reports them back.
    fn resolve_inputs(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<Option<Observation>, Error> {
        let blob = &self.c.blob;
        let p = &plan.nodes[node];
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
        Ok(Some(Observation::Inputs { node, result }))
    }

    /// Resolves the workflow's output bindings and writes them.
    fn publish_outputs(
        &self,
        plan: &Plan,
        state: &ExecState,
    ) -> Result<Option<Observation>, Error> {
        let blob = &self.c.blob;
        match self.resolve(plan, state, 0, &plan.outputs)? {
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
        }
    }

    /// Writes a finished container's outputs, as its kind defines them.
    fn publish_node(
        &self,
        plan: &Plan,
        state: &ExecState,
        i: usize,
    ) -> Result<Result<(), Failure>, Error> {
        let out = self.outputs_key(plan, i, state.nodes[i].attempt);
        match &plan.nodes[i].kind {
            NodeKind::Branch(_) => self.publish_branch(plan, state, i, &out),
            NodeKind::Subworkflow(_) | NodeKind::Task(_) => {
                self.publish_scope(plan, state, i, &out)
            }
            NodeKind::Gate(gate) => self.publish_gate(plan, gate, i, &out),
            NodeKind::LaunchPlan(_) => self.publish_launch_plan(plan, i, &out),
            NodeKind::Array(_) => self.publish_array(plan, state, i, &out),
            _ => Ok(Ok(())),
        }
    }

    /// Where the scope of node `i`'s bindings takes a promise's node outputs from.
    pub(super) fn source_key(
        &self,
        plan: &Plan,
        state: &ExecState,
        scope: usize,
        id: &str,
    ) -> Option<String> {
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
    pub(super) fn resolve(
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
    pub(super) fn copy_map(&self, from: &str, to: &str) -> Result<Result<(), Failure>, Error> {
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
}
