//! Pod construction checked field by field, pod status mapping, and the executor against
//! a fake API server behind `tower-test`'s mock service (list, watch with resource
//! versions, create, delete, and an expired watch that forces a relist).

use super::*;
use contrail_engine::ErrorKind;
use contrail_idl::core::{
    self, Container, KeyValuePair, Resources, Secret, SecurityContext, TaskTemplate,
    resources::{ResourceEntry, ResourceName},
    secret::MountType,
    task_template::Target,
};
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodCondition, PodStatus};
use kube::client::Body;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

fn entry(name: ResourceName, value: &str) -> ResourceEntry {
    ResourceEntry {
        name: name as i32,
        value: value.into(),
    }
}

fn spec(id: &str) -> AttemptSpec {
    let mut spec = AttemptSpec {
        id: id.into(),
        project: "flytesnacks".into(),
        domain: "development".into(),
        execution: "abc".into(),
        workflow: "wf.basic".into(),
        node_id: "n0".into(),
        envs: vec![("FROM_EXECUTION".into(), "1".into())],
        labels: vec![("team".into(), "ml".into())],
        annotations: vec![("owner".into(), "ana".into())],
        service_account: "runner".into(),
        ..Default::default()
    };
    spec.paths.inputs = "s3://b/m/abc/n0/data/inputs.pb".into();
    spec.paths.output_prefix = format!("s3://b/m/{id}/0");
    spec.task = TaskTemplate {
        r#type: "python-task".into(),
        id: Some(core::Identifier {
            name: "wf.double".into(),
            version: "v1".into(),
            ..Default::default()
        }),
        target: Some(Target::Container(Container {
            image: "ghcr.io/acme/task:1".into(),
            args: vec![
                "pyflyte-execute".into(),
                "--inputs".into(),
                "{{.input}}".into(),
                "--output-prefix".into(),
                "{{.outputPrefix}}".into(),
            ],
            env: vec![KeyValuePair {
                key: "FROM_TASK".into(),
                value: "2".into(),
            }],
            resources: Some(Resources {
                requests: vec![entry(ResourceName::Cpu, "500m")],
                limits: vec![
                    entry(ResourceName::Memory, "1Gi"),
                    entry(ResourceName::Gpu, "1"),
                ],
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    spec
}

fn endpoints() -> Vec<(String, String)> {
    vec![(
        "FLYTE_AWS_ENDPOINT".into(),
        "http://s3.internal:9000".into(),
    )]
}

fn env_of(pod: &Pod, container: &str) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap()
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

#[test]
fn a_container_task_becomes_a_pod_like_flytes() {
    let pod = pod::build(&spec("abc-n0-0"), &K8sConfig::default(), &endpoints()).unwrap();
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("abc-n0-0"));
    assert_eq!(meta.namespace.as_deref(), Some("flytesnacks-development"));
    let labels = meta.labels.clone().unwrap();
    for (k, v) in [
        ("execution-id", "abc"),
        ("project", "flytesnacks"),
        ("domain", "development"),
        ("workflow-name", "wf.basic"),
        ("node-id", "n0"),
        ("task-name", "wf.double"),
        ("interruptible", "false"),
        ("team", "ml"),
        ("app.kubernetes.io/managed-by", "contrail"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let annotations = meta.annotations.clone().unwrap();
    assert_eq!(annotations["owner"], "ana");
    assert_eq!(
        annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    assert_eq!(annotations["primary_container_name"], "abc-n0-0");
    let pod_spec = pod.spec.clone().unwrap();
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod_spec.service_account_name.as_deref(), Some("runner"));
    let c = &pod_spec.containers[0];
    assert_eq!(c.name, "abc-n0-0");
    assert_eq!(c.image.as_deref(), Some("ghcr.io/acme/task:1"));
    assert_eq!(c.command, None);
    assert_eq!(
        c.args.clone().unwrap(),
        [
            "pyflyte-execute",
            "--inputs",
            "s3://b/m/abc/n0/data/inputs.pb",
            "--output-prefix",
            "s3://b/m/abc-n0-0/0"
        ]
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let r = c.resources.clone().unwrap();
    let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| m.as_ref().unwrap()[k].0.clone();
    assert_eq!(q(&r.requests, "cpu"), "500m");
    assert_eq!(
        q(&r.limits, "cpu"),
        "500m",
        "a limit left out takes the request"
    );
    assert_eq!(
        q(&r.requests, "memory"),
        "1Gi",
        "a request left out takes the limit"
    );
    assert_eq!(q(&r.limits, "nvidia.com/gpu"), "1");
    assert_eq!(q(&r.requests, "nvidia.com/gpu"), "1");
    let env = env_of(&pod, "abc-n0-0");
    for (k, v) in [
        ("FLYTE_AWS_ENDPOINT", "http://s3.internal:9000"),
        ("FLYTE_INTERNAL_EXECUTION_ID", "abc"),
        ("FLYTE_INTERNAL_TASK_NAME", "wf.double"),
        ("FLYTE_ATTEMPT_NUMBER", "0"),
        ("FROM_TASK", "2"),
        ("FROM_EXECUTION", "1"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "env {k}");
    }
}

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[test]
fn secrets_come_from_kubernetes_secrets_as_env_vars_or_files() {
    let mut s = spec("abc-n0-0");
    s.task.security_context = Some(SecurityContext {
        secrets: vec![
            Secret {
                group: "db".into(),
                key: "password".into(),
                mount_requirement: MountType::EnvVar as i32,
                ..Default::default()
            },
            Secret {
                group: "Cloud".into(),
                key: "Token".into(),
                mount_requirement: MountType::File as i32,
                env_var: "TOKEN_FILE".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let pod = pod::build(&s, &K8sConfig::default(), &[]).unwrap();
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["inject-flyte-secrets"],
        "true"
    );
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let from_secret = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "_FSEC_DB_PASSWORD")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .expect("an ENV_VAR secret is a secretKeyRef");
    assert_eq!(
        (from_secret.name.as_str(), from_secret.key.as_str()),
        ("db", "password")
    );
    let env = env_of(&pod, "abc-n0-0");
    assert_eq!(env["FLYTE_SECRETS_DEFAULT_DIR"], "/etc/flyte/secrets");
    assert_eq!(env["FLYTE_SECRETS_FILE_PREFIX"], "");
    assert_eq!(env["TOKEN_FILE"], "/etc/flyte/secrets/cloud/token");
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/etc/flyte/secrets/cloud");
    assert_eq!(mount.read_only, Some(true));
    let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    assert_eq!(volume.name, mount.name);
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some("Cloud"));
    let item = &source.items.as_ref().unwrap()[0];
    assert_eq!((item.key.as_str(), item.path.as_str()), ("Token", "token"));
}

#[test]
fn interruptible_attempts_get_the_configured_tolerations_and_node_selector() {
    let cfg: K8sConfig = serde_json::from_value(serde_json::json!({
        "namespace": "tasks-{{ domain }}",
        "interruptible_tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "interruptible_node_selector": {"lifecycle": "spot"},
        "default_node_selector": {"pool": "tasks"},
    }))
    .unwrap();
    let mut s = spec("abc-n0-0");
    let plain = pod::build(&s, &cfg, &[]).unwrap();
    let ps = plain.spec.unwrap();
    assert_eq!(
        plain.metadata.namespace.as_deref(),
        Some("tasks-development")
    );
    assert_eq!(ps.tolerations, None);
    assert_eq!(ps.node_selector.unwrap().len(), 1);
    s.interruptible = true;
    let spot = pod::build(&s, &cfg, &[]).unwrap();
    assert_eq!(
        spot.metadata.labels.as_ref().unwrap()["interruptible"],
        "true"
    );
    let ps = spot.spec.unwrap();
    assert_eq!(ps.tolerations.unwrap()[0].key.as_deref(), Some("spot"));
    let selector = ps.node_selector.unwrap();
    assert_eq!(
        (selector["lifecycle"].as_str(), selector["pool"].as_str()),
        ("spot", "tasks")
    );
}

fn struct_of(value: serde_json::Value) -> prost_types::Struct {
    fn to_value(v: &serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(*b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            serde_json::Value::String(s) => Kind::StringValue(s.clone()),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(to_value).collect(),
            }),
            serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
                fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }
    match to_value(&value).kind {
        Some(prost_types::value::Kind::StructValue(s)) => s,
        _ => unreachable!("an object"),
    }
}

#[test]
fn a_pod_template_task_keeps_its_spec_and_customises_only_the_primary_container() {
    let mut s = spec("abc-n0-0");
    s.task.r#type = "python-task".into();
    s.task.config = [("primary_container_name".to_string(), "main".to_string())].into();
    s.task.target = Some(Target::K8sPod(core::K8sPod {
        metadata: Some(core::K8sObjectMetadata {
            labels: [("from-template".to_string(), "yes".to_string())].into(),
            annotations: Default::default(),
        }),
        pod_spec: Some(struct_of(serde_json::json!({
            "containers": [
                {"name": "main", "image": "ghcr.io/acme/task:1",
                 "args": ["pyflyte-execute", "--inputs", "{{.input}}"],
                 "env": [{"name": "OWN", "value": "x"}],
                 "resources": {"limits": {"memory": "2Gi"}}},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1000"]}
            ],
            "nodeSelector": {"disk": "ssd"},
            "serviceAccountName": "template-sa"
        }))),
        data_config: None,
        primary_container_name: String::new(),
    }));
    let pod = pod::build(&s, &K8sConfig::default(), &endpoints()).unwrap();
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["from-template"],
        "yes"
    );
    assert_eq!(
        pod.metadata.annotations.as_ref().unwrap()["primary_container_name"],
        "main"
    );
    let ps = pod.spec.clone().unwrap();
    assert_eq!(
        ps.service_account_name.as_deref(),
        Some("template-sa"),
        "the template wins"
    );
    assert_eq!(ps.node_selector.unwrap()["disk"], "ssd");
    let main = &ps.containers[0];
    assert_eq!(
        main.args.clone().unwrap(),
        [
            "pyflyte-execute",
            "--inputs",
            "s3://b/m/abc/n0/data/inputs.pb"
        ]
    );
    assert_eq!(
        main.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "2Gi"
    );
    let env = env_of(&pod, "main");
    assert_eq!(env["OWN"], "x");
    assert_eq!(env["FLYTE_AWS_ENDPOINT"], "http://s3.internal:9000");
    assert!(
        env_of(&pod, "sidecar").is_empty(),
        "sidecars are left alone"
    );
    s.task.config = [("primary_container_name".to_string(), "nope".to_string())].into();
    let err = pod::build(&s, &K8sConfig::default(), &[]).unwrap_err();
    assert!(err.contains("'nope'"), "{err}");
}

fn with_status(phase: &str, primary: Option<ContainerState>) -> Pod {
    let mut pod = pod::build(&spec("abc-n0-0"), &K8sConfig::default(), &[]).unwrap();
    pod.status = Some(match primary {
        Some(state) => one_container(phase, "abc-n0-0", state),
        None => PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        },
    });
    pod
}

fn waiting(reason: &str) -> ContainerState {
    serde_json::from_value(serde_json::json!({"waiting": {"reason": reason, "message": "m"}}))
        .unwrap()
}

fn terminated(code: i32, reason: &str) -> ContainerState {
    serde_json::from_value(serde_json::json!({"terminated": {
        "exitCode": code, "reason": reason, "finishedAt": "2026-12-01T10:00:00Z"}}))
    .unwrap()
}

#[test]
fn pod_states_map_to_task_states_with_flytes_retry_semantics() {
    let now = Timestamp::now();
    let see = |pod: &Pod| status::observe(pod, "abc-n0-0", now, 180);
    let mut unscheduled = with_status("Pending", None);
    unscheduled.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some("0/3 nodes have a GPU".into()),
        ..Default::default()
    }]);
    assert!(
        matches!(see(&unscheduled), PodPhase::Live(TaskStatus::Waiting { reason }) if reason.contains("0/3 nodes"))
    );
    assert_eq!(
        see(&with_status("Pending", None)),
        PodPhase::Live(TaskStatus::Queued)
    );
    assert!(matches!(
        see(&with_status("Pending", Some(waiting("ContainerCreating")))),
        PodPhase::Live(TaskStatus::Initializing { .. })
    ));
    // ImagePullBackOff is tolerated for the grace period, then fails naming the image.
    let mut backoff = with_status("Pending", Some(waiting("ImagePullBackOff")));
    backoff.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    assert!(matches!(
        see(&backoff),
        PodPhase::Live(TaskStatus::Initializing { .. })
    ));
    backoff.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(now.as_second() - 600).unwrap(),
        ));
    let PodPhase::Ended(f) = see(&backoff) else {
        panic!("past its grace period")
    };
    assert_eq!((f.kind, f.recoverable), (ErrorKind::User, true));
    assert!(f.message.contains("ghcr.io/acme/task:1"), "{}", f.message);
    let PodPhase::Ended(f) = see(&with_status(
        "Pending",
        Some(waiting("CreateContainerConfigError")),
    )) else {
        panic!()
    };
    assert_eq!((f.kind, f.recoverable), (ErrorKind::User, false));
    assert_eq!(
        see(&with_status(
            "Running",
            Some(serde_json::from_value(serde_json::json!({"running": {}})).unwrap())
        )),
        PodPhase::Live(TaskStatus::Running { started_at: None })
    );
    assert_eq!(
        see(&with_status("Succeeded", Some(terminated(0, "Completed")))),
        PodPhase::Exited
    );
    // OOMKilled is the user's, retryable (as in Flyte); eviction is the system's.
    let PodPhase::Ended(f) = see(&with_status("Failed", Some(terminated(137, "OOMKilled")))) else {
        panic!()
    };
    assert_eq!(
        (f.kind, f.recoverable, f.code.as_str()),
        (ErrorKind::User, true, "OOMKilled")
    );
    let mut evicted = with_status("Failed", None);
    evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
    let PodPhase::Ended(f) = see(&evicted) else {
        panic!()
    };
    assert_eq!((f.kind, f.code.as_str()), (ErrorKind::System, "Evicted"));
    let PodPhase::Ended(f) = see(&with_status("Running", Some(terminated(137, "Error")))) else {
        panic!()
    };
    assert_eq!(
        f.kind,
        ErrorKind::System,
        "a SIGKILLed primary is the system's"
    );
    assert_eq!(
        see(&with_status("Failed", Some(terminated(1, "Error")))),
        PodPhase::Exited
    );
    let mut deleting = with_status("Running", None);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    assert!(matches!(see(&deleting), PodPhase::Ended(f) if f.kind == ErrorKind::System));
}

#[test]
fn log_links_render_flytes_template_variables() {
    let cfg = K8sConfig {
        log_templates: vec![LogTemplate {
            display_name: "Kubernetes Logs".into(),
            template_uris: vec![
                "https://logs/#/{{ .namespace }}/{{ .podName }}/{{$containerName}}?task={{ .taskID }}".into(),
            ],
        }],
        ..Default::default()
    };
    let uri = render_log_uri(
        &cfg.log_templates[0].template_uris[0],
        &[
            ("namespace", "p-d"),
            ("podName", "x-n0-0"),
            ("containerName", "x-n0-0"),
            ("taskID", "t"),
        ],
    );
    assert_eq!(uri, "https://logs/#/p-d/x-n0-0/x-n0-0?task=t");
}

// ---- the executor against a fake API server ----

#[derive(Default)]
struct FakeState {
    pods: BTreeMap<(String, String), Pod>,
    version: u64,
    events: Vec<(u64, &'static str, Pod)>,
    expire_next_watch: bool,
    lists: usize,
    creates: Vec<String>,
    deletes: Vec<String>,
}

/// An API server for pods: lists, watches from a resource version, creates and deletes.
#[derive(Default)]
struct FakeApi {
    state: Mutex<FakeState>,
    changed: tokio::sync::Notify,
}

fn json_response(code: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&value).unwrap()))
        .unwrap()
}

