//! Start, stop, kill and wait: the verbs that move a sandbox through its lifecycle.
//!
//! Start, stop and kill take the sandbox's operation lock (the `*_run` functions expect their
//! caller to hold it); wait does not (it only watches).

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msb_api::{AttachMode, SandboxInfo, WaitResponse};
use msb_protocol::session::{ClientEvent, Control};
use msb_protocol::ExecMode;
use msb_runtime::config::SupervisorConfig;
use msb_runtime::lifecycle::{
    transition, InvalidTransition, Operation, SandboxStatus, TerminationReason,
};
use msb_runtime::process::stat;

use crate::warm::HandOverError;
use msb_store::{EventRecord, RunRow};

use super::info::{ending, info_by_name, sandbox_info};
use super::monitor::spawn_monitor;
use super::record::{apply_record, supervisor_of_run_alive};
use super::removal::{remove_sandbox, RemovalError};
use super::{config_of_row, status_of, status_of_row, CatalogError};
use crate::state::Daemon;
use crate::supervisors;

/// Default grace between SIGTERM and SIGKILL for `stop`.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;
/// How long a start may take before msbd gives up waiting for the workload to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a lifecycle verb can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("sandbox {name:?} is already {status}")]
    NotStartable { name: String, status: SandboxStatus },
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error("signal {0} is out of range 1-64")]
    BadSignal(i32),
    /// The workload could not be started (e.g. its command is not in the sandbox).
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    /// The run ended before its workload started, for a reason of the runtime's.
    #[error("{message}; see {}", log.display())]
    RunFailed { message: String, log: PathBuf },
    #[error("sandbox {name:?} did not start within {after:?}; see {}", log.display())]
    StartTimeout {
        name: String,
        after: Duration,
        log: PathBuf,
    },
    #[error("sandbox {sandbox} is still {status} after {after:?}")]
    StillActive {
        sandbox: String,
        status: SandboxStatus,
        after: Duration,
    },
    /// The supervisor answered the request with an error.
    #[error("{0}")]
    Refused(String),
    #[error("reaching the supervisor")]
    Unreachable(#[source] msb_protocol::FrameError),
    #[error("sandbox {name:?} is {status}; stop it first or use --force")]
    Active { name: String, status: SandboxStatus },
    #[error(transparent)]
    Removal(#[from] RemovalError),
    /// The sandbox's root disk could not be made.
    #[error("the root disk: {0}")]
    RootDisk(String),
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<msb_store::StoreError> for LifecycleError {
    fn from(e: msb_store::StoreError) -> Self {
        LifecycleError::Catalog(CatalogError::Store(e))
    }
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
) -> Result<(), LifecycleError> {
    let row = daemon
        .store()
        .sandbox_by_id(sandbox_id)?
        .ok_or_else(|| CatalogError::NotFound(sandbox_id.to_owned()))?;
    let status = status_of_row(&row)?;
    let next = transition(status, Operation::Start).map_err(|_| LifecycleError::NotStartable {
        name: row.name.clone(),
        status,
    })?;
    let config = config_of_row(&row)?;
    // The directory is made by the hand-over below (unless a sandbox booted ahead becomes it).
    let dir = daemon.home.sandbox(sandbox_id);
    let _ = std::fs::remove_file(dir.run_record());
    let _ = std::fs::remove_file(dir.socket());

    let run_id = msb_runtime::ids::random_id();
    daemon.intake.started_here(sandbox_id, &run_id);
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
        output_log_max_bytes: daemon.config.output_log_max_bytes,
        claim_booted: false,
        id_map: Some(
            msb_runtime::idmap::for_home(&daemon.home).map_err(|source| LifecycleError::Io {
                what: "reading the home's id map",
                source,
            })?,
        ),
    };
    let spawned_at = std::time::SystemTime::now();
    // The root disk's image is made here when the start is the sandbox's first (a create with
    // start): from a warm supervisor's disk made ahead of time when it has one.
    // A warm supervisor's sandbox booted ahead of time, when this one can take it (the
    // configuration then says so).
    let (handed, supervisor_config) = {
        let (warm, mut config) = (daemon.warm.clone(), supervisor_config);
        tokio::task::spawn_blocking(move || warm.hand_over(&mut config).map(|h| (h, config)))
            .await
            .map_err(|e| LifecycleError::RootDisk(e.to_string()))?
            .map_err(|e| match e {
                HandOverError::Directory(source) => LifecycleError::Io {
                    what: "creating the sandbox directory",
                    source,
                },
                HandOverError::RootDisk(message) => LifecycleError::RootDisk(message),
            })?
    };
    let mut child = match handed {
        Some(child) => child,
        None => {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.supervisor_log())
                .map_err(|source| LifecycleError::Io {
                    what: "opening the supervisor log",
                    source,
                })?;
            msb_runtime::spawn::spawn_supervisor(&daemon.supervisor_exe, &supervisor_config, &log)
                .map_err(|source| LifecycleError::Io {
                what: "spawning the supervisor",
                source,
            })?
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
    // Reap the supervisor when it ends, so it never lingers as a zombie of msbd, and keep how
    // it ended for a crash's record.
    let reaper = daemon.clone();
    daemon.supervisor_spawned(pid);
    tokio::task::spawn_blocking(move || {
        if let Ok(status) = child.wait() {
            reaper.supervisor_reaped(pid, status);
        }
    });
    spawn_monitor(daemon.clone(), sandbox_id.to_owned());

    let deadline = Instant::now() + START_TIMEOUT;
    let mut statuses = daemon.subscribe_status(sandbox_id, next);
    loop {
        let status = match status_of(daemon, sandbox_id) {
            Ok(status) => status,
            // An ephemeral sandbox is removed as soon as its run ends: a workload that exits at
            // once may be gone before this loop looks. How it ended says whether it started.
            Err(CatalogError::NotFound(_)) if row.ephemeral => {
                return started_before_removal(daemon, &row.name)
            }
            Err(e) => return Err(e.into()),
        };
        if attach.is_some() && status == SandboxStatus::Starting && dir.socket().exists() {
            return Ok(());
        }
        if status != SandboxStatus::Starting {
            break;
        }
        if Instant::now() > deadline {
            return Err(LifecycleError::StartTimeout {
                name: row.name.clone(),
                after: START_TIMEOUT,
                log: dir.supervisor_log(),
            });
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
            Some(TerminationReason::Failed) => Err(LifecycleError::StartFailed {
                message,
                exit_code: run.exit_code.unwrap_or(1),
            }),
            _ => Err(LifecycleError::RunFailed {
                message,
                log: dir.supervisor_log(),
            }),
        };
    }
    Ok(())
}

/// The start of an ephemeral sandbox that already ended and was removed: a failure if its
/// workload never started (what msbd remembers of the end says so), else done.
fn started_before_removal(daemon: &Daemon, name: &str) -> Result<(), LifecycleError> {
    match daemon.ending(name) {
        Some(WaitResponse {
            termination_reason: Some(TerminationReason::Failed),
            error: Some(message),
            exit_code,
            ..
        }) => Err(LifecycleError::StartFailed {
            message,
            exit_code: exit_code.unwrap_or(1),
        }),
        _ => Ok(()),
    }
}

/// Stops the current run (SIGTERM, then SIGKILL after `timeout_ms`; 0 kills at once) and
/// waits until it is recorded as ended. The caller holds the sandbox's operation lock.
#[tracing::instrument(name = "sandbox.stop", skip_all, fields(sandbox.id = %sandbox_id, timeout_ms))]
pub async fn stop_run(
    daemon: &Arc<Daemon>,
    sandbox_id: &str,
    timeout_ms: u64,
) -> Result<(), LifecycleError> {
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

/// Waits until the sandbox is no longer active, settling a dead supervisor's run if needed.
async fn wait_until_ended(
    daemon: &Arc<Daemon>,
    sandbox_id: &str,
    limit: Duration,
) -> Result<(), LifecycleError> {
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
            return Err(LifecycleError::StillActive {
                sandbox: sandbox_id.to_owned(),
                status,
                after: limit,
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), statuses.changed()).await;
    }
}

/// `start`: a new run of a sandbox that is not running.
pub async fn start(daemon: &Arc<Daemon>, name: &str) -> Result<SandboxInfo, LifecycleError> {
    let row = daemon.sandbox(name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    start_run(daemon, &row.id, None).await?;
    Ok(info_by_name(daemon, name)?)
}

/// `stop`: SIGTERM, then SIGKILL after `timeout_secs` (default 10; `force` kills at once).
pub async fn stop(
    daemon: &Arc<Daemon>,
    name: &str,
    force: bool,
    timeout_secs: Option<u64>,
) -> Result<SandboxInfo, LifecycleError> {
    let row = daemon.sandbox(name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    let timeout_ms = if force {
        0
    } else {
        timeout_secs
            .unwrap_or(DEFAULT_STOP_TIMEOUT_SECS)
            .saturating_mul(1000)
    };
    let before = ephemeral_before(daemon, &row)?;
    let stopped = stop_run(daemon, &row.id, timeout_ms).await;
    if let Some(before) = before {
        if removed_as_it_ended(daemon, &row.id).await {
            return Ok(as_ended(daemon, before));
        }
    }
    stopped?;
    Ok(info_by_name(daemon, name)?)
}

/// An ephemeral sandbox as it is before a stop, which removes it as its run ends.
fn ephemeral_before(
    daemon: &Daemon,
    row: &msb_store::SandboxRow,
) -> Result<Option<SandboxInfo>, CatalogError> {
    if !row.ephemeral {
        return Ok(None);
    }
    Ok(Some(sandbox_info(daemon, row.clone())?))
}

/// What `stop` and `kill` answer for an ephemeral sandbox their stop removed: what it was
/// `before`, ended as msbd remembers it.
fn as_ended(daemon: &Daemon, mut info: SandboxInfo) -> SandboxInfo {
    let ending = daemon.ending(&info.name);
    info.status = ending
        .as_ref()
        .map_or(SandboxStatus::Stopped, |ending| ending.status);
    if let Some(run) = info.runs.last_mut() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        run.ended_at
            .get_or_insert_with(|| super::info::rfc3339(now));
        if let Some(ending) = ending {
            run.exit_code = ending.exit_code;
            run.termination_reason = ending.termination_reason;
            run.error = ending.error;
        }
    }
    info
}

/// `kill`: `signal` to the workload; SIGKILL takes the whole sandbox down.
#[tracing::instrument(name = "sandbox.kill", skip_all, fields(sandbox.name = %name, signal))]
pub async fn kill(
    daemon: &Arc<Daemon>,
    name: &str,
    signal: i32,
) -> Result<SandboxInfo, LifecycleError> {
    if !(1..=64).contains(&signal) {
        return Err(LifecycleError::BadSignal(signal));
    }
    let row = daemon.sandbox(name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    transition(status_of(daemon, &row.id)?, Operation::Kill)?;
    if !supervisor_alive(daemon, &row.id) {
        apply_record(daemon, &row.id)?;
        return Ok(info_by_name(daemon, name)?);
    }
    if signal == libc::SIGKILL {
        let before = ephemeral_before(daemon, &row)?;
        let stopped = stop_run(daemon, &row.id, 0).await;
        if let Some(before) = before {
            if removed_as_it_ended(daemon, &row.id).await {
                return Ok(as_ended(daemon, before));
            }
        }
        stopped?;
    } else {
        let socket = daemon.home.sandbox(&row.id).socket();
        match supervisors::control(&socket, Control::Kill { signal }).await {
            Ok(Some(ClientEvent::Error(e))) => return Err(LifecycleError::Refused(e)),
            Ok(_) => {}
            Err(e) => return Err(LifecycleError::Unreachable(e)),
        }
    }
    Ok(info_by_name(daemon, name)?)
}

/// `rm`: removes a sandbox that is not running (with `force`, stops it first).
pub async fn remove(daemon: &Arc<Daemon>, name: &str, force: bool) -> Result<(), LifecycleError> {
    let row = daemon.sandbox(name)?;
    let lock = daemon.op_lock(&row.id);
    let _guard = lock.lock().await;
    let row = daemon.sandbox(name)?;
    let status = status_of_row(&row)?;
    if status.is_active() {
        if !force {
            return Err(LifecycleError::Active {
                name: name.to_owned(),
                status,
            });
        }
        let stopped = stop_run(daemon, &row.id, 0).await;
        // An ephemeral sandbox is removed as the end of its run is taken in (the monitor's
        // `remove_if_ephemeral`): that removal is this one.
        if row.ephemeral && removed_as_it_ended(daemon, &row.id).await {
            tracing::info!(sandbox = %name, "removed");
            return Ok(());
        }
        stopped?;
    }
    transition(status_of_row(&daemon.sandbox(name)?)?, Operation::Remove)?;
    remove_sandbox(daemon, &row.id)?;
    tracing::info!(sandbox = %name, "removed");
    Ok(())
}

/// Whether the ephemeral sandbox `sandbox_id`, whose run was just stopped, is gone from the
/// catalog (within two seconds: its monitor removes it right after taking in the run's end).
async fn removed_as_it_ended(daemon: &Daemon, sandbox_id: &str) -> bool {
    for _ in 0..200 {
        if matches!(daemon.store().sandbox_by_id(sandbox_id), Ok(None)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// `wait`: until the sandbox's run ends, then how it ended. An ephemeral sandbox removed
/// meanwhile (or just before) is answered from what msbd remembers of its end.
pub async fn wait(daemon: &Arc<Daemon>, name: &str) -> Result<WaitResponse, CatalogError> {
    let row = match daemon.sandbox(name) {
        Ok(row) => row,
        Err(CatalogError::NotFound(name)) => {
            return daemon.ending(&name).ok_or(CatalogError::NotFound(name))
        }
        Err(e) => return Err(e),
    };
    let id = row.id.clone();
    let mut statuses = daemon.subscribe_status(&id, status_of_row(&row)?);
    let mut last: Option<WaitResponse> = None;
    loop {
        let Some(row) = daemon.store().sandbox_by_id(&id)? else {
            // An ephemeral sandbox is removed once it ends: report how it ended.
            return last
                .or_else(|| daemon.ending(name))
                .ok_or_else(|| CatalogError::NotFound(name.to_owned()));
        };
        let mut status = status_of_row(&row)?;
        if status.is_active() && !supervisor_alive(daemon, &id) {
            status = apply_record(daemon, &id)?;
        }
        if status.is_terminal() {
            let response = ending(daemon, &row, status)?;
            if !row.ephemeral || status == SandboxStatus::Created {
                return Ok(response);
            }
            last = Some(response);
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), statuses.changed()).await;
    }
}
