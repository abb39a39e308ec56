//! Creating, listing, inspecting and removing sandboxes over HTTP (the work is in
//! `service/create.rs`, `service/info.rs` and `service/removal.rs`).

use std::sync::Arc;

use crate::extract::Json;
use crate::extract::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use msb_api::operations::{ListQuery, RemoveQuery};
use msb_api::{CreateSandboxRequest, SandboxInfo, SANDBOX_EPHEMERAL_HEADER, SANDBOX_NAME_HEADER};

use crate::error::ApiError;
use crate::service::{create, info, lifecycle};
use crate::state::Daemon;

pub async fn list(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<SandboxInfo>>, ApiError> {
    Ok(Json(info::list(&daemon, query.all)?))
}

#[tracing::instrument(name = "sandbox.create", skip_all)]
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_CREATE_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => return Err(ApiError::Invalid(format!("reading the request body: {e}"))),
    };
    let Json(request) = Json::<CreateSandboxRequest>::from_bytes(&bytes)?;
    let upgrade = (super::session::wants_session(&parts.headers) && request.attach.is_some())
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let info = create::create_sandbox(&daemon, request).await?;
    match upgrade {
        Some(upgrade) => {
            let id = daemon.sandbox(&info.name)?.id;
            let socket = daemon.home.sandbox(&id).socket();
            let supervisor = tokio::net::UnixStream::connect(&socket)
                .await
                .map_err(|e| {
                    ApiError::Conflict(format!(
                        "sandbox {:?} is not accepting sessions: {e}",
                        info.name
                    ))
                })?;
            super::session::spawn_relay(daemon.clone(), &info.name, upgrade, supervisor);
            Ok(super::session::switching_protocols()
                .header(SANDBOX_NAME_HEADER, info.name.as_str())
                .header(SANDBOX_EPHEMERAL_HEADER, info.ephemeral.to_string())
                .body(axum::body::Body::empty())
                .expect("valid header values"))
        }
        None => Ok((StatusCode::CREATED, Json(info)).into_response()),
    }
}

/// The largest create request body accepted (axum's default for JSON).
const MAX_CREATE_BODY: usize = 2 << 20;

pub async fn inspect(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    Ok(Json(info::info_by_name(&daemon, &name)?))
}

pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    lifecycle::remove(&daemon, &name, query.force).await?;
    Ok(StatusCode::NO_CONTENT)
}
