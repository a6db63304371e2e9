//! The engine decides what happens next, and nothing else.
//!
//! [`step`] maps (compiled workflow [`Plan`], last committed [`ExecState`], this round's
//! [`Observation`]s, `now`) to a new state and a list of [`Effect`]s for the controller to
//! perform. It reads no clock, touches no file and spawns nothing, so the same inputs always
//! give the same outputs; that is what makes the controller level-triggered and testable.
//!
//! Architecture Invariant: effects are requests that are safe to repeat (deterministic
//! attempt ids, idempotent writes). A crash between performing an effect and committing the
//! state it came with only means the next round asks for it again. Effects that start work
//! ([`Effect::starts_work`]) are performed only after that commit, so a lost round starts
//! nothing; the committed attempt the executor does not know is started by the next round.

mod branch;
mod phase;
mod plan;
pub mod resolve;
mod state;
mod step;

pub use branch::evaluate as evaluate_condition;
pub use phase::{array_task_phase, item_phase, node_phase, task_phase, workflow_phase};
pub use plan::{
    ArraySpec, Branch, FailurePolicy, Gate, NodeKind, Plan, PlanError, PlanNode, Scope,
};
pub use state::{
    ArrayState, AttemptState, CacheState, CacheStatus, CatalogRef, DynamicPhase, ErrorKind,
    ExecState, Failure, Item, NodePhase, NodeState, TaskPhase, WorkflowPhase,
};
pub use step::{
    CacheOutcome, ChildStatus, Config, Effect, Observation, Step, TaskStatus, Watch, step, watches,
};

/// Nanoseconds since the Unix epoch, as handed in by the caller.
pub type Nanos = i64;

pub mod ids;
