//! The SDK's errors: one variant per kind of failure, each carrying msbd's message.

use msb_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No sandbox has this name (404).
    #[error("{0}")]
    NotFound(String),
    /// The sandbox name is taken (409 on create).
    #[error("{0}")]
    AlreadyExists(String),
    /// The sandbox's state does not allow the operation (409): not running, draining, ...
    #[error("{0}")]
    Conflict(String),
    /// The request breaks a documented constraint (400) or cannot be carried out here (422).
    #[error("{0}")]
    InvalidArgument(String),
    /// The command could not start; `exit_code` is a shell's (127 not found, 126 not executable).
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    /// The sandbox was created with metrics off.
    #[error("{0}")]
    MetricsDisabled(String),
    /// No sample yet: the first arrives within one interval of the start.
    #[error("{0}")]
    MetricsUnavailable(String),
    /// msbd is not answering on its socket and could not be started.
    #[error("{0}")]
    DaemonUnreachable(String),
    /// msbd failed, or answered something this SDK cannot read.
    #[error("{message}")]
    Internal {
        status: Option<u16>,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the failing request was, where msbd's status alone does not say which error it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Other,
    Create,
    Metrics,
}

pub(crate) fn from_answer(status: u16, body: &[u8], operation: Operation) -> Error {
    let body: ErrorBody = serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
        error: format!(
            "msbd answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        ),
        kind: "internal".into(),
        exit_code: None,
    });
    let message = body.error;
    match (status, operation) {
        (404, _) => Error::NotFound(message),
        (409, Operation::Create) => Error::AlreadyExists(message),
        (409, Operation::Metrics) if message.contains("disabled") => {
            Error::MetricsDisabled(message)
        }
        (409, Operation::Metrics) => Error::MetricsUnavailable(message),
        (409, _) => Error::Conflict(message),
        _ if body.kind == "start_failed" => Error::StartFailed {
            message,
            exit_code: body.exit_code.unwrap_or(1),
        },
        (400 | 415 | 422, _) => Error::InvalidArgument(message),
        _ => Error::Internal {
            status: Some(status),
            message,
        },
    }
}

pub(crate) fn unreachable(message: impl Into<String>) -> Error {
    Error::DaemonUnreachable(message.into())
}
