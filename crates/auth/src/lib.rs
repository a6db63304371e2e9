//! Who is calling, and what they may do.
//!
//! - [`roles`]: the three roles (`viewer`, `editor`, `admin`), granted per project or for
//!   every project (`*`), and the action each RPC needs.
//! - [`registry`]: OAuth2 clients and static bearer tokens, kept in one TOML file whose
//!   secrets are stored as SHA-256 digests.
//! - [`keys`]: the Ed25519 signing keys of Contrail's own authorization server, rotated on
//!   a schedule and published as a JWK set.
//! - [`tokens`]: access tokens (signed JWTs with expiry and audience) issued for clients.
//! - [`oidc`]: tokens of an external OpenID Connect issuer, checked against its JWK set.
//! - [`Authenticator`]: one bearer token in, one [`Principal`] (or a refusal) out.
//!
//! This crate reads and writes its own files (the registry, the key directory) and keeps
//! no other IO: fetching an external issuer's JWK set is the caller's job.

pub mod keys;
pub mod oidc;
pub mod registry;
pub mod roles;
pub mod s3_keys;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use roles::{Action, Grants, Role, TaskPolicy};

/// Why a caller was refused. The message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `authorization: Bearer <token>` (or `flyte-authorization`)")]
    Missing,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("unknown client or wrong secret")]
    BadClient,
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Config(String),
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An access token Contrail issued to an OAuth2 client.
    Client,
    /// A static bearer token from the registry.
    StaticToken,
    /// A token of the configured external OIDC issuer.
    ExternalIssuer,
}

/// An authenticated caller and its grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The client id, static token name, or the external token's subject.
    pub subject: String,
    pub via: Via,
    pub grants: Grants,
}

/// The settings of Contrail's authorization server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registry file of clients and static tokens.
    pub registry: PathBuf,
    /// The directory of signing keys.
    pub keys_dir: PathBuf,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens, and the audience they must carry.
    pub audience: String,
    /// Lifetime of an access token.
    pub token_ttl: Duration,
    /// A new signing key after this long; old keys stay published while tokens they
    /// signed may still be valid.
    pub rotate_every: Duration,
}

impl Settings {
    /// The directory of the registry (and of the S3 master key).
    pub fn registry_dir(&self) -> PathBuf {
        self.registry
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    }

    pub fn new(dir: PathBuf) -> Self {
        Settings {
            registry: dir.join("clients.toml"),
            keys_dir: dir.join("keys"),
            issuer: "contrail".into(),
            audience: "contrail".into(),
            token_ttl: Duration::from_secs(30 * 60),
            rotate_every: Duration::from_secs(24 * 3600),
        }
    }
}

