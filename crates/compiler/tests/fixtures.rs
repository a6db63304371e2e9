//! The compiler against every workflow real flytekit 1.16.31 registered
//! (`shared/fixtures/flytekit-wire/dumps`), and one broken variant per rejection rule.

use contrail_compiler::{
    Error, Key, LaunchPlanInterface, References, compile_workflow, requirements,
};
use contrail_idl::admin::{LaunchPlanCreateRequest, TaskCreateRequest, WorkflowCreateRequest};
use contrail_idl::core::{
    BindingData, LiteralType, Node, Primitive, Scalar, binding_data, literal_type, node::Target,
    primitive, scalar,
};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn dumps() -> PathBuf {
    match std::env::var_os("CONTRAIL_FIXTURES") {
        Some(p) => PathBuf::from(p).join("flytekit-wire/dumps"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/flytekit-wire/dumps"),
    }
}

/// Proto-JSON (as recorded) → typed message, through reflection over the compiled schema.
fn load<T: prost::Message + Default>(path: &std::path::Path, full_name: &str) -> T {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    let pool =
        POOL.get_or_init(|| DescriptorPool::decode(contrail_idl::FILE_DESCRIPTOR_SET).unwrap());
    let desc = pool.get_message_by_name(full_name).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let mut de = serde_json::Deserializer::from_str(&text);
    let dynamic = DynamicMessage::deserialize(desc, &mut de)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    T::decode(prost::Message::encode_to_vec(&dynamic).as_slice()).unwrap()
}

fn files(kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for scenario in std::fs::read_dir(dumps()).expect("fixtures present") {
        let dir = scenario.unwrap().path().join(kind);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            out.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

struct Corpus {
    refs: References,
    workflows: Vec<(PathBuf, WorkflowCreateRequest)>,
}

fn corpus() -> Corpus {
    let mut refs = References::default();
    for p in files("tasks") {
        let t: TaskCreateRequest = load(&p, "flyteidl.admin.TaskCreateRequest");
        let template = t.spec.unwrap().template.unwrap();
        refs.tasks.insert(Key::of(t.id.as_ref().unwrap()), template);
    }
    let workflows: Vec<_> = files("workflows")
        .into_iter()
        .map(|p| {
            let w: WorkflowCreateRequest = load(&p, "flyteidl.admin.WorkflowCreateRequest");
            (p, w)
        })
        .collect();
    let wf_outputs: BTreeMap<Key, _> = workflows
        .iter()
        .map(|(_, w)| {
            let t = w.spec.as_ref().unwrap().template.as_ref().unwrap();
            (
                Key::of(w.id.as_ref().unwrap()),
                t.interface.clone().unwrap().outputs.unwrap_or_default(),
            )
        })
        .collect();
    for p in files("launch_plans") {
        let lp: LaunchPlanCreateRequest = load(&p, "flyteidl.admin.LaunchPlanCreateRequest");
        let spec = lp.spec.unwrap();
        let outputs = wf_outputs
            .get(&Key::of(spec.workflow_id.as_ref().unwrap()))
            .cloned()
            .unwrap_or_default();
        refs.launch_plans.insert(
            Key::of(lp.id.as_ref().unwrap()),
            LaunchPlanInterface {
                inputs: spec.default_inputs.unwrap_or_default(),
                outputs,
            },
        );
    }
    Corpus { refs, workflows }
}

#[test]
fn every_recorded_registration_compiles_into_a_closure_flyteremote_can_use() {
    let c = corpus();
    assert!(
        c.workflows.len() >= 10,
        "expected the recorded workflows, found {}",
        c.workflows.len()
    );
    for (path, w) in &c.workflows {
        let spec = w.spec.as_ref().unwrap();
        let closure = compile_workflow(spec, &c.refs)
            .unwrap_or_else(|e| panic!("{} does not compile: {e:?}", path.display()));
        let primary = closure.primary.as_ref().unwrap();
        let t = primary.template.as_ref().unwrap();
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"start-node"), "{}", path.display());
        assert_eq!(ids.last(), Some(&"end-node"), "{}", path.display());
        let conns = primary.connections.as_ref().unwrap();
        assert!(conns.upstream.contains_key("end-node"));
        assert!(conns.downstream.contains_key("start-node"));
        // Every task referenced anywhere has a CompiledTask.
        let have: Vec<Key> = closure
            .tasks
            .iter()
            .map(|t| Key::of(t.template.as_ref().unwrap().id.as_ref().unwrap()))
            .collect();
        for k in requirements(spec).tasks {
            assert!(
                have.contains(&k),
                "{}: closure lacks task {k}",
                path.display()
            );
        }
        // No promise keeps an empty node id.
        let text = format!("{:?}", closure);
        assert!(
            !text.contains("node_id: \"\""),
            "{}: empty promise node id left",
            path.display()
        );
        assert_eq!(closure.sub_workflows.len(), spec.sub_workflows.len());
    }
}

fn get(c: &Corpus, name: &str) -> WorkflowCreateRequest {
    c.workflows
        .iter()
        .find(|(_, w)| w.id.as_ref().unwrap().name == name)
        .unwrap_or_else(|| panic!("no fixture workflow {name}"))
        .1
        .clone()
}

#[test]
fn branch_children_are_renamed_under_their_branch() {
    let c = corpus();
    let w = get(&c, "advanced.branch_wf");
    let closure = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap();
    let text = format!("{:?}", closure.primary.unwrap().template.unwrap());
    assert!(text.contains("id: \"n1-n0\""), "{text}");
    assert!(text.contains("id: \"n1-n2\""));
}

#[test]
fn connections_follow_the_data_dependencies() {
    let c = corpus();
    let w = get(&c, "basic.basic_wf");
    let closure = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap();
    let conns = closure.primary.unwrap().connections.unwrap();
    // greet takes `name` from the workflow inputs and `n` from add.
    assert_eq!(conns.upstream["n1"].ids, vec!["n0", "start-node"]);
    assert_eq!(conns.upstream["n0"].ids, vec!["start-node"]);
    assert_eq!(conns.downstream["start-node"].ids, vec!["n0", "n1"]);
    assert_eq!(conns.upstream["end-node"].ids, vec!["n1"]);
}

/// Compiles `basic.basic_wf` after `edit`, expecting exactly the given error message.
fn rejects(edit: impl FnOnce(&mut Vec<Node>, &mut References), expected: &str) {
    let mut c = corpus();
    let mut w = get(&c, "basic.basic_wf");
    let t = w.spec.as_mut().unwrap().template.as_mut().unwrap();
    edit(&mut t.nodes, &mut c.refs);
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).expect_err("must not compile");
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        msgs.iter().any(|m| m == expected),
        "expected {expected:?}, got {msgs:?}"
    );
}

