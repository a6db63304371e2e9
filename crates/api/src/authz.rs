//! What each RPC needs: the action (view, edit, admin) and the projects its request
//! touches. One table for every service, so no handler can forget a check.
//!
//! The projects are found by reflection over the compiled schema: every string field
//! named `project` anywhere in the request (identifiers nest them), the `id` of a
//! `Project` and of a `ProjectGetRequest`, and the project of a `flyte://` URL. A caller
//! needs the action in *every* project found. A request that names none needs the action
//! in every project (`*`), except the few calls that are about no project at all.

use contrail_auth::{Action, Principal};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

/// gRPC methods any authenticated caller may make: they concern no project.
/// (`ListProjects` answers with the caller's visible projects only.)
const PROJECTLESS: &[&str] = &["GetVersion", "GetDomains", "ListProjects"];

/// The action a method of one of the served services needs.
pub fn action(method: &str) -> Action {
    match method {
        "GetOrCreateSignal" | "GetOrExtendReservation" => Action::Edit,
        "RegisterProject" | "UpdateProject" => Action::Admin,
        m if (m.starts_with("Update") || m.starts_with("Delete")) && m.ends_with("Attributes") => {
            Action::Admin
        }
        m if m.starts_with("Get") || m.starts_with("List") => Action::View,
        _ => Action::Edit,
    }
}

/// Why a call is refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The request cannot be decoded (INVALID_ARGUMENT).
    Malformed(String),
    /// Authenticated, but not allowed (PERMISSION_DENIED).
    Denied(String),
}

/// Decides one gRPC call: `path` is `/package.Service/Method`, `body` the framed request.
pub fn check(principal: &Principal, path: &str, body: &[u8]) -> Result<(), Refusal> {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Err(Refusal::Malformed(format!("{path}: not a gRPC method")));
    };
    let Some(desc) = crate::schema()
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
    else {
        // Unknown methods are answered UNIMPLEMENTED by the router; nothing to reveal.
        return Ok(());
    };
    let message = crate::edge::unframe(body).map_err(Refusal::Malformed)?;
    let request = DynamicMessage::decode(desc.input(), message)
        .map_err(|e| Refusal::Malformed(format!("{method}: cannot decode the request: {e}")))?;
    let action = action(method);
    let mut projects = Vec::new();
    collect_projects(&request, &mut projects);
    projects.sort();
    projects.dedup();
    if projects.is_empty() {
        if PROJECTLESS.contains(&method) || principal.grants.allows_everywhere(action) {
            return Ok(());
        }
        return Err(Refusal::Denied(format!(
            "{} may not {method} across all projects (the request names no project)",
            principal.subject
        )));
    }
    for project in &projects {
        if !principal.grants.allows(action, project) {
            let why = if principal.grants.sees(project) {
                format!("{action:?} access").to_lowercase()
            } else {
                "access".to_string()
            };
            return Err(Refusal::Denied(format!(
                "{} has no {why} to project {project:?} ({method})",
                principal.subject
            )));
        }
    }
    Ok(())
}

