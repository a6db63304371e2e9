//! The web console at `/console`: one HTML shell, one script and one stylesheet, compiled
//! into the binary. Every page path of Flyte's console scheme answers with the shell; the
//! script reads the path and fetches what the page shows from the REST API, so the console
//! sees exactly what its user may see through the API (the same authentication and
//! authorization). The assets carry no data and are served to anyone.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Scripts and styles come from this server only; nothing is loaded from elsewhere.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX,
    )
        .into_response()
}

/// `/console`: the projects page.
pub(crate) async fn home() -> Response {
    shell()
}

/// `/`: the console.
pub(crate) async fn root() -> Redirect {
    Redirect::temporary("/console")
}

/// `/console/{*path}`: an asset, or the shell for any page path.
pub(crate) async fn page(Path(path): Path<String>) -> Response {
    let asset = match path.as_str() {
        "assets/app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "assets/app.css" => Some(("text/css; charset=utf-8", STYLE)),
        p if p.starts_with("assets/") => {
            return (StatusCode::NOT_FOUND, "no such asset").into_response();
        }
        _ => None,
    };
    match asset {
        Some((kind, body)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        None => shell(),
    }
}
