//! Start, stop, kill and wait: the verbs that move a sandbox through its lifecycle.
//!
//! Start, stop and kill hold the sandbox's operation lock; wait does not (it only watches).

use std::fs::OpenOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::extract::Json;
use axum::extract::{Path, State};
use msb_protocol::session::{ClientEvent, Control};
use msb_protocol::ExecMode;
use msb_runtime::config::{SandboxConfig, SupervisorConfig};
use msb_runtime::lifecycle::{transition, Operation, SandboxStatus, TerminationReason};
use msb_runtime::process::stat;
use msb_store::{EventRecord, RunRow, SandboxRow};

use super::sandboxes::info_by_name;
use crate::error::ApiError;
use crate::reconcile::{apply_record, spawn_monitor, supervisor_of_run_alive};
use crate::state::Daemon;
use crate::supervisors;
use msb_api::{AttachMode, KillRequest, SandboxInfo, StopRequest, WaitResponse};

/// Default grace between SIGTERM and SIGKILL for `stop`.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;
/// How long a start may take before msbd gives up waiting for the workload to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn status_of(daemon: &Daemon, sandbox_id: &str) -> Result<SandboxStatus, ApiError> {
    let row = daemon
        .store()
        .sandbox_by_id(sandbox_id)?
        .ok_or_else(|| ApiError::NotFound(sandbox_id.to_owned()))?;
    row.status
        .parse()
        .map_err(|e| ApiError::internal("catalog", e))
}

fn supervisor_alive(daemon: &Daemon, sandbox_id: &str) -> bool {
    daemon
        .store()
        .latest_run(sandbox_id)
        .ok()
        .flatten()
        .is_some_and(|run| supervisor_of_run_alive(&run))
}

