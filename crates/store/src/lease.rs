//! Ownership of unfinished executions by controller replicas.
//!
//! Architecture Invariant: at most one replica owns an unfinished execution at a time,
//! through its lease row (owner, epoch, expiry). Every takeover raises the epoch, and a
//! round commits only while the committing replica still holds the epoch it started with
//! (fencing), so a replica that was paused past its lease cannot overwrite its successor.

use crate::{ExecKey, Result};

/// A lease a replica holds on one execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseGrant {
    pub key: ExecKey,
    /// Raised by every takeover; commits are conditional on it.
    pub epoch: i64,
}

/// Who may commit a round: the owner and the epoch of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

/// One live replica and how many executions it owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaRecord {
    pub id: String,
    /// "all", "api" or "controller".
    pub role: String,
    pub started_at: i64,
    /// The last heartbeat (unix nanoseconds).
    pub seen_at: i64,
    /// The replica counts as gone after this.
    pub expires_at: i64,
    /// Unexpired leases it holds.
    pub leases: u64,
}

/// The lease half of the storage port.
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes up to `limit` unfinished executions whose lease is missing or expired (and,
    /// with `adopt`, those `owner` itself held before a restart), raising each epoch.
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
        limit: u32,
        adopt: bool,
    ) -> Result<Vec<LeaseGrant>>;
    /// Takes one unfinished execution when its lease is missing, expired or `owner`'s
    /// own (re-taken at a higher epoch); its new epoch.
    fn claim_execution(
        &self,
        key: &ExecKey,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<i64>>;
    /// Extends every lease `owner` still holds (expired or not, as long as nobody took it
    /// over); returns them.
    fn renew_leases(&self, owner: &str, expires_at: i64) -> Result<Vec<LeaseGrant>>;
    /// Gives up `owner`'s leases (graceful shutdown) and leaves the replica list: others
    /// may take them at once, at a higher epoch.
    fn release_leases(&self, owner: &str) -> Result<()>;
    /// Records that a replica is alive until `expires_at`.
    fn heartbeat(&self, replica: &ReplicaRecord) -> Result<()>;
    /// Replicas whose heartbeat has not expired at `now`, with their unexpired leases.
    fn list_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>>;
    /// Asks every replica listening for wake-ups to look at `key` soon (a hint; a no-op
    /// where there is no cross-process channel).
    fn nudge(&self, _key: &ExecKey) -> Result<()> {
        Ok(())
    }
    /// Registers the receiver of cross-process wake-ups; false when the adapter has none
    /// (one process: wake-ups travel in memory).
    fn subscribe(&self, _on_wake: Box<dyn Fn(ExecKey) + Send + Sync>) -> bool {
        false
    }
}
