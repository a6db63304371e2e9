//! The pod of an attempt, built from its task template as Flyte's pod plugin builds it:
//! identity, labels and annotations, the primary container's command, environment and
//! resources, secrets mounted from Kubernetes Secrets, the service account, and the
//! scheduling of interruptible tasks. Pure: the same attempt always gives the same pod.

use crate::K8sConfig;
use contrail_executor::AttemptSpec;
use contrail_executor::env::{last_wins, secret_env_name, task_env};
use contrail_executor::template;
use contrail_idl::core::{self, resources::ResourceName, secret::MountType, task_template::Target};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, KeyToPath, Pod, PodSpec, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The label every pod Contrail creates carries; the watcher selects on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "contrail");
/// Where file secrets are mounted, one directory per group (as Flyte's webhook does).
pub const SECRETS_DIR: &str = "/etc/flyte/secrets";
/// The primary container's name when the template does not say (flytekit's default).
const DEFAULT_PRIMARY: &str = "primary";

/// A DNS-1123 label: lower case alphanumerics and `-`, at most 63 characters.
pub fn dns_label(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// A label value: at most 63 characters of alphanumerics, `-`, `_` and `.`, starting and
/// ending alphanumeric.
fn label_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The pod's name: the attempt id (at most 50 characters by construction), sanitised.
pub fn pod_name(spec: &AttemptSpec) -> String {
    dns_label(&spec.id)
}

/// The namespace the template names for the attempt's project and domain.
pub fn namespace(cfg: &K8sConfig, spec: &AttemptSpec) -> String {
    let rendered = cfg
        .namespace
        .replace("{{ project }}", &spec.project)
        .replace("{{project}}", &spec.project)
        .replace("{{ domain }}", &spec.domain)
        .replace("{{domain}}", &spec.domain);
    dns_label(&rendered)
}

fn quantity(value: &str) -> Quantity {
    Quantity(value.trim().to_string())
}

/// Kubernetes' name for a Flyte resource.
fn resource_name(name: i32) -> Option<&'static str> {
    match ResourceName::try_from(name).ok()? {
        ResourceName::Cpu => Some("cpu"),
        ResourceName::Memory => Some("memory"),
        ResourceName::Gpu => Some("nvidia.com/gpu"),
        ResourceName::EphemeralStorage => Some("ephemeral-storage"),
        ResourceName::Storage | ResourceName::Unknown => None,
    }
}

/// Requests and limits of the primary container: a request left out takes the limit, a
/// limit left out takes the request (Flyte's resolution without platform defaults).
pub fn resources(task: Option<&core::Resources>) -> Option<ResourceRequirements> {
    let task = task?;
    let collect = |entries: &[core::resources::ResourceEntry]| -> BTreeMap<String, Quantity> {
        entries
            .iter()
            .filter(|e| !e.value.trim().is_empty() && e.value.trim() != "0")
            .filter_map(|e| resource_name(e.name).map(|n| (n.to_string(), quantity(&e.value))))
            .collect()
    };
    let mut requests = collect(&task.requests);
    let mut limits = collect(&task.limits);
    for (name, value) in &limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    for (name, value) in &requests {
        limits.entry(name.clone()).or_insert_with(|| value.clone());
    }
    // Kubernetes refuses GPU requests that differ from their limits.
    if let Some(gpu) = limits.get("nvidia.com/gpu").cloned() {
        requests.insert("nvidia.com/gpu".into(), gpu);
    }
    if requests.is_empty() && limits.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..Default::default()
    })
}

/// A protobuf Struct as JSON (a `k8s_pod` template's pod spec).
fn json_of_struct(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), json_of_value(v)))
            .collect(),
    )
}

fn json_of_value(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => json_of_struct(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(json_of_value).collect())
        }
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// A Secret's key as a file named by the key in lower case.
fn key_to_path(key: &str) -> KeyToPath {
    KeyToPath {
        key: key.to_string(),
        path: key.to_lowercase(),
        ..Default::default()
    }
}

