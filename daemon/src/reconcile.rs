//! Keeping the catalog true to what supervisors report.
//!
//! Supervisors write `run.json` and ring their watch connections; [`apply_record`] folds the
//! record into the catalog through the lifecycle state machine. A monitor task per active
//! sandbox holds the watch connection; its end of stream means the supervisor is gone, and a
//! run that was not recorded as ended is then a crash (or a stop, if it was draining).
//! [`startup`] does the same for every sandbox when msbd (re)starts: reattach the live,
//! reconcile the dead, sweep ephemeral leftovers.

use std::sync::Arc;
use std::time::Duration;

use msb_protocol::session::ClientEvent;
use msb_runtime::framing::read_frame;
use msb_runtime::lifecycle::{end_cause, transition, Operation, SandboxStatus, TerminationReason};
use msb_runtime::process::is_alive;
use msb_runtime::run_record::{RunPhase, RunRecord};
use msb_store::{EventRecord, RunRow};

use super::service::removal::{
    empty_trash_in_background, remove_if_ephemeral, remove_sandbox, RemovalError,
};
use super::service::{status_of_row, CatalogError};
use super::state::Daemon;
use super::supervisors;

/// Folds the supervisor's run record (and whether it still lives) into the catalog.
/// Returns the sandbox's status afterwards.
pub fn apply_record(daemon: &Daemon, sandbox_id: &str) -> Result<SandboxStatus, CatalogError> {
    let mut store = daemon.store();
    let Some(sandbox) = store.sandbox_by_id(sandbox_id)? else {
        return Err(CatalogError::NotFound(sandbox_id.to_owned()));
    };
    let current = status_of_row(&sandbox)?;
    let Some(mut run) = store.latest_run(sandbox_id)? else {
        return Ok(current);
    };
    let record = RunRecord::read(&daemon.home.sandbox(sandbox_id).run_record())
        .ok()
        .filter(|r| r.run_id == run.id);
    let supervisor_alive = supervisor_of_run_alive(&run);
    if let Some(record) = &record {
        daemon.telemetry.boot_progress(record);
    }

    let mut ops: Vec<Operation> = Vec::new();
    if let Some(record) = &record {
        copy_record(&mut run, record);
        match record.phase {
            RunPhase::Starting => {}
            RunPhase::Running => ops.push(Operation::Ready),
            RunPhase::Draining => ops.push(Operation::Stop),
            RunPhase::Exited if record.reason == Some(TerminationReason::InternalError) => {
                ops.push(Operation::Crash)
            }
            RunPhase::Exited => ops.push(Operation::Exit),
        }
    }
    let ended = record.as_ref().is_some_and(|r| r.phase == RunPhase::Exited);
    let crashed = !ended && !supervisor_alive && current.is_active();
    if crashed {
        // The supervisor died without recording an end.
        ops = vec![Operation::Crash];
        run.ended_at_ms = Some(msb_store::catalog::now_ms());
        let draining = current == SandboxStatus::Draining
            || record
                .as_ref()
                .is_some_and(|r| r.phase == RunPhase::Draining);
        run.termination_reason = Some(
            if draining {
                TerminationReason::ShutdownRequested
            } else {
                TerminationReason::InternalError
            }
            .to_string(),
        );
        run.error.get_or_insert_with(|| {
            "the supervisor exited without recording the end of the run".to_owned()
        });
        // The supervisor cannot clean up any more: its sandbox's processes and cgroups remain.
        // Released before the status says the run is over (a `stop` that returns Crashed has
        // nothing left behind), without holding the store meanwhile.
        drop(store);
        if let Err(e) = msb_runtime::backend::clean_up_after_crash(sandbox_id) {
            tracing::warn!(sandbox = %sandbox.name, "cleaning up after the crash: {e}");
        }
        store = daemon.store();
    }
    // The first time the run is seen ended: why, as an event and msb.sandbox.runs.ended.
    if run.ended_at_ms.is_some() && run.end_cause.is_none() {
        let reason = run
            .termination_reason
            .as_deref()
            .and_then(|r| r.parse::<TerminationReason>().ok());
        let cause = end_cause(reason, run.signal, run.oom_kills);
        run.end_cause = Some(cause.to_owned());
        daemon.telemetry.run_ended(cause);
        store.append_event(&EventRecord {
            ts_ms: run.ended_at_ms.unwrap_or_else(msb_store::catalog::now_ms),
            sandbox_id: Some(sandbox_id.to_owned()),
            kind: "run_ended".to_owned(),
            detail_json: serde_json::json!({
                "run_id": run.id, "cause": cause, "reason": run.termination_reason,
                "exit_code": run.exit_code, "signal": run.signal, "oom_kills": run.oom_kills,
            })
            .to_string(),
        })?;
    }
    store.update_run(&run)?;

    let mut status = current;
    for op in ops {
        match transition(status, op) {
            Ok(next) => status = next,
            Err(e) => tracing::debug!(sandbox = %sandbox.name, "{e}"),
        }
    }
    if status != current {
        if let Some(kills) = record.as_ref().and_then(|r| r.oom_kills).filter(|n| *n > 0) {
            store.append_event(&EventRecord {
                ts_ms: run.ended_at_ms.unwrap_or_else(msb_store::catalog::now_ms),
                sandbox_id: Some(sandbox_id.to_owned()),
                kind: "oom_kill".to_owned(),
                detail_json:
                    serde_json::json!({"run_id": run.id, "oom_kills": kills, "signal": run.signal})
                        .to_string(),
            })?;
        }
        store.set_status(sandbox_id, status.as_str())?;
        let detail = serde_json::json!({
            "from": current, "to": status,
            "run_id": run.id, "reason": run.termination_reason, "exit_code": run.exit_code,
            "signal": run.signal, "error": run.error,
        });
        store.append_event(&EventRecord {
            ts_ms: msb_store::catalog::now_ms(),
            sandbox_id: Some(sandbox_id.to_owned()),
            kind: "status".to_owned(),
            detail_json: detail.to_string(),
        })?;
        tracing::info!(sandbox = %sandbox.name, "{current} -> {status}");
    }
    drop(store);
    daemon.publish_status(sandbox_id, status);
    Ok(status)
}

