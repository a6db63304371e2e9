//! The controller's narrow view of the store: one trait per group of tables a round
//! touches, as restate's partition store is split, so that a test double implements what
//! the controller uses and nothing else, and a handler's signature says which tables it
//! reads and writes.
//!
//! The wider traits the API uses extend these: [`ExecutionStore`](crate::ExecutionStore)
//! is a [`RoundStore`] and a [`SignalStore`], [`CatalogStore`](crate::CatalogStore) a
//! [`MemoStore`]; so every full adapter is a [`ControllerStore`].

use crate::{
    AbortOutcome, ArtifactRecord, ArtifactUse, CatalogKey, CommitOutcome, EntityKey, EntityKind,
    EntityRecord, ExecHead, ExecKey, ExecutionRecord, LeaseStore, NodeRecord, Result, RoundCommit,
    SignalRecord, TaskRecord,
};

/// Tables `executions`, `node_executions`, `task_executions` and `events`: what a round
/// loads and the one atomic commit that writes them.
pub trait RoundStore: Send + Sync + 'static {
    /// The execution row without its workflow closure.
    fn get_execution(&self, key: &ExecKey) -> Result<Option<ExecutionRecord>>;
    fn get_execution_head(&self, key: &ExecKey) -> Result<Option<ExecHead>>;
    fn get_workflow_closure(&self, key: &ExecKey) -> Result<Option<Vec<u8>>>;
    /// (node id, engine state) of every node row of the execution.
    fn list_node_states(&self, key: &ExecKey) -> Result<Vec<(String, Vec<u8>)>>;
    fn get_node_execution(&self, key: &ExecKey, node_id: &str) -> Result<Option<NodeRecord>>;
    fn get_task_execution(
        &self,
        key: &ExecKey,
        node_id: &str,
        attempt: u32,
    ) -> Result<Option<TaskRecord>>;
    /// Records a termination request unless one exists or the execution is terminal.
    /// None when the execution does not exist.
    fn request_abort(&self, key: &ExecKey, cause: &str, now: i64) -> Result<Option<AbortOutcome>>;
    /// Applies a round atomically when the revision matches and, with a fence, while its
    /// owner holds that epoch (checked under a lock on the lease row). A terminal phase
    /// also drops the lease.
    fn commit_round(&self, c: &RoundCommit) -> Result<CommitOutcome>;
}

/// Table `signals`: the gates' signals.
pub trait SignalStore: Send + Sync + 'static {
    /// The signal a gate waits for, created (with its type) if it does not exist yet.
    fn get_or_create_signal(
        &self,
        key: &ExecKey,
        signal_id: &str,
        ty: &[u8],
        now: i64,
    ) -> Result<SignalRecord>;
    fn get_signal(&self, key: &ExecKey, signal_id: &str) -> Result<Option<SignalRecord>>;
}

/// Table `entities`: the registry, read to type-check what a dynamic node launches.
pub trait RegistryStore: Send + Sync + 'static {
    fn get_entity(&self, kind: EntityKind, key: &EntityKey) -> Result<Option<EntityRecord>>;
}

/// Tables `artifacts`, `artifact_uses` and `reservations`: memoization.
pub trait MemoStore: Send + Sync + 'static {
    fn get_artifact(&self, key: &CatalogKey) -> Result<Option<ArtifactRecord>>;
    /// Files an artifact under its key. The first writer wins unless `overwrite`; returns
    /// whether this record is now the one filed.
    fn put_artifact(&self, rec: &ArtifactRecord, overwrite: bool) -> Result<bool>;
    fn record_use(&self, u: &ArtifactUse) -> Result<()>;
    /// Takes the reservation of `key` for `owner` (or extends it) until `expires_at` when
    /// it is free, expired or already `owner`'s; returns the holder afterwards.
    fn reserve(&self, key: &CatalogKey, owner: &str, now: i64, expires_at: i64) -> Result<String>;
    fn release(&self, key: &CatalogKey, owner: &str) -> Result<()>;
}

/// Everything the controller needs of the store.
pub trait ControllerStore:
    RoundStore + SignalStore + MemoStore + LeaseStore + RegistryStore
{
}

impl<T: RoundStore + SignalStore + MemoStore + LeaseStore + RegistryStore + ?Sized> ControllerStore
    for T
{
}
