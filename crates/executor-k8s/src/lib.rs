//! Runs task attempts as Kubernetes pods.
//!
//! - **Identity.** The pod's name is the attempt id, so a launch repeated after a crash
//!   meets the pod it created (AlreadyExists is success) and never runs the attempt twice.
//! - **Observation.** One watcher ([`kube::runtime::reflector`]) keeps every pod Contrail
//!   created (label `app.kubernetes.io/managed-by=contrail`) in memory and wakes the round
//!   of an attempt whose pod changed; `status` reads that cache, never the API. A watch
//!   that expires relists.
//! - **Outcome.** [`status::observe`] maps the pod; a pod that ran to its end is judged by
//!   what the task wrote (`error.pb`, `outputs.pb`, `futures.pb`), as for local tasks.
//! - **Clean-up.** Abort deletes the pod; finished pods are deleted
//!   `delete_finished_after_secs` after they end.
//!
//! The port is synchronous and called on blocking threads; calls to the API run on the
//! runtime handle given at construction.

pub mod config;
pub mod pod;
pub mod status;

pub use config::{K8sConfig, LogTemplate};

use contrail_blob::BlobStore;
use contrail_engine::{Failure, TaskStatus};
use contrail_executor::outcome::{Exit, decide, read_leftovers};
use contrail_executor::{AttemptSpec, Executor, Result, io, lock};
use contrail_idl::core::TaskLog;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use status::PodPhase;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to call when an attempt's pod may have changed.
type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Book {
    /// Pods this process created and when (`namespace/name`), until the watcher shows them.
    created: HashMap<String, Instant>,
    wakers: HashMap<String, Waker>,
    aborted: HashSet<String>,
    /// Attempts that cannot run as pods, why, and since when (forgotten after an hour: the
    /// engine records the failure at its next round).
    refused: HashMap<String, (Failure, Instant)>,
}

struct Inner {
    client: kube::Client,
    cfg: K8sConfig,
    blob: BlobStore,
    endpoints: Vec<(String, String)>,
    runtime: tokio::runtime::Handle,
    pods: Store<Pod>,
    /// The watcher has listed the pods at least once.
    ready: AtomicBool,
    book: Mutex<Book>,
}

pub struct K8sExecutor {
    inner: Arc<Inner>,
}

/// The client a configuration names: a kubeconfig file (and context), else the in-cluster
/// service account, `KUBECONFIG` or `~/.kube/config`.
pub async fn client(cfg: &K8sConfig) -> std::result::Result<kube::Client, String> {
    let options = kube::config::KubeConfigOptions {
        context: cfg.context.clone(),
        ..Default::default()
    };
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {path}: {e}"))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| format!("kubeconfig {path}: {e}"))?
        }
        None if cfg.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl K8sExecutor {
    /// Starts the pod watcher and the clean-up of finished pods on `runtime`.
    pub fn new(
        client: kube::Client,
        cfg: K8sConfig,
        blob: BlobStore,
        endpoints: Vec<(String, String)>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let (pods, writer) = reflector::store::<Pod>();
        let inner = Arc::new(Inner {
            client,
            cfg,
            blob,
            endpoints,
            runtime: runtime.clone(),
            pods,
            ready: AtomicBool::new(false),
            book: Mutex::default(),
        });
        runtime.spawn(watch(Arc::downgrade(&inner), writer));
        runtime.spawn(collect_finished(Arc::downgrade(&inner)));
        K8sExecutor { inner }
    }

    /// Whether the watcher has listed the pods (tests and readiness).
    pub fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }
}

