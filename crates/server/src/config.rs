//! The config file (`--config`, TOML). Top-level keys are the settings flags also take
//! (flags and environment variables win); `[executors.NAME]` tables configure where tasks
//! run, and `[routing]` which executor runs which task. Unknown keys are refused, naming
//! the key and line.

use contrail_executor::routing::{Routes, Rule};
use contrail_executor_k8s::K8sConfig;
use contrail_executor_slurm::SlurmConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

/// The name of the executor that runs tasks as local processes; it always exists.
pub(crate) const LOCAL: &str = "local";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    addr: Option<String>,
    s3_addr: Option<String>,
    data_dir: Option<String>,
    public_url: Option<String>,
    bucket: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<String>,
    blob_store: Option<String>,
    blob_endpoint: Option<String>,
    blob_region: Option<String>,
    blob_access_key: Option<String>,
    blob_secret_key: Option<String>,
    database: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_client_ca: Option<String>,
    /// `[auth]`: its presence turns authentication on (unless `enabled = false`).
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub executors: BTreeMap<String, ExecutorConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[notifications]`: where execution notifications are delivered.
    #[serde(default)]
    pub notifications: contrail_notify::NotifyConfig,
}

/// `[auth]`: Contrail's own authorization server, and optionally an external issuer.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthConfig {
    pub enabled: Option<bool>,
    /// The registry (`clients.toml`) and signing keys; default `<data dir>/auth`.
    /// Replicas must share it.
    pub dir: Option<String>,
    /// `iss` of issued tokens (default `contrail`).
    pub issuer: Option<String>,
    /// `aud` of issued tokens (default `contrail`).
    pub audience: Option<String>,
    /// Access token lifetime (default 1800).
    pub token_ttl_secs: Option<u64>,
    /// A new signing key after this many hours (default 24).
    pub rotate_keys_hours: Option<u64>,
    pub oidc: Option<OidcConfig>,
    /// `[auth.task_policy]`: the task types and images callers without admin rights in
    /// the project may run (`task_types = [...]`, `images = ["registry/org/*", ...]`).
    pub task_policy: Option<contrail_auth::TaskPolicy>,
}

/// `[auth.oidc]`: tokens of an external OpenID Connect issuer are accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcConfig {
    pub issuer: String,
    /// The audience its tokens must carry.
    pub audience: String,
    /// Default: `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Roles of any subject not listed under `subjects` (default none).
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// Roles by subject (`sub`, or the `client_id`/`azp` of machine tokens).
    #[serde(default)]
    pub subjects: BTreeMap<String, Vec<String>>,
}

