//! S3 object semantics over the bucket directory: what the embedded S3 endpoint serves.
//!
//! An object `<key>` is the file `<root>/<bucket>/<key>`. Beside the bucket directory the
//! store keeps three private trees on the same filesystem (so renames are atomic):
//! - `<root>/.contrail-tmp/`: staging files; a write lands there and is renamed into place,
//!   so a reader never sees a partial object and listings never see a staging file;
//! - `<root>/.contrail-meta/<bucket>/<key>.meta`: the object's ETag, content type and user
//!   metadata (JSON). A sidecar is valid only for the file it was written for (same inode,
//!   size and mtime); objects written without one (by the engine, by raw containers) get
//!   their MD5 computed on first use;
//! - `<root>/.contrail-multipart/<upload id>/`: the parts of unfinished multipart uploads.
//!
//! A key ending in `/` (a "directory marker", as pyarrow writes them) is the file
//! `.contrail-dir` inside that directory. Key segments starting with `.contrail-` are
//! reserved. A prefix that is only a directory is not an object.
//!
//! Everything here is synchronous; the S3 endpoint calls it from the blocking pool.

use crate::{BlobStore, Error, hex, unhex, validate_key};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Segments starting with this are the store's own, never a client's.
pub const RESERVED_PREFIX: &str = ".contrail-";
const MARKER: &str = ".contrail-dir";
const TMP_DIR: &str = ".contrail-tmp";
const META_DIR: &str = ".contrail-meta";
const MULTIPART_DIR: &str = ".contrail-multipart";

/// S3's smallest part, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's part numbers.
pub const MAX_PART_NUMBER: i32 = 10_000;

/// What a client may set on an object and read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
}

/// An object as HEAD, GET and listings describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Without quotes: the hex MD5, or `<md5 of part md5s>-<parts>` for a multipart object.
    pub etag: String,
    pub modified: SystemTime,
    pub attrs: ObjectAttrs,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    etag: String,
    size: u64,
    ino: u64,
    mtime_ns: i128,
    #[serde(flatten)]
    attrs: ObjectAttrs,
}

impl Sidecar {
    /// The sidecar of the file `meta` describes.
    fn of(meta: &fs::Metadata, etag: &str, attrs: &ObjectAttrs) -> Sidecar {
        Sidecar {
            etag: etag.to_string(),
            size: meta.len(),
            ino: meta.ino(),
            mtime_ns: mtime_ns(meta),
            attrs: attrs.clone(),
        }
    }

    /// Whether it was written for this very file (same inode, size and mtime).
    fn describes(&self, meta: &fs::Metadata) -> bool {
        self.ino == meta.ino() && self.size == meta.len() && self.mtime_ns == mtime_ns(meta)
    }

    fn info(self, key: &str, meta: &fs::Metadata) -> Result<ObjectInfo, Error> {
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            etag: self.etag,
            modified: meta.modified().map_err(io_err(key))?,
            attrs: self.attrs,
        })
    }
}

/// A listing entry, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Object(ObjectInfo),
    /// A common prefix (ends with the delimiter).
    Prefix(String),
}

