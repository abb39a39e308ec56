//! Capacity: what the host has, and what its running sandboxes were given and use.

use msb_api::{CapacityReport, SandboxHeadroom};
use msb_store::SandboxRow;

use super::{config_of_row, status_of_row, CatalogError};
use crate::state::Daemon;

/// What the host has and what running sandboxes were given and use (also exported to Prometheus).
pub fn capacity_report(daemon: &Daemon) -> Result<CapacityReport, CatalogError> {
    let rows = daemon.store().list_sandboxes()?;
    capacity_of(daemon, &rows)
}

/// [`capacity_report`] over catalog rows the caller already has.
pub fn capacity_of(daemon: &Daemon, rows: &[SandboxRow]) -> Result<CapacityReport, CatalogError> {
    let (host_memory_bytes, host_memory_available_bytes) = meminfo();
    let mut report = CapacityReport {
        host_cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        host_memory_bytes,
        host_memory_available_bytes,
        cpus_committed: 0.0,
        sandboxes_without_cpu_limit: 0,
        memory_committed_bytes: 0,
        cpu_percent_used: 0.0,
        memory_used_bytes: 0,
        msb_home_free_bytes: nix::sys::statvfs::statvfs(daemon.home.root())
            .ok()
            .map(|s| s.blocks_available() * s.fragment_size()),
        sandboxes: Vec::new(),
    };
    for row in rows {
        if !status_of_row(row)?.is_active() {
            continue;
        }
        let config = config_of_row(row)?;
        match config.cpus {
            Some(c) => report.cpus_committed += c,
            None => report.sandboxes_without_cpu_limit += 1,
        }
        // Every sandbox has a memory limit (the default when none was asked for).
        report.memory_committed_bytes += config.memory_limit_mib() << 20;
        let sample = daemon.live.get(&row.id).map(|l| l.sample);
        let sample = sample.as_ref();
        report.cpu_percent_used += sample.and_then(|s| s.cpu_percent).unwrap_or(0.0);
        report.memory_used_bytes += sample.and_then(|s| s.memory_bytes).unwrap_or(0);
        report.sandboxes.push(SandboxHeadroom {
            name: row.name.clone(),
            cpus: config.cpus,
            cpu_percent: sample.and_then(|s| s.cpu_percent),
            memory_limit_bytes: sample.and_then(|s| s.memory_limit_bytes),
            memory_headroom_bytes: sample.and_then(|s| s.memory_available_bytes),
            upper_free_bytes: sample.and_then(|s| s.upper_free_bytes),
        });
    }
    Ok(report)
}

pub(crate) fn meminfo() -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    (kib("MemTotal:"), kib("MemAvailable:"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn meminfo_reads_this_host() {
        let (total, available) = super::meminfo();
        let (total, available) = (total.unwrap(), available.unwrap());
        assert!(total > 0 && available <= total, "{total} {available}");
    }
}
