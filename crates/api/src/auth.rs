//! Authentication at the edge, as flytekit speaks it.
//!
//! With an [`Authenticator`] configured:
//! - `AuthMetadataService` (anonymous) tells clients where the token endpoint is and
//!   which metadata key carries the token (`flyte-authorization`);
//! - `/.well-known/oauth-authorization-server`, `/config/v1/flyte_client`,
//!   `/oauth2/token` (client-credentials grant) and `/oauth2/jwks` are served;
//! - every other route needs `Bearer <token>` in `flyte-authorization` or
//!   `authorization`. Exceptions: the health check, and the signed upload and download
//!   URLs, whose signature is the credential. gRPC calls are then authorized per project
//!   ([`crate::authz`]); the [`Principal`] travels in the request's extensions.
//!
//! Without one, nothing here is mounted and every caller is trusted (loopback only,
//! unless the operator insists: see the server's `--insecure-allow-remote`).

use crate::Api;
use crate::authz::{self, Refusal};
use crate::edge;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contrail_auth::{AuthError, Authenticator, Principal};
use contrail_idl::service as svc;
use std::sync::Arc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The metadata key flytekit is told to put the token in (flyteadmin's default).
pub const TOKEN_HEADER: &str = "flyte-authorization";

/// Routes reachable without a token.
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/healthcheck"
            | "/.well-known/oauth-authorization-server"
            | "/config/v1/flyte_client"
            | "/oauth2/token"
            | "/oauth2/jwks"
    ) || path.starts_with("/flyteidl.service.AuthMetadataService/")
        // Signed URLs: the signature is checked by the handler.
        || path.starts_with("/upload/")
        || path.starts_with("/download/")
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    for name in [TOKEN_HEADER, header::AUTHORIZATION.as_str()] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
                return Some(v[7..].trim().to_string());
            }
        }
    }
    // The console keeps the token a user signed in with in a same-site cookie.
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(CONSOLE_COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The cookie the console sends its token in.
pub(crate) const CONSOLE_COOKIE: &str = "contrail_token";

/// A refusal of the guard; over plain HTTP with the code's status (401 with
/// `WWW-Authenticate`).
fn refuse(grpc: bool, status: Status) -> Response {
    let http = edge::http_status(status.code());
    let mut r = edge::refuse(grpc, status, http);
    if !grpc && http == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
    }
    r
}

/// The middleware: authenticates, then authorizes gRPC calls per project.
pub(crate) async fn guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Some(auth) = api.auth.clone() else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let mut req = req;
    if let Some(origin) = origin_of(&req, &api.cfg.public_url) {
        req.extensions_mut().insert(origin);
    }
    if is_open(&path) {
        return next.run(req).await;
    }
    authenticated(auth, req, path, next).await
}

/// The base URL a request came in on: the public URL's scheme with the request's own
/// host (as flyteadmin derives its public URL), so the token endpoint advertised is one
/// the caller can reach.
#[derive(Clone, Debug)]
pub(crate) struct Origin(pub String);

fn origin_of(req: &Request, public_url: &str) -> Option<Origin> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })?;
    // Only a plain host[:port]: nothing a client could smuggle into a URL.
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    let scheme = public_url.split_once("://").map_or("http", |(s, _)| s);
    Some(Origin(format!("{scheme}://{authority}")))
}

async fn authenticated(
    auth: Arc<Authenticator>,
    req: Request,
    path: String,
    next: Next,
) -> Response {
    let grpc = edge::is_grpc(req.headers());
    let Some(token) = bearer(req.headers()) else {
        return refuse(
            grpc,
            Status::unauthenticated(AuthError::Missing.to_string()),
        );
    };
    let principal = match auth.authenticate(&token) {
        Ok(p) => p,
        Err(AuthError::Io(e)) => {
            tracing::error!("authentication: {e}");
            return refuse(grpc, Status::unavailable("cannot check credentials now"));
        }
        Err(e) => return refuse(grpc, Status::unauthenticated(e.to_string())),
    };
    let (parts, body) = req.into_parts();
    let mut req = if grpc {
        // `edge::limit_bodies` has read and bounded the body already: this takes it back.
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    grpc,
                    Status::invalid_argument(format!("cannot read the request body: {e}")),
                );
            }
        };
        match authz::check(&principal, &path, &bytes) {
            Ok(()) => {}
            Err(Refusal::Malformed(m)) => return refuse(grpc, Status::invalid_argument(m)),
            Err(Refusal::Denied(m)) => return refuse(grpc, Status::permission_denied(m)),
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        Request::from_parts(parts, body)
    };
    tracing::debug!(subject = %principal.subject, path, "authorized");
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The caller of a gRPC request, when authentication is on.
pub(crate) fn principal<T>(r: &GrpcRequest<T>) -> Option<&Principal> {
    r.extensions().get::<Principal>()
}

impl Api {
    fn base_url(&self, origin: Option<&Origin>) -> String {
        match origin {
            Some(o) => o.0.clone(),
            None => self.cfg.public_url.trim_end_matches('/').to_string(),
        }
    }

