//! The controller's metrics, named in one place (the README lists them).
//!
//! Recording is cheap and infallible: with no recorder installed (tests, tools) every
//! call is a no-op.

use crate::queue::Queue;
use contrail_engine::{CacheOutcome, WorkflowPhase};
use std::time::Duration;

/// One round (observe, step, act, commit) took `took`.
pub(crate) fn round(took: Duration) {
    metrics::histogram!("contrail_round_duration_seconds").record(took.as_secs_f64());
}

/// One store commit of a round took `took`.
pub(crate) fn commit(took: Duration) {
    metrics::histogram!("contrail_store_commit_duration_seconds").record(took.as_secs_f64());
}

/// An execution entered `phase` (counted once per execution and phase by the round that
/// committed the change).
pub(crate) fn execution_entered(phase: WorkflowPhase) {
    let name = match phase {
        WorkflowPhase::Queued => "QUEUED",
        WorkflowPhase::Running => "RUNNING",
        WorkflowPhase::Succeeding => "SUCCEEDING",
        WorkflowPhase::Succeeded => "SUCCEEDED",
        WorkflowPhase::Failed => "FAILED",
        WorkflowPhase::Aborted => "ABORTED",
        WorkflowPhase::TimedOut => "TIMED_OUT",
    };
    metrics::counter!("contrail_executions_total", "phase" => name).increment(1);
}

/// A node's first attempt launched `after` its last upstream node ended.
pub(crate) fn edge_latency(after: Duration) {
    metrics::histogram!("contrail_edge_latency_seconds").record(after.as_secs_f64());
}

/// A cache lookup answered.
pub(crate) fn cache_lookup(outcome: &CacheOutcome) {
    let result = match outcome {
        CacheOutcome::Hit(_) => "hit",
        CacheOutcome::Miss(_) => "miss",
        CacheOutcome::Wait => "wait",
        CacheOutcome::Failed(_) => "error",
    };
    metrics::counter!("contrail_cache_lookups_total", "result" => result).increment(1);
}

/// Outputs were filed in the cache (`ok`), or could not be.
pub(crate) fn cache_put(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!("contrail_cache_puts_total", "result" => result).increment(1);
}

/// Sets the gauges read at scrape time.
pub(crate) fn gauges(queue: &Queue, owned: usize) {
    let (ready, timers) = queue.depth();
    metrics::gauge!("contrail_queue_depth").set(ready as f64);
    metrics::gauge!("contrail_queue_timers").set(timers as f64);
    metrics::gauge!("contrail_executions_owned").set(owned as f64);
}
