//! Contrail's embedded S3 endpoint: the `s3s` crate speaks the protocol (routing, XML,
//! SigV4 in headers and presigned query strings, aws-chunked bodies), and this crate
//! implements `s3s::S3` over the blob store's object semantics (`contrail_blob::objects`),
//! so `s3://<bucket>/<key>` URIs are readable by every S3 client tasks use.
//!
//! One bucket is served: the data bucket. It can never be deleted through the endpoint.
//! Bodies stream in both directions: an upload goes chunk by chunk into a staging file
//! while its MD5 is computed, a download is read from the file as the client takes it.
//! Filesystem work runs on the blocking pool. Operations not listed in `impl S3` below
//! answer 501 NotImplemented (the `s3s` default).

use base64::Engine;
use contrail_blob::BlobStore;
use contrail_blob::objects::{
    Listed, Listing, ObjectAttrs, ObjectInfo, Staged, WriteError, validate_object_key,
};
use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// At most this many keys per listing page and per batch delete (S3's limits).
const MAX_KEYS: usize = 1000;
/// At most this many parts per ListParts page.
const MAX_PARTS: usize = 1000;

/// The S3 service over one bucket of a blob store.
#[derive(Clone)]
pub struct Endpoint {
    store: BlobStore,
}

impl Endpoint {
    pub fn new(store: BlobStore) -> Self {
        Endpoint { store }
    }

    fn bucket(&self, bucket: &str) -> S3Result<()> {
        if bucket == self.store.bucket() {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "this endpoint serves only bucket '{}'",
                self.store.bucket()
            ))
        }
    }

    /// Runs filesystem work on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(BlobStore) -> T + Send + 'static,
    ) -> S3Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| s3_error!(InternalError, "blocking task failed: {e}"))
    }

    /// Streams a request body into a staging file; returns it with its MD5 (hex), after
    /// checking `Content-MD5` when the client sent one.
    async fn receive(
        &self,
        body: Option<StreamingBlob>,
        content_md5: Option<&str>,
    ) -> S3Result<(Staged, String)> {
        let (staged, file) = self.blocking(|s| s.stage()).await?.map_err(blob_error)?;
        let file = tokio::fs::File::from_std(file);
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Md5::new();
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| s3_error!(InternalError, "staging: {e}"))?;
            }
        }
        out.flush()
            .await
            .map_err(|e| s3_error!(InternalError, "staging: {e}"))?;
        let digest = hasher.finalize();
        if let Some(expected) = content_md5 {
            let sent = base64::engine::general_purpose::STANDARD
                .decode(expected.trim())
                .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
            if sent.as_slice() != digest.as_slice() {
                return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
            }
        }
        Ok((staged, contrail_blob::hex(&digest)))
    }

    /// The page of a listing request: its bounds checked, its keys read off the store.
    async fn page(
        &self,
        bucket: &str,
        prefix: &Option<String>,
        delimiter: &Option<String>,
        after: Option<String>,
        max_keys: Option<i32>,
    ) -> S3Result<Page> {
        self.bucket(bucket)?;
        let max = self::max_keys(max_keys)?;
        let prefix = prefix.clone().unwrap_or_default();
        let delimiter = delimiter.clone().filter(|d| !d.is_empty());
        let (p, d) = (prefix.clone(), delimiter.clone());
        let listing = self
            .blocking(move |s| s.list(&p, d.as_deref(), after.as_deref(), max))
            .await?
            .map_err(blob_error)?;
        Ok(Page {
            prefix,
            delimiter,
            max,
            listing,
        })
    }

    async fn head_info(&self, key: &str) -> S3Result<ObjectInfo> {
        let key = key.to_string();
        self.blocking(move |s| s.head(&key))
            .await?
            .map_err(blob_error)?
            .ok_or_else(|| s3_error!(NoSuchKey))
    }
}