/// The run's supervisor (pid and start time, so a reused pid does not count) is alive.
pub fn supervisor_of_run_alive(run: &RunRow) -> bool {
    run.supervisor_pid
        .is_some_and(|pid| is_alive(pid, run.supervisor_start_ticks))
}

fn copy_record(run: &mut RunRow, record: &RunRecord) {
    run.supervisor_pid = Some(record.supervisor_pid);
    run.supervisor_start_ticks = record.supervisor_start_ticks;
    run.init_pid = record.init_pid;
    run.workload_pid = record.workload_pid.map(|p| p as i32);
    run.ended_at_ms = record.ended_at_ms.map(|t| t as i64);
    run.exit_code = record.exit_code;
    run.signal = record.signal;
    run.termination_reason = record.reason.map(|r| r.to_string());
    run.error = record.error.clone();
    run.oom_kills = record.oom_kills;
}

/// Follows one sandbox's supervisor until it exits, then settles the catalog (and removes
/// the sandbox if it was ephemeral).
pub fn spawn_monitor(daemon: Arc<Daemon>, sandbox_id: String) {
    if !daemon.monitored.lock().unwrap().insert(sandbox_id.clone()) {
        return;
    }
    tokio::spawn(async move {
        monitor(&daemon, &sandbox_id).await;
        daemon.monitored.lock().unwrap().remove(&sandbox_id);
    });
}

