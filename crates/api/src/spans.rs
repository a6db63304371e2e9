//! `GetExecutionMetrics`: an execution as a tree of timed spans (the workflow, its nodes,
//! their task attempts, and the nodes inside subworkflows, dynamic and branch nodes), built
//! from the node and task records, for a console timeline.

use crate::Api;
use crate::error::ApiResult;
use crate::executions::exec_key;
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_store::{ExecKey, ListQuery};
use prost::Message;

/// Flyte's default depth when the request leaves it at 0.
const DEFAULT_DEPTH: i32 = 10;
/// The most spans one answer carries.
const MAX_SPANS: usize = 10_000;

fn end_of(
    started: Option<&prost_types::Timestamp>,
    duration: Option<&prost_types::Duration>,
) -> Option<prost_types::Timestamp> {
    let (s, d) = (started?, duration?);
    let nanos = i64::from(s.nanos) + i64::from(d.nanos);
    Some(prost_types::Timestamp {
        seconds: s.seconds + d.seconds + nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    })
}

impl Api {
    pub(crate) fn execution_spans(
        &self,
        id: Option<&c::WorkflowExecutionIdentifier>,
        depth: i32,
    ) -> ApiResult<c::Span> {
        let k = exec_key("id", id)?;
        let exec = Self::execution_of(&self.execution_record(&k)?)?;
        let closure = exec.closure.clone().unwrap_or_default();
        let depth = if depth <= 0 {
            DEFAULT_DEPTH
        } else {
            depth.min(DEFAULT_DEPTH * 10)
        };
        let mut budget = MAX_SPANS;
        let spans = if depth > 1 {
            self.node_spans(&k, "", depth - 1, &mut budget)?
        } else {
            Vec::new()
        };
        Ok(c::Span {
            start_time: closure.started_at.or(closure.created_at),
            end_time: end_of(closure.started_at.as_ref(), closure.duration.as_ref()),
            spans,
            id: exec.id.map(c::span::Id::WorkflowId),
        })
    }

    fn span_query(k: &ExecKey) -> ListQuery {
        ListQuery {
            project: k.project.clone(),
            domain: k.domain.clone(),
            name: None,
            filters: Vec::new(),
            sort: None,
            limit: MAX_SPANS as u32,
            offset: 0,
        }
    }

    fn node_spans(
        &self,
        k: &ExecKey,
        parent: &str,
        depth: i32,
        budget: &mut usize,
    ) -> ApiResult<Vec<c::Span>> {
        let mut spans = Vec::new();
        for rec in self
            .store
            .list_node_executions(k, parent, &Self::span_query(k))?
        {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let node = a::NodeExecution::decode(rec.record.as_slice())?;
            let closure = node.closure.clone().unwrap_or_default();
            let mut children = Vec::new();
            if depth > 1 {
                for task in
                    self.store
                        .list_task_executions(k, &rec.node_id, &Self::span_query(k))?
                {
                    if *budget == 0 {
                        break;
                    }
                    *budget -= 1;
                    let task = a::TaskExecution::decode(task.record.as_slice())?;
                    let tc = task.closure.clone().unwrap_or_default();
                    children.push(c::Span {
                        start_time: tc.started_at.or(tc.created_at),
                        end_time: end_of(tc.started_at.as_ref(), tc.duration.as_ref()),
                        spans: Vec::new(),
                        id: task.id.map(c::span::Id::TaskId),
                    });
                }
                if node.metadata.as_ref().is_some_and(|m| m.is_parent_node) {
                    children.extend(self.node_spans(k, &rec.node_id, depth - 1, budget)?);
                }
            }
            spans.push(c::Span {
                start_time: closure.started_at.or(closure.created_at),
                end_time: end_of(closure.started_at.as_ref(), closure.duration.as_ref()),
                spans: children,
                id: node.id.map(c::span::Id::NodeId),
            });
        }
        Ok(spans)
    }
}
