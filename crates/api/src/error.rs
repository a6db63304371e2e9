//! Domain errors → gRPC status. Never `UNKNOWN`: flytekit answers that with an interactive login.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the target is in the wrong state (e.g. already finished).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this (the task policy, for one).
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Store(#[from] contrail_store::Error),
    #[error("blob store: {0}")]
    Blob(#[from] contrail_blob::Error),
    #[error("stored data is unreadable: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Our own bug or a broken deployment (INTERNAL).
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The longest message a status carries: a refusal names the field, it does not echo the
/// request back.
pub const MAX_MESSAGE: usize = 600;

/// `msg` cut to [`MAX_MESSAGE`] bytes, keeping its start and end (where the field path
/// and the reason are).
pub fn shorten(msg: &str) -> String {
    if msg.len() <= MAX_MESSAGE {
        return msg.to_string();
    }
    let mut head = MAX_MESSAGE / 2;
    while !msg.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = msg.len() - MAX_MESSAGE / 2;
    while !msg.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{} ... {}", &msg[..head], &msg[tail..])
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = shorten(&e.to_string());
        match &e {
            ApiError::Invalid(_) => Status::invalid_argument(msg),
            ApiError::NotFound(_) => Status::not_found(msg),
            ApiError::AlreadyExists(_) => Status::already_exists(msg),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ApiError::PermissionDenied(_) => Status::permission_denied(msg),
            ApiError::Blob(
                contrail_blob::Error::InvalidKey(..) | contrail_blob::Error::ForeignUri(..),
            ) => Status::invalid_argument(msg),
            ApiError::Blob(contrail_blob::Error::NotFound(_)) => Status::not_found(msg),
            // The object store is down or refusing: not our bug, and worth a retry.
            ApiError::Blob(contrail_blob::Error::Remote(..)) => Status::unavailable(msg),
            _ => {
                tracing::error!(error = %e, "internal error");
                Status::internal(msg)
            }
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_messages_keep_their_start_and_end() {
        let long = format!("field.path: {} is bad", "é".repeat(1000));
        let s = super::shorten(&long);
        assert!(s.len() <= super::MAX_MESSAGE + 8);
        assert!(s.starts_with("field.path: ") && s.ends_with(" is bad"));
        assert_eq!(super::shorten("short"), "short");
    }
}
