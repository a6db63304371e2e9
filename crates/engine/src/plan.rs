//! A compiled workflow closure turned into what the engine walks: one flat arena of nodes
//! (nested ones included) grouped into scopes.
//!
//! A *scope* is one workflow template being run: the root workflow, an inlined
//! subworkflow, or the workflow a dynamic task produced. Its members form a DAG in
//! topological order; promises in their bindings name sibling nodes by their spec ids, and
//! `start-node` (or `""`) means the scope's inputs. Branch children live in the scope of
//! their branch (their bindings read the branch's siblings) but run only when their branch
//! picks them. Every node has a unique id (`<owner>-<attempt>-<spec id>` below a
//! subworkflow or dynamic node, as Flyte names them); records, blob paths and stored node
//! states are keyed by it.

use crate::Nanos;
use contrail_compiler::{END_NODE, START_NODE};
use contrail_idl::core::{
    self, CompiledWorkflowClosure, TaskTemplate, WorkflowTemplate, array_node, gate_node,
    if_else_block, node::Target, task_node::Reference, workflow_node,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("compiled workflow closure has no primary workflow template")]
    NoPrimary,
    #[error("node {0}: references task {1} that is not in the closure")]
    MissingTask(String, String),
    #[error("node {0}: references sub-workflow {1} that is not in the closure")]
    MissingSubWorkflow(String, String),
    #[error("node {0}: upstream node {1} does not exist")]
    MissingUpstream(String, String),
    #[error("workflow graph has a cycle through {0}")]
    Cycle(String),
    #[error("workflow has no {0}")]
    MissingNode(&'static str),
    #[error("node {0}: sub-workflows nest deeper than {1} levels")]
    TooDeep(String, usize),
}

