//! Start, stop, kill and wait over HTTP: each parses its request and calls the lifecycle
//! service (`service/lifecycle.rs`).

use std::sync::Arc;

use crate::extract::Json;
use axum::extract::{Path, State};
use msb_api::{KillRequest, SandboxInfo, StopRequest, WaitResponse};

use crate::error::ApiError;
use crate::service::lifecycle;
use crate::state::Daemon;

pub async fn start(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    Ok(Json(lifecycle::start(&daemon, &name).await?))
}

pub async fn stop(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<StopRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    request.validate()?;
    let info = lifecycle::stop(&daemon, &name, request.force, request.timeout_secs).await?;
    Ok(Json(info))
}

pub async fn kill(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<KillRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    request.validate()?;
    Ok(Json(lifecycle::kill(&daemon, &name, request.signal).await?))
}

pub async fn wait(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<WaitResponse>, ApiError> {
    Ok(Json(lifecycle::wait(&daemon, &name).await?))
}
