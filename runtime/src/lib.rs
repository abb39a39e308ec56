//! The sandbox runtime: lifecycle rules, configuration, the supervisor process and the
//! isolation backends it drives.
//!
//! - [`lifecycle`]: statuses, the one transition table, termination reasons.
//! - [`config`]: what a sandbox is asked to be, validated before anything exists.
//! - [`supervisor`]: the per-sandbox process (agent channel, sessions, timers, run record).
//! - [`backend`]: isolation (namespace now; microVM later) behind one trait.
//! - [`spawn`]: how msbd starts a supervisor with its config on an inherited fd.
//! - [`paths`], [`run_record`], [`logs`], [`process`], [`rootfs`]: the files and host facts
//!   shared by msbd and supervisors.

pub mod backend;
pub mod config;
pub mod framing;
pub mod idmap;
pub mod ids;
pub use msb_api::lifecycle;
pub mod logs;
pub mod paths;
pub mod process;
pub mod rootfs;
pub mod run_record;
pub mod spawn;
pub mod supervisor;
