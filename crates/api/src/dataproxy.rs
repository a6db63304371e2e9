//! DataProxyService: signed upload and download URLs onto the blob store, and the HTTP
//! routes those URLs point at (served on the same address as gRPC).

use crate::Api;
use crate::error::{ApiError, ApiResult, invalid};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use contrail_idl::service::data_proxy_service_server::DataProxyService;
use contrail_idl::service::{self as s};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

const DEFAULT_EXPIRY_SECS: u64 = 3600;
const MAX_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Path characters left unescaped in signed URLs.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

use contrail_blob::hex;

/// A requested lifetime: unset or zero is the default, longer than `max` is refused.
fn expiry(d: Option<&prost_types::Duration>, max: u64) -> ApiResult<u64> {
    match d {
        None => Ok(DEFAULT_EXPIRY_SECS),
        Some(d) if d.seconds <= 0 && d.nanos <= 0 => Ok(DEFAULT_EXPIRY_SECS),
        Some(d) if d.seconds < 0 || d.seconds as u64 > max => {
            Err(invalid(format!("expires_in must be at most {max}s")))
        }
        Some(d) => Ok(d.seconds.max(1) as u64),
    }
}

impl Api {
    fn signed_url(
        &self,
        route: &str,
        method: &str,
        key: &str,
        expires: u64,
        md5_hex: &str,
    ) -> ApiResult<String> {
        // Blobs in an object store: its own presigned URL (the client talks to the store).
        let lifetime = expires.saturating_sub(self.now_secs()).max(1);
        if let Some(url) = self.blob.presign(method, key, lifetime)? {
            return Ok(url);
        }
        let sig = self.blob.sign(method, key, expires, md5_hex);
        let mut url = format!(
            "{}/{route}/{}?expires={expires}&sig={sig}",
            self.cfg.public_url,
            utf8_percent_encode(key, PATH)
        );
        if !md5_hex.is_empty() {
            url.push_str(&format!("&md5={md5_hex}"));
        }
        Ok(url)
    }

    fn create_upload_location_impl(
        &self,
        r: s::CreateUploadLocationRequest,
    ) -> ApiResult<s::CreateUploadLocationResponse> {
        crate::validate::text("project", &r.project)?;
        crate::validate::text("domain", &r.domain)?;
        self.check_project_domain(&r.project, &r.domain)?;
        if r.filename.is_empty() {
            return Err(invalid("filename must not be empty"));
        }
        contrail_blob::validate_segment(&r.filename)
            .map_err(|e| invalid(format!("filename: {e}")))?;
        // Every upload is bound to its content: the signed URL accepts only a body with
        // this MD5, and a key that holds other content is never handed out again.
        if r.content_md5.len() != 16 {
            return Err(invalid(format!(
                "content_md5 must be the 16-byte MD5 of the content, got {} bytes",
                r.content_md5.len()
            )));
        }
        let root = if r.filename_root.is_empty() {
            data_encoding::BASE32.encode(&r.content_md5)
        } else {
            r.filename_root.clone()
        };
        contrail_blob::validate_segment(&root)
            .map_err(|e| invalid(format!("filename_root: {e}")))?;
        let key = format!(
            "{}/{}/{}/{}/{}",
            self.cfg.upload_prefix, r.project, r.domain, root, r.filename
        );
        contrail_blob::validate_key(&key)?;
        if let Some(existing) = local_md5(&self.blob, &key)?
            && existing != hex(&r.content_md5)
        {
            return Err(ApiError::AlreadyExists(format!(
                "{}: other content was uploaded here already; choose another filename_root",
                self.blob.uri(&key)
            )));
        }
        let expires = self.now_secs() + expiry(r.expires_in.as_ref(), MAX_EXPIRY_SECS)?;
        let md5_hex = hex(&r.content_md5);
        let mut headers = BTreeMap::new();
        if !r.content_md5.is_empty() {
            headers.insert(
                "Content-MD5".to_string(),
                base64::engine::general_purpose::STANDARD.encode(&r.content_md5),
            );
        }
        Ok(s::CreateUploadLocationResponse {
            signed_url: self.signed_url("upload", "PUT", &key, expires, &md5_hex)?,
            native_url: self.blob.uri(&key),
            expires_at: Some(prost_types::Timestamp {
                seconds: expires as i64,
                nanos: 0,
            }),
            headers,
        })
    }

