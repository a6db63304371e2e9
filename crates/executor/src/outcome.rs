//! How a finished process becomes a task outcome (flytekit's contract): `error.pb` wins
//! over everything, a clean exit needs `outputs.pb`, and a failed exit without `error.pb`
//! is a container failure the backend describes itself.

use contrail_engine::{Failure, TaskStatus};
use contrail_idl::core::{ErrorDocument, container_error};

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The process is gone and nobody recorded how it ended.
    Lost,
}

/// What the attempt left behind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Leftovers {
    pub error_doc: Option<ErrorDocument>,
    pub outputs_written: bool,
    pub futures_written: bool,
    /// The task declares no outputs (an absent outputs.pb is then fine).
    pub no_outputs_declared: bool,
    /// The last lines of stderr, for messages about container failures.
    pub stderr_tail: String,
    /// The attempt was aborted on purpose.
    pub aborted: bool,
}

/// Reads what an attempt left in the blob store (`error.pb`, `outputs.pb`, `futures.pb`
/// under its output prefix); the caller adds what only it knows.
pub fn read_leftovers(
    blob: &contrail_blob::BlobStore,
    spec: &crate::AttemptSpec,
    stderr_tail: String,
    aborted: bool,
) -> crate::Result<Leftovers> {
    use prost::Message;
    let io = |e: contrail_blob::Error| crate::Error::Io(e.to_string());
    let out = blob
        .key_of(&spec.paths.output_prefix)
        .map_err(io)?
        .trim_end_matches('/')
        .to_string();
    let written = |name: &str| blob.exists(&format!("{out}/{name}")).map_err(io);
    let error_doc = match blob.get(&format!("{out}/error.pb")) {
        Ok(b) => Some(
            ErrorDocument::decode(b.as_slice())
                .map_err(|e| crate::Error::Io(format!("error.pb of {}: {e}", spec.id)))?,
        ),
        Err(contrail_blob::Error::NotFound(_)) => None,
        Err(e) => return Err(io(e)),
    };
    Ok(Leftovers {
        error_doc,
        outputs_written: written("outputs.pb")?,
        futures_written: written("futures.pb")?,
        no_outputs_declared: spec
            .task
            .interface
            .as_ref()
            .and_then(|i| i.outputs.as_ref())
            .is_none_or(|o| o.variables.is_empty()),
        stderr_tail,
        aborted,
    })
}

/// The last 4 KiB of a task's standard error, trimmed.
pub fn tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(4096);
    String::from_utf8_lossy(&stderr[start..]).trim().to_string()
}

pub fn decide(exit: &Exit, left: &Leftovers) -> TaskStatus {
    if let Some(doc) = &left.error_doc {
        let e = doc.error.clone().unwrap_or_default();
        let recoverable = e.kind == container_error::Kind::Recoverable as i32;
        let f = if e.origin == 2 {
            Failure::system(&e.code, e.message, recoverable)
        } else {
            Failure::user(&e.code, e.message, recoverable)
        };
        return TaskStatus::Failed(f);
    }
    let tail = if left.stderr_tail.is_empty() {
        String::new()
    } else {
        format!("\n{}", left.stderr_tail)
    };
    match exit {
        _ if left.aborted => {
            TaskStatus::Failed(Failure::system("Aborted", "attempt was aborted", false))
        }
        Exit::Code(0) | Exit::Lost if left.futures_written => TaskStatus::Dynamic,
        Exit::Code(0) | Exit::Lost if left.outputs_written => TaskStatus::Succeeded,
        Exit::Code(0) if left.no_outputs_declared => TaskStatus::Succeeded,
        Exit::Code(0) => TaskStatus::Failed(Failure::user(
            "OutputsNotFound",
            format!("the task exited 0 but wrote no outputs.pb{tail}"),
            true,
        )),
        Exit::Code(c) => TaskStatus::Failed(Failure::user(
            "ContainerFailed",
            format!("the task exited with code {c} and wrote no error.pb{tail}"),
            true,
        )),
        Exit::Signal(s) => TaskStatus::Failed(Failure::system(
            "Interrupted",
            format!("the task was killed by signal {s}{tail}"),
            true,
        )),
        Exit::Lost => TaskStatus::Failed(Failure::system(
            "SupervisorLost",
            "the task's supervisor disappeared before recording how the task ended",
            true,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_engine::ErrorKind;
    use contrail_idl::core::ContainerError;

    fn doc(kind: container_error::Kind, origin: i32) -> Option<ErrorDocument> {
        Some(ErrorDocument {
            error: Some(ContainerError {
                code: "USER:Recoverable".into(),
                message: "boom".into(),
                kind: kind as i32,
                origin,
                ..Default::default()
            }),
        })
    }

    #[test]
    fn error_pb_beats_exit_code_and_outputs() {
        let left = Leftovers {
            error_doc: doc(container_error::Kind::Recoverable, 1),
            outputs_written: true,
            ..Default::default()
        };
        let TaskStatus::Failed(f) = decide(&Exit::Code(0), &left) else {
            panic!("expected failure")
        };
        assert_eq!(
            (f.kind, f.recoverable, f.code.as_str()),
            (ErrorKind::User, true, "USER:Recoverable")
        );
        let left = Leftovers {
            error_doc: doc(container_error::Kind::NonRecoverable, 2),
            ..Default::default()
        };
        let TaskStatus::Failed(f) = decide(&Exit::Code(1), &left) else {
            panic!("expected failure")
        };
        assert_eq!((f.kind, f.recoverable), (ErrorKind::System, false));
    }

    #[test]
    fn exits_without_error_pb() {
        let ok = Leftovers {
            outputs_written: true,
            ..Default::default()
        };
        assert_eq!(decide(&Exit::Code(0), &ok), TaskStatus::Succeeded);
        let none = Leftovers {
            no_outputs_declared: true,
            ..Default::default()
        };
        assert_eq!(decide(&Exit::Code(0), &none), TaskStatus::Succeeded);
        let missing = Leftovers {
            stderr_tail: "oops".into(),
            ..Default::default()
        };
        let TaskStatus::Failed(f) = decide(&Exit::Code(0), &missing) else {
            panic!()
        };
        assert_eq!(f.code, "OutputsNotFound");
        let TaskStatus::Failed(f) = decide(&Exit::Code(3), &missing) else {
            panic!()
        };
        assert_eq!(
            (f.code.as_str(), f.kind, f.recoverable),
            ("ContainerFailed", ErrorKind::User, true)
        );
        assert!(f.message.contains("code 3") && f.message.ends_with("oops"));
        let TaskStatus::Failed(f) = decide(&Exit::Signal(9), &missing) else {
            panic!()
        };
        assert_eq!((f.kind, f.recoverable), (ErrorKind::System, true));
        let TaskStatus::Failed(f) = decide(&Exit::Lost, &missing) else {
            panic!()
        };
        assert_eq!(f.code, "SupervisorLost");
    }
}
