//! In-memory doubles of the controller's ports, each with the faults a real one can show:
//! [`MemStore`] (commit conflicts, failed and unacknowledged commits), [`MemObjects`]
//! (failed and torn writes) and [`FakeExecutor`] (attempts the test finishes, that vanish,
//! finish twice or report late). Deterministic: nothing here reads a clock or a random
//! source; the test decides every fault.

mod executor;
mod objects;
mod store;

pub use executor::{AttemptRun, FakeExecutor, RunState, item_of};
pub use objects::MemObjects;
pub use store::{CommitFault, MemStore};

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
