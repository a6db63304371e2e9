//! The edge in process: concurrent large requests share the in-flight budget without
//! starving each other, and bodies over a route's limit are refused before a handler.

use contrail_api::{Api, ApiConfig};
use std::sync::Arc;
use tower::ServiceExt;

fn api(max_message: usize, budget: usize) -> (Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        contrail_store_sqlite::SqliteStore::open(&dir.path().join("contrail.db")).unwrap(),
    );
    std::fs::create_dir_all(dir.path().join("blobs/contrail")).unwrap();
    let blob = contrail_blob::BlobStore::new(dir.path().join("blobs"), "contrail", vec![3; 32]);
    let cfg = ApiConfig {
        max_message_bytes: max_message,
        max_inflight_bytes: budget,
        ..ApiConfig::default()
    };
    (Api::new(store, blob, cfg), dir)
}

/// A framed gRPC request of `message_len` zero bytes (an empty message, as far as the
/// decoder is concerned), arriving in 4 KiB chunks as a network would deliver it.
fn grpc(path: &str, message_len: usize) -> axum::http::Request<axum::body::Body> {
    let mut body = vec![0u8];
    body.extend((message_len as u32).to_be_bytes());
    body.extend(std::iter::repeat_n(0u8, message_len));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    axum::http::Request::post(path)
        .header("content-type", "application/grpc")
        .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

fn status(r: &axum::response::Response) -> String {
    r.headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| "0".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_requests_take_turns_in_the_budget_instead_of_starving() {
    // Room for one 48 KiB request at a time; eight arrive together.
    let (api, _dir) = api(64 * 1024, 64 * 1024);
    let router = api.router();
    let started = std::time::Instant::now();
    let calls = (0..8).map(|_| {
        let router = router.clone();
        tokio::spawn(async move {
            let r = router
                .oneshot(grpc("/flyteidl.service.AdminService/CreateTask", 48 * 1024))
                .await
                .unwrap();
            status(&r)
        })
    });
    for call in calls {
        // Zero bytes decode as an empty request: refused for its missing id, not for room.
        assert_eq!(call.await.unwrap(), "3");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_its_routes_limit_is_refused_before_any_handler() {
    let (api, _dir) = api(4 << 20, 8 << 20);
    let router = api.router();
    // Reads are small: 2 MiB to a list is refused; the same to a create is decoded.
    let r = router
        .clone()
        .oneshot(grpc("/flyteidl.service.AdminService/ListTasks", 2 << 20))
        .await
        .unwrap();
    assert_eq!(status(&r), "8");
    let r = router
        .oneshot(grpc("/flyteidl.service.AdminService/CreateTask", 2 << 20))
        .await
        .unwrap();
    assert_eq!(status(&r), "3");
}
