//! What the `msb` client, msbd and supervisors share about the host, without the runtime: a
//! leaf crate (std only), so that the static `msb` links no isolation backend.
//!
//! - [`paths`]: where everything lives under `MSB_HOME`.
//! - [`process`]: process identity and liveness from `/proc`.
//! - [`clock`]: wall-clock times as the records and the API carry them.

pub mod clock;
pub mod paths;
pub mod process;