    pub(crate) fn oauth2_metadata(&self, origin: Option<&Origin>) -> svc::OAuth2MetadataResponse {
        let base = self.base_url(origin);
        svc::OAuth2MetadataResponse {
            issuer: base.clone(),
            authorization_endpoint: String::new(),
            token_endpoint: format!("{base}/oauth2/token"),
            response_types_supported: Vec::new(),
            scopes_supported: vec!["all".into()],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
            ],
            jwks_uri: format!("{base}/oauth2/jwks"),
            code_challenge_methods_supported: Vec::new(),
            grant_types_supported: vec!["client_credentials".into()],
            device_authorization_endpoint: String::new(),
        }
    }

    pub(crate) fn public_client_config(&self) -> svc::PublicClientAuthConfigResponse {
        svc::PublicClientAuthConfigResponse {
            client_id: String::new(),
            redirect_uri: String::new(),
            scopes: vec!["all".into()],
            authorization_metadata_key: TOKEN_HEADER.into(),
            service_http_endpoint: String::new(),
            audience: self
                .auth
                .as_ref()
                .map(|a| a.settings().audience.clone())
                .unwrap_or_default(),
        }
    }
}

#[tonic::async_trait]
impl svc::auth_metadata_service_server::AuthMetadataService for Api {
    async fn get_o_auth2_metadata(
        &self,
        r: GrpcRequest<svc::OAuth2MetadataRequest>,
    ) -> Result<GrpcResponse<svc::OAuth2MetadataResponse>, Status> {
        Ok(GrpcResponse::new(
            self.oauth2_metadata(r.extensions().get::<Origin>()),
        ))
    }

    async fn get_public_client_config(
        &self,
        _r: GrpcRequest<svc::PublicClientAuthConfigRequest>,
    ) -> Result<GrpcResponse<svc::PublicClientAuthConfigResponse>, Status> {
        Ok(GrpcResponse::new(self.public_client_config()))
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json(
        status,
        serde_json::json!({ "error": error, "error_description": description }),
    )
}

pub(crate) async fn well_known(
    State(api): State<Api>,
    origin: Option<axum::Extension<Origin>>,
) -> Response {
    let m = api.oauth2_metadata(origin.as_ref().map(|o| &o.0));
    json(
        StatusCode::OK,
        serde_json::json!({
            "issuer": m.issuer,
            "token_endpoint": m.token_endpoint,
            "jwks_uri": m.jwks_uri,
            "scopes_supported": m.scopes_supported,
            "token_endpoint_auth_methods_supported": m.token_endpoint_auth_methods_supported,
            "grant_types_supported": m.grant_types_supported,
        }),
    )
}

pub(crate) async fn flyte_client(State(api): State<Api>) -> Response {
    let c = api.public_client_config();
    json(
        StatusCode::OK,
        serde_json::json!({
            "client_id": c.client_id,
            "redirect_uri": c.redirect_uri,
            "scopes": c.scopes,
            "authorization_metadata_key": c.authorization_metadata_key,
            "audience": c.audience,
        }),
    )
}

pub(crate) async fn jwks(State(api): State<Api>) -> Response {
    match api.auth.as_ref() {
        Some(a) => json(StatusCode::OK, a.jwks()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The largest token request body read.
const MAX_TOKEN_REQUEST: usize = 16 * 1024;

/// `POST /oauth2/token`: the client-credentials grant (RFC 6749 §4.4), with the client
/// authenticated by HTTP Basic (`client_secret_basic`) or in the form
/// (`client_secret_post`).
pub(crate) async fn token(State(api): State<Api>, req: Request) -> Response {
    let Some(auth) = api.auth.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_TOKEN_REQUEST).await else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request is too large",
        );
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported; use client_credentials"),
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }
    if let Some(aud) = field("audience").filter(|a| !a.is_empty())
        && aud != auth.settings().audience
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            &format!("audience {aud:?} is not this server's"),
        );
    }
    let Some((id, secret)) = basic.or_else(|| Some((field("client_id")?, field("client_secret")?)))
    else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials are missing (HTTP Basic or client_id/client_secret)",
        );
    };
    let issued = tokio::task::spawn_blocking(move || auth.issue(&id, &secret)).await;
    match issued {
        Ok(Ok((token, ttl))) => json(
            StatusCode::OK,
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "scope": "all",
            }),
        ),
        Ok(Err(AuthError::BadClient)) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ),
        Ok(Err(e)) => {
            tracing::error!("token endpoint: {e}");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "cannot issue tokens now",
            )
        }
        Err(e) => {
            tracing::error!("token endpoint: {e}");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        }
    }
}

/// `Basic base64(id ":" secret)`, each part form-urlencoded (RFC 6749 §2.3.1).
fn parse_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = value
        .trim()
        .strip_prefix("Basic ")
        .or_else(|| value.trim().strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded_and_bearer_is_found_in_either_header() {
        use base64::Engine;
        let enc = base64::engine::general_purpose::STANDARD.encode("ci:a%2Bb+c");
        assert_eq!(
            parse_basic(&format!("Basic {enc}")),
            Some(("ci".into(), "a+b c".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(TOKEN_HEADER, "bearer xyz".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("xyz"));
        let mut c = HeaderMap::new();
        c.insert("cookie", "a=1; contrail_token=tok; b=2".parse().unwrap());
        assert_eq!(bearer(&c).as_deref(), Some("tok"));
        c.insert("cookie", "contrail_token_other=x".parse().unwrap());
        assert_eq!(bearer(&c), None);
        assert!(is_open("/upload/x") && is_open("/healthcheck"));
        assert!(!is_open("/flyteidl.service.AdminService/ListProjects"));
    }
}