/// Environment, volumes and mounts for the task's secrets (Flyte's K8s secret injector):
/// ENV_VAR secrets become `_FSEC_<GROUP>_<KEY>` variables from Secret `<group>`, key
/// `<key>`; FILE and ANY secrets are files at `/etc/flyte/secrets/<group>/<key>`.
fn secrets(task: &core::TaskTemplate) -> (Vec<EnvVar>, Vec<Volume>, Vec<VolumeMount>) {
    let (mut envs, mut volumes, mut mounts) = (Vec::new(), Vec::new(), Vec::new());
    let requested = task.security_context.iter().flat_map(|c| &c.secrets);
    let mut files = false;
    for secret in requested {
        let group = secret.group.clone();
        let key = secret.key.clone();
        let from_secret = |name: String| EnvVar {
            name,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: group.clone(),
                    key: key.clone(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if secret.mount_requirement == MountType::EnvVar as i32 {
            envs.push(from_secret(secret_env_name(
                &secret.group,
                &secret.group_version,
                &secret.key,
            )));
            if !secret.env_var.is_empty() {
                envs.push(from_secret(secret.env_var.clone()));
            }
            continue;
        }
        files = true;
        let volume = dns_label(&format!("secret-{}-{}", secret.group, secret.group_version));
        let dir = format!("{SECRETS_DIR}/{}", secret.group.to_lowercase());
        if !volumes.iter().any(|v: &Volume| v.name == volume) {
            volumes.push(Volume {
                name: volume.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.group.clone()),
                    items: Some(vec![key_to_path(&secret.key)]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: volume,
                mount_path: dir.clone(),
                read_only: Some(true),
                ..Default::default()
            });
        } else if let Some(items) = volumes
            .iter_mut()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_mut())
            .and_then(|s| s.items.as_mut())
        {
            items.push(key_to_path(&secret.key));
        }
        if !secret.env_var.is_empty() {
            envs.push(env(
                &secret.env_var,
                &format!("{dir}/{}", secret.key.to_lowercase()),
            ));
        }
    }
    if !envs.is_empty() {
        envs.push(env("FLYTE_SECRETS_ENV_PREFIX", "_FSEC_"));
    }
    if files {
        envs.push(env("FLYTE_SECRETS_DEFAULT_DIR", SECRETS_DIR));
        envs.push(env("FLYTE_SECRETS_FILE_PREFIX", ""));
    }
    (envs, volumes, mounts)
}

/// The attempt's pod. `Err` is a message for the user: the template cannot become a pod.
pub fn build(
    spec: &AttemptSpec,
    cfg: &K8sConfig,
    endpoints: &[(String, String)],
) -> Result<Pod, String> {
    let task = &spec.task;
    let name = pod_name(spec);
    let ns = namespace(cfg, spec);
    let task_id = task.id.clone().unwrap_or_default();

    let mut labels: BTreeMap<String, String> = cfg.default_labels.clone();
    let mut annotations: BTreeMap<String, String> = cfg.default_annotations.clone();
    let (mut pod_spec, primary) = match &task.target {
        Some(Target::Container(c)) => {
            let argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
            let argv = template::render_remote(spec, &argv)?;
            let (command, args) = match c.command.len() {
                0 => (None, Some(argv)),
                n => (
                    Some(argv[..n].to_vec()),
                    Some(argv[n..].to_vec()).filter(|a| !a.is_empty()),
                ),
            };
            let container = Container {
                name: name.clone(),
                image: Some(c.image.clone()),
                command,
                args,
                env: Some(
                    c.env
                        .iter()
                        .map(|kv| env(&kv.key, &kv.value))
                        .collect::<Vec<_>>(),
                ),
                resources: resources(c.resources.as_ref()),
                ..Default::default()
            };
            (
                PodSpec {
                    containers: vec![container],
                    ..Default::default()
                },
                name.clone(),
            )
        }
        Some(Target::K8sPod(k8s_pod)) => {
            let primary = Some(k8s_pod.primary_container_name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| task.config.get("primary_container_name").cloned())
                .unwrap_or_else(|| DEFAULT_PRIMARY.into());
            let value = k8s_pod
                .pod_spec
                .as_ref()
                .map(json_of_struct)
                .ok_or("the k8s_pod task has no pod_spec")?;
            let mut pod_spec: PodSpec = serde_json::from_value(value)
                .map_err(|e| format!("the k8s_pod task's pod_spec is not a PodSpec: {e}"))?;
            if let Some(meta) = &k8s_pod.metadata {
                labels.extend(meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                annotations.extend(meta.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            for c in pod_spec.containers.iter_mut() {
                c.command = c
                    .command
                    .take()
                    .map(|a| template::render_remote(spec, &a))
                    .transpose()?;
                c.args = c
                    .args
                    .take()
                    .map(|a| template::render_remote(spec, &a))
                    .transpose()?;
            }
            if !pod_spec.containers.iter().any(|c| c.name == primary) {
                return Err(format!(
                    "the pod template has no container named '{primary}' (primary_container_name)"
                ));
            }
            (pod_spec, primary)
        }
        _ => {
            return Err(format!(
                "task type '{}' has no container or pod; the Kubernetes executor runs container and k8s_pod tasks",
                task.r#type
            ));
        }
    };
    annotations.insert("primary_container_name".into(), primary.clone());

    // Identity labels (Flyte's), then the execution's own labels and annotations.
    for (key, value) in [
        ("execution-id", spec.execution.as_str()),
        ("project", &spec.project),
        ("domain", &spec.domain),
        ("workflow-name", &spec.workflow),
        ("node-id", &spec.node_id),
        ("task-name", &task_id.name),
        (
            "interruptible",
            if spec.interruptible { "true" } else { "false" },
        ),
    ] {
        labels.insert(key.into(), label_value(value));
    }
    labels.extend(spec.labels.iter().cloned());
    annotations.extend(spec.annotations.iter().cloned());
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert("contrail.io/attempt".into(), label_value(&spec.id));

    // The primary container's environment: storage and API settings, the configured
    // defaults, the task's identity and its own and the execution's variables.
    let (secret_env, secret_volumes, secret_mounts) = secrets(task);
    if !secret_env.is_empty() || !secret_volumes.is_empty() {
        labels.insert("inject-flyte-secrets".into(), "true".into());
    }
    let mut plain: Vec<(String, String)> = endpoints.to_vec();
    plain.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let container_env: Vec<(String, String)> = pod_spec
        .containers
        .iter()
        .find(|c| c.name == primary)
        .and_then(|c| c.env.as_ref())
        .map(|e| {
            e.iter()
                .filter(|v| v.value_from.is_none())
                .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    plain.extend(container_env);
    plain.extend(task_env(spec));
    let plain = last_wins(plain);
    for c in pod_spec.containers.iter_mut() {
        if c.name != primary {
            continue;
        }
        let from_sources: Vec<EnvVar> = c
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.value_from.is_some())
            .collect();
        let mut all: Vec<EnvVar> = plain.iter().map(|(k, v)| env(k, v)).collect();
        all.extend(from_sources);
        all.extend(secret_env.iter().cloned());
        c.env = Some(all);
        if !secret_mounts.is_empty() {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .extend(secret_mounts.iter().cloned());
        }
        if c.termination_message_policy.is_none() {
            c.termination_message_policy = Some("FallbackToLogsOnError".into());
        }
        if c.image_pull_policy.is_none() {
            c.image_pull_policy = cfg.image_pull_policy.clone();
        }
    }
    if !secret_volumes.is_empty() {
        pod_spec
            .volumes
            .get_or_insert_with(Vec::new)
            .extend(secret_volumes);
    }

    if pod_spec.restart_policy.is_none() {
        pod_spec.restart_policy = Some("Never".into());
    }
    if pod_spec.service_account_name.is_none() && !spec.service_account.is_empty() {
        pod_spec.service_account_name = Some(spec.service_account.clone());
    }
    if pod_spec.scheduler_name.is_none() {
        pod_spec.scheduler_name = cfg.scheduler_name.clone();
    }
    let mut tolerations = cfg.default_tolerations.clone();
    let mut selector = cfg.default_node_selector.clone();
    if spec.interruptible {
        tolerations.extend(cfg.interruptible_tolerations.iter().cloned());
        selector.extend(cfg.interruptible_node_selector.clone());
    }
    if !tolerations.is_empty() {
        pod_spec
            .tolerations
            .get_or_insert_with(Vec::new)
            .extend(tolerations);
    }
    if !selector.is_empty() {
        pod_spec
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .extend(selector);
    }

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}
