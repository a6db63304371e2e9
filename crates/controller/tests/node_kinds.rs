//! Scenario tests of each node kind through the real controller and engine, over the
//! testkit doubles: a branch, signal and sleep gates, an array node, a launch-plan node
//! (with a launcher double that creates the child), and what a failed parent does to them.

mod common;

use common::*;
use contrail_controller::Clock;
use contrail_engine::{Failure, TaskStatus};
use contrail_idl::{admin, core};
use contrail_store::{ExecKey, RoundStore, SignalStore};
use core::node::Target;
use core::node_execution::Phase as NodePhase;
use core::workflow_execution::Phase;
use prost::Message;

fn int_type() -> core::LiteralType {
    core::LiteralType {
        r#type: Some(core::literal_type::Type::Simple(
            core::SimpleType::Integer as i32,
        )),
        ..Default::default()
    }
}

fn ints(values: &[i64]) -> core::Literal {
    core::Literal {
        value: Some(core::literal::Value::Collection(core::LiteralCollection {
            literals: values.iter().map(|v| int(*v)).collect(),
        })),
        ..Default::default()
    }
}

fn as_ints(l: &core::Literal) -> Vec<i64> {
    match &l.value {
        Some(core::literal::Value::Collection(c)) => c.literals.iter().filter_map(as_int).collect(),
        _ => panic!("not a collection: {l:?}"),
    }
}

/// A task node `id` whose input `x` is `var` of `from`.
fn task_from(id: &str, from: &str, var: &str) -> core::Node {
    let mut n = task_node(id, &[], 0, false);
    n.inputs = vec![binding("x", promise(from, var))];
    if from != "start-node" {
        n.upstream_node_ids = vec![from.into()];
    }
    n
}

/// `if x > 10: n0-n0 (x + 1) else: n0-n1 (x + 1)`, as flytekit compiles a conditional.
fn branch_wf() -> core::CompiledWorkflowClosure {
    use core::if_else_block::Default as Else;
    let condition = greater_than(".x", 10);
    let node = core::Node {
        id: "n0".into(),
        inputs: vec![binding(".x", promise("start-node", "x"))],
        target: Some(Target::BranchNode(Box::new(core::BranchNode {
            if_else: Some(Box::new(core::IfElseBlock {
                case: Some(Box::new(core::IfBlock {
                    condition: Some(condition),
                    then_node: Some(Box::new(task_from("n0-n0", "start-node", "x"))),
                })),
                other: vec![],
                default: Some(Else::ElseNode(Box::new(task_from(
                    "n0-n1",
                    "start-node",
                    "x",
                )))),
            })),
        }))),
        ..Default::default()
    };
    workflow(vec![node], false)
}

#[test]
fn a_branch_runs_only_the_chosen_node_and_takes_its_outputs() {
    for (x, ran, skipped) in [(3, "n0-n1", "n0-n0"), (20, "n0-n0", "n0-n1")] {
        let h = Harness::new(cfg());
        let k = h.create(
            "e1",
            &branch_wf(),
            &inputs(x),
            admin::ExecutionSpec::default(),
        );
        run_to_end(&h, &k);
        assert_eq!(h.phase(&k), Phase::Succeeded);
        let runs = h.executor.runs();
        assert_eq!(runs.len(), 1, "x = {x}: {runs:?}");
        assert!(runs.values().all(|r| r.spec.node_id == ran), "x = {x}");
        assert_eq!(h.node_phase(&k, skipped), Some(NodePhase::Skipped));
        assert_eq!(
            as_int(&h.outputs(&k).unwrap().literals["o_n0"]),
            Some(x + 1)
        );
    }
}

fn gate(id: &str, condition: core::gate_node::Condition) -> core::Node {
    core::Node {
        id: id.into(),
        target: Some(Target::GateNode(core::GateNode {
            condition: Some(condition),
        })),
        ..Default::default()
    }
}

/// `n0` waits for the signal `go` (an integer); `n1` adds one to it.
fn signal_wf() -> core::CompiledWorkflowClosure {
    let signal = core::gate_node::Condition::Signal(core::SignalCondition {
        signal_id: "go".into(),
        r#type: Some(int_type()),
        output_variable_name: "o".into(),
    });
    workflow(vec![gate("n0", signal), task_from("n1", "n0", "o")], false)
}

