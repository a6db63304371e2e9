//! AdminService: the registry (tasks, workflows, launch plans), projects, domains,
//! named entities and version; the execution RPCs delegate to `executions.rs`.

use crate::diff::first_difference;
use crate::error::{ApiError, ApiResult, invalid};
use crate::list::{limit, page, parse_filters, parse_sort, parse_token};
use crate::{Api, validate};
use contrail_compiler::{Key, LaunchPlanInterface, References, compile_workflow, requirements};
use contrail_idl::admin::{self as a, LaunchPlanState};
use contrail_idl::core::{self as c, Identifier, ResourceType};
use contrail_idl::service::admin_service_server::AdminService;
use contrail_store::{
    CreateOutcome, EntityKey, EntityKind, EntityRecord, Filter, ListQuery, Op, ProjectRecord,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

fn key(id: &Identifier) -> EntityKey {
    entity_key(Key::of(id))
}

fn entity_key(k: Key) -> EntityKey {
    EntityKey {
        project: k.project,
        domain: k.domain,
        name: k.name,
        version: k.version,
    }
}

/// A template may repeat the request's id, but must not name another entity.
fn check_template_id(template_id: Option<&Identifier>, id: &Identifier) -> ApiResult<()> {
    match template_id {
        Some(tid) if Key::of(tid) != Key::of(id) => Err(invalid(format!(
            "spec.template.id {} does not match id {}",
            Key::of(tid),
            Key::of(id)
        ))),
        _ => Ok(()),
    }
}

fn ident(kind: ResourceType, k: &EntityKey) -> Identifier {
    Identifier {
        resource_type: kind as i32,
        project: k.project.clone(),
        domain: k.domain.clone(),
        name: k.name.clone(),
        version: k.version.clone(),
        org: String::new(),
    }
}

use crate::admin_ts as ts;

fn label(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Task => "task",
        EntityKind::Workflow => "workflow",
        EntityKind::LaunchPlan => "launch plan",
    }
}

fn resource(kind: EntityKind) -> ResourceType {
    match kind {
        EntityKind::Task => ResourceType::Task,
        EntityKind::Workflow => ResourceType::Workflow,
        EntityKind::LaunchPlan => ResourceType::LaunchPlan,
    }
}

fn entity_kind(resource_type: i32) -> ApiResult<EntityKind> {
    match ResourceType::try_from(resource_type) {
        Ok(ResourceType::Task) => Ok(EntityKind::Task),
        Ok(ResourceType::Workflow) => Ok(EntityKind::Workflow),
        Ok(ResourceType::LaunchPlan) => Ok(EntityKind::LaunchPlan),
        _ => Err(invalid(format!(
            "resource_type {resource_type} is not TASK, WORKFLOW or LAUNCH_PLAN"
        ))),
    }
}

impl Api {
    /// Rejects ids whose project/domain is not registered (FlyteAdmin does the same).
    pub(crate) fn check_project_domain(&self, project: &str, domain: &str) -> ApiResult<()> {
        let found = self.store.get_project(project)?;
        if found.is_none() || !self.cfg.domains.iter().any(|d| d == domain) {
            return Err(invalid(format!(
                "failed to validate that project [{project}] and domain [{domain}] are registered"
            )));
        }
        // An archived project keeps what it has and accepts nothing new.
        if found.is_some_and(|p| p.state == a::project::ProjectState::Archived as i32) {
            return Err(invalid(format!(
                "project [{project}] is archived: it accepts no new executions or registrations"
            )));
        }
        Ok(())
    }

    /// Stores a new entity, or explains why an entity of that id already exists.
    fn register(
        &self,
        kind: EntityKind,
        id: &Identifier,
        spec: Vec<u8>,
        closure: Vec<u8>,
        digest_of: &[u8],
        spec_type: &str,
    ) -> ApiResult<()> {
        let now = self.now_nanos();
        let rec = EntityRecord {
            kind,
            key: key(id),
            digest: Sha256::digest(digest_of).to_vec(),
            spec,
            closure,
            state: 0,
            created_at: now,
            updated_at: now,
        };
        match self.store.create_entity(&rec)? {
            CreateOutcome::Created => {
                tracing::info!(kind = kind.as_str(), project = %id.project, domain = %id.domain, name = %id.name, version = %id.version, "registered");
                Ok(())
            }
            CreateOutcome::Exists(old) if old.digest == rec.digest => {
                Err(ApiError::AlreadyExists(format!(
                    "{} with identical structure already exists: {}",
                    label(kind),
                    Key::of(id)
                )))
            }
            CreateOutcome::Exists(old) => {
                let what = first_difference(spec_type, &old.spec, &rec.spec)
                    .map(|d| format!(" (first difference at {d})"))
                    .unwrap_or_default();
                Err(invalid(format!(
                    "{} {} already exists with a different structure{what}; register it under a new version",
                    label(kind),
                    Key::of(id)
                )))
            }
        }
    }

    fn load(&self, kind: EntityKind, id: Option<&Identifier>) -> ApiResult<EntityRecord> {
        let rt = resource(kind);
        let id = validate::identifier("id", id, rt)?;
        self.store.get_entity(kind, &key(&id))?.ok_or_else(|| {
            ApiError::NotFound(format!("{} {} does not exist", label(kind), Key::of(&id)))
        })
    }

    fn task_of(rec: &EntityRecord) -> ApiResult<a::Task> {
        Ok(a::Task {
            id: Some(ident(ResourceType::Task, &rec.key)),
            closure: Some(a::TaskClosure {
                compiled_task: Some(c::CompiledTask::decode(rec.closure.as_slice())?),
                created_at: Some(ts(rec.created_at)),
            }),
            short_description: a::TaskSpec::decode(rec.spec.as_slice())?
                .description
                .map(|d| d.short_description)
                .unwrap_or_default(),
        })
    }