impl Listed {
    /// The object's key or the common prefix: where a following page starts after.
    pub fn key(&self) -> &str {
        match self {
            Listed::Object(o) => &o.key,
            Listed::Prefix(p) => p,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Listed>,
    /// More entries follow the last one.
    pub truncated: bool,
}

/// A multipart upload's part as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub size: u64,
    pub etag: String,
    pub modified: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadRecord {
    key: String,
    attrs: ObjectAttrs,
}

/// Why a write was refused (beyond IO).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Blob(#[from] Error),
    /// `If-None-Match: *` and the key exists.
    #[error("object '{0}' already exists")]
    Exists(String),
    /// The key is a prefix of other objects, or one of its parents is an object.
    #[error("key '{0}' conflicts with an existing object or prefix")]
    Conflict(String),
    #[error("no such upload '{0}'")]
    NoSuchUpload(String),
    #[error("part {0} is not uploaded or its ETag differs")]
    InvalidPart(i32),
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is {1} bytes, below the 5 MiB minimum for all parts but the last")]
    EntityTooSmall(i32, u64),
}

/// Where a validated key lives on disk.
struct Located {
    file: PathBuf,
    meta: PathBuf,
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::Io(what.to_string(), e)
}

/// A staging file: written by the caller, then committed (renamed into place) or dropped.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// MD5 of a stream, hex.
pub fn md5_hex_of(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// Checks an object key (a directory marker when it ends with `/`); returns its path
/// relative to the bucket directory.
pub fn validate_object_key(key: &str) -> Result<String, Error> {
    match key.strip_suffix('/') {
        Some(dir) => validate_key(dir).map(|()| format!("{dir}/{MARKER}")),
        None => validate_key(key).map(|()| key.to_string()),
    }
}

fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl BlobStore {
    fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }

    fn meta_root(&self) -> PathBuf {
        self.root.join(META_DIR).join(&self.bucket)
    }

    /// Maps an object key (a marker when it ends with `/`) to its file and sidecar.
    fn locate(&self, key: &str) -> Result<Located, Error> {
        let rel = validate_object_key(key)?;
        Ok(Located {
            file: self.bucket_dir().join(&rel),
            meta: self.meta_root().join(format!("{rel}.meta")),
        })
    }

    /// A fresh staging file, open for writing, for a write of bytes or a stream.
    pub fn stage(&self) -> Result<(Staged, File), Error> {
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(io_err("staging"))?;
        let path = dir.join(format!("{}-{}", std::process::id(), crate::unique()));
        let file = File::create(&path).map_err(io_err("staging"))?;
        Ok((Staged { path }, file))
    }

    /// A staging file holding `bytes`.
    pub(crate) fn stage_bytes(&self, key: &str, bytes: &[u8]) -> Result<Staged, Error> {
        let (staged, mut file) = self.stage()?;
        file.write_all(bytes).map_err(io_err(key))?;
        Ok(staged)
    }

    /// The object `key`, or `None` when there is none (a missing key, a prefix, a key that
    /// can never exist).
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let Ok(loc) = self.locate(key) else {
            return Ok(None);
        };
        self.info_at(key, &loc)
    }