fn blob_error(e: contrail_blob::Error) -> S3Error {
    use contrail_blob::Error as B;
    match e {
        B::InvalidKey(..) | B::ForeignUri(..) => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string())
        }
        B::NotFound(_) => s3_error!(NoSuchKey),
        B::Io(..) | B::Remote(..) | B::Config(_) | B::NotLocal(_) => {
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

fn write_error(e: WriteError) -> S3Error {
    let message = e.to_string();
    let code = match e {
        WriteError::Blob(b) => return blob_error(b),
        WriteError::Exists(_) => S3ErrorCode::PreconditionFailed,
        WriteError::Conflict(_) => S3ErrorCode::InvalidRequest,
        WriteError::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        WriteError::InvalidPart(_) => S3ErrorCode::InvalidPart,
        WriteError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        WriteError::EntityTooSmall(..) => S3ErrorCode::EntityTooSmall,
    };
    S3Error::with_message(code, message)
}

fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

fn attrs_of(content_type: Option<ContentType>, metadata: Option<Metadata>) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        user_metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

fn metadata_of(info: &ObjectInfo) -> Option<Metadata> {
    (!info.attrs.user_metadata.is_empty()).then(|| {
        info.attrs
            .user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// A HEAD or GET answer: the headers both describe an object with, plus `extra` fields.
macro_rules! described {
    ($output:ident, $info:expr, { $($field:ident: $value:expr),* $(,)? }) => {
        $output {
            content_type: $info.attrs.content_type.clone(),
            e_tag: Some(etag(&$info)),
            last_modified: Some(Timestamp::from($info.modified)),
            metadata: metadata_of(&$info),
            accept_ranges: Some("bytes".into()),
            $($field: $value,)*
            ..Default::default()
        }
    };
}

/// `If-Match` / `If-None-Match` on GET and HEAD.
fn check_preconditions(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let current = etag(info);
    if let Some(cond) = if_match {
        let ok = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => current.strong_cmp(e),
        };
        if !ok {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Match does not match the ETag"
            ));
        }
    }
    if let Some(cond) = if_none_match {
        let matches = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => current.weak_cmp(e),
        };
        if matches {
            return Err(s3_error!(NotModified));
        }
    }
    Ok(())
}

/// Keys in listings, percent-encoded when the client asked for `EncodingType=url` (botocore
/// always does, and decodes them).
struct KeyEncoding(bool);

impl KeyEncoding {
    fn of(encoding: Option<&EncodingType>) -> Self {
        KeyEncoding(encoding.is_some_and(|e| e.as_str() == EncodingType::URL))
    }

    fn apply(&self, s: String) -> String {
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~')
            .remove(b'/');
        if self.0 {
            percent_encoding::utf8_percent_encode(&s, KEEP).to_string()
        } else {
            s
        }
    }
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

/// A continuation token: the last key or common prefix returned, base64.
fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not valid"))
}

/// One listing page, as both ListObjects versions ask for it.
struct Page {
    prefix: String,
    delimiter: Option<String>,
    max: usize,
    listing: Listing,
}

/// Splits a listing page into S3's contents and common prefixes.
fn page_parts(
    entries: Vec<Listed>,
    enc: &KeyEncoding,
) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    for entry in entries {
        match entry {
            Listed::Object(o) => contents.push(Object {
                e_tag: Some(etag(&o)),
                last_modified: Some(Timestamp::from(o.modified)),
                size: Some(o.size as i64),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                key: Some(enc.apply(o.key)),
                ..Default::default()
            }),
            Listed::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc.apply(p)),
            }),
        }
    }
    (
        (!contents.is_empty()).then_some(contents),
        (!prefixes.is_empty()).then_some(prefixes),
    )
}

#[async_trait::async_trait]
impl S3 for Endpoint {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let created = self
            .blocking(|s| std::fs::metadata(s.root().join(s.bucket())).and_then(|m| m.modified()))
            .await?
            .ok();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(vec![Bucket {
                name: Some(self.store.bucket().to_string()),
                creation_date: created.map(Timestamp::from),
                bucket_region: None,
            }]),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        if req.input.bucket == self.store.bucket() {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        Err(s3_error!(
            NotImplemented,
            "this endpoint serves only bucket '{}'",
            self.store.bucket()
        ))
    }

