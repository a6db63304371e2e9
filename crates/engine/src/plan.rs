//! A compiled workflow closure turned into what the engine walks: nodes in topological
//! order with their upstream/downstream indexes, retry budgets and timeouts.

use contrail_compiler::{END_NODE, START_NODE};
use contrail_idl::core::{
    self, CompiledWorkflowClosure, TaskTemplate, node::Target, task_node::Reference,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("compiled workflow closure has no primary workflow template")]
    NoPrimary,
    #[error("node {0}: references task {1} that is not in the closure")]
    MissingTask(String, String),
    #[error("node {0}: upstream node {1} does not exist")]
    MissingUpstream(String, String),
    #[error("workflow graph has a cycle through {0}")]
    Cycle(String),
    #[error("workflow has no {0}")]
    MissingNode(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Start,
    End,
    /// A task node; the index is into `Plan::tasks`.
    Task(usize),
    /// A node kind this engine cannot run yet; the text names it.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub id: String,
    pub kind: NodeKind,
    pub upstream: Vec<usize>,
    /// Attempts a RECOVERABLE user error may use (retries + 1).
    pub max_attempts: u32,
    /// Per-attempt timeout in nanoseconds.
    pub timeout: Option<i64>,
    /// The node as compiled (bindings, metadata).
    pub node: core::Node,
}

/// How the workflow reacts to a failed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    FailImmediately,
    FailAfterExecutableNodesComplete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Topological order; `nodes[0]` is the start node.
    pub nodes: Vec<PlanNode>,
    pub index: BTreeMap<String, usize>,
    pub tasks: Vec<TaskTemplate>,
    pub end: usize,
    pub failure_policy: FailurePolicy,
    /// The workflow's output bindings (the end node's inputs).
    pub outputs: Vec<core::Binding>,
}

fn nanos(d: &prost_types::Duration) -> Option<i64> {
    let n = d
        .seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(d.nanos as i64);
    (n > 0).then_some(n)
}

fn same_id(a: &core::Identifier, b: &core::Identifier) -> bool {
    a.resource_type == b.resource_type
        && a.project == b.project
        && a.domain == b.domain
        && a.name == b.name
        && a.version == b.version
}