    fn info_at(&self, key: &str, loc: &Located) -> Result<Option<ObjectInfo>, Error> {
        let meta = match fs::metadata(&loc.file) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::Io(key.to_string(), e)),
        };
        let sidecar = fs::read(&loc.meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok());
        if let Some(s) = sidecar
            && s.describes(&meta)
        {
            return s.info(key, &meta).map(Some);
        }
        // Written without a sidecar (or replaced since): its ETag is its MD5. Persist it
        // only where no sidecar exists, so a writer's own sidecar always wins.
        let etag = match File::open(&loc.file) {
            Ok(f) => md5_hex_of(f).map_err(io_err(key))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io(key.to_string(), e)),
        };
        let sidecar = Sidecar::of(&meta, &etag, &ObjectAttrs::default());
        if let Some(dir) = loc.meta.parent()
            && fs::create_dir_all(dir).is_ok()
            && let Ok(mut f) = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&loc.meta)
        {
            let _ = f.write_all(&serde_json::to_vec(&sidecar).unwrap_or_default());
        }
        sidecar.info(key, &meta).map(Some)
    }

    /// Opens the object for reading with its description.
    pub fn open(&self, key: &str) -> Result<Option<(File, ObjectInfo)>, Error> {
        let Ok(loc) = self.locate(key) else {
            return Ok(None);
        };
        let Some(info) = self.info_at(key, &loc)? else {
            return Ok(None);
        };
        match File::open(&loc.file) {
            Ok(f) => Ok(Some((f, info))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(key.to_string(), e)),
        }
    }

    /// Makes a staged file the object `key`, atomically, with its ETag and attributes.
    /// With `exclusive`, refuses (`Exists`) when the key already exists, atomically.
    pub fn commit(
        &self,
        staged: Staged,
        key: &str,
        etag: &str,
        attrs: &ObjectAttrs,
        exclusive: bool,
    ) -> Result<ObjectInfo, WriteError> {
        let loc = self.locate(key)?;
        place(&staged, &loc.file, key, exclusive)?;
        let meta = fs::metadata(&loc.file).map_err(io_err(key))?;
        let sidecar = Sidecar::of(&meta, etag, attrs);
        let bytes = serde_json::to_vec(&sidecar).expect("sidecars serialize");
        place(&self.stage_bytes(key, &bytes)?, &loc.meta, key, false)?;
        Ok(sidecar.info(key, &meta)?)
    }

    /// Makes a staged file the object `key` without describing it: its ETag is computed
    /// when a client first asks (the engine's writes, which no S3 client made).
    pub(crate) fn commit_plain(
        &self,
        staged: Staged,
        key: &str,
        exclusive: bool,
    ) -> Result<(), WriteError> {
        let loc = self.locate(key)?;
        place(&staged, &loc.file, key, exclusive)?;
        // A sidecar left from an earlier object would no longer describe this file.
        let _ = fs::remove_file(loc.meta);
        Ok(())
    }

    /// Copies the object `from` to `to`, with the source's attributes or `attrs`; `None`
    /// when there is no such source.
    pub fn copy_object(
        &self,
        from: &str,
        to: &str,
        attrs: Option<ObjectAttrs>,
    ) -> Result<Option<ObjectInfo>, WriteError> {
        let Some((mut src, info)) = self.open(from)? else {
            return Ok(None);
        };
        let (staged, mut out) = self.stage()?;
        io::copy(&mut src, &mut out).map_err(io_err(to))?;
        drop(out);
        let attrs = attrs.unwrap_or(info.attrs);
        self.commit(staged, to, &info.etag, &attrs, false).map(Some)
    }

    /// Deletes the object `key`; a missing key or a prefix is not an error (S3 answers 204).
    /// Empty parent directories are removed so they do not show as prefixes.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        let Ok(loc) = self.locate(key) else {
            return Ok(false);
        };
        let removed = match fs::remove_file(&loc.file) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::IsADirectory
                        | io::ErrorKind::NotADirectory
                ) || loc.file.is_dir() =>
            {
                false
            }
            Err(e) => return Err(Error::Io(key.to_string(), e)),
        };
        let _ = fs::remove_file(&loc.meta);
        if removed {
            prune(loc.file.parent(), &self.bucket_dir());
            prune(loc.meta.parent(), &self.meta_root());
        }
        Ok(removed)
    }

    /// One page of the objects whose keys start with `prefix` and sort after `after`, in
    /// key order; with a delimiter, keys that contain it past the prefix are rolled up into
    /// common prefixes. When `after` is a common prefix already returned (a continuation),
    /// everything under it is skipped.
    pub fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing, Error> {
        let mut walk = Walk {
            store: self,
            prefix,
            delimiter: delimiter.filter(|d| !d.is_empty()),
            after: after.unwrap_or(""),
            max,
            out: Listing::default(),
        };
        if max == 0 {
            return Ok(walk.out);
        }
        let _ = walk.dir(&self.bucket_dir(), "");
        Ok(walk.out)
    }

    // ---- multipart ----

    fn upload_dir(&self, id: &str) -> Result<PathBuf, WriteError> {
        if !valid_upload_id(id) {
            return Err(WriteError::NoSuchUpload(id.to_string()));
        }
        let dir = self.root.join(MULTIPART_DIR).join(id);
        if !dir.join("upload.json").is_file() {
            return Err(WriteError::NoSuchUpload(id.to_string()));
        }
        Ok(dir)
    }

    fn upload_record(&self, id: &str, key: &str) -> Result<(PathBuf, UploadRecord), WriteError> {
        let dir = self.upload_dir(id)?;
        let rec: UploadRecord = fs::read(dir.join("upload.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| WriteError::NoSuchUpload(id.to_string()))?;
        if rec.key != key {
            return Err(WriteError::NoSuchUpload(id.to_string()));
        }
        Ok((dir, rec))
    }

    /// Starts a multipart upload of `key`; returns its id.
    pub fn create_upload(&self, key: &str, attrs: &ObjectAttrs) -> Result<String, Error> {
        self.locate(key)?;
        let seed = format!(
            "{}-{}-{:?}-{key}",
            std::process::id(),
            crate::unique(),
            SystemTime::now()
        );
        let id = hex(&sha2::Sha256::digest(seed.as_bytes())[..16]);
        let dir = self.root.join(MULTIPART_DIR).join(&id);
        fs::create_dir_all(&dir).map_err(io_err(key))?;
        let rec = UploadRecord {
            key: key.to_string(),
            attrs: attrs.clone(),
        };
        fs::write(
            dir.join("upload.json"),
            serde_json::to_vec(&rec).expect("records serialize"),
        )
        .map_err(io_err(key))?;
        Ok(id)
    }

    /// Files a staged part (re-uploading a number replaces it).
    pub fn commit_part(
        &self,
        id: &str,
        key: &str,
        number: i32,
        staged: Staged,
        etag: &str,
    ) -> Result<(), WriteError> {
        let (dir, _) = self.upload_record(id, key)?;
        let part = dir.join(format!("{number:05}"));
        fs::write(dir.join(format!("{number:05}.etag")), etag).map_err(io_err(key))?;
        fs::rename(&staged.path, part).map_err(io_err(key))?;
        Ok(())
    }

    /// Refuses (`NoSuchUpload`) an upload that does not exist or is of another key.
    pub fn check_upload(&self, id: &str, key: &str) -> Result<(), WriteError> {
        self.upload_record(id, key).map(|_| ())
    }

    /// The parts uploaded so far, by number.
    pub fn list_parts(&self, id: &str, key: &str) -> Result<Vec<PartInfo>, WriteError> {
        let (dir, _) = self.upload_record(id, key)?;
        parts_in(&dir, key)
    }

    /// Assembles the listed parts, in order, into the object; the ETag is the MD5 of the
    /// parts' MD5s followed by `-<count>`.
    pub fn complete_upload(
        &self,
        id: &str,
        key: &str,
        listed: &[(i32, String)],
    ) -> Result<ObjectInfo, WriteError> {
        let (dir, rec) = self.upload_record(id, key)?;
        let stored = parts_in(&dir, key)?;
        if listed.is_empty() {
            return Err(WriteError::InvalidPart(0));
        }
        let mut chosen = Vec::with_capacity(listed.len());
        let mut last = 0;
        for (number, etag) in listed {
            if *number <= last {
                return Err(WriteError::InvalidPartOrder);
            }
            last = *number;
            let part = stored
                .iter()
                .find(|p| p.number == *number && p.etag == etag.trim_matches('"'))
                .ok_or(WriteError::InvalidPart(*number))?;
            chosen.push(part.clone());
        }
        for part in &chosen[..chosen.len() - 1] {
            if part.size < MIN_PART_SIZE {
                return Err(WriteError::EntityTooSmall(part.number, part.size));
            }
        }
        let (staged, mut out) = self.stage()?;
        let mut digests = Md5::new();
        for part in &chosen {
            let mut f = File::open(dir.join(format!("{:05}", part.number))).map_err(io_err(key))?;
            io::copy(&mut f, &mut out).map_err(io_err(key))?;
            digests.update(unhex(&part.etag).ok_or(WriteError::InvalidPart(part.number))?);
        }
        out.sync_all().map_err(io_err(key))?;
        drop(out);
        let etag = format!("{}-{}", hex(&digests.finalize()), chosen.len());
        let info = self.commit(staged, key, &etag, &rec.attrs, false)?;
        let _ = fs::remove_dir_all(&dir);
        Ok(info)
    }

    /// Drops an upload and its parts.
    pub fn abort_upload(&self, id: &str, key: &str) -> Result<(), WriteError> {
        let (dir, _) = self.upload_record(id, key)?;
        fs::remove_dir_all(&dir).map_err(io_err(key))?;
        Ok(())
    }
}

/// The parts stored in an upload's directory, by number.
fn parts_in(dir: &Path, key: &str) -> Result<Vec<PartInfo>, WriteError> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(key))? {
        let entry = entry.map_err(io_err(key))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(number) = name.parse::<i32>() else {
            continue;
        };
        let meta = entry.metadata().map_err(io_err(key))?;
        let etag = fs::read_to_string(dir.join(format!("{name}.etag"))).unwrap_or_default();
        parts.push(PartInfo {
            number,
            size: meta.len(),
            etag,
            modified: meta.modified().map_err(io_err(key))?,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// Puts a staged file at `file`, atomically: renamed over whatever is there, or with
/// `exclusive` linked only where nothing is (`Exists` otherwise). A parent that a concurrent
/// delete pruned is made again.
fn place(staged: &Staged, file: &Path, key: &str, exclusive: bool) -> Result<(), WriteError> {
    let dir = file.parent().expect("object files have a parent");
    let mut tries = 0;
    loop {
        tries += 1;
        if let Err(e) = fs::create_dir_all(dir) {
            return Err(match e.kind() {
                io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                    WriteError::Conflict(key.to_string())
                }
                _ => Error::Io(key.to_string(), e).into(),
            });
        }
        let placed = if exclusive {
            fs::hard_link(&staged.path, file)
        } else {
            fs::rename(&staged.path, file)
        };
        match placed {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => continue,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && exclusive => {
                return Err(WriteError::Exists(key.to_string()));
            }
            Err(e) if e.kind() == io::ErrorKind::IsADirectory || file.is_dir() => {
                return Err(WriteError::Conflict(key.to_string()));
            }
            Err(e) => return Err(Error::Io(key.to_string(), e).into()),
        }
    }
}

/// Removes empty directories from `dir` up to (not including) `stop`.
fn prune(mut dir: Option<&Path>, stop: &Path) {
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            return;
        }
        dir = d.parent();
    }
}

