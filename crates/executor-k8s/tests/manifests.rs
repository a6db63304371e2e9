//! Every manifest under deploy/kubernetes parses into its k8s-openapi type, and nothing in
//! it is lost on the way (a misspelt or misplaced field would be).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "manifests in {}", dir.display());
    files
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.into_iter()
                .filter(|d| !d.is_null())
                .map(move |d| (path.clone(), d))
        })
        .collect()
}

/// Parses `doc` as `T` and checks that writing it back gives the same document.
fn typed<T: DeserializeOwned + serde::Serialize>(path: &Path, doc: &Value) -> T {
    let parsed: T =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        &back,
        doc,
        "{}: fields were dropped or changed",
        path.display()
    );
    parsed
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let mut kinds = Vec::new();
    for (path, doc) in manifests() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(&path, &doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(&path, &doc)),
            "ClusterRole" => drop(typed::<ClusterRole>(&path, &doc)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&path, &doc)),
            "ConfigMap" => drop(typed::<ConfigMap>(&path, &doc)),
            "Secret" => drop(typed::<Secret>(&path, &doc)),
            "PersistentVolumeClaim" => drop(typed::<PersistentVolumeClaim>(&path, &doc)),
            "Service" => drop(typed::<Service>(&path, &doc)),
            "Deployment" => {
                let d = typed::<Deployment>(&path, &doc);
                let pod = d.spec.unwrap().template.spec.unwrap();
                assert_eq!(pod.service_account_name.as_deref(), Some("contrail"));
            }
            other => panic!("{}: no check for kind {other:?}", path.display()),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Namespace",
            "PersistentVolumeClaim",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
}

#[test]
fn the_executor_may_do_what_it_does() {
    let role = manifests()
        .into_iter()
        .find(|(_, d)| d["kind"] == "ClusterRole")
        .map(|(p, d)| typed::<ClusterRole>(&p, &d))
        .unwrap();
    let rules = role.rules.unwrap();
    let verbs = |resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .flat_map(|r| r.verbs.clone())
            .collect()
    };
    for verb in ["create", "get", "list", "watch", "delete"] {
        assert!(verbs("pods").iter().any(|v| v == verb), "pods {verb}");
    }
    assert!(verbs("secrets").iter().any(|v| v == "get"), "secrets get");
}
