//! `contrail`: the single binary. Parses configuration, opens the embedded store and blob
//! directory, and serves the Flyte API (gRPC + HTTP on one address) and the S3-compatible
//! object endpoint. The only crate that names concrete adapters.

mod catalog_cli;
mod config;
mod net;
mod otel;
mod security;
mod telemetry;
mod terminal;

use clap::{Parser, Subcommand};
use contrail_api::{Api, ApiConfig, S3Access};
use contrail_blob::BlobStore;
use contrail_controller::{
    ChildRequest, Config as ControllerConfig, Controller, LaunchError, Launcher,
};
use contrail_engine::Config as EngineConfig;
use contrail_executor::Executor;
use contrail_executor::routing::Router;
use contrail_executor_k8s::K8sExecutor;
use contrail_executor_local::{LocalConfig, LocalExecutor};
use contrail_executor_slurm::SlurmExecutor;
use contrail_store::Store;
use contrail_store_postgres::PgStore;
use contrail_store_sqlite::SqliteStore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Contrail: a Flyte-compatible workflow engine in one binary.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: Flyte gRPC API and HTTP on --addr, S3-compatible blobs on --s3-addr,
    /// and the controller that runs executions.
    Start(Box<StartArgs>),
    /// Where cached outputs came from and who reused them:
    /// `contrail lineage [<project>/<domain>/]<execution>[/<node>]`.
    Lineage {
        /// `[<project>/<domain>/]<execution>[/<node>]`
        target: String,
        #[arg(long, env = "CONTRAIL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// `postgres://...`; default: the SQLite file in the data directory.
        #[arg(long, env = "CONTRAIL_DATABASE")]
        database: Option<String>,
        #[arg(long, default_value = "flytesnacks")]
        project: String,
        #[arg(long, default_value = "development")]
        domain: String,
    },
    /// List or delete cached task outputs.
    Cache {
        #[command(subcommand)]
        cmd: catalog_cli::CacheCmd,
        #[arg(long, env = "CONTRAIL_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
        /// `postgres://...`; default: the SQLite file in the data directory.
        #[arg(long, env = "CONTRAIL_DATABASE", global = true)]
        database: Option<String>,
    },
    /// Live replicas sharing the database, with the executions each owns.
    Replicas {
        /// `postgres://...`; default: the SQLite file in the data directory.
        #[arg(long, env = "CONTRAIL_DATABASE")]
        database: Option<String>,
        #[arg(long, env = "CONTRAIL_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Manage who may call this server: OAuth2 clients and static tokens.
    Auth {
        #[command(subcommand)]
        cmd: security::AuthCmd,
        #[arg(long, env = "CONTRAIL_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
        /// The server's config file (its `[auth] dir` says where the registry is).
        #[arg(long, env = "CONTRAIL_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Follow an execution: its node tree with phases and a progress bar, until it ends.
    /// Exits non-zero unless it succeeded, after printing the error and the failed
    /// node's log tail.
    Watch {
        /// The execution's name.
        execution: String,
        #[command(flatten)]
        target: terminal::Target,
    },
    /// Executions on a server.
    Executions {
        #[command(subcommand)]
        cmd: ExecutionsCmd,
    },
    /// Internal: supervise one task attempt (started by the local executor).
    #[command(hide = true)]
    Supervise {
        /// The attempt directory.
        dir: PathBuf,
    },
    /// Internal: the resident supervisor of task attempts (started by the local executor).
    #[command(hide = true, name = "supervise-daemon")]
    SuperviseDaemon {
        /// The Unix socket it serves.
        socket: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ExecutionsCmd {
    /// The newest executions of a project and domain.
    Ls {
        #[command(flatten)]
        target: terminal::Target,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only executions in this phase (e.g. FAILED).
        #[arg(long)]
        phase: Option<String>,
    },
}

/// Which parts of Contrail this process runs. They meet only through the store.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// API, S3 endpoint and controller in one process.
    All,
    /// API and S3 endpoint only.
    Api,
    /// Controller only (tasks reach the S3 endpoint at --s3-addr).
    Controller,
}

#[derive(Parser, Debug)]
struct StartArgs {
    /// Address of the Flyte API (gRPC AdminService/DataProxyService and HTTP routes).
    /// Flyte sandbox configs use localhost:30080.
    #[arg(long, env = "CONTRAIL_ADDR", default_value = "localhost:30080")]
    addr: String,

    /// Address of the embedded S3-compatible object endpoint serving the blob directory.
    /// Flyte sandbox configs use localhost:30002.
    #[arg(long, env = "CONTRAIL_S3_ADDR", default_value = "localhost:30002")]
    s3_addr: String,

    /// Directory holding the SQLite database (contrail.db) and blobs (blobs/<bucket>/...).
    /// Default: ~/.contrail. Also settable in the config file as `data_dir = "..."`.
    #[arg(long, env = "CONTRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Optional TOML config file: the settings flags take (addr, s3_addr, data_dir,
    /// public_url, bucket, database, blob_*, ...), `[executors.NAME]` and `[routing]` (see
    /// the README). Flags and environment variables win over it.
    #[arg(long, env = "CONTRAIL_CONFIG")]
    config: Option<PathBuf>,

    /// Base URL clients use for signed upload/download URLs. Default: http://<addr>.
    #[arg(long, env = "CONTRAIL_PUBLIC_URL")]
    public_url: Option<String>,

    /// Bucket name under which blobs are addressed (s3://<bucket>/...).
    #[arg(long, env = "CONTRAIL_BUCKET")]
    bucket: Option<String>,

    /// Access key the S3 endpoint accepts (give the same to flytekit's storage config).
    #[arg(long, env = "CONTRAIL_S3_ACCESS_KEY")]
    s3_access_key: Option<String>,

    /// Secret key the S3 endpoint accepts.
    #[arg(long, env = "CONTRAIL_S3_SECRET_KEY")]
    s3_secret_key: Option<String>,

    /// Which parts to run.
    #[arg(long, env = "CONTRAIL_ROLE", value_enum, default_value = "all")]
    role: Role,

    /// Keep blobs in an object store instead of the data directory: `s3://BUCKET`
    /// (`gs://BUCKET` and `az://CONTAINER` in builds with the `gcp` / `azure` features).
    /// The embedded S3 endpoint is then off. Config file: `blob_store`.
    #[arg(long, env = "CONTRAIL_BLOB_STORE")]
    blob_store: Option<String>,

    /// The object store's S3 endpoint (`http://HOST:PORT` for S3-compatible servers);
    /// unset for AWS itself. Config file: `blob_endpoint`.
    #[arg(long, env = "CONTRAIL_BLOB_ENDPOINT")]
    blob_endpoint: Option<String>,

    /// The object store's region (default us-east-1). Config file: `blob_region`.
    #[arg(long, env = "CONTRAIL_BLOB_REGION")]
    blob_region: Option<String>,

    /// Access key for the object store (else the standard AWS_* environment and
    /// credential chain). Config file: `blob_access_key`.
    #[arg(long, env = "CONTRAIL_BLOB_ACCESS_KEY")]
    blob_access_key: Option<String>,

    /// Secret key for the object store. Config file: `blob_secret_key`.
    #[arg(long, env = "CONTRAIL_BLOB_SECRET_KEY")]
    blob_secret_key: Option<String>,

    /// The state store: `postgres://USER:PASS@HOST:PORT/DB` for replicas sharing one
    /// database. Default: the SQLite file `contrail.db` in the data directory.
    #[arg(long, env = "CONTRAIL_DATABASE")]
    database: Option<String>,

    /// This replica's name in leases and `contrail replicas`. Default: `local` on SQLite
    /// (a restart re-takes its own leases at once), `<host>-<pid>` on PostgreSQL.
    #[arg(long, env = "CONTRAIL_REPLICA_ID")]
    replica_id: Option<String>,

    /// How long a controller replica's lease on an execution lasts without renewal: the
    /// longest a dead replica's executions wait for another replica.
    #[arg(long, env = "CONTRAIL_LEASE_TTL_MS", default_value_t = 10_000)]
    lease_ttl_ms: u64,

    /// Default maximum number of task nodes running at once per execution (0 = unlimited);
    /// an execution's or launch plan's own max_parallelism wins.
    #[arg(long, env = "CONTRAIL_MAX_PARALLELISM", default_value_t = 25)]
    max_parallelism: u32,

    /// After downtime, the most fires of one schedule created to catch up (the latest;
    /// older missed fires are skipped and logged).
    #[arg(long, env = "CONTRAIL_SCHEDULE_CATCH_UP", default_value_t = 100)]
    schedule_catch_up: usize,

    /// How often every unfinished execution is looked at even without a wake-up.
    #[arg(long, env = "CONTRAIL_RESYNC_MS", default_value_t = 1000)]
    resync_ms: u64,

    /// Fail executions that run longer than this many seconds (0 = no limit).
    #[arg(long, env = "CONTRAIL_WORKFLOW_TIMEOUT_SECS", default_value_t = 0)]
    workflow_timeout_secs: u64,

    /// Delay before a failed task's second attempt (doubles per attempt, up to 30 s).
    #[arg(long, env = "CONTRAIL_RETRY_BACKOFF_MS", default_value_t = 500)]
    retry_backoff_ms: u64,

    /// Map a container image to a local Python environment: IMAGE=DIR (DIR/bin goes first
    /// on PATH). IMAGE may end in `*` to match a prefix. Repeatable.
    #[arg(
        long = "task-image",
        env = "CONTRAIL_TASK_IMAGES",
        value_delimiter = ','
    )]
    task_images: Vec<String>,

    /// Directories put first on PYTHONPATH for tasks (your source, for registrations made
    /// without fast registration). Repeatable.
    #[arg(
        long = "task-pythonpath",
        env = "CONTRAIL_TASK_PYTHONPATH",
        value_delimiter = ','
    )]
    task_pythonpath: Vec<PathBuf>,

    /// Run flytekit tasks in processes forked from a warm Python worker per Python
    /// environment (milliseconds per task instead of two interpreter starts). `false`:
    /// every task starts its own interpreters.
    #[arg(long, env = "CONTRAIL_WARM_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    warm_workers: bool,

    /// CPU (millicores) local tasks may request in all. Default: 1000 per core.
    #[arg(long, env = "CONTRAIL_TASK_CPU")]
    task_cpu: Option<u64>,

    /// Memory (MiB) local tasks may request in all. Default: the machine's memory.
    #[arg(long, env = "CONTRAIL_TASK_MEMORY_MIB")]
    task_memory_mib: Option<u64>,

    /// CPU (millicores) a task that requests none counts with.
    #[arg(long, env = "CONTRAIL_DEFAULT_TASK_CPU", default_value_t = 250)]
    default_task_cpu: u64,

    /// Memory (MiB) a task that requests none counts with.
    #[arg(long, env = "CONTRAIL_DEFAULT_TASK_MEMORY_MIB", default_value_t = 256)]
    default_task_memory_mib: u64,

    /// MiB of request bodies held in memory at once, over all requests (at least the
    /// 64 MiB message limit); a request waits up to 10 s for room, then is refused.
    #[arg(long, env = "CONTRAIL_MAX_INFLIGHT_MIB", default_value_t = 64)]
    max_inflight_mib: usize,

    /// Require a token on every call (OAuth2 client credentials, static tokens, or an
    /// external OIDC issuer; see the README's Security section). Also on when the config
    /// file has an `[auth]` table.
    #[arg(long, env = "CONTRAIL_AUTH")]
    auth: bool,

    /// Serve a non-loopback address without authentication anyway (a warning is
    /// printed): anyone who reaches it can run commands as this user.
    #[arg(long, env = "CONTRAIL_INSECURE_ALLOW_REMOTE")]
    insecure_allow_remote: bool,

    /// TLS certificate chain (PEM) for the API and the S3 endpoint. Config: `tls_cert`.
    #[arg(long, env = "CONTRAIL_TLS_CERT")]
    tls_cert: Option<String>,

    /// TLS private key (PEM). Config: `tls_key`.
    #[arg(long, env = "CONTRAIL_TLS_KEY")]
    tls_key: Option<String>,

    /// Require client certificates signed by this CA (PEM). Config: `tls_client_ca`.
    #[arg(long, env = "CONTRAIL_TLS_CLIENT_CA")]
    tls_client_ca: Option<String>,

    /// Tasks one warm worker forks before it is replaced by a fresh one.
    #[arg(long, env = "CONTRAIL_WARM_MAX_FORKS", default_value_t = 500)]
    warm_max_forks: u32,

    /// Export trace spans (RPCs, controller passes) to this OpenTelemetry collector over
    /// OTLP/HTTP, e.g. `http://localhost:4318`. Off by default.
    #[arg(long, env = "CONTRAIL_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

