//! Task logs over HTTP: `/logs/{project}/{domain}/{execution}/{node}/{retry}/{index}`
//! (`?item=N` for a map task's item), streamed while the task runs.
//!
//! Only logs a task execution record names are served, and only files under the
//! configured log roots (the local executor's attempt directories): the route reads no
//! path a caller gives. The answer follows the file until the attempt ends, as `tail -f`
//! would, and stops at a bound on time.

use crate::error::ApiResult;
use crate::{Api, ApiError, blocking};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use contrail_auth::{Action, Principal};
use contrail_idl::{admin as a, core as c};
use contrail_store::ExecKey;
use prost::Message;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How long one answer follows a running task's log before it ends (the client asks
/// again from where it stopped, with `?offset=`).
const FOLLOW_FOR: Duration = Duration::from_secs(600);
/// How often a followed log is looked at for new lines.
const POLL: Duration = Duration::from_millis(200);
const CHUNK: usize = 64 * 1024;

#[derive(serde::Deserialize, Default)]
pub(crate) struct LogQuery {
    /// A map task item's logs instead of the node's.
    item: Option<u32>,
    /// Start at this byte.
    offset: Option<u64>,
    /// `false`: answer with what is there now and end.
    follow: Option<bool>,
}

/// The HTTP address of a log a task execution names, relative to the server.
pub(crate) fn log_path(
    exec: &c::WorkflowExecutionIdentifier,
    node: &str,
    retry: u32,
    index: usize,
    item: Option<u32>,
) -> String {
    let seg = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut path = format!(
        "/logs/{}/{}/{}/{}/{retry}/{index}",
        seg(&exec.project),
        seg(&exec.domain),
        seg(&exec.name),
        seg(node)
    );
    if let Some(item) = item {
        path.push_str(&format!("?item={item}"));
    }
    path
}

impl Api {
    /// Points the `file://` logs of a task execution at this server's log route.
    pub(crate) fn http_logs(&self, te: &mut a::TaskExecution) {
        let Some(id) = te.id.clone() else { return };
        let Some(ne) = id.node_execution_id.as_ref() else {
            return;
        };
        let Some(exec) = ne.execution_id.as_ref() else {
            return;
        };
        let base = self.cfg.public_url.trim_end_matches('/');
        // Only logs this server may serve get an HTTP address; others keep theirs.
        let servable = |uri: &str| {
            uri.strip_prefix("file://").is_some_and(|path| {
                self.cfg
                    .log_roots
                    .iter()
                    .any(|root| std::path::Path::new(path).starts_with(root))
            })
        };
        let Some(closure) = te.closure.as_mut() else {
            return;
        };
        let node_logs = std::iter::once((None, &mut closure.logs));
        let item_logs = closure
            .metadata
            .iter_mut()
            .flat_map(|m| m.external_resources.iter_mut())
            .map(|r| (Some(r.index), &mut r.logs));
        for (item, logs) in node_logs.chain(item_logs) {
            for (index, log) in logs.iter_mut().enumerate() {
                if servable(&log.uri) {
                    let path = log_path(exec, &ne.node_id, id.retry_attempt, index, item);
                    log.uri = format!("{base}{path}");
                }
            }
        }
    }

    /// The file a stored log names, if it is one this server may serve, and whether its
    /// attempt has ended.
    fn log_file(
        &self,
        key: &ExecKey,
        node: &str,
        retry: u32,
        index: usize,
        item: Option<u32>,
    ) -> ApiResult<(PathBuf, bool)> {
        let rec = self
            .store
            .get_task_execution(key, node, retry)?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "task execution {key}/{node}/{retry} does not exist"
                ))
            })?;
        let te = a::TaskExecution::decode(rec.record.as_slice())?;
        let closure = te.closure.unwrap_or_default();
        let (logs, phase) = match item {
            None => (closure.logs, closure.phase),
            Some(i) => {
                let resource = closure
                    .metadata
                    .unwrap_or_default()
                    .external_resources
                    .into_iter()
                    .filter(|r| r.index == i)
                    .max_by_key(|r| r.retry_attempt)
                    .ok_or_else(|| ApiError::NotFound(format!("item {i} has no logs")))?;
                (resource.logs, resource.phase)
            }
        };
        let log = logs
            .get(index)
            .ok_or_else(|| ApiError::NotFound(format!("no log {index} for this attempt")))?;
        let path = log.uri.strip_prefix("file://").ok_or_else(|| {
            ApiError::NotFound(format!(
                "log {index} is not on this server: {}",
                crate::error::shorten(&log.uri)
            ))
        })?;
        let path = std::fs::canonicalize(path)
            .map_err(|e| ApiError::NotFound(format!("log {index} cannot be read: {e}")))?;
        let allowed = self
            .cfg
            .log_roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .any(|root| path.starts_with(root));
        if !allowed {
            return Err(ApiError::NotFound(format!(
                "log {index} is outside this server's log directories"
            )));
        }
        let ended = matches!(
            c::task_execution::Phase::try_from(phase),
            Ok(c::task_execution::Phase::Succeeded
                | c::task_execution::Phase::Failed
                | c::task_execution::Phase::Aborted)
        );
        Ok((path, ended))
    }
}

fn refuse(e: ApiError) -> Response {
    let message = e.to_string();
    let status = crate::edge::http_status(tonic::Status::from(e).code());
    (status, message).into_response()
}

/// `GET /logs/...`: the log as plain text, followed while the attempt runs.
pub(crate) async fn serve(
    State(api): State<Api>,
    Path((project, domain, name, node, retry, index)): Path<(
        String,
        String,
        String,
        String,
        u32,
        usize,
    )>,
    Query(query): Query<LogQuery>,
    req: Request,
) -> Response {
    if api.auth.is_some() {
        let allowed = req
            .extensions()
            .get::<Principal>()
            .is_some_and(|p| p.grants.allows(Action::View, &project));
        if !allowed {
            return (
                StatusCode::FORBIDDEN,
                format!("viewing project {project} is not allowed"),
            )
                .into_response();
        }
    }
    let key = ExecKey {
        project,
        domain,
        name,
    };
    let item = query.item;
    let look = {
        let api = api.clone();
        let key = key.clone();
        let node = node.clone();
        move || api.log_file(&key, &node, retry, index, item)
    };
    let (path, ended) = match blocking(look.clone()).await {
        Ok(found) => found,
        Err(e) => return refuse(e),
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::NOT_FOUND, format!("cannot open the log: {e}")).into_response();
        }
    };
    let start = query.offset.unwrap_or(0);
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return (StatusCode::BAD_REQUEST, "offset: cannot seek there").into_response();
    }
    let follow = query.follow.unwrap_or(true) && !ended;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        let began = tokio::time::Instant::now();
        let mut buf = vec![0u8; CHUNK];
        let mut ended = !follow;
        let mut last_look = tokio::time::Instant::now();
        loop {
            match file.read(&mut buf).await {
                Ok(0) => {
                    if ended || began.elapsed() > FOLLOW_FOR {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                    if last_look.elapsed() >= Duration::from_secs(1) {
                        last_look = tokio::time::Instant::now();
                        // Ended: read what is left once more, then stop.
                        ended = matches!(blocking(look.clone()).await, Ok((_, true)) | Err(_));
                    }
                }
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
