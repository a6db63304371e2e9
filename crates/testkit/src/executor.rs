//! An executor whose attempts the test moves: started, finished (with outputs written to
//! the blob store, as a task writes them), vanished, finished twice or reported late. It
//! also keeps the evidence the simulator's invariants need: every start of every attempt
//! and whether a run of an attempt id started while an earlier run of it was alive.

use crate::lock;
use contrail_blob::BlobStore;
use contrail_engine::TaskStatus;
use contrail_executor::{AttemptSpec, Executor, Result};
use contrail_idl::core::{LiteralMap, TaskLog};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Where one run of an attempt stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Finished(TaskStatus),
}

/// One attempt id as the executor knows it.
#[derive(Debug, Clone)]
pub struct AttemptRun {
    pub spec: AttemptSpec,
    pub state: RunState,
    /// How many times a run of this id was started (again after it vanished).
    pub starts: u32,
    /// Vanished: the executor knows nothing of it until it is launched again.
    pub gone: bool,
    /// Status reads that still say `Running` after the run finished.
    pub late: u32,
    pub aborted: bool,
}

impl AttemptRun {
    pub fn alive(&self) -> bool {
        !self.gone && !matches!(self.state, RunState::Finished(_))
    }
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<String, AttemptRun>,
    /// (execution, node id, array item) of every attempt that succeeded.
    succeeded: BTreeMap<(String, String, Option<u32>), String>,
    /// Broken promises, in words: a start while a run of the same id was alive, a new
    /// attempt of something that had succeeded.
    violations: Vec<String>,
    launches: u64,
    /// Launch requests still to be refused, as if the process died before making them.
    refuse_launches: u32,
}

/// The executor double.
pub struct FakeExecutor {
    inner: Mutex<Inner>,
    blob: BlobStore,
}

/// The array item an attempt runs, read from its output directory (`<node>/data/<attempt>`
/// for a node, `<node>/data/0/<item>/<attempt>` for an item; see `blob::layout`).
pub fn item_of(spec: &AttemptSpec) -> Option<u32> {
    let prefix = spec.paths.output_prefix.trim_end_matches('/');
    let (_, rest) = prefix.rsplit_once("/data/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [_, item, _] => item.parse().ok(),
        _ => None,
    }
}

impl FakeExecutor {
    pub fn new(blob: BlobStore) -> Self {
        FakeExecutor {
            inner: Mutex::default(),
            blob,
        }
    }

    /// Attempts the executor knows, by id.
    pub fn runs(&self) -> BTreeMap<String, AttemptRun> {
        lock(&self.inner).runs.clone()
    }

    /// Ids of the runs alive now (queued or running).
    pub fn alive(&self) -> Vec<String> {
        lock(&self.inner)
            .runs
            .iter()
            .filter(|(_, r)| r.alive())
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner).violations.clone()
    }

    /// Launch requests received (repeats included).
    pub fn launches(&self) -> u64 {
        lock(&self.inner).launches
    }

    /// The next `n` launch requests fail and start nothing: the process died between its
    /// commit and the launch.
    pub fn refuse_next_launches(&self, n: u32) {
        lock(&self.inner).refuse_launches = n;
    }

    /// The run starts executing.
    pub fn start(&self, id: &str) {
        if let Some(r) = lock(&self.inner).runs.get_mut(id)
            && r.alive()
            && r.state == RunState::Queued
        {
            r.state = RunState::Running;
        }
    }

    /// The run ends: with `Succeeded`, `outputs` are written where the task writes them
    /// first (an attempt that succeeded left its outputs behind).
    pub fn finish(&self, id: &str, status: TaskStatus, outputs: Option<&LiteralMap>) {
        let spec = {
            let inner = lock(&self.inner);
            match inner.runs.get(id) {
                Some(r) if r.alive() => r.spec.clone(),
                _ => return,
            }
        };
        if status == TaskStatus::Succeeded {
            let bytes = outputs.cloned().unwrap_or_default().encode_to_vec();
            let prefix = spec.paths.output_prefix.trim_end_matches('/');
            let written = self
                .blob
                .key_of(&format!("{prefix}/outputs.pb"))
                .map(str::to_string)
                .and_then(|key| self.blob.put(&key, &bytes));
            if written.is_err() {
                // The task could not write its outputs: it failed, as a task would.
                return self.finish(
                    id,
                    TaskStatus::Failed(contrail_engine::Failure::system(
                        "OutputsWriteFailed",
                        "the task could not write its outputs",
                        true,
                    )),
                    None,
                );
            }
        }
        let mut inner = lock(&self.inner);
        if status == TaskStatus::Succeeded {
            let who = (spec.execution.clone(), spec.node_id.clone(), item_of(&spec));
            inner.succeeded.insert(who, id.to_string());
        }
        if let Some(r) = inner.runs.get_mut(id) {
            r.state = RunState::Finished(status);
        }
    }

    /// The next `reads` status reads of a finished run still say `Running`.
    pub fn report_late(&self, id: &str, reads: u32) {
        if let Some(r) = lock(&self.inner).runs.get_mut(id) {
            r.late = reads;
        }
    }

    /// The run is gone, as when its attempt directory is deleted and its process is dead:
    /// a live run dies without a record, and the executor knows nothing of the id until
    /// it is launched again. A run that succeeded left its outputs, so it is still known
    /// as succeeded.
    pub fn vanish(&self, id: &str) {
        if let Some(r) = lock(&self.inner).runs.get_mut(id)
            && r.state != RunState::Finished(TaskStatus::Succeeded)
        {
            r.gone = true;
        }
    }
}

impl Executor for FakeExecutor {
    fn launch(&self, spec: &AttemptSpec, _on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let mut inner = lock(&self.inner);
        if inner.refuse_launches > 0 {
            inner.refuse_launches -= 1;
            return Err(contrail_executor::Error::Io(
                "the launch never happened".into(),
            ));
        }
        inner.launches += 1;
        if inner.runs.get(&spec.id).is_some_and(|r| !r.gone) {
            return Ok(()); // idempotent: this id exists
        }
        let who = (spec.execution.clone(), spec.node_id.clone(), item_of(spec));
        if let Some(done) = inner.succeeded.get(&who) {
            let msg = format!(
                "{} started although attempt {done} of the same node succeeded",
                spec.id
            );
            inner.violations.push(msg);
        }
        let starts = inner.runs.get(&spec.id).map_or(0, |r| r.starts) + 1;
        inner.runs.insert(
            spec.id.clone(),
            AttemptRun {
                spec: spec.clone(),
                state: RunState::Queued,
                starts,
                gone: false,
                late: 0,
                aborted: false,
            },
        );
        Ok(())
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        let mut inner = lock(&self.inner);
        let Some(r) = inner.runs.get_mut(&spec.id).filter(|r| !r.gone) else {
            return Ok(TaskStatus::Unknown);
        };
        Ok(match &r.state {
            RunState::Queued => TaskStatus::Queued,
            RunState::Running => TaskStatus::Running { started_at: None },
            RunState::Finished(_) if r.late > 0 => {
                r.late -= 1;
                TaskStatus::Running { started_at: None }
            }
            RunState::Finished(s) => s.clone(),
        })
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        if let Some(r) = lock(&self.inner).runs.get_mut(&spec.id)
            && r.alive()
        {
            r.aborted = true;
            r.state = RunState::Finished(TaskStatus::Failed(contrail_engine::Failure::system(
                "Aborted",
                "attempt was aborted",
                false,
            )));
        }
        Ok(())
    }

    fn logs(&self, _spec: &AttemptSpec) -> Vec<TaskLog> {
        Vec::new()
    }
}
