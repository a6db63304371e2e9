//! Objects in memory, behind the blob store's object-store port.

use crate::lock;
use contrail_blob::{Error, ObjectBackend};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, Vec<u8>>,
    /// Writes that fail before anything is stored.
    fail_writes: u32,
    /// Writes that store a truncated object and then report failure.
    torn_writes: u32,
}

/// An object store in memory. A torn write leaves a truncated object behind and reports
/// an error, as a local file written in place by a killed writer would.
#[derive(Debug, Default)]
pub struct MemObjects(Mutex<Inner>);

impl MemObjects {
    /// The next `n` writes fail without storing anything.
    pub fn fail_next_writes(&self, n: u32) {
        lock(&self.0).fail_writes += n;
    }
    /// The next `n` writes store half the object and fail.
    pub fn tear_next_writes(&self, n: u32) {
        lock(&self.0).torn_writes += n;
    }
}

impl ObjectBackend for MemObjects {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut inner = lock(&self.0);
        if inner.fail_writes > 0 {
            inner.fail_writes -= 1;
            return Err(Error::Remote(key.into(), "injected write failure".into()));
        }
        if inner.torn_writes > 0 {
            inner.torn_writes -= 1;
            let half = bytes[..bytes.len() / 2].to_vec();
            inner.objects.insert(key.into(), half);
            return Err(Error::Remote(key.into(), "injected torn write".into()));
        }
        inner.objects.insert(key.into(), bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        lock(&self.0)
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound(key.into()))
    }

    fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(lock(&self.0).objects.contains_key(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let dir = format!("{}/", prefix.trim_end_matches('/'));
        Ok(lock(&self.0)
            .objects
            .range(dir.clone()..)
            .take_while(|(k, _)| k.starts_with(&dir))
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    fn presign(
        &self,
        method: &str,
        key: &str,
        _expires_in: std::time::Duration,
    ) -> Result<String, Error> {
        Ok(format!("mem://{method}/{key}"))
    }
}