/// Begins a new run: spawns the supervisor, records the run, and waits until the workload has
/// started (or, for an attached start, until the supervisor is ready for its client).
/// The caller holds the sandbox's operation lock.
#[tracing::instrument(name = "sandbox.start", skip_all, fields(sandbox.id = %sandbox_id))]
pub async fn start_run(
    daemon: &Arc<Daemon>,
    sandbox_id: &str,
    attach: Option<AttachMode>,
) -> Result<(), ApiError> {
    let row = daemon
        .store()
        .sandbox_by_id(sandbox_id)?
        .ok_or_else(|| ApiError::NotFound(sandbox_id.to_owned()))?;
    let status: SandboxStatus = row
        .status
        .parse()
        .map_err(|e| ApiError::internal("catalog", e))?;
    let next = transition(status, Operation::Start)
        .map_err(|_| ApiError::Conflict(format!("sandbox {:?} is already {status}", row.name)))?;
    let config: SandboxConfig = serde_json::from_str(&row.config_json)
        .map_err(|e| ApiError::internal("stored sandbox config", e))?;
    let dir = daemon.home.sandbox(sandbox_id);
    std::fs::create_dir_all(dir.runtime())
        .map_err(|e| ApiError::internal("creating the sandbox directory", e))?;
    let _ = std::fs::remove_file(dir.run_record());
    let _ = std::fs::remove_file(dir.socket());

    let run_id = msb_runtime::ids::random_id();
    let supervisor_config = SupervisorConfig {
        sandbox_id: sandbox_id.to_owned(),
        run_id: run_id.clone(),
        config,
        sandbox_dir: dir.root().to_owned(),
        default_rootfs: daemon.home.default_rootfs(),
        agent_binary: daemon.agent_binary.clone(),
        wait_for_attach: attach.is_some(),
        main_mode: match attach {
            None => ExecMode::Buffered,
            Some(AttachMode::Stream) => ExecMode::Stream,
            Some(AttachMode::Pty { rows, cols }) => ExecMode::Pty { rows, cols },
        },
        log_level: daemon.log_level.clone(),
    };
    let spawned_at = std::time::SystemTime::now();
    let mut child = match daemon.warm.hand_over(&supervisor_config) {
        Some(child) => child,
        None => {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.supervisor_log())
                .map_err(|e| ApiError::internal("opening the supervisor log", e))?;
            msb_runtime::spawn::spawn_supervisor(&daemon.supervisor_exe, &supervisor_config, &log)
                .map_err(|e| ApiError::internal("spawning the supervisor", e))?
        }
    };
    daemon
        .telemetry
        .boot_started(&run_id, &row.name, spawned_at);
    let pid = child.id() as i32;
    let run = RunRow {
        id: run_id,
        sandbox_id: sandbox_id.to_owned(),
        run_number: daemon.store().next_run_number(sandbox_id)?,
        supervisor_pid: Some(pid),
        supervisor_start_ticks: stat(pid).map(|s| s.start_ticks),
        init_pid: None,
        workload_pid: None,
        started_at_ms: msb_store::catalog::now_ms(),
        ended_at_ms: None,
        exit_code: None,
        signal: None,
        termination_reason: None,
        error: None,
        oom_kills: None,
        end_cause: None,
    };
    {
        let store = daemon.store();
        store.insert_run(&run)?;
        store.set_status(sandbox_id, next.as_str())?;
        store.append_event(&EventRecord {
            ts_ms: run.started_at_ms,
            sandbox_id: Some(sandbox_id.to_owned()),
            kind: "status".into(),
            detail_json: serde_json::json!({"from": status, "to": next, "run_id": run.id})
                .to_string(),
        })?;
    }
    daemon.publish_status(sandbox_id, next);
    // Reap the supervisor when it ends, so it never lingers as a zombie of msbd.
    tokio::task::spawn_blocking(move || child.wait());
    spawn_monitor(daemon.clone(), sandbox_id.to_owned());

    let deadline = Instant::now() + START_TIMEOUT;
    let mut statuses = daemon.subscribe_status(sandbox_id, next);
    loop {
        let status = status_of(daemon, sandbox_id)?;
        if attach.is_some() && status == SandboxStatus::Starting && dir.socket().exists() {
            return Ok(());
        }
        if status != SandboxStatus::Starting {
            break;
        }
        if Instant::now() > deadline {
            return Err(ApiError::Internal(format!(
                "sandbox {:?} did not start within {START_TIMEOUT:?}; see {}",
                row.name,
                dir.supervisor_log().display()
            )));
        }
        if !supervisor_alive(daemon, sandbox_id) {
            apply_record(daemon, sandbox_id)?;
        }
        // An attached start waits for the supervisor's socket, which no status change
        // announces: look again soon (it appears a few milliseconds after the spawn).
        let poll = if attach.is_some() { 1 } else { 20 };
        let _ = tokio::time::timeout(Duration::from_millis(poll), statuses.changed()).await;
    }
    // The run may already be over; if the workload never started, that is an error.
    let run = daemon.store().latest_run(sandbox_id)?;
    if let Some(run) = run.filter(|r| r.workload_pid.is_none() && r.ended_at_ms.is_some()) {
        let message = run
            .error
            .unwrap_or_else(|| "the sandbox exited before its workload started".to_owned());
        return match run
            .termination_reason
            .as_deref()
            .and_then(|r| r.parse().ok())
        {
            Some(TerminationReason::Failed) => Err(ApiError::StartFailed {
                message,
                exit_code: run.exit_code.unwrap_or(1),
            }),
            _ => Err(ApiError::Internal(format!(
                "{message}; see {}",
                dir.supervisor_log().display()
            ))),
        };
    }
    Ok(())
}

/// Stops the current run (SIGTERM, then SIGKILL after `timeout_ms`; 0 kills at once) and
/// waits until it is recorded as ended. The caller holds the sandbox's operation lock.
#[tracing::instrument(name = "sandbox.stop", skip_all, fields(sandbox.id = %sandbox_id, timeout_ms))]
pub async fn stop_run(
    daemon: &Arc<Daemon>,
    sandbox_id: &str,
    timeout_ms: u64,
) -> Result<(), ApiError> {
    let status = status_of(daemon, sandbox_id)?;
    if !status.is_active() {
        return Ok(());
    }
    let socket = daemon.home.sandbox(sandbox_id).socket();
    if supervisor_alive(daemon, sandbox_id) {
        // A sandbox still Starting (e.g. holding its workload for a client) has no workload to
        // SIGKILL: a SIGKILL request left it Starting until its attach timeout; a stop without
        // grace brings it down at once.
        let control = if timeout_ms == 0 && status != SandboxStatus::Starting {
            Control::Kill {
                signal: libc::SIGKILL,
            }
        } else {
            Control::Stop { timeout_ms }
        };
        match supervisors::control(&socket, control).await {
            Ok(Some(ClientEvent::Error(e))) => tracing::warn!("stop: supervisor said: {e}"),
            Ok(_) => {}
            Err(e) => tracing::debug!("stop: supervisor socket: {e}"),
        }
    }
    wait_until_ended(
        daemon,
        sandbox_id,
        Duration::from_millis(timeout_ms) + Duration::from_secs(15),
    )
    .await
}

