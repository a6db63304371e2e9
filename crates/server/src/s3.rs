//! The embedded S3-compatible endpoint over the blob directory (s3s + s3s-fs), so that
//! `s3://<bucket>/...` URIs are readable by any S3 client: flytekit's fsspec storage layer,
//! task processes, and clients on other machines.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// s3s-fs with one correction: s3fs (flytekit's S3 client) lists recursively with an
/// *empty* `Delimiter=`, which s3s-fs treats as a real delimiter and answers with directory
/// markers instead of the objects. An empty delimiter means "no delimiter".
struct Fs(s3s_fs::FileSystem);

/// The `S3` impl: every method s3s-fs implements is forwarded, the two listings first
/// drop an empty delimiter. (One macro emits the whole impl so `async_trait` sees every
/// method.)
macro_rules! fs_impl {
    ($($name:ident: $input:ident => $output:ident),* $(,)?) => {
        #[async_trait::async_trait]
        impl S3 for Fs {
            async fn list_objects_v2(
                &self,
                mut req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects_v2(req).await
            }

            async fn list_objects(
                &self,
                mut req: S3Request<ListObjectsInput>,
            ) -> S3Result<S3Response<ListObjectsOutput>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects(req).await
            }

            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.0.$name(req).await
                }
            )*
        }
    };
}

fs_impl! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    put_object: PutObjectInput => PutObjectOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}

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
        let mut b = S3ServiceBuilder::new(Fs(fs));
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
