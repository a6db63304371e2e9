//! What every request passes before a handler: body limits per RPC, one budget for the
//! bytes of all request bodies in flight, UNIMPLEMENTED/404 for unknown routes, and
//! decode failures reported as INVALID_ARGUMENT.

use crate::Api;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Requests that carry no spec, inputs or data: gets, lists and the like.
pub const SMALL_REQUEST_BYTES: usize = 1024 * 1024;
/// How long a request waits for room in the in-flight budget before RESOURCE_EXHAUSTED.
const BUDGET_WAIT: Duration = Duration::from_secs(10);
/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;

/// The bytes of request bodies all requests together may hold in memory at once.
#[derive(Clone)]
pub(crate) struct Budget {
    units: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).max(1);
        Budget {
            units: Arc::new(Semaphore::new(units)),
            total: units * UNIT,
        }
    }
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The largest body a route accepts: registrations, executions, signals and uploads may
/// be up to the message limit; everything else is small.
pub(crate) fn body_limit(path: &str, max_message: usize) -> usize {
    if path.starts_with("/upload/") {
        return max_message;
    }
    let method = path.rsplit('/').next().unwrap_or("");
    let carries_data = [
        "Create",
        "Update",
        "Register",
        "Set",
        "Relaunch",
        "Recover",
        "GetOrCreate",
        "Add",
    ]
    .iter()
    .any(|p| method.starts_with(p));
    if carries_data {
        max_message
    } else {
        SMALL_REQUEST_BYTES
    }
}

/// `message` as the body of a unary gRPC call: one uncompressed length-prefixed frame.
pub(crate) fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The message of a unary gRPC body (one uncompressed length-prefixed frame).
pub(crate) fn unframe(body: &[u8]) -> Result<&[u8], String> {
    if body.len() < 5 {
        return Err("the gRPC frame is truncated".into());
    }
    if body[0] != 0 {
        return Err("compressed messages are not accepted".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(format!(
            "the gRPC frame says {len} bytes but carries {}",
            body.len() - 5
        ));
    }
    Ok(&body[5..])
}

/// The HTTP status of a gRPC code, as grpc-gateway maps them.
pub(crate) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The refusal as its caller speaks: a gRPC status, or `http` with the message.
pub(crate) fn refuse(grpc: bool, status: Status, http: StatusCode) -> Response {
    if grpc {
        status.into_http::<Body>().into_response()
    } else {
        (http, status.message().to_string()).into_response()
    }
}

/// Reads the body under its route's limit, taking room in the in-flight budget as bytes
/// arrive; the room is held until the response is ready.
pub(crate) async fn limit_bodies(State(api): State<Api>, req: Request, next: Next) -> Response {
    let grpc = is_grpc(req.headers());
    let path = req.uri().path().to_string();
    // gRPC frames add 5 bytes to the message.
    let limit = body_limit(&path, api.cfg.max_message_bytes) + 5;
    let too_large = |n: usize| {
        refuse(
            grpc,
            Status::resource_exhausted(format!(
                "{path}: the request body exceeds {n} bytes, the limit of this call"
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return too_large(limit);
    }
    let (parts, mut body) = req.into_parts();
    // Room is taken for the whole body at once, as soon as its size is known (the
    // Content-Length, or the gRPC frame's length prefix): requests that each took part
    // of the budget and waited for the rest would wait for each other forever.
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut reserved = 0usize;
    if let Some(len) = declared {
        match acquire(&api.budget, len).await {
            Some(p) => (held, reserved) = (Some(p), len),
            None => return busy(grpc, &api.budget),
        }
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return refuse(
                    grpc,
                    Status::invalid_argument(format!("cannot read the request body: {e}")),
                    StatusCode::BAD_REQUEST,
                );
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return too_large(limit);
        }
        bytes.extend_from_slice(&data);
        // What this body will hold: its frame's declared size once the prefix arrived,
        // else what arrived so far.
        let want = if grpc && bytes.len() >= 5 {
            let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            (5 + len).max(bytes.len())
        } else {
            bytes.len()
        };
        if want > limit {
            return too_large(limit);
        }
        if want > reserved {
            // Give back what is held and take the whole amount in one go.
            drop(held.take());
            match acquire(&api.budget, want).await {
                Some(p) => (held, reserved) = (Some(p), want),
                None => return busy(grpc, &api.budget),
            }
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(held);
    response
}

/// Room for `bytes` in the budget, waiting up to [`BUDGET_WAIT`].
async fn acquire(budget: &Budget, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
    tokio::time::timeout(BUDGET_WAIT, budget.units.clone().acquire_many_owned(units))
        .await
        .ok()?
        .ok()
}

fn busy(grpc: bool, budget: &Budget) -> Response {
    refuse(
        grpc,
        Status::resource_exhausted(format!(
            "the server holds {} bytes of request bodies already; retry later",
            budget.total
        )),
        StatusCode::SERVICE_UNAVAILABLE,
    )
}

/// Every call runs in a span named `rpc` with its path, and the execution it names once a
/// handler has read it (for traces: `--otlp-endpoint`).
pub(crate) async fn trace_calls(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "rpc",
        rpc.method = %req.uri().path(),
        execution = tracing::field::Empty,
        grpc.status = tracing::field::Empty,
    );
    let response = next.run(req).instrument(span.clone()).await;
    if let Some(code) = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
    {
        span.record("grpc.status", code);
    }
    response
}

/// tonic answers a request it cannot decode with INTERNAL; the caller sent it, so it is
/// INVALID_ARGUMENT.
pub(crate) async fn decode_errors_are_invalid(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    let decode = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode")
        });
    if internal && decode {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        // The decoder names every level it was in: keep the outermost and the reason.
        if let Some(msg) = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(|m| {
                percent_encoding::percent_decode_str(m)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            && msg.len() > crate::error::MAX_MESSAGE
        {
            let short = crate::error::shorten(&msg);
            let encoded =
                percent_encoding::utf8_percent_encode(&short, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                headers.insert("grpc-message", v);
            }
        }
    }
    response
}

/// Routes nothing serves: gRPC callers get UNIMPLEMENTED naming the method, others 404.
pub(crate) async fn fallback(req: Request) -> Response {
    let path = req.uri().path().to_string();
    if is_grpc(req.headers()) {
        return Status::unimplemented(format!("{path}: no such method"))
            .into_http::<Body>()
            .into_response();
    }
    (StatusCode::NOT_FOUND, format!("{path}: not found")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_small_and_writes_may_carry_data() {
        let max = 64 << 20;
        assert_eq!(
            body_limit("/flyteidl.service.AdminService/ListTasks", max),
            SMALL_REQUEST_BYTES
        );
        assert_eq!(
            body_limit("/flyteidl.service.AdminService/CreateWorkflow", max),
            max
        );
        assert_eq!(
            body_limit("/flyteidl.service.SignalService/SetSignal", max),
            max
        );
        assert_eq!(body_limit("/upload/uploads/x", max), max);
        assert_eq!(body_limit("/healthcheck", max), SMALL_REQUEST_BYTES);
    }
}