/// A depth-first walk of the bucket directory in key order, stopping at a full page.
struct Walk<'a> {
    store: &'a BlobStore,
    prefix: &'a str,
    delimiter: Option<&'a str>,
    after: &'a str,
    max: usize,
    out: Listing,
}

/// `Err(())` stops the walk (the page is full).
type Flow = Result<(), ()>;

impl Walk<'_> {
    fn dir(&mut self, path: &Path, dir_key: &str) -> Flow {
        let Ok(read) = fs::read_dir(path) else {
            return Ok(());
        };
        // Children sorted by what they add to the key: a directory contributes "name/".
        let mut children: Vec<(String, bool)> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_dir = e.file_type().ok()?.is_dir();
                Some((name, is_dir))
            })
            .filter(|(name, _)| name == MARKER || !name.starts_with(RESERVED_PREFIX))
            .map(|(name, is_dir)| {
                if is_dir {
                    (format!("{name}/"), true)
                } else {
                    (name, false)
                }
            })
            .collect();
        children.sort();
        for (part, is_dir) in children {
            if part == MARKER {
                // The marker is the directory's own key, which sorts before its children.
                if !dir_key.is_empty() {
                    self.object(dir_key)?;
                }
                continue;
            }
            let key = format!("{dir_key}{part}");
            if is_dir {
                self.subdir(&path.join(part.trim_end_matches('/')), &key)?;
            } else {
                self.object(&key)?;
            }
        }
        Ok(())
    }

    fn subdir(&mut self, path: &Path, key: &str) -> Flow {
        // Nothing under `key` can match the prefix, or everything under it sorts before
        // the start.
        if !(key.starts_with(self.prefix) || self.prefix.starts_with(key)) {
            return Ok(());
        }
        if !self.after.starts_with(key) && self.after > key {
            return Ok(());
        }
        if let Some(rolled) = self.rollup(key) {
            // Every key under this directory rolls up into one prefix: emit it once if the
            // directory holds any object at all.
            if rolled.len() <= key.len() && has_object(path) {
                return self.push_prefix(rolled);
            }
        }
        self.dir(path, key)
    }

    /// The common prefix a key (or every key under a directory key) rolls up into.
    fn rollup(&self, key: &str) -> Option<String> {
        let delimiter = self.delimiter?;
        let rest = key.strip_prefix(self.prefix)?;
        let at = rest.find(delimiter)?;
        Some(key[..self.prefix.len() + at + delimiter.len()].to_string())
    }

    fn object(&mut self, key: &str) -> Flow {
        if !key.starts_with(self.prefix) || key <= self.after {
            return Ok(());
        }
        if let Some(rolled) = self.rollup(key) {
            return self.push_prefix(rolled);
        }
        match self.store.head(key) {
            Ok(Some(info)) => self.push(Listed::Object(info)),
            _ => Ok(()),
        }
    }

    /// Adds an entry, or ends the page (marking it truncated) when it is full.
    fn push(&mut self, entry: Listed) -> Flow {
        if self.out.entries.len() == self.max {
            self.out.truncated = true;
            return Err(());
        }
        self.out.entries.push(entry);
        Ok(())
    }

    fn push_prefix(&mut self, prefix: String) -> Flow {
        if let Some(Listed::Prefix(last)) = self.out.entries.last()
            && *last == prefix
        {
            return Ok(());
        }
        // A continuation that ended on this prefix already returned it.
        if self.after.starts_with(&prefix) || prefix.as_str() <= self.after {
            return Ok(());
        }
        self.push(Listed::Prefix(prefix))
    }
}

