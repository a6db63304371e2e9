//! `contrail`: the single binary. Parses configuration, opens the embedded store and blob
//! directory, and serves the Flyte API (gRPC + HTTP on one address) and the S3-compatible
//! object endpoint. The only crate that names concrete adapters.

mod s3;

use clap::{Parser, Subcommand};
use contrail_api::{Api, ApiConfig};
use contrail_blob::BlobStore;
use contrail_store_sqlite::SqliteStore;
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
    /// Run the server: Flyte gRPC API and HTTP on --addr, S3-compatible blobs on --s3-addr.
    Start(StartArgs),
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

    /// Optional config file with `key = "value"` lines (addr, s3_addr, data_dir, public_url,
    /// bucket, s3_access_key, s3_secret_key). Flags and environment variables win over it.
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
}

/// `key = "value"` lines; `#` starts a comment.
fn read_config(path: &Path) -> Result<std::collections::BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{}:{}: expected key = \"value\"", path.display(), i + 1))?;
        out.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::Start(args) => rt.block_on(start(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contrail: {e}");
            std::process::ExitCode::FAILURE
        }
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
            std::fs::write(&path, key)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
    }
}

async fn start(args: StartArgs) -> Result<(), String> {
    let file = match &args.config {
        Some(p) => read_config(p)?,
        None => Default::default(),
    };
    let pick = |flag: &Option<String>, key: &str, default: &str| {
        flag.clone()
            .or_else(|| file.get(key).cloned())
            .unwrap_or_else(|| default.to_string())
    };
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

    std::fs::create_dir_all(data_dir.join("blobs").join(&bucket))
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let store = SqliteStore::open(&data_dir.join("contrail.db")).map_err(|e| e.to_string())?;
    let blob = BlobStore::new(
        data_dir.join("blobs"),
        bucket.clone(),
        signing_key(&data_dir)?,
    );

    let api_addr = resolve(&addr).await?;
    let s3_sock = resolve(&s3_addr).await?;
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let s3_listener = tokio::net::TcpListener::bind(s3_sock)
        .await
        .map_err(|e| format!("cannot listen on {s3_addr}: {e}"))?;
    let bound = api_listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = args
        .public_url
        .clone()
        .or_else(|| file.get("public_url").cloned())
        .unwrap_or_else(|| format!("http://{bound}"));

    let api = Api::new(
        Arc::new(store),
        blob,
        ApiConfig {
            public_url,
            ..Default::default()
        },
    );
    api.seed().map_err(|e| e.to_string())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    tracing::info!(api = %bound, s3 = %s3_listener.local_addr().map_err(|e| e.to_string())?, data_dir = %data_dir.display(), bucket, "contrail started");
    let s3_task = tokio::spawn(s3::serve(
        s3_listener,
        data_dir.join("blobs"),
        access_key,
        secret_key,
        stop_rx.clone(),
    ));
    let mut rx = stop_rx.clone();
    axum::serve(api_listener, api.router())
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| format!("api server: {e}"))?;
    s3_task.await.map_err(|e| e.to_string())??;
    tracing::info!("contrail stopped");
    Ok(())
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
