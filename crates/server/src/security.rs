//! The server's security settings: who may call (auth), over what (TLS), from where
//! (loopback unless auth is on), and the private files of the data directory.

use crate::config::FileConfig;
use contrail_auth::oidc::ExternalIssuer;
use contrail_auth::registry::Registry;
use contrail_auth::{Authenticator, Grants, Settings};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `contrail auth ...`: manage the OAuth2 clients and static tokens of this server.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuthCmd {
    /// OAuth2 clients (flytekit `authType: ClientSecret`).
    #[command(subcommand)]
    Client(EntryCmd),
    /// Static bearer tokens (flytekit `authType: ExternalCommand`, CI systems).
    #[command(subcommand)]
    Token(EntryCmd),
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum EntryCmd {
    /// Add one; prints its secret once (only a digest is stored).
    Add {
        name: String,
        /// `ROLE` (every project) or `ROLE:PROJECT`; ROLE is viewer, editor or admin.
        /// Repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// List them with their roles.
    Ls,
    /// Remove one; its tokens (and a client's S3 key pair) stop working at once.
    Rm { name: String },
    /// A client's own key pair for the S3 endpoint: `ACCESS_KEY SECRET_KEY`.
    #[command(name = "s3-keys")]
    S3Keys { name: String },
}

/// Where the registry and keys live: `[auth] dir`, else `<data dir>/auth`.
pub(crate) fn auth_dir(file: &FileConfig, data_dir: &Path) -> PathBuf {
    file.auth
        .as_ref()
        .and_then(|a| a.dir.clone())
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("auth"))
}

pub(crate) fn auth_cli(cmd: AuthCmd, dir: &Path) -> Result<String, String> {
    let path = dir.join("clients.toml");
    let mut registry = Registry::load(&path).map_err(|e| e.to_string())?;
    let (is_client, entry) = match cmd {
        AuthCmd::Client(e) => (true, e),
        AuthCmd::Token(e) => (false, e),
    };
    match entry {
        EntryCmd::Add { name, roles } => {
            let grants = Grants::parse(&roles)?;
            let secret = if is_client {
                registry.add_client(&name, grants)
            } else {
                registry.add_token(&name, grants)
            }
            .map_err(|e| e.to_string())?;
            registry.save(&path).map_err(|e| e.to_string())?;
            Ok(format!("{secret}\n"))
        }
        EntryCmd::Ls => {
            let mut out = String::new();
            if is_client {
                for c in &registry.clients {
                    out.push_str(&format!("{}\t{}\n", c.id, c.roles));
                }
            } else {
                for t in &registry.tokens {
                    out.push_str(&format!("{}\t{}\n", t.name, t.roles));
                }
            }
            Ok(out)
        }
        EntryCmd::S3Keys { name } => {
            if !is_client || registry.client(&name).is_none() {
                return Err(format!("no client named {name:?}"));
            }
            let secret = contrail_auth::s3_keys::secret(dir, &name).map_err(|e| e.to_string())?;
            Ok(format!("{name} {secret}\n"))
        }
        EntryCmd::Rm { name } => {
            let found = if is_client {
                registry.client(&name).is_some()
            } else {
                registry.tokens.iter().any(|t| t.name == name)
            };
            if !found || !registry.remove(&name) {
                return Err(format!(
                    "no {} named {name:?}",
                    if is_client { "client" } else { "token" }
                ));
            }
            registry.save(&path).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
    }
}

/// The authenticator, when auth is on (`--auth` or an `[auth]` table).
pub(crate) async fn authenticator(
    enabled_by_flag: bool,
    file: &FileConfig,
    data_dir: &Path,
) -> Result<Option<Arc<Authenticator>>, String> {
    let config = file.auth.clone().unwrap_or_default();
    if !enabled_by_flag && !config.enabled.unwrap_or(file.auth.is_some()) {
        return Ok(None);
    }
    let mut settings = Settings::new(auth_dir(file, data_dir));
    if let Some(i) = &config.issuer {
        settings.issuer = i.clone();
    }
    if let Some(a) = &config.audience {
        settings.audience = a.clone();
    }
    if let Some(t) = config.token_ttl_secs {
        settings.token_ttl = Duration::from_secs(t.clamp(60, 24 * 3600));
    }
    if let Some(h) = config.rotate_keys_hours {
        settings.rotate_every = Duration::from_secs(h.max(1) * 3600);
    }
    let external = match &config.oidc {
        Some(o) => Some(external_issuer(o).await?),
        None => None,
    };
    let auth = tokio::task::spawn_blocking(move || Authenticator::open(settings, external))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("auth: {e}"))?;
    Ok(Some(Arc::new(auth)))
}

fn grants(what: &str, specs: &[String]) -> Result<Grants, String> {
    Grants::parse(specs).map_err(|e| format!("[auth.oidc] {what}: {e}"))
}

async fn external_issuer(o: &crate::config::OidcConfig) -> Result<Arc<ExternalIssuer>, String> {
    let mut subjects = BTreeMap::new();
    for (subject, specs) in &o.subjects {
        subjects.insert(
            subject.clone(),
            grants(&format!("subjects.{subject}"), specs)?,
        );
    }
    let issuer = Arc::new(ExternalIssuer::new(
        o.issuer.clone(),
        o.audience.clone(),
        subjects,
        grants("default_roles", &o.default_roles)?,
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let jwks_url = match &o.jwks_url {
        Some(u) => u.clone(),
        None => discover_jwks(&client, &o.issuer).await?,
    };
    let body = fetch(&client, &jwks_url).await?;
    let n = issuer.set_keys(&body).map_err(|e| e.to_string())?;
    tracing::info!(issuer = %o.issuer, keys = n, "external OIDC issuer");
    // Keys rotate at the issuer: look again hourly, and soon after a token names a key
    // not seen yet (at most every 30 s).
    let watched = issuer.clone();
    tokio::spawn(async move {
        let mut since = Duration::ZERO;
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            since += Duration::from_secs(30);
            if !watched.needs_keys() && since < Duration::from_secs(3600) {
                continue;
            }
            since = Duration::ZERO;
            match fetch(&client, &jwks_url).await {
                Ok(body) => {
                    if let Err(e) = watched.set_keys(&body) {
                        tracing::warn!("external issuer keys: {e}");
                    }
                }
                Err(e) => tracing::warn!("external issuer keys: {e}"),
            }
        }
    });
    Ok(issuer)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}: {}", r.status()));
    }
    let body = r.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if body.len() > 1024 * 1024 {
        return Err(format!("GET {url}: more than 1 MiB"));
    }
    Ok(body.to_vec())
}

