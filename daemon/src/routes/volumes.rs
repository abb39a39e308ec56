//! Named volumes over HTTP (the work is in `service/volumes.rs`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use msb_api::{CreateVolumeRequest, VolumeInfo};

use crate::error::ApiError;
use crate::extract::Json;
use crate::service::volumes;
use crate::state::Daemon;

pub async fn list(State(daemon): State<Arc<Daemon>>) -> Json<Vec<VolumeInfo>> {
    Json(volumes::list(&daemon))
}

#[tracing::instrument(name = "volume.create", skip_all)]
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Json(request): Json<CreateVolumeRequest>,
) -> Result<(StatusCode, Json<VolumeInfo>), ApiError> {
    let info = volumes::create(&daemon, request).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub async fn inspect(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<VolumeInfo>, ApiError> {
    Ok(Json(volumes::inspect(&daemon, &name)?))
}

#[tracing::instrument(name = "volume.remove", skip_all)]
pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    volumes::remove(&daemon, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