fn promise(node: &str, var: &str) -> BindingData {
    BindingData {
        value: Some(binding_data::Value::Promise(
            contrail_idl::core::OutputReference {
                node_id: node.into(),
                var: var.into(),
                attr_path: vec![],
            },
        )),
        union: None,
    }
}

#[test]
fn a_missing_task_reference_is_rejected() {
    rejects(
        |nodes, _| {
            if let Some(Target::TaskNode(tn)) = &mut nodes[0].target
                && let Some(contrail_idl::core::task_node::Reference::ReferenceId(id)) =
                    &mut tn.reference
            {
                id.name = "basic.nope".into();
            }
        },
        "node 'n0': task flytesnacks/development/basic.nope@tKk8Jc2ynvIVcqf4FZmtkw is not registered",
    );
}

#[test]
fn a_missing_launch_plan_reference_is_rejected() {
    let c = corpus();
    let mut w = get(&c, "advanced.parent_wf");
    let lp_key = requirements(w.spec.as_ref().unwrap())
        .launch_plans
        .into_iter()
        .next()
        .unwrap();
    let mut refs = c.refs.clone();
    refs.launch_plans.remove(&lp_key);
    let errs = compile_workflow(w.spec.as_mut().unwrap(), &refs).unwrap_err();
    assert!(
        errs.iter().any(
            |e| matches!(e, Error::LaunchPlanNotFound { launch_plan, .. } if *launch_plan == lp_key)
        ),
        "{errs:?}"
    );
    assert!(errs[0].to_string().contains("is not registered"));
}

