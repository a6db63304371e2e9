//! The in-process controller harness: the real controller and engine over the testkit's
//! in-memory store, objects and executor, on a manual clock. A test builds a workflow,
//! creates an execution, and alternates rounds with what it lets the world do.
#![allow(dead_code)]

use contrail_blob::{BlobStore, layout};
use contrail_controller::{Config, Controller, ManualClock};
use contrail_idl::{admin, core};
use contrail_store::{ExecKey, ExecutionRecord, RoundStore};
use contrail_testkit::{FakeExecutor, MemObjects, MemStore};
use prost::Message;
use std::sync::Arc;

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
        let inputs_key = layout::execution_inputs_named("p", "d", name, "0");
        self.blob.put(&inputs_key, &inputs.encode_to_vec()).unwrap();
        let record = admin::Execution {
            id: Some(core::WorkflowExecutionIdentifier {
                project: "p".into(),
                domain: "d".into(),
                name: name.into(),
                org: String::new(),
            }),
            spec: Some(spec),
            closure: Some(admin::ExecutionClosure::default()),
        };
        assert!(self.store.create_execution(&ExecutionRecord {
            key: key.clone(),
            phase: core::workflow_execution::Phase::Queued as i32,
            launch_plan: "lp".into(),
            workflow: "wf".into(),
            record: record.encode_to_vec(),
            workflow_closure: closure.encode_to_vec(),
            state: Vec::new(),
            abort_cause: None,
            inputs_uri: self.blob.uri(&inputs_key),
            revision: 0,
            created_at: START,
            updated_at: START,
        }));
        key
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