/// One `[executors.NAME]` table; `kind` says which.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum ExecutorConfig {
    /// Local processes (the flags `--task-*` configure them).
    Local(NoOptions),
    Slurm(Box<SlurmConfig>),
    /// Pods on a Kubernetes cluster.
    Kubernetes(Box<K8sConfig>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingConfig {
    /// The executor of tasks no rule or cluster label sends elsewhere (default `local`).
    default: Option<String>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

/// `[[routing.rules]]`: the first rule whose set fields all match the task decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    project: Option<String>,
    domain: Option<String>,
    task_type: Option<String>,
    executor: String,
}

impl FileConfig {
    pub(crate) fn read(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let config: FileConfig =
            toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
        for (name, executor) in &config.executors {
            if name == LOCAL && !matches!(executor, ExecutorConfig::Local(_)) {
                return Err(format!(
                    "config {}: [executors.local] is the local executor; give this one another name",
                    path.display()
                ));
            }
        }
        Ok(config)
    }

    /// A top-level setting by its key.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let value = match key {
            "addr" => &self.addr,
            "s3_addr" => &self.s3_addr,
            "data_dir" => &self.data_dir,
            "public_url" => &self.public_url,
            "bucket" => &self.bucket,
            "s3_access_key" => &self.s3_access_key,
            "s3_secret_key" => &self.s3_secret_key,
            "blob_store" => &self.blob_store,
            "blob_endpoint" => &self.blob_endpoint,
            "blob_region" => &self.blob_region,
            "blob_access_key" => &self.blob_access_key,
            "blob_secret_key" => &self.blob_secret_key,
            "database" => &self.database,
            "tls_cert" => &self.tls_cert,
            "tls_key" => &self.tls_key,
            "tls_client_ca" => &self.tls_client_ca,
            _ => &None,
        };
        value.clone()
    }

    /// Every executor's name, `local` included: the cluster labels executions may carry.
    pub(crate) fn executor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.executors.keys().cloned().collect();
        if !self.executors.contains_key(LOCAL) {
            names.push(LOCAL.into());
        }
        names.sort();
        names
    }

    /// Directories of task logs the executors write on this machine (Slurm's `log_dir`,
    /// usually a shared file system): the server may serve logs from them over HTTP.
    pub(crate) fn log_dirs(&self) -> Vec<PathBuf> {
        self.executors
            .values()
            .filter_map(|e| match e {
                ExecutorConfig::Slurm(s) => Some(PathBuf::from(&s.log_dir)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn routes(&self) -> Routes {
        Routes {
            default: self.routing.default.clone().unwrap_or_else(|| LOCAL.into()),
            rules: self
                .routing
                .rules
                .iter()
                .map(|r| Rule {
                    project: r.project.clone(),
                    domain: r.domain.clone(),
                    task_type: r.task_type.clone(),
                    executor: r.executor.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contrail.toml");
        std::fs::write(&path, text).unwrap();
        FileConfig::read(&path)
    }

    #[test]
    fn settings_executors_and_routing() {
        let c = parse(
            r#"
            # the old key = "value" files are TOML too
            addr = "0.0.0.0:30080"
            database = "postgres://u@h/db"

            [executors.hpc]
            kind = "slurm"
            log_dir = "/shared/logs"
            partition = "batch"

            [routing]
            default = "hpc"
            [[routing.rules]]
            project = "web"
            executor = "local"
            "#,
        )
        .unwrap();
        assert_eq!(c.get("addr").as_deref(), Some("0.0.0.0:30080"));
        assert_eq!(c.get("bucket"), None);
        assert_eq!(c.executor_names(), ["hpc", "local"]);
        let routes = c.routes();
        assert_eq!(routes.default, "hpc");
        assert_eq!(routes.rules[0].project.as_deref(), Some("web"));
        let Some(ExecutorConfig::Slurm(s)) = c.executors.get("hpc") else {
            panic!("hpc is a Slurm executor")
        };
        assert_eq!(s.partition.as_deref(), Some("batch"));
        assert_eq!(s.poll_interval_ms, 1000);
    }

    #[test]
    fn a_kubernetes_executor_with_tolerations_and_log_links() {
        let c = parse(
            r#"
            [executors.gpu]
            kind = "kubernetes"
            namespace = "flyte-{{ project }}"
            interruptible_tolerations = [{ key = "spot", operator = "Exists", effect = "NoSchedule" }]
            [[executors.gpu.log_templates]]
            display_name = "Kubernetes Logs"
            template_uris = ["https://k8s/#/log/{{ .namespace }}/{{ .podName }}"]
            "#,
        )
        .unwrap();
        let Some(ExecutorConfig::Kubernetes(k)) = c.executors.get("gpu") else {
            panic!("gpu is a Kubernetes executor")
        };
        assert_eq!(k.namespace, "flyte-{{ project }}");
        assert_eq!(k.interruptible_tolerations[0].key.as_deref(), Some("spot"));
        assert_eq!(k.log_templates[0].display_name, "Kubernetes Logs");
        assert_eq!(k.image_pull_backoff_grace_secs, 180);
    }

    #[test]
    fn the_kubernetes_manifests_configuration_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/kubernetes/20-config.yaml"
        );
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
        let toml = docs
            .iter()
            .find_map(|d| d["data"]["contrail.toml"].as_str())
            .expect("the ConfigMap holds contrail.toml");
        let c = parse(toml).unwrap();
        assert_eq!(c.executor_names(), ["k8s", "local"]);
        assert_eq!(c.routes().default, "k8s");
    }

    #[test]
    fn mistakes_name_the_key() {
        let unknown = parse("adr = \"x\"\n").unwrap_err();
        assert!(unknown.contains("unknown field `adr`"), "{unknown}");
        let slurm =
            parse("[executors.hpc]\nkind = \"slurm\"\nlog_dir = \"/l\"\npartitoin = \"x\"\n")
                .unwrap_err();
        assert!(slurm.contains("partitoin"), "{slurm}");
        let kind = parse("[executors.hpc]\nkind = \"lsf\"\n").unwrap_err();
        assert!(kind.contains("lsf"), "{kind}");
        let local = parse("[executors.local]\nkind = \"slurm\"\nlog_dir = \"/l\"\n").unwrap_err();
        assert!(local.contains("another name"), "{local}");
    }
}