#[test]
fn a_binding_of_the_wrong_type_is_rejected() {
    rejects(
        |nodes, _| {
            nodes[1]
                .inputs
                .iter_mut()
                .find(|b| b.var == "n")
                .unwrap()
                .binding = Some(promise("", "name"))
        },
        "node 'n1': input 'n' of type INTEGER cannot be bound to STRING (from start-node.name)",
    );
}

#[test]
fn a_constant_of_the_wrong_type_is_rejected() {
    rejects(
        |nodes, _| {
            nodes[1]
                .inputs
                .iter_mut()
                .find(|b| b.var == "n")
                .unwrap()
                .binding = Some(BindingData {
                value: Some(binding_data::Value::Scalar(Scalar {
                    value: Some(scalar::Value::Primitive(Primitive {
                        value: Some(primitive::Value::StringValue("x".into())),
                    })),
                })),
                union: None,
            })
        },
        "node 'n1': input 'n' of type INTEGER cannot be bound to STRING",
    );
}

#[test]
fn an_unbound_required_input_is_rejected() {
    rejects(
        |nodes, _| nodes[1].inputs.retain(|b| b.var != "n"),
        "node 'n1': required input 'n' is not bound",
    );
}

#[test]
fn an_optional_input_may_stay_unbound() {
    let mut c = corpus();
    let mut w = get(&c, "basic.basic_wf");
    let t = w.spec.as_mut().unwrap().template.as_mut().unwrap();
    t.nodes[1].inputs.retain(|b| b.var != "n");
    // Make `greet.n` Optional[int].
    let version = t.id.as_ref().unwrap().version.clone();
    let greet = c
        .refs
        .tasks
        .iter_mut()
        .find(|(k, _)| k.name == "basic.greet" && k.version == version)
        .unwrap()
        .1;
    let v = greet
        .interface
        .as_mut()
        .unwrap()
        .inputs
        .as_mut()
        .unwrap()
        .variables
        .get_mut("n")
        .unwrap();
    let int = v.r#type.clone().unwrap();
    let none = LiteralType {
        r#type: Some(literal_type::Type::Simple(0)),
        ..Default::default()
    };
    v.r#type = Some(LiteralType {
        r#type: Some(literal_type::Type::UnionType(
            contrail_idl::core::UnionType {
                variants: vec![int, none],
            },
        )),
        ..Default::default()
    });
    compile_workflow(w.spec.as_ref().unwrap(), &c.refs).expect("optional input may be unbound");
}

#[test]
fn a_duplicate_binding_is_rejected() {
    rejects(
        |nodes, _| {
            let b = nodes[1].inputs[0].clone();
            nodes[1].inputs.push(b.clone());
        },
        "node 'n1': input 'n' is bound more than once",
    );
}

#[test]
fn a_binding_to_an_unknown_input_is_rejected() {
    rejects(
        |nodes, _| {
            let mut b = nodes[1].inputs[0].clone();
            b.var = "zz".into();
            nodes[1].inputs.push(b);
        },
        "node 'n1': input 'zz' is bound but the target has no such input",
    );
}

#[test]
fn a_promise_from_an_unknown_node_is_rejected() {
    rejects(
        |nodes, _| {
            nodes[1]
                .inputs
                .iter_mut()
                .find(|b| b.var == "n")
                .unwrap()
                .binding = Some(promise("n9", "o0"))
        },
        "node 'n1': input 'n' refers to node 'n9', which does not exist",
    );
}

#[test]
fn a_cycle_is_rejected_with_its_path() {
    rejects(
        |nodes, _| {
            // n0 is reachable from start (input a), but also waits for n1, which waits for n0.
            nodes[0].upstream_node_ids.push("n1".into());
            nodes[0].inputs[0].binding = Some(promise("", "a"));
        },
        "cycle detected: n0 -> n1 -> n0",
    );
}

#[test]
fn nodes_that_start_node_cannot_reach_are_rejected() {
    let c = corpus();
    let mut w = get(&c, "basic.basic_wf");
    let t = w.spec.as_mut().unwrap().template.as_mut().unwrap();
    // A third node n2 and n3 wait for each other: no path from start-node reaches them.
    let mut n2 = t.nodes[0].clone();
    n2.id = "n2".into();
    n2.inputs
        .iter_mut()
        .for_each(|b| b.binding = Some(promise("n3", "o0")));
    let mut n3 = t.nodes[0].clone();
    n3.id = "n3".into();
    n3.inputs
        .iter_mut()
        .for_each(|b| b.binding = Some(promise("n2", "o0")));
    t.nodes.push(n2);
    t.nodes.push(n3);
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        vec!["nodes not reachable from start-node: n2, n3".to_string()]
    );
}

