//! The one place internal phases become flyteidl phases.

use crate::{Item, NodePhase, TaskPhase, WorkflowPhase};
use contrail_idl::core::{node_execution, task_execution, workflow_execution};

pub fn workflow_phase(p: WorkflowPhase, aborting: bool) -> workflow_execution::Phase {
    use workflow_execution::Phase as P;
    match p {
        _ if aborting && !p.is_terminal() => P::Aborting,
        WorkflowPhase::Queued => P::Queued,
        WorkflowPhase::Running => P::Running,
        WorkflowPhase::Succeeding => P::Succeeding,
        WorkflowPhase::Succeeded => P::Succeeded,
        WorkflowPhase::Failed => P::Failed,
        WorkflowPhase::Aborted => P::Aborted,
        WorkflowPhase::TimedOut => P::TimedOut,
    }
}

pub fn node_phase(p: NodePhase) -> node_execution::Phase {
    use node_execution::Phase as P;
    match p {
        NodePhase::NotYetStarted => P::Undefined,
        NodePhase::Queued => P::Queued,
        // A node between attempts is still running from the user's point of view.
        NodePhase::Running | NodePhase::RetryWait => P::Running,
        NodePhase::Succeeded => P::Succeeded,
        NodePhase::Failed => P::Failed,
        NodePhase::Skipped => P::Skipped,
        NodePhase::TimedOut => P::TimedOut,
        NodePhase::Aborted => P::Aborted,
        NodePhase::Recovered => P::Recovered,
    }
}

pub fn task_phase(p: TaskPhase) -> task_execution::Phase {
    use task_execution::Phase as P;
    match p {
        TaskPhase::Queued => P::Queued,
        TaskPhase::WaitingForResources => P::WaitingForResources,
        TaskPhase::Initializing => P::Initializing,
        TaskPhase::Running => P::Running,
        TaskPhase::Succeeded => P::Succeeded,
        // A failed attempt is FAILED even when a retry follows: FlyteRemote treats
        // RETRYABLE_FAILED as not done.
        TaskPhase::Failed => P::Failed,
        TaskPhase::Aborted => P::Aborted,
    }
}

/// The TaskExecution phase of one array item (an `external_resources` entry).
pub fn item_phase(p: Item) -> task_execution::Phase {
    use task_execution::Phase as P;
    match p {
        Item::NotStarted | Item::Lookup => P::Undefined,
        // Between attempts the item waits for its next one.
        Item::Queued | Item::RetryWait => P::Queued,
        Item::Running => P::Running,
        Item::Succeeded | Item::Filing => P::Succeeded,
        Item::Failed => P::Failed,
        Item::Aborted => P::Aborted,
    }
}

/// The phase of the one TaskExecution Flyte 1 reports for an array node over a task.
pub fn array_task_phase(p: NodePhase) -> task_execution::Phase {
    use task_execution::Phase as P;
    match p {
        NodePhase::NotYetStarted | NodePhase::Queued => P::Queued,
        NodePhase::Running | NodePhase::RetryWait => P::Running,
        NodePhase::Succeeded | NodePhase::Recovered => P::Succeeded,
        NodePhase::Failed | NodePhase::TimedOut => P::Failed,
        NodePhase::Aborted | NodePhase::Skipped => P::Aborted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_map_to_flyteidl_numbers() {
        let wf = [
            (WorkflowPhase::Queued, 1),
            (WorkflowPhase::Running, 2),
            (WorkflowPhase::Succeeding, 3),
            (WorkflowPhase::Succeeded, 4),
            (WorkflowPhase::Failed, 6),
            (WorkflowPhase::Aborted, 7),
            (WorkflowPhase::TimedOut, 8),
        ];
        for (p, n) in wf {
            assert_eq!(workflow_phase(p, false) as i32, n, "{p:?}");
        }
        assert_eq!(workflow_phase(WorkflowPhase::Running, true) as i32, 9);
        assert_eq!(workflow_phase(WorkflowPhase::Succeeded, true) as i32, 4);
        let nodes = [
            (NodePhase::Queued, 1),
            (NodePhase::Running, 2),
            (NodePhase::RetryWait, 2),
            (NodePhase::Succeeded, 3),
            (NodePhase::Failed, 5),
            (NodePhase::Aborted, 6),
            (NodePhase::Skipped, 7),
            (NodePhase::TimedOut, 8),
        ];
        for (p, n) in nodes {
            assert_eq!(node_phase(p) as i32, n, "{p:?}");
        }
        let tasks = [
            (TaskPhase::Queued, 1),
            (TaskPhase::Running, 2),
            (TaskPhase::Succeeded, 3),
            (TaskPhase::Aborted, 4),
            (TaskPhase::Failed, 5),
            (TaskPhase::WaitingForResources, 7),
            (TaskPhase::Initializing, 6),
        ];
        for (p, n) in tasks {
            assert_eq!(task_phase(p) as i32, n, "{p:?}");
        }
    }
}
