//! Compiling one workflow spec (primary template plus its sub-workflows).

use crate::typing::{castable, check_constant, collection_of, describe, is_optional};
use crate::{Error, Key};
use contrail_idl::admin::WorkflowSpec;
use contrail_idl::core::{
    BindingData, CompiledTask, CompiledWorkflow, CompiledWorkflowClosure, ConnectionSet,
    LiteralType, Node, ParameterMap, TaskTemplate, VariableMap, WorkflowTemplate, binding_data,
    connection_set::IdList, gate_node, if_else_block, literal_type::Type, node::Target, parameter,
    task_node, workflow_node,
};
use std::collections::{BTreeMap, BTreeSet};

pub const START_NODE: &str = "start-node";
pub const END_NODE: &str = "end-node";

/// What a launch-plan node sees of the launch plan it starts.
#[derive(Debug, Clone, Default)]
pub struct LaunchPlanInterface {
    pub inputs: ParameterMap,
    pub outputs: VariableMap,
}

/// The registered entities a workflow refers to, loaded by the caller.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub tasks: BTreeMap<Key, TaskTemplate>,
    pub launch_plans: BTreeMap<Key, LaunchPlanInterface>,
}

/// The task and launch-plan ids a workflow spec refers to, anywhere in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub tasks: BTreeSet<Key>,
    pub launch_plans: BTreeSet<Key>,
}

/// Result of a successful compilation.
pub type Compiled = CompiledWorkflowClosure;

/// Lists every task and launch plan referenced by the spec (nodes, branches, array
/// sub-nodes, failure nodes, sub-workflows).
pub fn requirements(spec: &WorkflowSpec) -> Requirements {
    let mut req = Requirements::default();
    let templates = spec.template.iter().chain(spec.sub_workflows.iter());
    for t in templates {
        for n in t.nodes.iter().chain(t.failure_node.iter()) {
            walk_nodes(n, &mut |n| match &n.target {
                Some(Target::TaskNode(tn)) => {
                    if let Some(task_node::Reference::ReferenceId(id)) = &tn.reference {
                        req.tasks.insert(Key::of(id));
                    }
                }
                Some(Target::WorkflowNode(wn)) => {
                    if let Some(workflow_node::Reference::LaunchplanRef(id)) = &wn.reference {
                        req.launch_plans.insert(Key::of(id));
                    }
                }
                _ => {}
            });
        }
    }
    req
}

/// A chain of workflows that calls itself through sub-workflow nodes (`a -> b -> a`), if
/// any: such a workflow could only fail when it runs, so it is refused at registration.
fn recursion(spec: &WorkflowSpec) -> Option<Vec<String>> {
    let calls: BTreeMap<Key, Vec<Key>> = spec
        .template
        .iter()
        .chain(spec.sub_workflows.iter())
        .filter_map(|t| {
            let id = Key::of(t.id.as_ref()?);
            let mut callees = Vec::new();
            for n in t.nodes.iter().chain(t.failure_node.iter()) {
                walk_nodes(n, &mut |n| {
                    if let Some(Target::WorkflowNode(wn)) = &n.target
                        && let Some(workflow_node::Reference::SubWorkflowRef(sub)) = &wn.reference
                    {
                        callees.push(Key::of(sub));
                    }
                });
            }
            Some((id, callees))
        })
        .collect();
    // Depth-first with colours; reaching a workflow still on the path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        OnPath,
        Done,
    }
    let mut colour: BTreeMap<&Key, Colour> = BTreeMap::new();
    for root in calls.keys() {
        if colour.contains_key(root) {
            continue;
        }
        let mut path: Vec<(&Key, usize)> = vec![(root, 0)];
        colour.insert(root, Colour::OnPath);
        while let Some((at, next)) = path.last_mut() {
            let callees = calls.get(*at).map(Vec::as_slice).unwrap_or(&[]);
            let Some(callee) = callees.get(*next) else {
                colour.insert(*at, Colour::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match colour.get(callee) {
                Some(Colour::OnPath) => {
                    let start = path.iter().position(|(k, _)| *k == callee).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|(k, _)| k.to_string()).collect();
                    cycle.push(callee.to_string());
                    return Some(cycle);
                }
                Some(Colour::Done) => {}
                None => {
                    if let Some((key, _)) = calls.get_key_value(callee) {
                        colour.insert(key, Colour::OnPath);
                        path.push((key, 0));
                    }
                }
            }
        }
    }
    None
}

