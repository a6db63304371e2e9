//! Executions: creation (launch-plan input merging, single-task executions), reads of
//! execution, node and task records, their data, termination and relaunch.
//!
//! The API writes desired state only: a new execution row (phase QUEUED), its inputs in the
//! blob store, or a termination request. The controller does the rest.

// The UrlBlob `inputs`/`outputs` and `output_uri` fields are deprecated in flyteidl but
// FlyteAdmin still fills them and FlyteRemote falls back to them.
#![allow(deprecated)]

use crate::error::{ApiError, ApiResult, invalid};
use crate::list::{Phases, limit, page, parse_filters_for, parse_sort, parse_token};
use crate::{Api, validate};
use contrail_auth::Principal;
use contrail_blob::layout;
use contrail_compiler::{Key, References, check_constant, compile_workflow, describe, is_optional};
use contrail_idl::admin::{self as a};
use contrail_idl::core::{self as c, Identifier, ResourceType};
use contrail_store::{AbortOutcome, EntityKey, EntityKind, ExecKey, ExecutionRecord, ListQuery};
use prost::Message;
use rand::Rng;

/// Flyte's execution name rule.
fn valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// "a" + 19 random lowercase letters and digits.
fn generated_name() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::from("a");
    for _ in 0..19 {
        s.push(CHARS[rng.random_range(0..CHARS.len())] as char);
    }
    s
}

/// Filters on execution tags (`execution_tag.key` / `execution_tag.value`, what eager
/// workflows use to find the executions they started).
#[derive(Default)]
struct TagFilter {
    keys: Option<Vec<String>>,
    values: Option<Vec<String>>,
}

impl TagFilter {
    fn is_empty(&self) -> bool {
        self.keys.is_none() && self.values.is_none()
    }
    fn matches(&self, k: &str, v: &str) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|x| x == k))
            && self
                .values
                .as_ref()
                .is_none_or(|vs| vs.iter().any(|x| x == v))
    }
}

fn split_tag_filters(filters: &str) -> ApiResult<(String, TagFilter)> {
    let mut rest = Vec::new();
    let mut tags = TagFilter::default();
    if filters.trim().is_empty() {
        return Ok((String::new(), tags));
    }
    for term in filters.split('+').map(str::trim) {
        let Some((func, args)) = term.split_once('(') else {
            rest.push(term);
            continue;
        };
        let Some(args) = args.strip_suffix(')') else {
            return Err(invalid(format!("filters: cannot parse '{term}'")));
        };
        let (field, value) = args.split_once(',').unwrap_or((args, ""));
        let slot = match field.trim() {
            "execution_tag.key" => &mut tags.keys,
            "execution_tag.value" => &mut tags.values,
            _ => {
                rest.push(term);
                continue;
            }
        };
        let values = match func.trim() {
            "eq" => vec![value.trim().to_string()],
            "value_in" => value.split(';').map(|v| v.trim().to_string()).collect(),
            other => {
                return Err(invalid(format!(
                    "filters: {other} is not supported on {}",
                    field.trim()
                )));
            }
        };
        *slot = Some(values);
    }
    Ok((rest.join("+"), tags))
}

pub(crate) fn exec_key(
    field: &str,
    id: Option<&c::WorkflowExecutionIdentifier>,
) -> ApiResult<ExecKey> {
    let id = id.ok_or_else(|| invalid(format!("{field} is missing")))?;
    validate::text(&format!("{field}.project"), &id.project)?;
    validate::text(&format!("{field}.domain"), &id.domain)?;
    validate::text(&format!("{field}.name"), &id.name)?;
    tracing::Span::current().record("execution", id.name.as_str());
    Ok(ExecKey {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: id.name.clone(),
    })
}

fn entity_key(id: &Identifier) -> EntityKey {
    EntityKey {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: id.name.clone(),
        version: id.version.clone(),
    }
}