    fn workflow_of(rec: &EntityRecord) -> ApiResult<a::Workflow> {
        Ok(a::Workflow {
            id: Some(ident(ResourceType::Workflow, &rec.key)),
            closure: Some(a::WorkflowClosure {
                compiled_workflow: Some(c::CompiledWorkflowClosure::decode(
                    rec.closure.as_slice(),
                )?),
                created_at: Some(ts(rec.created_at)),
            }),
            short_description: a::WorkflowSpec::decode(rec.spec.as_slice())?
                .description
                .map(|d| d.short_description)
                .unwrap_or_default(),
        })
    }

    fn launch_plan_of(rec: &EntityRecord) -> ApiResult<a::LaunchPlan> {
        let mut closure = a::LaunchPlanClosure::decode(rec.closure.as_slice())?;
        closure.state = rec.state;
        closure.created_at = Some(ts(rec.created_at));
        closure.updated_at = Some(ts(rec.updated_at));
        Ok(a::LaunchPlan {
            id: Some(ident(ResourceType::LaunchPlan, &rec.key)),
            spec: Some(a::LaunchPlanSpec::decode(rec.spec.as_slice())?),
            closure: Some(closure),
        })
    }

    fn list_query(
        &self,
        id: Option<&a::NamedEntityIdentifier>,
        lim: u32,
        token: &str,
        filters: &str,
        sort: Option<&a::Sort>,
        name_required: bool,
    ) -> ApiResult<ListQuery> {
        let id = id.ok_or_else(|| invalid("id is missing"))?;
        validate::text("id.project", &id.project)?;
        validate::text("id.domain", &id.domain)?;
        if name_required {
            validate::text("id.name", &id.name)?;
        }
        let filters = parse_filters(filters)?;
        if filters
            .iter()
            .any(|f| f.column == contrail_store::Column::Phase)
        {
            return Err(invalid("filters: registered entities have no phase"));
        }
        Ok(ListQuery {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: (!id.name.is_empty()).then(|| id.name.clone()),
            filters,
            sort: parse_sort(sort)?,
            limit: limit(lim),
            offset: parse_token(token)?,
        })
    }

    /// One page of `kind` for a ResourceListRequest, each record converted for the wire.
    fn list_converted<T>(
        &self,
        kind: EntityKind,
        r: &a::ResourceListRequest,
        convert: fn(&EntityRecord) -> ApiResult<T>,
    ) -> ApiResult<(Vec<T>, String)> {
        let q = self.list_query(
            r.id.as_ref(),
            r.limit,
            &r.token,
            &r.filters,
            r.sort_by.as_ref(),
            false,
        )?;
        let (rows, token) = self.list_records(kind, q)?;
        Ok((rows.iter().map(convert).collect::<ApiResult<_>>()?, token))
    }

    /// One page of records; fetching one row more than the page tells whether another follows.
    fn list_records(
        &self,
        kind: EntityKind,
        q: ListQuery,
    ) -> ApiResult<(Vec<EntityRecord>, String)> {
        let rows = self.store.list_entities(
            kind,
            &ListQuery {
                limit: q.limit + 1,
                ..q.clone()
            },
        )?;
        Ok(page(rows, q.offset, q.limit))
    }

    fn list_ids(
        &self,
        kind: EntityKind,
        r: a::NamedEntityIdentifierListRequest,
    ) -> ApiResult<a::NamedEntityIdentifierList> {
        let id = a::NamedEntityIdentifier {
            project: r.project.clone(),
            domain: r.domain.clone(),
            ..Default::default()
        };
        let q = self.list_query(
            Some(&id),
            r.limit,
            &r.token,
            &r.filters,
            r.sort_by.as_ref(),
            false,
        )?;
        let names = self.store.list_entity_names(
            kind,
            &ListQuery {
                limit: q.limit + 1,
                ..q.clone()
            },
        )?;
        let (names, token) = page(names, q.offset, q.limit);
        Ok(a::NamedEntityIdentifierList {
            entities: names
                .into_iter()
                .map(|name| a::NamedEntityIdentifier {
                    project: r.project.clone(),
                    domain: r.domain.clone(),
                    name,
                    org: String::new(),
                })
                .collect(),
            token,
        })
    }

    /// The named entity `id`, or NOT_FOUND when no version of that name is registered.
    fn existing_name(
        &self,
        kind: EntityKind,
        id: Option<&a::NamedEntityIdentifier>,
    ) -> ApiResult<a::NamedEntityIdentifier> {
        let mut q = self.list_query(id, 1, "", "", None, true)?;
        let id = id.cloned().expect("validated by list_query");
        q.filters.push(Filter {
            column: contrail_store::Column::Name,
            op: Op::Eq,
            values: vec![id.name.clone()],
        });
        if self.store.list_entity_names(kind, &q)?.is_empty() {
            return Err(ApiError::NotFound(format!(
                "{} {}/{}/{} does not exist",
                label(kind),
                id.project,
                id.domain,
                id.name
            )));
        }
        Ok(id)
    }

    /// A named entity with its user-editable metadata.
    fn named_entity(
        &self,
        kind: EntityKind,
        id: a::NamedEntityIdentifier,
    ) -> ApiResult<a::NamedEntity> {
        let meta = self
            .store
            .get_named_entity_meta(kind, &id.project, &id.domain, &id.name)?
            .unwrap_or_default();
        Ok(a::NamedEntity {
            resource_type: resource(kind) as i32,
            id: Some(id),
            metadata: Some(a::NamedEntityMetadata {
                description: meta.description,
                state: meta.state,
            }),
        })
    }

    /// Registrations larger than the configured limit are refused before any work.
    fn check_size(&self, field: &str, len: usize) -> ApiResult<()> {
        if len > self.cfg.max_spec_bytes {
            return Err(invalid(format!(
                "{field} is {len} bytes, over the limit of {} bytes",
                self.cfg.max_spec_bytes
            )));
        }
        Ok(())
    }

