//! SignalService: the values gate nodes wait for. The controller creates a signal when a
//! gate starts waiting; users list and set it (FlyteRemote `set_signal`, `approve`,
//! `reject`). A value is type-checked against the signal's type before it is stored, and
//! setting it wakes the execution.

use crate::admin::run;
use crate::error::{ApiError, ApiResult, invalid};
use crate::executions::{as_binding, exec_key};
use crate::list::{limit, page, parse_filters, parse_sort, parse_token};
use crate::{Api, validate};
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_idl::service::signal_service_server::SignalService;
use contrail_store::{ListQuery, SignalRecord};
use prost::Message;
use tonic::{Request, Response, Status};

fn signal_of(r: &SignalRecord) -> ApiResult<a::Signal> {
    Ok(a::Signal {
        id: Some(c::SignalIdentifier {
            signal_id: r.signal_id.clone(),
            execution_id: Some(c::WorkflowExecutionIdentifier {
                project: r.exec.project.clone(),
                domain: r.exec.domain.clone(),
                name: r.exec.name.clone(),
                org: String::new(),
            }),
        }),
        r#type: Some(c::LiteralType::decode(r.ty.as_slice())?),
        value: r
            .value
            .as_ref()
            .map(|v| c::Literal::decode(v.as_slice()))
            .transpose()?,
    })
}

fn signal_key(id: Option<&c::SignalIdentifier>) -> ApiResult<(contrail_store::ExecKey, String)> {
    let id = id.ok_or_else(|| invalid("id is missing"))?;
    validate::text("id.signal_id", &id.signal_id)?;
    let k = exec_key("id.execution_id", id.execution_id.as_ref())?;
    Ok((k, id.signal_id.clone()))
}

/// The type of the signal `id` as the workflow's gates declare it (approvals are
/// booleans), searching subworkflows and branches.
fn gate_type(closure: &c::CompiledWorkflowClosure, id: &str) -> Option<c::LiteralType> {
    use c::gate_node::Condition;
    let mut found = None;
    let templates = closure
        .primary
        .iter()
        .chain(closure.sub_workflows.iter())
        .filter_map(|w| w.template.as_ref());
    for n in templates.flat_map(|t| t.nodes.iter()) {
        contrail_compiler::walk_nodes(n, &mut |n| {
            let Some(c::node::Target::GateNode(g)) = &n.target else {
                return;
            };
            match &g.condition {
                Some(Condition::Signal(s)) if s.signal_id == id => {
                    found = found.take().or(s.r#type.clone())
                }
                Some(Condition::Approve(a)) if a.signal_id == id => {
                    found = found.take().or(Some(c::LiteralType {
                        r#type: Some(c::literal_type::Type::Simple(c::SimpleType::Boolean as i32)),
                        ..Default::default()
                    }))
                }
                _ => {}
            }
        });
    }
    found
}

impl Api {
    fn get_or_create_signal_impl(&self, r: a::SignalGetOrCreateRequest) -> ApiResult<a::Signal> {
        let (k, id) = signal_key(r.id.as_ref())?;
        let ty = r.r#type.ok_or_else(|| invalid("type is missing"))?;
        let exec = self
            .store
            .get_execution(&k)?
            .ok_or_else(|| ApiError::NotFound(format!("execution {k} does not exist")))?;
        // A signal has its gate's type: a request for another type is refused.
        let closure = c::CompiledWorkflowClosure::decode(exec.workflow_closure.as_slice())?;
        match gate_type(&closure, &id) {
            Some(gate) if gate.r#type != ty.r#type => {
                return Err(invalid(format!(
                    "type: signal {id} of execution {k} is a {}, not a {}",
                    contrail_compiler::describe(&gate),
                    contrail_compiler::describe(&ty)
                )));
            }
            // A gate a dynamic task makes at run time is not in the closure: the signal's
            // first type stands, and later requests must match it (below).
            _ => {}
        }
        let rec =
            self.store
                .get_or_create_signal(&k, &id, &ty.encode_to_vec(), self.now_nanos())?;
        let stored = c::LiteralType::decode(rec.ty.as_slice())?;
        if stored.r#type != ty.r#type {
            return Err(invalid(format!(
                "type: signal {id} of execution {k} is a {}, not a {}",
                contrail_compiler::describe(&stored),
                contrail_compiler::describe(&ty)
            )));
        }
        signal_of(&rec)
    }

    fn list_signals_impl(&self, r: a::SignalListRequest) -> ApiResult<a::SignalList> {
        let k = exec_key("workflow_execution_id", r.workflow_execution_id.as_ref())?;
        let q = ListQuery {
            project: k.project.clone(),
            domain: k.domain.clone(),
            name: None,
            filters: parse_filters(&r.filters)?,
            sort: parse_sort(r.sort_by.as_ref())?,
            limit: limit(r.limit) + 1,
            offset: parse_token(&r.token)?,
        };
        let rows = self.store.list_signals(&k, &q)?;
        let (rows, token) = page(rows, q.offset, q.limit - 1);
        Ok(a::SignalList {
            signals: rows.iter().map(signal_of).collect::<ApiResult<_>>()?,
            token,
        })
    }

    fn set_signal_impl(&self, r: a::SignalSetRequest) -> ApiResult<a::SignalSetResponse> {
        let (k, id) = signal_key(r.id.as_ref())?;
        let value = r.value.ok_or_else(|| invalid("value is missing"))?;
        let rec = self.store.get_signal(&k, &id)?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "signal {id} of execution {k} does not exist (the gate has not been reached yet)"
            ))
        })?;
        let ty = c::LiteralType::decode(rec.ty.as_slice())?;
        let b = as_binding(&value)
            .ok_or_else(|| invalid("value: offloaded literals cannot be signal values"))?;
        contrail_compiler::check_constant(&b, &ty).map_err(|e| {
            invalid(format!(
                "value does not match the type of signal {id} ({}): {e}",
                contrail_compiler::describe(&ty)
            ))
        })?;
        if rec.value.is_some()
            || !self
                .store
                .set_signal(&k, &id, &value.encode_to_vec(), self.now_nanos())?
        {
            return Err(ApiError::FailedPrecondition(format!(
                "signal {id} of execution {k} is set already; a signal takes one value"
            )));
        }
        tracing::info!(execution = %k, signal = %id, "signal set");
        self.wake_execution(&k);
        Ok(a::SignalSetResponse {})
    }
}

#[tonic::async_trait]
impl SignalService for Api {
    async fn get_or_create_signal(
        &self,
        r: Request<a::SignalGetOrCreateRequest>,
    ) -> Result<Response<a::Signal>, Status> {
        run(self, move |api| {
            api.get_or_create_signal_impl(r.into_inner())
        })
        .await
    }

    async fn list_signals(
        &self,
        r: Request<a::SignalListRequest>,
    ) -> Result<Response<a::SignalList>, Status> {
        run(self, move |api| api.list_signals_impl(r.into_inner())).await
    }

    async fn set_signal(
        &self,
        r: Request<a::SignalSetRequest>,
    ) -> Result<Response<a::SignalSetResponse>, Status> {
        run(self, move |api| api.set_signal_impl(r.into_inner())).await
    }
}
