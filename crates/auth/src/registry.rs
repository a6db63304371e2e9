//! OAuth2 clients and static bearer tokens, in one TOML file (mode 0600).
//!
//! Secrets and tokens are generated here (32 random bytes each) and only their SHA-256
//! digests are stored. A slow password hash buys nothing for 256-bit random secrets, and
//! a fast one keeps the token endpoint cheap.

use crate::{AuthError, Grants};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub roles: Grants,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    pub roles: Grants,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub clients: Vec<Client>,
    #[serde(default)]
    pub tokens: Vec<StaticToken>,
}

/// The hex SHA-256 digest of a secret.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random secret: 32 bytes, base64url without padding (43 characters).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Names of clients and tokens: what a CLI argument and a JWT claim can carry safely.
fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Config(format!(
            "{what} {name:?}: use 1 to 128 letters, digits, '-', '_', '.', '@'"
        )))
    }
}

impl Registry {
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| AuthError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(AuthError::Io(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the file (0600, its directory 0700) through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let io = |e: std::io::Error| AuthError::Io(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            crate::keys::private_dir(dir)?;
        }
        let text = toml::to_string(self).map_err(|e| AuthError::Config(e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        crate::keys::write_private(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn check_client(&self, id: &str, secret: &str) -> Result<&Client, AuthError> {
        let wanted = digest(secret);
        match self.client(id) {
            Some(c) if same(&c.secret_sha256, &wanted) => Ok(c),
            _ => Err(AuthError::BadClient),
        }
    }

    pub fn check_static_token(&self, token: &str) -> Result<&StaticToken, AuthError> {
        let wanted = digest(token);
        self.tokens
            .iter()
            .find(|t| same(&t.token_sha256, &wanted))
            .ok_or_else(|| AuthError::InvalidToken("not a known token".into()))
    }

    /// Adds a client; returns its new secret (shown once, stored only as a digest).
    pub fn add_client(&mut self, id: &str, roles: Grants) -> Result<String, AuthError> {
        check_name("client id", id)?;
        if self.client(id).is_some() {
            return Err(AuthError::Config(format!("client {id:?} exists already")));
        }
        let secret = new_secret();
        self.clients.push(Client {
            id: id.to_string(),
            secret_sha256: digest(&secret),
            roles,
        });
        Ok(secret)
    }

    /// Adds a static bearer token; returns it (shown once).
    pub fn add_token(&mut self, name: &str, roles: Grants) -> Result<String, AuthError> {
        check_name("token name", name)?;
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(AuthError::Config(format!("token {name:?} exists already")));
        }
        let token = format!("ct_{}", new_secret());
        self.tokens.push(StaticToken {
            name: name.to_string(),
            token_sha256: digest(&token),
            roles,
        });
        Ok(token)
    }

    /// Removes a client or a static token by name; false if neither exists.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.clients.len() + self.tokens.len();
        self.clients.retain(|c| c.id != name);
        self.tokens.retain(|t| t.name != name);
        before != self.clients.len() + self.tokens.len()
    }
}

/// The registry as the server sees it: reloaded as soon as the file changes (one `stat`
/// per call), so `contrail auth client add|rm` takes effect on the next request.
pub struct Watched {
    path: PathBuf,
    state: RwLock<(std::sync::Arc<Registry>, Option<Stamp>)>,
}

/// When a file last changed, and its size.
type Stamp = (SystemTime, u64);

impl Watched {
    pub fn open(path: PathBuf) -> Result<Self, AuthError> {
        let registry = Registry::load(&path)?;
        let stamp = stamp(&path);
        Ok(Watched {
            path,
            state: RwLock::new((registry.into(), stamp)),
        })
    }

    pub fn current(&self) -> Result<std::sync::Arc<Registry>, AuthError> {
        let now = stamp(&self.path);
        {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            if s.1 == now {
                return Ok(s.0.clone());
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.1 != now {
            match Registry::load(&self.path) {
                Ok(r) => s.0 = r.into(),
                // A half-edited file keeps the last good registry.
                Err(e) => tracing::warn!("auth registry not reloaded: {e}"),
            }
            s.1 = now;
        }
        Ok(s.0.clone())
    }
}

/// The file's [`Stamp`] (writes replace it by a rename).
fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn secrets_are_stored_as_digests_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth/clients.toml");
        let mut r = Registry::default();
        let secret = r
            .add_client("ci", Grants::everywhere(Role::Editor))
            .unwrap();
        let token = r
            .add_token("bot", Grants::everywhere(Role::Viewer))
            .unwrap();
        assert!(r.add_client("ci", Grants::default()).is_err());
        assert!(r.add_client("bad name", Grants::default()).is_err());
        r.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret) && !text.contains(&token));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let r = Registry::load(&path).unwrap();
        assert_eq!(r.check_client("ci", &secret).unwrap().id, "ci");
        assert!(r.check_client("ci", "wrong").is_err());
        assert!(r.check_client("nobody", &secret).is_err());
        assert_eq!(r.check_static_token(&token).unwrap().name, "bot");
        assert!(r.check_static_token("ct_guess").is_err());
        let mut r = r;
        assert!(r.remove("bot"));
        assert!(!r.remove("bot"));
    }
}