/// Visits a node and every node nested in it (branch cases, array sub-nodes).
pub fn walk_nodes<'a>(n: &'a Node, f: &mut impl FnMut(&'a Node)) {
    f(n);
    for child in children(n) {
        walk_nodes(child, f);
    }
}

fn children(n: &Node) -> Vec<&Node> {
    match &n.target {
        Some(Target::BranchNode(b)) => {
            let mut out = Vec::new();
            if let Some(ie) = &b.if_else {
                if let Some(c) = &ie.case {
                    out.extend(c.then_node.as_deref());
                }
                for c in &ie.other {
                    out.extend(c.then_node.as_deref());
                }
                if let Some(if_else_block::Default::ElseNode(e)) = &ie.default {
                    out.push(e);
                }
            }
            out
        }
        Some(Target::ArrayNode(a)) => a.node.as_deref().into_iter().collect(),
        _ => Vec::new(),
    }
}

fn children_mut(n: &mut Node) -> Vec<&mut Node> {
    match &mut n.target {
        Some(Target::BranchNode(b)) => {
            let mut out = Vec::new();
            if let Some(ie) = &mut b.if_else {
                if let Some(c) = &mut ie.case {
                    out.extend(c.then_node.as_deref_mut());
                }
                for c in &mut ie.other {
                    out.extend(c.then_node.as_deref_mut());
                }
                if let Some(if_else_block::Default::ElseNode(e)) = &mut ie.default {
                    out.push(e.as_mut());
                }
            }
            out
        }
        Some(Target::ArrayNode(a)) => a.node.as_deref_mut().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Compiles a workflow spec into the closure FlyteRemote and the engine consume.
pub fn compile_workflow(spec: &WorkflowSpec, refs: &References) -> Result<Compiled, Vec<Error>> {
    let primary = spec
        .template
        .as_ref()
        .ok_or_else(|| vec![Error::MissingTemplate])?;
    let subs: BTreeMap<Key, &WorkflowTemplate> = spec
        .sub_workflows
        .iter()
        .filter_map(|t| t.id.as_ref().map(|id| (Key::of(id), t)))
        .collect();
    let mut cx = Cx {
        refs,
        subs: &subs,
        errors: Vec::new(),
        tasks: BTreeMap::new(),
    };
    if let Some(cycle) = recursion(spec) {
        return Err(vec![Error::RecursiveWorkflow(cycle)]);
    }
    let primary = cx.compile_template(primary);
    let sub_workflows = spec
        .sub_workflows
        .iter()
        .map(|t| cx.compile_template(t))
        .collect();
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(CompiledWorkflowClosure {
        primary: Some(primary),
        sub_workflows,
        tasks: cx
            .tasks
            .into_values()
            .map(|t| CompiledTask { template: Some(t) })
            .collect(),
        launch_plans: Vec::new(),
    })
}

/// A node's typed interface as bindings see it. `None` where not statically known.
#[derive(Debug, Clone, Default)]
struct Iface {
    /// var → (type, required). `None`: inputs are free-form (branch and gate nodes).
    inputs: Option<BTreeMap<String, (LiteralType, bool)>>,
    /// var → type. `None`: outputs not statically known (approve gates).
    outputs: Option<BTreeMap<String, LiteralType>>,
}

fn vars(m: &Option<VariableMap>) -> BTreeMap<String, LiteralType> {
    m.iter()
        .flat_map(|m| m.variables.iter())
        .map(|(k, v)| (k.clone(), v.r#type.clone().unwrap_or_default()))
        .collect()
}

fn required_inputs(m: &Option<VariableMap>) -> BTreeMap<String, (LiteralType, bool)> {
    vars(m)
        .into_iter()
        .map(|(k, t)| {
            let req = !is_optional(&t);
            (k, (t, req))
        })
        .collect()
}

struct Cx<'a> {
    refs: &'a References,
    subs: &'a BTreeMap<Key, &'a WorkflowTemplate>,
    errors: Vec<Error>,
    tasks: BTreeMap<Key, TaskTemplate>,
}

impl Cx<'_> {
    fn compile_template(&mut self, t: &WorkflowTemplate) -> CompiledWorkflow {
        let mut template = t.clone();
        // 1. Ids: unique, non-empty, not reserved.
        let mut seen = BTreeSet::new();
        for n in &template.nodes {
            if n.id.is_empty() {
                self.errors.push(Error::EmptyNodeId);
            } else if n.id == START_NODE || n.id == END_NODE {
                self.errors.push(Error::ReservedNodeId(n.id.clone()));
            } else if !seen.insert(n.id.clone()) {
                self.errors.push(Error::DuplicateNodeId(n.id.clone()));
            }
        }
        // 2. Rewrite: branch children renamed `<branch>-<child>`, "" promises → start-node.
        for n in template
            .nodes
            .iter_mut()
            .chain(template.failure_node.iter_mut())
        {
            rename_children(n);
            rewrite_node_bindings(n);
        }
        for b in &mut template.outputs {
            if let Some(bd) = &mut b.binding {
                rewrite_binding(bd);
            }
        }
        // 3. Interfaces of the top-level nodes (also registers referenced tasks).
        let ifaces: BTreeMap<String, Iface> = template
            .nodes
            .iter()
            .map(|n| (n.id.clone(), self.interface(n)))
            .collect();
        let wf_inputs = vars(&template.interface.as_ref().and_then(|i| i.inputs.clone()));
        let scope = Scope {
            wf_inputs: &wf_inputs,
            nodes: &ifaces,
        };

        // 4. Bindings and dependencies.
        let mut upstream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for n in &template.nodes {
            let mut deps = BTreeSet::new();
            self.check_node_bindings(n, &ifaces[&n.id], &scope, &mut deps);
            for u in &n.upstream_node_ids {
                if u == START_NODE {
                    deps.insert(START_NODE.into());
                    continue;
                }
                if ifaces.contains_key(u) {
                    deps.insert(u.clone());
                } else {
                    self.errors.push(Error::UnknownUpstream {
                        node: n.id.clone(),
                        upstream: u.clone(),
                    });
                }
            }
            upstream.insert(n.id.clone(), deps);
        }
        if let Some(f) = &template.failure_node {
            let iface = self.interface(f);
            self.check_node_bindings(f, &iface, &scope, &mut BTreeSet::new());
        }
        // 5. Workflow outputs, bound from the end node.
        let declared = vars(&template.interface.as_ref().and_then(|i| i.outputs.clone()));
        let mut end_deps = BTreeSet::new();
        let mut bound = BTreeSet::new();
        for b in &template.outputs {
            let Some(expected) = declared.get(&b.var) else {
                self.errors.push(Error::UnknownOutput(b.var.clone()));
                continue;
            };
            if !bound.insert(b.var.clone()) {
                self.errors
                    .push(Error::DuplicateOutput { var: b.var.clone() });
            }
            if let Some(v) = b.binding.as_ref().and_then(|bd| bd.value.as_ref()) {
                self.check_binding_value(
                    END_NODE,
                    &b.var,
                    v,
                    Some(expected),
                    &scope,
                    &mut end_deps,
                );
            }
        }
        for var in declared.keys() {
            if !bound.contains(var) {
                self.errors.push(Error::UnboundOutput(var.clone()));
            }
        }
        // 6. Edges: start → nodes with no upstream; nodes with no downstream → end.
        let mut downstream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for n in upstream.keys() {
            downstream.entry(n.clone()).or_default();
        }
        for (n, deps) in &upstream {
            for d in deps {
                downstream.entry(d.clone()).or_default().insert(n.clone());
            }
        }
        for (n, deps) in upstream.iter_mut() {
            if deps.is_empty() {
                deps.insert(START_NODE.into());
                downstream
                    .entry(START_NODE.into())
                    .or_default()
                    .insert(n.clone());
            }
        }
        for n in upstream.keys() {
            if downstream.get(n).is_none_or(|d| d.is_empty()) {
                end_deps.insert(n.clone());
            }
        }
        if upstream.is_empty() {
            end_deps.insert(START_NODE.into());
        }
        for d in &end_deps {
            downstream
                .entry(d.clone())
                .or_default()
                .insert(END_NODE.into());
        }
        let mut up_full: BTreeMap<String, BTreeSet<String>> = upstream.clone();
        up_full.insert(END_NODE.into(), end_deps);

        // 7. Every node reachable from start-node; no cycles.
        self.check_graph(&downstream, upstream.keys());

        // 8. Materialise start/end nodes and the connection set.
        for n in &mut template.nodes {
            let deps = &upstream[&n.id];
            n.upstream_node_ids = deps.iter().filter(|d| *d != START_NODE).cloned().collect();
        }
        let end_node = Node {
            id: END_NODE.into(),
            inputs: template.outputs.clone(),
            ..Default::default()
        };
        template.nodes.insert(
            0,
            Node {
                id: START_NODE.into(),
                ..Default::default()
            },
        );
        template.nodes.push(end_node);
        let to_ids = |m: BTreeMap<String, BTreeSet<String>>| {
            m.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| {
                    (
                        k,
                        IdList {
                            ids: v.into_iter().collect(),
                        },
                    )
                })
                .collect()
        };
        CompiledWorkflow {
            template: Some(template),
            connections: Some(ConnectionSet {
                downstream: to_ids(downstream),
                upstream: to_ids(up_full),
            }),
        }
    }

    fn check_graph<'k>(
        &mut self,
        downstream: &BTreeMap<String, BTreeSet<String>>,
        nodes: impl Iterator<Item = &'k String>,
    ) {
        // Iterative DFS with colours; a grey target is a back edge, i.e. a cycle.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 grey, 2 black
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(START_NODE, succ(downstream, START_NODE))];
        state.insert(START_NODE, 1);
        let mut path = vec![START_NODE];
        while let Some((_, next)) = stack.last_mut() {
            match next.pop() {
                Some(m) => match state.get(m) {
                    Some(1) => {
                        let from = path.iter().position(|p| *p == m).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|s| s.to_string()).collect();
                        cycle.push(m.to_string());
                        self.errors.push(Error::Cycle(cycle));
                        return;
                    }
                    Some(_) => {}
                    None => {
                        state.insert(m, 1);
                        path.push(m);
                        stack.push((m, succ(downstream, m)));
                    }
                },
                None => {
                    let (done, _) = stack.pop().expect("non-empty");
                    state.insert(done, 2);
                    path.pop();
                }
            }
        }
        let unreachable: Vec<String> = nodes
            .filter(|n| !state.contains_key(n.as_str()))
            .cloned()
            .collect();
        if !unreachable.is_empty() {
            self.errors.push(Error::Unreachable(unreachable));
        }
    }

    /// The interface of a node, registering referenced tasks; reports missing references.
    fn interface(&mut self, n: &Node) -> Iface {
        match &n.target {
            None => {
                self.errors.push(Error::MissingTarget(n.id.clone()));
                Iface::default()
            }
            Some(Target::TaskNode(tn)) => {
                let Some(task_node::Reference::ReferenceId(id)) = &tn.reference else {
                    self.errors.push(Error::MissingTarget(n.id.clone()));
                    return Iface::default();
                };
                let key = Key::of(id);
                match self.refs.tasks.get(&key) {
                    Some(t) => {
                        self.tasks.insert(key, t.clone());
                        let i = t.interface.clone().unwrap_or_default();
                        Iface {
                            inputs: Some(required_inputs(&i.inputs)),
                            outputs: Some(vars(&i.outputs)),
                        }
                    }
                    None => {
                        self.errors.push(Error::TaskNotFound {
                            node: n.id.clone(),
                            task: key,
                        });
                        Iface::default()
                    }
                }
            }
            Some(Target::WorkflowNode(wn)) => match &wn.reference {
                Some(workflow_node::Reference::SubWorkflowRef(id)) => {
                    match self.subs.get(&Key::of(id)) {
                        Some(t) => {
                            let i = t.interface.clone().unwrap_or_default();
                            Iface {
                                inputs: Some(required_inputs(&i.inputs)),
                                outputs: Some(vars(&i.outputs)),
                            }
                        }
                        None => {
                            self.errors.push(Error::SubWorkflowNotFound {
                                node: n.id.clone(),
                                workflow: Key::of(id),
                            });
                            Iface::default()
                        }
                    }
                }
                Some(workflow_node::Reference::LaunchplanRef(id)) => {
                    match self.refs.launch_plans.get(&Key::of(id)) {
                        Some(lp) => {
                            let inputs = lp
                                .inputs
                                .parameters
                                .iter()
                                .map(|(k, p)| {
                                    let t = p
                                        .var
                                        .as_ref()
                                        .and_then(|v| v.r#type.clone())
                                        .unwrap_or_default();
                                    let req = match &p.behavior {
                                        Some(parameter::Behavior::Default(_)) => false,
                                        Some(parameter::Behavior::Required(r)) => *r,
                                        _ => !is_optional(&t),
                                    };
                                    (k.clone(), (t, req))
                                })
                                .collect();
                            Iface {
                                inputs: Some(inputs),
                                outputs: Some(vars(&Some(lp.outputs.clone()))),
                            }
                        }
                        None => {
                            self.errors.push(Error::LaunchPlanNotFound {
                                node: n.id.clone(),
                                launch_plan: Key::of(id),
                            });
                            Iface::default()
                        }
                    }
                }
                None => {
                    self.errors.push(Error::MissingTarget(n.id.clone()));
                    Iface::default()
                }
            },
            Some(Target::BranchNode(b)) => {
                let ie = b.if_else.as_deref();
                match ie.and_then(|ie| ie.case.as_deref()) {
                    None => self.errors.push(Error::BranchWithoutCase(n.id.clone())),
                    Some(_) => {
                        let ie = ie.expect("checked");
                        if ie
                            .case
                            .iter()
                            .map(|c| &**c)
                            .chain(ie.other.iter())
                            .any(|c| c.then_node.is_none())
                        {
                            self.errors.push(Error::BranchCaseWithoutNode(n.id.clone()));
                        }
                        if ie.default.is_none() {
                            self.errors.push(Error::BranchWithoutElse(n.id.clone()));
                        }
                    }
                }
                // Outputs: the variables every branch child produces.
                let mut outputs: Option<BTreeMap<String, LiteralType>> = None;
                let mut unknown = false;
                for c in children(n) {
                    match self.interface(c).outputs {
                        None => unknown = true,
                        Some(o) => {
                            outputs = Some(match outputs {
                                None => o,
                                Some(acc) => {
                                    acc.into_iter().filter(|(k, _)| o.contains_key(k)).collect()
                                }
                            })
                        }
                    }
                }
                Iface {
                    inputs: None,
                    outputs: if unknown {
                        None
                    } else {
                        Some(outputs.unwrap_or_default())
                    },
                }
            }
            Some(Target::GateNode(g)) => match &g.condition {
                Some(gate_node::Condition::Signal(s)) => Iface {
                    inputs: None,
                    outputs: Some(BTreeMap::from([(
                        s.output_variable_name.clone(),
                        s.r#type.clone().unwrap_or_default(),
                    )])),
                },
                Some(gate_node::Condition::Approve(_)) => Iface {
                    inputs: None,
                    outputs: None,
                },
                _ => Iface {
                    inputs: None,
                    outputs: Some(BTreeMap::new()),
                },
            },
            Some(Target::ArrayNode(a)) => match a.node.as_deref() {
                None => {
                    self.errors.push(Error::ArrayWithoutNode(n.id.clone()));
                    Iface::default()
                }
                Some(sub) => {
                    let i = self.interface(sub);
                    if a.is_original_sub_node_interface == Some(true) {
                        Iface {
                            inputs: i.inputs.map(|m| {
                                m.into_iter()
                                    .map(|(k, (t, r))| (k, (collection_of(&t), r)))
                                    .collect()
                            }),
                            outputs: i.outputs.map(|m| {
                                m.into_iter().map(|(k, t)| (k, collection_of(&t))).collect()
                            }),
                        }
                    } else {
                        i
                    }
                }
            },
        }
    }

    /// Checks a node's input bindings against its interface and collects the nodes it depends on.
    fn check_node_bindings(
        &mut self,
        n: &Node,
        iface: &Iface,
        scope: &Scope<'_>,
        deps: &mut BTreeSet<String>,
    ) {
        let mut bound = BTreeSet::new();
        for b in &n.inputs {
            if !bound.insert(b.var.as_str()) {
                self.errors.push(Error::DuplicateBinding {
                    node: n.id.clone(),
                    var: b.var.clone(),
                });
            }
            let expected = match &iface.inputs {
                Some(inputs) => match inputs.get(&b.var) {
                    Some((t, _)) => Some(t),
                    None => {
                        self.errors.push(Error::UnknownInput {
                            node: n.id.clone(),
                            var: b.var.clone(),
                        });
                        continue;
                    }
                },
                None => None,
            };
            if let Some(v) = b.binding.as_ref().and_then(|bd| bd.value.as_ref()) {
                self.check_binding_value(&n.id, &b.var, v, expected, scope, deps);
            }
        }
        if let Some(inputs) = &iface.inputs {
            for (var, (_, required)) in inputs {
                if *required && !bound.contains(var.as_str()) {
                    self.errors.push(Error::UnboundInput {
                        node: n.id.clone(),
                        var: var.clone(),
                    });
                }
            }
        }
        // Branch children resolve against the same scope; their dependencies are the branch's.
        if matches!(n.target, Some(Target::BranchNode(_))) {
            for c in children(n) {
                let ci = self.interface_quiet(c);
                self.check_node_bindings(c, &ci, scope, deps);
            }
        }
    }

    /// The interface of a nested node without reporting its reference errors twice.
    fn interface_quiet(&mut self, n: &Node) -> Iface {
        let before = self.errors.len();
        let i = self.interface(n);
        self.errors.truncate(before);
        i
    }

    fn check_binding_value(
        &mut self,
        node: &str,
        var: &str,
        v: &binding_data::Value,
        expected: Option<&LiteralType>,
        scope: &Scope<'_>,
        deps: &mut BTreeSet<String>,
    ) {
        match v {
            binding_data::Value::Promise(p) => {
                let found: Option<Option<&LiteralType>> = if p.node_id == START_NODE {
                    deps.insert(START_NODE.into());
                    match scope.wf_inputs.get(&p.var) {
                        Some(t) => Some(Some(t)),
                        None => {
                            self.errors.push(Error::UnknownSourceVar {
                                node: node.into(),
                                var: var.into(),
                                source_node: START_NODE.into(),
                                source_var: p.var.clone(),
                            });
                            None
                        }
                    }
                } else {
                    match scope.nodes.get(&p.node_id) {
                        None => {
                            self.errors.push(Error::UnknownSourceNode {
                                node: node.into(),
                                var: var.into(),
                                source_node: p.node_id.clone(),
                            });
                            None
                        }
                        Some(src) => {
                            deps.insert(p.node_id.clone());
                            match &src.outputs {
                                None => Some(None),
                                Some(outs) => match outs.get(&p.var) {
                                    Some(t) => Some(Some(t)),
                                    None => {
                                        self.errors.push(Error::UnknownSourceVar {
                                            node: node.into(),
                                            var: var.into(),
                                            source_node: p.node_id.clone(),
                                            source_var: p.var.clone(),
                                        });
                                        None
                                    }
                                },
                            }
                        }
                    }
                };
                // attr_path selects inside a value whose field types are not modelled here.
                if let (Some(Some(up)), Some(down), true) =
                    (found, expected, p.attr_path.is_empty())
                    && !castable(up, down)
                {
                    self.errors.push(Error::MismatchingTypes {
                        node: node.into(),
                        var: var.into(),
                        expected: describe(down),
                        found: format!("{} (from {}.{})", describe(up), p.node_id, p.var),
                    });
                }
            }
            constant => {
                // Promises nested in lists and maps resolve (and are typed) element by element.
                match constant {
                    binding_data::Value::Collection(c) => {
                        let elem = expected.and_then(|t| match &t.r#type {
                            Some(Type::CollectionType(e)) => Some(&**e),
                            _ => None,
                        });
                        self.check_nested(
                            node,
                            var,
                            c.bindings.iter(),
                            elem,
                            expected,
                            scope,
                            deps,
                        );
                    }
                    binding_data::Value::Map(m) => {
                        let vt = expected.and_then(|t| match &t.r#type {
                            Some(Type::MapValueType(e)) => Some(&**e),
                            _ => None,
                        });
                        self.check_nested(
                            node,
                            var,
                            m.bindings.values(),
                            vt,
                            expected,
                            scope,
                            deps,
                        );
                    }
                    _ => {}
                }
                if let Some(down) = expected
                    && let Err(found) = check_constant(constant, down)
                {
                    self.mismatch(node, var, down, found);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_nested<'b>(
        &mut self,
        node: &str,
        var: &str,
        items: impl Iterator<Item = &'b BindingData>,
        inner: Option<&LiteralType>,
        outer: Option<&LiteralType>,
        scope: &Scope<'_>,
        deps: &mut BTreeSet<String>,
    ) {
        // Inside a union slot the element type is not known; only resolve promises.
        let typed = inner.is_some() || outer.is_none();
        for b in items {
            if let Some(v) = &b.value
                && (matches!(v, binding_data::Value::Promise(_)) || typed)
            {
                self.check_binding_value(node, var, v, inner, scope, deps);
            }
        }
    }

    fn mismatch(&mut self, node: &str, var: &str, down: &LiteralType, found: String) {
        self.errors.push(Error::MismatchingTypes {
            node: node.into(),
            var: var.into(),
            expected: describe(down),
            found,
        });
    }
}

struct Scope<'a> {
    wf_inputs: &'a BTreeMap<String, LiteralType>,
    nodes: &'a BTreeMap<String, Iface>,
}