/// Keeps the pod cache and wakes the rounds of attempts whose pod changed.
async fn watch(inner: std::sync::Weak<Inner>, writer: reflector::store::Writer<Pod>) {
    let Some(client) = inner.upgrade().map(|i| i.client.clone()) else {
        return;
    };
    let selector = format!("{}={}", pod::MANAGED_BY.0, pod::MANAGED_BY.1);
    let api: Api<Pod> = Api::all(client);
    let events = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector)),
    )
    .default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let touched: Vec<Pod> = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::Delete(p)) => vec![p],
            Ok(watcher::Event::InitDone) => {
                inner.ready.store(true, Ordering::Release);
                // After a relist any pod may have changed: every round looks again.
                let all: Vec<Waker> = lock(&inner.book).wakers.values().cloned().collect();
                for w in all {
                    w();
                }
                vec![]
            }
            Ok(_) => vec![],
            Err(e) => {
                tracing::warn!("pod watch: {e}");
                vec![]
            }
        };
        for p in touched {
            let k = key(
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
            );
            let waker = {
                let mut book = lock(&inner.book);
                book.created.remove(&k);
                book.wakers.get(&k).cloned()
            };
            if let Some(w) = waker {
                w();
            }
        }
    }
}

/// Deletes finished pods once they are older than the configured time.
async fn collect_finished(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(me) = inner.upgrade() else { return };
        let after = me.cfg.delete_finished_after_secs;
        let every = Duration::from_secs((after / 4).clamp(1, 60));
        let now = Timestamp::now();
        let old: Vec<(String, String)> = me
            .pods
            .state()
            .iter()
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                matches!(phase, Some("Succeeded" | "Failed"))
                    && status::finished_at(p)
                        .is_some_and(|t| now.as_second() - t.as_second() >= after as i64)
            })
            .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
            .collect();
        for (ns, name) in old {
            let api: Api<Pod> = Api::namespaced(me.client.clone(), &ns);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::debug!(pod = %key(&ns, &name), "deleted finished pod"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!(pod = %key(&ns, &name), "cannot delete finished pod: {e}"),
            }
        }
        {
            // Forget what no longer matters: pods never shown by the watcher after ten
            // minutes, refusals after an hour, aborts of pods that are gone.
            let mut book = lock(&me.book);
            book.created
                .retain(|_, at| at.elapsed() < Duration::from_secs(600));
            book.refused
                .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(3600));
            let pods = &me.pods;
            book.aborted.retain(|k| {
                let (ns, name) = k.split_once('/').unwrap_or_default();
                pods.get(&ObjectRef::new(name).within(ns)).is_some()
            });
        }
        drop(me);
        tokio::time::sleep(every).await;
    }
}

impl Inner {
    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// What a create that the API refused means for the attempt: `Ok` a failure of the
    /// attempt, `Err` a condition to retry in a later round.
    fn refusal(&self, error: kube::Error) -> Result<Failure> {
        match &error {
            kube::Error::Api(e) if matches!(e.code, 400 | 422) => Ok(Failure::user(
                "BadTaskFormat",
                format!("Kubernetes refused the pod: {}", e.message),
                false,
            )),
            kube::Error::Api(e) if e.code == 403 && !e.message.contains("exceeded quota") => {
                Ok(Failure::user(
                    "RuntimeFailure",
                    format!("Kubernetes forbade the pod: {}", e.message),
                    true,
                ))
            }
            kube::Error::Api(e) if e.code == 413 => Ok(Failure::user(
                "EntityTooLarge",
                format!("the pod is too large: {}", e.message),
                false,
            )),
            _ => Err(io(format!("cannot create the pod: {error}"))),
        }
    }
}

