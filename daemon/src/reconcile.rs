//! msbd's start-up: every sandbox in the catalog is reconciled with what is on the host.
//!
//! Live supervisors are reattached (a monitor each, `service/monitor.rs`), dead ones' runs are
//! settled (`service/record.rs`), ephemeral leftovers and sandbox directories without a catalog
//! row are swept, and what a crash left in the trash is deleted.

use std::sync::Arc;

use msb_runtime::process::is_alive;
use msb_runtime::run_record::RunRecord;

use super::service::monitor::spawn_monitor;
use super::service::record::apply_record;
use super::service::removal::{remove_sandbox, RemovalError};
use super::service::{status_of_row, CatalogError};
use super::state::Daemon;
use super::trash::empty_trash_in_background;

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
    if let Err(e) = msb_runtime::backend::clean_up_after_crash(sandbox_id, &dir) {
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
