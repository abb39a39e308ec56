//! The API's views of catalog rows: a sandbox with its runs.

use msb_api::{RunInfo, SandboxInfo, WaitResponse};
use msb_runtime::lifecycle::SandboxStatus;
use msb_store::{RunRow, SandboxRow};

use super::{config_of_row, status_of_row, CatalogError};
pub use crate::display::rfc3339;
use crate::state::Daemon;

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
pub fn sandbox_info(daemon: &Daemon, row: SandboxRow) -> Result<SandboxInfo, CatalogError> {
    let runs = daemon.store().runs_for(&row.id)?;
    let config = config_of_row(&row)?;
    Ok(SandboxInfo {
        status: status_of_row(&row)?,
        id: row.id,
        name: row.name,
        ephemeral: row.ephemeral,
        created_at: rfc3339(row.created_at_ms),
        labels: row.labels,
        config,
        runs: runs.into_iter().map(run_info).collect(),
    })
}

pub fn info_by_name(daemon: &Daemon, name: &str) -> Result<SandboxInfo, CatalogError> {
    sandbox_info(daemon, daemon.sandbox(name)?)
}

/// Every sandbox (only active ones unless `all`), as the API shows them.
pub fn list(daemon: &Daemon, all: bool) -> Result<Vec<SandboxInfo>, CatalogError> {
    // The rows first: the store's lock is not held while each is turned into a view.
    let rows = daemon.store().list_sandboxes()?;
    let mut out = Vec::new();
    for row in rows {
        let info = sandbox_info(daemon, row)?;
        if all || info.status.is_active() {
            out.push(info);
        }
    }
    Ok(out)
}

/// How a sandbox in a terminal `status` ended: its latest run's exit code (128 + signal for a
/// signal), termination reason and error.
pub fn ending(
    daemon: &Daemon,
    row: &SandboxRow,
    status: SandboxStatus,
) -> Result<WaitResponse, CatalogError> {
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