#[test]
fn a_signal_gate_makes_its_signal_and_waits_for_its_value_across_a_restart() {
    let mut h = Harness::new(cfg());
    let k = h.create(
        "e1",
        &signal_wf(),
        &inputs(0),
        admin::ExecutionSpec::default(),
    );
    h.round(&k);
    let signal = h
        .store
        .get_signal(&k, "go")
        .unwrap()
        .expect("the gate made its signal");
    assert!(signal.value.is_none());
    assert_eq!(h.node_phase(&k, "n0"), Some(NodePhase::Running));
    h.clock.advance(60 * S);
    h.restart();
    h.round(&k);
    assert!(
        h.executor.runs().is_empty(),
        "nothing runs before the signal"
    );
    assert_eq!(h.phase(&k), Phase::Running);
    assert!(
        h.store
            .set_signal(&k, "go", &int(41).encode_to_vec(), h.clock.now())
    );
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    let out = h.outputs(&k).unwrap();
    assert_eq!(as_int(&out.literals["o_n1"]), Some(42));
}

#[test]
fn a_sleep_gate_ends_when_the_clock_says_so() {
    let sleep = core::gate_node::Condition::Sleep(core::SleepCondition {
        duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
    });
    let mut wf = workflow(
        vec![gate("n0", sleep), task_node("n1", &[], 0, false)],
        false,
    );
    // n1 runs after the sleep; the workflow's only output is n1's.
    let template = wf.primary.as_mut().unwrap().template.as_mut().unwrap();
    template.nodes[2].upstream_node_ids = vec!["n0".into()];
    template.outputs.retain(|b| b.var == "o_n1");
    let h = Harness::new(cfg());
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.round(&k);
    h.clock.advance(29 * S);
    h.round(&k);
    assert!(h.executor.runs().is_empty(), "still asleep after 29 s");
    h.clock.advance(S);
    h.round(&k);
    assert_eq!(h.executor.runs().len(), 1, "awake at 30 s");
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
}

/// `n0` maps task `t` over the list input `xs`, two items at a time.
fn array_wf() -> core::CompiledWorkflowClosure {
    use core::array_node::ParallelismOption;
    let mut item = task_node("n0", &[], 0, false);
    item.inputs = vec![];
    let node = core::Node {
        id: "n0".into(),
        inputs: vec![binding("x", promise("start-node", "xs"))],
        target: Some(Target::ArrayNode(Box::new(core::ArrayNode {
            node: Some(Box::new(item)),
            parallelism_option: Some(ParallelismOption::Parallelism(2)),
            ..Default::default()
        }))),
        ..Default::default()
    };
    workflow(vec![node], false)
}

fn list_inputs(values: &[i64]) -> core::LiteralMap {
    core::LiteralMap {
        literals: [("xs".to_string(), ints(values))].into(),
    }
}

#[test]
fn an_array_node_runs_its_items_within_its_parallelism_and_gathers_their_outputs() {
    let h = Harness::new(cfg());
    let k = h.create(
        "e1",
        &array_wf(),
        &list_inputs(&[10, 20, 30, 40, 50]),
        admin::ExecutionSpec::default(),
    );
    for _ in 0..50 {
        h.round(&k);
        assert!(
            h.executor.alive().len() <= 2,
            "above the array's parallelism"
        );
        if h.phase(&k) == Phase::Succeeded {
            break;
        }
        // One item at a time ends, so the parallelism is exercised.
        if let Some(id) = h.executor.alive().first() {
            let run = &h.executor.runs()[id];
            h.executor
                .finish(id, TaskStatus::Succeeded, Some(&h.outputs_for(&run.spec)));
        }
        h.clock.advance(S);
    }
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert_eq!(h.executor.runs().len(), 5);
    let out = h.outputs(&k).unwrap();
    assert_eq!(as_ints(&out.literals["o_n0"]), vec![11, 21, 31, 41, 51]);
}

#[test]
fn an_array_item_that_fails_for_good_fails_the_node_and_aborts_the_items_still_running() {
    let h = Harness::new(cfg());
    let k = h.create(
        "e1",
        &array_wf(),
        &list_inputs(&[1, 2, 3, 4]),
        admin::ExecutionSpec::default(),
    );
    h.round(&k);
    h.round(&k);
    let alive = h.executor.alive();
    assert_eq!(alive.len(), 2);
    h.executor.finish(
        &alive[0],
        TaskStatus::Failed(Failure::user("Broken", "item failed", false)),
        None,
    );
    h.round(&k);
    assert_eq!(h.phase(&k), Phase::Failed);
    assert!(h.executor.alive().is_empty(), "the other item was aborted");
    assert!(h.executor.runs()[&alive[1]].aborted);
}

