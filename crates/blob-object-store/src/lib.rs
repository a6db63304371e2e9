//! The object-store adapter of the blob port: blobs in S3 (GCS and Azure with the `gcp` /
//! `azure` features) through the `object_store` crate. The blob port is synchronous
//! (callers run it on blocking pools), so requests run on a small runtime of its own.
//!
//! Architecture Invariant: nothing here relies on conditional writes (some S3 servers
//! ignore If-None-Match); where Contrail needs create-once semantics, the database decides.

use contrail_blob::{BlobStore, Error, ObjectBackend};
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where the blobs live and how to reach them.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// `s3://BUCKET` (or `gs://BUCKET`, `az://CONTAINER` with those features).
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:8333`); none for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

impl RemoteConfig {
    /// The scheme and bucket of `url`.
    pub fn scheme_and_bucket(&self) -> Result<(&str, &str), Error> {
        let bad = |why: &str| Error::Config(format!("blob store {:?}: {why}", self.url));
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| bad("expected s3://BUCKET"))?;
        let bucket = rest.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(bad("expected s3://BUCKET (a bucket, no path)"));
        }
        match scheme {
            "s3" => {}
            "gs" if cfg!(feature = "gcp") => {}
            "az" if cfg!(feature = "azure") => {}
            "gs" | "az" => {
                return Err(bad(&format!(
                    "this build has no {scheme}:// support (cargo feature `{}`)",
                    if scheme == "gs" { "gcp" } else { "azure" }
                )));
            }
            other => return Err(bad(&format!("unknown scheme {other}://"))),
        }
        Ok((scheme, bucket))
    }
}

/// Opens the object store `cfg` names as the blob store; `root` is a local scratch directory.
pub fn open(cfg: &RemoteConfig, root: impl Into<std::path::PathBuf>) -> Result<BlobStore, Error> {
    let (scheme, bucket) = cfg.scheme_and_bucket()?;
    let (scheme, bucket) = (scheme.to_string(), bucket.to_string());
    Ok(BlobStore::remote(
        scheme,
        bucket,
        Arc::new(Remote::open(cfg)?),
        root,
    ))
}

struct Remote {
    store: Arc<dyn ObjectStore>,
    signer: Arc<dyn Signer>,
    /// `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.store)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime may block; never do that on an async worker.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn remote_err(key: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| match e {
        object_store::Error::NotFound { .. } => Error::NotFound(key.to_string()),
        other => Error::Remote(key.to_string(), other.to_string()),
    }
}

impl Remote {
    fn open(cfg: &RemoteConfig) -> Result<Remote, Error> {
        let (scheme, bucket) = cfg.scheme_and_bucket()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("contrail-blob")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("blob runtime: {e}")))?;
        let config = |e: object_store::Error| Error::Config(format!("blob store {}: {e}", cfg.url));
        let (store, signer): (Arc<dyn ObjectStore>, Arc<dyn Signer>) = match scheme {
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&cfg.region);
                if let Some(endpoint) = &cfg.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(k), Some(s)) = (&cfg.access_key, &cfg.secret_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                }
                let s3 = Arc::new(b.build().map_err(config)?);
                (s3.clone(), s3)
            }
            #[cfg(feature = "gcp")]
            "gs" => {
                let gcs = Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(config)?,
                );
                (gcs.clone(), gcs)
            }
            #[cfg(feature = "azure")]
            "az" => {
                let az = Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(bucket)
                        .build()
                        .map_err(config)?,
                );
                (az.clone(), az)
            }
            other => return Err(Error::Config(format!("unknown scheme {other}://"))),
        };
        Ok(Remote {
            store,
            signer,
            rt: Some(rt),
        })
    }

    /// Runs a request to completion on this store's runtime, from whatever thread calls:
    /// a blocking-pool thread (the normal case) blocks; an async worker of another
    /// multi-threaded runtime hands its other tasks off first.
    fn run<T: Send>(&self, fut: impl Future<Output = Result<T, Error>> + Send) -> Result<T, Error> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        match Handle::try_current() {
            Err(_) => rt.block_on(fut),
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| rt.block_on(fut))
            }
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|_| Err(Error::Remote(String::new(), "panicked".into())))
            }),
        }
    }
}

