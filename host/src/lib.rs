//! What the `msb` client, msbd and supervisors share about the host, without the runtime: a
//! leaf crate (std, and nix for `umask` and `geteuid`), so that the static `msb` links no
//! isolation backend.
//!
//! - [`paths`]: where everything lives under `MSB_HOME`.
//! - [`process`]: process identity and liveness from `/proc`.
//! - [`private`]: `MSB_HOME` 0700, the files under it 0600, msbd's umask.
//! - [`clock`]: wall-clock times as the records and the API carry them.

pub mod clock;
pub mod paths;
pub mod private;
pub mod process;
