//! API errors: one enum, mapped to a status code and an [`ErrorBody`] in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use msb_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no sandbox named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The request is as the API document says, but cannot be carried out here (a host path
    /// that does not exist, an empty window, SQL that does not run).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Internal(String),
    /// The sandbox's workload could not be started (e.g. command not found in the sandbox).
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
}

impl ApiError {
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {error}"))
    }
}

impl From<msb_store::StoreError> for ApiError {
    fn from(e: msb_store::StoreError) -> Self {
        match e {
            msb_store::StoreError::NameTaken(name) => {
                ApiError::Conflict(format!("sandbox name {name:?} is already taken"))
            }
            other => ApiError::internal("store", error_chain(&other)),
        }
    }
}

impl From<msb_api::config::ConfigError> for ApiError {
    fn from(e: msb_api::config::ConfigError) -> Self {
        if e.is_host_dependent() {
            ApiError::Unprocessable(e.to_string())
        } else {
            ApiError::Invalid(e.to_string())
        }
    }
}

impl From<msb_api::requests::RequestError> for ApiError {
    fn from(e: msb_api::requests::RequestError) -> Self {
        if e.is_host_dependent() {
            ApiError::Unprocessable(e.to_string())
        } else {
            ApiError::Invalid(e.to_string())
        }
    }
}

impl From<msb_runtime::lifecycle::InvalidTransition> for ApiError {
    fn from(e: msb_runtime::lifecycle::InvalidTransition) -> Self {
        ApiError::Conflict(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::StartFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "start_failed"),
        };
        let exit_code = match &self {
            ApiError::StartFailed { exit_code, .. } => Some(*exit_code),
            _ => None,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
        }
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                kind: kind.to_owned(),
                exit_code,
            }),
        )
            .into_response()
    }
}

/// "outer: inner: innermost", the whole chain on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