    fn create_task_impl(&self, r: a::TaskCreateRequest) -> ApiResult<()> {
        self.check_size("spec", r.spec.as_ref().map_or(0, |s| s.encoded_len()))?;
        let id = validate::identifier("id", r.id.as_ref(), ResourceType::Task)?;
        self.check_project_domain(&id.project, &id.domain)?;
        let spec = r.spec.ok_or_else(|| invalid("spec is missing"))?;
        let mut template = spec
            .template
            .clone()
            .ok_or_else(|| invalid("spec.template is missing"))?;
        if template.r#type.is_empty() {
            return Err(invalid("spec.template.type must not be empty"));
        }
        check_template_id(template.id.as_ref(), &id)?;
        template.id = Some(id.clone());
        let compiled = c::CompiledTask {
            template: Some(template),
        }
        .encode_to_vec();
        self.register(
            EntityKind::Task,
            &id,
            spec.encode_to_vec(),
            compiled.clone(),
            &compiled,
            "flyteidl.admin.TaskSpec",
        )
    }

    fn create_workflow_impl(&self, r: a::WorkflowCreateRequest) -> ApiResult<()> {
        self.check_size("spec", r.spec.as_ref().map_or(0, |s| s.encoded_len()))?;
        let id = validate::identifier("id", r.id.as_ref(), ResourceType::Workflow)?;
        self.check_project_domain(&id.project, &id.domain)?;
        let mut spec = r.spec.ok_or_else(|| invalid("spec is missing"))?;
        let template = spec
            .template
            .as_mut()
            .ok_or_else(|| invalid("spec.template is missing"))?;
        check_template_id(template.id.as_ref(), &id)?;
        template.id = Some(id.clone());
        for (i, sub) in spec.sub_workflows.iter().enumerate() {
            validate::identifier(
                &format!("spec.sub_workflows[{i}].id"),
                sub.id.as_ref(),
                ResourceType::Workflow,
            )?;
        }
        let req = requirements(&spec);
        let mut refs = References::default();
        for k in &req.tasks {
            if let Some(rec) = self
                .store
                .get_entity(EntityKind::Task, &entity_key(k.clone()))?
                && let Some(t) = c::CompiledTask::decode(rec.closure.as_slice())?.template
            {
                refs.tasks.insert(k.clone(), t);
            }
        }
        for k in &req.launch_plans {
            if let Some(rec) = self
                .store
                .get_entity(EntityKind::LaunchPlan, &entity_key(k.clone()))?
            {
                let cl = a::LaunchPlanClosure::decode(rec.closure.as_slice())?;
                refs.launch_plans.insert(
                    k.clone(),
                    LaunchPlanInterface {
                        inputs: cl.expected_inputs.unwrap_or_default(),
                        outputs: cl.expected_outputs.unwrap_or_default(),
                    },
                );
            }
        }
        let closure = compile_workflow(&spec, &refs).map_err(|errs| {
            let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            invalid(format!(
                "workflow {} failed to compile: {}",
                Key::of(&id),
                msgs.join("; ")
            ))
        })?;
        let closure = closure.encode_to_vec();
        self.register(
            EntityKind::Workflow,
            &id,
            spec.encode_to_vec(),
            closure.clone(),
            &closure,
            "flyteidl.admin.WorkflowSpec",
        )
    }

    /// Whether a registered launch plan carries a schedule (false when it does not exist).
    fn has_schedule(&self, id: &Identifier) -> ApiResult<bool> {
        let Some(rec) = self.store.get_entity(EntityKind::LaunchPlan, &key(id))? else {
            return Ok(false);
        };
        let spec = a::LaunchPlanSpec::decode(rec.spec.as_slice())?;
        Ok(spec.entity_metadata.and_then(|m| m.schedule).is_some())
    }

    fn create_launch_plan_impl(&self, r: a::LaunchPlanCreateRequest) -> ApiResult<()> {
        self.check_size("spec", r.spec.as_ref().map_or(0, |s| s.encoded_len()))?;
        let id = validate::identifier("id", r.id.as_ref(), ResourceType::LaunchPlan)?;
        self.check_project_domain(&id.project, &id.domain)?;
        let spec = r.spec.ok_or_else(|| invalid("spec is missing"))?;
        let wf_id = validate::identifier(
            "spec.workflow_id",
            spec.workflow_id.as_ref(),
            ResourceType::Workflow,
        )?;
        let wf = self
            .store
            .get_entity(EntityKind::Workflow, &key(&wf_id))?
            .ok_or_else(|| {
                invalid(format!(
                    "spec.workflow_id: workflow {} is not registered",
                    Key::of(&wf_id)
                ))
            })?;
        let compiled = c::CompiledWorkflowClosure::decode(wf.closure.as_slice())?;
        let iface = compiled
            .primary
            .and_then(|p| p.template)
            .and_then(|t| t.interface)
            .unwrap_or_default();
        let wf_inputs = iface.inputs.unwrap_or_default().variables;
        let defaults = spec.default_inputs.clone().unwrap_or_default().parameters;
        let fixed = spec.fixed_inputs.clone().unwrap_or_default().literals;
        if spec.max_parallelism < 0 {
            return Err(invalid(format!(
                "spec.max_parallelism: {} is negative (0 means the default)",
                spec.max_parallelism
            )));
        }
        validate::schedule(
            spec.entity_metadata
                .as_ref()
                .and_then(|m| m.schedule.as_ref()),
        )?;
        validate::notifications(
            "spec.entity_metadata.notifications",
            spec.entity_metadata
                .as_ref()
                .map_or(&[][..], |m| m.notifications.as_slice()),
        )?;
        // Defaults and fixed inputs must fit the workflow's inputs, as execution inputs must.
        let fits = |field: String, lit: &c::Literal, name: &str| -> ApiResult<()> {
            crate::executions::check_literal(&field, lit, &self.blob)?;
            let Some(var) = wf_inputs.get(name) else {
                return Err(invalid(format!(
                    "{field}: '{name}' is not an input of workflow {}",
                    Key::of(&wf_id)
                )));
            };
            if let (Some(t), Some(v)) = (var.r#type.as_ref(), crate::executions::as_binding(lit)) {
                contrail_compiler::check_constant(&v, t).map_err(|got| {
                    invalid(format!(
                        "{field}: a {got} value cannot be used for an input of type {}",
                        contrail_compiler::describe(t)
                    ))
                })?;
            }
            Ok(())
        };
        for (name, p) in &defaults {
            if !wf_inputs.contains_key(name) {
                return Err(invalid(format!(
                    "spec.default_inputs: '{name}' is not an input of workflow {}",
                    Key::of(&wf_id)
                )));
            }
            if let Some(c::parameter::Behavior::Default(lit)) = &p.behavior {
                fits(format!("spec.default_inputs.{name}"), lit, name)?;
            }
        }
        for (name, lit) in &fixed {
            fits(format!("spec.fixed_inputs.{name}"), lit, name)?;
        }
        // Expected inputs: every workflow input that is not fixed, with the LP's default if any.
        let mut expected = c::ParameterMap::default();
        for (name, var) in &wf_inputs {
            if fixed.contains_key(name) {
                continue;
            }
            let p = defaults.get(name).cloned().unwrap_or(c::Parameter {
                var: Some(var.clone()),
                behavior: Some(c::parameter::Behavior::Required(true)),
            });
            expected.parameters.insert(name.clone(), p);
        }
        // A schedule supplies only its kickoff time: that input must be a datetime, and
        // every other required input must have a value.
        if let Some(schedule) = spec
            .entity_metadata
            .as_ref()
            .and_then(|m| m.schedule.as_ref())
        {
            let kickoff = schedule.kickoff_time_input_arg.as_str();
            if !kickoff.is_empty() {
                let datetime = wf_inputs
                    .get(kickoff)
                    .and_then(|v| v.r#type.as_ref())
                    .is_some_and(|t| {
                        t.r#type
                            == Some(c::literal_type::Type::Simple(
                                c::SimpleType::Datetime as i32,
                            ))
                    });
                if !datetime {
                    return Err(invalid(format!(
                        "spec.entity_metadata.schedule.kickoff_time_input_arg: '{kickoff}' is not a datetime input of workflow {}",
                        Key::of(&wf_id)
                    )));
                }
            }
            if let Some(name) = expected.parameters.iter().find_map(|(name, p)| {
                let required = matches!(p.behavior, Some(c::parameter::Behavior::Required(true)));
                (required && name != kickoff).then_some(name)
            }) {
                return Err(invalid(format!(
                    "spec.entity_metadata.schedule: input '{name}' has no default or fixed value, and a schedule cannot supply it"
                )));
            }
        }
        let closure = a::LaunchPlanClosure {
            state: 0,
            expected_inputs: Some(expected),
            expected_outputs: iface.outputs,
            created_at: None,
            updated_at: None,
        };
        let spec_bytes = spec.encode_to_vec();
        self.register(
            EntityKind::LaunchPlan,
            &id,
            spec_bytes.clone(),
            closure.encode_to_vec(),
            &spec_bytes,
            "flyteidl.admin.LaunchPlanSpec",
        )
    }

    fn project_of(&self, p: ProjectRecord) -> ApiResult<a::Project> {
        Ok(a::Project {
            id: p.id,
            name: p.name,
            domains: self.domains(),
            description: p.description,
            labels: Some(a::Labels::decode(p.labels.as_slice())?),
            state: p.state,
            org: String::new(),
        })
    }

    pub(crate) fn domains(&self) -> Vec<a::Domain> {
        self.cfg
            .domains
            .iter()
            .map(|d| a::Domain {
                id: d.clone(),
                name: d.clone(),
            })
            .collect()
    }

    fn project_record(p: &a::Project) -> ApiResult<ProjectRecord> {
        validate::project_id("project.id", &p.id)?;
        if p.name.trim().is_empty() {
            return Err(invalid("project.name must not be empty"));
        }
        if p.description.len() > 300 {
            return Err(invalid("project.description is longer than 300 characters"));
        }
        if a::project::ProjectState::try_from(p.state).is_err() {
            return Err(invalid(format!(
                "project.state: {} is not ACTIVE, ARCHIVED or SYSTEM_GENERATED",
                p.state
            )));
        }
        let labels = p.labels.as_ref().map_or(0, |l| l.values.len());
        if labels > 64 {
            return Err(invalid(format!(
                "project.labels: {labels} labels; at most 64"
            )));
        }
        if let Some((k, v)) = p
            .labels
            .iter()
            .flat_map(|l| l.values.iter())
            .find(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 63)
        {
            return Err(invalid(format!(
                "project.labels: '{}'='{}' (keys 1-63 characters, values at most 63)",
                k.escape_debug(),
                v.escape_debug()
            )));
        }
        Ok(ProjectRecord {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            labels: p.labels.clone().unwrap_or_default().encode_to_vec(),
            state: p.state,
        })
    }
}

