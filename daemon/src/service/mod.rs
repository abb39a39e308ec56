//! msbd's service layer: what each operation does, independent of HTTP.
//!
//! One module per group of verbs ([`create`], [`lifecycle`], [`removal`], [`info`],
//! [`capacity`]); each returns its own error type, holding only what that operation can fail
//! with, with the sandbox and state in fields. The routes (`routes/`) parse a request, call one
//! function here and map its error to a status code in one place (`error.rs`); the background
//! work (`reconcile.rs`) calls the same functions. Nothing here depends on `routes/`.

pub mod capacity;
pub mod create;
pub mod info;
pub mod lifecycle;
pub mod removal;

#[cfg(test)]
mod tests;

use msb_runtime::lifecycle::SandboxStatus;
use msb_store::{SandboxRow, StoreError};

use crate::state::Daemon;

/// Reading a sandbox's catalog rows.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no sandbox named {0:?}")]
    NotFound(String),
    /// A row this msbd cannot read (written by another version, or damaged).
    #[error("the catalog entry of sandbox {sandbox} has an unreadable {what}: {detail}")]
    Unreadable {
        sandbox: String,
        what: &'static str,
        detail: String,
    },
    #[error("store")]
    Store(#[from] StoreError),
}

/// The row's status.
pub fn status_of_row(row: &SandboxRow) -> Result<SandboxStatus, CatalogError> {
    row.status.parse().map_err(|e| CatalogError::Unreadable {
        sandbox: row.name.clone(),
        what: "status",
        detail: format!("{e}"),
    })
}

/// The current status of the sandbox with id `sandbox_id`.
pub fn status_of(daemon: &Daemon, sandbox_id: &str) -> Result<SandboxStatus, CatalogError> {
    let row = daemon
        .store()
        .sandbox_by_id(sandbox_id)?
        .ok_or_else(|| CatalogError::NotFound(sandbox_id.to_owned()))?;
    status_of_row(&row)
}

/// The stored configuration of a sandbox.
pub fn config_of_row(row: &SandboxRow) -> Result<msb_runtime::config::SandboxConfig, CatalogError> {
    serde_json::from_str(&row.config_json).map_err(|e| CatalogError::Unreadable {
        sandbox: row.name.clone(),
        what: "configuration",
        detail: e.to_string(),
    })
}
