//! A pod's status as a task's, after Flyte's pod plugin (with Flyte's retry semantics: a
//! container killed for memory is the user's retryable failure; eviction, a node going
//! away and a pod deleted behind our back are the system's). Pure: the clock is a
//! parameter.

use contrail_engine::{Failure, TaskStatus};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// Where a pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum PodPhase {
    /// Not running yet: Queued (not scheduled) or Initializing (being prepared).
    Live(TaskStatus),
    /// The primary container ended by itself: judge it by what the task wrote.
    Exited,
    /// Kubernetes ended it; the failure stands unless the task wrote `error.pb`.
    Ended(Failure),
}

fn primary_status<'a>(pod: &'a Pod, primary: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == primary)
}

fn all_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
}

fn oom_killed(pod: &Pod) -> bool {
    all_statuses(pod).any(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            .is_some_and(|r| r.contains("OOMKilled"))
    })
}

/// How long ago the pod became what it is (its Ready condition's last transition, else
/// its creation), in seconds.
fn seconds_in_state(pod: &Pod, now: Timestamp) -> i64 {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    let since = ready.or(pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
    since.map_or(0, |t| now.as_second() - t.as_second())
}

/// The pod's phase. `primary` names the primary container; `grace` is how long
/// `ImagePullBackOff` is tolerated.
pub fn observe(pod: &Pod, primary: &str, now: Timestamp, grace_secs: u64) -> PodPhase {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let terminal = matches!(phase, "Succeeded" | "Failed");
    if pod.metadata.deletion_timestamp.is_some() && !terminal {
        return PodPhase::Ended(Failure::system(
            "UnexpectedObjectDeletion",
            "the task's pod is being deleted",
            true,
        ));
    }
    let image = || {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == primary))
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    match phase {
        "Pending" => {
            let scheduled = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
            if let Some(c) = scheduled.filter(|c| c.status == "False") {
                return PodPhase::Live(TaskStatus::Waiting {
                    reason: format!(
                        "{}: {}",
                        c.reason.as_deref().unwrap_or("Unschedulable"),
                        c.message.as_deref().unwrap_or("")
                    ),
                });
            }
            let waiting = all_statuses(pod)
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .find(|w| w.reason.is_some());
            let Some(w) = waiting else {
                return PodPhase::Live(TaskStatus::Queued);
            };
            let reason = w.reason.clone().unwrap_or_default();
            let message = w.message.clone().unwrap_or_default();
            match reason.as_str() {
                "ContainerCreating" | "PodInitializing" | "ErrImagePull" => {
                    PodPhase::Live(TaskStatus::Initializing { reason })
                }
                "ImagePullBackOff" => {
                    let waited = seconds_in_state(pod, now);
                    if waited > grace_secs as i64 {
                        PodPhase::Ended(Failure::user(
                            "ImagePullBackOff",
                            format!(
                                "Grace period [{grace_secs}s] exceeded: the image {} cannot be pulled: {message}",
                                image()
                            ),
                            true,
                        ))
                    } else {
                        PodPhase::Live(TaskStatus::Initializing { reason })
                    }
                }
                "CreateContainerConfigError" | "InvalidImageName" => PodPhase::Ended(
                    Failure::user(&reason, format!("{reason}: {message}"), false),
                ),
                "CreateContainerError" => {
                    if seconds_in_state(pod, now) > grace_secs as i64 {
                        PodPhase::Ended(Failure::user(&reason, message, false))
                    } else {
                        PodPhase::Live(TaskStatus::Initializing { reason })
                    }
                }
                _ => PodPhase::Ended(Failure::system(&reason, message, true)),
            }
        }
        "Succeeded" => {
            if oom_killed(pod) {
                PodPhase::Ended(oom())
            } else {
                PodPhase::Exited
            }
        }
        "Failed" => failed(pod, primary),
        // Running, or Unknown (the node stopped reporting): the primary container decides.
        _ => match primary_status(pod, primary)
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
        {
            None => PodPhase::Live(TaskStatus::Running { started_at: None }),
            Some(t) if t.reason.as_deref().is_some_and(|r| r.contains("OOMKilled")) => {
                PodPhase::Ended(oom())
            }
            Some(t) if t.exit_code == 0 => PodPhase::Exited,
            Some(t) if matches!(t.exit_code, 137 | 247) => PodPhase::Ended(Failure::system(
                "Interrupted",
                format!("the primary container was killed (exit {})", t.exit_code),
                true,
            )),
            Some(_) => PodPhase::Exited,
        },
    }
}

fn oom() -> Failure {
    Failure::user(
        "OOMKilled",
        "the task's container was killed for exceeding its memory limit (OOMKilled)",
        true,
    )
}

/// A failed pod: OOMKilled is the user's; eviction, node shutdown, a SIGKILLed primary and
/// an unexplained failure are the system's; a primary that exited non-zero is judged as a
/// process (`error.pb`, else the user's retryable `ContainerFailed`).
fn failed(pod: &Pod, primary: &str) -> PodPhase {
    if oom_killed(pod) {
        return PodPhase::Ended(oom());
    }
    let status = pod.status.as_ref();
    let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    let ended = primary_status(pod, primary).and_then(|c| c.state.as_ref()?.terminated.as_ref());
    let killed = ended.is_some_and(|t| matches!(t.exit_code, 137 | 247));
    // No reason and no exit of the primary: nothing says the task did it.
    let unexplained = reason.is_empty() && ended.is_none();
    let system = matches!(
        reason.as_str(),
        "Evicted"
            | "Preempting"
            | "Shutdown"
            | "Terminated"
            | "NodeShutdown"
            | "NodeAffinity"
            | "NodeLost"
    ) || killed
        || unexplained;
    if system {
        let code = if reason.is_empty() {
            "Interrupted"
        } else {
            &reason
        };
        return PodPhase::Ended(Failure::system(
            code,
            format!("the pod failed: {reason} {message}")
                .trim_end()
                .to_string(),
            true,
        ));
    }
    // The container exited non-zero: judge it by error.pb and the exit code.
    PodPhase::Exited
}

/// The primary container's exit code, if it terminated.
pub fn exit_code(pod: &Pod, primary: &str) -> Option<i32> {
    primary_status(pod, primary)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// When the pod ended (its last container's finish), for deleting finished pods.
pub fn finished_at(pod: &Pod) -> Option<Timestamp> {
    all_statuses(pod)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}