/// Checks bearer tokens and client secrets; issues access tokens.
pub struct Authenticator {
    settings: Settings,
    registry: registry::Watched,
    keys: keys::KeyRing,
    external: Option<Arc<oidc::ExternalIssuer>>,
    /// Read once: every S3 request with a client's key needs it.
    s3_master: Vec<u8>,
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Opens the registry and the key ring (creating the key directory, 0700, and a first
    /// key when there is none).
    pub fn open(
        settings: Settings,
        external: Option<Arc<oidc::ExternalIssuer>>,
    ) -> Result<Self, AuthError> {
        let registry = registry::Watched::open(settings.registry.clone())?;
        let keys = keys::KeyRing::open(
            settings.keys_dir.clone(),
            settings.rotate_every,
            settings.token_ttl,
        )?;
        let s3_master = s3_keys::master(&settings.registry_dir())?;
        Ok(Authenticator {
            settings,
            registry,
            keys,
            external,
            s3_master,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The published JWK set of the signing keys.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// The client-credentials grant: checks the client's secret and signs a token.
    /// Returns the token and its lifetime in seconds.
    pub fn issue(&self, client_id: &str, secret: &str) -> Result<(String, u64), AuthError> {
        let registry = self.registry.current()?;
        let client = registry.check_client(client_id, secret)?;
        let key = self.keys.signing_key(unix_now())?;
        let ttl = self.settings.token_ttl.as_secs();
        let token = tokens::issue(&key, &self.settings, &client.id, unix_now())?;
        Ok((token, ttl))
    }

    /// The S3 secret key of an access key, when the access key is a client's id: each
    /// client has its own key pair for the S3 endpoint (`contrail auth client s3-keys`),
    /// derived from the server's S3 master key, so removing the client revokes it.
    pub fn s3_secret(&self, access_key: &str) -> Option<String> {
        let registry = self.registry.current().ok()?;
        registry.client(access_key)?;
        Some(s3_keys::secret_under(&self.s3_master, access_key))
    }

    /// Who sent this bearer token.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let token = bearer.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.split('.').count() != 3 {
            let registry = self.registry.current()?;
            let t = registry.check_static_token(token)?;
            return Ok(Principal {
                subject: t.name.clone(),
                via: Via::StaticToken,
                grants: t.roles.clone(),
            });
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let kid = header.kid.clone().unwrap_or_default();
        if let Some(key) = self.keys.verifying_key(&kid) {
            let claims = tokens::verify(token, &key, &self.settings)?;
            let registry = self.registry.current()?;
            let client = registry
                .client(&claims.client_id)
                .ok_or_else(|| AuthError::InvalidToken("the client was removed".into()))?;
            return Ok(Principal {
                subject: client.id.clone(),
                via: Via::Client,
                grants: client.roles.clone(),
            });
        }
        match &self.external {
            Some(ext) => ext.authenticate(token, &header),
            None => Err(AuthError::InvalidToken(format!(
                "signed by an unknown key {kid:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;

    fn setup(dir: &std::path::Path) -> (Settings, String) {
        let settings = Settings::new(dir.join("auth"));
        let mut r = registry::Registry::default();
        let secret = r
            .add_client("ci", Grants::parse(&["editor:ml".into()]).unwrap())
            .unwrap();
        r.save(&settings.registry).unwrap();
        (settings, secret)
    }

    #[test]
    fn a_client_gets_a_token_that_authenticates_until_the_client_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, secret) = setup(dir.path());
        let auth = Authenticator::open(settings.clone(), None).unwrap();
        assert!(matches!(
            auth.issue("ci", "nope"),
            Err(AuthError::BadClient)
        ));
        let (token, ttl) = auth.issue("ci", &secret).unwrap();
        assert_eq!(ttl, 1800);
        let p = auth.authenticate(&token).unwrap();
        assert_eq!((p.subject.as_str(), p.via), ("ci", Via::Client));
        assert!(p.grants.allows(Action::Edit, "ml"));
        // A flipped signature byte, another audience, garbage: all refused.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(auth.authenticate(&forged).is_err());
        assert!(auth.authenticate("a.b.c").is_err());
        assert!(matches!(auth.authenticate(" "), Err(AuthError::Missing)));
        let mut other = settings.clone();
        other.audience = "elsewhere".into();
        let elsewhere = Authenticator::open(other, None).unwrap();
        assert!(elsewhere.authenticate(&token).is_err());
        // Removing the client revokes its tokens (the registry is re-read).
        let mut r = registry::Registry::load(&settings.registry).unwrap();
        r.remove("ci");
        r.save(&settings.registry).unwrap();
        let e = auth.authenticate(&token).unwrap_err();
        assert!(e.to_string().contains("removed"), "{e}");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, _) = setup(dir.path());
        let auth = Authenticator::open(settings.clone(), None).unwrap();
        let key = auth.keys.signing_key(unix_now()).unwrap();
        let old = tokens::issue(&key, &settings, "ci", unix_now() - 3 * 3600).unwrap();
        let e = auth.authenticate(&old).unwrap_err();
        assert!(e.to_string().contains("Expired"), "{e}");
    }

    #[test]
    fn static_tokens_and_external_issuer_tokens_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, _) = setup(dir.path());
        let mut r = registry::Registry::load(&settings.registry).unwrap();
        let bot = r
            .add_token("bot", Grants::everywhere(Role::Viewer))
            .unwrap();
        r.save(&settings.registry).unwrap();

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "idp-1", "alg": "EdDSA"}]});
        let ext = Arc::new(oidc::ExternalIssuer::new(
            "https://idp.example".into(),
            "contrail-api".into(),
            [("alice".to_string(), Grants::everywhere(Role::Admin))].into(),
            Grants::default(),
        ));
        ext.set_keys(jwks.to_string().as_bytes()).unwrap();
        let auth = Authenticator::open(settings, Some(ext.clone())).unwrap();

        let p = auth.authenticate(&bot).unwrap();
        assert_eq!((p.subject.as_str(), p.via), ("bot", Via::StaticToken));
        assert!(auth.authenticate("ct_guessed").is_err());

        let sign = |claims: serde_json::Value, kid: &str| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some(kid.into());
            jsonwebtoken::encode(
                &h,
                &claims,
                &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            )
            .unwrap()
        };
        let now = unix_now();
        let good = sign(
            serde_json::json!({"iss": "https://idp.example", "aud": "contrail-api", "sub": "alice", "exp": now + 60}),
            "idp-1",
        );
        let p = auth.authenticate(&good).unwrap();
        assert_eq!((p.subject.as_str(), p.via), ("alice", Via::ExternalIssuer));
        assert!(p.grants.allows_everywhere(Action::Admin));
        let stranger = sign(
            serde_json::json!({"iss": "https://idp.example", "aud": "contrail-api", "sub": "bob", "exp": now + 60}),
            "idp-1",
        );
        assert!(auth.authenticate(&stranger).unwrap().grants.0.is_empty());
        let wrong_aud = sign(
            serde_json::json!({"iss": "https://idp.example", "aud": "other", "sub": "alice", "exp": now + 60}),
            "idp-1",
        );
        assert!(auth.authenticate(&wrong_aud).is_err());
        assert!(!ext.needs_keys());
        let unknown_key = sign(
            serde_json::json!({"iss": "https://idp.example", "aud": "contrail-api", "sub": "alice", "exp": now + 60}),
            "idp-2",
        );
        assert!(auth.authenticate(&unknown_key).is_err());
        assert!(ext.needs_keys());
    }
}