impl Plan {
    pub fn new(closure: &CompiledWorkflowClosure) -> Result<Plan, PlanError> {
        let primary = closure.primary.as_ref().ok_or(PlanError::NoPrimary)?;
        let template = primary.template.as_ref().ok_or(PlanError::NoPrimary)?;
        let tasks: Vec<TaskTemplate> = closure
            .tasks
            .iter()
            .filter_map(|t| t.template.clone())
            .collect();
        let by_id: BTreeMap<&str, &core::Node> =
            template.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        for required in [START_NODE, END_NODE] {
            if !by_id.contains_key(required) {
                return Err(PlanError::MissingNode(required));
            }
        }
        // Upstream sets: compiled connections, plus explicit upstream ids and promise sources.
        let conns = primary.connections.as_ref();
        let mut ups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for n in &template.nodes {
            let set = ups.entry(n.id.as_str()).or_default();
            if let Some(c) = conns.and_then(|c| c.upstream.get(&n.id)) {
                set.extend(c.ids.iter().map(String::as_str));
            }
            set.extend(n.upstream_node_ids.iter().map(String::as_str));
            if n.id != START_NODE {
                set.extend(promise_sources(&n.inputs));
            }
            set.remove(n.id.as_str());
            for u in set.iter() {
                if !by_id.contains_key(u) {
                    return Err(PlanError::MissingUpstream(n.id.clone(), u.to_string()));
                }
            }
        }
        if let Some(set) = ups.get_mut(END_NODE) {
            set.extend(promise_sources(&template.outputs));
            set.remove(END_NODE);
        }
        // Kahn's algorithm, start node first, ties broken by id for determinism.
        let mut order: Vec<&str> = Vec::with_capacity(by_id.len());
        let mut remaining = ups.clone();
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        while !remaining.is_empty() {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, u)| u.iter().all(|x| placed.contains(x)))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                let stuck = remaining.keys().next().copied().unwrap_or_default();
                return Err(PlanError::Cycle(stuck.to_string()));
            }
            let mut ready = ready;
            ready.sort_by_key(|id| (*id != START_NODE, *id == END_NODE, *id));
            for id in ready {
                remaining.remove(id);
                placed.insert(id);
                order.push(id);
            }
        }
        let index: BTreeMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), i))
            .collect();
        let mut nodes = Vec::with_capacity(order.len());
        for id in &order {
            let n = by_id[id];
            let kind = match (*id, &n.target) {
                (START_NODE, _) => NodeKind::Start,
                (END_NODE, _) => NodeKind::End,
                (_, Some(Target::TaskNode(t))) => {
                    let Some(Reference::ReferenceId(rid)) = &t.reference else {
                        return Err(PlanError::MissingTask(n.id.clone(), "<none>".into()));
                    };
                    let i = tasks
                        .iter()
                        .position(|t| t.id.as_ref().is_some_and(|x| same_id(x, rid)))
                        .ok_or_else(|| PlanError::MissingTask(n.id.clone(), rid.name.clone()))?;
                    NodeKind::Task(i)
                }
                (_, Some(Target::WorkflowNode(_))) => NodeKind::Unsupported("workflow"),
                (_, Some(Target::BranchNode(_))) => NodeKind::Unsupported("branch"),
                (_, Some(Target::GateNode(_))) => NodeKind::Unsupported("gate"),
                (_, Some(Target::ArrayNode(_))) => NodeKind::Unsupported("array"),
                (_, None) => NodeKind::Unsupported("empty"),
            };
            let task_meta = match kind {
                NodeKind::Task(i) => tasks[i].metadata.as_ref(),
                _ => None,
            };
            let retries = n
                .metadata
                .as_ref()
                .and_then(|m| m.retries.as_ref())
                .or(task_meta.and_then(|m| m.retries.as_ref()))
                .map(|r| r.retries)
                .unwrap_or(0);
            let timeout = n
                .metadata
                .as_ref()
                .and_then(|m| m.timeout.as_ref())
                .or(task_meta.and_then(|m| m.timeout.as_ref()))
                .and_then(nanos);
            let upstream = ups[id].iter().map(|u| index[*u]).collect();
            nodes.push(PlanNode {
                id: id.to_string(),
                kind,
                upstream,
                max_attempts: retries.saturating_add(1),
                timeout,
                node: n.clone(),
            });
        }
        let failure_policy = match template.metadata.as_ref().map(|m| m.on_failure) {
            Some(1) => FailurePolicy::FailAfterExecutableNodesComplete,
            _ => FailurePolicy::FailImmediately,
        };
        Ok(Plan {
            end: index[END_NODE],
            nodes,
            index,
            tasks,
            failure_policy,
            outputs: template.outputs.clone(),
        })
    }

    pub fn task(&self, node: usize) -> Option<&TaskTemplate> {
        match self.nodes[node].kind {
            NodeKind::Task(i) => self.tasks.get(i),
            _ => None,
        }
    }
}

/// Node ids every promise in these bindings reads from.
fn promise_sources(bindings: &[core::Binding]) -> BTreeSet<&str> {
    fn walk<'a>(b: &'a core::BindingData, out: &mut BTreeSet<&'a str>) {
        use core::binding_data::Value;
        match &b.value {
            Some(Value::Promise(p)) if !p.node_id.is_empty() => {
                out.insert(p.node_id.as_str());
            }
            Some(Value::Collection(c)) => c.bindings.iter().for_each(|x| walk(x, out)),
            Some(Value::Map(m)) => m.bindings.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for b in bindings {
        if let Some(d) = &b.binding {
            walk(d, &mut out);
        }
    }
    out
}
