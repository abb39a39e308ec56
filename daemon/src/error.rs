//! API errors: one enum, mapped to a status code and an [`ErrorBody`] in one place, and the
//! mapping of the service layer's typed errors (`service/`) onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use msb_api::ErrorBody;

pub use crate::display::error_chain;
use crate::service::create::CreateError;
use crate::service::drain::DrainError;
use crate::service::exec::ExecError;
use crate::service::lifecycle::LifecycleError;
use crate::service::removal::RemovalError;
use crate::service::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no sandbox named {0:?}")]
    NotFound(String),
    /// A 404 with its own message (another kind of resource than a sandbox).
    #[error("{0}")]
    Missing(String),
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

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(name) => ApiError::NotFound(name),
            CatalogError::Store(store) => store.into(),
            unreadable @ CatalogError::Unreadable { .. } => {
                ApiError::Internal(unreadable.to_string())
            }
        }
    }
}

impl From<msb_api::config::ConfigError> for ApiError {
    fn from(e: msb_api::config::ConfigError) -> Self {
        if e.is_beyond_the_schema() {
            ApiError::Unprocessable(e.to_string())
        } else {
            ApiError::Invalid(e.to_string())
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Catalog(e) => e.into(),
            LifecycleError::Transition(e) => e.into(),
            LifecycleError::NotStartable { .. }
            | LifecycleError::Refused(_)
            | LifecycleError::Active { .. } => ApiError::Conflict(e.to_string()),
            LifecycleError::Removal(e) => e.into(),
            LifecycleError::BadSignal(_) => ApiError::Invalid(e.to_string()),
            LifecycleError::StartFailed { message, exit_code } => {
                ApiError::StartFailed { message, exit_code }
            }
            other @ (LifecycleError::RunFailed { .. }
            | LifecycleError::StartTimeout { .. }
            | LifecycleError::StillActive { .. }
            | LifecycleError::Unreachable(_)
            | LifecycleError::RootDisk(_)
            | LifecycleError::Io { .. }) => ApiError::Internal(error_chain(&other)),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Catalog(e) => e.into(),
            ExecError::Draining { .. }
            | ExecError::NotRunning { .. }
            | ExecError::Refused { .. } => ApiError::Conflict(e.to_string()),
            ExecError::StartFailed { message, exit_code } => {
                ApiError::StartFailed { message, exit_code }
            }
            other @ (ExecError::Ended { .. } | ExecError::Frame(_)) => {
                ApiError::Internal(error_chain(&other))
            }
        }
    }
}

impl From<DrainError> for ApiError {
    fn from(e: DrainError) -> Self {
        match e {
            DrainError::Catalog(e) => e.into(),
            DrainError::Lifecycle(e) => e.into(),
            DrainError::NotRunning { .. } | DrainError::Refused(_) => {
                ApiError::Conflict(e.to_string())
            }
        }
    }
}

impl From<RemovalError> for ApiError {
    fn from(e: RemovalError) -> Self {
        match e {
            RemovalError::Catalog(e) => e.into(),
            io @ RemovalError::Io { .. } => ApiError::Internal(error_chain(&io)),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Invalid(e) => e.into(),
            CreateError::Catalog(e) => e.into(),
            CreateError::Start(e) => e.into(),
            root @ CreateError::DefaultRoot(_) => ApiError::Internal(root.to_string()),
            path @ CreateError::HostPath { .. } => ApiError::Unprocessable(error_chain(&path)),
            port @ CreateError::PortInUse { .. } => ApiError::Conflict(error_chain(&port)),
            disk @ CreateError::RootDiskAboveFilesystem { .. } => {
                ApiError::Unprocessable(disk.to_string())
            }
            disk @ CreateError::RootDisk(_) => ApiError::Internal(disk.to_string()),
            memory @ CreateError::MemoryAboveHost { .. } => {
                ApiError::Unprocessable(memory.to_string())
            }
        }
    }
}

impl From<crate::service::volumes::VolumesError> for ApiError {
    fn from(e: crate::service::volumes::VolumesError) -> Self {
        use crate::service::volumes::VolumesError as E;
        match e {
            E::Invalid(_) => ApiError::Invalid(e.to_string()),
            E::NotFound(_) => ApiError::Missing(e.to_string()),
            E::Exists(_) | E::InUse { .. } => ApiError::Conflict(e.to_string()),
            E::TooLarge { .. } | E::Mkfs { .. } => ApiError::Unprocessable(e.to_string()),
            E::Io { .. } => ApiError::Internal(error_chain(&e)),
        }
    }
}

impl From<msb_api::requests::RequestError> for ApiError {
    fn from(e: msb_api::requests::RequestError) -> Self {
        if e.is_beyond_the_schema() {
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
            ApiError::NotFound(_) | ApiError::Missing(_) => (StatusCode::NOT_FOUND, "not_found"),
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