impl ObjectBackend for Remote {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let payload = PutPayload::from(bytes.to_vec());
        self.run(async {
            self.store
                .put(&ObjectPath::from(key), payload)
                .await
                .map(|_| ())
                .map_err(remote_err(key))
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        self.run(async {
            let got = self
                .store
                .get(&ObjectPath::from(key))
                .await
                .map_err(remote_err(key))?;
            Ok(got.bytes().await.map_err(remote_err(key))?.to_vec())
        })
    }

    fn exists(&self, key: &str) -> Result<bool, Error> {
        self.run(async {
            match self.store.head(&ObjectPath::from(key)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(remote_err(key)(e)),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        self.run(async {
            let found: Vec<_> = self
                .store
                .list(Some(&ObjectPath::from(prefix)))
                .try_collect()
                .await
                .map_err(remote_err(prefix))?;
            Ok(found
                .into_iter()
                .map(|m| (m.location.to_string(), m.size))
                .collect())
        })
    }

    fn presign(&self, method: &str, key: &str, expires_in: Duration) -> Result<String, Error> {
        let method = match method {
            "PUT" => object_store::signer::Method::PUT,
            _ => object_store::signer::Method::GET,
        };
        self.run(async {
            self.signer
                .signed_url(method, &ObjectPath::from(key), expires_in)
                .await
                .map(|u| u.to_string())
                .map_err(remote_err(key))
        })
    }
}

#[cfg(test)]
mod tests {
    //! Against the S3 server `CONTRAIL_TEST_S3_*` names (scripts/services.sh starts
    //! SeaweedFS). Without it these fail, never silently pass: the test tier without
    //! services excludes this crate.
    use super::*;

    fn store() -> BlobStore {
        let env =
            |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("set {k} (scripts/services.sh)"));
        let cfg = RemoteConfig {
            url: format!("s3://{}", env("CONTRAIL_TEST_S3_BUCKET")),
            endpoint: Some(env("CONTRAIL_TEST_S3_ENDPOINT")),
            region: "us-east-1".into(),
            access_key: Some(env("CONTRAIL_TEST_S3_ACCESS_KEY")),
            secret_key: Some(env("CONTRAIL_TEST_S3_SECRET_KEY")),
        };
        open(&cfg, std::env::temp_dir()).unwrap()
    }

    fn unique() -> String {
        format!(
            "unit/{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )
    }

    #[test]
    fn objects_round_trip_and_missing_ones_are_not_found() {
        let s = store();
        let base = unique();
        assert!(!s.is_local());
        assert!(matches!(
            s.get(&format!("{base}/nope")),
            Err(Error::NotFound(_))
        ));
        assert!(!s.exists(&format!("{base}/a")).unwrap());
        s.put(&format!("{base}/a"), b"one").unwrap();
        s.put(&format!("{base}/d/b"), b"two").unwrap();
        assert!(s.exists(&format!("{base}/a")).unwrap());
        assert_eq!(s.get(&format!("{base}/a")).unwrap(), b"one");
        let mut listed = s.list_under(&format!("{base}/d")).unwrap();
        listed.sort();
        assert_eq!(listed, vec![(format!("{base}/d/b"), 3)]);
        assert!(matches!(s.path("x"), Err(Error::NotLocal(_))));
        assert!(matches!(s.put_new("x", b""), Err(Error::NotLocal(_))));
        let dir = tempfile::tempdir().unwrap();
        s.download(&format!("{base}/d"), &dir.path().join("copy"))
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("copy/b")).unwrap(), b"two");
        s.upload(&dir.path().join("copy"), &format!("{base}/up"))
            .unwrap();
        assert_eq!(s.get(&format!("{base}/up/b")).unwrap(), b"two");
        assert_eq!(s.uri("k"), format!("s3://{}/k", s.bucket()));
    }

    #[test]
    fn presigned_urls_name_the_store_and_carry_a_signature() {
        let s = store();
        let key = format!("{}/signed", unique());
        let url = s.presign("PUT", &key, 60).unwrap().unwrap();
        let endpoint = std::env::var("CONTRAIL_TEST_S3_ENDPOINT").unwrap();
        assert!(
            url.starts_with(&format!("{endpoint}/{}/{key}", s.bucket())),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
    }

    #[test]
    fn bad_urls_are_configuration_errors_naming_the_url() {
        for bad in ["s3://", "s3://a/b", "ftp://x", "nope"] {
            let cfg = RemoteConfig {
                url: bad.into(),
                ..Default::default()
            };
            match open(&cfg, "/tmp") {
                Err(Error::Config(m)) => assert!(m.contains(bad), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
