//! The blob store. By default objects live under `<root>/<bucket>/<key>` on the local
//! filesystem and are named `s3://<bucket>/<key>`: the same directory is served by the embedded
//! S3 endpoint, so a URI is readable by tasks and clients on this machine and by clients that
//! only reach the ports. With a remote backend ([`RemoteConfig`]) they live in an object store
//! (S3, or GCS / Azure with those features) under the same keys.
//!
//! Architecture Invariant: a key is validated before it touches the filesystem; no key can
//! name a path outside `<root>/<bucket>`.

pub mod layout;
pub mod objects;

/// Objects in a remote object store: implemented by an adapter crate
/// (`contrail-blob-object-store`), so this port stays synchronous and runtime-free.
/// Implementations must not rely on conditional writes.
pub trait ObjectBackend: Send + Sync + std::fmt::Debug + 'static {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error>;
    /// `Error::NotFound` when there is no such object.
    fn get(&self, key: &str) -> Result<Vec<u8>, Error>;
    fn exists(&self, key: &str) -> Result<bool, Error>;
    /// Keys (and sizes) of every object under `prefix/`.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error>;
    /// A presigned URL for `method` ("GET" or "PUT") on `key`.
    fn presign(
        &self,
        method: &str,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<String, Error>;
}

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key is not a safe relative object key (client error).
    #[error("invalid object key '{0}': {1}")]
    InvalidKey(String, &'static str),
    /// The URI is not `s3://<this bucket>/<key>` (client error).
    #[error("'{0}' is not an object of this store (expected s3://{1}/...)")]
    ForeignUri(String, String),
    #[error("object '{0}' not found")]
    NotFound(String),
    /// Filesystem failure (retryable at the caller's discretion).
    #[error("blob io on '{0}': {1}")]
    Io(String, std::io::Error),
    /// The object store failed (retryable at the caller's discretion).
    #[error("object store, on '{0}': {1}")]
    Remote(String, String),
    /// The blob store cannot be set up as configured (an operator's error).
    #[error("{0}")]
    Config(String),
    /// A local path was asked of blobs that live in an object store (our bug).
    #[error("'{0}' is in a remote object store, not on this machine")]
    NotLocal(String),
}

/// A local-directory object store with S3-style names, or a remote object store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    bucket: String,
    secret: Vec<u8>,
    /// `s3`, `gs` or `az`: the scheme of the URIs this store names.
    scheme: String,
    remote: Option<std::sync::Arc<dyn ObjectBackend>>,
}

/// Checks that `key` is a relative path of plain segments (no `..`, no empty segments).
pub fn validate_key(key: &str) -> Result<(), Error> {
    let bad = |why| Err(Error::InvalidKey(key.to_string(), why));
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1..1024 bytes");
    }
    if key.starts_with('/') {
        return bad("must be relative");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("has an empty, '.' or '..' segment");
        }
        if seg.chars().any(|c| c.is_control() || c == '\\') {
            return bad("has a control character or backslash");
        }
        if seg.starts_with(objects::RESERVED_PREFIX) {
            return bad("has a segment starting with '.contrail-' (reserved)");
        }
    }
    Ok(())
}

/// Checks one path segment supplied by a client (a file name, a filename root).
pub fn validate_segment(seg: &str) -> Result<(), Error> {
    if seg.contains('/') {
        return Err(Error::InvalidKey(seg.to_string(), "must not contain '/'"));
    }
    validate_key(seg)
}

impl BlobStore {
    pub fn new(root: impl Into<PathBuf>, bucket: impl Into<String>, secret: Vec<u8>) -> Self {
        BlobStore {
            root: root.into(),
            bucket: bucket.into(),
            secret,
            scheme: "s3".into(),
            remote: None,
        }
    }

    /// Blobs in a remote object store, named `<scheme>://<bucket>/<key>`. `root` stays a
    /// local scratch directory.
    pub fn remote(
        scheme: impl Into<String>,
        bucket: impl Into<String>,
        backend: std::sync::Arc<dyn ObjectBackend>,
        root: impl Into<PathBuf>,
    ) -> Self {
        BlobStore {
            root: root.into(),
            bucket: bucket.into(),
            secret: Vec::new(),
            scheme: scheme.into(),
            remote: Some(backend),
        }
    }

    /// Whether objects are files on this machine (and the embedded S3 endpoint can serve them).
    pub fn is_local(&self) -> bool {
        self.remote.is_none()
    }