    fn download_location(
        &self,
        native_url: &str,
        expires_in: Option<&prost_types::Duration>,
    ) -> ApiResult<(String, u64)> {
        let key = self.blob.key_of(native_url)?.to_string();
        if !self.blob.exists(&key)? {
            return Err(ApiError::NotFound(format!("{native_url} does not exist")));
        }
        let expires = self.now_secs() + expiry(expires_in, MAX_EXPIRY_SECS)?;
        Ok((
            self.signed_url("download", "GET", &key, expires, "")?,
            expires,
        ))
    }
}

#[tonic::async_trait]
impl DataProxyService for Api {
    async fn create_upload_location(
        &self,
        r: Request<s::CreateUploadLocationRequest>,
    ) -> Result<Response<s::CreateUploadLocationResponse>, Status> {
        let api = self.clone();
        let r = r.into_inner();
        Ok(Response::new(
            crate::blocking(move || api.create_upload_location_impl(r)).await?,
        ))
    }

    async fn create_download_location(
        &self,
        r: Request<s::CreateDownloadLocationRequest>,
    ) -> Result<Response<s::CreateDownloadLocationResponse>, Status> {
        let r = r.into_inner();
        let api = self.clone();
        let (signed_url, expires) =
            crate::blocking(move || api.download_location(&r.native_url, r.expires_in.as_ref()))
                .await?;
        Ok(Response::new(s::CreateDownloadLocationResponse {
            signed_url,
            expires_at: Some(prost_types::Timestamp {
                seconds: expires as i64,
                nanos: 0,
            }),
        }))
    }

    async fn create_download_link(
        &self,
        r: Request<s::CreateDownloadLinkRequest>,
    ) -> Result<Response<s::CreateDownloadLinkResponse>, Status> {
        let api = self.clone();
        let r = r.into_inner();
        crate::blocking(move || api.create_download_link_impl(r))
            .await
            .map(Response::new)
            .map_err(Into::into)
    }
}

/// Longest a download link lives (flyteadmin's `download.maxExpiresIn` default, which is
/// also the default lifetime).
const MAX_DOWNLOAD_EXPIRY_SECS: u64 = DEFAULT_EXPIRY_SECS;

impl Api {
    /// Flyte's `CreateDownloadLink`: only decks (`ARTIFACT_TYPE_DECK`) of node executions, as
    /// a presigned GET of the node's `deck.html` on the S3 endpoint.
    pub(crate) fn create_download_link_impl(
        &self,
        r: s::CreateDownloadLinkRequest,
    ) -> ApiResult<s::CreateDownloadLinkResponse> {
        if r.artifact_type != s::ArtifactType::Deck as i32 {
            return Err(invalid(format!(
                "artifact_type {} is not supported; only ARTIFACT_TYPE_DECK is",
                r.artifact_type
            )));
        }
        // Flyte refuses a negative lifetime here (uploads read it as the default).
        if r.expires_in.is_some_and(|d| d.seconds < 0 || d.nanos < 0) {
            return Err(invalid("expires_in must not be negative"));
        }
        let expires = expiry(r.expires_in.as_ref(), MAX_DOWNLOAD_EXPIRY_SECS)?;
        let id = match r.source {
            Some(s::create_download_link_request::Source::NodeExecutionId(id)) => id,
            None => return Err(invalid("source is missing: set node_execution_id")),
        };
        let node = self
            .node_record(Some(&id))
            .map_err(|e| invalid(format!("failed to find node execution: {e}")))?
            .1;
        let deck_uri = node.closure.map(|c| c.deck_uri).unwrap_or_default();
        if deck_uri.is_empty() {
            return Err(ApiError::NotFound(
                "no deckUrl found for the node execution".into(),
            ));
        }
        let key = self.blob.key_of(&deck_uri)?;
        if !self.blob.exists(key)? {
            return Err(ApiError::NotFound(format!("{deck_uri} does not exist")));
        }
        let url = self.presigned_get(key, expires)?;
        let expires_at = Some(prost_types::Timestamp {
            seconds: self.now_secs() as i64 + expires as i64,
            nanos: 0,
        });
        #[allow(deprecated)]
        Ok(s::CreateDownloadLinkResponse {
            signed_url: vec![url.clone()],
            expires_at,
            pre_signed_urls: Some(s::PreSignedUrLs {
                signed_url: vec![url],
                expires_at,
            }),
        })
    }

