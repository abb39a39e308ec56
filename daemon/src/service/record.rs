//! Keeping the catalog true to what supervisors report: a supervisor writes `run.json` and rings
//! its watch connections; [`apply_record`] folds the record (and whether the supervisor still
//! lives) into the catalog through the lifecycle state machine, records how a run ended, and
//! takes a dead supervisor's unrecorded end as a crash (or a stop, if it was draining).

use msb_runtime::lifecycle::{end_cause, transition, Operation, SandboxStatus, TerminationReason};
use msb_runtime::process::is_alive;
use msb_runtime::run_record::{RunPhase, RunRecord};
use msb_store::{EventRecord, RunRow};

use super::{status_of_row, CatalogError};
use crate::state::Daemon;

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
    // A run whose end is in the catalog keeps it: the record of a supervisor that died is
    // older than the crash recorded for it (by a concurrent call of this, which releases the
    // store while it cleans up after the crash).
    if let Some(record) = record.as_ref().filter(|_| run.ended_at_ms.is_none()) {
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
        // The supervisor cannot clean up any more: its sandbox's processes and cgroups remain.
        // Released before the status says the run is over (a `stop` that returns Crashed has
        // nothing left behind), without holding the store meanwhile (nor while how the
        // supervisor died is waited for).
        drop(store);
        let supervisor_end = run
            .supervisor_pid
            .and_then(|pid| daemon.supervisor_exit(pid));
        run.error.get_or_insert_with(|| {
            crash_message(
                &daemon.home.sandbox(sandbox_id).supervisor_log(),
                supervisor_end,
            )
        });
        if let Err(e) =
            msb_runtime::backend::clean_up_after_crash(sandbox_id, &daemon.home.sandbox(sandbox_id))
        {
            tracing::warn!(sandbox = %sandbox.name, "cleaning up after the crash: {e}");
        }
        store = daemon.store();
        // Another call recorded this crash while the store was released: its record stands
        // (one end, one `run_ended` event and count per run).
        if store
            .latest_run(sandbox_id)?
            .is_some_and(|stored| stored.id == run.id && stored.ended_at_ms.is_some())
        {
            let status = match store.sandbox_by_id(sandbox_id)? {
                Some(row) => status_of_row(&row)?,
                None => current,
            };
            drop(store);
            daemon.publish_status(sandbox_id, status);
            return Ok(status);
        }
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
/// Why a run ended unrecorded, as far as msbd can tell: the supervisor's last log line (a panic,
/// a failed system call) says more than the bare fact.
/// `end`: how the supervisor ended, when msbd knows (it was msbd's child).
fn crash_message(log: &std::path::Path, end: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    let bare = match end.and_then(|end| end.signal().map(|signal| (end, signal))) {
        Some((_, signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!(
                "the supervisor was killed by signal {signal} ({name}) before it recorded the end of the run"
            ),
            Err(_) => format!(
                "the supervisor was killed by signal {signal} before it recorded the end of the run"
            ),
        },
        None => match end.and_then(|end| end.code()) {
            Some(code) => format!(
                "the supervisor exited with status {code} without recording the end of the run"
            ),
            None => "the supervisor exited without recording the end of the run".to_owned(),
        },
    };
    match last_log_line(log) {
        Some(line) => format!("{bare}; its log ends: {line}"),
        None => bare,
    }
}

/// The last non-empty line of a log from its last 4 KiB, with the one before it (a panic's
/// message follows the line naming where), skipping Rust's `note:` hints and the log's own
/// `INFO`/`DEBUG`/`TRACE` lines (which say how a run went, not why it broke: a killed
/// supervisor's log ends with them); at most 400 characters.
fn last_log_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.take(4096).read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: ") && !routine(l))
        .rev()
        .take(2)
        .collect();
    lines.reverse();
    let joined = lines.join(" ");
    (!joined.is_empty()).then(|| joined.chars().take(400).collect())
}

/// A line below `WARN`: the supervisor's logger's (`<time>  INFO <message>`) or the agent's
/// (`msb-agentd: INFO <message>`).
fn routine(line: &str) -> bool {
    matches!(
        line.split_whitespace().nth(1),
        Some("INFO" | "DEBUG" | "TRACE")
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_names_the_last_line_of_the_supervisor_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("supervisor.log");
        assert_eq!(
            crash_message(&log, None),
            "the supervisor exited without recording the end of the run"
        );
        let mut text = "x".repeat(10_000);
        text.push_str(
            "\nthread 'main' panicked at run.rs:1:2:\nboom\nnote: run with `RUST_BACKTRACE=1`\n\n",
        );
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            crash_message(&log, None),
            "the supervisor exited without recording the end of the run; its log ends: \
             thread 'main' panicked at run.rs:1:2: boom"
        );
        std::fs::write(&log, "y".repeat(1000)).unwrap();
        assert_eq!(last_log_line(&log).unwrap().len(), 400);
        // Routine lines after the last warning do not hide it; a log of routine lines only
        // says nothing more than the bare fact.
        std::fs::write(
            &log,
            "2026-12-06T21:28:36.1Z  WARN the disk is nearly full\n\
             2026-12-06T21:28:36.8Z  INFO cpu_pressure_some_us is null: no pressure files\n",
        )
        .unwrap();
        assert_eq!(
            last_log_line(&log).unwrap(),
            "2026-12-06T21:28:36.1Z  WARN the disk is nearly full"
        );
        // The agent's routine lines too (a session started, its shutdown).
        std::fs::write(
            &log,
            "2026-12-06T21:28:36.1Z  WARN the disk is nearly full\n\
             msb-agentd: INFO session 0: started sleep as pid 3\n\
             msb-agentd: INFO shutting down (grace 1000 ms)\n",
        )
        .unwrap();
        assert_eq!(
            last_log_line(&log).unwrap(),
            "2026-12-06T21:28:36.1Z  WARN the disk is nearly full"
        );
        std::fs::write(&log, "2026-12-06T21:28:36.8Z  INFO started\n").unwrap();
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                crash_message(&log, Some(std::process::ExitStatus::from_raw(9))),
                "the supervisor was killed by signal 9 (SIGKILL) before it recorded the end of \
                 the run"
            );
            assert_eq!(
                crash_message(&log, Some(std::process::ExitStatus::from_raw(3 << 8))),
                "the supervisor exited with status 3 without recording the end of the run"
            );
        }
        assert_eq!(
            crash_message(&log, None),
            "the supervisor exited without recording the end of the run"
        );
    }
}