    /// A presigned URL of the object store itself for `method` ("GET", "PUT") on `key`;
    /// `None` for local blobs (the API signs its own URLs for those).
    pub fn presign(
        &self,
        method: &str,
        key: &str,
        expires_in_secs: u64,
    ) -> Result<Option<String>, Error> {
        validate_key(key)?;
        match &self.remote {
            Some(r) => r
                .presign(method, key, std::time::Duration::from_secs(expires_in_secs))
                .map(Some),
            None => Ok(None),
        }
    }

    /// Keys and sizes of every object under `prefix/` (in no particular order).
    pub fn list_under(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        validate_key(prefix)?;
        if let Some(r) = &self.remote {
            return r.list(prefix);
        }
        let base = self.path(prefix)?;
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io(prefix.to_string(), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::Io(prefix.to_string(), e))?;
                let path = entry.path();
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::Io(prefix.to_string(), e))?;
                if meta.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&base) {
                    let rel = rel.to_string_lossy();
                    if rel
                        .split('/')
                        .any(|s| s.starts_with(objects::RESERVED_PREFIX))
                    {
                        continue;
                    }
                    out.push((format!("{prefix}/{rel}"), meta.len()));
                }
            }
        }
        Ok(out)
    }

    /// Copies the object `key`, or every object under `key/`, to `dest` (a file, or a
    /// directory tree mirroring the keys).
    pub fn download(&self, key: &str, dest: &Path) -> Result<(), Error> {
        let io = |e| Error::Io(key.to_string(), e);
        let write = |path: &Path, bytes: &[u8]| -> Result<(), Error> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(path, bytes).map_err(io)
        };
        match self.get(key) {
            Ok(bytes) => return write(dest, &bytes),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let under = self.list_under(key)?;
        if under.is_empty() {
            return Err(Error::NotFound(key.to_string()));
        }
        for (k, _) in under {
            let rel = k.strip_prefix(key).unwrap_or(&k).trim_start_matches('/');
            write(&dest.join(rel), &self.get(&k)?)?;
        }
        Ok(())
    }

    /// Copies the file `src`, or every file under the directory `src`, to `key` (or keys
    /// under `key/`).
    pub fn upload(&self, src: &Path, key: &str) -> Result<(), Error> {
        let io = |e| Error::Io(key.to_string(), e);
        let meta = std::fs::metadata(src).map_err(io)?;
        if !meta.is_dir() {
            return self.put(key, &std::fs::read(src).map_err(io)?);
        }
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io)? {
                let path = entry.map_err(io)?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(src) {
                    let k = format!("{key}/{}", rel.to_string_lossy());
                    self.put(&k, &std::fs::read(&path).map_err(io)?)?;
                }
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://<bucket>/<key>` (`gs://`, `az://` for those stores).
    pub fn uri(&self, key: &str) -> String {
        format!("{}://{}/{}", self.scheme, self.bucket, key)
    }

    /// The key of an `s3://<bucket>/<key>` URI of this store.
    pub fn key_of<'a>(&self, uri: &'a str) -> Result<&'a str, Error> {
        let rest = uri
            .strip_prefix(self.scheme.as_str())
            .and_then(|r| r.strip_prefix("://"))
            .and_then(|r| r.strip_prefix(self.bucket.as_str()))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| Error::ForeignUri(uri.to_string(), self.bucket.clone()))?;
        validate_key(rest)?;
        Ok(rest)
    }

    /// The filesystem path of a validated key (local blobs only).
    pub fn path(&self, key: &str) -> Result<PathBuf, Error> {
        validate_key(key)?;
        if self.remote.is_some() {
            return Err(Error::NotLocal(self.uri(key)));
        }
        Ok(self.root.join(&self.bucket).join(key))
    }

    /// Writes an object atomically (staged, then renamed into place): readers never see a
    /// partial object. Its ETag is computed when a client first asks for it.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        if let Some(r) = &self.remote {
            validate_key(key)?;
            r.put(key, bytes)?;
        } else {
            let staged = self.stage_bytes(key, bytes)?;
            self.commit_plain(staged, key, false).map_err(plain_error)?;
        }
        count_bytes("in", bytes.len());
        Ok(())
    }

    /// Writes an object only if its key is free, atomically: `Ok(false)` (and nothing
    /// written) when it exists. Local blobs only: object stores do not all honour
    /// conditional writes, so code that may run on one lets the database decide instead.
    pub fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, Error> {
        if self.remote.is_some() {
            return Err(Error::NotLocal(self.uri(key)));
        }
        let staged = self.stage_bytes(key, bytes)?;
        match self.commit_plain(staged, key, true) {
            Ok(()) => {
                count_bytes("in", bytes.len());
                Ok(true)
            }
            Err(objects::WriteError::Exists(_)) => Ok(false),
            Err(e) => Err(plain_error(e)),
        }
    }

    pub fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        let bytes = if let Some(r) = &self.remote {
            validate_key(key)?;
            r.get(key)?
        } else {
            let path = self.path(key)?;
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(key.to_string()),
                _ => Error::Io(key.to_string(), e),
            })?
        };
        count_bytes("out", bytes.len());
        Ok(bytes)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        if let Some(r) = &self.remote {
            validate_key(key)?;
            return r.exists(key);
        }
        Ok(self.path(key)?.is_file())
    }

    /// HMAC-SHA256 signature authorising `method` on `key` until `expires` (unix seconds),
    /// bound to the object's Content-MD5 (base64) when one is given.
    pub fn sign(&self, method: &str, key: &str, expires: u64, content_md5: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{method}\n{key}\n{expires}\n{content_md5}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Verifies a signature in constant time; `now` is unix seconds.
    pub fn verify(
        &self,
        method: &str,
        key: &str,
        expires: u64,
        content_md5: &str,
        sig: &str,
        now: u64,
    ) -> bool {
        if now > expires {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{method}\n{key}\n{expires}\n{content_md5}").as_bytes());
        match unhex(sig) {
            Some(bytes) => mac.verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// A plain write's refusal as a blob error (only the S3 endpoint speaks `WriteError`).
fn plain_error(e: objects::WriteError) -> Error {
    match e {
        objects::WriteError::Blob(e) => e,
        other => {
            let key = match &other {
                objects::WriteError::Exists(k) | objects::WriteError::Conflict(k) => k.clone(),
                _ => String::new(),
            };
            Error::Io(key, std::io::Error::other(other.to_string()))
        }
    }
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Lower-case hex of bytes (digests, signatures).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Bytes this process wrote to (`in`) or read from (`out`) the blob store.
fn count_bytes(direction: &'static str, n: usize) {
    metrics::counter!("contrail_blob_bytes_total", "direction" => direction).increment(n as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_bucket() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/./b",
            "a\\b",
            "a/\u{0}",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key("p/d/ROOT==/file.txt").is_ok());
        assert!(validate_segment("a/b").is_err());
    }

    #[test]
    fn put_get_round_trip_and_uri_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::new(dir.path(), "contrail", b"k".to_vec());
        s.put("a/b/c.txt", b"hi").unwrap();
        assert_eq!(s.get("a/b/c.txt").unwrap(), b"hi");
        assert_eq!(s.uri("a/b/c.txt"), "s3://contrail/a/b/c.txt");
        assert_eq!(s.key_of("s3://contrail/a/b/c.txt").unwrap(), "a/b/c.txt");
        assert!(s.key_of("s3://other/a").is_err());
        assert!(s.key_of("s3://contrail/../x").is_err());
        assert!(matches!(s.get("nope"), Err(Error::NotFound(_))));
        assert!(s.put_new("fresh", b"1").unwrap());
        assert!(!s.put_new("fresh", b"2").unwrap());
        assert_eq!(s.get("fresh").unwrap(), b"1");
    }

    #[test]
    fn signatures_bind_method_key_expiry_and_md5() {
        let s = BlobStore::new("/tmp", "b", b"secret".to_vec());
        let sig = s.sign("PUT", "k", 100, "md5");
        assert!(s.verify("PUT", "k", 100, "md5", &sig, 99));
        assert!(!s.verify("PUT", "k", 100, "md5", &sig, 101), "expired");
        assert!(!s.verify("PUT", "k2", 100, "md5", &sig, 99));
        assert!(!s.verify("PUT", "k", 100, "other", &sig, 99));
        assert!(!s.verify("GET", "k", 100, "md5", &sig, 99));
        assert!(!s.verify("PUT", "k", 101, "md5", &sig, 99));
        assert!(!s.verify("PUT", "k", 100, "md5", "zz", 99));
    }
}
