//! What the in-process API tests share: a real API over a SQLite store in a temporary
//! directory, and the registration of a small workflow.
#![allow(dead_code)]

use contrail_api::{Api, ApiConfig};
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_idl::service::admin_service_server::AdminService;
use contrail_store::{EntityKey, ScheduleStore};
use std::sync::Arc;
use tonic::{Code, Request};

pub const NANOS: i64 = 1_000_000_000;

pub struct World {
    pub api: Api,
    pub store: Arc<contrail_store_sqlite::SqliteStore>,
    pub _dir: tempfile::TempDir,
}

pub fn id(kind: c::ResourceType, name: &str) -> c::Identifier {
    c::Identifier {
        resource_type: kind as i32,
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: name.into(),
        version: "v1".into(),
        org: String::new(),
    }
}

pub fn entity(name: &str) -> EntityKey {
    EntityKey {
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: name.into(),
        version: "v1".into(),
    }
}

pub fn simple(t: c::SimpleType) -> c::LiteralType {
    c::LiteralType {
        r#type: Some(c::literal_type::Type::Simple(t as i32)),
        ..Default::default()
    }
}

pub fn inputs(vars: &[(&str, c::SimpleType)]) -> c::TypedInterface {
    c::TypedInterface {
        inputs: Some(c::VariableMap {
            variables: vars
                .iter()
                .map(|(name, t)| {
                    (
                        name.to_string(),
                        c::Variable {
                            r#type: Some(simple(*t)),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }),
        outputs: Some(c::VariableMap::default()),
    }
}

/// A container task running `true`, taking `vars`, asking for `resources`.
pub fn true_task(
    name: &str,
    vars: &[(&str, c::SimpleType)],
    resources: Option<c::Resources>,
) -> c::TaskTemplate {
    c::TaskTemplate {
        id: Some(id(c::ResourceType::Task, name)),
        r#type: "raw-container".into(),
        interface: Some(inputs(vars)),
        metadata: Some(c::TaskMetadata::default()),
        target: Some(c::task_template::Target::Container(c::Container {
            image: "none".into(),
            command: vec!["true".into()],
            resources,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub async fn register_task(
    api: &Api,
    task: c::TaskTemplate,
    description: Option<a::DescriptionEntity>,
) {
    api.create_task(Request::new(a::TaskCreateRequest {
        id: task.id.clone(),
        spec: Some(a::TaskSpec {
            template: Some(task),
            description,
        }),
    }))
    .await
    .unwrap();
}

/// A workflow of one `true` task taking the workflow's inputs.
pub async fn register_workflow(api: &Api, name: &str, vars: &[(&str, c::SimpleType)]) {
    register_task(api, true_task(name, vars, None), None).await;
    let node = c::Node {
        id: "n0".into(),
        inputs: vars
            .iter()
            .map(|(var, _)| c::Binding {
                var: var.to_string(),
                binding: Some(c::BindingData {
                    value: Some(c::binding_data::Value::Promise(c::OutputReference {
                        node_id: "start-node".into(),
                        var: var.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }),
            })
            .collect(),
        target: Some(c::node::Target::TaskNode(c::TaskNode {
            reference: Some(c::task_node::Reference::ReferenceId(id(
                c::ResourceType::Task,
                name,
            ))),
            ..Default::default()
        })),
        ..Default::default()
    };
    api.create_workflow(Request::new(a::WorkflowCreateRequest {
        id: Some(id(c::ResourceType::Workflow, name)),
        spec: Some(a::WorkflowSpec {
            template: Some(c::WorkflowTemplate {
                id: Some(id(c::ResourceType::Workflow, name)),
                interface: Some(inputs(vars)),
                nodes: vec![node],
                ..Default::default()
            }),
            ..Default::default()
        }),
    }))
    .await
    .unwrap();
}

pub fn world() -> World {
    world_with(ApiConfig::default())
}

pub fn world_with(cfg: ApiConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        contrail_store_sqlite::SqliteStore::open(&dir.path().join("contrail.db")).unwrap(),
    );
    std::fs::create_dir_all(dir.path().join("blobs/contrail")).unwrap();
    let blob = contrail_blob::BlobStore::new(dir.path().join("blobs"), "contrail", vec![3; 32]);
    let api = Api::new(store.clone(), blob, cfg);
    api.seed().unwrap();
    World {
        api,
        store,
        _dir: dir,
    }
}

impl World {
    /// The activation time of `name`'s schedule, in whole seconds.
    pub fn activated(&self, name: &str) -> i64 {
        let rec = self
            .store
            .active_schedules()
            .unwrap()
            .into_iter()
            .find(|r| r.key.name == name)
            .expect("the schedule is active");
        rec.activated_at.div_euclid(NANOS)
    }

    pub async fn execution(&self, name: &str) -> Option<a::Execution> {
        match self
            .api
            .get_execution(Request::new(a::WorkflowExecutionGetRequest {
                id: Some(c::WorkflowExecutionIdentifier {
                    project: "flytesnacks".into(),
                    domain: "development".into(),
                    name: name.into(),
                    org: String::new(),
                }),
            }))
            .await
        {
            Ok(r) => Some(r.into_inner()),
            Err(e) if e.code() == Code::NotFound => None,
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn executions(&self) -> Vec<String> {
        let list = self
            .api
            .list_executions(Request::new(a::ResourceListRequest {
                id: Some(a::NamedEntityIdentifier {
                    project: "flytesnacks".into(),
                    domain: "development".into(),
                    ..Default::default()
                }),
                limit: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let mut names: Vec<String> = list
            .executions
            .into_iter()
            .map(|e| e.id.unwrap().name)
            .collect();
        names.sort();
        names
    }
}
