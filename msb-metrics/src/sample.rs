//! One sandbox's measurements at one instant.

use serde::{Deserialize, Serialize};

/// A sandbox's measurements at one tick. Counters are cumulative for the run (`run_id`); a
/// new run starts them again from zero.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub sandbox_id: String,
    pub run_id: String,
    /// Milliseconds since the Unix epoch when the sample was taken.
    pub timestamp_ms: u64,
    /// Seconds since the run started.
    pub uptime_secs: f64,
    /// CPU time over wall time × 100 since the previous sample (100 = one core busy),
    /// clamped to cpus × 100. `None` on the first sample of a run.
    pub cpu_percent: Option<f64>,
    /// Cumulative CPU time of the sandbox's processes (cgroup `cpuacct.usage` / `cpu.stat`).
    pub vcpu_time_ns: Option<u64>,
    /// Memory in use by the sandbox (cgroup usage minus reclaimable page cache).
    pub memory_bytes: Option<u64>,
    /// `memory_limit_bytes - memory_bytes`, or the host's available memory without a limit.
    pub memory_available_bytes: Option<u64>,
    /// The effective limit (the host's memory when unlimited).
    pub memory_limit_bytes: Option<u64>,
    /// Resident set of the sandbox's processes on the host (cgroup rss + mapped file).
    pub memory_host_resident_bytes: Option<u64>,
    pub disk_read_bytes: Option<u64>,
    pub disk_write_bytes: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
    pub net_rx_packets: Option<u64>,
    pub net_tx_packets: Option<u64>,
    /// The writable root's `statfs`: `(f_blocks - f_bfree) × f_frsize`.
    pub upper_used_bytes: Option<u64>,
    /// The writable root's `statfs`: `f_bavail × f_frsize`.
    pub upper_free_bytes: Option<u64>,
    /// Host blocks allocated to the writable root's backing storage (`st_blocks × 512`).
    pub upper_host_allocated_bytes: Option<u64>,
    /// Processes in the sandbox (cgroup `pids.current`).
    pub processes: Option<u64>,
    /// The agent's latest heartbeat sequence number.
    pub heartbeat_seq: Option<u64>,
    /// Milliseconds since that heartbeat arrived.
    pub heartbeat_age_ms: Option<u64>,
    /// Exec sessions running in the sandbox.
    pub active_sessions: Option<u64>,
    /// CPU time the sampler has spent taking this run's samples so far, this one included:
    /// msb's own cost, exported as `msb.sampler.cpu`, not a measurement of the sandbox.
    pub sampler_cpu_ns: Option<u64>,
}