    /// The data bucket is never deleted through the endpoint.
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        let listing = self
            .blocking(|s| s.list("", None, None, 1))
            .await?
            .map_err(blob_error)?;
        if listing.entries.is_empty() {
            Err(s3_error!(AccessDenied, "the data bucket cannot be deleted"))
        } else {
            Err(s3_error!(BucketNotEmpty))
        }
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let info = self.head_info(&input.key).await?;
        check_preconditions(&info, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        Ok(S3Response::new(described!(HeadObjectOutput, info, {
            content_length: Some(info.size as i64),
        })))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let key = input.key.clone();
        let (file, info) = self
            .blocking(move |s| s.open(&key))
            .await?
            .map_err(blob_error)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        check_preconditions(&info, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let (range, content_range) = match input.range {
            Some(r) => {
                let span = r.check(info.size).map_err(|_| s3_error!(InvalidRange))?;
                let text = format!(
                    "bytes {}-{}/{}",
                    span.start,
                    span.end.saturating_sub(1),
                    info.size
                );
                (span, Some(text))
            }
            None => (0..info.size, None),
        };
        let mut file = tokio::fs::File::from_std(file);
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start))
                .await
                .map_err(|e| s3_error!(InternalError, "seek: {e}"))?;
        }
        let len = range.end - range.start;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
        Ok(S3Response::new(described!(GetObjectOutput, info, {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(len as i64),
            content_range: content_range,
        })))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        // Refuse a key that can never be an object before reading its body.
        validate_object_key(&input.key).map_err(blob_error)?;
        let exclusive = match &input.if_none_match {
            Some(ETagCondition::Any) => true,
            Some(ETagCondition::ETag(_)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on PUT takes only '*'"
                ));
            }
            None => false,
        };
        if input.if_match.is_some() {
            let current = self.head_info(&input.key).await?;
            check_preconditions(&current, input.if_match.as_ref(), None)?;
        }
        let (staged, md5) = self
            .receive(input.body, input.content_md5.as_deref())
            .await?;
        let attrs = attrs_of(input.content_type, input.metadata);
        let key = input.key;
        let info = self
            .blocking(move |s| s.commit(staged, &key, &md5, &attrs, exclusive))
            .await?
            .map_err(write_error)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&info)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.bucket(&req.input.bucket)?;
        let key = req.input.key;
        self.blocking(move |s| s.delete(&key))
            .await?
            .map_err(blob_error)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let objects = input.delete.objects;
        if objects.len() > MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "at most {MAX_KEYS} keys per request"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        let results = self
            .blocking(move |s| {
                keys.into_iter()
                    .map(|k| {
                        let r = s.delete(&k);
                        (k, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, result) in results {
            match result {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    code: Some("InternalError".into()),
                    message: Some(e.to_string()),
                    key: Some(key),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "copy sources are bucket/key")),
        };
        self.bucket(&src_bucket)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let new_attrs = replace.then(|| attrs_of(input.content_type, input.metadata));
        let dst_key = input.key;
        let info = self
            .blocking(move |s| s.copy_object(&src_key, &dst_key, new_attrs))
            .await?
            .map_err(write_error)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(Timestamp::from(info.modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone(),
        };
        let Page {
            prefix,
            delimiter,
            max,
            listing: page,
        } = self
            .page(
                &input.bucket,
                &input.prefix,
                &input.delimiter,
                after,
                input.max_keys,
            )
            .await?;
        let next = page
            .truncated
            .then(|| page.entries.last().map(|e| encode_token(e.key())))
            .flatten();
        let count = page.entries.len() as i32;
        let enc = KeyEncoding::of(input.encoding_type.as_ref());
        let (contents, common_prefixes) = page_parts(page.entries, &enc);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: delimiter.map(|d| enc.apply(d)),
            max_keys: Some(max as i32),
            key_count: Some(count),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after: input.start_after.map(|s| enc.apply(s)),
            encoding_type: input.encoding_type,
            contents,
            common_prefixes,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let Page {
            prefix,
            delimiter,
            max,
            listing: page,
        } = self
            .page(
                &input.bucket,
                &input.prefix,
                &input.delimiter,
                input.marker.clone(),
                input.max_keys,
            )
            .await?;
        // v1 gives NextMarker only with a delimiter; clients use the last key otherwise.
        let next_marker = (page.truncated && delimiter.is_some())
            .then(|| page.entries.last().map(|e| e.key().to_string()))
            .flatten();
        let enc = KeyEncoding::of(input.encoding_type.as_ref());
        let (contents, common_prefixes) = page_parts(page.entries, &enc);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: delimiter.map(|d| enc.apply(d)),
            marker: input.marker.map(|m| enc.apply(m)),
            next_marker: next_marker.map(|m| enc.apply(m)),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            encoding_type: input.encoding_type,
            contents,
            common_prefixes,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let attrs = attrs_of(input.content_type, input.metadata);
        let key = input.key.clone();
        let id = self
            .blocking(move |s| s.create_upload(&key, &attrs))
            .await?
            .map_err(blob_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        if !(1..=contrail_blob::objects::MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
        }
        // Refuse an unknown upload before reading its body.
        let (id, key) = (input.upload_id.clone(), input.key.clone());
        self.blocking(move |s| s.check_upload(&id, &key))
            .await?
            .map_err(write_error)?;
        let (staged, md5) = self
            .receive(input.body, input.content_md5.as_deref())
            .await?;
        let (id, key, number, tag) = (input.upload_id, input.key, input.part_number, md5.clone());
        self.blocking(move |s| s.commit_part(&id, &key, number, staged, &tag))
            .await?
            .map_err(write_error)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(md5)),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let (id, key) = (input.upload_id.clone(), input.key.clone());
        let parts = self
            .blocking(move |s| s.list_parts(&id, &key))
            .await?
            .map_err(write_error)?;
        let max = input
            .max_parts
            .map_or(MAX_PARTS, |m| (m.max(0) as usize).min(MAX_PARTS));
        let marker = input.part_number_marker.unwrap_or(0);
        let after: Vec<_> = parts.into_iter().filter(|p| p.number > marker).collect();
        let truncated = after.len() > max;
        let page: Vec<Part> = after
            .into_iter()
            .take(max)
            .map(|p| Part {
                part_number: Some(p.number),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(Timestamp::from(p.modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page.last().and_then(|p| p.part_number),
            parts: Some(page),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let listed: Vec<(i32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.part_number.unwrap_or(0),
                    p.e_tag.map(|e| e.into_value()).unwrap_or_default(),
                )
            })
            .collect();
        if listed.len() > contrail_blob::objects::MAX_PART_NUMBER as usize {
            return Err(s3_error!(MalformedXML, "too many parts"));
        }
        let (id, key) = (input.upload_id, input.key.clone());
        let info = self
            .blocking(move |s| s.complete_upload(&id, &key, &listed))
            .await?
            .map_err(write_error)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&info)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let (id, key) = (input.upload_id, input.key);
        self.blocking(move |s| s.abort_upload(&id, &key))
            .await?
            .map_err(write_error)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// Looks up the secret key of an access key other than the endpoint's own (per-client
/// key pairs); `None` when there is no such key.
pub type KeyLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The key pairs the endpoint accepts: its own, and those `others` knows. An unknown access
/// key is `InvalidAccessKeyId`, as S3 answers it.
struct KeyPair {
    access_key: String,
    secret_key: SecretKey,
    others: Option<KeyLookup>,
}

#[async_trait::async_trait]
impl S3Auth for KeyPair {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            return Ok(self.secret_key.clone());
        }
        if let Some(lookup) = self.others.clone() {
            let key = access_key.to_string();
            let found = tokio::task::spawn_blocking(move || lookup(&key))
                .await
                .map_err(|e| s3_error!(InternalError, "key lookup failed: {e}"))?;
            if let Some(secret) = found {
                return Ok(SecretKey::from(secret));
            }
        }
        Err(s3_error!(
            InvalidAccessKeyId,
            "the access key does not exist in our records"
        ))
    }
}

/// The S3 endpoint as a hyper service over the blob store. (The server binary serves it
/// over TCP or TLS.)
pub fn service(
    store: BlobStore,
    access_key: String,
    secret_key: String,
    others: Option<KeyLookup>,
) -> s3s::service::S3Service {
    let mut builder = S3ServiceBuilder::new(Endpoint::new(store));
    builder.set_auth(KeyPair {
        access_key,
        secret_key: SecretKey::from(secret_key),
        others,
    });
    builder.build()
}