impl Api {
    /// The description a task or workflow was registered with (`TaskSpec.description`,
    /// `WorkflowSpec.description`), with its id.
    fn description_of(
        kind: EntityKind,
        rec: &EntityRecord,
    ) -> ApiResult<Option<a::DescriptionEntity>> {
        let description = match kind {
            EntityKind::Task => a::TaskSpec::decode(rec.spec.as_slice())?.description,
            EntityKind::Workflow => a::WorkflowSpec::decode(rec.spec.as_slice())?.description,
            EntityKind::LaunchPlan => None,
        };
        Ok(description.map(|d| a::DescriptionEntity {
            id: Some(ident(resource(kind), &rec.key)),
            ..d
        }))
    }

    fn description_kind(resource_type: i32) -> ApiResult<EntityKind> {
        match entity_kind(resource_type)? {
            EntityKind::LaunchPlan => Err(invalid(
                "resource_type: description entities are kept for TASK and WORKFLOW",
            )),
            kind => Ok(kind),
        }
    }

    fn get_description(&self, id: Option<&Identifier>) -> ApiResult<a::DescriptionEntity> {
        let kind = Self::description_kind(id.map_or(0, |i| i.resource_type))?;
        let rec = self.load(kind, id)?;
        Self::description_of(kind, &rec)?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "{} {} was registered without a description",
                label(kind),
                Key::of(&ident(resource(kind), &rec.key))
            ))
        })
    }

    fn list_descriptions(
        &self,
        r: &a::DescriptionEntityListRequest,
    ) -> ApiResult<a::DescriptionEntityList> {
        let kind = Self::description_kind(r.resource_type)?;
        let q = self.list_query(
            r.id.as_ref(),
            r.limit,
            &r.token,
            &r.filters,
            r.sort_by.as_ref(),
            false,
        )?;
        let (rows, token) = self.list_records(kind, q)?;
        let mut descriptions = Vec::new();
        for rec in &rows {
            descriptions.extend(Self::description_of(kind, rec)?);
        }
        Ok(a::DescriptionEntityList {
            description_entities: descriptions,
            token,
        })
    }
}

