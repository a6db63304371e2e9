//! Tokens of an external OpenID Connect issuer (Okta, Keycloak, Google, ...).
//!
//! The caller fetches the issuer's JWK set (from `jwks_uri` of its discovery document)
//! and hands it over with [`ExternalIssuer::set_keys`], at start and whenever
//! [`ExternalIssuer::needs_keys`] says a token named a key it has not seen.
//! Roles come from the configuration: by subject (`sub`, or `client_id`/`azp` for
//! machine tokens), else the default grants.

use crate::{AuthError, Grants, Principal, Via};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Header, Validation};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct ExternalIssuer {
    pub issuer: String,
    pub audience: String,
    pub subjects: BTreeMap<String, Grants>,
    pub default_grants: Grants,
    keys: RwLock<JwkSet>,
    unseen_kid: AtomicBool,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
}

impl ExternalIssuer {
    pub fn new(
        issuer: String,
        audience: String,
        subjects: BTreeMap<String, Grants>,
        default_grants: Grants,
    ) -> Self {
        ExternalIssuer {
            issuer,
            audience,
            subjects,
            default_grants,
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            unseen_kid: AtomicBool::new(true),
        }
    }

    /// Replaces the key set with a freshly fetched JWK set document.
    pub fn set_keys(&self, jwks_json: &[u8]) -> Result<usize, AuthError> {
        let set: JwkSet = serde_json::from_slice(jwks_json)
            .map_err(|e| AuthError::Config(format!("{}: bad JWK set: {e}", self.issuer)))?;
        let n = set.keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = set;
        self.unseen_kid.store(false, Ordering::Relaxed);
        Ok(n)
    }

    /// True once a token named a key the set lacks: time to fetch the set again.
    pub fn needs_keys(&self) -> bool {
        self.unseen_kid.load(Ordering::Relaxed)
    }

    pub fn authenticate(&self, token: &str, header: &Header) -> Result<Principal, AuthError> {
        let key = {
            let set = self.keys.read().unwrap_or_else(|e| e.into_inner());
            let jwk = match &header.kid {
                Some(kid) => set.find(kid),
                None if set.keys.len() == 1 => set.keys.first(),
                None => None,
            };
            match jwk {
                Some(j) => DecodingKey::from_jwk(j)
                    .map_err(|e| AuthError::InvalidToken(format!("issuer key: {e}")))?,
                None => {
                    self.unseen_kid.store(true, Ordering::Relaxed);
                    return Err(AuthError::InvalidToken(format!(
                        "signed by a key {:?} that neither Contrail nor {} publishes",
                        header.kid.as_deref().unwrap_or(""),
                        self.issuer
                    )));
                }
            }
        };
        // Only asymmetric algorithms: an HS256 token "signed" with a public key is forged.
        use jsonwebtoken::Algorithm as A;
        if !matches!(
            header.alg,
            A::RS256
                | A::RS384
                | A::RS512
                | A::PS256
                | A::PS384
                | A::PS512
                | A::ES256
                | A::ES384
                | A::EdDSA
        ) {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?
            .claims;
        let subject = claims
            .client_id
            .or(claims.azp)
            .filter(|s| self.subjects.contains_key(s))
            .or(claims.sub)
            .unwrap_or_default();
        let grants = self
            .subjects
            .get(&subject)
            .cloned()
            .unwrap_or_else(|| self.default_grants.clone());
        Ok(Principal {
            subject,
            via: Via::ExternalIssuer,
            grants,
        })
    }
}
