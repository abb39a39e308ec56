//! `GET /v1/df` (the work is in `service/df.rs`).

use std::sync::Arc;

use axum::extract::State;
use msb_api::DiskUsageReport;

use crate::error::ApiError;
use crate::extract::Json;
use crate::service::df;
use crate::state::Daemon;

pub async fn disk_usage(
    State(daemon): State<Arc<Daemon>>,
) -> Result<Json<DiskUsageReport>, ApiError> {
    // Walks directories: off the async workers.
    tokio::task::spawn_blocking(move || df::report(&daemon))
        .await
        .map(Json)
        .map_err(|e| ApiError::Internal(format!("measuring disk usage: {e}")))
}