/// Whether a project's field satisfies one filter term (compared as text; `state` as a
/// number).
fn project_matches(f: &contrail_store::Filter, value: &str) -> bool {
    use std::cmp::Ordering;
    let cmp = |want: &str| -> Ordering {
        match (value.parse::<i64>(), want.parse::<i64>()) {
            (Ok(a), Ok(b)) if f.column == contrail_store::Column::State => a.cmp(&b),
            _ => value.cmp(want),
        }
    };
    let first = f.values.first().map(String::as_str).unwrap_or("");
    match f.op {
        Op::Eq => cmp(first) == Ordering::Equal,
        Op::Ne => cmp(first) != Ordering::Equal,
        Op::Gt => cmp(first) == Ordering::Greater,
        Op::Gte => cmp(first) != Ordering::Less,
        Op::Lt => cmp(first) == Ordering::Less,
        Op::Lte => cmp(first) != Ordering::Greater,
        Op::Contains => value.contains(first),
        Op::ValueIn => f.values.iter().any(|v| cmp(v) == Ordering::Equal),
    }
}

type R<T> = Result<Response<T>, Status>;

pub(crate) fn ok<T>(r: ApiResult<T>) -> R<T> {
    r.map(Response::new).map_err(Status::from)
}

/// Runs a handler's body on the blocking pool: the store, the blob store and the compiler
/// are synchronous, and nothing may block an async worker.
pub(crate) async fn run<T: Send + 'static>(
    api: &Api,
    body: impl FnOnce(&Api) -> ApiResult<T> + Send + 'static,
) -> R<T> {
    let api = api.clone();
    ok(crate::blocking(move || body(&api)).await)
}

#[tonic::async_trait]
impl AdminService for Api {
    async fn create_task(&self, r: Request<a::TaskCreateRequest>) -> R<a::TaskCreateResponse> {
        run(self, move |api| {
            api.create_task_impl(r.into_inner())
                .map(|_| a::TaskCreateResponse {})
        })
        .await
    }

    async fn get_task(&self, r: Request<a::ObjectGetRequest>) -> R<a::Task> {
        run(self, move |api| {
            api.load(EntityKind::Task, r.get_ref().id.as_ref())
                .and_then(|rec| Self::task_of(&rec))
        })
        .await
    }

    async fn list_task_ids(
        &self,
        r: Request<a::NamedEntityIdentifierListRequest>,
    ) -> R<a::NamedEntityIdentifierList> {
        run(self, move |api| {
            api.list_ids(EntityKind::Task, r.into_inner())
        })
        .await
    }

    async fn list_tasks(&self, r: Request<a::ResourceListRequest>) -> R<a::TaskList> {
        run(self, move |api| {
            api.list_converted(EntityKind::Task, &r.into_inner(), Self::task_of)
                .map(|(tasks, token)| a::TaskList { tasks, token })
        })
        .await
    }

    async fn create_workflow(
        &self,
        r: Request<a::WorkflowCreateRequest>,
    ) -> R<a::WorkflowCreateResponse> {
        run(self, move |api| {
            api.create_workflow_impl(r.into_inner())
                .map(|_| a::WorkflowCreateResponse {})
        })
        .await
    }

    async fn get_workflow(&self, r: Request<a::ObjectGetRequest>) -> R<a::Workflow> {
        run(self, move |api| {
            api.load(EntityKind::Workflow, r.get_ref().id.as_ref())
                .and_then(|rec| Self::workflow_of(&rec))
        })
        .await
    }

    async fn list_workflow_ids(
        &self,
        r: Request<a::NamedEntityIdentifierListRequest>,
    ) -> R<a::NamedEntityIdentifierList> {
        run(self, move |api| {
            api.list_ids(EntityKind::Workflow, r.into_inner())
        })
        .await
    }

    async fn list_workflows(&self, r: Request<a::ResourceListRequest>) -> R<a::WorkflowList> {
        run(self, move |api| {
            api.list_converted(EntityKind::Workflow, &r.into_inner(), Self::workflow_of)
                .map(|(workflows, token)| a::WorkflowList { workflows, token })
        })
        .await
    }

    async fn create_launch_plan(
        &self,
        r: Request<a::LaunchPlanCreateRequest>,
    ) -> R<a::LaunchPlanCreateResponse> {
        run(self, move |api| {
            api.create_launch_plan_impl(r.into_inner())
                .map(|_| a::LaunchPlanCreateResponse {})
        })
        .await
    }

    async fn get_launch_plan(&self, r: Request<a::ObjectGetRequest>) -> R<a::LaunchPlan> {
        run(self, move |api| {
            api.load(EntityKind::LaunchPlan, r.get_ref().id.as_ref())
                .and_then(|rec| Self::launch_plan_of(&rec))
        })
        .await
    }

