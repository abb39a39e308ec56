//! `POST /v1/sandboxes/{name}/exec` (buffered exec) and `POST /v1/sandboxes/{name}/drain`: each
//! parses its request and calls the service (`service/exec.rs`, `service/drain.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use msb_api::{DrainRequest, ExecRequest, ExecResponse, SandboxInfo};

use crate::error::ApiError;
use crate::extract::Json;
use crate::service::{drain, exec};
use crate::state::Daemon;

pub async fn exec(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<ExecRequest>,
) -> Result<Json<ExecResponse>, ApiError> {
    use base64::Engine as _;
    request.validate()?;
    let stdin = request
        .stdin
        .map(|text| super::session_json::BASE64.decode(text))
        .transpose()
        .map_err(|e| ApiError::Invalid(format!("stdin: {e}")))?;
    let response = exec::run_buffered(
        &daemon,
        &name,
        request.argv,
        request.env,
        request.workdir,
        stdin,
        request.timeout_ms.map(Duration::from_millis),
    )
    .await?;
    Ok(Json(response))
}

pub async fn drain(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<DrainRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    request.validate()?;
    let info = drain::drain(
        &daemon,
        &name,
        request.timeout_secs,
        request.stop_timeout_secs,
    )
    .await?;
    Ok(Json(info))
}