#[test]
fn a_branch_without_else_is_rejected() {
    let c = corpus();
    let mut w = get(&c, "advanced.branch_wf");
    let t = w.spec.as_mut().unwrap().template.as_mut().unwrap();
    let branch = t
        .nodes
        .iter_mut()
        .find(|n| matches!(n.target, Some(Target::BranchNode(_))))
        .unwrap();
    let id = branch.id.clone();
    if let Some(Target::BranchNode(b)) = &mut branch.target {
        b.if_else.as_mut().unwrap().default = None;
    }
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        format!("branch node '{id}' has neither an else_node nor an else error")
    );
}

#[test]
fn a_dangling_output_binding_is_rejected() {
    let c = corpus();
    let mut w = get(&c, "basic.basic_wf");
    let t = w.spec.as_mut().unwrap().template.as_mut().unwrap();
    t.outputs[0].binding = Some(promise("n7", "o0"));
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "node 'end-node': input 'o0' refers to node 'n7', which does not exist"
    );
    let mut w2 = get(&c, "basic.basic_wf");
    let t2 = w2.spec.as_mut().unwrap().template.as_mut().unwrap();
    t2.outputs[0].var = "o9".into();
    let errs = compile_workflow(w2.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        msgs.contains(&"workflow output binding 'o9' is not declared in the interface".to_string())
    );
    assert!(
        msgs.contains(
            &"workflow output 'o0' is declared in the interface but not bound".to_string()
        )
    );
}

#[test]
fn duplicate_and_reserved_node_ids_are_rejected() {
    rejects(
        |nodes, _| nodes[1].id = "n0".into(),
        "node id 'n0' is used more than once",
    );
    rejects(
        |nodes, _| nodes[1].id = "end-node".into(),
        "node id 'end-node' is reserved",
    );
}

#[test]
fn a_none_literal_fits_an_optional_failure_node_input() {
    // The recorded failing workflow binds `err` to a none literal of a union type.
    let c = corpus();
    let w = get(&c, "advanced.failing_wf");
    compile_workflow(w.spec.as_ref().unwrap(), &c.refs).expect("failing_wf compiles");
}

#[test]
fn a_workflow_that_calls_itself_through_sub_workflows_is_rejected_with_the_chain() {
    use contrail_idl::core::workflow_node::Reference;
    let c = corpus();
    let mut w = get(&c, "advanced.parent_wf");
    let spec = w.spec.as_mut().unwrap();
    let parent = spec.template.as_ref().unwrap().id.clone().unwrap();
    let sub = spec.sub_workflows[0].id.clone().unwrap();
    // The sub-workflow's first node now runs the parent: parent -> sub -> parent.
    let mut call = spec
        .template
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .find(|n| matches!(&n.target, Some(Target::WorkflowNode(_))))
        .unwrap()
        .clone();
    call.target = Some(Target::WorkflowNode(contrail_idl::core::WorkflowNode {
        reference: Some(Reference::SubWorkflowRef(parent.clone())),
    }));
    spec.sub_workflows[0].nodes[0].target = call.target.clone();
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    let msg = errs[0].to_string();
    assert!(
        msg.starts_with("recursive workflow: ")
            && msg.contains(&Key::of(&parent).to_string())
            && msg.contains(&Key::of(&sub).to_string()),
        "{msg}"
    );
    // A workflow that names itself.
    let mut w = get(&c, "advanced.parent_wf");
    let spec = w.spec.as_mut().unwrap();
    spec.sub_workflows[0].nodes[0].target =
        Some(Target::WorkflowNode(contrail_idl::core::WorkflowNode {
            reference: Some(Reference::SubWorkflowRef(sub.clone())),
        }));
    let errs = compile_workflow(w.spec.as_ref().unwrap(), &c.refs).unwrap_err();
    let s = Key::of(&sub).to_string();
    assert_eq!(
        errs[0].to_string(),
        format!("recursive workflow: {s} -> {s} (a workflow may not call itself)")
    );
}
