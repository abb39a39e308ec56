//! `drain`: the sandbox refuses new exec sessions at once, lets the running ones end (at most
//! a timeout), then stops as `stop` does; the run ends as `DrainRequested`.
//!
//! The supervisor does the work (`Control::Drain`): it marks its run record `Draining`, which
//! msbd folds into the catalog, so msbd's exec and session routes refuse new sessions too
//! (`service/exec.rs`). The sandbox's operation lock is not held while sessions finish, so a
//! `stop` or `kill` meanwhile still goes through (the first stop request decides the reason).

use std::sync::Arc;

use msb_api::SandboxInfo;
use msb_protocol::session::{ClientEvent, Control};
use msb_runtime::lifecycle::SandboxStatus;

use super::info::info_by_name;
use super::lifecycle::{stop_run, LifecycleError, DEFAULT_STOP_TIMEOUT_SECS};
use super::record::{apply_record, supervisor_of_run_alive};
use super::{status_of, CatalogError};
use crate::state::Daemon;
use crate::supervisors;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("sandbox {name:?} is {status}, not running")]
    NotRunning { name: String, status: SandboxStatus },
    #[error("the supervisor refused the drain: {0}")]
    Refused(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

impl From<msb_store::StoreError> for DrainError {
    fn from(e: msb_store::StoreError) -> Self {
        DrainError::Catalog(CatalogError::Store(e))
    }
}

/// Drains sandbox `name`: waits up to `timeout_secs` (none: as long as it takes) for its exec
/// sessions, then stops it with `stop_timeout_secs` of grace (default 10).
#[tracing::instrument(name = "sandbox.drain", skip_all, fields(sandbox.name = %name))]
pub async fn drain(
    daemon: &Arc<Daemon>,
    name: &str,
    timeout_secs: Option<u64>,
    stop_timeout_secs: Option<u64>,
) -> Result<SandboxInfo, DrainError> {
    let row = daemon.sandbox(name)?;
    let lock = daemon.op_lock(&row.id);
    {
        let _guard = lock.lock().await;
        let status = status_of(daemon, &row.id)?;
        if !status.is_active() {
            return Err(DrainError::NotRunning {
                name: name.to_owned(),
                status,
            });
        }
        let alive = daemon
            .store()
            .latest_run(&row.id)?
            .is_some_and(|run| supervisor_of_run_alive(&run));
        if !alive {
            apply_record(daemon, &row.id)?;
            return Ok(info_by_name(daemon, name)?);
        }
    }
    let grace_ms = stop_timeout_secs
        .unwrap_or(DEFAULT_STOP_TIMEOUT_SECS)
        .saturating_mul(1000);
    let control = Control::Drain {
        timeout_ms: timeout_secs.map(|s| s.saturating_mul(1000)),
        grace_ms,
    };
    let socket = daemon.home.sandbox(&row.id).socket();
    match supervisors::control(&socket, control).await {
        Ok(Some(ClientEvent::Error(e))) => return Err(DrainError::Refused(e)),
        Ok(_) => {}
        // The supervisor went away meanwhile (its run ended): what it recorded says how.
        Err(e) => tracing::debug!("drain: supervisor socket: {e}"),
    }
    // The supervisor answers once the sandbox is down; settle the catalog as stop does.
    {
        let _guard = lock.lock().await;
        stop_run(daemon, &row.id, grace_ms).await?;
    }
    Ok(info_by_name(daemon, name)?)
}
