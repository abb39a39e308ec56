//! The `msb` CLI: a thin client of msbd's API (crate `msb-api`; the daemon is crate
//! `msb-daemon`).
//!
//! - [`client`]: the Rust client of that API, used by the CLI.
//! - [`commands`]: the CLI verbs.

pub use msb_api as api;

pub mod client;
pub mod commands;
