//! The in-process controller harness: the real controller and engine over the testkit's
//! in-memory store, objects and executor, on a manual clock. A test builds a workflow,
//! creates an execution, and alternates rounds with what it lets the world do.
#![allow(dead_code)]

use contrail_blob::{BlobStore, layout};
use contrail_controller::{ChildRequest, Config, Controller, LaunchError, Launcher, ManualClock};
use contrail_engine::TaskStatus;
use contrail_idl::{admin, core};
use contrail_store::{ExecKey, ExecutionRecord, RoundStore};
use contrail_testkit::{FakeExecutor, MemObjects, MemStore};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const S: i64 = 1_000_000_000;
pub const START: i64 = 1_700_000_000 * S;

pub struct Harness {
    pub store: Arc<MemStore>,
    pub objects: Arc<MemObjects>,
    pub blob: BlobStore,
    pub executor: Arc<FakeExecutor>,
    pub clock: Arc<ManualClock>,
    pub cfg: Config,
    pub controller: Arc<Controller>,
    /// Set by [`Harness::launch_plans`]; kept across restarts.
    pub launcher: Option<Arc<ChildLauncher>>,
}

impl Harness {
    pub fn new(cfg: Config) -> Harness {
        let store = Arc::new(MemStore::new());
        let objects = Arc::new(MemObjects::default());
        let blob = BlobStore::remote("s3", "sim", objects.clone(), "/nonexistent");
        let executor = Arc::new(FakeExecutor::new(blob.clone()));
        let clock = Arc::new(ManualClock::new(START));
        let controller = Controller::with_clock(
            store.clone(),
            blob.clone(),
            executor.clone(),
            cfg.clone(),
            clock.clone(),
        );
        Harness {
            store,
            objects,
            blob,
            executor,
            clock,
            cfg,
            controller,
            launcher: None,
        }
    }

    /// A new controller process over the same store, objects and executor: everything it
    /// remembered in memory is gone.
    pub fn restart(&mut self) {
        self.controller = Controller::with_clock(
            self.store.clone(),
            self.blob.clone(),
            self.executor.clone(),
            self.cfg.clone(),
            self.clock.clone(),
        );
        if let Some(l) = &self.launcher {
            self.controller.set_launcher(l.clone());
        }
    }

    /// Creates an execution of `closure` with `inputs`, as the API stores one.
    pub fn create(
        &self,
        name: &str,
        closure: &core::CompiledWorkflowClosure,
        inputs: &core::LiteralMap,
        spec: admin::ExecutionSpec,
    ) -> ExecKey {
        let key = ExecKey {
            project: "p".into(),
            domain: "d".into(),
            name: name.into(),
        };
        assert!(create_record(
            &self.store,
            &self.blob,
            &key,
            closure,
            inputs,
            spec
        ));
        key
    }

    /// Lets launch-plan nodes start child executions: `lp` runs `closure`.
    pub fn launch_plans(
        &mut self,
        plans: Vec<(&str, core::CompiledWorkflowClosure)>,
    ) -> Arc<ChildLauncher> {
        let launcher = Arc::new(ChildLauncher {
            store: self.store.clone(),
            blob: self.blob.clone(),
            plans: plans.into_iter().map(|(n, c)| (n.to_string(), c)).collect(),
            requests: Mutex::default(),
        });
        self.controller.set_launcher(launcher.clone());
        self.launcher = Some(launcher.clone());
        launcher
    }

    /// The outputs the task of an attempt computes. An array item that shares its node's
    /// inputs file reads it and takes its own element, as a real item does.
    pub fn outputs_for(&self, spec: &contrail_executor::AttemptSpec) -> core::LiteralMap {
        let item = contrail_testkit::item_of(spec).map(|i| i as usize);
        let Some(item) = item.filter(|_| spec.inputs.literals.is_empty()) else {
            return outputs_of(spec);
        };
        let key = self.blob.key_of(&spec.paths.inputs).unwrap().to_string();
        let all = core::LiteralMap::decode(self.blob.get(&key).unwrap().as_slice()).unwrap();
        let mut mine = core::LiteralMap::default();
        for (name, list) in all.literals {
            if let Some(core::literal::Value::Collection(c)) = list.value {
                mine.literals.insert(name, c.literals[item].clone());
            }
        }
        run_task(&spec.task.id.as_ref().unwrap().name, &mine)
    }

