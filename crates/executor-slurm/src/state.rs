//! Slurm job states as task states, with Flyte's retry semantics: the task's own failures
//! (a non-zero exit, running out of memory or time) are the user's and count against the
//! task's retries; the cluster's (a node failing, preemption, a job cancelled behind our
//! back) are the system's. Pure.

use contrail_engine::{Failure, TaskStatus};

/// A job as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub state: String,
    pub reason: String,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not started yet (pending, configuring, held).
    Waiting,
    Running,
    /// Ended on its own: the outcome comes from what the task wrote, as for a process
    /// that exited with this code (the batch script's own exit code).
    Exited,
    /// Ended by Slurm: this is the outcome, unless the task wrote `error.pb` first.
    Ended(Failure),
}

pub fn phase(job: &Job) -> Phase {
    let reason = || {
        if job.reason.is_empty() || job.reason == "None" {
            String::new()
        } else {
            format!(" (reason: {})", job.reason)
        }
    };
    match job.state.as_str() {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
        | "RESV_DEL_HOLD" | "SUSPENDED" | "STOPPED" | "RESIZING" => Phase::Waiting,
        "RUNNING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" => Phase::Running,
        "COMPLETED" | "FAILED" => Phase::Exited,
        "OUT_OF_MEMORY" => Phase::Ended(Failure::user(
            "OOMKilled",
            format!(
                "Slurm job {} ran out of memory (OUT_OF_MEMORY): the task used more than its memory limit",
                job.id
            ),
            true,
        )),
        "TIMEOUT" => Phase::Ended(Failure::user(
            "Timeout",
            format!("Slurm job {} reached its time limit (TIMEOUT)", job.id),
            true,
        )),
        "DEADLINE" => Phase::Ended(Failure::user(
            "Deadline",
            format!("Slurm job {} missed its deadline (DEADLINE)", job.id),
            false,
        )),
        "NODE_FAIL" => Phase::Ended(Failure::system(
            "NodeFailure",
            format!(
                "the node running Slurm job {} failed (NODE_FAIL){}",
                job.id,
                reason()
            ),
            true,
        )),
        "PREEMPTED" => Phase::Ended(Failure::system(
            "Preempted",
            format!("Slurm job {} was preempted (PREEMPTED)", job.id),
            true,
        )),
        "BOOT_FAIL" => Phase::Ended(Failure::system(
            "BootFailure",
            format!("Slurm could not boot a node for job {} (BOOT_FAIL)", job.id),
            true,
        )),
        "CANCELLED" => Phase::Ended(Failure::system(
            "ResourceDeletedExternally",
            format!(
                "Slurm job {} was cancelled outside Contrail{}",
                job.id,
                reason()
            ),
            true,
        )),
        other => Phase::Ended(Failure::system(
            "UnknownJobState",
            format!("Slurm job {} ended in state {other}{}", job.id, reason()),
            true,
        )),
    }
}

/// Whether a state is final.
pub fn finished(state: &str) -> bool {
    matches!(
        phase(&Job {
            id: 0,
            state: state.to_string(),
            reason: String::new()
        }),
        Phase::Exited | Phase::Ended(_)
    )
}

/// What the engine sees of a job that has not ended.
pub fn live_status(phase: &Phase) -> Option<TaskStatus> {
    match phase {
        Phase::Waiting => Some(TaskStatus::Queued),
        Phase::Running => Some(TaskStatus::Running { started_at: None }),
        _ => None,
    }
}

/// One `squeue -o '%i|%T|%r|%j'` line: id, state, reason, name (last: it may hold `|`).
pub fn parse_line(line: &str) -> Option<(String, Job)> {
    let mut parts = line.trim().splitn(4, '|');
    let id = parts.next()?.trim().parse().ok()?;
    let state = parts.next()?.trim().to_string();
    let reason = parts.next()?.trim().to_string();
    let name = parts.next()?.trim().to_string();
    Some((name, Job { id, state, reason }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_engine::ErrorKind;

    fn job(state: &str) -> Job {
        Job {
            id: 7,
            state: state.into(),
            reason: "None".into(),
        }
    }

    #[test]
    fn states_map_with_flyte_retry_semantics() {
        assert_eq!(phase(&job("PENDING")), Phase::Waiting);
        assert_eq!(phase(&job("RUNNING")), Phase::Running);
        assert_eq!(phase(&job("COMPLETING")), Phase::Running);
        assert_eq!(phase(&job("COMPLETED")), Phase::Exited);
        assert_eq!(phase(&job("FAILED")), Phase::Exited);
        let ended = |s: &str| match phase(&job(s)) {
            Phase::Ended(f) => (f.kind, f.recoverable, f.code),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            ended("OUT_OF_MEMORY"),
            (ErrorKind::User, true, "OOMKilled".into())
        );
        assert_eq!(ended("TIMEOUT"), (ErrorKind::User, true, "Timeout".into()));
        assert_eq!(
            ended("NODE_FAIL"),
            (ErrorKind::System, true, "NodeFailure".into())
        );
        assert_eq!(
            ended("PREEMPTED"),
            (ErrorKind::System, true, "Preempted".into())
        );
        assert_eq!(ended("BOOT_FAIL").0, ErrorKind::System);
        assert_eq!(ended("CANCELLED").0, ErrorKind::System);
        assert_eq!(
            ended("DEADLINE"),
            (ErrorKind::User, false, "Deadline".into())
        );
        assert!(finished("OUT_OF_MEMORY") && finished("COMPLETED") && !finished("PENDING"));
    }

    #[test]
    fn squeue_lines() {
        assert_eq!(
            parse_line("12|OUT_OF_MEMORY|OutOfMemory|abc-n0-0\n"),
            Some((
                "abc-n0-0".into(),
                Job {
                    id: 12,
                    state: "OUT_OF_MEMORY".into(),
                    reason: "OutOfMemory".into()
                }
            ))
        );
        assert_eq!(parse_line("x|RUNNING|None|a"), None);
        assert_eq!(parse_line("3|RUNNING"), None);
    }
}
