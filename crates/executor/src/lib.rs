//! The executor port. A plugin runs task attempts somewhere (local processes, Slurm, K8s)
//! and follows Flyte's plugin lifecycle: `launch` is idempotent and returns at once,
//! `status` observes without side effects on the task, `abort` stops it and releases what
//! it held, `logs` names where its output can be read. **API Boundary** between the
//! controller and every executor.
//!
//! Also here, because every plugin needs them and they are pure: container template
//! rendering ([`template`]) and the rules that turn files and exit codes into an outcome
//! ([`outcome`]).

pub mod env;
pub mod outcome;
pub mod resources;
pub mod routing;
pub mod template;

use contrail_engine::TaskStatus;
use contrail_idl::core::{LiteralMap, TaskLog, TaskTemplate};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin could not do its job now (disk, process table); the round is retried.
    #[error("executor: {0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Io`] from anything displayable (`.map_err(io)`).
pub fn io(e: impl std::fmt::Display) -> Error {
    Error::Io(e.to_string())
}

/// Locks a mutex; a panic elsewhere while holding it leaves plain data behind (a plugin's
/// bookkeeping), safe to reuse.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where an attempt's files go. URIs as the blob store names them (`s3://bucket/key`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttemptPaths {
    /// The node's `inputs.pb`.
    pub inputs: String,
    /// The attempt's output directory (`outputs.pb`, `error.pb`, `futures.pb`, `deck.html`).
    pub output_prefix: String,
    /// Sharded raw-output prefix for user data (files, dataframes).
    pub raw_output_prefix: String,
    pub checkpoint_prefix: String,
    /// The previous attempt's checkpoint prefix, if there was a previous attempt.
    pub prev_checkpoint_prefix: Option<String>,
}

/// Everything a plugin needs to run one attempt of one task node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttemptSpec {
    /// Deterministic and unique per (execution, node, attempt); names the attempt everywhere.
    pub id: String,
    pub project: String,
    pub domain: String,
    pub execution: String,
    pub workflow: String,
    pub launch_plan: String,
    pub node_id: String,
    pub attempt: u32,
    pub task: TaskTemplate,
    pub paths: AttemptPaths,
    /// The resolved inputs (for `{{.Inputs.x}}` and raw containers).
    pub inputs: LiteralMap,
    /// `ExecutionSpec.envs`.
    pub envs: Vec<(String, String)>,
    /// `ExecutionSpec.execution_cluster_label`: names the executor that runs the attempt
    /// (empty: the routing rules decide).
    pub cluster_label: String,
    /// `ExecutionSpec.labels` and `annotations` (Kubernetes objects carry them).
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// `security_context.run_as.k8s_service_account` (else the legacy auth role's).
    pub service_account: String,
    /// Whether this attempt may run on interruptible (spot, preemptible) capacity.
    pub interruptible: bool,
}

/// An executor plugin. Calls must be cheap; the controller makes them inside rounds.
pub trait Executor: Send + Sync + 'static {
    /// Starts the attempt unless it exists already (then does nothing and succeeds).
    /// `on_change` may be called (from any thread) when the attempt's status changes; it is
    /// only a hint to look again.
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()>;
    /// What the attempt looks like now. `Unknown` when it was never launched or is lost.
    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus>;
    /// Stops the attempt and everything it started. Idempotent.
    fn abort(&self, spec: &AttemptSpec) -> Result<()>;
    /// Logs to show for the attempt.
    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog>;
}

/// The task's container, if it is a container task.
pub fn container(t: &TaskTemplate) -> Option<&contrail_idl::core::Container> {
    match &t.target {
        Some(contrail_idl::core::task_template::Target::Container(c)) => Some(c),
        _ => None,
    }
}
