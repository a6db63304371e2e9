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

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match &e {
            ApiError::Invalid(m) => Status::invalid_argument(m.clone()),
            ApiError::NotFound(m) => Status::not_found(m.clone()),
            ApiError::AlreadyExists(m) => Status::already_exists(m.clone()),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m.clone()),
            ApiError::Blob(
                contrail_blob::Error::InvalidKey(..) | contrail_blob::Error::ForeignUri(..),
            ) => Status::invalid_argument(e.to_string()),
            ApiError::Blob(contrail_blob::Error::NotFound(_)) => Status::not_found(e.to_string()),
            // The object store is down or refusing: not our bug, and worth a retry.
            ApiError::Blob(contrail_blob::Error::Remote(..)) => Status::unavailable(e.to_string()),
            _ => {
                tracing::error!(error = %e, "internal error");
                // Our bug, not the caller's: say what failed, never echo kilobytes back.
                let mut msg = e.to_string();
                if msg.len() > 300 {
                    let mut end = 300;
                    while !msg.is_char_boundary(end) {
                        end -= 1;
                    }
                    msg.truncate(end);
                    msg.push_str("... (truncated; see the server log)");
                }
                Status::internal(msg)
            }
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}
