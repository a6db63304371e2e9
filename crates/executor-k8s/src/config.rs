//! Settings of one Kubernetes executor (`[executors.NAME]` with `kind = "kubernetes"`),
//! named after Flyte's `plugins.k8s.*` and `plugins.logs.*` keys where they mean the same.

use k8s_openapi::api::core::v1::Toleration;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// The namespace of an attempt's pod; `{{ project }}` and `{{ domain }}` are replaced.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// A kubeconfig file; unset: the in-cluster service account, else `KUBECONFIG` or
    /// `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (default: its current one).
    #[serde(default)]
    pub context: Option<String>,
    /// `imagePullPolicy` of primary containers that do not set one.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// Extra environment for every primary container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub default_labels: BTreeMap<String, String>,
    #[serde(default = "default_annotations")]
    pub default_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub default_tolerations: Vec<Toleration>,
    #[serde(default)]
    pub default_node_selector: BTreeMap<String, String>,
    /// Added to the pods of interruptible attempts.
    #[serde(default)]
    pub interruptible_tolerations: Vec<Toleration>,
    #[serde(default)]
    pub interruptible_node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub scheduler_name: Option<String>,
    /// How long a pod may sit in `ImagePullBackOff` before the attempt fails.
    #[serde(default = "default_grace")]
    pub image_pull_backoff_grace_secs: u64,
    /// Finished pods are deleted this long after they end (their logs go with them).
    #[serde(default = "default_delete_after")]
    pub delete_finished_after_secs: u64,
    /// Task log links (Flyte's `logs.templates`).
    #[serde(default)]
    pub log_templates: Vec<LogTemplate>,
}

/// One log link per URI; placeholders as Flyte's: `{{ .podName }}`, `{{ .namespace }}`,
/// `{{ .containerName }}`, `{{ .taskID }}`, `{{ .executionName }}`, `{{ .nodeID }}`, ...
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogTemplate {
    pub display_name: String,
    pub template_uris: Vec<String>,
}

fn default_namespace() -> String {
    "{{ project }}-{{ domain }}".into()
}

fn default_annotations() -> BTreeMap<String, String> {
    [(
        "cluster-autoscaler.kubernetes.io/safe-to-evict".to_string(),
        "false".to_string(),
    )]
    .into()
}

fn default_grace() -> u64 {
    180
}

fn default_delete_after() -> u64 {
    300
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            namespace: default_namespace(),
            kubeconfig: None,
            context: None,
            image_pull_policy: None,
            env: BTreeMap::new(),
            default_labels: BTreeMap::new(),
            default_annotations: default_annotations(),
            default_tolerations: vec![],
            default_node_selector: BTreeMap::new(),
            interruptible_tolerations: vec![],
            interruptible_node_selector: BTreeMap::new(),
            scheduler_name: None,
            image_pull_backoff_grace_secs: default_grace(),
            delete_finished_after_secs: default_delete_after(),
            log_templates: vec![],
        }
    }
}
