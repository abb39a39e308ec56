//! The API's views of catalog rows: a sandbox with its runs.

use std::time::{Duration, UNIX_EPOCH};

use msb_api::{RunInfo, SandboxInfo};
use msb_store::{RunRow, SandboxRow};

use super::{config_of_row, status_of_row, CatalogError};
use crate::state::Daemon;

/// RFC 3339 with milliseconds, in UTC.
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

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(super::rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }
}
