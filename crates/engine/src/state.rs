//! The engine's snapshot of one execution, persisted by the controller between rounds.

use crate::Nanos;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum WorkflowPhase {
    /// Created by the API; no round has run yet.
    #[default]
    Queued,
    Running,
    /// Every node is done; the workflow's outputs are being published.
    Succeeding,
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
}

impl WorkflowPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::TimedOut
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodePhase {
    #[default]
    NotYetStarted,
    /// The current attempt was handed to the executor.
    Queued,
    Running,
    /// The last attempt failed and another one starts at `retry_at`.
    RetryWait,
    Succeeded,
    Failed,
    Skipped,
    TimedOut,
    Aborted,
}

impl NodePhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::TimedOut | Self::Aborted
        )
    }
    /// Holds a parallelism slot.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::RetryWait)
    }
    fn blocks_downstream(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Skipped | Self::TimedOut | Self::Aborted
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TaskPhase {
    #[default]
    Queued,
    WaitingForResources,
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl TaskPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Aborted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    User,
    System,
}

/// A failure as data: what the user sees in `ExecutionError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
    /// Whether another attempt may help (RECOVERABLE user errors, most system errors).
    pub recoverable: bool,
}

impl Failure {
    pub fn system(code: &str, message: impl Into<String>, recoverable: bool) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            kind: ErrorKind::System,
            recoverable,
        }
    }
    pub fn user(code: &str, message: impl Into<String>, recoverable: bool) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            kind: ErrorKind::User,
            recoverable,
        }
    }
}

/// The current attempt of a task node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptState {
    pub attempt: u32,
    pub phase: TaskPhase,
    pub created_at: Nanos,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub error: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeState {
    pub phase: NodePhase,
    /// Current attempt number (0-based, Flyte's `retry_attempt`).
    pub attempt: u32,
    pub user_failures: u32,
    pub system_failures: u32,
    pub queued_at: Option<Nanos>,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub retry_at: Option<Nanos>,
    pub error: Option<Failure>,
    pub task: Option<AttemptState>,
}

impl NodeState {
    pub(crate) fn blocks_downstream(&self) -> bool {
        self.phase.blocks_downstream()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecState {
    pub phase: WorkflowPhase,
    pub started_at: Option<Nanos>,
    pub finished_at: Option<Nanos>,
    pub error: Option<Failure>,
    pub abort_cause: Option<String>,
    /// One entry per plan node, in plan order. Not part of the header encoding: the
    /// controller stores each node's state with that node (see `NodeState::encode`), so a
    /// round writes only what changed.
    #[serde(skip)]
    pub nodes: Vec<NodeState>,
}

impl ExecState {
    /// The state of a fresh execution of a plan with `n` nodes.
    pub fn new(n: usize) -> Self {
        ExecState {
            nodes: vec![NodeState::default(); n],
            ..Default::default()
        }
    }

    /// (node, attempt) of every task attempt the executor should be asked about.
    pub fn live_attempts(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            (n.task.is_some() && matches!(n.phase, NodePhase::Queued | NodePhase::Running))
                .then_some((i, n.attempt))
        })
    }

    /// The execution-level part (everything but `nodes`).
    pub fn encode_header(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Rebuilds a state from its header and the encoded states of some nodes (by plan
    /// index); nodes without one have not started.
    pub fn decode(
        header: &[u8],
        n: usize,
        nodes: impl IntoIterator<Item = (usize, Vec<u8>)>,
    ) -> Result<Self, serde_json::Error> {
        let mut s: ExecState = if header.is_empty() {
            ExecState::default()
        } else {
            serde_json::from_slice(header)?
        };
        s.nodes = vec![NodeState::default(); n];
        for (i, bytes) in nodes {
            if let Some(slot) = s.nodes.get_mut(i) {
                *slot = serde_json::from_slice(&bytes)?;
            }
        }
        Ok(s)
    }
}

impl NodeState {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
