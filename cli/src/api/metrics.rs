//! Metrics in the API: the live report (microsandbox's `msb metrics --format json` keys, in
//! its order, then msb's additions) and the capacity report.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One sandbox's latest measurements. The first 18 keys are microsandbox's, in its order;
/// a field whose source is missing is `null`, never a made-up zero.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct MetricsReport {
    pub name: String,
    /// `running`, `stalled` (no sample for max(3 × interval, 3 s)) or `exited`.
    pub state: String,
    pub cpus: Option<f64>,
    /// RFC 3339 time of the sample.
    pub timestamp: String,
    pub cpu_percent: Option<f64>,
    pub vcpu_time_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub memory_host_resident_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub disk_read_bytes: Option<u64>,
    pub disk_write_bytes: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
    pub upper_used_bytes: Option<u64>,
    pub upper_free_bytes: Option<u64>,
    pub upper_host_allocated_bytes: Option<u64>,
    pub uptime_secs: f64,
    // msb's additions.
    pub sandbox_id: String,
    pub run_id: String,
    pub net_rx_packets: Option<u64>,
    pub net_tx_packets: Option<u64>,
    pub processes: Option<u64>,
    pub heartbeat_seq: Option<u64>,
    pub heartbeat_age_ms: Option<u64>,
    pub active_sessions: Option<u64>,
}

/// What this host has and what its sandboxes have been given and use.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct CapacityReport {
    pub host_cpus: u64,
    pub host_memory_bytes: Option<u64>,
    pub host_memory_available_bytes: Option<u64>,
    /// Sum of running sandboxes' `--cpus` (sandboxes without a quota are not counted).
    pub cpus_committed: f64,
    /// Running sandboxes without a CPU quota.
    pub sandboxes_without_cpu_limit: u64,
    /// Sum of running sandboxes' `--memory`.
    pub memory_committed_bytes: u64,
    pub sandboxes_without_memory_limit: u64,
    /// Sum of running sandboxes' latest `cpu_percent`.
    pub cpu_percent_used: f64,
    /// Sum of running sandboxes' latest `memory_bytes`.
    pub memory_used_bytes: u64,
    pub msb_home_free_bytes: Option<u64>,
    pub sandboxes: Vec<SandboxHeadroom>,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct SandboxHeadroom {
    pub name: String,
    pub cpus: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_limit_bytes: Option<u64>,
    /// `memory_limit_bytes - memory_bytes`.
    pub memory_headroom_bytes: Option<u64>,
    pub upper_free_bytes: Option<u64>,
}