    pub fn round(&self, key: &ExecKey) {
        self.controller.reconcile(key);
    }

    pub fn phase(&self, key: &ExecKey) -> core::workflow_execution::Phase {
        let rec = self.store.get_execution(key).unwrap().unwrap();
        core::workflow_execution::Phase::try_from(rec.phase).unwrap()
    }

    pub fn node_phase(&self, key: &ExecKey, node: &str) -> Option<core::node_execution::Phase> {
        self.store
            .get_node_execution(key, node)
            .unwrap()
            .map(|n| core::node_execution::Phase::try_from(n.phase).unwrap())
    }

    /// The execution's outputs, once published.
    pub fn outputs(&self, key: &ExecKey) -> Option<core::LiteralMap> {
        let wdir = layout::workflow_dir(&key.project, &key.domain, &key.name);
        let bytes = self
            .blob
            .get(&layout::attempt_outputs(&wdir, "end-node", 0))
            .ok()?;
        core::LiteralMap::decode(bytes.as_slice()).ok()
    }

    /// The error the execution failed with.
    pub fn error(&self, key: &ExecKey) -> Option<core::ExecutionError> {
        let rec = self.store.get_execution(key).unwrap().unwrap();
        let exec = admin::Execution::decode(rec.record.as_slice()).unwrap();
        match exec.closure?.output_result? {
            admin::execution_closure::OutputResult::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Stores a new execution record (and its inputs) as the API does; false if it exists.
pub fn create_record(
    store: &MemStore,
    blob: &BlobStore,
    key: &ExecKey,
    closure: &core::CompiledWorkflowClosure,
    inputs: &core::LiteralMap,
    spec: admin::ExecutionSpec,
) -> bool {
    let inputs_key = layout::execution_inputs_named(&key.project, &key.domain, &key.name, "0");
    blob.put(&inputs_key, &inputs.encode_to_vec()).unwrap();
    let record = admin::Execution {
        id: Some(core::WorkflowExecutionIdentifier {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: key.name.clone(),
            org: String::new(),
        }),
        // As the API settles them: the execution's own notifications are those in force.
        closure: Some(admin::ExecutionClosure {
            notifications: match &spec.notification_overrides {
                Some(admin::execution_spec::NotificationOverrides::Notifications(list)) => {
                    list.notifications.clone()
                }
                _ => Vec::new(),
            },
            ..Default::default()
        }),
        spec: Some(spec),
    };
    store.create_execution(&ExecutionRecord {
        key: key.clone(),
        phase: core::workflow_execution::Phase::Queued as i32,
        launch_plan: "lp".into(),
        workflow: "wf".into(),
        record: record.encode_to_vec(),
        workflow_closure: closure.encode_to_vec(),
        state: Vec::new(),
        abort_cause: None,
        inputs_uri: blob.uri(&inputs_key),
        revision: 0,
        created_at: START,
        updated_at: START,
    })
}

/// The launcher double: creates child executions of the launch plans it was given, by
/// name, as the API would (an existing name counts as created); an unknown plan is invalid.
pub struct ChildLauncher {
    store: Arc<MemStore>,
    blob: BlobStore,
    plans: BTreeMap<String, core::CompiledWorkflowClosure>,
    /// Every request, repeats included.
    pub requests: Mutex<Vec<ChildRequest>>,
}

impl Launcher for ChildLauncher {
    fn launch_child(&self, req: ChildRequest) -> Result<(), LaunchError> {
        self.requests.lock().unwrap().push(req.clone());
        let lp = req
            .spec
            .launch_plan
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let Some(closure) = self.plans.get(&lp) else {
            return Err(LaunchError::Invalid(format!("no launch plan {lp}")));
        };
        create_record(
            &self.store,
            &self.blob,
            &req.child,
            closure,
            &req.inputs,
            req.spec,
        );
        Ok(())
    }
}

pub fn int(v: i64) -> core::Literal {
    contrail_engine::resolve::primitive_literal(core::primitive::Value::Integer(v))
}

pub fn as_int(l: &core::Literal) -> Option<i64> {
    use core::{literal, primitive, scalar};
    let Some(literal::Value::Scalar(s)) = &l.value else {
        return None;
    };
    match &s.value {
        Some(scalar::Value::Primitive(core::Primitive {
            value: Some(primitive::Value::Integer(v)),
        })) => Some(*v),
        _ => None,
    }
}

pub fn task_id(name: &str) -> core::Identifier {
    core::Identifier {
        resource_type: core::ResourceType::Task as i32,
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "v".into(),
        org: String::new(),
    }
}

pub fn promise(node: &str, var: &str) -> core::BindingData {
    core::BindingData {
        value: Some(core::binding_data::Value::Promise(core::OutputReference {
            node_id: node.into(),
            var: var.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A branch condition: the node input `var` is greater than `value`.
pub fn greater_than(var: &str, value: i64) -> core::BooleanExpression {
    use core::{comparison_expression::Operator, operand::Val};
    core::BooleanExpression {
        expr: Some(core::boolean_expression::Expr::Comparison(
            core::ComparisonExpression {
                operator: Operator::Gt as i32,
                left_value: Some(core::Operand {
                    val: Some(Val::Var(var.into())),
                }),
                right_value: Some(core::Operand {
                    val: Some(Val::Scalar(core::Scalar {
                        value: Some(core::scalar::Value::Primitive(core::Primitive {
                            value: Some(core::primitive::Value::Integer(value)),
                        })),
                    })),
                }),
            },
        )),
    }
}

pub fn binding(var: &str, data: core::BindingData) -> core::Binding {
    core::Binding {
        var: var.into(),
        binding: Some(data),
    }
}

/// One task node of the integer tasks the fake executor runs (see [`run_task`]).
pub fn task_node(id: &str, ups: &[String], retries: u32, cache: bool) -> core::Node {
    use core::{node::Target, task_node::Reference};
    let inputs = if ups.is_empty() {
        vec![binding("x", promise("start-node", "x"))]
    } else {
        ups.iter()
            .map(|u| binding(&format!("in_{u}"), promise(u, "o")))
            .collect()
    };
    core::Node {
        id: id.into(),
        upstream_node_ids: ups.to_vec(),
        inputs,
        metadata: Some(core::NodeMetadata {
            retries: Some(core::RetryStrategy { retries }),
            ..Default::default()
        }),
        target: Some(Target::TaskNode(core::TaskNode {
            reference: Some(Reference::ReferenceId(task_id(if cache {
                "cached"
            } else {
                "t"
            }))),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn int_type() -> core::LiteralType {
    core::LiteralType {
        r#type: Some(core::literal_type::Type::Simple(
            core::SimpleType::Integer as i32,
        )),
        ..Default::default()
    }
}

/// The task templates the integer nodes reference: `t`, and `cached` (discoverable).
pub fn tasks() -> Vec<core::CompiledTask> {
    ["t", "cached"]
        .into_iter()
        .map(|name| core::CompiledTask {
            template: Some(core::TaskTemplate {
                id: Some(task_id(name)),
                r#type: "python-task".into(),
                metadata: Some(core::TaskMetadata {
                    discoverable: name == "cached",
                    discovery_version: if name == "cached" {
                        "1".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
                // `x` is what a dynamic workflow's nodes bind; other inputs are untyped
                // (the engine does not type-check, only the compiler of a dynamic does).
                interface: Some(core::TypedInterface {
                    inputs: Some(core::VariableMap {
                        variables: [(
                            "x".to_string(),
                            core::Variable {
                                r#type: Some(int_type()),
                                ..Default::default()
                            },
                        )]
                        .into(),
                    }),
                    outputs: Some(core::VariableMap {
                        variables: [(
                            "o".to_string(),
                            core::Variable {
                                r#type: Some(int_type()),
                                description: String::new(),
                                ..Default::default()
                            },
                        )]
                        .into(),
                    }),
                }),
                ..Default::default()
            }),
        })
        .collect()
}

/// A workflow of `nodes` (plus start and end) whose outputs are `o_<node>` of every node.
pub fn workflow(
    nodes: Vec<core::Node>,
    fail_after_complete: bool,
) -> core::CompiledWorkflowClosure {
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let mut all = vec![core::Node {
        id: "start-node".into(),
        ..Default::default()
    }];
    all.extend(nodes);
    all.push(core::Node {
        id: "end-node".into(),
        upstream_node_ids: ids.clone(),
        ..Default::default()
    });
    core::CompiledWorkflowClosure {
        primary: Some(core::CompiledWorkflow {
            template: Some(core::WorkflowTemplate {
                nodes: all,
                outputs: ids
                    .iter()
                    .map(|id| binding(&format!("o_{id}"), promise(id, "o")))
                    .collect(),
                metadata: Some(core::WorkflowMetadata {
                    on_failure: fail_after_complete as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            connections: None,
        }),
        tasks: tasks(),
        ..Default::default()
    }
}

/// What an integer task computes: the sum of its integer inputs plus 1 (task `t`) or 2
/// (task `cached`). A pure function of the task and its inputs, as caching assumes.
pub fn run_task(task: &str, inputs: &core::LiteralMap) -> core::LiteralMap {
    let sum: i64 = inputs.literals.values().filter_map(as_int).sum();
    let bump = if task == "cached" { 2 } else { 1 };
    core::LiteralMap {
        literals: [("o".to_string(), int(sum + bump))].into(),
    }
}

/// The outputs the task of an attempt computes from the attempt's inputs.
pub fn outputs_of(spec: &contrail_executor::AttemptSpec) -> core::LiteralMap {
    let task = spec.task.id.as_ref().map(|i| i.name.as_str()).unwrap_or("");
    run_task(task, &spec.inputs)
}

/// Retry backoff of 1 s, so tests advance the clock by whole seconds.
pub fn cfg() -> Config {
    let mut c = Config::default();
    c.engine.backoff_base = S;
    c
}

pub fn inputs(x: i64) -> core::LiteralMap {
    core::LiteralMap {
        literals: [("x".to_string(), int(x))].into(),
    }
}

/// Runs every live attempt to success with the outputs its task computes.
pub fn succeed_all(h: &Harness) {
    for (id, run) in h.executor.runs() {
        if run.alive() {
            h.executor.start(&id);
            let out = h.outputs_for(&run.spec);
            h.executor.finish(&id, TaskStatus::Succeeded, Some(&out));
        }
    }
}

pub fn live_ids(h: &Harness) -> Vec<String> {
    h.executor.alive()
}

pub fn run_to_end(h: &Harness, k: &ExecKey) {
    for _ in 0..50 {
        h.round(k);
        if contrail_store::is_terminal_phase(h.phase(k) as i32) {
            return;
        }
        succeed_all(h);
        h.clock.advance(S);
    }
    panic!("execution did not finish: {:?}", h.phase(k));
}

/// A dynamic task's `futures.pb`: one task node `c0` (task `t`, retried `retries` times)
/// adding one to the dynamic node's input `x`, whose output is the workflow's `o`.
pub fn futures(retries: u32) -> core::DynamicJobSpec {
    core::DynamicJobSpec {
        nodes: vec![task_node("c0", &[], retries, false)],
        min_successes: 1,
        outputs: vec![binding("o", promise("c0", "o"))],
        tasks: tasks()
            .into_iter()
            .filter_map(|t| t.template)
            .filter(|t| t.id.as_ref().is_some_and(|i| i.name == "t"))
            .collect(),
        subworkflows: vec![],
    }
}