fn main() -> std::process::ExitCode {
    // Supervisors must start fast and stay small: they skip argument parsing and logging.
    let mut argv = std::env::args_os().skip(1);
    if let (Some(sub), Some(path), None) = (argv.next(), argv.next(), argv.next()) {
        let path = std::path::Path::new(&path);
        if sub == "supervise" {
            let code = contrail_executor_local::supervisor::supervise(path);
            return std::process::ExitCode::from(code as u8);
        }
        if sub == "supervise-daemon" {
            // Its own log beside the socket (warm workers starting, failing, replaced).
            if let Ok(log) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path.with_extension("log"))
            {
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(log))
                    .init();
            }
            let mut options = contrail_executor_local::daemon::DaemonOptions::default();
            if let Some(n) = std::env::var("CONTRAIL_WARM_MAX_FORKS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                options.max_forks = n;
            }
            let code = contrail_executor_local::daemon::run_daemon(path, options);
            return std::process::ExitCode::from(code as u8);
        }
    }
    let cli = Cli::parse();
    let traces = match init_logging(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("contrail: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::Start(args) => rt.block_on(start(*args)),
        Command::Lineage {
            target,
            data_dir,
            database,
            project,
            domain,
        } => default_data_dir(data_dir)
            .and_then(|d| catalog_cli::lineage(&d, database.as_deref(), &target, &project, &domain))
            .map(|s| print!("{s}")),
        Command::Cache {
            cmd,
            data_dir,
            database,
        } => default_data_dir(data_dir)
            .and_then(|d| catalog_cli::cache(&d, database.as_deref(), cmd))
            .map(|s| print!("{s}")),
        Command::Replicas { database, data_dir } => {
            replicas(database, data_dir).map(|s| print!("{s}"))
        }
        Command::Auth {
            cmd,
            data_dir,
            config,
        } => default_data_dir(data_dir).and_then(|d| {
            let file = match &config {
                Some(p) => config::FileConfig::read(p)?,
                None => config::FileConfig::default(),
            };
            security::auth_cli(cmd, &security::auth_dir(&file, &d)).map(|s| print!("{s}"))
        }),
        Command::Watch { execution, target } => rt.block_on(terminal::watch(&target, &execution)),
        Command::Executions {
            cmd:
                ExecutionsCmd::Ls {
                    target,
                    limit,
                    phase,
                },
        } => rt
            .block_on(terminal::list(
                &target,
                limit.clamp(1, 1000),
                phase.as_deref(),
            ))
            .map(|s| print!("{s}")),
        Command::Supervise { .. } | Command::SuperviseDaemon { .. } => Ok(()),
    };
    if let Some(provider) = traces {
        // Sends the spans still batched.
        if let Err(e) = provider.shutdown() {
            eprintln!("contrail: cannot flush traces: {e}");
        }
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contrail: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (`RUST_LOG`, default `info`); with `start --otlp-endpoint`, spans also go
/// to that collector (the provider is returned to be flushed at exit).
fn init_logging(cli: &Cli) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let endpoint = match &cli.command {
        Command::Start(args) => args.otlp_endpoint.clone(),
        _ => None,
    };
    match endpoint {
        Some(endpoint) => {
            let (spans, provider) = otel::layer(&endpoint)?;
            tracing_subscriber::registry().with(logs).with(spans).init();
            Ok(Some(provider))
        }
        None => {
            tracing_subscriber::registry().with(logs).init();
            Ok(None)
        }
    }
}

fn default_data_dir(d: Option<PathBuf>) -> Result<PathBuf, String> {
    match d {
        Some(d) => Ok(d),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".contrail"))
            .ok_or_else(|| "HOME is not set; pass --data-dir".to_string()),
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

fn signing_key(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join("signing.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => Ok(k),
        _ => {
            let key: [u8; 32] = rand::random();
            contrail_auth::keys::write_private(&path, &key).map_err(|e| e.to_string())?;
            Ok(key.to_vec())
        }
    }
}

async fn start(args: StartArgs) -> Result<(), String> {
    let file = match &args.config {
        Some(p) => config::FileConfig::read(p)?,
        None => config::FileConfig::default(),
    };
    // A setting from its flag (or environment), else the config file.
    let setting = |flag: &Option<String>, key: &str| flag.clone().or_else(|| file.get(key));
    let pick = |flag: &Option<String>, key: &str, default: &str| {
        setting(flag, key).unwrap_or_else(|| default.to_string())
    };
    let lease_ttl = lease_ttl(&args);
    let data_dir = match args
        .data_dir
        .clone()
        .or_else(|| file.get("data_dir").map(PathBuf::from))
    {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".contrail"))
            .ok_or("HOME is not set; pass --data-dir")?,
    };
    // Flags carry defaults, so a config-file value applies only when the flag was left at it.
    let addr = if args.addr == "localhost:30080" {
        pick(&None, "addr", &args.addr)
    } else {
        args.addr.clone()
    };
    let s3_addr = if args.s3_addr == "localhost:30002" {
        pick(&None, "s3_addr", &args.s3_addr)
    } else {
        args.s3_addr.clone()
    };
    let bucket = pick(&args.bucket, "bucket", "contrail");
    let access_key = pick(&args.s3_access_key, "s3_access_key", "contrail");
    let secret_key = pick(&args.s3_secret_key, "s3_secret_key", "contrail-secret");

    security::harden_data_dir(&data_dir)?;
    std::fs::create_dir_all(data_dir.join("blobs").join(&bucket))
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let database = setting(&args.database, "database");
    let shared_db = database.is_some();
    let store = {
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || open_store(database.as_deref(), &data_dir, lease_ttl))
            .await
            .map_err(|e| e.to_string())??
    };
    let replica = args.replica_id.clone().unwrap_or_else(|| {
        if shared_db {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into());
            format!("{host}-{}", std::process::id())
        } else {
            "local".into()
        }
    });
    let remote = setting(&args.blob_store, "blob_store").map(|url| {
        contrail_blob_object_store::RemoteConfig {
            url,
            endpoint: setting(&args.blob_endpoint, "blob_endpoint"),
            region: pick(&args.blob_region, "blob_region", "us-east-1"),
            access_key: setting(&args.blob_access_key, "blob_access_key"),
            secret_key: setting(&args.blob_secret_key, "blob_secret_key"),
        }
    });
    // What tasks (FLYTE_AWS_*) and presigned links use to reach the blobs.
    let (blob, blob_access) = match &remote {
        None => (
            BlobStore::new(
                data_dir.join("blobs"),
                bucket.clone(),
                signing_key(&data_dir)?,
            ),
            S3Access {
                endpoint: format!("http://{s3_addr}"),
                region: "us-east-1".into(),
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
            },
        ),
        Some(cfg) => (
            contrail_blob_object_store::open(cfg, data_dir.join("blobs"))
                .map_err(|e| e.to_string())?,
            S3Access {
                endpoint: cfg.endpoint.clone().unwrap_or_default(),
                region: cfg.region.clone(),
                access_key: cfg.access_key.clone().unwrap_or_default(),
                secret_key: cfg.secret_key.clone().unwrap_or_default(),
            },
        ),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let s3_sock = resolve(&s3_addr).await?;
    let controller = if args.role != Role::Api {
        let c = controller(
            &args,
            &file,
            &data_dir,
            &replica,
            store.clone(),
            blob.clone(),
            task_endpoints(&blob_access, &addr),
        )
        .await?;
        // The API the controller's own callers use (child executions, schedules): the same
        // executors as the served API, so a cluster label is accepted there as here.
        let internal = || ApiConfig {
            executors: file.executor_names(),
            ..ApiConfig::default()
        };
        c.set_launcher(Arc::new(ChildLauncher(Api::new(
            store.clone(),
            blob.clone(),
            internal(),
        ))));
        let mut rx = stop_rx.clone();
        let run = tokio::spawn(c.clone().run(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        // Launch plans with schedules fire from the replicas that run executions.
        let waker = c.clone();
        let scheduler = contrail_api::schedule::Scheduler::new(
            Api::new(store.clone(), blob.clone(), internal())
                .with_wake(Arc::new(move |k| waker.wake(k.clone()))),
            args.schedule_catch_up,
        );
        // Notifications leave the outbox from the same replicas.
        let public = args
            .public_url
            .clone()
            .or_else(|| file.get("public_url"))
            .unwrap_or_else(|| format!("http://{addr}"));
        let deliverer = contrail_notify::Deliverer::new(file.notifications.clone(), &public)?;
        let mut rx = stop_rx.clone();
        tokio::spawn(contrail_notify::run(
            store.clone(),
            Arc::new(deliverer),
            contrail_controller::now_nanos,
            std::time::Duration::from_millis(500),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        let mut rx = stop_rx.clone();
        tokio::spawn(scheduler.run(
            contrail_controller::now_nanos,
            std::time::Duration::from_secs(1),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        Some((c, run))
    } else {
        tokio::spawn(api_heartbeat(store.clone(), replica.clone(), lease_ttl));
        None
    };
    if args.role == Role::Controller {
        tracing::info!(data_dir = %data_dir.display(), replica, "contrail controller started");
        if let Some((_, run)) = controller {
            // Returns after the stop signal, once its leases are released.
            let _ = run.await;
        }
        tracing::info!("contrail stopped");
        return Ok(());
    }
    let auth = security::authenticator(args.auth, &file, &data_dir).await?;
    let tls = match (
        setting(&args.tls_cert, "tls_cert"),
        setting(&args.tls_key, "tls_key"),
    ) {
        (Some(cert), Some(key)) => Some(net::acceptor(&net::TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: setting(&args.tls_client_ca, "tls_client_ca").map(PathBuf::from),
        })?),
        (None, None) => None,
        _ => return Err("TLS needs both --tls-cert and --tls-key".into()),
    };
    let api_addr = resolve(&addr).await?;
    let mut exposed = vec![api_addr];
    if blob.is_local() {
        exposed.push(s3_sock);
    }
    security::check_exposure(&exposed, auth.is_some(), args.insecure_allow_remote)?;
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // The embedded S3 endpoint serves the data directory's blobs, so it runs only when
    // blobs live there.
    let s3_listener = if blob.is_local() {
        let l = tokio::net::TcpListener::bind(s3_sock)
            .await
            .map_err(|e| format!("cannot listen on {s3_addr}: {e}"))?;
        Some(l)
    } else {
        None
    };
    let bound = api_listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = args
        .public_url
        .clone()
        .or_else(|| file.get("public_url"))
        .unwrap_or_else(|| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{bound}")
        });

    let s3_blob = blob.clone();
    let mut api = Api::new(
        store,
        blob,
        ApiConfig {
            public_url,
            s3: blob_access.clone(),
            executors: file.executor_names(),
            task_policy: file.auth.as_ref().and_then(|a| a.task_policy.clone()),
            max_inflight_bytes: args.max_inflight_mib.saturating_mul(1 << 20),
            log_roots: [data_dir.join("attempts")]
                .into_iter()
                .chain(file.log_dirs())
                .collect(),
            ..Default::default()
        },
    );
    let mut controller_run = None;
    let mut refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    if let Some((c, run)) = controller {
        let gauges = c.clone();
        refresh = Arc::new(move || gauges.report_gauges());
        api = api.with_wake(Arc::new(move |k| c.wake(k.clone())));
        controller_run = Some(run);
    }
    if let Some(handle) = telemetry::install() {
        api = api.with_metrics(Arc::new(move || {
            telemetry::render(&handle, refresh.as_ref())
        }));
    }
    if let Some(auth) = &auth {
        api = api.with_auth(auth.clone());
    }
    api.seed().map_err(|e| e.to_string())?;

    let s3 = match &s3_listener {
        Some(l) => l.local_addr().map_err(|e| e.to_string())?.to_string(),
        None => s3_blob.uri(""),
    };
    tracing::info!(
        api = %bound,
        s3,
        data_dir = %data_dir.display(),
        auth = auth.is_some(),
        tls = tls.is_some(),
        "contrail started"
    );
    let s3_task = s3_listener.map(|listener| {
        tokio::spawn(net::serve(
            listener,
            contrail_s3::service(
                s3_blob,
                access_key,
                secret_key,
                auth.clone().map(|a| -> contrail_s3::KeyLookup {
                    Arc::new(move |key: &str| a.s3_secret(key))
                }),
            ),
            tls.clone(),
            stop_rx.clone(),
        ))
    });
    net::serve(
        api_listener,
        hyper_util::service::TowerToHyperService::new(api.router()),
        tls,
        stop_rx.clone(),
    )
    .await;
    if let Some(task) = s3_task {
        task.await.map_err(|e| e.to_string())?;
    }
    if let Some(run) = controller_run {
        let _ = run.await;
    }
    tracing::info!("contrail stopped");
    Ok(())
}

/// Lets the controller create child executions through the API's own validation.
struct ChildLauncher(Api);

impl Launcher for ChildLauncher {
    fn launch_child(&self, req: ChildRequest) -> Result<(), LaunchError> {
        use contrail_api::ApiError;
        match self
            .0
            .create_child_execution(req.child, req.spec, req.inputs)
        {
            Ok(()) => Ok(()),
            Err(e @ (ApiError::Invalid(_) | ApiError::NotFound(_))) => {
                Err(LaunchError::Invalid(e.to_string()))
            }
            Err(e) => Err(LaunchError::Unavailable(e.to_string())),
        }
    }
}

/// Total memory of this machine, from /proc/meminfo (0 when unknown: no memory admission).
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}

/// What a task needs to reach the blob store and (eager workflows) the admin API.
fn task_endpoints(blobs: &S3Access, api_addr: &str) -> Vec<(String, String)> {
    [
        ("FLYTE_AWS_ENDPOINT", blobs.endpoint.clone()),
        ("FLYTE_AWS_ACCESS_KEY_ID", blobs.access_key.clone()),
        ("FLYTE_AWS_SECRET_ACCESS_KEY", blobs.secret_key.clone()),
        ("FLYTE_PLATFORM_URL", api_addr.to_string()),
        ("FLYTE_PLATFORM_INSECURE", "true".to_string()),
    ]
    .into_iter()
    // Unset ones (AWS itself, credentials from the environment) are left to flytekit.
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn controller(
    args: &StartArgs,
    file: &config::FileConfig,
    data_dir: &Path,
    replica: &str,
    store: Arc<dyn Store>,
    blob: BlobStore,
    endpoints: Vec<(String, String)>,
) -> Result<Arc<Controller>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut base_env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("CONTRAIL_"))
        .collect();
    base_env.extend(endpoints.iter().cloned());
    let images = args
        .task_images
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(i, d)| (i.to_string(), PathBuf::from(d)))
                .ok_or_else(|| format!("--task-image {m}: expected IMAGE=DIR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let executor = LocalExecutor::new(
        LocalConfig {
            attempts_dir: data_dir.join("attempts"),
            supervisor: vec![exe.to_string_lossy().into_owned(), "supervise".into()],
            daemon: vec![
                exe.to_string_lossy().into_owned(),
                "supervise-daemon".into(),
            ],
            daemon_socket: data_dir.join("supervisor.sock"),
            daemon_env: vec![(
                "CONTRAIL_WARM_MAX_FORKS".into(),
                args.warm_max_forks.to_string(),
            )],
            base_env,
            secrets_dir: data_dir.join("secrets"),
            images,
            python_path: args.task_pythonpath.clone(),
            cpu_millis: args.task_cpu.unwrap_or(cpus * 1000),
            memory_bytes: args
                .task_memory_mib
                .map_or_else(machine_memory, |m| m << 20),
            default_cpu_millis: args.default_task_cpu,
            default_memory_bytes: args.default_task_memory_mib << 20,
            warm_workers: args.warm_workers,
            code_cache: data_dir.join("code"),
        },
        blob.clone(),
    );
    let cfg = ControllerConfig {
        engine: EngineConfig {
            max_parallelism: args.max_parallelism,
            backoff_base: args.retry_backoff_ms as i64 * 1_000_000,
            workflow_timeout: (args.workflow_timeout_secs > 0)
                .then(|| args.workflow_timeout_secs as i64 * 1_000_000_000),
            ..Default::default()
        },
        resync: std::time::Duration::from_millis(args.resync_ms.max(10)),
        replica: replica.to_string(),
        role: match args.role {
            Role::Controller => "controller",
            _ => "all",
        }
        .into(),
        lease_ttl: lease_ttl(args),
        ..Default::default()
    };
    let local = Arc::new(executor);
    {
        let local = local.clone();
        std::thread::spawn(move || local.warm_up());
    }
    let mut executors: BTreeMap<String, Arc<dyn Executor>> = BTreeMap::new();
    executors.insert(config::LOCAL.into(), local);
    for (name, section) in &file.executors {
        let executor: Arc<dyn Executor> = match section {
            config::ExecutorConfig::Local(_) => continue,
            config::ExecutorConfig::Slurm(slurm) => Arc::new(SlurmExecutor::new(
                (**slurm).clone(),
                blob.clone(),
                endpoints.clone(),
            )),
            config::ExecutorConfig::Kubernetes(k8s) => {
                let client = contrail_executor_k8s::client(k8s)
                    .await
                    .map_err(|e| format!("executor {name}: {e}"))?;
                Arc::new(K8sExecutor::new(
                    client,
                    (**k8s).clone(),
                    blob.clone(),
                    endpoints.clone(),
                    tokio::runtime::Handle::current(),
                ))
            }
        };
        executors.insert(name.clone(), executor);
    }
    let router = Router::new(file.routes(), executors).map_err(|e| format!("config: {e}"))?;
    Ok(Controller::new(store, blob, Arc::new(router), cfg))
}

/// `--lease-ttl-ms`, at least 300 ms.
fn lease_ttl(args: &StartArgs) -> std::time::Duration {
    std::time::Duration::from_millis(args.lease_ttl_ms.max(300))
}

/// The store a command-line tool reads: `--database`, else the data directory's SQLite
/// file if there is one.
pub(crate) fn open_existing_store(
    data_dir: &Path,
    database: Option<&str>,
) -> Result<Arc<dyn Store>, String> {
    if database.is_none() && !data_dir.join("contrail.db").exists() {
        return Err(format!(
            "no Contrail data in {} (pass --database for PostgreSQL)",
            data_dir.display()
        ));
    }
    // How long a command-line tool's database session may hold locks.
    open_store(database, data_dir, std::time::Duration::from_secs(5))
}

/// The store `--database` names (PostgreSQL), or the SQLite file in the data directory.
/// Blocking: connects and migrates.
pub(crate) fn open_store(
    database: Option<&str>,
    data_dir: &Path,
    lease_ttl: std::time::Duration,
) -> Result<Arc<dyn Store>, String> {
    match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // Half a lease: a paused replica's locks are gone before its leases expire.
            let store = PgStore::open(url, lease_ttl / 2).map_err(|e| format!("database: {e}"))?;
            Ok(Arc::new(store))
        }
        Some(other) => Err(format!(
            "--database {other:?}: expected postgres://USER:PASS@HOST:PORT/DB (leave it unset \
             for the embedded SQLite file)"
        )),
        None => {
            let store = SqliteStore::open(&data_dir.join("contrail.db"))
                .map_err(|e| format!("database: {e}"))?;
            Ok(Arc::new(store))
        }
    }
}

