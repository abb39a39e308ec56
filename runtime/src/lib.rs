//! The sandbox runtime: lifecycle rules, configuration, the supervisor process and the
//! isolation backends it drives.
//!
//! - [`lifecycle`]: statuses, the one transition table, termination reasons.
//! - [`config`]: what a sandbox is asked to be, validated before anything exists.
//! - [`supervisor`]: the per-sandbox process (agent channel, sessions, timers, run record).
//! - [`backend`]: isolation (namespace now; microVM later) behind one trait.
//! - [`spawn`]: how msbd starts a supervisor with its config on an inherited fd.
//! - [`hand_on`]: an ephemeral run's root disk handed on, through msbd, to the next sandbox.
//! - [`run_record`], [`logs`], [`rootfs`]: the files shared by msbd and supervisors.
//! - [`paths`], [`process`] (crate `msb-host`) and [`framing`] (crate `msb-protocol`): re-exported
//!   from the leaf crates the client shares, which links no runtime.
//! - [`mount_ns`]: the supervisor's own mount namespace (its root disk mount stays off the host's).
//! - [`doctor`]: the host checks only the runtime can answer (`msb-supervisor --doctor`).

pub mod backend;
pub use msb_namespace::disk;
pub mod config;
pub mod doctor;
pub mod hand_on;
pub use msb_protocol::framing;
pub mod idmap;
pub mod ids;
pub use msb_api::lifecycle;
pub mod logs;
pub mod mount_ns;
pub use msb_host::{paths, process};
pub mod rootfs;
pub mod run_record;
pub mod spawn;
pub mod supervisor;