async fn monitor(daemon: &Arc<Daemon>, sandbox_id: &str) {
    let socket = daemon.home.sandbox(sandbox_id).socket();
    let run = daemon.store().latest_run(sandbox_id).ok().flatten();
    let alive = || run.as_ref().is_some_and(supervisor_of_run_alive);

    // The supervisor binds its socket first thing (a warm one within a millisecond or two of
    // being handed the sandbox); look again soon, then less often (10 s in all).
    let mut connection = None;
    let mut pause = Duration::from_millis(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match supervisors::watch(&socket).await {
            Ok(stream) => {
                connection = Some(stream);
                break;
            }
            Err(_) if alive() => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(25));
            }
            Err(_) => break,
        }
    }
    let interval_ms = daemon
        .store()
        .sandbox_by_id(sandbox_id)
        .ok()
        .flatten()
        .and_then(|row| {
            serde_json::from_str::<msb_runtime::config::SandboxConfig>(&row.config_json).ok()
        })
        .and_then(|config| config.metrics_interval())
        .unwrap_or(msb_runtime::config::DEFAULT_METRICS_INTERVAL_MS);
    if let Some(stream) = connection {
        let (mut stream, acknowledger) = super::ingest::split_watch(stream);
        let mut undecodable = false;
        loop {
            match read_frame::<_, ClientEvent>(&mut stream).await {
                Ok(Some(ClientEvent::RecordChanged)) => match apply_record(daemon, sandbox_id) {
                    // An ephemeral sandbox's supervisor records the end as soon as the sandbox
                    // is down (before its own clean-up): remove it now, so `msb run` returns
                    // without waiting for the supervisor to exit. Nothing of it is ingested
                    // after that.
                    Ok(status) if status.is_terminal() => {
                        if remove_if_ephemeral(daemon, sandbox_id) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("reconciling {sandbox_id}: {e}"),
                },
                Ok(Some(ClientEvent::Samples(samples))) => daemon.ingest(&samples, interval_ms),
                Ok(Some(ClientEvent::SampleBatch { first_seq, samples })) => {
                    super::ingest::take_in(daemon, (first_seq, samples), interval_ms, &acknowledger)
                }
                Ok(Some(_)) => {}
                // A whole frame this msbd cannot read: a supervisor started by another msb
                // version (its run goes on; stop, logs and exec do not depend on these frames).
                Err(msb_protocol::FrameError::Malformed(e)) => {
                    if !undecodable {
                        tracing::warn!(
                            "sandbox {sandbox_id}: a frame from its supervisor does not decode ({e}); \
                             it probably runs another msb version: its metrics are skipped until \
                             it is restarted"
                        );
                        undecodable = true;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    // The connection ended: the supervisor is exiting. If it recorded the end of the run, that
    // is all we need; otherwise let it finish dying before judging.
    let run_record = daemon.home.sandbox(sandbox_id).run_record();
    let recorded_end = || RunRecord::read(&run_record).is_ok_and(|r| r.phase == RunPhase::Exited);
    for _ in 0..2000 {
        if recorded_end() || !alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match apply_record(daemon, sandbox_id) {
        Ok(status) if status.is_terminal() => {
            remove_if_ephemeral(daemon, sandbox_id);
        }
        Ok(status) => {
            tracing::warn!("{sandbox_id} is still {status} after its supervisor's socket closed")
        }
        Err(e) => tracing::warn!("reconciling {sandbox_id}: {e}"),
    }
}

/// A sandbox directory without a catalog row may still have a supervisor: the catalog reaches
/// the file a moment after msbd acts (ADR 008), so a crash in that moment loses the row of a
/// sandbox that was just starting. Its supervisor and processes are ended, its cgroups removed.
fn stop_orphan(daemon: &Daemon, sandbox_id: &str) {
    let dir = daemon.home.sandbox(sandbox_id);
    if let Ok(record) = RunRecord::read(&dir.run_record()) {
        if is_alive(record.supervisor_pid, record.supervisor_start_ticks) {
            tracing::warn!(
                pid = record.supervisor_pid,
                "killing the supervisor of sandbox {sandbox_id}, which has no catalog row"
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(record.supervisor_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = msb_runtime::backend::clean_up_after_crash(sandbox_id) {
        tracing::warn!("cleaning up after orphaned sandbox {sandbox_id}: {e}");
    }
}

/// What msbd's start-up reconciliation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("reconciling the catalog")]
    Catalog(#[from] CatalogError),
    #[error("sweeping an ephemeral leftover")]
    Removal(#[from] RemovalError),
}

impl From<msb_store::StoreError> for StartupError {
    fn from(e: msb_store::StoreError) -> Self {
        StartupError::Catalog(CatalogError::Store(e))
    }
}

/// At msbd start: reattach live supervisors, settle dead ones, sweep ephemeral leftovers and
/// sandbox directories with no catalog row.
pub fn startup(daemon: &Arc<Daemon>) -> Result<(), StartupError> {
    let sandboxes = daemon.store().list_sandboxes()?;
    for sandbox in &sandboxes {
        let status = status_of_row(sandbox)?;
        let status = if status.is_active() {
            apply_record(daemon, &sandbox.id)?
        } else {
            status
        };
        if status.is_active() {
            tracing::info!(sandbox = %sandbox.name, "reattaching to live supervisor");
            spawn_monitor(daemon.clone(), sandbox.id.clone());
        } else if sandbox.ephemeral {
            tracing::info!(sandbox = %sandbox.name, "sweeping ephemeral leftover");
            remove_sandbox(daemon, &sandbox.id)?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(daemon.home.trash()) {
        for entry in entries.flatten() {
            empty_trash_in_background(entry.path());
        }
    }
    let known: std::collections::HashSet<_> = sandboxes.iter().map(|s| s.id.clone()).collect();
    if let Ok(entries) = std::fs::read_dir(daemon.home.sandboxes()) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&id) {
                tracing::info!("sweeping orphaned sandbox directory {id}");
                stop_orphan(daemon, &id);
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}