impl Executor for K8sExecutor {
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let inner = &self.inner;
        let (ns, name) = (pod::namespace(&inner.cfg, spec), pod::pod_name(spec));
        let k = key(&ns, &name);
        {
            let mut book = lock(&inner.book);
            book.wakers.insert(k.clone(), Arc::from(on_change));
            if book.refused.contains_key(&k) || book.created.contains_key(&k) {
                return Ok(());
            }
        }
        if inner.cached(&ns, &name).is_some() {
            return Ok(());
        }
        let built = match pod::build(spec, &inner.cfg, &inner.endpoints) {
            Ok(p) => p,
            Err(message) => {
                let failure = Failure::user("BadTaskSpecification", message, false);
                lock(&inner.book)
                    .refused
                    .insert(k, (failure, Instant::now()));
                return Ok(());
            }
        };
        // Deleted after it finished, its outcome in the blob store: never run it again.
        let left = read_leftovers(&inner.blob, spec, String::new(), false)?;
        if left.error_doc.is_some() || left.outputs_written || left.futures_written {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(inner.client.clone(), &ns);
        let created = inner
            .runtime
            .block_on(api.create(&PostParams::default(), &built));
        match created {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {} // created before a restart
            Err(e) => {
                let failure = inner.refusal(e)?;
                lock(&inner.book)
                    .refused
                    .insert(k, (failure, Instant::now()));
                return Ok(());
            }
        }
        lock(&inner.book).created.insert(k, Instant::now());
        Ok(())
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        let inner = &self.inner;
        let (ns, name) = (pod::namespace(&inner.cfg, spec), pod::pod_name(spec));
        let k = key(&ns, &name);
        let (created, aborted) = {
            let book = lock(&inner.book);
            if let Some((f, _)) = book.refused.get(&k) {
                return Ok(TaskStatus::Failed(f.clone()));
            }
            (book.created.contains_key(&k), book.aborted.contains(&k))
        };
        if !inner.ready.load(Ordering::Acquire) {
            return Err(io("the pod watcher has not listed the pods yet"));
        }
        let Some(found) = inner.cached(&ns, &name) else {
            if created {
                return Ok(TaskStatus::Queued); // created; the watcher has not shown it yet
            }
            let left = read_leftovers(&inner.blob, spec, String::new(), aborted)?;
            if left.error_doc.is_some() || left.outputs_written || left.futures_written {
                return Ok(decide(&Exit::Lost, &left));
            }
            return Ok(TaskStatus::Unknown);
        };
        let primary = found
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("primary_container_name"))
            .cloned()
            .unwrap_or_else(|| name.clone());
        let phase = status::observe(
            &found,
            &primary,
            Timestamp::now(),
            inner.cfg.image_pull_backoff_grace_secs,
        );
        match phase {
            PodPhase::Live(s) => Ok(s),
            PodPhase::Exited => {
                let left = read_leftovers(&inner.blob, spec, String::new(), aborted)?;
                let code = status::exit_code(&found, &primary).unwrap_or(0);
                Ok(decide(&Exit::Code(code), &left))
            }
            PodPhase::Ended(failure) => {
                let left = read_leftovers(&inner.blob, spec, String::new(), aborted)?;
                if left.error_doc.is_some() || aborted {
                    Ok(decide(&Exit::Signal(9), &left))
                } else {
                    Ok(TaskStatus::Failed(failure))
                }
            }
        }
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        let inner = &self.inner;
        let (ns, name) = (pod::namespace(&inner.cfg, spec), pod::pod_name(spec));
        lock(&inner.book).aborted.insert(key(&ns, &name));
        let api: Api<Pod> = Api::namespaced(inner.client.clone(), &ns);
        match inner
            .runtime
            .block_on(api.delete(&name, &DeleteParams::default()))
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(io(format!("cannot delete pod {name}: {e}"))),
        }
    }

    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog> {
        let inner = &self.inner;
        let (ns, name) = (pod::namespace(&inner.cfg, spec), pod::pod_name(spec));
        let task = spec.task.id.clone().unwrap_or_default();
        let attempt = spec.attempt.to_string();
        let vars: [(&str, &str); 12] = [
            ("podName", &name),
            ("podname", &name),
            ("namespace", &ns),
            ("containerName", &name),
            ("taskID", &task.name),
            ("taskVersion", &task.version),
            ("taskProject", &task.project),
            ("taskDomain", &task.domain),
            ("taskRetryAttempt", &attempt),
            ("executionName", &spec.execution),
            ("executionProject", &spec.project),
            ("nodeID", &spec.node_id),
        ];
        inner
            .cfg
            .log_templates
            .iter()
            .flat_map(|t| {
                t.template_uris.iter().map(|uri| TaskLog {
                    name: format!("{} (User)", t.display_name),
                    uri: render_log_uri(uri, &vars),
                    ..Default::default()
                })
            })
            .collect()
    }
}

/// Replaces `{{ .var }}` / `{{ $var }}` placeholders (case-insensitive, any spacing).
fn render_log_uri(uri: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        let name = inner.trim_start_matches(['.', '$']).trim();
        match vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
