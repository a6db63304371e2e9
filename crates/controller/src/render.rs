//! Turns engine state into the records the API serves and the events of the log.
//! Pure functions of (state, identities, now).

// Flyte's admin still fills the deprecated `output_uri`/`outputs` result fields, and
// FlyteRemote reads them; so do we.
#![allow(deprecated)]

use contrail_engine::{
    ArrayState, AttemptState, ErrorKind, ExecState, Failure, Item, NodePhase, NodeState, Plan,
    node_phase, task_phase, workflow_phase,
};
use contrail_idl::{admin, core, event};
use prost_types::{Duration, Timestamp};

pub fn ts(n: i64) -> Timestamp {
    Timestamp {
        seconds: n.div_euclid(1_000_000_000),
        nanos: n.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn dur(from: Option<i64>, to: i64) -> Option<Duration> {
    let d = to - from?;
    Some(Duration {
        seconds: d.div_euclid(1_000_000_000),
        nanos: d.rem_euclid(1_000_000_000) as i32,
    })
}

pub fn error(f: &Failure) -> core::ExecutionError {
    core::ExecutionError {
        code: f.code.clone(),
        message: f.message.clone(),
        kind: match f.kind {
            ErrorKind::User => core::execution_error::ErrorKind::User as i32,
            ErrorKind::System => core::execution_error::ErrorKind::System as i32,
        },
        ..Default::default()
    }
}

/// Identities and locations shared by every record of one execution.
pub struct Ids<'a> {
    pub exec: core::WorkflowExecutionIdentifier,
    pub plan: &'a Plan,
    /// URI of a node's inputs.pb.
    pub node_inputs: &'a dyn Fn(usize) -> String,
    /// URI of an attempt's outputs.pb.
    pub attempt_outputs: &'a dyn Fn(usize, u32) -> String,
    /// URI of the `futures.pb` a dynamic task wrote.
    pub futures: &'a dyn Fn(usize, u32) -> String,
    /// Logs of one attempt of a node, or of one of its array items.
    pub logs: &'a dyn Fn(usize, Option<u32>, u32) -> Vec<core::TaskLog>,
    /// The deck of a task node's attempt (`terminal`: only if the task wrote one), or "".
    pub deck: &'a dyn Fn(usize, u32, bool) -> String,
    /// The child execution of a launch-plan node.
    pub child: &'a dyn Fn(usize) -> core::WorkflowExecutionIdentifier,
}

impl Ids<'_> {
    fn node_id(&self, i: usize) -> core::NodeExecutionIdentifier {
        core::NodeExecutionIdentifier {
            node_id: self.plan.nodes[i].id.clone(),
            execution_id: Some(self.exec.clone()),
        }
    }

    fn task_id(&self, i: usize, attempt: u32) -> core::TaskExecutionIdentifier {
        core::TaskExecutionIdentifier {
            task_id: self.plan.task(i).and_then(|t| t.id.clone()),
            node_execution_id: Some(self.node_id(i)),
            retry_attempt: attempt,
        }
    }
}

/// The execution record with its closure brought up to date.
pub fn execution(
    mut e: admin::Execution,
    s: &ExecState,
    aborting: bool,
    outputs_uri: &str,
    now: i64,
) -> admin::Execution {
    let c = e.closure.get_or_insert_with(Default::default);
    c.phase = workflow_phase(s.phase, aborting) as i32;
    c.started_at = s.started_at.map(ts);
    c.duration = dur(s.started_at, s.finished_at.unwrap_or(now));
    c.updated_at = Some(ts(now));
    use admin::execution_closure::OutputResult;
    c.output_result = match s.phase {
        contrail_engine::WorkflowPhase::Succeeded => {
            Some(OutputResult::Outputs(admin::LiteralMapBlob {
                data: Some(admin::literal_map_blob::Data::Uri(outputs_uri.to_string())),
            }))
        }
        contrail_engine::WorkflowPhase::Aborted => {
            Some(OutputResult::AbortMetadata(admin::AbortMetadata {
                cause: s.abort_cause.clone().unwrap_or_default(),
                principal: String::new(),
            }))
        }
        _ => s.error.as_ref().map(|f| OutputResult::Error(error(f))),
    };
    e
}

