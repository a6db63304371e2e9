//! The embedded S3-compatible endpoint over the blob directory (s3s + s3s-fs), so that
//! `s3://<bucket>/...` URIs are readable by any S3 client: flytekit's fsspec storage layer,
//! task processes, and clients on other machines.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(
    listener: TcpListener,
    root: PathBuf,
    access_key: String,
    secret_key: String,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let fs = s3s_fs::FileSystem::new(&root)
        .map_err(|e| format!("s3 endpoint over {}: {e:?}", root.display()))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(access_key, secret_key));
        b.build()
    };
    let http = Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, _)) => {
                    let conn = http.serve_connection(TokioIo::new(socket), service.clone());
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move { let _ = conn.await; });
                }
                Err(e) => tracing::warn!(error = %e, "s3 endpoint: accept failed"),
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}
