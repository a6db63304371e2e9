//! The Flyte wire contract. **API Boundary**: the only crate that knows gRPC and HTTP.
//!
//! Architecture Invariant: the API validates requests and writes desired state to the store;
//! it never calls the controller. Bad input is `INVALID_ARGUMENT` naming the field and
//! changes nothing; no handler returns `UNKNOWN`.

mod admin;
pub mod attributes;
mod auth;
mod authz;
mod console;
mod datacatalog;
mod dataproxy;
mod diff;
mod edge;
mod error;
mod executions;
pub mod list;
mod logs;
mod rest;
pub mod schedule;
mod signals;
mod spans;
mod validate;

pub use error::ApiError;
use error::ApiResult;

use contrail_blob::BlobStore;
use contrail_idl::datacatalog::data_catalog_server::DataCatalogServer;
use contrail_idl::service::admin_service_server::AdminServiceServer;
use contrail_idl::service::auth_metadata_service_server::AuthMetadataServiceServer;
use contrail_idl::service::data_proxy_service_server::DataProxyServiceServer;
use contrail_idl::service::signal_service_server::SignalServiceServer;
use contrail_store::{ProjectRecord, Store};
use std::sync::Arc;

/// Settings of the API edge.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL clients use to reach this server's HTTP routes (signed URLs point here).
    pub public_url: String,
    /// The domains every project has.
    pub domains: Vec<String>,
    /// Key prefix of uploaded objects.
    pub upload_prefix: String,
    /// Largest accepted gRPC message and upload body, in bytes (transport limit).
    pub max_message_bytes: usize,
    /// Largest accepted registration spec, in bytes (answered with INVALID_ARGUMENT).
    pub max_spec_bytes: usize,
    /// Bytes of request bodies held in memory at once, over all requests; a request
    /// waits up to 10 s for room, then gets RESOURCE_EXHAUSTED.
    pub max_inflight_bytes: usize,
    /// The S3 endpoint clients reach the blob store at, and its key pair: download links
    /// (decks) are SigV4-presigned URLs of it, as Flyte signs them with its object store.
    pub s3: S3Access,
    /// The configured executors: the values `execution_cluster_label` may take.
    pub executors: Vec<String>,
    /// With auth: the task types and images callers without admin rights may run.
    pub task_policy: Option<contrail_auth::TaskPolicy>,
    /// Directories whose files task logs may be served from (`/logs/...`).
    pub log_roots: Vec<std::path::PathBuf>,
}

/// How clients reach the blob store over S3.
#[derive(Debug, Clone)]
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_url: "http://localhost:30080".into(),
            domains: vec!["development".into(), "staging".into(), "production".into()],
            upload_prefix: "uploads".into(),
            max_message_bytes: 64 * 1024 * 1024,
            max_spec_bytes: 8 * 1024 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            s3: S3Access {
                endpoint: "http://localhost:30002".into(),
                region: "us-east-1".into(),
                access_key: "contrail".into(),
                secret_key: "contrail-secret".into(),
            },
            executors: vec!["local".into()],
            task_policy: None,
            log_roots: Vec::new(),
        }
    }
}

/// Runs synchronous work (store, blob, compilation) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    // The work stays inside the caller's span (an RPC's, for traces).
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| ApiError::Internal(format!("a blocking task failed: {e}")))?
}

/// The API state shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct Api {
    store: Arc<dyn Store>,
    blob: BlobStore,
    cfg: Arc<ApiConfig>,
    /// Told about every execution the API changes (a hint for the controller; optional).
    wake: Option<Wake>,
    /// Checks callers; `None` trusts every caller (loopback only).
    auth: Option<Arc<contrail_auth::Authenticator>>,
    /// Room for the request bodies held in memory at once.
    budget: edge::Budget,
    /// Renders the Prometheus text served at `/metrics`.
    metrics: Option<Metrics>,
}

/// Renders the process's metrics in the Prometheus text format.
pub type Metrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The compiled flyteidl schema, for reflection.
pub(crate) fn schema() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(contrail_idl::FILE_DESCRIPTOR_SET)
            .expect("the schema compiled into this binary decodes")
    })
}

/// `/metrics`: the Prometheus text format (404 when no recorder is installed).
async fn serve_metrics(
    axum::extract::State(api): axum::extract::State<Api>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match api.metrics.clone() {
        Some(render) => match tokio::task::spawn_blocking(move || render()).await {
            Ok(text) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response(),
            Err(e) => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render metrics: {e}"),
            )
                .into_response(),
        },
        None => (axum::http::StatusCode::NOT_FOUND, "no metrics here").into_response(),
    }
}

