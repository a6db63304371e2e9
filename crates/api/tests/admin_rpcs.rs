//! The administration RPCs through the API in process: matchable attributes at every
//! scope and how they shape a new execution, projects (filters, sorting, archiving),
//! description entities and execution metrics; bad input is INVALID_ARGUMENT naming the
//! field and changes nothing.

mod common;

use common::*;
use contrail_api::ApiConfig;
use contrail_idl::admin::{self as a, matching_attributes::Target};
use contrail_idl::core as c;
use contrail_idl::service::admin_service_server::AdminService;
use tonic::{Code, Request, Status};

const P: &str = "flytesnacks";
const D: &str = "development";

fn parallelism(n: i32) -> Option<a::MatchingAttributes> {
    Some(a::MatchingAttributes {
        target: Some(Target::WorkflowExecutionConfig(
            a::WorkflowExecutionConfig {
                max_parallelism: n,
                ..Default::default()
            },
        )),
    })
}

fn invalid(e: Status, names: &str) {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains(names),
        "'{}' does not name {names}",
        e.message()
    );
}

async fn set_project_domain(w: &World, attrs: Option<a::MatchingAttributes>) -> Result<(), Status> {
    w.api
        .update_project_domain_attributes(Request::new(a::ProjectDomainAttributesUpdateRequest {
            attributes: Some(a::ProjectDomainAttributes {
                project: P.into(),
                domain: D.into(),
                matching_attributes: attrs,
                org: String::new(),
            }),
        }))
        .await
        .map(|_| ())
}

