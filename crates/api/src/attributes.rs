//! Matchable attributes: settings per project, project and domain, or workflow, for each
//! `MatchableResource`, and how they apply when an execution is created.
//!
//! Precedence, as flyteadmin resolves it: the execution spec, then the launch plan, then
//! the workflow's attributes, then the project and domain's, then the project's, then the
//! server's defaults (a setting left unset everywhere is the server's). Applied at creation:
//! - `TASK_RESOURCE`: defaults fill the requests a task leaves unset; a task limit above
//!   the configured limit is clamped down to it, and a request above it refuses the
//!   execution (INVALID_ARGUMENT naming the task and resource), as flyteadmin refuses
//!   requests over the platform limits;
//! - `WORKFLOW_EXECUTION_CONFIG`: max parallelism, raw output location, labels,
//!   annotations, interruptible, overwrite cache, environment variables, security context;
//! - `EXECUTION_CLUSTER_LABEL` (which executor runs it), `QUALITY_OF_SERVICE_SPECIFICATION`,
//!   `CLUSTER_ASSIGNMENT`: set on the spec when it has none.
//!
//! `CLUSTER_RESOURCE`, `EXECUTION_QUEUE` and `PLUGIN_OVERRIDE` are stored and served but
//! change nothing: Contrail has no cluster-resource templates, AWS Batch queues or
//! alternative plugins to pick.

use crate::error::{ApiError, ApiResult, invalid};
use crate::{Api, validate};
use contrail_idl::admin::{self as a, MatchableResource, matching_attributes::Target};
use contrail_idl::core as c;
use contrail_store::AttributeScope;
use prost::Message;

/// The resource type a set of attributes is for.
pub fn resource_of(target: &Target) -> MatchableResource {
    match target {
        Target::TaskResourceAttributes(_) => MatchableResource::TaskResource,
        Target::ClusterResourceAttributes(_) => MatchableResource::ClusterResource,
        Target::ExecutionQueueAttributes(_) => MatchableResource::ExecutionQueue,
        Target::ExecutionClusterLabel(_) => MatchableResource::ExecutionClusterLabel,
        Target::QualityOfService(_) => MatchableResource::QualityOfServiceSpecification,
        Target::PluginOverrides(_) => MatchableResource::PluginOverride,
        Target::WorkflowExecutionConfig(_) => MatchableResource::WorkflowExecutionConfig,
        Target::ClusterAssignment(_) => MatchableResource::ClusterAssignment,
    }
}

fn resource_type(field: &str, value: i32) -> ApiResult<i32> {
    MatchableResource::try_from(value)
        .map(|r| r as i32)
        .map_err(|_| invalid(format!("{field}: {value} is not a MatchableResource")))
}

/// The kinds of task resources attributes may set, with their scale (units per 1).
const RESOURCES: [(&str, c::resources::ResourceName, f64); 4] = [
    ("cpu", c::resources::ResourceName::Cpu, 1000.0),
    ("gpu", c::resources::ResourceName::Gpu, 1.0),
    ("memory", c::resources::ResourceName::Memory, 1.0),
    (
        "ephemeral_storage",
        c::resources::ResourceName::EphemeralStorage,
        1.0,
    ),
];

fn spec_value<'s>(spec: &'s a::TaskResourceSpec, name: &str) -> &'s str {
    match name {
        "cpu" => &spec.cpu,
        "gpu" => &spec.gpu,
        "memory" => &spec.memory,
        _ if !spec.ephemeral_storage.is_empty() => &spec.ephemeral_storage,
        _ => &spec.storage,
    }
}

