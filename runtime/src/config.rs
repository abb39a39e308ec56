//! What a supervisor is given: the sandbox's configuration (the API's, re-exported here) and the
//! run's own settings, handed over an inherited file descriptor (never argv or the environment).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use msb_api::config::*;

/// What a supervisor receives on its config fd.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SupervisorConfig {
    pub sandbox_id: String,
    pub run_id: String,
    pub config: SandboxConfig,
    /// `$MSB_HOME/sandboxes/<id>`.
    pub sandbox_dir: PathBuf,
    /// Read-only lower of the default root.
    pub default_rootfs: PathBuf,
    pub agent_binary: PathBuf,
    /// Hold the workload until the first `Attach` (foreground `msb run`), so no output is lost.
    pub wait_for_attach: bool,
    /// How the workload's standard streams are wired (a PTY for `run -t`, pipes otherwise).
    pub main_mode: msb_protocol::ExecMode,
    pub log_level: String,
    /// The host ids the sandbox's ids are (`crate::idmap`); absent from an older msbd, which
    /// then runs the sandbox without a user namespace.
    #[serde(default)]
    pub id_map: Option<crate::idmap::IdMap>,
    /// The output log's cap (`crate::logs`; rotated once past it).
    #[serde(default = "default_output_log_max_bytes")]
    pub output_log_max_bytes: u64,
    /// msbd moved the sandbox the warm supervisor booted ahead of time into the sandbox's
    /// directory (`crate::backend::bootable`): take it rather than start one.
    #[serde(default)]
    pub claim_booted: bool,
}

fn default_output_log_max_bytes() -> u64 {
    crate::logs::DEFAULT_OUTPUT_LOG_MAX_BYTES
}