fn status_body(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

impl FakeApi {
    /// Records a change to a pod as the API server would (new resource version, an event).
    fn record(state: &mut FakeState, kind: &'static str, mut pod: Pod) -> Pod {
        state.version += 1;
        pod.metadata.resource_version = Some(state.version.to_string());
        state.events.push((state.version, kind, pod.clone()));
        pod
    }

    fn update(&self, ns: &str, name: &str, change: impl FnOnce(&mut Pod)) {
        let mut st = lock(&self.state);
        let mut pod = st
            .pods
            .get(&(ns.into(), name.into()))
            .cloned()
            .expect("pod exists");
        change(&mut pod);
        let pod = Self::record(&mut st, "MODIFIED", pod);
        st.pods.insert((ns.into(), name.into()), pod);
        drop(st);
        self.changed.notify_waiters();
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let (method, path, query) = (
            req.method().clone(),
            req.uri().path().to_string(),
            req.uri().query().unwrap_or("").to_string(),
        );
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v1", "pods"]) if param("watch").as_deref() == Some("true") => {
                let since: u64 = param("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if std::mem::take(&mut lock(&self.state).expire_next_watch) {
                    let line = serde_json::json!({"type": "ERROR",
                        "object": status_body(410, "Expired", "too old resource version")});
                    return json_response(StatusCode::OK, line);
                }
                let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
                loop {
                    let notified = self.changed.notified();
                    let lines: Vec<String> = lock(&self.state)
                        .events
                        .iter()
                        .filter(|(v, _, _)| *v > since)
                        .map(|(_, kind, pod)| {
                            serde_json::json!({"type": kind, "object": pod}).to_string()
                        })
                        .collect();
                    if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
                        let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
                        return Response::builder()
                            .status(StatusCode::OK)
                            .body(Body::from(body.into_bytes()))
                            .unwrap();
                    }
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
            ("GET", ["api", "v1", "pods"]) => {
                let mut st = lock(&self.state);
                st.lists += 1;
                let items: Vec<&Pod> = st.pods.values().collect();
                json_response(
                    StatusCode::OK,
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": st.version.to_string()}, "items": items}),
                )
            }
            ("POST", ["api", "v1", "namespaces", ns, "pods"]) => {
                let body = req.into_body().collect_bytes().await.unwrap();
                let mut pod: Pod = serde_json::from_slice(&body).unwrap();
                let name = pod.metadata.name.clone().unwrap();
                let mut st = lock(&self.state);
                st.creates.push(name.clone());
                if st.pods.contains_key(&(ns.to_string(), name.clone())) {
                    return json_response(
                        StatusCode::CONFLICT,
                        status_body(
                            409,
                            "AlreadyExists",
                            &format!("pods \"{name}\" already exists"),
                        ),
                    );
                }
                pod.metadata.namespace = Some(ns.to_string());
                pod.metadata.creation_timestamp = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
                );
                pod.status = Some(PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                });
                let pod = Self::record(&mut st, "ADDED", pod);
                st.pods.insert((ns.to_string(), name), pod.clone());
                drop(st);
                self.changed.notify_waiters();
                json_response(StatusCode::CREATED, serde_json::to_value(&pod).unwrap())
            }
            ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
                let mut st = lock(&self.state);
                st.deletes.push(name.to_string());
                let Some(pod) = st.pods.remove(&(ns.to_string(), name.to_string())) else {
                    return json_response(
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
                    );
                };
                let pod = Self::record(&mut st, "DELETED", pod);
                drop(st);
                self.changed.notify_waiters();
                json_response(StatusCode::OK, serde_json::to_value(&pod).unwrap())
            }
            _ => json_response(StatusCode::NOT_FOUND, status_body(404, "NotFound", &path)),
        }
    }
}