fn succ<'a>(downstream: &'a BTreeMap<String, BTreeSet<String>>, n: &str) -> Vec<&'a str> {
    downstream
        .get(n)
        .map(|s| s.iter().rev().map(|x| x.as_str()).collect())
        .unwrap_or_default()
}

fn rename_children(n: &mut Node) {
    if !matches!(n.target, Some(Target::BranchNode(_))) {
        return;
    }
    let prefix = n.id.clone();
    for c in children_mut(n) {
        c.id = format!("{prefix}-{}", c.id);
        rename_children(c);
    }
}

fn rewrite_node_bindings(n: &mut Node) {
    for b in &mut n.inputs {
        if let Some(bd) = &mut b.binding {
            rewrite_binding(bd);
        }
    }
    for c in children_mut(n) {
        rewrite_node_bindings(c);
    }
}

fn rewrite_binding(bd: &mut BindingData) {
    match &mut bd.value {
        Some(binding_data::Value::Promise(p)) if p.node_id.is_empty() => {
            p.node_id = START_NODE.into()
        }
        Some(binding_data::Value::Collection(c)) => c.bindings.iter_mut().for_each(rewrite_binding),
        Some(binding_data::Value::Map(m)) => m.bindings.values_mut().for_each(rewrite_binding),
        _ => {}
    }
}