/// A literal seen as a constant binding, for type checks.
pub(crate) fn as_binding(l: &c::Literal) -> Option<c::binding_data::Value> {
    use c::binding_data::Value as B;
    use c::literal::Value as L;
    Some(match l.value.as_ref()? {
        L::Scalar(s) => B::Scalar((**s).clone()),
        L::Collection(col) => B::Collection(c::BindingDataCollection {
            bindings: col
                .literals
                .iter()
                .map(|x| c::BindingData {
                    value: as_binding(x),
                    ..Default::default()
                })
                .collect(),
        }),
        L::Map(m) => B::Map(c::BindingDataMap {
            bindings: m
                .literals
                .iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        c::BindingData {
                            value: as_binding(x),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }),
        L::OffloadedMetadata(_) => return None,
    })
}

/// Merges user inputs with launch-plan defaults and fixed inputs (FlyteAdmin's rules).
/// A literal a client sent is safe to hand to tasks: nothing empty, offloaded values only
/// in this server's blob store, and no data read from the server's own files.
pub(crate) fn check_literal(
    field: &str,
    lit: &c::Literal,
    blob: &contrail_blob::BlobStore,
) -> ApiResult<()> {
    use c::literal::Value as L;
    use c::scalar::Value as S;
    let local =
        |uri: &str| uri.starts_with("file:") || uri.starts_with('/') || !uri.contains("://");
    match lit.value.as_ref() {
        None => Err(invalid(format!("{field}: the literal is empty"))),
        Some(L::Collection(col)) => col
            .literals
            .iter()
            .enumerate()
            .try_for_each(|(i, l)| check_literal(&format!("{field}[{i}]"), l, blob)),
        Some(L::Map(m)) => m
            .literals
            .iter()
            .try_for_each(|(k, l)| check_literal(&format!("{field}.{k}"), l, blob)),
        Some(L::OffloadedMetadata(o)) => match blob.key_of(&o.uri) {
            Ok(_) => Ok(()),
            Err(_) => Err(invalid(format!(
                "{field}: an offloaded literal must be in this server's blob store ({}), not {}",
                blob.uri(""),
                o.uri
            ))),
        },
        Some(L::Scalar(sc)) => {
            let uri = match sc.value.as_ref() {
                None => return Err(invalid(format!("{field}: the scalar is empty"))),
                Some(S::Blob(b)) => Some(b.uri.as_str()),
                Some(S::Schema(sch)) => Some(sch.uri.as_str()),
                Some(S::StructuredDataset(sd)) => Some(sd.uri.as_str()),
                Some(S::Union(u)) => {
                    return match u.value.as_deref() {
                        Some(v) => check_literal(field, v, blob),
                        None => Err(invalid(format!("{field}: the union has no value"))),
                    };
                }
                _ => None,
            };
            match uri {
                Some(u) if !u.is_empty() && local(u) => Err(invalid(format!(
                    "{field}: {u} is a file of the server; data must come from an object store"
                ))),
                _ => Ok(()),
            }
        }
    }
}

pub(crate) fn merge_inputs(
    expected: &c::ParameterMap,
    fixed: &c::LiteralMap,
    given: &c::LiteralMap,
) -> ApiResult<c::LiteralMap> {
    let mut out = c::LiteralMap::default();
    for (name, lit) in &given.literals {
        if fixed.literals.contains_key(name) {
            return Err(invalid(format!(
                "inputs.{name}: input is fixed by the launch plan and cannot be overridden"
            )));
        }
        let Some(p) = expected.parameters.get(name) else {
            return Err(invalid(format!(
                "inputs.{name}: invalid input: the launch plan has no input named {name}"
            )));
        };
        if let (Some(t), Some(v)) = (
            p.var.as_ref().and_then(|v| v.r#type.as_ref()),
            as_binding(lit),
        ) {
            check_constant(&v, t).map_err(|got| {
                invalid(format!(
                    "inputs.{name}: a {got} value cannot be used for an input of type {}",
                    describe(t)
                ))
            })?;
        }
        out.literals.insert(name.clone(), lit.clone());
    }
    for (name, p) in &expected.parameters {
        if out.literals.contains_key(name) || fixed.literals.contains_key(name) {
            continue;
        }
        match &p.behavior {
            Some(c::parameter::Behavior::Default(d)) => {
                out.literals.insert(name.clone(), d.clone());
            }
            Some(c::parameter::Behavior::Required(true)) => {
                return Err(invalid(format!("inputs.{name}: required input is missing")));
            }
            _ => {
                let optional = p
                    .var
                    .as_ref()
                    .and_then(|v| v.r#type.as_ref())
                    .is_some_and(is_optional);
                if !optional {
                    return Err(invalid(format!("inputs.{name}: required input is missing")));
                }
            }
        }
    }
    for (name, lit) in &fixed.literals {
        out.literals.insert(name.clone(), lit.clone());
    }
    Ok(out)
}

/// The one-node workflow FlyteAdmin synthesizes around a task launched on its own.
fn task_workflow(task: &c::TaskTemplate) -> ApiResult<(c::CompiledWorkflowClosure, Identifier)> {
    let tid = task.id.clone().unwrap_or_default();
    let node_id: String = tid
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_lowercase();
    let node_id = node_id[node_id.len().saturating_sub(63)..].to_string();
    let node_id = if node_id.is_empty() {
        "n0".to_string()
    } else {
        node_id
    };
    let iface = task.interface.clone().unwrap_or_default();
    let promise = |node: &str, var: &str| c::BindingData {
        value: Some(c::binding_data::Value::Promise(c::OutputReference {
            node_id: node.into(),
            var: var.into(),
            attr_path: vec![],
        })),
        ..Default::default()
    };
    let inputs = iface
        .inputs
        .iter()
        .flat_map(|m| m.variables.keys())
        .map(|v| c::Binding {
            var: v.clone(),
            binding: Some(promise("", v)),
        })
        .collect();
    let outputs = iface
        .outputs
        .iter()
        .flat_map(|m| m.variables.keys())
        .map(|v| c::Binding {
            var: v.clone(),
            binding: Some(promise(&node_id, v)),
        })
        .collect();
    let wf_id = Identifier {
        resource_type: ResourceType::Workflow as i32,
        project: tid.project.clone(),
        domain: tid.domain.clone(),
        name: format!(".flytegen.{}", tid.name),
        version: tid.version.clone(),
        org: String::new(),
    };
    let spec = a::WorkflowSpec {
        template: Some(c::WorkflowTemplate {
            id: Some(wf_id.clone()),
            interface: Some(iface),
            nodes: vec![c::Node {
                id: node_id.clone(),
                metadata: Some(c::NodeMetadata {
                    name: tid.name.clone(),
                    ..Default::default()
                }),
                inputs,
                target: Some(c::node::Target::TaskNode(c::TaskNode {
                    reference: Some(c::task_node::Reference::ReferenceId(tid.clone())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut refs = References::default();
    refs.tasks.insert(Key::of(&tid), task.clone());
    let closure = compile_workflow(&spec, &refs).map_err(|errs| {
        invalid(format!(
            "task {} cannot run on its own: {}",
            Key::of(&tid),
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    Ok((closure, wf_id))
}

/// The paging part of a list request.
struct Page<'a> {
    limit: u32,
    token: &'a str,
    filters: &'a str,
    sort: Option<&'a a::Sort>,
}

impl<'a> Page<'a> {
    fn of(limit: u32, token: &'a str, filters: &'a str, sort: Option<&'a a::Sort>) -> Self {
        Page {
            limit,
            token,
            filters,
            sort,
        }
    }
}

/// Inputs and outputs as the GetData responses carry them (URL blob and inline map).
struct Data {
    inputs: Option<a::UrlBlob>,
    full_inputs: Option<c::LiteralMap>,
    outputs: Option<a::UrlBlob>,
    full_outputs: Option<c::LiteralMap>,
}

impl Api {
    fn query(
        &self,
        project: &str,
        domain: &str,
        p: Page<'_>,
        phases: Phases,
    ) -> ApiResult<ListQuery> {
        let Page {
            limit: lim,
            token,
            filters,
            sort,
        } = p;
        let filters = parse_filters_for(filters, phases)?;
        Ok(ListQuery {
            project: project.into(),
            domain: domain.into(),
            name: None,
            filters,
            sort: parse_sort(sort)?,
            limit: limit(lim) + 1,
            offset: parse_token(token)?,
        })
    }

    pub(crate) fn wake_execution(&self, k: &ExecKey) {
        if let Some(w) = &self.wake {
            w(k);
        }
    }

    pub(crate) fn create_execution_impl(
        &self,
        r: a::ExecutionCreateRequest,
        caller: Option<&Principal>,
    ) -> ApiResult<a::ExecutionCreateResponse> {
        validate::text("project", &r.project)?;
        validate::text("domain", &r.domain)?;
        self.check_project_domain(&r.project, &r.domain)?;
        let name = if r.name.is_empty() {
            generated_name()
        } else if valid_name(&r.name) {
            r.name.clone()
        } else {
            return Err(invalid(format!(
                "name '{}' is not a valid execution name: it must match ^[a-z][a-z0-9-]*$ and be at most 63 characters",
                r.name
            )));
        };
        tracing::Span::current().record("execution", name.as_str());
        let spec = r.spec.ok_or_else(|| invalid("spec is missing"))?;
        let given = r.inputs.or_else(|| spec.inputs.clone()).unwrap_or_default();
        self.launch(
            ExecKey {
                project: r.project,
                domain: r.domain,
                name,
            },
            spec,
            given,
            caller,
        )
    }

    /// Validates, merges inputs, stores inputs and the execution row, wakes the controller.
    fn launch(
        &self,
        key: ExecKey,
        mut spec: a::ExecutionSpec,
        given: c::LiteralMap,
        caller: Option<&Principal>,
    ) -> ApiResult<a::ExecutionCreateResponse> {
        let lp_id = spec
            .launch_plan
            .clone()
            .ok_or_else(|| invalid("spec.launch_plan is missing"))?;
        for (field, v) in [
            ("spec.launch_plan.project", &lp_id.project),
            ("spec.launch_plan.domain", &lp_id.domain),
            ("spec.launch_plan.name", &lp_id.name),
            ("spec.launch_plan.version", &lp_id.version),
        ] {
            validate::text(field, v)?;
        }
        if spec.max_parallelism < 0 {
            return Err(invalid(format!(
                "spec.max_parallelism: {} is negative (0 means the default)",
                spec.max_parallelism
            )));
        }
        for (name, lit) in &given.literals {
            check_literal(&format!("inputs.{name}"), lit, &self.blob)?;
        }
        use a::execution_spec::NotificationOverrides;
        if let Some(NotificationOverrides::Notifications(list)) = &spec.notification_overrides {
            validate::notifications("spec.notifications.notifications", &list.notifications)?;
        }
        let (mut closure, workflow_id, inputs, lp_spec) = if lp_id.resource_type
            == ResourceType::Task as i32
        {
            let rec = self
                .store
                .get_entity(EntityKind::Task, &entity_key(&lp_id))?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("task {} does not exist", Key::of(&lp_id)))
                })?;
            let task = c::CompiledTask::decode(rec.closure.as_slice())?
                .template
                .unwrap_or_default();
            let (closure, wf) = task_workflow(&task)?;
            let expected = c::ParameterMap {
                parameters: task
                    .interface
                    .iter()
                    .flat_map(|i| i.inputs.iter())
                    .flat_map(|m| m.variables.iter())
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            c::Parameter {
                                var: Some(v.clone()),
                                behavior: Some(c::parameter::Behavior::Required(true)),
                            },
                        )
                    })
                    .collect(),
            };
            let inputs = merge_inputs(&expected, &c::LiteralMap::default(), &given)?;
            (closure, wf, inputs, None)
        } else if matches!(lp_id.resource_type, 0 | 3) {
            let rec = self
                .store
                .get_entity(EntityKind::LaunchPlan, &entity_key(&lp_id))?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("launch plan {} does not exist", Key::of(&lp_id)))
                })?;
            let lp_spec = a::LaunchPlanSpec::decode(rec.spec.as_slice())?;
            let lp_closure = a::LaunchPlanClosure::decode(rec.closure.as_slice())?;
            let wf_id = lp_spec.workflow_id.clone().unwrap_or_default();
            let wf = self
                .store
                .get_entity(EntityKind::Workflow, &entity_key(&wf_id))?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("workflow {} does not exist", Key::of(&wf_id)))
                })?;
            let closure = c::CompiledWorkflowClosure::decode(wf.closure.as_slice())?;
            let inputs = merge_inputs(
                &lp_closure.expected_inputs.unwrap_or_default(),
                &lp_spec.fixed_inputs.clone().unwrap_or_default(),
                &given,
            )?;
            (closure, wf_id, inputs, Some(lp_spec))
        } else {
            return Err(invalid(
                "spec.launch_plan.resource_type must be LAUNCH_PLAN or TASK",
            ));
        };
        // The launch plan's notifications apply unless the execution names some of its own
        // or disables them all (flyteadmin's rule: an empty list, which FlyteRemote sends
        // by default, keeps the launch plan's); the closure keeps the ones in force.
        let notifications = match &spec.notification_overrides {
            Some(NotificationOverrides::Notifications(list)) if !list.notifications.is_empty() => {
                list.notifications.clone()
            }
            Some(NotificationOverrides::DisableAll(true)) => Vec::new(),
            _ => lp_spec
                .as_ref()
                .and_then(|lp| lp.entity_metadata.as_ref())
                .map(|m| m.notifications.clone())
                .unwrap_or_default(),
        };
        // Settings the spec leaves unset come from the launch plan, then the matchable
        // attributes of the workflow, project and domain, and project (`attributes.rs`).
        self.apply_attributes(
            &key.project,
            &key.domain,
            &workflow_id.name,
            &mut spec,
            lp_spec.as_ref(),
            &mut closure,
        )?;
        if let Some(label) = spec.execution_cluster_label.as_ref().map(|l| &l.value)
            && !label.is_empty()
            && !self.cfg.executors.contains(label)
        {
            return Err(invalid(format!(
                "spec.execution_cluster_label '{label}' names no configured executor (configured: {})",
                self.cfg.executors.join(", ")
            )));
        }
        if let Some(who) = caller {
            self.check_task_policy(who, &key.project, &closure)?;
            // Who started it, as flyteadmin records it.
            spec.metadata.get_or_insert_with(Default::default).principal = who.subject.clone();
        }
        let exists = || ApiError::AlreadyExists(format!("execution {key} already exists"));
        if self.store.get_execution(&key)?.is_some() {
            return Err(exists());
        }
        // The inputs go under a key named by their digest, so a creator that loses the race
        // for the name can never overwrite the winner's (no conditional write needed: some
        // object stores ignore them). The row insert below decides the name, and the row
        // names its inputs.
        let bytes = inputs.encode_to_vec();
        let digest = contrail_blob::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)[..16]);
        let inputs_key =
            layout::execution_inputs_named(&key.project, &key.domain, &key.name, &digest);
        self.blob.put(&inputs_key, &bytes)?;
        let now = self.now_nanos();
        let id = c::WorkflowExecutionIdentifier {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: key.name.clone(),
            org: String::new(),
        };
        {
            spec.inputs = None;
        }
        let exec = a::Execution {
            id: Some(id.clone()),
            spec: Some(spec),
            closure: Some(a::ExecutionClosure {
                phase: c::workflow_execution::Phase::Queued as i32,
                created_at: Some(crate::admin_ts(now)),
                updated_at: Some(crate::admin_ts(now)),
                workflow_id: Some(workflow_id.clone()),
                notifications,
                ..Default::default()
            }),
        };
        let created = self.store.create_execution(&ExecutionRecord {
            key: key.clone(),
            phase: c::workflow_execution::Phase::Queued as i32,
            launch_plan: lp_id.name.clone(),
            workflow: workflow_id.name.clone(),
            record: exec.encode_to_vec(),
            workflow_closure: closure.encode_to_vec(),
            state: Vec::new(),
            abort_cause: None,
            inputs_uri: self.blob.uri(&inputs_key),
            revision: 0,
            created_at: now,
            updated_at: now,
        })?;
        if !created {
            return Err(exists());
        }
        tracing::info!(execution = %key, launch_plan = %lp_id.name, "execution created");
        self.wake_execution(&key);
        Ok(a::ExecutionCreateResponse { id: Some(id) })
    }

    /// The task types and images a caller without admin rights in the project may run
    /// (`ApiConfig::task_policy`), checked over every task of the workflow.
    fn check_task_policy(
        &self,
        who: &Principal,
        project: &str,
        closure: &c::CompiledWorkflowClosure,
    ) -> ApiResult<()> {
        let Some(policy) = &self.cfg.task_policy else {
            return Ok(());
        };
        if who.grants.allows(contrail_auth::Action::Admin, project) {
            return Ok(());
        }
        for t in closure.tasks.iter().filter_map(|t| t.template.as_ref()) {
            let image = match &t.target {
                Some(c::task_template::Target::Container(c)) => Some(c.image.as_str()),
                _ => None,
            };
            policy.check(&t.r#type, image).map_err(|why| {
                ApiError::PermissionDenied(format!(
                    "task {}: {why} (the server's task policy; an admin of {project} may run it)",
                    t.id.as_ref().map(|i| i.name.as_str()).unwrap_or("?")
                ))
            })?;
        }
        Ok(())
    }

    pub(crate) fn execution_record(&self, k: &ExecKey) -> ApiResult<ExecutionRecord> {
        self.store
            .get_execution(k)?
            .ok_or_else(|| ApiError::NotFound(format!("execution {k} does not exist")))
    }

    pub(crate) fn execution_of(rec: &ExecutionRecord) -> ApiResult<a::Execution> {
        let mut e = a::Execution::decode(rec.record.as_slice())?;
        if rec.abort_cause.is_some()
            && !rec.is_terminal()
            && let Some(c) = e.closure.as_mut()
        {
            c.phase = c::workflow_execution::Phase::Aborting as i32;
        }
        Ok(e)
    }

    pub(crate) fn get_execution_impl(
        &self,
        r: a::WorkflowExecutionGetRequest,
    ) -> ApiResult<a::Execution> {
        let k = exec_key("id", r.id.as_ref())?;
        Self::execution_of(&self.execution_record(&k)?)
    }

    pub(crate) fn list_executions_impl(
        &self,
        r: a::ResourceListRequest,
    ) -> ApiResult<a::ExecutionList> {
        let id = r.id.as_ref().ok_or_else(|| invalid("id is missing"))?;
        validate::text("id.project", &id.project)?;
        validate::text("id.domain", &id.domain)?;
        let (filters, tags) = split_tag_filters(&r.filters)?;
        let q = self.query(
            &id.project,
            &id.domain,
            Page::of(r.limit, &r.token, &filters, r.sort_by.as_ref()),
            Phases::Execution,
        )?;
        let (rows, token) = if tags.is_empty() {
            let rows = self.store.list_executions(&q)?;
            page(rows, q.offset, q.limit - 1)
        } else {
            // Execution tags are the labels (as in Flyte's admin): filtered here, then paged.
            let all = ListQuery {
                limit: u32::MAX,
                offset: 0,
                ..q.clone()
            };
            let mut rows = Vec::new();
            for rec in self.store.list_executions(&all)? {
                let e = a::Execution::decode(rec.record.as_slice())?;
                let labels = e.spec.and_then(|s| s.labels).unwrap_or_default().values;
                if labels.iter().any(|(k, v)| tags.matches(k, v)) {
                    rows.push(rec);
                }
            }
            let rows: Vec<_> = rows.into_iter().skip(q.offset as usize).collect();
            page(rows, q.offset, q.limit - 1)
        };
        Ok(a::ExecutionList {
            executions: rows
                .iter()
                .map(Self::execution_of)
                .collect::<ApiResult<_>>()?,
            token,
        })
    }

    pub(crate) fn terminate_impl(
        &self,
        r: a::ExecutionTerminateRequest,
    ) -> ApiResult<a::ExecutionTerminateResponse> {
        let k = exec_key("id", r.id.as_ref())?;
        let cause = if r.cause.is_empty() {
            "terminated by the user".to_string()
        } else {
            r.cause
        };
        match self.store.request_abort(&k, &cause, self.now_nanos())? {
            None => Err(ApiError::NotFound(format!("execution {k} does not exist"))),
            Some(AbortOutcome::AlreadyTerminal) => Err(ApiError::FailedPrecondition(format!(
                "execution {k} has already finished"
            ))),
            Some(_) => {
                tracing::info!(execution = %k, %cause, "termination requested");
                self.wake_execution(&k);
                Ok(a::ExecutionTerminateResponse {})
            }
        }
    }

    pub(crate) fn relaunch_impl(
        &self,
        r: a::ExecutionRelaunchRequest,
        caller: Option<&Principal>,
    ) -> ApiResult<a::ExecutionCreateResponse> {
        self.recreate(
            r.id.as_ref(),
            &r.name,
            a::execution_metadata::ExecutionMode::Relaunch,
            r.overwrite_cache,
            caller,
        )
    }

    /// A new execution of the same thing with the same inputs that reuses the outputs of
    /// every node that succeeded in the original.
    pub(crate) fn recover_impl(
        &self,
        r: a::ExecutionRecoverRequest,
        caller: Option<&Principal>,
    ) -> ApiResult<a::ExecutionCreateResponse> {
        self.recreate(
            r.id.as_ref(),
            &r.name,
            a::execution_metadata::ExecutionMode::Recovered,
            false,
            caller,
        )
    }

    /// Creates a child execution for a launch-plan node; one that exists already (the
    /// controller asking again after a crash) counts as created.
    pub fn create_child_execution(
        &self,
        key: ExecKey,
        spec: a::ExecutionSpec,
        inputs: c::LiteralMap,
    ) -> ApiResult<()> {
        // The parent's creator was checked when the parent was created.
        match self.launch(key, spec, inputs, None) {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn recreate(
        &self,
        id: Option<&c::WorkflowExecutionIdentifier>,
        name: &str,
        mode: a::execution_metadata::ExecutionMode,
        overwrite_cache: bool,
        caller: Option<&Principal>,
    ) -> ApiResult<a::ExecutionCreateResponse> {
        let k = exec_key("id", id)?;
        let rec = self.execution_record(&k)?;
        let old = a::Execution::decode(rec.record.as_slice())?;
        let mut spec = old.spec.unwrap_or_default();
        let meta = spec.metadata.get_or_insert_with(Default::default);
        meta.mode = mode as i32;
        meta.reference_execution = old.id.clone();
        spec.overwrite_cache = overwrite_cache;
        let name = if name.is_empty() {
            generated_name()
        } else if valid_name(name) {
            name.to_string()
        } else {
            return Err(invalid(format!(
                "name '{name}' is not a valid execution name"
            )));
        };
        let inputs_key = layout::execution_inputs_of(
            &self.blob,
            &rec.inputs_uri,
            &k.project,
            &k.domain,
            &k.name,
        )?;
        let inputs = c::LiteralMap::decode(self.blob.get(&inputs_key)?.as_slice())?;
        // Fixed inputs were merged into the stored inputs; relaunch with the stored map as-is.
        let lp = spec.launch_plan.clone().unwrap_or_default();
        let given = if lp.resource_type == ResourceType::Task as i32 {
            inputs
        } else {
            let lp_spec = self
                .store
                .get_entity(EntityKind::LaunchPlan, &entity_key(&lp))?
                .map(|r| a::LaunchPlanSpec::decode(r.spec.as_slice()))
                .transpose()?
                .unwrap_or_default();
            let fixed = lp_spec.fixed_inputs.unwrap_or_default();
            c::LiteralMap {
                literals: inputs
                    .literals
                    .into_iter()
                    .filter(|(n, _)| !fixed.literals.contains_key(n))
                    .collect(),
            }
        };
        self.launch(
            ExecKey {
                project: k.project,
                domain: k.domain,
                name,
            },
            spec,
            given,
            caller,
        )
    }

    fn read_literals(&self, uri: &str) -> ApiResult<Option<(c::LiteralMap, i64)>> {
        if uri.is_empty() {
            return Ok(None);
        }
        let key = self.blob.key_of(uri)?;
        match self.blob.get(key) {
            Ok(b) => Ok(Some((c::LiteralMap::decode(b.as_slice())?, b.len() as i64))),
            Err(contrail_blob::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Inputs and outputs of an execution, node or attempt.
    fn data(&self, inputs: &str, outputs: &str) -> ApiResult<Data> {
        let blob = |uri: &str, n: i64| a::UrlBlob {
            url: uri.to_string(),
            bytes: n,
        };
        let i = self.read_literals(inputs)?;
        let o = self.read_literals(outputs)?;
        Ok(Data {
            inputs: i.as_ref().map(|(_, n)| blob(inputs, *n)),
            full_inputs: i.map(|(m, _)| m),
            outputs: o.as_ref().map(|(_, n)| blob(outputs, *n)),
            full_outputs: o.map(|(m, _)| m),
        })
    }

    pub(crate) fn execution_data_impl(
        &self,
        r: a::WorkflowExecutionGetDataRequest,
    ) -> ApiResult<a::WorkflowExecutionGetDataResponse> {
        let k = exec_key("id", r.id.as_ref())?;
        let rec = self.execution_record(&k)?;
        let e = a::Execution::decode(rec.record.as_slice())?;
        let outputs = match e.closure.and_then(|c| c.output_result) {
            Some(a::execution_closure::OutputResult::Outputs(b)) => match b.data {
                Some(a::literal_map_blob::Data::Uri(u)) => u,
                _ => String::new(),
            },
            _ => String::new(),
        };
        let inputs = self.blob.uri(&layout::execution_inputs_of(
            &self.blob,
            &rec.inputs_uri,
            &k.project,
            &k.domain,
            &k.name,
        )?);
        let Data {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
        } = self.data(&inputs, &outputs)?;
        Ok(a::WorkflowExecutionGetDataResponse {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
        })
    }

    pub(crate) fn node_record(
        &self,
        id: Option<&c::NodeExecutionIdentifier>,
    ) -> ApiResult<(ExecKey, a::NodeExecution)> {
        let id = id.ok_or_else(|| invalid("id is missing"))?;
        let k = exec_key("id.execution_id", id.execution_id.as_ref())?;
        validate::text("id.node_id", &id.node_id)?;
        let rec = self
            .store
            .get_node_execution(&k, &id.node_id)?
            .ok_or_else(|| {
                ApiError::NotFound(format!("node execution {k}/{} does not exist", id.node_id))
            })?;
        Ok((k, a::NodeExecution::decode(rec.record.as_slice())?))
    }

    pub(crate) fn list_node_executions_impl(
        &self,
        r: a::NodeExecutionListRequest,
    ) -> ApiResult<a::NodeExecutionList> {
        let k = exec_key("workflow_execution_id", r.workflow_execution_id.as_ref())?;
        self.execution_record(&k)?;
        let q = self.query(
            &k.project,
            &k.domain,
            Page::of(r.limit, &r.token, &r.filters, r.sort_by.as_ref()),
            Phases::Node,
        )?;
        let rows = self
            .store
            .list_node_executions(&k, &r.unique_parent_id, &q)?;
        let (rows, token) = page(rows, q.offset, q.limit - 1);
        Ok(a::NodeExecutionList {
            node_executions: rows
                .iter()
                .map(|n| a::NodeExecution::decode(n.record.as_slice()))
                .collect::<Result<_, _>>()?,
            token,
        })
    }

    pub(crate) fn get_node_execution_impl(
        &self,
        r: a::NodeExecutionGetRequest,
    ) -> ApiResult<a::NodeExecution> {
        Ok(self.node_record(r.id.as_ref())?.1)
    }

    pub(crate) fn node_execution_data_impl(
        &self,
        r: a::NodeExecutionGetDataRequest,
    ) -> ApiResult<a::NodeExecutionGetDataResponse> {
        let (_, n) = self.node_record(r.id.as_ref())?;
        let dynamic_workflow = self.dynamic_workflow(&n)?;
        let outputs = match n.closure.and_then(|c| c.output_result) {
            Some(a::node_execution_closure::OutputResult::OutputUri(u)) => u,
            _ => String::new(),
        };
        let Data {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
        } = self.data(&n.input_uri, &outputs)?;
        Ok(a::NodeExecutionGetDataResponse {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
            dynamic_workflow,
            ..Default::default()
        })
    }

    /// The workflow a dynamic node generated, as compiled by the controller (stored beside
    /// its futures.pb, never copied into records or events).
    fn dynamic_workflow(
        &self,
        n: &a::NodeExecution,
    ) -> ApiResult<Option<a::DynamicWorkflowNodeMetadata>> {
        let is_dynamic = n.metadata.as_ref().is_some_and(|m| m.is_dynamic);
        let futures = n
            .closure
            .as_ref()
            .map(|c| c.dynamic_job_spec_uri.clone())
            .unwrap_or_default();
        if !is_dynamic || futures.is_empty() {
            return Ok(None);
        }
        let key = self.blob.key_of(&futures)?;
        let compiled =
            contrail_blob::layout::dynamic_compiled_in(key.rsplit_once('/').map_or("", |(d, _)| d));
        let closure = match self.blob.get(&compiled) {
            Ok(b) => c::CompiledWorkflowClosure::decode(b.as_slice())?,
            Err(contrail_blob::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(a::DynamicWorkflowNodeMetadata {
            id: closure
                .primary
                .as_ref()
                .and_then(|p| p.template.as_ref())
                .and_then(|t| t.id.clone()),
            compiled_workflow: Some(closure),
            dynamic_job_spec_uri: futures,
        }))
    }

    pub(crate) fn dynamic_node_workflow_impl(
        &self,
        r: a::GetDynamicNodeWorkflowRequest,
    ) -> ApiResult<a::DynamicNodeWorkflowResponse> {
        let (_, n) = self.node_record(r.id.as_ref())?;
        let d = self.dynamic_workflow(&n)?.ok_or_else(|| {
            ApiError::NotFound("the node execution did not generate a dynamic workflow".into())
        })?;
        Ok(a::DynamicNodeWorkflowResponse {
            compiled_workflow: d.compiled_workflow,
        })
    }

    fn task_key(&self, id: Option<&c::NodeExecutionIdentifier>) -> ApiResult<(ExecKey, String)> {
        let id = id.ok_or_else(|| invalid("node_execution_id is missing"))?;
        let k = exec_key("node_execution_id.execution_id", id.execution_id.as_ref())?;
        validate::text("node_execution_id.node_id", &id.node_id)?;
        Ok((k, id.node_id.clone()))
    }

    pub(crate) fn list_task_executions_impl(
        &self,
        r: a::TaskExecutionListRequest,
    ) -> ApiResult<a::TaskExecutionList> {
        let (k, node) = self.task_key(r.node_execution_id.as_ref())?;
        let q = self.query(
            &k.project,
            &k.domain,
            Page::of(r.limit, &r.token, &r.filters, r.sort_by.as_ref()),
            Phases::Task,
        )?;
        let rows = self.store.list_task_executions(&k, &node, &q)?;
        let (rows, token) = page(rows, q.offset, q.limit - 1);
        Ok(a::TaskExecutionList {
            task_executions: rows
                .iter()
                .map(|t| {
                    a::TaskExecution::decode(t.record.as_slice()).map(|mut te| {
                        self.http_logs(&mut te);
                        te
                    })
                })
                .collect::<Result<_, _>>()?,
            token,
        })
    }

    fn task_record(&self, id: Option<&c::TaskExecutionIdentifier>) -> ApiResult<a::TaskExecution> {
        let id = id.ok_or_else(|| invalid("id is missing"))?;
        let (k, node) = self.task_key(id.node_execution_id.as_ref())?;
        let rec = self
            .store
            .get_task_execution(&k, &node, id.retry_attempt)?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "task execution {k}/{node}/{} does not exist",
                    id.retry_attempt
                ))
            })?;
        Ok(a::TaskExecution::decode(rec.record.as_slice())?)
    }

    pub(crate) fn get_task_execution_impl(
        &self,
        r: a::TaskExecutionGetRequest,
    ) -> ApiResult<a::TaskExecution> {
        let mut te = self.task_record(r.id.as_ref())?;
        self.http_logs(&mut te);
        Ok(te)
    }

    pub(crate) fn task_execution_data_impl(
        &self,
        r: a::TaskExecutionGetDataRequest,
    ) -> ApiResult<a::TaskExecutionGetDataResponse> {
        let t = self.task_record(r.id.as_ref())?;
        let outputs = match t.closure.and_then(|c| c.output_result) {
            Some(a::task_execution_closure::OutputResult::OutputUri(u)) => u,
            _ => String::new(),
        };
        let Data {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
        } = self.data(&t.input_uri, &outputs)?;
        Ok(a::TaskExecutionGetDataResponse {
            inputs,
            full_inputs,
            outputs,
            full_outputs,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> c::Literal {
        c::Literal {
            value: Some(c::literal::Value::Scalar(Box::new(c::Scalar {
                value: Some(c::scalar::Value::Primitive(c::Primitive {
                    value: Some(c::primitive::Value::Integer(i)),
                })),
            }))),
            ..Default::default()
        }
    }

    fn text(s: &str) -> c::Literal {
        c::Literal {
            value: Some(c::literal::Value::Scalar(Box::new(c::Scalar {
                value: Some(c::scalar::Value::Primitive(c::Primitive {
                    value: Some(c::primitive::Value::StringValue(s.into())),
                })),
            }))),
            ..Default::default()
        }
    }

    fn param(default: Option<c::Literal>) -> c::Parameter {
        c::Parameter {
            var: Some(c::Variable {
                r#type: Some(c::LiteralType {
                    r#type: Some(c::literal_type::Type::Simple(c::SimpleType::Integer as i32)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            behavior: Some(match default {
                Some(d) => c::parameter::Behavior::Default(d),
                None => c::parameter::Behavior::Required(true),
            }),
        }
    }

    fn map(items: &[(&str, c::Literal)]) -> c::LiteralMap {
        c::LiteralMap {
            literals: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn launch_plan_inputs_merge_like_flyteadmin() {
        let expected = c::ParameterMap {
            parameters: [
                ("a".to_string(), param(None)),
                ("b".to_string(), param(Some(int(2)))),
            ]
            .into(),
        };
        let fixed = map(&[("f", int(9))]);
        let got = merge_inputs(&expected, &fixed, &map(&[("a", int(1))])).unwrap();
        assert_eq!(got, map(&[("a", int(1)), ("b", int(2)), ("f", int(9))]));
        let got = merge_inputs(&expected, &fixed, &map(&[("a", int(1)), ("b", int(5))])).unwrap();
        assert_eq!(got.literals["b"], int(5), "a given value beats the default");
        let err = |given| {
            merge_inputs(&expected, &fixed, &given)
                .unwrap_err()
                .to_string()
        };
        assert!(err(map(&[])).contains("inputs.a: required input is missing"));
        assert!(err(map(&[("a", int(1)), ("f", int(0))])).contains("inputs.f: input is fixed"));
        assert!(err(map(&[("a", int(1)), ("zz", int(0))])).contains("inputs.zz: invalid input"));
        let mistyped = err(map(&[("a", text("x"))]));
        assert!(mistyped.starts_with("inputs.a: a "), "{mistyped}");
        assert!(
            mistyped.contains("cannot be used for an input of type"),
            "{mistyped}"
        );
    }

    #[test]
    fn execution_names_follow_flytes_rule() {
        assert!(valid_name("abc-1") && valid_name(&generated_name()));
        assert_eq!(generated_name().len(), 20);
        for bad in ["", "1abc", "Abc", "a_b", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