pub fn node(
    ids: &Ids<'_>,
    i: usize,
    n: &NodeState,
    created_at: i64,
    now: i64,
) -> admin::NodeExecution {
    use admin::node_execution_closure::{OutputResult, TargetMetadata};
    let p = &ids.plan.nodes[i];
    let output_result = match n.phase {
        NodePhase::Succeeded | NodePhase::Recovered => {
            Some(OutputResult::OutputUri((ids.attempt_outputs)(i, n.attempt)))
        }
        NodePhase::Failed | NodePhase::TimedOut => {
            n.error.as_ref().map(|f| OutputResult::Error(error(f)))
        }
        _ => None,
    };
    use contrail_engine::NodeKind;
    let kind = &p.kind;
    let dynamic = n.dynamic().is_some();
    let target_metadata = match kind {
        NodeKind::Task(_) => Some(TargetMetadata::TaskNodeMetadata(task_node_metadata(
            ids, i, n,
        ))),
        NodeKind::LaunchPlan(_) if n.phase != NodePhase::Queued => Some(
            TargetMetadata::WorkflowNodeMetadata(admin::WorkflowNodeMetadata {
                execution_id: Some((ids.child)(i)),
            }),
        ),
        _ => None,
    };
    admin::NodeExecution {
        id: Some(ids.node_id(i)),
        input_uri: if i == 0 {
            String::new()
        } else {
            (ids.node_inputs)(i)
        },
        closure: Some(admin::NodeExecutionClosure {
            phase: node_phase(n.phase) as i32,
            started_at: n.started_at.map(ts),
            duration: dur(n.started_at, n.finished_at.unwrap_or(now)),
            created_at: Some(ts(created_at)),
            updated_at: Some(ts(now)),
            output_result,
            target_metadata,
            dynamic_job_spec_uri: if dynamic {
                (ids.futures)(i, n.attempt)
            } else {
                String::new()
            },
            deck_uri: match kind {
                NodeKind::Task(_) if !dynamic => (ids.deck)(i, n.attempt, n.phase.is_terminal()),
                _ => String::new(),
            },
        }),
        metadata: Some(admin::NodeExecutionMetaData {
            spec_node_id: p.spec_id.clone(),
            is_parent_node: dynamic
                || matches!(kind, NodeKind::Branch(_) | NodeKind::Subworkflow(_)),
            is_dynamic: dynamic,
            is_array: matches!(kind, NodeKind::Array(_)),
            ..Default::default()
        }),
    }
}

/// The cache outcome FlyteRemote shows for a task node, and the catalog entry involved.
fn task_node_metadata(ids: &Ids<'_>, i: usize, n: &NodeState) -> admin::TaskNodeMetadata {
    use contrail_engine::CacheStatus as C;
    use core::CatalogCacheStatus as S;
    let Some(c) = n.cache() else {
        return admin::TaskNodeMetadata::default();
    };
    let cache_status = match c.status {
        C::Hit => S::CacheHit,
        C::Populated => S::CachePopulated,
        C::PutFailure => S::CachePutFailure,
        C::LookupFailure => S::CacheLookupFailure,
        C::Skipped => S::CacheSkipped,
        C::Lookup | C::Waiting | C::Miss | C::Released => S::CacheMiss,
    } as i32;
    let catalog_key = c.catalog.as_ref().map(|r| {
        let source = (!r.source_execution.is_empty()).then(|| {
            core::catalog_metadata::SourceExecution::SourceTaskExecution(
                core::TaskExecutionIdentifier {
                    task_id: ids.plan.task(i).and_then(|t| t.id.clone()),
                    node_execution_id: Some(core::NodeExecutionIdentifier {
                        node_id: r.source_node.clone(),
                        execution_id: Some(core::WorkflowExecutionIdentifier {
                            project: ids.exec.project.clone(),
                            domain: ids.exec.domain.clone(),
                            name: r.source_execution.clone(),
                            org: String::new(),
                        }),
                    }),
                    retry_attempt: r.source_attempt,
                },
            )
        });
        core::CatalogMetadata {
            dataset_id: Some(core::Identifier {
                resource_type: core::ResourceType::Dataset as i32,
                project: r.project.clone(),
                domain: r.domain.clone(),
                name: r.name.clone(),
                version: r.version.clone(),
                org: String::new(),
            }),
            artifact_tag: Some(core::CatalogArtifactTag {
                artifact_id: r.artifact_id.clone(),
                name: r.tag.clone(),
            }),
            source_execution: source,
        }
    });
    admin::TaskNodeMetadata {
        cache_status,
        catalog_key,
        ..Default::default()
    }
}

