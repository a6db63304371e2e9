//! Data-driven tests of each node handler: a workflow with that node kind, the
//! observations of each round, and the effects, node phases and workflow phase expected.

mod common;

use contrail_engine::{
    ChildStatus, Config, Effect, ExecState, Failure, NodePhase, Observation, Plan, TaskStatus,
    WorkflowPhase, resolve::primitive_literal, step,
};
use contrail_idl::core::{self, node::Target, primitive::Value as P};

const S: i64 = 1_000_000_000;

fn task(id: &str) -> core::Node {
    core::Node {
        id: id.into(),
        target: Some(Target::TaskNode(core::TaskNode {
            reference: Some(core::task_node::Reference::ReferenceId(common::task_id())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn after(mut n: core::Node, ups: &[&str]) -> core::Node {
    n.upstream_node_ids = ups.iter().map(|u| u.to_string()).collect();
    n
}

fn with_timeout(mut n: core::Node, secs: i64) -> core::Node {
    n.metadata = Some(core::NodeMetadata {
        timeout: Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
        ..Default::default()
    });
    n
}

fn gt(var: &str, v: i64) -> core::BooleanExpression {
    core::BooleanExpression {
        expr: Some(core::boolean_expression::Expr::Comparison(
            core::ComparisonExpression {
                operator: core::comparison_expression::Operator::Gt as i32,
                left_value: Some(core::Operand {
                    val: Some(core::operand::Val::Var(var.into())),
                }),
                right_value: Some(core::Operand {
                    val: Some(core::operand::Val::Scalar(core::Scalar {
                        value: Some(core::scalar::Value::Primitive(core::Primitive {
                            value: Some(P::Integer(v)),
                        })),
                    })),
                }),
            },
        )),
    }
}

fn branch(id: &str, case: core::Node, else_node: Option<core::Node>) -> core::Node {
    use core::if_else_block::Default as D;
    core::Node {
        id: id.into(),
        target: Some(Target::BranchNode(Box::new(core::BranchNode {
            if_else: Some(Box::new(core::IfElseBlock {
                case: Some(Box::new(core::IfBlock {
                    condition: Some(gt(".x", 10)),
                    then_node: Some(Box::new(case)),
                })),
                other: vec![],
                default: Some(match else_node {
                    Some(e) => D::ElseNode(Box::new(e)),
                    None => D::Error(core::Error {
                        failed_node_id: String::new(),
                        message: "x is too small".into(),
                    }),
                }),
            })),
        }))),
        ..Default::default()
    }
}

fn gate(id: &str, c: core::gate_node::Condition) -> core::Node {
    core::Node {
        id: id.into(),
        target: Some(Target::GateNode(core::GateNode { condition: Some(c) })),
        ..Default::default()
    }
}

fn wf_id(name: &str) -> core::Identifier {
    core::Identifier {
        resource_type: core::ResourceType::Workflow as i32,
        name: name.into(),
        ..common::task_id()
    }
}

fn template(name: &str, nodes: Vec<core::Node>, root: bool) -> core::WorkflowTemplate {
    let mut all = Vec::new();
    if root {
        all.push(core::Node {
            id: "start-node".into(),
            ..Default::default()
        });
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    all.extend(nodes);
    if root {
        all.push(core::Node {
            id: "end-node".into(),
            upstream_node_ids: ids,
            ..Default::default()
        });
    }
    core::WorkflowTemplate {
        id: Some(wf_id(name)),
        nodes: all,
        metadata: Some(core::WorkflowMetadata::default()),
        ..Default::default()
    }
}

fn closure(
    nodes: Vec<core::Node>,
    subs: Vec<core::WorkflowTemplate>,
) -> core::CompiledWorkflowClosure {
    let mut c = common::closure(&[], &[], &[], false);
    c.primary.as_mut().unwrap().template = Some(template("wf", nodes, true));
    c.sub_workflows = subs
        .into_iter()
        .map(|t| core::CompiledWorkflow {
            template: Some(t),
            connections: None,
        })
        .collect();
    c
}

struct Run {
    plan: Plan,
    cfg: Config,
    state: ExecState,
    now: i64,
}

impl Run {
    fn new(c: &core::CompiledWorkflowClosure) -> Run {
        let plan = Plan::new(c).unwrap();
        Run {
            state: ExecState::new(plan.nodes.len()),
            plan,
            cfg: Config {
                max_parallelism: 0,
                ..Config::default()
            },
            now: 0,
        }
    }
    fn i(&self, id: &str) -> usize {
        self.plan.index[id]
    }
    fn round(&mut self, obs: &[Observation]) -> Vec<Effect> {
        self.now += S;
        let s = step(&self.plan, &self.cfg, &self.state, obs, self.now);
        self.state = s.state;
        s.effects
    }
    fn phase(&self, id: &str) -> NodePhase {
        self.state.nodes[self.i(id)].phase
    }
    fn launch(&self, id: &str) -> Effect {
        Effect::Launch {
            node: self.i(id),
            item: None,
            attempt: 0,
        }
    }
    fn done(&self, id: &str, status: TaskStatus) -> Observation {
        Observation::Task {
            node: self.i(id),
            item: None,
            attempt: 0,
            status,
        }
    }
    fn inputs(&self, id: &str, pairs: &[(&str, core::Literal)]) -> Observation {
        Observation::Inputs {
            node: self.i(id),
            result: Ok(core::LiteralMap {
                literals: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            }),
        }
    }
    fn published(&self, id: &str) -> Observation {
        Observation::NodeOutputs {
            node: self.i(id),
            result: Ok(()),
        }
    }
}

fn int(v: i64) -> core::Literal {
    primitive_literal(P::Integer(v))
}

fn ints(n: usize) -> core::Literal {
    core::Literal {
        value: Some(core::literal::Value::Collection(core::LiteralCollection {
            literals: (0..n as i64).map(int).collect(),
        })),
        ..Default::default()
    }
}

#[test]
fn a_branch_runs_the_chosen_node_skips_the_other_and_takes_its_outputs() {
    let mut r = Run::new(&closure(
        vec![branch("n0", task("n0-n0"), Some(task("n0-n1")))],
        vec![],
    ));
    let b = r.i("n0");
    assert_eq!(
        r.round(&[]),
        vec![Effect::PublishStart, Effect::ResolveInputs { node: b }]
    );
    // The answer was lost (a crash after the commit): the next round asks again.
    assert_eq!(r.round(&[]), vec![Effect::ResolveInputs { node: b }]);
    // Not greater than 10: the else node runs, the case node is skipped.
    let fx = r.round(&[r.inputs("n0", &[(".x", int(3))])]);
    assert_eq!(fx, vec![r.launch("n0-n1")]);
    assert_eq!(r.phase("n0-n0"), NodePhase::Skipped);
    assert_eq!(r.phase("n0"), NodePhase::Running);
    assert_eq!(
        r.round(&[r.done("n0-n1", TaskStatus::Succeeded)]),
        vec![Effect::PublishNode { node: b }]
    );
    // Until the branch's outputs are written, the round asks again.
    assert_eq!(r.round(&[]), vec![Effect::PublishNode { node: b }]);
    assert_eq!(r.round(&[r.published("n0")]), vec![Effect::PublishOutputs]);
    assert_eq!(r.phase("n0"), NodePhase::Succeeded);
}

#[test]
fn a_branch_with_no_true_case_fails_with_the_users_else_error() {
    let mut r = Run::new(&closure(vec![branch("n0", task("n0-n0"), None)], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[(".x", int(3))])]);
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    let e = r.state.error.clone().unwrap();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("UserDefinedError", "x is too small")
    );
    // A condition over a missing input is a user error naming it.
    let mut r = Run::new(&closure(vec![branch("n0", task("n0-n0"), None)], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[("other", int(3))])]);
    assert!(r.state.error.unwrap().message.contains(".x"));
}

fn sub_closure() -> core::CompiledWorkflowClosure {
    let mut sw = core::Node {
        id: "n0".into(),
        target: Some(Target::WorkflowNode(core::WorkflowNode {
            reference: Some(core::workflow_node::Reference::SubWorkflowRef(wf_id("sub"))),
        })),
        ..Default::default()
    };
    sw.upstream_node_ids = vec![];
    closure(
        vec![sw, after(task("n1"), &["n0"])],
        vec![template(
            "sub",
            vec![task("n0"), after(task("n1"), &["n0"])],
            false,
        )],
    )
}

#[test]
fn a_subworkflow_runs_its_nodes_inside_and_publishes_when_they_are_done() {
    let mut r = Run::new(&sub_closure());
    assert_eq!(r.plan.nodes[r.i("n0-0-n0")].parent, Some(r.i("n0")));
    assert_eq!(r.plan.nodes[r.i("n0-0-n1")].spec_id, "n1");
    r.round(&[]);
    assert_eq!(
        r.round(&[r.inputs("n0", &[("x", int(1))])]),
        vec![r.launch("n0-0-n0")]
    );
    assert_eq!(
        r.round(&[r.done("n0-0-n0", TaskStatus::Succeeded)]),
        vec![r.launch("n0-0-n1")]
    );
    let sw = r.i("n0");
    assert_eq!(
        r.round(&[r.done("n0-0-n1", TaskStatus::Succeeded)]),
        vec![Effect::PublishNode { node: sw }]
    );
    assert_eq!(r.round(&[r.published("n0")]), vec![r.launch("n1")]);
}

#[test]
fn a_failing_subworkflow_node_fails_the_subworkflow_and_the_workflow() {
    let mut r = Run::new(&sub_closure());
    r.round(&[]);
    r.round(&[r.inputs("n0", &[("x", int(1))])]);
    let f = TaskStatus::Failed(Failure::user("USER:ValueError", "nope", false));
    r.round(&[r.done("n0-0-n0", f)]);
    assert_eq!(r.phase("n0-0-n0"), NodePhase::Failed);
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.phase("n1"), NodePhase::NotYetStarted);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.state.error.unwrap().message, "nope");
}

#[test]
fn a_dynamic_node_compiles_its_futures_then_runs_them_as_its_scope() {
    let mut r = Run::new(&closure(vec![task("n0")], vec![]));
    r.round(&[]);
    let n0 = r.i("n0");
    assert_eq!(
        r.round(&[r.done("n0", TaskStatus::Dynamic)]),
        vec![Effect::CompileDynamic { node: n0 }]
    );
    assert_eq!(r.phase("n0"), NodePhase::Running);
    // What the controller does on CompileDynamic: extend the plan, then report.
    let mut generated = closure(vec![task("dn0"), after(task("dn1"), &["dn0"])], vec![]);
    generated
        .primary
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .nodes
        .retain(|n| n.id != "end-node");
    r.plan.extend_dynamic(n0, 0, &generated).unwrap();
    assert_eq!(
        r.round(&[Observation::Dynamic {
            node: n0,
            result: Ok(())
        }]),
        vec![r.launch("n0-0-dn0")]
    );
    assert_eq!(
        r.round(&[r.done("n0-0-dn0", TaskStatus::Succeeded)]),
        vec![r.launch("n0-0-dn1")]
    );
    assert_eq!(
        r.round(&[r.done("n0-0-dn1", TaskStatus::Succeeded)]),
        vec![Effect::PublishNode { node: n0 }]
    );
    assert_eq!(r.round(&[r.published("n0")]), vec![Effect::PublishOutputs]);
    // A futures file that does not compile is the user's error.
    let mut r = Run::new(&closure(vec![task("n0")], vec![]));
    r.round(&[]);
    r.round(&[r.done("n0", TaskStatus::Dynamic)]);
    let f = Failure::user("DynamicWorkflowBuildFailed", "bad", false);
    r.round(&[Observation::Dynamic {
        node: n0,
        result: Err(f),
    }]);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
}

fn array(id: &str, parallelism: u32, min_successes: Option<u32>) -> core::Node {
    use core::array_node::{ParallelismOption, SuccessCriteria};
    core::Node {
        id: id.into(),
        target: Some(Target::ArrayNode(Box::new(core::ArrayNode {
            node: Some(Box::new(task("sub"))),
            parallelism_option: Some(ParallelismOption::Parallelism(parallelism)),
            success_criteria: min_successes.map(SuccessCriteria::MinSuccesses),
            ..Default::default()
        }))),
        ..Default::default()
    }
}

/// A workflow whose array node `n0` has just been given `size` items; the effects of that.
fn started_array(c: &core::CompiledWorkflowClosure, size: usize) -> (Run, usize, Vec<Effect>) {
    let mut r = Run::new(c);
    let n0 = r.i("n0");
    r.round(&[]);
    let fx = r.round(&[r.inputs("n0", &[("x", ints(size))])]);
    (r, n0, fx)
}

fn item(r: &Run, id: &str, i: u32, status: TaskStatus) -> Observation {
    Observation::Task {
        node: r.i(id),
        item: Some(i),
        attempt: 0,
        status,
    }
}

fn item_launch(r: &Run, id: &str, i: u32) -> Effect {
    Effect::Launch {
        node: r.i(id),
        item: Some(i),
        attempt: 0,
    }
}

#[test]
fn an_array_node_runs_items_within_its_parallelism_and_publishes_when_enough_succeed() {
    let mut r = Run::new(&closure(vec![array("n0", 2, Some(4))], vec![]));
    r.round(&[]);
    let fx = r.round(&[r.inputs("n0", &[("x", ints(5))])]);
    assert_eq!(fx, vec![item_launch(&r, "n0", 0), item_launch(&r, "n0", 1)]);
    // Item state stays one byte per item.
    assert_eq!(r.state.nodes[r.i("n0")].array().unwrap().items, "qq...");
    let boom = TaskStatus::Failed(Failure::user("USER:ValueError", "item boom", false));
    let fx = r.round(&[
        item(&r, "n0", 0, TaskStatus::Succeeded),
        item(&r, "n0", 1, boom),
    ]);
    assert_eq!(fx, vec![item_launch(&r, "n0", 2), item_launch(&r, "n0", 3)]);
    let fx = r.round(&[
        item(&r, "n0", 2, TaskStatus::Succeeded),
        item(&r, "n0", 3, TaskStatus::Succeeded),
    ]);
    assert_eq!(fx, vec![item_launch(&r, "n0", 4)]);
    let n0 = r.i("n0");
    assert_eq!(
        r.round(&[item(&r, "n0", 4, TaskStatus::Succeeded)]),
        vec![Effect::PublishNode { node: n0 }]
    );
    assert_eq!(r.state.nodes[n0].array().unwrap().items, "sfsss");
}

#[test]
fn an_array_node_fails_as_soon_as_too_many_items_failed_and_aborts_the_rest() {
    let mut r = Run::new(&closure(vec![array("n0", 3, Some(4))], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[("x", ints(5))])]);
    let boom = || TaskStatus::Failed(Failure::user("USER:ValueError", "item boom", false));
    let fx = r.round(&[item(&r, "n0", 0, boom()), item(&r, "n0", 1, boom())]);
    assert_eq!(
        fx,
        vec![Effect::Abort {
            node: r.i("n0"),
            item: Some(2),
            attempt: 0
        }]
    );
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    let e = r.state.error.clone().unwrap();
    assert_eq!(e.code, "ArrayNodeFailed");
    assert!(
        e.message.contains("2 of 5 items failed") && e.message.contains("item boom"),
        "{}",
        e.message
    );
    // Inputs of different lengths are refused.
    let mut r = Run::new(&closure(vec![array("n0", 3, None)], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[("x", ints(2)), ("y", ints(3))])]);
    assert_eq!(r.state.error.unwrap().code, "InvalidArrayLength");
}

