//! msbd's service layer: what each operation does, independent of HTTP.
//!
//! One module per group of verbs ([`create`], [`lifecycle`], [`removal`], [`info`],
//! [`capacity`]) and for the supervisor side ([`record`], [`monitor`]); each returns its own
//! error type, holding only what that operation can fail
//! with, with the sandbox and state in fields. The routes (`routes/`) parse a request, call one
//! function here and map its error to a status code in one place (`error.rs`); the background
//! work (`reconcile.rs`) calls the same functions. Nothing here depends on `routes/` or
//! `reconcile.rs`, and the modules import one another without a loop: `lifecycle` uses
//! `monitor`, `record`, `removal` and `info`; `monitor` uses `record` and `removal`; `removal`
//! uses `info`; `drain` uses `lifecycle`, `record` and `info`; `exec` only the catalog.

pub mod capacity;
pub mod create;
pub mod df;
pub mod drain;
pub mod exec;
pub mod info;
pub mod lifecycle;
pub mod monitor;
pub mod record;
pub mod removal;
pub mod volumes;

#[cfg(test)]
mod tests;

use msb_runtime::lifecycle::SandboxStatus;

pub use crate::catalog::{config_of_row, status_of_row, CatalogError};
use crate::state::Daemon;

/// The current status of the sandbox with id `sandbox_id`.
pub fn status_of(daemon: &Daemon, sandbox_id: &str) -> Result<SandboxStatus, CatalogError> {
    let row = daemon
        .store()
        .sandbox_by_id(sandbox_id)?
        .ok_or_else(|| CatalogError::NotFound(sandbox_id.to_owned()))?;
    status_of_row(&row)
}