pub fn task(ids: &Ids<'_>, i: usize, t: &AttemptState, now: i64) -> admin::TaskExecution {
    use admin::task_execution_closure::OutputResult;
    let output_result = match t.phase {
        contrail_engine::TaskPhase::Succeeded => {
            Some(OutputResult::OutputUri((ids.attempt_outputs)(i, t.attempt)))
        }
        _ => t.error.as_ref().map(|f| OutputResult::Error(error(f))),
    };
    let template = ids.plan.task(i);
    admin::TaskExecution {
        id: Some(ids.task_id(i, t.attempt)),
        input_uri: (ids.node_inputs)(i),
        closure: Some(admin::TaskExecutionClosure {
            phase: task_phase(t.phase) as i32,
            logs: (ids.logs)(i, None, t.attempt),
            started_at: t.started_at.map(ts),
            duration: dur(t.started_at, t.finished_at.unwrap_or(now)),
            created_at: Some(ts(t.created_at)),
            updated_at: Some(ts(now)),
            task_type: template.map(|t| t.r#type.clone()).unwrap_or_default(),
            output_result,
            reason: t.reason.clone().unwrap_or_default(),
            ..Default::default()
        }),
        is_parent: false,
    }
}

pub fn workflow_event(
    ids: &Ids<'_>,
    s: &ExecState,
    outputs_uri: &str,
    now: i64,
) -> event::WorkflowExecutionEvent {
    use event::workflow_execution_event::OutputResult;
    event::WorkflowExecutionEvent {
        execution_id: Some(ids.exec.clone()),
        producer_id: "contrail".into(),
        phase: workflow_phase(s.phase, false) as i32,
        occurred_at: Some(ts(now)),
        output_result: match s.phase {
            contrail_engine::WorkflowPhase::Succeeded => {
                Some(OutputResult::OutputUri(outputs_uri.to_string()))
            }
            _ => s.error.as_ref().map(|f| OutputResult::Error(error(f))),
        },
    }
}

pub fn node_event(ids: &Ids<'_>, i: usize, n: &NodeState, now: i64) -> event::NodeExecutionEvent {
    use event::node_execution_event::OutputResult;
    event::NodeExecutionEvent {
        id: Some(ids.node_id(i)),
        producer_id: "contrail".into(),
        phase: node_phase(n.phase) as i32,
        occurred_at: Some(ts(now)),
        spec_node_id: ids.plan.nodes[i].spec_id.clone(),
        node_name: ids.plan.nodes[i].spec_id.clone(),
        is_parent: n.dynamic().is_some()
            || matches!(
                ids.plan.nodes[i].kind,
                contrail_engine::NodeKind::Branch(_) | contrail_engine::NodeKind::Subworkflow(_)
            ),
        is_dynamic: n.dynamic().is_some(),
        is_array: matches!(ids.plan.nodes[i].kind, contrail_engine::NodeKind::Array(_)),
        parent_node_metadata: ids.plan.nodes[i].parent.map(|p| {
            event::ParentNodeExecutionMetadata {
                node_id: ids.plan.nodes[p].id.clone(),
            }
        }),
        output_result: match n.phase {
            NodePhase::Succeeded | NodePhase::Recovered => {
                Some(OutputResult::OutputUri((ids.attempt_outputs)(i, n.attempt)))
            }
            _ => n.error.as_ref().map(|f| OutputResult::Error(error(f))),
        },
        ..Default::default()
    }
}

pub fn task_event(
    ids: &Ids<'_>,
    i: usize,
    t: &AttemptState,
    now: i64,
) -> event::TaskExecutionEvent {
    use event::task_execution_event::OutputResult;
    event::TaskExecutionEvent {
        task_id: ids.plan.task(i).and_then(|t| t.id.clone()),
        parent_node_execution_id: Some(ids.node_id(i)),
        retry_attempt: t.attempt,
        phase: task_phase(t.phase) as i32,
        producer_id: "contrail".into(),
        occurred_at: Some(ts(now)),
        output_result: t.error.as_ref().map(|f| OutputResult::Error(error(f))),
        reason: t.reason.clone().unwrap_or_default(),
        ..Default::default()
    }
}

// ---- array nodes over a task: one TaskExecution, items as external resources ----

/// Flyte's name of an array node's attempt; item ids are `<name>-n<index>-<retry>`.
fn array_generated_name(ids: &Ids<'_>, i: usize) -> String {
    contrail_engine::ids::fixed_length_unique_id(50, &[&ids.exec.name, &ids.plan.nodes[i].id, "0"])
}

/// One `external_resources` entry per attempt of each listed item: earlier attempts failed,
/// the current one is in the item's phase. Logs, renamed `<name>-<index>`, only for items
/// `with_logs` accepts.
pub fn array_resources(
    ids: &Ids<'_>,
    i: usize,
    a: &ArrayState,
    items: &[u32],
    with_logs: &dyn Fn(Item) -> bool,
) -> Vec<event::ExternalResourceInfo> {
    use core::CatalogCacheStatus as S;
    use core::task_execution::Phase as P;
    let cacheable = ids.plan.nodes[i].cache.is_some();
    let base = array_generated_name(ids, i);
    let mut out = Vec::with_capacity(items.len());
    for &item in items {
        let phase = a.get(item);
        let attempt = a.attempt(item);
        let hit = a.cache_hits.contains(&item);
        let miss = if cacheable {
            S::CacheMiss
        } else {
            S::CacheDisabled
        };
        for earlier in 0..attempt {
            out.push(event::ExternalResourceInfo {
                external_id: format!("{base}-n{item}-{earlier}"),
                index: item,
                retry_attempt: earlier,
                phase: P::Failed as i32,
                cache_status: miss as i32,
                ..Default::default()
            });
        }
        let cache_status = match phase {
            _ if hit => S::CacheHit,
            Item::Succeeded | Item::Filing if cacheable => S::CachePopulated,
            _ => miss,
        };
        let logs = if !hit && phase != Item::NotStarted && with_logs(phase) {
            (ids.logs)(i, Some(item), attempt)
                .into_iter()
                .map(|mut l| {
                    l.name = format!("{}-{item}", l.name);
                    l
                })
                .collect()
        } else {
            Vec::new()
        };
        out.push(event::ExternalResourceInfo {
            external_id: format!("{base}-n{item}-{attempt}"),
            index: item,
            retry_attempt: attempt,
            phase: contrail_engine::item_phase(phase) as i32,
            cache_status: cache_status as i32,
            logs,
            ..Default::default()
        });
    }
    out
}

fn array_metadata(
    ids: &Ids<'_>,
    i: usize,
    resources: Vec<event::ExternalResourceInfo>,
) -> event::TaskExecutionMetadata {
    event::TaskExecutionMetadata {
        generated_name: array_generated_name(ids, i),
        external_resources: resources,
        plugin_identifier: ARRAY_PLUGIN.into(),
        ..Default::default()
    }
}

/// An array node's result, in the record's or the event's own type.
fn array_result<T>(
    ids: &Ids<'_>,
    i: usize,
    n: &NodeState,
    outputs: fn(String) -> T,
    failed: fn(core::ExecutionError) -> T,
) -> Option<T> {
    match n.phase {
        NodePhase::Succeeded | NodePhase::Recovered => Some(outputs((ids.attempt_outputs)(i, 0))),
        _ => n.error.as_ref().map(|f| failed(error(f))),
    }
}

/// The task type and plugin Flyte 1 reports for array nodes.
const ARRAY_TASK_TYPE: &str = "container_array";
const ARRAY_PLUGIN: &str = "k8s-array";

/// The array node's TaskExecution record (attempt 0): every item, logs of those not done.
pub fn array_task(
    ids: &Ids<'_>,
    i: usize,
    n: &NodeState,
    a: &ArrayState,
    now: i64,
) -> admin::TaskExecution {
    use admin::task_execution_closure::OutputResult;
    let phase = contrail_engine::array_task_phase(n.phase);
    let output_result = array_result(ids, i, n, OutputResult::OutputUri, OutputResult::Error);
    let all: Vec<u32> = (0..a.len() as u32).collect();
    let resources = array_resources(ids, i, a, &all, &|p| {
        !matches!(p, Item::Succeeded | Item::Filing)
    });
    let created = n.queued_at.or(n.started_at).unwrap_or(now);
    admin::TaskExecution {
        id: Some(ids.task_id(i, 0)),
        input_uri: (ids.node_inputs)(i),
        closure: Some(admin::TaskExecutionClosure {
            phase: phase as i32,
            started_at: n.started_at.map(ts),
            duration: dur(n.started_at, n.finished_at.unwrap_or(now)),
            created_at: Some(ts(created)),
            updated_at: Some(ts(now)),
            task_type: ARRAY_TASK_TYPE.into(),
            metadata: Some(array_metadata(ids, i, resources)),
            event_version: 1,
            output_result,
            ..Default::default()
        }),
        is_parent: false,
    }
}

/// The array node's task event of one round: the listed items, at `phase_version`.
pub fn array_task_event(
    ids: &Ids<'_>,
    i: usize,
    n: &NodeState,
    a: &ArrayState,
    items: &[u32],
    phase_version: u32,
    now: i64,
) -> event::TaskExecutionEvent {
    use event::task_execution_event::OutputResult;
    let phase = contrail_engine::array_task_phase(n.phase);
    let output_result = array_result(ids, i, n, OutputResult::OutputUri, OutputResult::Error);
    let resources = array_resources(ids, i, a, items, &|p| !p.is_terminal());
    event::TaskExecutionEvent {
        task_id: ids.plan.task(i).and_then(|t| t.id.clone()),
        parent_node_execution_id: Some(ids.node_id(i)),
        retry_attempt: 0,
        phase: phase as i32,
        phase_version,
        producer_id: "contrail".into(),
        occurred_at: Some(ts(now)),
        task_type: ARRAY_TASK_TYPE.into(),
        event_version: 1,
        metadata: Some(array_metadata(ids, i, resources)),
        output_result,
        ..Default::default()
    }
}
