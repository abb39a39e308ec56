//! Creating, listing, inspecting and removing sandboxes.

use msb_api::operations::{ListQuery, RemoveQuery};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::extract::Json;
use crate::extract::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use msb_runtime::config::{RootfsSource, SandboxConfig};
use msb_runtime::lifecycle::{transition, Operation, SandboxStatus};
use msb_store::{RunRow, SandboxRow};

use super::lifecycle::{start_run, stop_run};
use crate::error::ApiError;
use crate::reconcile::remove_sandbox;
use crate::state::Daemon;
use msb_api::{
    CreateSandboxRequest, RunInfo, SandboxInfo, SANDBOX_EPHEMERAL_HEADER, SANDBOX_NAME_HEADER,
};

pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

fn run_info(run: RunRow) -> RunInfo {
    RunInfo {
        id: run.id,
        run_number: run.run_number,
        supervisor_pid: run.supervisor_pid,
        init_pid: run.init_pid,
        workload_pid: run.workload_pid,
        started_at: rfc3339(run.started_at_ms),
        ended_at: run.ended_at_ms.map(rfc3339),
        exit_code: run.exit_code,
        signal: run.signal,
        termination_reason: run.termination_reason.and_then(|r| r.parse().ok()),
        error: run.error,
        oom_kills: run.oom_kills,
        end_cause: run.end_cause,
    }
}

/// The API view of a catalog row, with its runs.
pub fn sandbox_info(daemon: &Daemon, row: SandboxRow) -> Result<SandboxInfo, ApiError> {
    let runs = daemon.store().runs_for(&row.id)?;
    let config: SandboxConfig = serde_json::from_str(&row.config_json)
        .map_err(|e| ApiError::internal("stored sandbox config", e))?;
    Ok(SandboxInfo {
        status: row
            .status
            .parse()
            .map_err(|e| ApiError::internal("catalog", e))?,
        id: row.id,
        name: row.name,
        ephemeral: row.ephemeral,
        created_at: rfc3339(row.created_at_ms),
        labels: row.labels,
        config,
        runs: runs.into_iter().map(run_info).collect(),
    })
}

pub fn info_by_name(daemon: &Daemon, name: &str) -> Result<SandboxInfo, ApiError> {
    sandbox_info(daemon, daemon.sandbox(name)?)
}

pub async fn list(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<SandboxInfo>>, ApiError> {
    let rows = daemon.store().list_sandboxes()?;
    let mut out = Vec::new();
    for row in rows {
        let info = sandbox_info(&daemon, row)?;
        if query.all || info.status.is_active() {
            out.push(info);
        }
    }
    Ok(Json(out))
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
    let info = create_sandbox(&daemon, request).await?;
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

async fn create_sandbox(
    daemon: &Arc<Daemon>,
    mut request: CreateSandboxRequest,
) -> Result<SandboxInfo, ApiError> {
    if request.config.name.is_empty() {
        request.config.name = msb_runtime::ids::ephemeral_name();
        request.config.ephemeral = true;
    }
    request.validate()?;
    let config = request.config;
    let ephemeral = config.ephemeral;
    if config.rootfs == RootfsSource::Default
        && !msb_runtime::rootfs::default_rootfs_ready(&daemon.home.default_rootfs())
    {
        let target = daemon.home.default_rootfs();
        tokio::task::spawn_blocking(move || msb_runtime::rootfs::ensure_default_rootfs(&target))
            .await
            .map_err(|e| ApiError::internal("building the default root", e))?
            .map_err(|e| ApiError::Internal(crate::error::error_chain(&e)))?;
    }
    let now = msb_store::catalog::now_ms();
    let row = SandboxRow {
        id: msb_runtime::ids::random_id(),
        name: config.name.clone(),
        status: SandboxStatus::Created.to_string(),
        config_json: serde_json::to_string(&config).expect("config serialises"),
        ephemeral: config.ephemeral,
        created_at_ms: now,
        updated_at_ms: now,
        labels: config.labels.clone(),
    };
    daemon.store().insert_sandbox(&row)?;
    tracing::info!(sandbox = %row.name, id = %row.id, "created");
    if request.start {
        let lock = daemon.op_lock(&row.id);
        let _guard = lock.lock().await;
        if let Err(e) = start_run(daemon, &row.id, request.attach).await {
            // An ephemeral sandbox whose run has already ended is removed by now.
            if matches!(e, ApiError::NotFound(_)) && ephemeral {
                return Ok(ended_ephemeral(daemon, row));
            }
            // A sandbox that cannot start is not left half-created.
            if let Err(cleanup) = remove_sandbox(daemon, &row.id) {
                tracing::error!("rolling back {}: {cleanup}", row.name);
            }
            return Err(e);
        }
    }
    match info_by_name(daemon, &row.name) {
        // An ephemeral sandbox whose run has already ended is removed by now.
        Err(ApiError::NotFound(_)) if ephemeral => Ok(ended_ephemeral(daemon, row)),
        other => other,
    }
}

/// The answer for an ephemeral sandbox created, run and removed within the request.
fn ended_ephemeral(daemon: &Daemon, row: SandboxRow) -> SandboxInfo {
    let ending = daemon.ending(&row.name);
    SandboxInfo {
        id: row.id,
        status: ending.map_or(SandboxStatus::Stopped, |e| e.status),
        name: row.name,
        ephemeral: true,
        created_at: rfc3339(row.created_at_ms),
        labels: row.labels,
        config: serde_json::from_str(&row.config_json).expect("written above"),
        runs: Vec::new(),
    }
}

pub async fn inspect(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    Ok(Json(info_by_name(&daemon, &name)?))
}

pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let row = daemon.sandbox(&name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    let row = daemon.sandbox(&name)?;
    let status: SandboxStatus = row
        .status
        .parse()
        .map_err(|e| ApiError::internal("catalog", e))?;
    if status.is_active() {
        if !query.force {
            return Err(ApiError::Conflict(format!(
                "sandbox {name:?} is {status}; stop it first or use --force"
            )));
        }
        stop_run(&daemon, &row.id, 0).await?;
    }
    let status: SandboxStatus = daemon
        .sandbox(&name)?
        .status
        .parse()
        .map_err(|e| ApiError::internal("catalog", e))?;
    transition(status, Operation::Remove)?;
    remove_sandbox(&daemon, &row.id)?;
    tracing::info!(sandbox = %name, "removed");
    Ok(StatusCode::NO_CONTENT)
}
