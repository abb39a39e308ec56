//! The `msb` CLI and the `msbd` daemon.
//!
//! - [`api`]: the HTTP/JSON contract between them (and the SDKs), with its OpenAPI document.
//! - [`daemon`]: msbd: store owner, supervisor spawner, API server (feature `daemon`, on by
//!   default; the static `msb` build leaves it out).
//! - [`client`]: the Rust client of that API, used by the CLI.
//! - [`commands`]: the CLI verbs.

pub mod api;
pub mod client;
pub mod commands;
#[cfg(feature = "daemon")]
pub mod daemon;
