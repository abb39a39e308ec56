//! Reading catalog rows into the runtime's types, and what can go wrong doing so: shared by
//! msbd's state (`state.rs`) and its service layer (`service/`), and depending on neither.

use msb_runtime::lifecycle::SandboxStatus;
use msb_store::{SandboxRow, StoreError};

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

/// The stored configuration of a sandbox.
pub fn config_of_row(row: &SandboxRow) -> Result<msb_runtime::config::SandboxConfig, CatalogError> {
    serde_json::from_str(&row.config_json).map_err(|e| CatalogError::Unreadable {
        sandbox: row.name.clone(),
        what: "configuration",
        detail: e.to_string(),
    })
}