async fn launch(w: &World, lp: &str, spec: a::ExecutionSpec) -> Result<a::Execution, Status> {
    let created = w
        .api
        .create_execution(Request::new(a::ExecutionCreateRequest {
            project: P.into(),
            domain: D.into(),
            spec: Some(a::ExecutionSpec {
                launch_plan: Some(id(c::ResourceType::LaunchPlan, lp)),
                ..spec
            }),
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(w.execution(&created.id.unwrap().name).await.unwrap())
}

/// The spec of a new execution of `wf` that sets nothing itself.
async fn settled(w: &World) -> a::ExecutionSpec {
    launch(w, "wf", a::ExecutionSpec::default())
        .await
        .unwrap()
        .spec
        .unwrap()
}

fn delete_wf(resource: i32) -> a::WorkflowAttributesDeleteRequest {
    a::WorkflowAttributesDeleteRequest {
        project: P.into(),
        domain: D.into(),
        workflow: "wf".into(),
        resource_type: resource,
        org: String::new(),
    }
}

async fn launch_plan(w: &World, name: &str) {
    register_workflow(&w.api, name, &[]).await;
    w.api
        .create_launch_plan(Request::new(a::LaunchPlanCreateRequest {
            id: Some(id(c::ResourceType::LaunchPlan, name)),
            spec: Some(a::LaunchPlanSpec {
                workflow_id: Some(id(c::ResourceType::Workflow, name)),
                ..Default::default()
            }),
        }))
        .await
        .unwrap();
}

#[tokio::test]
async fn attributes_are_kept_per_scope_and_the_narrowest_applies_to_a_new_execution() {
    let w = world();
    launch_plan(&w, "wf").await;
    let resource = a::MatchableResource::WorkflowExecutionConfig as i32;

    // Project, then project and domain, then workflow: each narrower one wins.
    w.api
        .update_project_attributes(Request::new(a::ProjectAttributesUpdateRequest {
            attributes: Some(a::ProjectAttributes {
                project: P.into(),
                matching_attributes: parallelism(5),
                org: String::new(),
            }),
        }))
        .await
        .unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.max_parallelism, 5);
    set_project_domain(&w, parallelism(4)).await.unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.max_parallelism, 4);
    w.api
        .update_workflow_attributes(Request::new(a::WorkflowAttributesUpdateRequest {
            attributes: Some(a::WorkflowAttributes {
                project: P.into(),
                domain: D.into(),
                workflow: "wf".into(),
                matching_attributes: parallelism(3),
                org: String::new(),
            }),
        }))
        .await
        .unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.max_parallelism, 3);
    // The execution's own setting beats them all.
    let own = a::ExecutionSpec {
        max_parallelism: 9,
        ..Default::default()
    };
    assert_eq!(
        launch(&w, "wf", own)
            .await
            .unwrap()
            .spec
            .unwrap()
            .max_parallelism,
        9
    );

    // Reads of each scope, and the list of every scope.
    let got = w
        .api
        .get_workflow_attributes(Request::new(a::WorkflowAttributesGetRequest {
            project: P.into(),
            domain: D.into(),
            workflow: "wf".into(),
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.attributes.unwrap().matching_attributes, parallelism(3));
    let got = w
        .api
        .get_project_attributes(Request::new(a::ProjectAttributesGetRequest {
            project: P.into(),
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.attributes.unwrap().matching_attributes, parallelism(5));
    let listed = w
        .api
        .list_matchable_attributes(Request::new(a::ListMatchableAttributesRequest {
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let scopes: Vec<(String, String, String)> = listed
        .configurations
        .iter()
        .map(|c| (c.project.clone(), c.domain.clone(), c.workflow.clone()))
        .collect();
    assert_eq!(
        scopes,
        [
            (P.into(), String::new(), String::new()),
            (P.into(), D.into(), String::new()),
            (P.into(), D.into(), "wf".into())
        ]
    );

    // Deleting the workflow's falls back to the project and domain's.
    w.api
        .delete_workflow_attributes(Request::new(delete_wf(resource)))
        .await
        .unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.max_parallelism, 4);
    let gone = w
        .api
        .delete_workflow_attributes(Request::new(delete_wf(resource)))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    w.api
        .delete_project_domain_attributes(Request::new(a::ProjectDomainAttributesDeleteRequest {
            project: P.into(),
            domain: D.into(),
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap();
    let missing = w
        .api
        .get_project_domain_attributes(Request::new(a::ProjectDomainAttributesGetRequest {
            project: P.into(),
            domain: D.into(),
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    w.api
        .delete_project_attributes(Request::new(a::ProjectAttributesDeleteRequest {
            project: P.into(),
            resource_type: resource,
            org: String::new(),
        }))
        .await
        .unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.max_parallelism, 0, "the server's default");
}

#[tokio::test]
async fn the_cluster_label_routes_and_task_limits_refuse_greedy_tasks() {
    let w = world_with(ApiConfig {
        executors: vec!["local".into(), "slurm".into()],
        ..ApiConfig::default()
    });
    launch_plan(&w, "wf").await;
    set_project_domain(
        &w,
        Some(a::MatchingAttributes {
            target: Some(Target::ExecutionClusterLabel(a::ExecutionClusterLabel {
                value: "slurm".into(),
            })),
        }),
    )
    .await
    .unwrap();
    let spec = settled(&w).await;
    assert_eq!(spec.execution_cluster_label.unwrap().value, "slurm");

    // A limit of 1 CPU refuses a task that asks for 2.
    let cpu = c::Resources {
        requests: vec![c::resources::ResourceEntry {
            name: c::resources::ResourceName::Cpu as i32,
            value: "2".into(),
        }],
        limits: vec![],
    };
    register_task(&w.api, true_task("greedy", &[], Some(cpu)), None).await;
    set_project_domain(
        &w,
        Some(a::MatchingAttributes {
            target: Some(Target::TaskResourceAttributes(a::TaskResourceAttributes {
                defaults: None,
                limits: Some(a::TaskResourceSpec {
                    cpu: "1".into(),
                    ..Default::default()
                }),
            })),
        }),
    )
    .await
    .unwrap();
    let refused = w
        .api
        .create_execution(Request::new(a::ExecutionCreateRequest {
            project: P.into(),
            domain: D.into(),
            spec: Some(a::ExecutionSpec {
                launch_plan: Some(id(c::ResourceType::Task, "greedy")),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    invalid(refused, "requests cpu 2");
}

#[tokio::test]
async fn bad_attribute_requests_name_the_field_and_change_nothing() {
    let w = world();
    invalid(
        set_project_domain(&w, None).await.unwrap_err(),
        "matching_attributes",
    );
    let bad_quantity = Some(a::MatchingAttributes {
        target: Some(Target::TaskResourceAttributes(a::TaskResourceAttributes {
            defaults: Some(a::TaskResourceSpec {
                memory: "lots".into(),
                ..Default::default()
            }),
            limits: None,
        })),
    });
    invalid(
        set_project_domain(&w, bad_quantity).await.unwrap_err(),
        "defaults.memory",
    );
    let unknown = w
        .api
        .update_project_attributes(Request::new(a::ProjectAttributesUpdateRequest {
            attributes: Some(a::ProjectAttributes {
                project: "nowhere".into(),
                matching_attributes: parallelism(1),
                org: String::new(),
            }),
        }))
        .await
        .unwrap_err();
    invalid(unknown, "nowhere");
    let bad_type = w
        .api
        .get_project_attributes(Request::new(a::ProjectAttributesGetRequest {
            project: P.into(),
            resource_type: 42,
            org: String::new(),
        }))
        .await
        .unwrap_err();
    invalid(bad_type, "resource_type");
    let bad_list = w
        .api
        .list_matchable_attributes(Request::new(a::ListMatchableAttributesRequest {
            resource_type: -1,
            org: String::new(),
        }))
        .await
        .unwrap_err();
    invalid(bad_list, "resource_type");
    let nothing = w
        .api
        .list_matchable_attributes(Request::new(a::ListMatchableAttributesRequest {
            resource_type: a::MatchableResource::TaskResource as i32,
            org: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.configurations.is_empty());
}

fn project(id: &str, name: &str, state: a::project::ProjectState) -> a::Project {
    a::Project {
        id: id.into(),
        name: name.into(),
        description: format!("the {name} project"),
        labels: Some(a::Labels {
            values: [("team".to_string(), id.to_string())].into(),
        }),
        state: state as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn projects_are_filtered_sorted_updated_and_an_archived_one_accepts_nothing_new() {
    use a::project::ProjectState::{Active, Archived};
    let w = world();
    launch_plan(&w, "wf").await;
    for (id, name) in [("beta", "Beta"), ("alpha", "Alpha")] {
        w.api
            .register_project(Request::new(a::ProjectRegisterRequest {
                project: Some(project(id, name, Active)),
            }))
            .await
            .unwrap();
    }
    let list = |filters: &str, key: &str, descending: bool| {
        let api = w.api.clone();
        let (filters, key) = (filters.to_string(), key.to_string());
        async move {
            api.list_projects(Request::new(a::ProjectListRequest {
                limit: 10,
                filters,
                sort_by: (!key.is_empty()).then_some(a::Sort {
                    key,
                    direction: if descending {
                        a::sort::Direction::Descending as i32
                    } else {
                        a::sort::Direction::Ascending as i32
                    },
                }),
                ..Default::default()
            }))
            .await
            .map(|r| {
                r.into_inner()
                    .projects
                    .into_iter()
                    .map(|p| p.id)
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(list("", "", false).await.unwrap(), ["alpha", "beta", P]);
    assert_eq!(list("", "name", true).await.unwrap(), [P, "beta", "alpha"]);
    assert_eq!(
        list("contains(name,ta)", "", false).await.unwrap(),
        ["beta"]
    );

    // Archive one: it leaves the active list, and refuses new executions.
    w.api
        .update_project(Request::new(project(P, "flytesnacks", Archived)))
        .await
        .unwrap();
    assert_eq!(
        list("eq(state,0)", "", false).await.unwrap(),
        ["alpha", "beta"]
    );
    assert_eq!(list("eq(state,1)", "", false).await.unwrap(), [P]);
    let got = w
        .api
        .get_project(Request::new(a::ProjectGetRequest {
            id: P.into(),
            org: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.labels.unwrap().values["team"], P);
    invalid(
        launch(&w, "wf", a::ExecutionSpec::default())
            .await
            .unwrap_err(),
        "archived",
    );

    invalid(
        list("eq(version,1)", "", false).await.unwrap_err(),
        "filters",
    );
    invalid(list("", "colour", false).await.unwrap_err(), "sort_by.key");
    let bad_state = w
        .api
        .update_project(Request::new(a::Project {
            state: 7,
            ..project("alpha", "Alpha", Active)
        }))
        .await
        .unwrap_err();
    invalid(bad_state, "project.state");
}

#[tokio::test]
async fn descriptions_and_execution_metrics_are_served() {
    let w = world();
    launch_plan(&w, "wf").await;
    let description = a::DescriptionEntity {
        short_description: "adds things".into(),
        ..Default::default()
    };
    register_task(&w.api, true_task("described", &[], None), Some(description)).await;
    let got = w
        .api
        .get_description_entity(Request::new(a::ObjectGetRequest {
            id: Some(id(c::ResourceType::Task, "described")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.short_description, "adds things");
    assert_eq!(got.id.unwrap().name, "described");
    let listed = w
        .api
        .list_description_entities(Request::new(a::DescriptionEntityListRequest {
            resource_type: c::ResourceType::Task as i32,
            id: Some(a::NamedEntityIdentifier {
                project: P.into(),
                domain: D.into(),
                name: "described".into(),
                ..Default::default()
            }),
            limit: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.description_entities.len(), 1);
    let none = w
        .api
        .get_description_entity(Request::new(a::ObjectGetRequest {
            id: Some(id(c::ResourceType::Task, "wf")),
        }))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    let lp = w
        .api
        .get_description_entity(Request::new(a::ObjectGetRequest {
            id: Some(id(c::ResourceType::LaunchPlan, "wf")),
        }))
        .await
        .unwrap_err();
    invalid(lp, "resource_type");

    let ex = launch(&w, "wf", a::ExecutionSpec::default()).await.unwrap();
    let span = w
        .api
        .get_execution_metrics(Request::new(a::WorkflowExecutionGetMetricsRequest {
            id: ex.id.clone(),
            depth: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .span
        .unwrap();
    assert_eq!(span.id, ex.id.map(c::span::Id::WorkflowId));
    assert!(span.start_time.is_some());
    let bad = w
        .api
        .get_execution_metrics(Request::new(a::WorkflowExecutionGetMetricsRequest {
            id: None,
            depth: 0,
        }))
        .await
        .unwrap_err();
    invalid(bad, "id");
}
