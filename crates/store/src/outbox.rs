//! Table `notifications`: the outbox of execution notifications. A round that moves an
//! execution into a phase someone asked to be told about writes the messages in the same
//! transaction as the phase (`RoundCommit::notifications`); a delivery worker sends them
//! afterwards, at least once, retrying with backoff. Delivery never touches the execution.

use crate::{ExecKey, Result};

/// One message to send about one execution's phase change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationRecord {
    /// Unique per execution, phase and requested notification, so that writing it twice
    /// (a commit replayed) keeps one.
    pub id: String,
    pub exec: ExecKey,
    /// The execution phase it reports (`core.WorkflowExecution.Phase`).
    pub phase: i32,
    /// `email`, `slack` or `pagerduty`.
    pub channel: String,
    pub recipients: Vec<String>,
    pub created_at: i64,
    /// Failed deliveries so far.
    pub attempts: u32,
    pub last_error: String,
}

pub trait OutboxStore: Send + Sync + 'static {
    /// Up to `limit` undelivered messages due at `now`, oldest first, each claimed until
    /// `claim_until` (another worker skips it meanwhile; a crashed worker's claim lapses).
    fn claim_notifications(
        &self,
        now: i64,
        claim_until: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>>;
    /// The message was delivered.
    fn notification_sent(&self, id: &str, now: i64) -> Result<()>;
    /// Delivery failed: count it, keep the error, and try again at `retry_at`.
    fn notification_failed(&self, id: &str, retry_at: i64, error: &str) -> Result<()>;
    /// Every message of an execution, delivered or not, oldest first, with whether it was
    /// delivered (for operators and tests).
    fn list_notifications(&self, exec: &ExecKey) -> Result<Vec<(NotificationRecord, bool)>>;
}