/// How deep subworkflows may nest inside one plan (a guard against recursive references).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// `if` then `elif`s, in order: the condition and the plan index of the node it runs.
    pub cases: Vec<(core::BooleanExpression, usize)>,
    pub else_node: Option<usize>,
    /// The user's error when nothing matches (`.else_().fail(...)`).
    pub else_fail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Sleep(Nanos),
    Signal { signal_id: String, var: String },
    Approve { signal_id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArraySpec {
    /// Index into `Plan::tasks` of the task every item runs (none for a launch plan).
    pub task: Option<usize>,
    /// Every item is a child execution of this launch plan instead of a task.
    pub launch_plan: Option<core::Identifier>,
    /// Items running at once; `None` means the execution's max parallelism.
    pub parallelism: Option<u32>,
    pub min_successes: Option<u32>,
    pub min_success_ratio: Option<f32>,
    /// Inputs passed whole to every item instead of being split.
    pub bound_inputs: BTreeSet<String>,
    /// Items are memoized one by one (the task is cacheable).
    pub cache: bool,
    /// Each item gets its own inputs file holding its element of every collection input
    /// (`INDIVIDUAL_INPUT_FILES`, or a sub-node with its original scalar interface);
    /// otherwise every item reads the whole inputs and indexes them itself.
    pub individual_inputs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Start,
    End,
    /// A task node; the index is into `Plan::tasks`. A task that writes `futures.pb` turns
    /// into a dynamic node whose scope is added to the plan at run time.
    Task(usize),
    Branch(Branch),
    /// An inlined subworkflow: the index is into `Plan::scopes`.
    Subworkflow(usize),
    /// A child execution of this launch plan.
    LaunchPlan(core::Identifier),
    Gate(Gate),
    Array(ArraySpec),
    /// A node kind this engine cannot run; the text names it.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    /// Unique within the execution: names the node's records, blobs and stored state.
    pub id: String,
    /// The id in its workflow template (`spec_node_id`).
    pub spec_id: String,
    /// The node this one runs inside (branch, subworkflow or dynamic node).
    pub parent: Option<usize>,
    /// The scope whose ids and inputs the node's bindings read.
    pub scope: usize,
    pub kind: NodeKind,
    /// Upstream members of the same scope.
    pub upstream: Vec<usize>,
    /// Attempts a RECOVERABLE user error may use (retries + 1).
    pub max_attempts: u32,
    /// Per-attempt timeout (task nodes) or overall timeout (gates), in nanoseconds.
    pub timeout: Option<i64>,
    /// The scope's failure handler (`on_failure`): runs only after the scope failed.
    pub on_failure: bool,
    /// A cacheable task node (`discoverable`); `Some(true)` when identical runs are
    /// serialized (`cache_serializable`).
    pub cache: Option<bool>,
    /// The node as compiled (bindings, metadata).
    pub node: core::Node,
}

/// How a scope reacts to a failed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    FailImmediately,
    FailAfterExecutableNodesComplete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The node running this scope; `None` for the root workflow.
    pub owner: Option<usize>,
    /// Spec id → plan index, for promise resolution.
    pub ids: BTreeMap<String, usize>,
    /// The DAG members in topological order (for the root: start first, end last).
    pub members: Vec<usize>,
    /// The scope's output bindings.
    pub outputs: Vec<core::Binding>,
    pub failure_policy: FailurePolicy,
    pub failure_node: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Parents come before their children; within a scope, topological order. `nodes[0]`
    /// is the root start node.
    pub nodes: Vec<PlanNode>,
    /// Unique id → index.
    pub index: BTreeMap<String, usize>,
    pub scopes: Vec<Scope>,
    pub tasks: Vec<TaskTemplate>,
    /// The root end node.
    pub end: usize,
    pub failure_policy: FailurePolicy,
    /// The root workflow's output bindings (the end node's inputs).
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

/// Templates a scope may reference as subworkflows.
type Subs<'a> = &'a [core::CompiledWorkflow];

impl Plan {
    pub fn new(closure: &CompiledWorkflowClosure) -> Result<Plan, PlanError> {
        let primary = closure.primary.as_ref().ok_or(PlanError::NoPrimary)?;
        let template = primary.template.as_ref().ok_or(PlanError::NoPrimary)?;
        let mut plan = Plan {
            nodes: Vec::new(),
            index: BTreeMap::new(),
            scopes: Vec::new(),
            tasks: closure
                .tasks
                .iter()
                .filter_map(|t| t.template.clone())
                .collect(),
            end: 0,
            failure_policy: FailurePolicy::FailImmediately,
            outputs: template.outputs.clone(),
        };
        let root = plan.add_scope(
            template,
            primary.connections.as_ref(),
            None,
            "",
            &closure.sub_workflows,
            0,
        )?;
        plan.end = plan.index[END_NODE];
        plan.failure_policy = plan.scopes[root].failure_policy;
        Ok(plan)
    }

    /// Adds the workflow a dynamic node produced as the scope of `owner` (run by its
    /// `attempt`). Deterministic: the same closure gives the same unique ids.
    pub fn extend_dynamic(
        &mut self,
        owner: usize,
        attempt: u32,
        closure: &CompiledWorkflowClosure,
    ) -> Result<usize, PlanError> {
        let primary = closure.primary.as_ref().ok_or(PlanError::NoPrimary)?;
        let template = primary.template.as_ref().ok_or(PlanError::NoPrimary)?;
        self.tasks
            .extend(closure.tasks.iter().filter_map(|t| t.template.clone()));
        let prefix = format!("{}-{attempt}-", self.nodes[owner].id);
        self.add_scope(
            template,
            primary.connections.as_ref(),
            Some(owner),
            &prefix,
            &closure.sub_workflows,
            self.depth(owner) + 1,
        )
    }

    /// The scope a subworkflow or dynamic node runs, if it has one yet.
    pub fn scope_of(&self, owner: usize) -> Option<usize> {
        match self.nodes[owner].kind {
            NodeKind::Subworkflow(s) => Some(s),
            _ => self.scopes.iter().position(|s| s.owner == Some(owner)),
        }
    }

    fn depth(&self, mut i: usize) -> usize {
        let mut d = 0;
        while let Some(p) = self.nodes[i].parent {
            d += 1;
            i = p;
        }
        d
    }

    /// Whether `i` runs (directly or transitively) inside `ancestor`.
    pub fn is_inside(&self, mut i: usize, ancestor: usize) -> bool {
        while let Some(p) = self.nodes[i].parent {
            if p == ancestor {
                return true;
            }
            i = p;
        }
        false
    }

    pub fn task(&self, node: usize) -> Option<&TaskTemplate> {
        match &self.nodes[node].kind {
            NodeKind::Task(i) => self.tasks.get(*i),
            NodeKind::Array(a) => a.task.and_then(|t| self.tasks.get(t)),
            _ => None,
        }
    }

    fn add_scope(
        &mut self,
        template: &WorkflowTemplate,
        conns: Option<&core::ConnectionSet>,
        owner: Option<usize>,
        prefix: &str,
        subs: Subs<'_>,
        depth: usize,
    ) -> Result<usize, PlanError> {
        if depth > MAX_DEPTH {
            let at = owner.map(|o| self.nodes[o].id.clone()).unwrap_or_default();
            return Err(PlanError::TooDeep(at, MAX_DEPTH));
        }
        let root = owner.is_none();
        let nodes: Vec<&core::Node> = template
            .nodes
            .iter()
            .filter(|n| root || (n.id != START_NODE && n.id != END_NODE))
            .collect();
        let by_id: BTreeMap<&str, &core::Node> =
            nodes.iter().map(|n| (n.id.as_str(), *n)).collect();
        if root {
            for required in [START_NODE, END_NODE] {
                if !by_id.contains_key(required) {
                    return Err(PlanError::MissingNode(required));
                }
            }
        }
        // Upstream sets: compiled connections, explicit upstream ids and promise sources;
        // within a nested scope the start node is always "done" and is dropped.
        let mut ups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for n in &nodes {
            let set = ups.entry(n.id.as_str()).or_default();
            if let Some(c) = conns.and_then(|c| c.upstream.get(&n.id)) {
                set.extend(c.ids.iter().map(String::as_str));
            }
            set.extend(n.upstream_node_ids.iter().map(String::as_str));
            if n.id != START_NODE {
                set.extend(promise_sources(&n.inputs));
            }
            set.remove(n.id.as_str());
            if !root {
                set.remove(START_NODE);
                set.remove("");
            }
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
            let mut ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, u)| u.iter().all(|x| placed.contains(x)))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                let stuck = remaining.keys().next().copied().unwrap_or_default();
                return Err(PlanError::Cycle(format!("{prefix}{stuck}")));
            }
            ready.sort_by_key(|id| (*id != START_NODE, *id == END_NODE, *id));
            for id in ready {
                remaining.remove(id);
                placed.insert(id);
                order.push(id);
            }
        }
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            owner,
            ids: BTreeMap::new(),
            members: Vec::new(),
            outputs: template.outputs.clone(),
            failure_policy: match template.metadata.as_ref().map(|m| m.on_failure) {
                Some(1) => FailurePolicy::FailAfterExecutableNodesComplete,
                _ => FailurePolicy::FailImmediately,
            },
            failure_node: None,
        });
        // Members first (so a whole scope's DAG is contiguous), then what they contain.
        let mut members = Vec::with_capacity(order.len());
        for id in &order {
            let i = self.push(by_id[id], prefix, owner, scope);
            members.push(i);
        }
        for &i in &members {
            let up = ups[self.nodes[i].spec_id.as_str()]
                .iter()
                .map(|u| self.scopes[scope].ids[*u])
                .collect();
            self.nodes[i].upstream = up;
        }
        let failure = template
            .failure_node
            .as_ref()
            .map(|f| self.push(f, prefix, owner, scope));
        if let Some(f) = failure {
            self.nodes[f].on_failure = true;
        }
        self.scopes[scope].members = members.clone();
        self.scopes[scope].failure_node = failure;
        for i in members.into_iter().chain(failure) {
            self.resolve_kind(i, prefix, subs, depth)?;
        }
        Ok(scope)
    }

    fn push(&mut self, n: &core::Node, prefix: &str, parent: Option<usize>, scope: usize) -> usize {
        let i = self.nodes.len();
        let id = format!("{prefix}{}", n.id);
        self.index.insert(id.clone(), i);
        self.scopes[scope].ids.insert(n.id.clone(), i);
        self.nodes.push(PlanNode {
            id,
            spec_id: n.id.clone(),
            parent,
            scope,
            kind: NodeKind::Unsupported("unresolved"),
            upstream: Vec::new(),
            max_attempts: 1,
            timeout: None,
            on_failure: false,
            cache: None,
            node: n.clone(),
        });
        i
    }

    fn find_task(&self, node: &str, t: &core::TaskNode) -> Result<usize, PlanError> {
        let Some(Reference::ReferenceId(rid)) = &t.reference else {
            return Err(PlanError::MissingTask(node.into(), "<none>".into()));
        };
        self.tasks
            .iter()
            .rposition(|t| t.id.as_ref().is_some_and(|x| same_id(x, rid)))
            .ok_or_else(|| PlanError::MissingTask(node.into(), rid.name.clone()))
    }

    /// Works out what node `i` is; adds the nodes and scopes it contains.
    fn resolve_kind(
        &mut self,
        i: usize,
        prefix: &str,
        subs: Subs<'_>,
        depth: usize,
    ) -> Result<(), PlanError> {
        let n = self.nodes[i].node.clone();
        let scope = self.nodes[i].scope;
        let uid = self.nodes[i].id.clone();
        let kind = match (n.id.as_str(), &n.target) {
            (START_NODE, _) if self.scopes[scope].owner.is_none() => NodeKind::Start,
            (END_NODE, _) if self.scopes[scope].owner.is_none() => NodeKind::End,
            (_, Some(Target::TaskNode(t))) => NodeKind::Task(self.find_task(&uid, t)?),
            (_, Some(Target::BranchNode(b))) => {
                let ie = b.if_else.as_deref().cloned().unwrap_or_default();
                let child = |plan: &mut Plan, c: &core::Node| -> Result<usize, PlanError> {
                    let ci = plan.push(c, prefix, Some(i), scope);
                    plan.resolve_kind(ci, prefix, subs, depth)?;
                    Ok(ci)
                };
                let mut cases = Vec::new();
                for case in ie.case.as_deref().into_iter().chain(ie.other.iter()) {
                    let Some(then) = case.then_node.as_deref() else {
                        continue;
                    };
                    let ci = child(self, then)?;
                    cases.push((case.condition.clone().unwrap_or_default(), ci));
                }
                let (else_node, else_fail) = match &ie.default {
                    Some(if_else_block::Default::ElseNode(e)) => (Some(child(self, e)?), None),
                    Some(if_else_block::Default::Error(e)) => (None, Some(e.message.clone())),
                    None => (None, None),
                };
                NodeKind::Branch(Branch {
                    cases,
                    else_node,
                    else_fail,
                })
            }
            (_, Some(Target::WorkflowNode(w))) => match &w.reference {
                Some(workflow_node::Reference::SubWorkflowRef(r)) => {
                    let sub = subs
                        .iter()
                        .find(|s| {
                            s.template
                                .as_ref()
                                .and_then(|t| t.id.as_ref())
                                .is_some_and(|x| same_id(x, r))
                        })
                        .ok_or_else(|| {
                            PlanError::MissingSubWorkflow(uid.clone(), r.name.clone())
                        })?;
                    let t = sub.template.as_ref().ok_or(PlanError::NoPrimary)?;
                    let s = self.add_scope(
                        t,
                        sub.connections.as_ref(),
                        Some(i),
                        &format!("{uid}-0-"),
                        subs,
                        depth + 1,
                    )?;
                    NodeKind::Subworkflow(s)
                }
                Some(workflow_node::Reference::LaunchplanRef(r)) => NodeKind::LaunchPlan(r.clone()),
                None => NodeKind::Unsupported("workflow node without a reference"),
            },
            (_, Some(Target::GateNode(g))) => match &g.condition {
                Some(gate_node::Condition::Sleep(s)) => NodeKind::Gate(Gate::Sleep(
                    s.duration.as_ref().and_then(nanos).unwrap_or(0),
                )),
                Some(gate_node::Condition::Signal(s)) => NodeKind::Gate(Gate::Signal {
                    signal_id: s.signal_id.clone(),
                    var: if s.output_variable_name.is_empty() {
                        "o0".into()
                    } else {
                        s.output_variable_name.clone()
                    },
                }),
                Some(gate_node::Condition::Approve(a)) => NodeKind::Gate(Gate::Approve {
                    signal_id: a.signal_id.clone(),
                }),
                None => NodeKind::Unsupported("gate without a condition"),
            },
            (_, Some(Target::ArrayNode(a))) => {
                let (task, launch_plan) = match a.node.as_deref().and_then(|s| s.target.as_ref()) {
                    Some(Target::TaskNode(t)) => (Some(self.find_task(&uid, t)?), None),
                    Some(Target::WorkflowNode(core::WorkflowNode {
                        reference: Some(workflow_node::Reference::LaunchplanRef(lp)),
                    })) => (None, Some(lp.clone())),
                    _ => (None, None),
                };
                if task.is_none() && launch_plan.is_none() {
                    NodeKind::Unsupported(
                        "array over a node that is neither a task nor a launch plan",
                    )
                } else {
                    NodeKind::Array(ArraySpec {
                        task,
                        launch_plan: launch_plan.clone(),
                        parallelism: match a.parallelism_option {
                            Some(array_node::ParallelismOption::Parallelism(p)) if p > 0 => Some(p),
                            _ => None,
                        },
                        min_successes: match a.success_criteria {
                            Some(array_node::SuccessCriteria::MinSuccesses(m)) => Some(m),
                            _ => None,
                        },
                        min_success_ratio: match a.success_criteria {
                            Some(array_node::SuccessCriteria::MinSuccessRatio(r)) => Some(r),
                            _ => None,
                        },
                        bound_inputs: a.bound_inputs.iter().cloned().collect(),
                        // A launch plan's items always get their own inputs.
                        individual_inputs: launch_plan.is_some()
                            || a.data_mode == array_node::DataMode::IndividualInputFiles as i32
                            || a.is_original_sub_node_interface == Some(true),
                        cache: task
                            .and_then(|t| self.tasks[t].metadata.as_ref())
                            .is_some_and(|m| m.discoverable),
                    })
                }
            }
            (_, None) => NodeKind::Unsupported("empty"),
        };
        let task_meta = match &kind {
            NodeKind::Task(t) => self.tasks[*t].metadata.as_ref(),
            NodeKind::Array(a) => a
                .task
                .and_then(|t| self.tasks.get(t))
                .and_then(|t| t.metadata.as_ref()),
            _ => None,
        };
        let sub_meta = match &n.target {
            Some(Target::ArrayNode(a)) => a.node.as_ref().and_then(|s| s.metadata.as_ref()),
            _ => None,
        };
        let retries = [n.metadata.as_ref(), sub_meta]
            .into_iter()
            .flatten()
            .filter_map(|m| m.retries.as_ref())
            .map(|r| r.retries)
            .max()
            .or(task_meta
                .and_then(|m| m.retries.as_ref())
                .map(|r| r.retries))
            .unwrap_or(0);
        let timeout = n
            .metadata
            .as_ref()
            .and_then(|m| m.timeout.as_ref())
            .or(task_meta.and_then(|m| m.timeout.as_ref()))
            .and_then(nanos);
        let cache = match &kind {
            NodeKind::Task(_) => task_meta
                .filter(|m| m.discoverable)
                .map(|m| m.cache_serializable),
            _ => None,
        };
        let p = &mut self.nodes[i];
        p.cache = cache;
        p.kind = kind;
        p.max_attempts = retries.saturating_add(1);
        p.timeout = timeout;
        Ok(())
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