/// `jwks_uri` from the issuer's OpenID discovery document.
async fn discover_jwks(client: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&fetch(client, &url).await?).map_err(|e| format!("{url}: {e}"))?;
    doc.get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{url}: no jwks_uri"))
}

/// Without auth, Contrail serves loopback only: anyone who reaches the API can run
/// tasks with the server user's rights.
pub(crate) fn check_exposure(
    addrs: &[SocketAddr],
    auth: bool,
    allow_remote: bool,
) -> Result<(), String> {
    let remote: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    if auth || remote.is_empty() {
        return Ok(());
    }
    if !allow_remote {
        return Err(format!(
            "refusing to serve {} without authentication: anyone who reaches it could run \
             commands as this user. Turn auth on (`--auth`, see the README's Security \
             section), bind to loopback, or pass --insecure-allow-remote",
            remote.join(", ")
        ));
    }
    tracing::warn!(
        addrs = %remote.join(", "),
        "serving a non-loopback address WITHOUT authentication (--insecure-allow-remote): \
         anyone who reaches it can run commands as this user"
    );
    Ok(())
}

/// The data directory's private parts: the directory itself and the secrets directory
/// are 0700 (the database and `signing.key` are created 0600).
pub(crate) fn harden_data_dir(data_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let private = |dir: &Path| {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("{}: {e}", dir.display()))
    };
    private(data_dir)?;
    private(&data_dir.join("secrets"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_auth_means_loopback_only_unless_insisted() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_exposure(&[lo], false, false).is_ok());
        let e = check_exposure(&[lo, any], false, false).unwrap_err();
        assert!(
            e.contains("0.0.0.0:1") && e.contains("--insecure-allow-remote"),
            "{e}"
        );
        assert!(check_exposure(&[any], false, true).is_ok());
        assert!(check_exposure(&[any], true, false).is_ok());
    }

    #[test]
    fn the_cli_adds_lists_and_removes_clients_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let add = |client: bool, name: &str, roles: &[&str]| {
            let e = EntryCmd::Add {
                name: name.into(),
                roles: roles.iter().map(|s| s.to_string()).collect(),
            };
            auth_cli(
                if client {
                    AuthCmd::Client(e)
                } else {
                    AuthCmd::Token(e)
                },
                dir.path(),
            )
        };
        let secret = add(true, "ci", &["editor:ml", "viewer"]).unwrap();
        assert_eq!(secret.trim().len(), 43);
        assert!(add(true, "ci", &["viewer"]).is_err());
        assert!(add(true, "x", &["owner"]).unwrap_err().contains("owner"));
        assert!(add(false, "bot", &["admin"]).unwrap().starts_with("ct_"));
        let ls = auth_cli(AuthCmd::Client(EntryCmd::Ls), dir.path()).unwrap();
        assert_eq!(ls, "ci\tviewer:*,editor:ml\n");
        assert!(
            auth_cli(
                AuthCmd::Client(EntryCmd::Rm { name: "bot".into() }),
                dir.path()
            )
            .is_err()
        );
        auth_cli(
            AuthCmd::Token(EntryCmd::Rm { name: "bot".into() }),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            auth_cli(AuthCmd::Token(EntryCmd::Ls), dir.path()).unwrap(),
            ""
        );
    }
}