/// How a sandbox in a terminal `status` ended: its latest run's exit code (128 + signal for a
/// signal), termination reason and error.
pub fn ending(
    daemon: &Daemon,
    row: &SandboxRow,
    status: SandboxStatus,
) -> Result<WaitResponse, ApiError> {
    let run = daemon.store().latest_run(&row.id)?;
    Ok(WaitResponse {
        name: row.name.clone(),
        status,
        exit_code: run.as_ref().and_then(|r| match (r.exit_code, r.signal) {
            (Some(code), _) => Some(code),
            (None, Some(signal)) => Some(128 + signal),
            _ => None,
        }),
        termination_reason: run
            .as_ref()
            .and_then(|r| r.termination_reason.as_ref()?.parse().ok()),
        error: run.and_then(|r| r.error),
    })
}

/// Waits until the sandbox is no longer active, settling a dead supervisor's run if needed.
async fn wait_until_ended(
    daemon: &Arc<Daemon>,
    sandbox_id: &str,
    limit: Duration,
) -> Result<(), ApiError> {
    let deadline = Instant::now() + limit;
    let mut statuses = daemon.subscribe_status(sandbox_id, status_of(daemon, sandbox_id)?);
    loop {
        let mut status = status_of(daemon, sandbox_id)?;
        if status.is_active() && !supervisor_alive(daemon, sandbox_id) {
            status = apply_record(daemon, sandbox_id)?;
        }
        if !status.is_active() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ApiError::Internal(format!(
                "sandbox {sandbox_id} is still {status} after {limit:?}"
            )));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), statuses.changed()).await;
    }
}

pub async fn start(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let row = daemon.sandbox(&name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    start_run(&daemon, &row.id, None).await?;
    Ok(Json(info_by_name(&daemon, &name)?))
}

pub async fn stop(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<StopRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    request.validate()?;
    let row = daemon.sandbox(&name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    let timeout_ms = if request.force {
        0
    } else {
        request.timeout_secs.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS) * 1000
    };
    stop_run(&daemon, &row.id, timeout_ms).await?;
    Ok(Json(info_by_name(&daemon, &name)?))
}

#[tracing::instrument(name = "sandbox.kill", skip_all, fields(sandbox.name = %name, signal = request.signal))]
pub async fn kill(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<KillRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    request.validate()?;
    let row = daemon.sandbox(&name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    let status = status_of(&daemon, &row.id)?;
    transition(status, Operation::Kill)?;
    if !supervisor_alive(&daemon, &row.id) {
        apply_record(&daemon, &row.id)?;
        return Ok(Json(info_by_name(&daemon, &name)?));
    }
    if request.signal == libc::SIGKILL {
        stop_run(&daemon, &row.id, 0).await?;
    } else {
        let socket = daemon.home.sandbox(&row.id).socket();
        match supervisors::control(
            &socket,
            Control::Kill {
                signal: request.signal,
            },
        )
        .await
        {
            Ok(Some(ClientEvent::Error(e))) => return Err(ApiError::Conflict(e)),
            Ok(_) => {}
            Err(e) => return Err(ApiError::internal("reaching the supervisor", e)),
        }
    }
    Ok(Json(info_by_name(&daemon, &name)?))
}

pub async fn wait(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<WaitResponse>, ApiError> {
    let row = match daemon.sandbox(&name) {
        Ok(row) => row,
        Err(ApiError::NotFound(name)) => {
            return daemon
                .ending(&name)
                .map(Json)
                .ok_or(ApiError::NotFound(name))
        }
        Err(e) => return Err(e),
    };
    let id = row.id.clone();
    let mut statuses = daemon.subscribe_status(
        &id,
        row.status
            .parse()
            .map_err(|e| ApiError::internal("catalog", e))?,
    );
    let mut last: Option<WaitResponse> = None;
    loop {
        let Some(row) = daemon.store().sandbox_by_id(&id)? else {
            // An ephemeral sandbox is removed once it ends: report how it ended.
            return last
                .or_else(|| daemon.ending(&name))
                .map(Json)
                .ok_or(ApiError::NotFound(name));
        };
        let mut status: SandboxStatus = row
            .status
            .parse()
            .map_err(|e| ApiError::internal("catalog", e))?;
        if status.is_active() && !supervisor_alive(&daemon, &id) {
            status = apply_record(&daemon, &id)?;
        }
        if status.is_terminal() {
            let response = ending(&daemon, &row, status)?;
            if !row.ephemeral || status == SandboxStatus::Created {
                return Ok(Json(response));
            }
            last = Some(response);
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), statuses.changed()).await;
    }
}