/// An API-only replica shows up in `contrail replicas` too.
async fn api_heartbeat(store: Arc<dyn Store>, replica: String, ttl: std::time::Duration) {
    let started_at = contrail_controller::now_nanos();
    let mut tick = tokio::time::interval(ttl / 3);
    loop {
        tick.tick().await;
        let now = contrail_controller::now_nanos();
        let record = contrail_store::ReplicaRecord {
            id: replica.clone(),
            role: "api".into(),
            started_at,
            seen_at: now,
            expires_at: now + ttl.as_nanos() as i64,
            leases: 0,
        };
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.heartbeat(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("heartbeat: {e}"),
            Err(e) => tracing::warn!("heartbeat: {e}"),
        }
    }
}

/// `contrail replicas`: one line per live replica.
fn replicas(database: Option<String>, data_dir: Option<PathBuf>) -> Result<String, String> {
    let data_dir = default_data_dir(data_dir)?;
    let store = open_existing_store(&data_dir, database.as_deref())?;
    let now = contrail_controller::now_nanos();
    let live = store.list_replicas(now).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<32} {:<10} {:>7} {:>12}\n",
        "REPLICA", "ROLE", "LEASES", "SEEN"
    );
    for r in live {
        let ago = (now - r.seen_at).max(0) as f64 / 1e9;
        out.push_str(&format!(
            "{:<32} {:<10} {:>7} {:>10.1}s ago\n",
            r.id, r.role, r.leases, ago
        ));
    }
    Ok(out)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}