struct Harness {
    fake: Arc<FakeApi>,
    executor: Arc<K8sExecutor>,
    blob: BlobStore,
    _dir: tempfile::TempDir,
}

/// A client whose every request the fake API server answers.
fn client_of(fake: &Arc<FakeApi>) -> kube::Client {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = fake.clone();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((request, reply)) = handle.next_request().await {
            let server = server.clone();
            tokio::spawn(async move { reply.send_response(server.answer(request).await) });
        }
    });
    kube::Client::new(service, "default")
}

async fn harness() -> Harness {
    let fake = Arc::new(FakeApi::default());
    let dir = tempfile::tempdir().unwrap();
    let blob = BlobStore::new(dir.path().join("blobs"), "b", vec![0; 32]);
    let executor = Arc::new(K8sExecutor::new(
        client_of(&fake),
        K8sConfig::default(),
        blob.clone(),
        endpoints(),
        tokio::runtime::Handle::current(),
    ));
    let ready = executor.clone();
    wait_for(move || ready.ready(), "the first list").await;
    Harness {
        fake,
        executor,
        blob,
        _dir: dir,
    }
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs executor calls (synchronous, they block on the runtime) off the async workers.
async fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

impl Harness {
    async fn status(&self, s: &AttemptSpec) -> TaskStatus {
        let (e, s) = (self.executor.clone(), s.clone());
        call(move || e.status(&s).unwrap()).await
    }

    async fn launch(&self, s: &AttemptSpec, wakes: Arc<AtomicUsize>) {
        let (e, s) = (self.executor.clone(), s.clone());
        call(move || {
            e.launch(
                &s,
                Box::new(move || {
                    wakes.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap()
        })
        .await
    }

    /// Waits until the attempt fails; the failure.
    async fn failure(&self, s: &AttemptSpec) -> Failure {
        match self
            .status_becomes(s, |t| matches!(t, TaskStatus::Failed(_)))
            .await
        {
            TaskStatus::Failed(f) => f,
            _ => unreachable!("status_becomes returned a failure"),
        }
    }

    /// Waits until the executor reports a status matching `want`.
    async fn status_becomes(
        &self,
        s: &AttemptSpec,
        want: impl Fn(&TaskStatus) -> bool,
    ) -> TaskStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.status(s).await;
            if want(&now) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "last status: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const NS: &str = "flytesnacks-development";

/// A pod status with one container in the given state.
fn one_container(phase: &str, container: &str, state: ContainerState) -> PodStatus {
    PodStatus {
        phase: Some(phase.into()),
        container_statuses: Some(vec![ContainerStatus {
            name: container.into(),
            state: Some(state),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_then_watch_driven_phases_to_success() {
    let h = harness().await;
    let s = spec("run-n0-0");
    assert_eq!(h.status(&s).await, TaskStatus::Unknown, "never launched");
    let wakes = Arc::new(AtomicUsize::new(0));
    h.launch(&s, wakes.clone()).await;
    assert_eq!(lock(&h.fake.state).creates, ["run-n0-0"]);
    let created = lock(&h.fake.state).pods[&(NS.to_string(), "run-n0-0".to_string())].clone();
    assert_eq!(
        created.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "contrail"
    );
    h.status_becomes(&s, |t| *t == TaskStatus::Queued).await;
    let before = wakes.load(Ordering::SeqCst);
    h.fake.update(NS, "run-n0-0", |p| {
        p.status = Some(one_container(
            "Running",
            "run-n0-0",
            serde_json::from_value(serde_json::json!({"running": {}})).unwrap(),
        ))
    });
    h.status_becomes(&s, |t| matches!(t, TaskStatus::Running { .. }))
        .await;
    wait_for(
        || wakes.load(Ordering::SeqCst) > before,
        "a wake-up from the watch",
    )
    .await;
    // The task writes its outputs and its container exits 0.
    h.blob.put("m/run-n0-0/0/outputs.pb", b"").unwrap();
    h.fake.update(NS, "run-n0-0", |p| {
        p.status = Some(one_container(
            "Succeeded",
            "run-n0-0",
            terminated(0, "Completed"),
        ))
    });
    h.status_becomes(&s, |t| *t == TaskStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_repeated_after_a_restart_finds_the_pod_it_created() {
    let h = harness().await;
    let s = spec("again-n0-0");
    h.launch(&s, Arc::default()).await;
    // A new process (empty memory) launches the same attempt: AlreadyExists is success.
    let restarted = Arc::new(K8sExecutor::new(
        client_of(&h.fake),
        K8sConfig::default(),
        h.blob.clone(),
        vec![],
        tokio::runtime::Handle::current(),
    ));
    // Launched before its watcher listed: the create meets the existing pod.
    let (e, s2) = (restarted.clone(), s.clone());
    call(move || e.launch(&s2, Box::new(|| {})).unwrap()).await;
    let creates = lock(&h.fake.state).creates.clone();
    assert!(
        creates.len() <= 2 && creates.iter().all(|c| c == "again-n0-0"),
        "{creates:?}"
    );
    assert_eq!(lock(&h.fake.state).pods.len(), 1, "one pod");
    let ready = restarted.clone();
    wait_for(move || ready.ready(), "the restarted watcher").await;
    let (e, s3) = (restarted.clone(), s.clone());
    assert_eq!(
        call(move || e.status(&s3).unwrap()).await,
        TaskStatus::Queued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_deletes_the_pod() {
    let h = harness().await;
    let s = spec("stop-n0-0");
    h.launch(&s, Arc::default()).await;
    let (e, s2) = (h.executor.clone(), s.clone());
    call(move || e.abort(&s2).unwrap()).await;
    assert_eq!(lock(&h.fake.state).deletes, ["stop-n0-0"]);
    assert!(lock(&h.fake.state).pods.is_empty());
    // Aborting again is fine (NotFound).
    let (e, s3) = (h.executor.clone(), s.clone());
    call(move || e.abort(&s3).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_fails_the_attempt_as_a_retryable_user_error() {
    let h = harness().await;
    let s = spec("oom-n0-0");
    h.launch(&s, Arc::default()).await;
    h.fake.update(NS, "oom-n0-0", |p| {
        p.status = Some(one_container(
            "Failed",
            "oom-n0-0",
            terminated(137, "OOMKilled"),
        ))
    });
    let f = h.failure(&s).await;
    assert_eq!(
        (f.kind, f.recoverable, f.code.as_str()),
        (ErrorKind::User, true, "OOMKilled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_after_the_grace_period_naming_it() {
    let h = harness().await;
    let s = spec("pull-n0-0");
    h.launch(&s, Arc::default()).await;
    h.fake.update(NS, "pull-n0-0", |p| {
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(Timestamp::now().as_second() - 3600).unwrap(),
        ));
        p.status = Some(one_container(
            "Pending",
            "pull-n0-0",
            waiting("ImagePullBackOff"),
        ))
    });
    let f = h.failure(&s).await;
    assert_eq!(f.code, "ImagePullBackOff");
    assert!(f.message.contains("ghcr.io/acme/task:1"), "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_relists_and_sees_what_changed_meanwhile() {
    let h = harness().await;
    let s = spec("gone-n0-0");
    h.launch(&s, Arc::default()).await;
    h.status_becomes(&s, |t| *t == TaskStatus::Queued).await;
    let lists = lock(&h.fake.state).lists;
    {
        // The next watch answers 410 Gone, and the change below is only in the list.
        let mut st = lock(&h.fake.state);
        st.expire_next_watch = true;
        let key = (NS.to_string(), "gone-n0-0".to_string());
        let mut pod = st.pods[&key].clone();
        pod.status.as_mut().unwrap().phase = Some("Running".into());
        st.version += 1;
        pod.metadata.resource_version = Some(st.version.to_string());
        st.pods.insert(key, pod);
    }
    h.fake.changed.notify_waiters();
    h.status_becomes(&s, |t| matches!(t, TaskStatus::Running { .. }))
        .await;
    assert!(
        lock(&h.fake.state).lists > lists,
        "the watcher listed again"
    );
}

#[test]
fn tasks_that_are_not_pods_are_refused_with_the_reason() {
    let mut s = spec("sql-n0-0");
    s.task.r#type = "sql".into();
    s.task.target = None;
    let err = pod::build(&s, &K8sConfig::default(), &[]).unwrap_err();
    assert!(err.contains("task type 'sql'"), "{err}");
}

#[tokio::test]
async fn a_kubeconfig_with_a_tls_server_gives_a_client() {
    // Builds the TLS stack the way a real cluster needs it (no connection is made).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: abc}}]\n\
         contexts: [{name: c, context: {cluster: k, user: u, namespace: tasks}}]\n",
    )
    .unwrap();
    let cfg = K8sConfig {
        kubeconfig: Some(path.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let built = client(&cfg).await.expect("a client");
    assert_eq!(built.default_namespace(), "tasks");
    let missing = K8sConfig {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..Default::default()
    };
    let err = client(&missing).await.err().unwrap();
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
}