/// A hook the API calls after writing an execution's desired state.
pub type Wake = Arc<dyn Fn(&contrail_store::ExecKey) + Send + Sync>;

pub(crate) fn admin_ts(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

impl Api {
    pub fn new(store: Arc<dyn Store>, blob: BlobStore, cfg: ApiConfig) -> Self {
        Api {
            store,
            blob,
            wake: None,
            auth: None,
            metrics: None,
            budget: edge::Budget::new(cfg.max_inflight_bytes.max(cfg.max_message_bytes + 5)),
            cfg: Arc::new(cfg),
        }
    }

    /// Requires a valid token on every route but the open ones, and authorizes each
    /// gRPC call per project.
    pub fn with_auth(mut self, auth: Arc<contrail_auth::Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Serves `/metrics` (behind authentication when it is on).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Calls `wake` after every execution write (so a controller can react at once).
    pub fn with_wake(mut self, wake: Wake) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Creates the default project `flytesnacks` unless it exists (first start).
    pub fn seed(&self) -> Result<(), contrail_store::Error> {
        self.store.create_project(&ProjectRecord {
            id: "flytesnacks".into(),
            name: "flytesnacks".into(),
            description: "The default project".into(),
            labels: Vec::new(),
            state: 0,
        })?;
        Ok(())
    }

    fn now_nanos(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    }

    fn now_secs(&self) -> u64 {
        (self.now_nanos() / 1_000_000_000) as u64
    }

    /// The whole edge as one router: gRPC services plus the signed HTTP routes.
    pub fn router(&self) -> axum::Router {
        let max = self.cfg.max_message_bytes;
        let grpc = tonic::service::Routes::new(
            AdminServiceServer::new(self.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(20 * 1024 * 1024),
        )
        .add_service(DataProxyServiceServer::new(self.clone()).max_decoding_message_size(max))
        .add_service(SignalServiceServer::new(self.clone()).max_decoding_message_size(max))
        .add_service(DataCatalogServer::new(self.clone()).max_decoding_message_size(max));
        // As in flyteadmin, the auth metadata exists only when auth is on: a client set up
        // for auth against a server without it fails at once instead of sending secrets.
        let grpc = match &self.auth {
            Some(_) => grpc.add_service(AuthMetadataServiceServer::new(self.clone())),
            None => grpc,
        }
        .into_axum_router();
        let mut http = axum::Router::new();
        if self.auth.is_some() {
            http = http
                .route(
                    "/.well-known/oauth-authorization-server",
                    axum::routing::get(auth::well_known),
                )
                .route(
                    "/config/v1/flyte_client",
                    axum::routing::get(auth::flyte_client),
                )
                .route("/oauth2/token", axum::routing::post(auth::token))
                .route("/oauth2/jwks", axum::routing::get(auth::jwks));
        }
        let http = http
            .route("/upload/{*key}", axum::routing::put(dataproxy::put_upload))
            .route(
                "/download/{*key}",
                axum::routing::get(dataproxy::get_download),
            )
            .route("/healthcheck", axum::routing::get(|| async { "ok" }))
            .route("/metrics", axum::routing::get(serve_metrics))
            .route(
                "/logs/{project}/{domain}/{name}/{node}/{retry}/{index}",
                axum::routing::get(logs::serve),
            )
            .layer(axum::extract::DefaultBodyLimit::max(max))
            .with_state(self.clone());
        // Outermost first: body limits and the in-flight budget, then authentication,
        // then decode failures turned into INVALID_ARGUMENT.
        let edge = grpc
            .merge(http)
            .fallback(edge::fallback)
            .layer(axum::middleware::from_fn(edge::decode_errors_are_invalid))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                auth::guard,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                edge::limit_bodies,
            ))
            .layer(axum::middleware::from_fn(edge::trace_calls));
        // The REST routes transcode into gRPC calls sent through the whole edge above.
        axum::Router::new()
            .route("/api/v1/{*rest}", axum::routing::any(rest::serve))
            .with_state(rest::Gateway {
                edge: edge.clone(),
                max_message_bytes: max,
            })
            .route("/", axum::routing::get(console::root))
            .route("/console", axum::routing::get(console::home))
            .route(
                "/favicon.ico",
                axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route("/console/{*path}", axum::routing::get(console::page))
            .fallback_service(edge)
    }
}