    /// A SigV4 presigned GET of `key` on the S3 endpoint.
    fn presigned_get(&self, key: &str, expires: u64) -> ApiResult<String> {
        if let Some(url) = self.blob.presign("GET", key, expires)? {
            return Ok(url);
        }
        let s3 = &self.cfg.s3;
        let endpoint = url::Url::parse(&s3.endpoint)
            .map_err(|e| ApiError::Internal(format!("s3 endpoint {}: {e}", s3.endpoint)))?;
        let bucket = rusty_s3::Bucket::new(
            endpoint,
            rusty_s3::UrlStyle::Path,
            self.blob.bucket().to_string(),
            s3.region.clone(),
        )
        .map_err(|e| ApiError::Internal(format!("s3 bucket: {e}")))?;
        let credentials = rusty_s3::Credentials::new(s3.access_key.clone(), s3.secret_key.clone());
        use rusty_s3::S3Action;
        Ok(bucket
            .get_object(Some(&credentials), key)
            .sign(std::time::Duration::from_secs(expires))
            .to_string())
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct Signed {
    expires: u64,
    sig: String,
    #[serde(default)]
    md5: String,
}

fn reject(code: StatusCode, msg: impl Into<String>) -> (StatusCode, String) {
    (code, msg.into())
}

/// `PUT /upload/<key>?expires&sig&md5`: stores the body when the signature, expiry and MD5 hold.
pub(crate) async fn put_upload(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    authorize(&api, "PUT", &key, &q)?;
    let actual = Md5::digest(&body);
    if q.md5.is_empty() || hex(&actual) != q.md5 {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "body does not match the signed Content-MD5",
        ));
    }
    if let Some(h) = headers.get("content-md5") {
        let claimed = base64::engine::general_purpose::STANDARD
            .decode(h.as_bytes())
            .map_err(|_| reject(StatusCode::BAD_REQUEST, "Content-MD5 is not base64"))?;
        if claimed != actual.as_slice() {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "body does not match Content-MD5",
            ));
        }
    }
    // Never over other content: the same bytes again are fine (a retried upload).
    let blob = api.blob.clone();
    let written = on_blocking_pool(move || {
        if blob.put_new(&key, &body)? {
            return Ok(true);
        }
        Ok(local_md5(&blob, &key)?.as_deref() == Some(hex(&actual).as_str()))
    })
    .await?;
    if !written {
        return Err(reject(
            StatusCode::CONFLICT,
            "other content was uploaded under this key already",
        ));
    }
    Ok(StatusCode::OK)
}

/// `GET /download/<key>?expires&sig`.
pub(crate) async fn get_download(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    authorize(&api, "GET", &key, &q)?;
    let blob = api.blob.clone();
    on_blocking_pool(move || blob.get(&key)).await
}

/// Checks the key and the URL's signature and expiry for `method`.
fn authorize(api: &Api, method: &str, key: &str, q: &Signed) -> Result<(), (StatusCode, String)> {
    contrail_blob::validate_key(key).map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !api
        .blob
        .verify(method, key, q.expires, &q.md5, &q.sig, api.now_secs())
    {
        return Err(reject(
            StatusCode::FORBIDDEN,
            "signature invalid or expired",
        ));
    }
    Ok(())
}

/// Runs blob filesystem IO off the async workers, mapping its errors to HTTP statuses.
/// The MD5 (hex) of an object in local blobs, if it exists. (An object store checks
/// the presigned URL's Content-MD5 itself.)
fn local_md5(
    blob: &contrail_blob::BlobStore,
    key: &str,
) -> Result<Option<String>, contrail_blob::Error> {
    if !blob.is_local() {
        return Ok(None);
    }
    let io = |e| contrail_blob::Error::Io(key.to_string(), e);
    match std::fs::File::open(blob.path(key)?) {
        Ok(f) => Ok(Some(contrail_blob::objects::md5_hex_of(f).map_err(io)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

async fn on_blocking_pool<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, contrail_blob::Error> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            contrail_blob::Error::NotFound(_) => reject(StatusCode::NOT_FOUND, e.to_string()),
            _ => reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })
}