    async fn get_active_launch_plan(
        &self,
        r: Request<a::ActiveLaunchPlanRequest>,
    ) -> R<a::LaunchPlan> {
        run(self, move |api| {
            let id = r
                .get_ref()
                .id
                .as_ref()
                .ok_or_else(|| invalid("id is missing"))?;
            validate::text("id.project", &id.project)?;
            validate::text("id.domain", &id.domain)?;
            validate::text("id.name", &id.name)?;
            let rec = api
                .store
                .get_active_launch_plan(&id.project, &id.domain, &id.name)?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "no active launch plan named {}/{}/{}",
                        id.project, id.domain, id.name
                    ))
                })?;
            Self::launch_plan_of(&rec)
        })
        .await
    }

    async fn list_active_launch_plans(
        &self,
        r: Request<a::ActiveLaunchPlanListRequest>,
    ) -> R<a::LaunchPlanList> {
        let r = r.into_inner();
        run(self, move |api| {
            let id = a::NamedEntityIdentifier {
                project: r.project.clone(),
                domain: r.domain.clone(),
                ..Default::default()
            };
            let mut q =
                api.list_query(Some(&id), r.limit, &r.token, "", r.sort_by.as_ref(), false)?;
            q.filters.push(Filter {
                column: contrail_store::Column::State,
                op: Op::Eq,
                values: vec!["1".into()],
            });
            let (rows, token) = api.list_records(EntityKind::LaunchPlan, q)?;
            Ok(a::LaunchPlanList {
                launch_plans: rows
                    .iter()
                    .map(Self::launch_plan_of)
                    .collect::<ApiResult<_>>()?,
                token,
            })
        })
        .await
    }

    async fn list_launch_plan_ids(
        &self,
        r: Request<a::NamedEntityIdentifierListRequest>,
    ) -> R<a::NamedEntityIdentifierList> {
        run(self, move |api| {
            api.list_ids(EntityKind::LaunchPlan, r.into_inner())
        })
        .await
    }

    async fn list_launch_plans(&self, r: Request<a::ResourceListRequest>) -> R<a::LaunchPlanList> {
        run(self, move |api| {
            api.list_converted(
                EntityKind::LaunchPlan,
                &r.into_inner(),
                Self::launch_plan_of,
            )
            .map(|(launch_plans, token)| a::LaunchPlanList {
                launch_plans,
                token,
            })
        })
        .await
    }

    async fn update_launch_plan(
        &self,
        r: Request<a::LaunchPlanUpdateRequest>,
    ) -> R<a::LaunchPlanUpdateResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            let id = validate::identifier("id", r.id.as_ref(), ResourceType::LaunchPlan)?;
            let active = match LaunchPlanState::try_from(r.state) {
                Ok(LaunchPlanState::Active) => true,
                Ok(LaunchPlanState::Inactive) => false,
                Err(_) => {
                    return Err(invalid(format!(
                        "state {} is not ACTIVE or INACTIVE",
                        r.state
                    )));
                }
            };
            if active && api.has_schedule(&id)? {
                api.store.add_schedule(&key(&id))?;
            }
            if !api
                .store
                .set_launch_plan_state(&key(&id), active, api.now_nanos())?
            {
                return Err(ApiError::NotFound(format!(
                    "launch plan {} does not exist",
                    Key::of(&id)
                )));
            }
            Ok(a::LaunchPlanUpdateResponse {})
        })
        .await
    }

    async fn update_project_domain_attributes(
        &self,
        r: Request<a::ProjectDomainAttributesUpdateRequest>,
    ) -> R<a::ProjectDomainAttributesUpdateResponse> {
        run(self, move |api| {
            let attrs = r.get_ref().attributes.clone().unwrap_or_default();
            api.update_attributes(
                "attributes",
                &attrs.project,
                Some(&attrs.domain),
                None,
                attrs.matching_attributes.as_ref(),
            )
            .map(|_| a::ProjectDomainAttributesUpdateResponse {})
        })
        .await
    }

    async fn get_project_domain_attributes(
        &self,
        r: Request<a::ProjectDomainAttributesGetRequest>,
    ) -> R<a::ProjectDomainAttributesGetResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            let found = api.get_attributes(&r.project, Some(&r.domain), None, r.resource_type)?;
            Ok(a::ProjectDomainAttributesGetResponse {
                attributes: Some(a::ProjectDomainAttributes {
                    project: r.project.clone(),
                    domain: r.domain.clone(),
                    matching_attributes: Some(found),
                    org: String::new(),
                }),
            })
        })
        .await
    }

    async fn delete_project_domain_attributes(
        &self,
        r: Request<a::ProjectDomainAttributesDeleteRequest>,
    ) -> R<a::ProjectDomainAttributesDeleteResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            api.delete_attributes(&r.project, Some(&r.domain), None, r.resource_type)
                .map(|_| a::ProjectDomainAttributesDeleteResponse {})
        })
        .await
    }

    async fn update_project_attributes(
        &self,
        r: Request<a::ProjectAttributesUpdateRequest>,
    ) -> R<a::ProjectAttributesUpdateResponse> {
        run(self, move |api| {
            let attrs = r.get_ref().attributes.clone().unwrap_or_default();
            api.update_attributes(
                "attributes",
                &attrs.project,
                None,
                None,
                attrs.matching_attributes.as_ref(),
            )
            .map(|_| a::ProjectAttributesUpdateResponse {})
        })
        .await
    }

    async fn get_project_attributes(
        &self,
        r: Request<a::ProjectAttributesGetRequest>,
    ) -> R<a::ProjectAttributesGetResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            let found = api.get_attributes(&r.project, None, None, r.resource_type)?;
            Ok(a::ProjectAttributesGetResponse {
                attributes: Some(a::ProjectAttributes {
                    project: r.project.clone(),
                    matching_attributes: Some(found),
                    org: String::new(),
                }),
            })
        })
        .await
    }

    async fn delete_project_attributes(
        &self,
        r: Request<a::ProjectAttributesDeleteRequest>,
    ) -> R<a::ProjectAttributesDeleteResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            api.delete_attributes(&r.project, None, None, r.resource_type)
                .map(|_| a::ProjectAttributesDeleteResponse {})
        })
        .await
    }

    async fn update_workflow_attributes(
        &self,
        r: Request<a::WorkflowAttributesUpdateRequest>,
    ) -> R<a::WorkflowAttributesUpdateResponse> {
        run(self, move |api| {
            let attrs = r.get_ref().attributes.clone().unwrap_or_default();
            api.update_attributes(
                "attributes",
                &attrs.project,
                Some(&attrs.domain),
                Some(&attrs.workflow),
                attrs.matching_attributes.as_ref(),
            )
            .map(|_| a::WorkflowAttributesUpdateResponse {})
        })
        .await
    }

    async fn get_workflow_attributes(
        &self,
        r: Request<a::WorkflowAttributesGetRequest>,
    ) -> R<a::WorkflowAttributesGetResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            let found = api.get_attributes(
                &r.project,
                Some(&r.domain),
                Some(&r.workflow),
                r.resource_type,
            )?;
            Ok(a::WorkflowAttributesGetResponse {
                attributes: Some(a::WorkflowAttributes {
                    project: r.project.clone(),
                    domain: r.domain.clone(),
                    workflow: r.workflow.clone(),
                    matching_attributes: Some(found),
                    org: String::new(),
                }),
            })
        })
        .await
    }

    async fn delete_workflow_attributes(
        &self,
        r: Request<a::WorkflowAttributesDeleteRequest>,
    ) -> R<a::WorkflowAttributesDeleteResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            api.delete_attributes(
                &r.project,
                Some(&r.domain),
                Some(&r.workflow),
                r.resource_type,
            )
            .map(|_| a::WorkflowAttributesDeleteResponse {})
        })
        .await
    }

    async fn list_matchable_attributes(
        &self,
        r: Request<a::ListMatchableAttributesRequest>,
    ) -> R<a::ListMatchableAttributesResponse> {
        run(self, move |api| {
            api.list_matchable(r.get_ref().resource_type)
        })
        .await
    }

    async fn get_description_entity(
        &self,
        r: Request<a::ObjectGetRequest>,
    ) -> R<a::DescriptionEntity> {
        run(self, move |api| {
            api.get_description(r.get_ref().id.as_ref())
        })
        .await
    }

    async fn list_description_entities(
        &self,
        r: Request<a::DescriptionEntityListRequest>,
    ) -> R<a::DescriptionEntityList> {
        run(self, move |api| api.list_descriptions(r.get_ref())).await
    }

    async fn get_execution_metrics(
        &self,
        r: Request<a::WorkflowExecutionGetMetricsRequest>,
    ) -> R<a::WorkflowExecutionGetMetricsResponse> {
        run(self, move |api| {
            let r = r.get_ref();
            api.execution_spans(r.id.as_ref(), r.depth)
                .map(|span| a::WorkflowExecutionGetMetricsResponse { span: Some(span) })
        })
        .await
    }

    async fn register_project(
        &self,
        r: Request<a::ProjectRegisterRequest>,
    ) -> R<a::ProjectRegisterResponse> {
        run(self, move |api| {
            let p = r
                .get_ref()
                .project
                .as_ref()
                .ok_or_else(|| invalid("project is missing"))?;
            let rec = Self::project_record(p)?;
            if !api.store.create_project(&rec)? {
                return Err(ApiError::AlreadyExists(format!(
                    "project {} already exists",
                    p.id
                )));
            }
            Ok(a::ProjectRegisterResponse {})
        })
        .await
    }

    async fn update_project(&self, r: Request<a::Project>) -> R<a::ProjectUpdateResponse> {
        run(self, move |api| {
            let rec = Self::project_record(r.get_ref())?;
            if !api.store.update_project(&rec)? {
                return Err(ApiError::NotFound(format!(
                    "project {} does not exist",
                    rec.id
                )));
            }
            Ok(a::ProjectUpdateResponse {})
        })
        .await
    }

    async fn get_project(&self, r: Request<a::ProjectGetRequest>) -> R<a::Project> {
        run(self, move |api| {
            let id = &r.get_ref().id;
            validate::text("id", id)?;
            let p = api
                .store
                .get_project(id)?
                .ok_or_else(|| ApiError::NotFound(format!("project {id} does not exist")))?;
            api.project_of(p)
        })
        .await
    }

    async fn list_projects(&self, r: Request<a::ProjectListRequest>) -> R<a::Projects> {
        // A caller sees only the projects it has a role in.
        let grants = crate::auth::principal(&r).map(|p| p.grants.clone());
        let r = r.into_inner();
        run(self, move |api| {
            let offset = parse_token(&r.token)?;
            let lim = limit(r.limit);
            let filters = parse_filters(&r.filters)?;
            let mut all: Vec<_> = api
                .store
                .list_projects()?
                .into_iter()
                .filter(|p| grants.as_ref().is_none_or(|g| g.sees(&p.id)))
                .collect();
            for f in &filters {
                let field = |p: &ProjectRecord| -> ApiResult<String> {
                    Ok(match f.column {
                        contrail_store::Column::Name => p.name.clone(),
                        contrail_store::Column::State => p.state.to_string(),
                        contrail_store::Column::Project => p.id.clone(),
                        other => {
                            return Err(invalid(format!(
                                "filters: projects filter on name, state or project, not {}",
                                other.sql_name()
                            )));
                        }
                    })
                };
                let mut kept = Vec::new();
                for p in all {
                    if project_matches(f, &field(&p)?) {
                        kept.push(p);
                    }
                }
                all = kept;
            }
            match r.sort_by.as_ref().map(|s| (s.key.as_str(), s.direction)) {
                None | Some(("", _)) => all.sort_by(|x, y| x.id.cmp(&y.id)),
                Some((key, direction)) => {
                    match key {
                        "name" => all.sort_by(|x, y| x.name.cmp(&y.name).then(x.id.cmp(&y.id))),
                        "identifier" | "id" | "project" => all.sort_by(|x, y| x.id.cmp(&y.id)),
                        other => {
                            return Err(invalid(format!(
                                "sort_by.key: projects sort by name or identifier, not '{}'",
                                other.escape_debug()
                            )));
                        }
                    }
                    if direction == a::sort::Direction::Descending as i32 {
                        all.reverse();
                    }
                }
            }
            let all: Vec<_> = all
                .into_iter()
                .skip(offset as usize)
                .take(lim as usize + 1)
                .collect();
            let (rows, token) = page(all, offset, lim);
            Ok(a::Projects {
                projects: rows
                    .into_iter()
                    .map(|p| api.project_of(p))
                    .collect::<ApiResult<_>>()?,
                token,
            })
        })
        .await
    }

    async fn get_domains(&self, _r: Request<a::GetDomainRequest>) -> R<a::GetDomainsResponse> {
        ok(Ok(a::GetDomainsResponse {
            domains: self.domains(),
        }))
    }

    async fn list_named_entities(
        &self,
        r: Request<a::NamedEntityListRequest>,
    ) -> R<a::NamedEntityList> {
        let r = r.into_inner();
        run(self, move |api| {
            let kind = entity_kind(r.resource_type)?;
            let ids = api.list_ids(
                kind,
                a::NamedEntityIdentifierListRequest {
                    project: r.project.clone(),
                    domain: r.domain.clone(),
                    limit: r.limit,
                    token: r.token.clone(),
                    sort_by: r.sort_by.clone(),
                    filters: r.filters.clone(),
                    org: String::new(),
                },
            )?;
            let entities = ids
                .entities
                .into_iter()
                .map(|id| api.named_entity(kind, id))
                .collect::<ApiResult<_>>()?;
            Ok(a::NamedEntityList {
                entities,
                token: ids.token,
            })
        })
        .await
    }

    async fn get_named_entity(&self, r: Request<a::NamedEntityGetRequest>) -> R<a::NamedEntity> {
        let r = r.into_inner();
        run(self, move |api| {
            let kind = entity_kind(r.resource_type)?;
            let id = api.existing_name(kind, r.id.as_ref())?;
            api.named_entity(kind, id)
        })
        .await
    }

    async fn update_named_entity(
        &self,
        r: Request<a::NamedEntityUpdateRequest>,
    ) -> R<a::NamedEntityUpdateResponse> {
        let r = r.into_inner();
        run(self, move |api| {
            let kind = entity_kind(r.resource_type)?;
            let id = api.existing_name(kind, r.id.as_ref())?;
            let m = r.metadata.unwrap_or_default();
            api.store.put_named_entity_meta(
                kind,
                &id.project,
                &id.domain,
                &id.name,
                &contrail_store::NamedEntityMeta {
                    description: m.description,
                    state: m.state,
                },
            )?;
            Ok(a::NamedEntityUpdateResponse {})
        })
        .await
    }

    async fn create_execution(
        &self,
        r: Request<a::ExecutionCreateRequest>,
    ) -> R<a::ExecutionCreateResponse> {
        let caller = crate::auth::principal(&r).cloned();
        run(self, move |api| {
            api.create_execution_impl(r.into_inner(), caller.as_ref())
        })
        .await
    }

    async fn relaunch_execution(
        &self,
        r: Request<a::ExecutionRelaunchRequest>,
    ) -> R<a::ExecutionCreateResponse> {
        let caller = crate::auth::principal(&r).cloned();
        run(self, move |api| {
            api.relaunch_impl(r.into_inner(), caller.as_ref())
        })
        .await
    }

    async fn recover_execution(
        &self,
        r: Request<a::ExecutionRecoverRequest>,
    ) -> R<a::ExecutionCreateResponse> {
        let caller = crate::auth::principal(&r).cloned();
        run(self, move |api| {
            api.recover_impl(r.into_inner(), caller.as_ref())
        })
        .await
    }

    async fn get_dynamic_node_workflow(
        &self,
        r: Request<a::GetDynamicNodeWorkflowRequest>,
    ) -> R<a::DynamicNodeWorkflowResponse> {
        run(self, move |api| {
            api.dynamic_node_workflow_impl(r.into_inner())
        })
        .await
    }

    async fn get_execution(&self, r: Request<a::WorkflowExecutionGetRequest>) -> R<a::Execution> {
        run(self, move |api| api.get_execution_impl(r.into_inner())).await
    }

    async fn get_execution_data(
        &self,
        r: Request<a::WorkflowExecutionGetDataRequest>,
    ) -> R<a::WorkflowExecutionGetDataResponse> {
        run(self, move |api| api.execution_data_impl(r.into_inner())).await
    }

    async fn list_executions(&self, r: Request<a::ResourceListRequest>) -> R<a::ExecutionList> {
        run(self, move |api| api.list_executions_impl(r.into_inner())).await
    }

    async fn terminate_execution(
        &self,
        r: Request<a::ExecutionTerminateRequest>,
    ) -> R<a::ExecutionTerminateResponse> {
        run(self, move |api| api.terminate_impl(r.into_inner())).await
    }

    async fn get_node_execution(
        &self,
        r: Request<a::NodeExecutionGetRequest>,
    ) -> R<a::NodeExecution> {
        run(self, move |api| api.get_node_execution_impl(r.into_inner())).await
    }

    async fn list_node_executions(
        &self,
        r: Request<a::NodeExecutionListRequest>,
    ) -> R<a::NodeExecutionList> {
        run(self, move |api| {
            api.list_node_executions_impl(r.into_inner())
        })
        .await
    }

    async fn get_node_execution_data(
        &self,
        r: Request<a::NodeExecutionGetDataRequest>,
    ) -> R<a::NodeExecutionGetDataResponse> {
        run(self, move |api| {
            api.node_execution_data_impl(r.into_inner())
        })
        .await
    }

    async fn get_task_execution(
        &self,
        r: Request<a::TaskExecutionGetRequest>,
    ) -> R<a::TaskExecution> {
        run(self, move |api| api.get_task_execution_impl(r.into_inner())).await
    }

    async fn list_task_executions(
        &self,
        r: Request<a::TaskExecutionListRequest>,
    ) -> R<a::TaskExecutionList> {
        run(self, move |api| {
            api.list_task_executions_impl(r.into_inner())
        })
        .await
    }

    async fn get_task_execution_data(
        &self,
        r: Request<a::TaskExecutionGetDataRequest>,
    ) -> R<a::TaskExecutionGetDataResponse> {
        run(self, move |api| {
            api.task_execution_data_impl(r.into_inner())
        })
        .await
    }

    async fn get_version(&self, _r: Request<a::GetVersionRequest>) -> R<a::GetVersionResponse> {
        ok(Ok(a::GetVersionResponse {
            control_plane_version: Some(a::Version {
                build: format!("contrail (flyteidl {})", contrail_idl::FLYTEIDL_VERSION),
                // flyteadmin reports `v<semver>` (or `unknown`); clients expect the `v`.
                version: concat!("v", env!("CARGO_PKG_VERSION")).to_string(),
                build_time: String::new(),
            }),
        }))
    }
}