/// `n0` runs the launch plan `child_lp` (a one-task workflow) with `x`.
fn parent_wf() -> core::CompiledWorkflowClosure {
    let node = core::Node {
        id: "n0".into(),
        inputs: vec![binding("x", promise("start-node", "x"))],
        target: Some(Target::WorkflowNode(core::WorkflowNode {
            reference: Some(core::workflow_node::Reference::LaunchplanRef(
                core::Identifier {
                    resource_type: core::ResourceType::LaunchPlan as i32,
                    project: "p".into(),
                    domain: "d".into(),
                    name: "child_lp".into(),
                    version: "v".into(),
                    org: String::new(),
                },
            )),
        })),
        ..Default::default()
    };
    workflow(vec![node], false)
}

fn child_wf() -> core::CompiledWorkflowClosure {
    let mut wf = workflow(vec![task_node("n0", &[], 0, false)], false);
    // The child's output is `o`, as the parent's node output reference expects.
    let template = wf.primary.as_mut().unwrap().template.as_mut().unwrap();
    template.outputs = vec![binding("o", promise("n0", "o"))];
    wf
}

fn only_child(h: &Harness) -> ExecKey {
    let requests = h
        .launcher
        .as_ref()
        .unwrap()
        .requests
        .lock()
        .unwrap()
        .clone();
    let children: std::collections::BTreeSet<ExecKey> =
        requests.into_iter().map(|r| r.child).collect();
    assert_eq!(
        children.len(),
        1,
        "one child, however often it was asked for"
    );
    children.into_iter().next().unwrap()
}

/// A parent execution of `parent_wf` whose launch-plan node has asked for its child.
fn parent_with_child() -> (Harness, ExecKey, ExecKey) {
    let mut h = Harness::new(cfg());
    h.launch_plans(vec![("child_lp", child_wf())]);
    let k = h.create(
        "e1",
        &parent_wf(),
        &inputs(5),
        admin::ExecutionSpec::default(),
    );
    h.round(&k);
    h.round(&k);
    let child = only_child(&h);
    (h, k, child)
}

#[test]
fn a_launch_plan_node_starts_one_child_waits_for_it_and_takes_its_outputs() {
    let (mut h, k, child) = parent_with_child();
    // A restart before the child runs asks for it again under the same name.
    h.restart();
    h.round(&k);
    assert_eq!(only_child(&h), child);
    assert_eq!(h.phase(&k), Phase::Running);
    run_to_end(&h, &child);
    assert_eq!(h.phase(&child), Phase::Succeeded);
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert_eq!(as_int(&h.outputs(&k).unwrap().literals["o_n0"]), Some(6));
    let rec = h.store.get_execution(&child).unwrap().unwrap();
    let spec = admin::Execution::decode(rec.record.as_slice())
        .unwrap()
        .spec
        .unwrap();
    let parent = spec.metadata.unwrap().parent_node_execution.unwrap();
    assert_eq!(parent.node_id, "n0");
}

#[test]
fn aborting_the_parent_of_a_launch_plan_node_aborts_its_child() {
    let (h, k, child) = parent_with_child();
    h.round(&child);
    assert_eq!(h.executor.alive().len(), 1, "the child's task runs");
    h.store
        .request_abort(&k, "user asked", h.clock.now())
        .unwrap();
    h.round(&k);
    assert_eq!(h.phase(&k), Phase::Aborted);
    h.round(&child);
    assert_eq!(h.phase(&child), Phase::Aborted);
    assert!(
        h.executor.alive().is_empty(),
        "the child's task was aborted"
    );
}

#[test]
fn a_launch_plan_node_whose_plan_is_unknown_fails_with_the_launchers_reason() {
    let mut h = Harness::new(cfg());
    h.launch_plans(vec![]);
    let k = h.create(
        "e1",
        &parent_wf(),
        &inputs(5),
        admin::ExecutionSpec::default(),
    );
    for _ in 0..4 {
        h.round(&k);
    }
    assert_eq!(h.phase(&k), Phase::Failed);
    let e = h.error(&k).unwrap();
    assert!(
        e.message.contains("no launch plan child_lp"),
        "{}",
        e.message
    );
}