/// Checks what a client sends: a target, quantities that parse, bounded sizes.
fn check(field: &str, attrs: Option<&a::MatchingAttributes>) -> ApiResult<Target> {
    let target = attrs.and_then(|m| m.target.clone()).ok_or_else(|| {
        invalid(format!(
            "{field}.matching_attributes: set one kind of attributes"
        ))
    })?;
    let size = attrs.map_or(0, |m| m.encoded_len());
    if size > 256 * 1024 {
        return Err(invalid(format!(
            "{field}.matching_attributes: {size} bytes; at most 262144"
        )));
    }
    if let Target::TaskResourceAttributes(t) = &target {
        for (part, spec) in [("defaults", &t.defaults), ("limits", &t.limits)] {
            let Some(spec) = spec else { continue };
            for (name, _, scale) in RESOURCES {
                let v = spec_value(spec, name);
                if !v.is_empty() && contrail_compiler::quantity(v, scale).is_none() {
                    return Err(invalid(format!(
                        "{field}.matching_attributes.task_resource_attributes.{part}.{name}: '{}' is not a quantity",
                        v.escape_debug()
                    )));
                }
            }
        }
    }
    Ok(target)
}

impl Api {
    fn scope_checked(
        &self,
        project: &str,
        domain: Option<&str>,
        workflow: Option<&str>,
    ) -> ApiResult<AttributeScope> {
        validate::text("project", project)?;
        match domain {
            Some(domain) => {
                validate::text("domain", domain)?;
                self.check_project_domain(project, domain)?;
            }
            None => {
                if self.store.get_project(project)?.is_none() {
                    return Err(invalid(format!("project: {project} is not registered")));
                }
            }
        }
        if let Some(workflow) = workflow {
            validate::text("workflow", workflow)?;
        }
        Ok(AttributeScope {
            project: project.into(),
            domain: domain.unwrap_or_default().into(),
            workflow: workflow.unwrap_or_default().into(),
        })
    }

    pub(crate) fn update_attributes(
        &self,
        field: &str,
        project: &str,
        domain: Option<&str>,
        workflow: Option<&str>,
        attrs: Option<&a::MatchingAttributes>,
    ) -> ApiResult<()> {
        let target = check(field, attrs)?;
        let scope = self.scope_checked(project, domain, workflow)?;
        let stored = a::MatchingAttributes {
            target: Some(target.clone()),
        };
        self.store
            .put_attributes(&scope, resource_of(&target) as i32, &stored.encode_to_vec())?;
        Ok(())
    }

    pub(crate) fn get_attributes(
        &self,
        project: &str,
        domain: Option<&str>,
        workflow: Option<&str>,
        resource: i32,
    ) -> ApiResult<a::MatchingAttributes> {
        let resource = resource_type("resource_type", resource)?;
        let scope = self.scope_checked(project, domain, workflow)?;
        let bytes = self
            .store
            .get_attributes(&scope, resource)?
            .ok_or_else(|| nothing_at(&scope, resource))?;
        Ok(a::MatchingAttributes::decode(bytes.as_slice())?)
    }

    pub(crate) fn delete_attributes(
        &self,
        project: &str,
        domain: Option<&str>,
        workflow: Option<&str>,
        resource: i32,
    ) -> ApiResult<()> {
        let resource = resource_type("resource_type", resource)?;
        let scope = self.scope_checked(project, domain, workflow)?;
        if !self.store.delete_attributes(&scope, resource)? {
            return Err(nothing_at(&scope, resource));
        }
        Ok(())
    }

    pub(crate) fn list_matchable(
        &self,
        resource: i32,
    ) -> ApiResult<a::ListMatchableAttributesResponse> {
        let resource = resource_type("resource_type", resource)?;
        let configurations = self
            .store
            .list_attributes(resource)?
            .into_iter()
            .map(|(scope, bytes)| {
                Ok(a::MatchableAttributesConfiguration {
                    attributes: Some(a::MatchingAttributes::decode(bytes.as_slice())?),
                    project: scope.project,
                    domain: scope.domain,
                    workflow: scope.workflow,
                    launch_plan: String::new(),
                    org: String::new(),
                })
            })
            .collect::<ApiResult<_>>()?;
        Ok(a::ListMatchableAttributesResponse { configurations })
    }