/// Whether a directory holds an object anywhere below it.
fn has_object(dir: &Path) -> bool {
    let Ok(read) = fs::read_dir(dir) else {
        return false;
    };
    read.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        match e.file_type() {
            Ok(t) if t.is_dir() => !name.starts_with(RESERVED_PREFIX) && has_object(&e.path()),
            Ok(_) => name == MARKER || !name.starts_with(RESERVED_PREFIX),
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::new(dir.path(), "contrail", b"k".to_vec());
        (dir, s)
    }

    fn put(s: &BlobStore, key: &str, body: &[u8]) -> ObjectInfo {
        let (staged, _) = s.stage().unwrap();
        fs::write(&staged.path, body).unwrap();
        let etag = md5_hex_of(body).unwrap();
        s.commit(staged, key, &etag, &ObjectAttrs::default(), false)
            .unwrap()
    }

    fn keys(l: &Listing) -> Vec<String> {
        l.entries
            .iter()
            .map(|e| match e {
                Listed::Object(_) => e.key().to_string(),
                Listed::Prefix(p) => format!("P:{p}"),
            })
            .collect()
    }

    #[test]
    fn prefixes_and_missing_keys_are_not_objects() {
        let (_d, s) = store();
        put(&s, "probe/a/b/c.txt", b"x");
        for k in [
            "probe/a/b",
            "probe/a/b/",
            "probe",
            "nope",
            "a//b",
            "../x",
            ".contrail-tmp/x",
        ] {
            assert!(s.head(k).unwrap().is_none(), "{k}");
            assert!(s.open(k).unwrap().is_none(), "{k}");
            assert!(!s.delete(k).unwrap(), "{k}");
        }
        assert!(s.head("probe/a/b/c.txt").unwrap().is_some());
    }

    #[test]
    fn etag_is_md5_and_computed_for_plain_writes() {
        let (_d, s) = store();
        let info = put(&s, "k", b"hello");
        assert_eq!(info.etag, "5d41402abc4b2a76b9719d911017c592");
        s.put("plain", b"hello").unwrap();
        assert_eq!(
            s.head("plain").unwrap().unwrap().etag,
            "5d41402abc4b2a76b9719d911017c592"
        );
        // Replaced by a plain write: the old sidecar no longer applies.
        let attrs = ObjectAttrs {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let (staged, _) = s.stage().unwrap();
        fs::write(&staged.path, b"one").unwrap();
        s.commit(staged, "k", "custom", &attrs, false).unwrap();
        assert_eq!(s.head("k").unwrap().unwrap().attrs, attrs);
        s.put("k", b"hello").unwrap();
        let info = s.head("k").unwrap().unwrap();
        assert_eq!(info.etag, "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(info.attrs, ObjectAttrs::default());
    }

    #[test]
    fn exclusive_commit_refuses_an_existing_key() {
        let (_d, s) = store();
        put(&s, "k", b"1");
        let (staged, _) = s.stage().unwrap();
        let err = s
            .commit(staged, "k", "x", &ObjectAttrs::default(), true)
            .unwrap_err();
        assert!(matches!(err, WriteError::Exists(_)));
        let (staged, _) = s.stage().unwrap();
        s.commit(staged, "k2", "x", &ObjectAttrs::default(), true)
            .unwrap();
    }

    #[test]
    fn a_key_cannot_be_both_an_object_and_a_prefix() {
        let (_d, s) = store();
        put(&s, "a/b", b"1");
        let (staged, _) = s.stage().unwrap();
        let err = s
            .commit(staged, "a/b/c", "x", &ObjectAttrs::default(), false)
            .unwrap_err();
        assert!(matches!(err, WriteError::Conflict(_)), "{err:?}");
        put(&s, "x/y/z", b"1");
        let (staged, _) = s.stage().unwrap();
        let err = s
            .commit(staged, "x/y", "x", &ObjectAttrs::default(), false)
            .unwrap_err();
        assert!(matches!(err, WriteError::Conflict(_)), "{err:?}");
    }

    #[test]
    fn delete_prunes_empty_directories() {
        let (d, s) = store();
        put(&s, "a/b/c", b"1");
        put(&s, "a/x", b"1");
        assert!(s.delete("a/b/c").unwrap());
        assert!(!d.path().join("contrail/a/b").exists());
        assert!(d.path().join("contrail/a").exists());
        let l = s.list("", Some("/"), None, 100).unwrap();
        assert_eq!(keys(&l), ["P:a/"]);
    }

    #[test]
    fn listing_is_in_key_order_with_prefixes_and_pages() {
        let (_d, s) = store();
        for k in ["a.txt", "a/1", "a/2/x", "a/", "b", "ab/c", "a-b"] {
            put(&s, k, b"1");
        }
        let all = s.list("", None, None, 100).unwrap();
        assert_eq!(
            keys(&all),
            ["a-b", "a.txt", "a/", "a/1", "a/2/x", "ab/c", "b"]
        );
        let top = s.list("", Some("/"), None, 100).unwrap();
        assert_eq!(keys(&top), ["a-b", "a.txt", "P:a/", "P:ab/", "b"]);
        let under = s.list("a/", Some("/"), None, 100).unwrap();
        assert_eq!(keys(&under), ["a/", "a/1", "P:a/2/"]);
        let partial = s.list("a", None, None, 100).unwrap();
        assert_eq!(
            keys(&partial),
            ["a-b", "a.txt", "a/", "a/1", "a/2/x", "ab/c"]
        );
        // Pages of two, continuing after the last entry.
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let page = s.list("", Some("/"), after.as_deref(), 2).unwrap();
            seen.extend(keys(&page));
            if !page.truncated {
                break;
            }
            after = Some(page.entries.last().unwrap().key().to_string());
        }
        assert_eq!(seen, keys(&top));
        let none = s.list("", None, Some("b"), 100).unwrap();
        assert!(none.entries.is_empty() && !none.truncated);
        // A non-slash delimiter.
        let dashed = s.list("a", Some("-"), None, 100).unwrap();
        assert_eq!(keys(&dashed)[0], "P:a-");
    }

    #[test]
    fn multipart_assembles_in_order_and_checks_parts() {
        let (_d, s) = store();
        let id = s.create_upload("big", &ObjectAttrs::default()).unwrap();
        let big = vec![7u8; MIN_PART_SIZE as usize];
        let mut etags = Vec::new();
        for (n, body) in [(1, &big[..]), (2, &b"tail"[..])] {
            let (staged, _) = s.stage().unwrap();
            fs::write(&staged.path, body).unwrap();
            let etag = md5_hex_of(body).unwrap();
            s.commit_part(&id, "big", n, staged, &etag).unwrap();
            etags.push((n, etag));
        }
        assert_eq!(s.list_parts(&id, "big").unwrap().len(), 2);
        let reversed: Vec<_> = etags.iter().rev().cloned().collect();
        assert!(matches!(
            s.complete_upload(&id, "big", &reversed),
            Err(WriteError::InvalidPartOrder)
        ));
        assert!(matches!(
            s.complete_upload(&id, "big", &[(1, "00".into())]),
            Err(WriteError::InvalidPart(1))
        ));
        let info = s.complete_upload(&id, "big", &etags).unwrap();
        let mut md5s = Vec::new();
        for (_, e) in &etags {
            md5s.extend(unhex(e).unwrap());
        }
        assert_eq!(info.etag, format!("{}-2", md5_hex_of(&md5s[..]).unwrap()));
        assert_eq!(info.size, MIN_PART_SIZE + 4);
        assert!(matches!(
            s.list_parts(&id, "big"),
            Err(WriteError::NoSuchUpload(_))
        ));
        // A small part that is not the last is refused.
        let id = s.create_upload("small", &ObjectAttrs::default()).unwrap();
        let mut etags = Vec::new();
        for n in 1..=2 {
            let (staged, _) = s.stage().unwrap();
            fs::write(&staged.path, b"x").unwrap();
            s.commit_part(&id, "small", n, staged, &md5_hex_of(&b"x"[..]).unwrap())
                .unwrap();
            etags.push((n, md5_hex_of(&b"x"[..]).unwrap()));
        }
        assert!(matches!(
            s.complete_upload(&id, "small", &etags),
            Err(WriteError::EntityTooSmall(1, 1))
        ));
        s.abort_upload(&id, "small").unwrap();
        assert!(matches!(
            s.abort_upload("../../etc", "small"),
            Err(WriteError::NoSuchUpload(_))
        ));
    }
}
