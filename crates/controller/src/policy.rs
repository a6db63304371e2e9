//! The error policy, kept apart from the round as kube-runtime keeps `error_policy` apart
//! from `reconcile`: every error a round returns is classified here, and
//! `Controller::reconcile` acts on the class, the same way on every path.
//!
//! - **Transient**: the world is briefly unavailable (the database, the object store, the
//!   executor, the launcher). The round is retried with a capped backoff, for as long as it
//!   takes; an outage does not fail executions.
//! - **Corrupt**: something stored cannot be read back or used (a record, a closure, a
//!   compiled dynamic workflow). Looking again cannot help: the execution fails at once,
//!   with the object named, after what it started is stopped.
//! - **Bug**: our own mistake (a panic, a key we built wrongly, an object we wrote and
//!   cannot find). Logged as an error and retried with backoff, counting toward the poison
//!   pill: after `max_round_failures` in a row the execution fails.

use crate::Error;

/// What kind of failure a round's error is; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Transient,
    Corrupt,
    Bug,
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        use contrail_blob::Error as Blob;
        match self {
            Error::Store(contrail_store::Error::Backend(_)) => ErrorClass::Transient,
            Error::Store(contrail_store::Error::Corrupt(_)) => ErrorClass::Corrupt,
            Error::Blob(Blob::Io(..) | Blob::Remote(..)) => ErrorClass::Transient,
            Error::Blob(
                Blob::NotFound(_)
                | Blob::InvalidKey(..)
                | Blob::ForeignUri(..)
                | Blob::Config(_)
                | Blob::NotLocal(_),
            ) => ErrorClass::Bug,
            Error::Executor(_) | Error::Launch(_) => ErrorClass::Transient,
            Error::Corrupt(..) => ErrorClass::Corrupt,
            Error::Panicked(_) => ErrorClass::Bug,
        }
    }
}

/// The pause before retrying after the `n`th failed round in a row (200 ms doubling,
/// capped at 12.8 s).
pub fn backoff(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100u64 << n.min(7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_transient_unreadable_records_corrupt_and_panics_bugs() {
        let outage = Error::Store(contrail_store::Error::Backend("database is locked".into()));
        assert_eq!(outage.class(), ErrorClass::Transient);
        let remote = Error::Blob(contrail_blob::Error::Remote("k".into(), "503".into()));
        assert_eq!(remote.class(), ErrorClass::Transient);
        assert_eq!(
            Error::Executor(contrail_executor::Error::Io("fork".into())).class(),
            ErrorClass::Transient
        );
        let record = Error::Store(contrail_store::Error::Corrupt("node state".into()));
        assert_eq!(record.class(), ErrorClass::Corrupt);
        assert_eq!(
            Error::Corrupt("dynamic workflow", "bad".into()).class(),
            ErrorClass::Corrupt
        );
        assert_eq!(Error::Panicked("x".into()).class(), ErrorClass::Bug);
        let missing = Error::Blob(contrail_blob::Error::NotFound("k".into()));
        assert_eq!(missing.class(), ErrorClass::Bug);
    }

    #[test]
    fn the_backoff_doubles_from_200_ms_and_stops_at_12_8_s() {
        assert_eq!(backoff(1).as_millis(), 200);
        assert_eq!(backoff(2).as_millis(), 400);
        assert_eq!(backoff(7).as_millis(), 12_800);
        assert_eq!(backoff(50).as_millis(), 12_800);
    }
}