    /// Every attribute in force for `workflow` in project/domain, narrowest scope first:
    /// the workflow's, the project and domain's, the project's (one read per scope).
    fn in_force(&self, project: &str, domain: &str, workflow: &str) -> ApiResult<Vec<Target>> {
        let scopes = [
            (project, domain, workflow),
            (project, domain, ""),
            (project, "", ""),
        ];
        let mut found = Vec::new();
        for (p, d, w) in scopes {
            let scope = AttributeScope {
                project: p.into(),
                domain: d.into(),
                workflow: w.into(),
            };
            for (_, bytes) in self.store.attributes_at(&scope)? {
                found.extend(a::MatchingAttributes::decode(bytes.as_slice())?.target);
            }
        }
        Ok(found)
    }

    /// Applies the attributes in force to an execution being created (see the module).
    pub(crate) fn apply_attributes(
        &self,
        project: &str,
        domain: &str,
        workflow: &str,
        spec: &mut a::ExecutionSpec,
        launch_plan: Option<&a::LaunchPlanSpec>,
        closure: &mut c::CompiledWorkflowClosure,
    ) -> ApiResult<()> {
        let in_force = self.in_force(project, domain, workflow)?;
        let configs: Vec<a::WorkflowExecutionConfig> = in_force
            .iter()
            .filter_map(|t| match t {
                Target::WorkflowExecutionConfig(w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        fill_execution_config(spec, launch_plan, &configs);
        // The narrowest scope's attributes of a resource type.
        let first = |resource| {
            in_force
                .iter()
                .find(|t| resource_of(t) == resource)
                .cloned()
        };
        if spec
            .execution_cluster_label
            .as_ref()
            .is_none_or(|l| l.value.is_empty())
            && let Some(Target::ExecutionClusterLabel(l)) =
                first(MatchableResource::ExecutionClusterLabel)
        {
            spec.execution_cluster_label = Some(l);
        }
        if spec.quality_of_service.is_none()
            && let Some(Target::QualityOfService(q)) =
                first(MatchableResource::QualityOfServiceSpecification)
        {
            spec.quality_of_service = Some(q);
        }
        if spec.cluster_assignment.is_none()
            && let Some(Target::ClusterAssignment(ca)) = first(MatchableResource::ClusterAssignment)
        {
            spec.cluster_assignment = Some(ca);
        }
        if let Some(Target::TaskResourceAttributes(t)) = first(MatchableResource::TaskResource) {
            apply_task_resources(closure, &t)?;
        }
        Ok(())
    }
}

fn nothing_at(scope: &AttributeScope, resource: i32) -> ApiError {
    ApiError::NotFound(format!(
        "no {} attributes for {}",
        MatchableResource::try_from(resource).map_or("", |r| r.as_str_name()),
        scope_text(scope)
    ))
}

fn scope_text(s: &AttributeScope) -> String {
    match (s.domain.is_empty(), s.workflow.is_empty()) {
        (true, _) => format!("project {}", s.project),
        (false, true) => format!("project {} domain {}", s.project, s.domain),
        (false, false) => format!("workflow {} in {}/{}", s.workflow, s.project, s.domain),
    }
}

/// Fills what the execution spec leaves unset: from the launch plan, then from each level
/// of `WORKFLOW_EXECUTION_CONFIG` attributes in order (workflow, project and domain,
/// project). What stays unset is the server's default (0 parallelism: the controller's).
pub fn fill_execution_config(
    spec: &mut a::ExecutionSpec,
    launch_plan: Option<&a::LaunchPlanSpec>,
    levels: &[a::WorkflowExecutionConfig],
) {
    let from_lp = launch_plan.map(|lp| a::WorkflowExecutionConfig {
        max_parallelism: lp.max_parallelism,
        security_context: lp.security_context.clone(),
        raw_output_data_config: lp.raw_output_data_config.clone(),
        labels: lp.labels.clone(),
        annotations: lp.annotations.clone(),
        interruptible: lp.interruptible,
        overwrite_cache: lp.overwrite_cache,
        envs: lp.envs.clone(),
        ..Default::default()
    });
    for level in from_lp.iter().chain(levels) {
        if spec.max_parallelism == 0 {
            spec.max_parallelism = level.max_parallelism;
        }
        if spec.security_context.is_none() {
            spec.security_context = level.security_context.clone();
        }
        fill(
            &mut spec.raw_output_data_config,
            &level.raw_output_data_config,
            |r| r.output_location_prefix.is_empty(),
        );
        fill(&mut spec.labels, &level.labels, |l| l.values.is_empty());
        fill(&mut spec.annotations, &level.annotations, |l| {
            l.values.is_empty()
        });
        if spec.interruptible.is_none() {
            spec.interruptible = level.interruptible;
        }
        if !spec.overwrite_cache {
            spec.overwrite_cache = level.overwrite_cache;
        }
        fill(&mut spec.envs, &level.envs, |e| e.values.is_empty());
    }
}

/// Takes `level`'s setting when `mine` is unset or empty and `level`'s is not.
fn fill<T: Clone>(mine: &mut Option<T>, level: &Option<T>, empty: impl Fn(&T) -> bool) {
    if mine.as_ref().is_none_or(&empty)
        && let Some(theirs) = level.as_ref().filter(|t| !empty(t))
    {
        *mine = Some(theirs.clone());
    }
}

/// Task resource defaults and limits on every container task of the closure.
pub fn apply_task_resources(
    closure: &mut c::CompiledWorkflowClosure,
    attrs: &a::TaskResourceAttributes,
) -> ApiResult<()> {
    use contrail_compiler::quantity;
    for task in closure.tasks.iter_mut().filter_map(|t| t.template.as_mut()) {
        let task_name = task.id.as_ref().map(|i| i.name.clone()).unwrap_or_default();
        let Some(c::task_template::Target::Container(container)) = task.target.as_mut() else {
            continue;
        };
        let resources = container.resources.get_or_insert_with(Default::default);
        for (name, kind, scale) in RESOURCES {
            let entry = |list: &Vec<c::resources::ResourceEntry>| {
                list.iter().position(|e| e.name == kind as i32)
            };
            let default = attrs
                .defaults
                .as_ref()
                .map(|d| spec_value(d, name))
                .unwrap_or("");
            if !default.is_empty() && entry(&resources.requests).is_none() {
                resources.requests.push(c::resources::ResourceEntry {
                    name: kind as i32,
                    value: default.into(),
                });
            }
            let limit = attrs
                .limits
                .as_ref()
                .map(|l| spec_value(l, name))
                .unwrap_or("");
            let Some(max) = quantity(limit, scale).filter(|_| !limit.is_empty()) else {
                continue;
            };
            if let Some(i) = entry(&resources.requests) {
                let asked = &resources.requests[i].value;
                if quantity(asked, scale).is_some_and(|v| v > max) {
                    return Err(invalid(format!(
                        "task {task_name} requests {name} {asked}, above the limit {limit} set for this project"
                    )));
                }
            }
            if let Some(i) = entry(&resources.limits)
                && quantity(&resources.limits[i].value, scale).is_some_and(|v| v > max)
            {
                resources.limits[i].value = limit.into();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level set or unset: the first level that sets a value wins, in the order
    /// execution spec, launch plan, workflow, project and domain, project; none leaves the
    /// server's default.
    #[test]
    fn the_first_level_that_sets_a_value_wins_in_flytes_order() {
        for mask in 0u32..32 {
            let set = |level: u32| mask & (1 << level) != 0;
            let labels = |v: &str| {
                Some(a::Labels {
                    values: [("level".to_string(), v.to_string())].into(),
                })
            };
            let mut spec = a::ExecutionSpec::default();
            if set(0) {
                spec.max_parallelism = 1;
                spec.interruptible = Some(true);
                spec.labels = labels("spec");
            }
            let lp = set(1).then(|| a::LaunchPlanSpec {
                max_parallelism: 2,
                interruptible: Some(false),
                labels: labels("launch plan"),
                ..Default::default()
            });
            let level = |p: i32, interruptible: bool, name: &str| a::WorkflowExecutionConfig {
                max_parallelism: p,
                interruptible: Some(interruptible),
                labels: labels(name),
                ..Default::default()
            };
            let levels: Vec<a::WorkflowExecutionConfig> = [
                (2, level(3, true, "workflow")),
                (3, level(4, false, "project-domain")),
                (4, level(5, true, "project")),
            ]
            .into_iter()
            .map(|(bit, cfg)| {
                if set(bit) {
                    cfg
                } else {
                    a::WorkflowExecutionConfig::default()
                }
            })
            .collect();
            fill_execution_config(&mut spec, lp.as_ref(), &levels);
            let winner = (0..5).find(|l| set(*l));
            let (parallelism, interruptible, label) = match winner {
                Some(0) => (1, Some(true), "spec"),
                Some(1) => (2, Some(false), "launch plan"),
                Some(2) => (3, Some(true), "workflow"),
                Some(3) => (4, Some(false), "project-domain"),
                Some(4) => (5, Some(true), "project"),
                _ => (0, None, ""),
            };
            assert_eq!(spec.max_parallelism, parallelism, "mask {mask:05b}");
            assert_eq!(spec.interruptible, interruptible, "mask {mask:05b}");
            assert_eq!(
                spec.labels
                    .map(|l| l.values["level"].clone())
                    .unwrap_or_default(),
                label,
                "mask {mask:05b}"
            );
        }
    }

    fn container_task(
        requests: &[(c::resources::ResourceName, &str)],
        limits: &[(c::resources::ResourceName, &str)],
    ) -> c::CompiledWorkflowClosure {
        let entries = |list: &[(c::resources::ResourceName, &str)]| {
            list.iter()
                .map(|(n, v)| c::resources::ResourceEntry {
                    name: *n as i32,
                    value: v.to_string(),
                })
                .collect()
        };
        c::CompiledWorkflowClosure {
            tasks: vec![c::CompiledTask {
                template: Some(c::TaskTemplate {
                    id: Some(c::Identifier {
                        name: "t".into(),
                        ..Default::default()
                    }),
                    target: Some(c::task_template::Target::Container(c::Container {
                        resources: Some(c::Resources {
                            requests: entries(requests),
                            limits: entries(limits),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_requests_limits_clamp_and_refuse() {
        use c::resources::ResourceName::{Cpu, Memory};
        let attrs = a::TaskResourceAttributes {
            defaults: Some(a::TaskResourceSpec {
                cpu: "500m".into(),
                memory: "1Gi".into(),
                ..Default::default()
            }),
            limits: Some(a::TaskResourceSpec {
                cpu: "2".into(),
                memory: "4Gi".into(),
                ..Default::default()
            }),
        };
        let mut closure = container_task(&[(Cpu, "1")], &[(Memory, "8Gi")]);
        apply_task_resources(&mut closure, &attrs).unwrap();
        let r = match &closure.tasks[0].template.as_ref().unwrap().target {
            Some(c::task_template::Target::Container(c)) => c.resources.clone().unwrap(),
            _ => unreachable!(),
        };
        let value = |list: &[c::resources::ResourceEntry], n: c::resources::ResourceName| {
            list.iter()
                .find(|e| e.name == n as i32)
                .map(|e| e.value.clone())
        };
        assert_eq!(
            value(&r.requests, Cpu).as_deref(),
            Some("1"),
            "its own request stays"
        );
        assert_eq!(
            value(&r.requests, Memory).as_deref(),
            Some("1Gi"),
            "the default fills"
        );
        assert_eq!(
            value(&r.limits, Memory).as_deref(),
            Some("4Gi"),
            "clamped to the limit"
        );
        let mut greedy = container_task(&[(Cpu, "3")], &[]);
        let e = apply_task_resources(&mut greedy, &attrs).unwrap_err();
        assert!(e.to_string().contains("task t requests cpu 3"), "{e}");
    }
}
