//! Core plugins: task types the controller runs itself, without an executor, as Flyte's
//! propeller does. Every other task type goes to the configured executor.

mod echo;

use echo::Echo;

use contrail_blob::BlobStore;
use contrail_engine::TaskStatus;
use contrail_executor::{AttemptSpec, Executor, Result};
use contrail_idl::core::TaskLog;
use std::sync::Arc;

/// Routes each attempt to a core plugin by task type, or to the executor.
pub(crate) struct Plugins {
    executor: Arc<dyn Executor>,
    echo: Echo,
}

impl Plugins {
    pub(crate) fn new(executor: Arc<dyn Executor>, blob: BlobStore) -> Self {
        Plugins {
            executor,
            echo: Echo::new(blob),
        }
    }

    fn pick(&self, spec: &AttemptSpec) -> &dyn Executor {
        match spec.task.r#type.as_str() {
            echo::TASK_TYPE => &self.echo,
            _ => self.executor.as_ref(),
        }
    }
}

impl Executor for Plugins {
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        self.pick(spec).launch(spec, on_change)
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        self.pick(spec).status(spec)
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        self.pick(spec).abort(spec)
    }

    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog> {
        self.pick(spec).logs(spec)
    }
}