#[test]
fn a_sleep_gate_is_a_timer_that_only_the_clock_ends() {
    use core::gate_node::Condition;
    let sleep = Condition::Sleep(core::SleepCondition {
        duration: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
    });
    let mut r = Run::new(&closure(vec![gate("n0", sleep)], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    assert_eq!(r.phase("n0"), NodePhase::Running);
    let started = r.state.nodes[r.i("n0")].started_at.unwrap();
    let s = step(&r.plan, &r.cfg, &r.state, &[], r.now);
    assert_eq!(s.wake_at, Some(started + 10 * S));
    r.now = started + 10 * S - 1;
    assert_eq!(r.round(&[]), vec![Effect::PublishNode { node: r.i("n0") }]);
}

#[test]
fn signal_and_approval_gates_wait_for_a_value_and_time_out() {
    use core::gate_node::Condition;
    let signal = Condition::Signal(core::SignalCondition {
        signal_id: "go".into(),
        r#type: None,
        output_variable_name: "o0".into(),
    });
    let mut r = Run::new(&closure(vec![gate("n0", signal)], vec![]));
    r.round(&[]);
    let n0 = r.i("n0");
    assert_eq!(
        r.round(&[r.inputs("n0", &[])]),
        vec![Effect::CreateSignal { node: n0 }]
    );
    assert_eq!(
        r.round(&[Observation::Signal {
            node: n0,
            value: None
        }]),
        vec![]
    );
    let v = Some(Box::new(int(4)));
    assert_eq!(
        r.round(&[Observation::Signal { node: n0, value: v }]),
        vec![Effect::PublishNode { node: n0 }]
    );
    // A rejected approval fails the node.
    let approve = Condition::Approve(core::ApproveCondition {
        signal_id: "ok".into(),
    });
    let mut r = Run::new(&closure(vec![gate("n0", approve.clone())], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    let no = Some(Box::new(primitive_literal(P::Boolean(false))));
    r.round(&[Observation::Signal {
        node: n0,
        value: no,
    }]);
    assert_eq!(r.state.error.unwrap().code, "ReceivedRejectSignal");
    // Nobody answers: the gate's timeout ends it.
    let mut r = Run::new(&closure(vec![with_timeout(gate("n0", approve), 5)], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    r.now += 5 * S;
    r.round(&[Observation::Signal {
        node: n0,
        value: None,
    }]);
    assert_eq!(r.phase("n0"), NodePhase::TimedOut);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
}

fn lp_node(id: &str) -> core::Node {
    core::Node {
        id: id.into(),
        target: Some(Target::WorkflowNode(core::WorkflowNode {
            reference: Some(core::workflow_node::Reference::LaunchplanRef(wf_id("lp"))),
        })),
        ..Default::default()
    }
}

#[test]
fn a_launch_plan_node_starts_a_child_follows_it_and_aborts_it_with_the_parent() {
    let mut r = Run::new(&closure(vec![lp_node("n0")], vec![]));
    r.round(&[]);
    let n0 = r.i("n0");
    assert_eq!(
        r.round(&[r.inputs("n0", &[])]),
        vec![Effect::LaunchChild { node: n0 }]
    );
    // The child is not there (the creation was lost): ask again.
    let child = |status| Observation::Child { node: n0, status };
    assert_eq!(
        r.round(&[child(ChildStatus::Unknown)]),
        vec![Effect::LaunchChild { node: n0 }]
    );
    assert_eq!(r.round(&[child(ChildStatus::Running)]), vec![]);
    assert_eq!(
        r.round(&[child(ChildStatus::Succeeded)]),
        vec![Effect::PublishNode { node: n0 }]
    );
    // Terminating the parent aborts a running child.
    let mut r = Run::new(&closure(vec![lp_node("n0")], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    let fx = r.round(&[Observation::AbortRequested {
        cause: "stop".into(),
    }]);
    assert_eq!(fx, vec![Effect::AbortChild { node: n0 }]);
    assert_eq!(r.state.phase, WorkflowPhase::Aborted);
    // A failed child fails the node with the child's error.
    let mut r = Run::new(&closure(vec![lp_node("n0")], vec![]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    r.round(&[child(ChildStatus::Failed(Failure::user(
        "X",
        "child said no",
        false,
    )))]);
    assert_eq!(r.state.error.unwrap().message, "child said no");
}

#[test]
fn the_failure_node_runs_after_a_failure_and_the_workflow_keeps_the_original_error() {
    let mut c = closure(vec![task("n0")], vec![]);
    c.primary
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .failure_node = Some(task("fn0"));
    let mut r = Run::new(&c);
    r.round(&[]);
    let f = TaskStatus::Failed(Failure::user("USER:ValueError", "original", false));
    assert_eq!(r.round(&[r.done("n0", f)]), vec![r.launch("fn0")]);
    assert_eq!(r.state.phase, WorkflowPhase::Running);
    assert_eq!(r.round(&[r.done("fn0", TaskStatus::Succeeded)]), vec![]);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.state.error.unwrap().message, "original");
}

#[test]
fn recovery_asks_for_the_original_result_first_and_runs_only_what_it_lacks() {
    let mut r = Run::new(&closure(
        vec![task("n0"), after(task("n1"), &["n0"])],
        vec![],
    ));
    r.cfg.recover = true;
    let (n0, n1) = (r.i("n0"), r.i("n1"));
    assert_eq!(
        r.round(&[]),
        vec![Effect::PublishStart, Effect::TryRecover { node: n0 }]
    );
    let fx = r.round(&[Observation::Recovery {
        node: n0,
        recovered: true,
    }]);
    assert_eq!(fx, vec![Effect::TryRecover { node: n1 }]);
    assert_eq!(r.phase("n0"), NodePhase::Recovered);
    assert_eq!(
        r.round(&[Observation::Recovery {
            node: n1,
            recovered: false
        }]),
        vec![r.launch("n1")]
    );
}

fn cached(serializable: bool) -> core::CompiledWorkflowClosure {
    let mut c = closure(vec![task("n0")], vec![]);
    c.tasks[0].template.as_mut().unwrap().metadata = Some(core::TaskMetadata {
        discoverable: true,
        discovery_version: "1".into(),
        cache_serializable: serializable,
        ..Default::default()
    });
    c
}

fn cache(r: &Run, outcome: contrail_engine::CacheOutcome) -> Observation {
    Observation::Cache {
        node: r.i("n0"),
        outcome,
    }
}

#[test]
fn a_cache_hit_finishes_the_node_without_running_its_task() {
    use contrail_engine::{CacheOutcome, CacheStatus, CatalogRef};
    let mut r = Run::new(&cached(false));
    let n0 = r.i("n0");
    assert_eq!(
        r.round(&[]),
        vec![Effect::PublishStart, Effect::CacheLookup { node: n0 }]
    );
    // Until answered, the lookup is asked again.
    assert_eq!(r.round(&[]), vec![Effect::CacheLookup { node: n0 }]);
    let hit = CatalogRef {
        artifact_id: "a1".into(),
        ..Default::default()
    };
    assert_eq!(
        r.round(&[cache(&r, CacheOutcome::Hit(hit.clone()))]),
        vec![Effect::PublishOutputs]
    );
    assert_eq!(r.phase("n0"), NodePhase::Succeeded);
    let st = r.state.nodes[n0].cache().cloned().unwrap();
    assert_eq!((st.status, st.catalog), (CacheStatus::Hit, Some(hit)));
    assert!(r.state.nodes[n0].task().is_none(), "no attempt ran");
}

#[test]
fn a_miss_runs_the_task_then_files_its_outputs_until_confirmed() {
    use contrail_engine::{CacheOutcome, CacheStatus, CatalogRef};
    let mut r = Run::new(&cached(false));
    let n0 = r.i("n0");
    r.round(&[]);
    let key = CatalogRef {
        tag: "flyte_cached-x".into(),
        ..Default::default()
    };
    assert_eq!(
        r.round(&[cache(&r, CacheOutcome::Miss(key.clone()))]),
        vec![r.launch("n0")]
    );
    let fx = r.round(&[r.done("n0", TaskStatus::Succeeded)]);
    assert!(fx.contains(&Effect::CachePut { node: n0 }), "{fx:?}");
    // The put is asked again until its result is seen.
    assert!(r.round(&[]).contains(&Effect::CachePut { node: n0 }));
    let filed = CatalogRef {
        artifact_id: "a2".into(),
        ..key
    };
    let fx = r.round(&[Observation::CachePut {
        node: n0,
        result: Ok(filed),
    }]);
    assert!(!fx.contains(&Effect::CachePut { node: n0 }));
    assert_eq!(
        r.state.nodes[n0].cache().unwrap().status,
        CacheStatus::Populated
    );
}

#[test]
fn a_serialized_node_waits_for_the_holder_and_looks_again_when_its_poll_is_due() {
    use contrail_engine::{CacheOutcome, CacheStatus, CatalogRef};
    let mut r = Run::new(&cached(true));
    let n0 = r.i("n0");
    r.round(&[]);
    assert_eq!(r.round(&[cache(&r, CacheOutcome::Wait)]), vec![]);
    assert_eq!(
        r.state.nodes[n0].cache().unwrap().status,
        CacheStatus::Waiting
    );
    let s = step(&r.plan, &r.cfg, &r.state, &[], r.now);
    assert_eq!(s.wake_at, Some(r.now + r.cfg.cache_poll));
    // After the poll interval it looks again; the holder populated it meanwhile: a hit.
    assert_eq!(r.round(&[]), vec![Effect::CacheLookup { node: n0 }]);
    r.round(&[cache(&r, CacheOutcome::Hit(CatalogRef::default()))]);
    assert_eq!(r.phase("n0"), NodePhase::Succeeded);
    // The holder keeps its reservation alive while it runs.
    let mut r = Run::new(&cached(true));
    r.round(&[]);
    r.round(&[cache(&r, CacheOutcome::Miss(CatalogRef::default()))]);
    let w = contrail_engine::watches(&r.plan, &r.state);
    assert!(
        w.contains(&contrail_engine::Watch::Reservation { node: n0 }),
        "{w:?}"
    );
}

#[test]
fn overwrite_cache_runs_without_looking_and_files_the_new_outputs() {
    use contrail_engine::CacheStatus;
    let mut r = Run::new(&cached(false));
    r.cfg.overwrite_cache = true;
    let n0 = r.i("n0");
    assert_eq!(r.round(&[]), vec![Effect::PublishStart, r.launch("n0")]);
    assert_eq!(
        r.state.nodes[n0].cache().unwrap().status,
        CacheStatus::Skipped
    );
    assert!(
        r.round(&[r.done("n0", TaskStatus::Succeeded)])
            .contains(&Effect::CachePut { node: n0 })
    );
}

#[test]
fn array_items_of_a_cacheable_task_are_looked_up_and_filed_one_by_one() {
    use contrail_engine::{CacheOutcome, CatalogRef};
    let mut c = closure(vec![array("n0", 2, None)], vec![]);
    c.tasks[0].template.as_mut().unwrap().metadata = Some(core::TaskMetadata {
        discoverable: true,
        discovery_version: "1".into(),
        ..Default::default()
    });
    let (mut r, n0, fx) = started_array(&c, 3);
    assert_eq!(
        fx,
        vec![
            Effect::CacheLookupItem { node: n0, item: 0 },
            Effect::CacheLookupItem { node: n0, item: 1 }
        ]
    );
    let hit = Observation::CacheItem {
        node: n0,
        item: 0,
        outcome: CacheOutcome::Hit(CatalogRef::default()),
    };
    let miss = Observation::CacheItem {
        node: n0,
        item: 1,
        outcome: CacheOutcome::Miss(CatalogRef::default()),
    };
    let fx = r.round(&[hit, miss]);
    assert_eq!(
        fx,
        vec![
            item_launch(&r, "n0", 1),
            Effect::CacheLookupItem { node: n0, item: 2 }
        ]
    );
    assert_eq!(r.state.nodes[n0].array().unwrap().items, "sqc");
    let fx = r.round(&[item(&r, "n0", 1, TaskStatus::Succeeded)]);
    assert!(
        fx.contains(&Effect::CachePutItem {
            node: n0,
            item: 1,
            attempt: 0
        }),
        "{fx:?}"
    );
    let fx = r.round(&[
        Observation::CachePutItem { node: n0, item: 1 },
        Observation::CacheItem {
            node: n0,
            item: 2,
            outcome: CacheOutcome::Hit(CatalogRef::default()),
        },
    ]);
    assert_eq!(fx, vec![Effect::PublishNode { node: n0 }]);
    assert_eq!(r.state.nodes[n0].array().unwrap().items, "sss");
}

#[test]
fn a_failed_serialized_run_gives_its_reservation_back() {
    use contrail_engine::{CacheOutcome, CacheStatus, CatalogRef};
    let mut r = Run::new(&cached(true));
    let n0 = r.i("n0");
    r.round(&[]);
    r.round(&[cache(&r, CacheOutcome::Miss(CatalogRef::default()))]);
    let f = TaskStatus::Failed(Failure::user("USER:ValueError", "no", false));
    let fx = r.round(&[r.done("n0", f)]);
    assert!(fx.contains(&Effect::CacheRelease { node: n0 }), "{fx:?}");
    // The workflow ends failed in the same round; the release was asked for before.
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    let mut r = Run::new(&cached(true));
    r.round(&[]);
    r.round(&[cache(&r, CacheOutcome::Miss(CatalogRef::default()))]);
    r.state.nodes[n0].phase = NodePhase::Failed;
    r.state.phase = WorkflowPhase::Running;
    r.round(&[Observation::CacheReleased { node: n0 }]);
    assert_eq!(
        r.state.nodes[n0].cache().unwrap().status,
        CacheStatus::Released
    );
}

#[test]
fn a_subworkflows_failure_node_runs_before_the_subworkflow_fails() {
    let mut sub = template("sub", vec![task("n0")], false);
    sub.failure_node = Some(task("fn0"));
    let sw = core::Node {
        id: "n0".into(),
        target: Some(Target::WorkflowNode(core::WorkflowNode {
            reference: Some(core::workflow_node::Reference::SubWorkflowRef(wf_id("sub"))),
        })),
        ..Default::default()
    };
    let mut r = Run::new(&closure(vec![sw], vec![sub]));
    r.round(&[]);
    r.round(&[r.inputs("n0", &[])]);
    let f = TaskStatus::Failed(Failure::user("USER:ValueError", "inner", false));
    assert_eq!(r.round(&[r.done("n0-0-n0", f)]), vec![r.launch("n0-0-fn0")]);
    assert_eq!(r.phase("n0"), NodePhase::Running);
    assert_eq!(r.plan.nodes[r.i("n0-0-fn0")].parent, Some(r.i("n0")));
    r.round(&[r.done("n0-0-fn0", TaskStatus::Succeeded)]);
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.state.error.unwrap().message, "inner");
}

#[test]
fn an_array_over_a_launch_plan_runs_a_child_per_item_and_aborts_them_with_the_parent() {
    use core::array_node::ParallelismOption;
    let arr = core::Node {
        id: "n0".into(),
        target: Some(Target::ArrayNode(Box::new(core::ArrayNode {
            node: Some(Box::new(lp_node("sub"))),
            parallelism_option: Some(ParallelismOption::Parallelism(2)),
            ..Default::default()
        }))),
        ..Default::default()
    };
    let (mut r, n0, fx) = started_array(&closure(vec![arr], vec![]), 3);
    assert_eq!(
        fx,
        vec![
            Effect::LaunchChildItem { node: n0, item: 0 },
            Effect::LaunchChildItem { node: n0, item: 1 }
        ]
    );
    let w = contrail_engine::watches(&r.plan, &r.state);
    assert!(
        w.contains(&contrail_engine::Watch::ChildItem { node: n0, item: 1 }),
        "{w:?}"
    );
    let child = |item, status| Observation::ChildItem {
        node: n0,
        item,
        status,
    };
    let fx = r.round(&[
        child(0, ChildStatus::Succeeded),
        child(1, ChildStatus::Running),
    ]);
    assert_eq!(fx, vec![Effect::LaunchChildItem { node: n0, item: 2 }]);
    let fx = r.round(&[Observation::AbortRequested {
        cause: "stop".into(),
    }]);
    assert_eq!(
        fx,
        vec![
            Effect::AbortChildItem { node: n0, item: 1 },
            Effect::AbortChildItem { node: n0, item: 2 }
        ]
    );
}
