//! Access tokens of Contrail's own authorization server: EdDSA-signed JWTs.
//!
//! Claims: `iss`, `aud`, `sub` and `client_id` (the client), `iat`, `exp`, and `scp`
//! (`["all"]`, the one scope Flyte checks). Roles are not in the token: they are read
//! from the registry on every call, so removing a client revokes its tokens at once.

use crate::keys::SigningKey;
use crate::{AuthError, Settings};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default)]
    pub scp: Vec<String>,
}

pub fn issue(
    key: &SigningKey,
    settings: &Settings,
    client_id: &str,
    now: u64,
) -> Result<String, AuthError> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let claims = Claims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: client_id.to_string(),
        client_id: client_id.to_string(),
        iat: now,
        exp: now + settings.token_ttl.as_secs(),
        scp: vec!["all".into()],
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.pkcs8))
        .map_err(|e| AuthError::Io(format!("cannot sign a token: {e}")))
}

/// Checks signature, expiry (no leeway beyond 30 s), issuer and audience.
pub fn verify(token: &str, public_key: &[u8], settings: &Settings) -> Result<Claims, AuthError> {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = 30;
    v.set_audience(&[&settings.audience]);
    v.set_issuer(&[&settings.issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(public_key), &v)
        .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
    Ok(data.claims)
}