fn collect_projects(m: &DynamicMessage, out: &mut Vec<String>) {
    let full_name = m.descriptor().full_name().to_string();
    for (field, value) in m.fields() {
        let is_project_id = field.name() == "id"
            && matches!(
                full_name.as_str(),
                "flyteidl.admin.Project" | "flyteidl.admin.ProjectGetRequest"
            );
        match value {
            Value::String(s) if field.name() == "project" || is_project_id => out.push(s.clone()),
            Value::String(s) if field.name() == "flyte_url" => {
                if let Some(p) = s
                    .strip_prefix("flyte://v1/")
                    .and_then(|rest| rest.split('/').next())
                {
                    out.push(p.to_string());
                }
            }
            Value::Message(inner) => collect_projects(inner, out),
            Value::List(items) => {
                for item in items {
                    if let Value::Message(inner) = item {
                        collect_projects(inner, out);
                    }
                }
            }
            Value::Map(entries) => {
                for v in entries.values() {
                    if let Value::Message(inner) = v {
                        collect_projects(inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_auth::{Grants, Via};
    use contrail_idl::admin;
    use contrail_idl::core;
    use prost::Message;

    fn framed(m: &impl Message) -> Vec<u8> {
        crate::edge::frame(&m.encode_to_vec())
    }

    fn who(specs: &[&str]) -> Principal {
        Principal {
            subject: "ci".into(),
            via: Via::Client,
            grants: Grants::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
        }
    }

    fn exec_request(project: &str, lp_project: &str) -> admin::ExecutionCreateRequest {
        admin::ExecutionCreateRequest {
            project: project.into(),
            domain: "development".into(),
            name: "x".into(),
            spec: Some(admin::ExecutionSpec {
                launch_plan: Some(core::Identifier {
                    project: lp_project.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const CREATE: &str = "/flyteidl.service.AdminService/CreateExecution";

    #[test]
    fn every_project_a_request_names_needs_the_action() {
        let editor = who(&["editor:a", "viewer:b"]);
        assert_eq!(
            check(&editor, CREATE, &framed(&exec_request("a", "a"))),
            Ok(())
        );
        // Launching project b's launch plan into a needs edit rights in b too.
        let e = check(&editor, CREATE, &framed(&exec_request("a", "b"))).unwrap_err();
        assert!(
            matches!(&e, Refusal::Denied(m) if m.contains("\"b\"")),
            "{e:?}"
        );
        let viewer = who(&["viewer:a"]);
        assert!(check(&viewer, CREATE, &framed(&exec_request("a", "a"))).is_err());
        let get = admin::WorkflowExecutionGetRequest {
            id: Some(core::WorkflowExecutionIdentifier {
                project: "a".into(),
                ..Default::default()
            }),
        };
        let path = "/flyteidl.service.AdminService/GetExecution";
        assert_eq!(check(&viewer, path, &framed(&get)), Ok(()));
        let other = who(&["admin:c"]);
        let e = check(&other, path, &framed(&get)).unwrap_err();
        assert!(
            matches!(&e, Refusal::Denied(m) if m.contains("has no access to project \"a\"")),
            "{e:?}"
        );
        let e = check(&viewer, CREATE, &framed(&exec_request("a", "a"))).unwrap_err();
        assert!(
            matches!(&e, Refusal::Denied(m) if m.contains("no edit access")),
            "{e:?}"
        );
    }

    #[test]
    fn projects_and_attributes_need_admin_and_projectless_calls_need_every_project() {
        let project_admin = who(&["admin:a"]);
        let update = admin::Project {
            id: "a".into(),
            ..Default::default()
        };
        let path = "/flyteidl.service.AdminService/UpdateProject";
        assert_eq!(check(&project_admin, path, &framed(&update)), Ok(()));
        assert!(check(&who(&["editor"]), path, &framed(&update)).is_err());
        let register = admin::ProjectRegisterRequest {
            project: Some(admin::Project {
                id: "new".into(),
                ..Default::default()
            }),
        };
        let path = "/flyteidl.service.AdminService/RegisterProject";
        assert!(check(&project_admin, path, &framed(&register)).is_err());
        assert_eq!(check(&who(&["admin"]), path, &framed(&register)), Ok(()));
        let path = "/flyteidl.service.AdminService/ListProjects";
        assert_eq!(
            check(
                &who(&["viewer:a"]),
                path,
                &framed(&admin::ProjectListRequest::default())
            ),
            Ok(())
        );
        let path = "/flyteidl.service.DataProxyService/CreateDownloadLocation";
        let loc = contrail_idl::service::CreateDownloadLocationRequest::default();
        assert!(check(&who(&["viewer:a"]), path, &framed(&loc)).is_err());
        let path = "/flyteidl.service.DataProxyService/GetData";
        let data = contrail_idl::service::GetDataRequest {
            flyte_url: "flyte://v1/b/development/x/n0/0/o".into(),
        };
        assert!(check(&who(&["viewer:a"]), path, &framed(&data)).is_err());
        assert_eq!(check(&who(&["viewer:b"]), path, &framed(&data)), Ok(()));
    }

    #[test]
    fn undecodable_requests_are_malformed_not_allowed() {
        let admin = who(&["admin"]);
        for body in [
            &b""[..],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 0, 9, 1],
            &[0, 0, 0, 0, 2, 0xff, 0xff],
        ] {
            assert!(
                matches!(check(&admin, CREATE, body), Err(Refusal::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn every_method_of_the_served_services_has_an_action() {
        let mut seen = 0;
        for service in [
            "flyteidl.service.AdminService",
            "flyteidl.service.DataProxyService",
            "flyteidl.service.SignalService",
            "datacatalog.DataCatalog",
        ] {
            for m in crate::schema()
                .get_service_by_name(service)
                .unwrap()
                .methods()
            {
                seen += 1;
                let a = action(m.name());
                // Writes never pass as reads.
                let reads = m.name().starts_with("Get") || m.name().starts_with("List");
                if !reads {
                    assert!(a >= Action::Edit, "{}", m.name());
                }
            }
        }
        assert!(seen > 60, "{seen}");
        assert_eq!(action("ListExecutions"), Action::View);
        assert_eq!(action("UpdateProjectDomainAttributes"), Action::Admin);
        assert_eq!(action("SetSignal"), Action::Edit);
    }
}
