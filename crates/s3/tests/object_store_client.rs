//! The endpoint driven by the Rust `object_store` crate's S3 client (the client Rust
//! services use), over the same cases the Python conformance suite runs where the client
//! can express them.

use contrail_blob::BlobStore;
use futures::{StreamExt, TryStreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::sync::watch;

struct Endpoint {
    client: AmazonS3,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn endpoint() -> Endpoint {
    let dir = tempfile::tempdir().unwrap();
    let blob = BlobStore::new(dir.path().join("blobs"), "contrail", vec![1; 32]);
    std::fs::create_dir_all(dir.path().join("blobs/contrail")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let service = contrail_s3::service(blob, "contrail".into(), "contrail-secret".into(), None);
    tokio::spawn(async move {
        let http = Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(conn);
        }
    });
    let _ = rx;
    let client = AmazonS3Builder::new()
        .with_endpoint(format!("http://{addr}"))
        .with_bucket_name("contrail")
        .with_region("us-east-1")
        .with_access_key_id("contrail")
        .with_secret_access_key("contrail-secret")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    Endpoint {
        client,
        _dir: dir,
        _stop: stop,
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_and_missing_keys() {
    let ep = endpoint().await;
    let s3 = &ep.client;
    let body = b"hello object_store".repeat(10);
    s3.put(&Path::from("os/a/b/c.txt"), body.clone().into())
        .await
        .unwrap();
    let got = s3.get(&Path::from("os/a/b/c.txt")).await.unwrap();
    assert_eq!(got.meta.size, body.len() as u64);
    let md5 = contrail_blob::objects::md5_hex_of(body.as_slice()).unwrap();
    assert_eq!(got.meta.e_tag, Some(format!("\"{md5}\"")));
    assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_slice());
    for missing in ["os/a/b", "os/a", "os/nope"] {
        let e = s3.head(&Path::from(missing)).await.unwrap_err();
        assert!(is_not_found(&e), "{missing}: {e}");
        let e = s3.get(&Path::from(missing)).await.unwrap_err();
        assert!(is_not_found(&e), "{missing}: {e}");
    }
    // Deleting a missing key or a prefix succeeds and removes nothing else.
    s3.delete(&Path::from("os/a")).await.unwrap();
    s3.delete(&Path::from("os/missing")).await.unwrap();
    s3.head(&Path::from("os/a/b/c.txt")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_prefixes_and_batch_delete() {
    let ep = endpoint().await;
    let s3 = &ep.client;
    let keys = ["l/a.txt", "l/a/1", "l/a/2/x", "l/ab/c", "l/b"];
    for k in keys {
        s3.put(&Path::from(k), PutPayload::from_static(b"1"))
            .await
            .unwrap();
    }
    let all: Vec<String> = s3
        .list(Some(&Path::from("l")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, keys);
    let top = s3
        .list_with_delimiter(Some(&Path::from("l")))
        .await
        .unwrap();
    let objects: Vec<String> = top.objects.iter().map(|m| m.location.to_string()).collect();
    let prefixes: Vec<String> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(objects, ["l/a.txt", "l/b"]);
    assert_eq!(prefixes, ["l/a", "l/ab"]);
    let doomed = futures::stream::iter(["l/a/1", "l/a/2/x"].map(|k| Ok(Path::from(k)))).boxed();
    let deleted: Vec<Path> = s3.delete_stream(doomed).try_collect().await.unwrap();
    assert_eq!(deleted.len(), 2);
    let left: Vec<String> = s3
        .list(Some(&Path::from("l")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(left, ["l/a.txt", "l/ab/c", "l/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_copies_and_conditional_requests() {
    let ep = endpoint().await;
    let s3 = &ep.client;
    let body: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let src = Path::from("c/src");
    let put = s3.put(&src, body.clone().into()).await.unwrap();
    let part = s3
        .get_opts(
            &src,
            GetOptions {
                range: Some(GetRange::Bounded(1000..1010)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(part.as_ref(), &body[1000..1010]);
    s3.copy(&src, &Path::from("c/dst")).await.unwrap();
    let copied = s3.get(&Path::from("c/dst")).await.unwrap().bytes().await;
    assert_eq!(copied.unwrap().as_ref(), body.as_slice());
    // Create-only writes refuse an existing key and leave it as it was.
    let e = s3
        .put_opts(
            &src,
            PutPayload::from_static(b"other"),
            PutOptions::from(PutMode::Create),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    // If-Match and If-None-Match on reads.
    let etag = put.e_tag.unwrap();
    s3.get_opts(
        &src,
        GetOptions {
            if_match: Some(etag.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = s3
        .get_opts(
            &src,
            GetOptions {
                if_match: Some("\"0000\"".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, object_store::Error::Precondition { .. }), "{e}");
    let e = s3
        .get_opts(
            &src,
            GetOptions {
                if_none_match: Some(etag),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, object_store::Error::NotModified { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_assembles_parts_in_order() {
    let ep = endpoint().await;
    let s3 = &ep.client;
    let path = Path::from("mp/big");
    let upload = s3.put_multipart(&path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    let mut expected = Vec::new();
    for i in 0..12u8 {
        let chunk = vec![i; 1024 * 1024];
        writer.write(&chunk);
        expected.extend(chunk);
    }
    let done = writer.finish().await.unwrap();
    assert!(done.e_tag.unwrap().ends_with("-3\""));
    let got = s3.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got.as_ref() == expected.as_slice());
}
