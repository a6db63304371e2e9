//! The signing keys of Contrail's authorization server: Ed25519 key pairs, one file each
//! (`<created unix seconds>-<key id>.pk8`, PKCS#8, mode 0600) in a 0700 directory.
//!
//! The newest key signs. When it is older than the rotation period a new one is made;
//! older keys stay (for verification and in the JWK set) until no token they signed can
//! still be valid, then are deleted. Replicas sharing the directory may both rotate at
//! once: that only adds a key. A key id not seen yet makes the ring look at the
//! directory again (at most once a second), so a key another replica made is found.

use crate::AuthError;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// A private key to sign with.
pub struct SigningKey {
    pub kid: String,
    pub pkcs8: Vec<u8>,
}

#[derive(Clone)]
struct Public {
    created: u64,
    key: Vec<u8>,
}

pub struct KeyRing {
    dir: PathBuf,
    rotate_every: u64,
    keep: u64,
    state: RwLock<Ring>,
}

struct Ring {
    public: BTreeMap<String, Public>,
    newest: Option<(u64, String, Vec<u8>)>,
    scanned: Instant,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |e| AuthError::Io(format!("{}: {e}", path.display()))
}

/// Creates `dir` (and parents) and makes it 0700.
pub fn private_dir(dir: &Path) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes a file that only its owner may read (0600 from the moment it exists).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl KeyRing {
    pub fn open(
        dir: PathBuf,
        rotate_every: Duration,
        token_ttl: Duration,
    ) -> Result<Self, AuthError> {
        private_dir(&dir)?;
        let ring = KeyRing {
            dir,
            rotate_every: rotate_every.as_secs().max(1),
            // A key stops signing at most `rotate_every` after it was made; tokens it
            // signed live `token_ttl` longer. A minute of slack covers clock skew.
            keep: rotate_every.as_secs() + token_ttl.as_secs() + 60,
            state: RwLock::new(Ring {
                public: BTreeMap::new(),
                newest: None,
                scanned: Instant::now(),
            }),
        };
        ring.rescan()?;
        Ok(ring)
    }

    fn rescan(&self) -> Result<(), AuthError> {
        let mut public = BTreeMap::new();
        let mut newest: Option<(u64, String, Vec<u8>)> = None;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((created, kid)) = name
                .strip_suffix(".pk8")
                .and_then(|s| s.split_once('-'))
                .and_then(|(c, k)| Some((c.parse::<u64>().ok()?, k.to_string())))
            else {
                continue;
            };
            let pkcs8 = match std::fs::read(&path) {
                Ok(b) => b,
                // Removed by another replica's clean-up meanwhile.
                Err(_) => continue,
            };
            let Ok(pair) = Ed25519KeyPair::from_pkcs8(&pkcs8) else {
                tracing::warn!(file = %path.display(), "not an Ed25519 key; ignored");
                continue;
            };
            public.insert(
                kid.clone(),
                Public {
                    created,
                    key: pair.public_key().as_ref().to_vec(),
                },
            );
            if newest
                .as_ref()
                .is_none_or(|n| (created, &kid) > (n.0, &n.1))
            {
                newest = Some((created, kid, pkcs8));
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.public = public;
        s.newest = newest;
        s.scanned = Instant::now();
        Ok(())
    }

    /// The key to sign with now, rotating first when the newest is too old.
    pub fn signing_key(&self, now: u64) -> Result<SigningKey, AuthError> {
        let due = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            match &s.newest {
                Some((created, kid, pkcs8)) if now < created + self.rotate_every => {
                    return Ok(SigningKey {
                        kid: kid.clone(),
                        pkcs8: pkcs8.clone(),
                    });
                }
                _ => true,
            }
        };
        if due {
            self.rotate(now)?;
        }
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let (_, kid, pkcs8) = s
            .newest
            .clone()
            .ok_or_else(|| AuthError::Io("no signing key after rotation".into()))?;
        Ok(SigningKey { kid, pkcs8 })
    }

    /// Makes a new key and deletes keys no valid token can need any more.
    pub fn rotate(&self, now: u64) -> Result<(), AuthError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| AuthError::Io("cannot generate an Ed25519 key".into()))?;
        let id: [u8; 9] = rand::random();
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        let tmp = self.dir.join(format!(".{now}-{kid}.tmp"));
        write_private(&tmp, doc.as_ref())?;
        let path = self.dir.join(format!("{now}-{kid}.pk8"));
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let expired: Vec<String> = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            s.public
                .iter()
                .filter(|(_, p)| p.created + self.keep < now)
                .map(|(kid, p)| format!("{}-{kid}.pk8", p.created))
                .collect()
        };
        for name in expired {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        tracing::info!(kid, "new signing key");
        self.rescan()
    }

    /// The public key with this id, looking at the directory again for an unseen id.
    pub fn verifying_key(&self, kid: &str) -> Option<Vec<u8>> {
        let stale = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = s.public.get(kid) {
                return Some(p.key.clone());
            }
            s.scanned.elapsed() >= Duration::from_secs(1)
        };
        if stale && looks_like_kid(kid) {
            let _ = self.rescan();
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            return s.public.get(kid).map(|p| p.key.clone());
        }
        None
    }

    /// The JWK set: every kept public key.
    pub fn jwks(&self) -> serde_json::Value {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<serde_json::Value> = s
            .public
            .iter()
            .map(|(kid, p)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": kid,
                    "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p.key),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Key ids this ring makes: 12 base64url characters. Anything else is not worth a scan.
fn looks_like_kid(kid: &str) -> bool {
    kid.len() == 12
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_and_old_ones_stay_published_until_no_token_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let ring = KeyRing::open(
            keys.clone(),
            Duration::from_secs(100),
            Duration::from_secs(10),
        )
        .unwrap();
        let first = ring.signing_key(1_000).unwrap();
        assert_eq!(ring.signing_key(1_050).unwrap().kid, first.kid);
        let second = ring.signing_key(1_100).unwrap();
        assert_ne!(second.kid, first.kid);
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(ring.signing_key(1_150).unwrap().kid, second.kid);
        assert!(ring.verifying_key(&first.kid).is_some());
        // 100 + 10 + 60 after its creation the first key can sign nothing still valid.
        ring.rotate(1_000 + 171).unwrap();
        assert!(ring.verifying_key(&first.kid).is_none());
        assert!(ring.verifying_key(&second.kid).is_some());
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(&keys).unwrap() {
            let m = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600);
        }
        // Another replica's ring sharing the directory finds the newest key.
        let other = KeyRing::open(keys, Duration::from_secs(100), Duration::from_secs(10)).unwrap();
        let newest = ring.signing_key(1_171).unwrap();
        assert_eq!(other.signing_key(1_171).unwrap().kid, newest.kid);
    }
}
