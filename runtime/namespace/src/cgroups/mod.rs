//! Cgroup placement and limits for namespace sandboxes.
//!
//! libcontainer creates and fills the cgroups: msb gives it the path `/msb/<id>` and the limits
//! as OCI `linux.resources`, and it creates `<mount point>/msb/<id>` in **every** hierarchy it
//! knows (on v1 and hybrid hosts each v1 hierarchy, on v2 hosts the one tree), moves PID 1 in
//! and writes the limits. msb computes the same directories itself (see [`discover`] for how a
//! controller's hierarchy is found) to hand them to the metrics sampler and to remove them on
//! destroy. Why not nested below the caller's own cgroup, and why libcontainer does the writes:
//! `docs/adr/002-namespace-backend.md`.

mod discover;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use discover::{Attachment, CgroupMode, CgroupVersion, Controller, Hierarchy, HostCgroups};

use serde_json::{json, Value};

use crate::Limits;

/// CFS period msb uses for CPU quotas (100 ms, the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts (1 ms).
const CPU_QUOTA_MIN_US: u64 = 1_000;
/// libcontainer's intermediate process and PID 1 briefly coexist in the sandbox's pids cgroup
/// while it starts; one more task leaves PID 1 room to do anything at all.
pub const PIDS_MAX_MIN: u64 = 3;
/// libcontainer's intermediate process is charged to the sandbox's memory cgroup while it
/// starts the sandbox.
pub const MEMORY_BYTES_MIN: u64 = 4 << 20;
/// The parent directory of every sandbox cgroup, in every hierarchy.
pub const PARENT_DIR: &str = "msb";

/// A controller directory of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerDir {
    pub version: CgroupVersion,
    pub path: PathBuf,
}

/// Where a sandbox's cgroup directory is, per controller; `None` when the host does not offer
/// that controller. On v2, `cpu` and `cpuacct` are the same directory (`cpu.stat`); on v1,
/// `io` is the `blkio` hierarchy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    pub cpu: Option<ControllerDir>,
    pub cpuacct: Option<ControllerDir>,
    pub memory: Option<ControllerDir>,
    pub pids: Option<ControllerDir>,
    pub io: Option<ControllerDir>,
    /// Every directory of the sandbox, one per hierarchy; see [`CgroupPaths::dirs`].
    pub hierarchy_dirs: Vec<PathBuf>,
}

impl CgroupPaths {
    /// Every directory libcontainer created for the sandbox, one per hierarchy (this includes
    /// hierarchies msb does not read, such as `cpuset` and `freezer`).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.hierarchy_dirs
    }
}

/// libcontainer's `linux.cgroupsPath` for a sandbox.
pub fn cgroups_path(sandbox_id: &str) -> String {
    format!("/{PARENT_DIR}/{sandbox_id}")
}

/// Where libcontainer puts a sandbox's cgroups (pure). On a hybrid host libcontainer drives only
/// the v1 hierarchies, so a controller attached to the cgroup2 tree there is not used.
pub fn plan(host: &HostCgroups, sandbox_id: &str) -> CgroupPaths {
    let relative = Path::new(PARENT_DIR).join(sandbox_id);
    let place = |controller: Controller| {
        let attachment = host.attachment(controller)?;
        if host.mode == CgroupMode::Hybrid && attachment.version == CgroupVersion::V2 {
            return None;
        }
        Some(ControllerDir {
            version: attachment.version,
            path: attachment.mount_point.join(&relative),
        })
    };
    let hierarchies = host.hierarchies.iter().filter(|h| match host.mode {
        CgroupMode::V2 => h.version == CgroupVersion::V2,
        _ => h.version == CgroupVersion::V1,
    });
    CgroupPaths {
        cpu: place(Controller::Cpu),
        cpuacct: place(Controller::CpuAcct),
        memory: place(Controller::Memory),
        pids: place(Controller::Pids),
        io: place(Controller::Io),
        hierarchy_dirs: hierarchies.map(|h| h.mount_point.join(&relative)).collect(),
    }
}

/// Checks limits against what the kernel and the start sequence accept.
pub fn validate_limits(limits: &Limits) -> Result<(), String> {
    if let Some(cpus) = limits.cpus {
        if !cpus.is_finite() || cpus <= 0.0 {
            return Err(format!("cpus must be a positive number, got {cpus}"));
        }
    }
    if let Some(memory) = limits.memory_bytes {
        if memory < MEMORY_BYTES_MIN {
            return Err(format!(
                "memory_bytes must be at least {MEMORY_BYTES_MIN}, got {memory}"
            ));
        }
    }
    if let Some(pids) = limits.pids_max {
        if pids < PIDS_MAX_MIN {
            return Err(format!(
                "pids_max must be at least {PIDS_MAX_MIN}, got {pids}"
            ));
        }
    }
    Ok(())
}

/// CFS quota in microseconds per [`CPU_PERIOD_US`] for a quota in cores.
pub fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(CPU_QUOTA_MIN_US)
}

/// The OCI `linux.resources` object for `limits` (pure). Devices: deny everything; libcontainer
/// then allows its default nodes (null, zero, full, random, urandom, tty, ptmx, pts).
pub fn oci_resources(limits: &Limits) -> Value {
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if let Some(cpus) = limits.cpus {
        resources["cpu"] = json!({"quota": cpu_quota_us(cpus), "period": CPU_PERIOD_US});
    }
    if let Some(bytes) = limits.memory_bytes {
        resources["memory"] = json!({"limit": bytes});
    }
    if let Some(max) = limits.pids_max {
        resources["pids"] = json!({"limit": max});
    }
    resources
}

/// Removes the sandbox's directories. A directory that is already gone counts as removed; one
/// that stays busy (`EBUSY`: a task has not finished exiting) is retried until `patience` runs
/// out. Returns the directories that could not be removed, with the reason.
pub fn remove(paths: &CgroupPaths, patience: Duration) -> Vec<(PathBuf, io::Error)> {
    let deadline = Instant::now() + patience;
    let mut left = Vec::new();
    for dir in paths.dirs() {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    left.push((dir.clone(), e));
                    break;
                }
            }
        }
    }
    left
}

/// One controller in a [`CgroupReport`].
#[derive(Clone, Debug)]
pub struct ControllerReport {
    /// `cpu`, `cpuacct`, `memory`, `pids`, `io` (v2) or `blkio` (v1).
    pub name: &'static str,
    /// `None` when the host does not offer the controller.
    pub attachment: Option<Attachment>,
    /// Whether the caller can create sandbox cgroups there (below the mount point).
    pub writable: bool,
}

/// What `msb doctor` shows about cgroups.
#[derive(Clone, Debug)]
pub struct CgroupReport {
    pub mode: CgroupMode,
    pub controllers: Vec<ControllerReport>,
    /// Set when `/proc/self/mountinfo` or `/proc/self/cgroup` could not be read.
    pub error: Option<String>,
}

/// Reports the host's cgroup mode and, per controller, where it is attached and whether msb can
/// create sandbox cgroups there.
pub fn host_cgroups() -> CgroupReport {
    match HostCgroups::read() {
        Ok(host) => CgroupReport {
            mode: host.mode,
            controllers: host
                .attachments
                .iter()
                .map(|(controller, attachment)| ControllerReport {
                    name: match (controller, attachment.as_ref().map(|a| a.version)) {
                        (Controller::Io, Some(CgroupVersion::V2)) => "io",
                        _ => controller.v1_name(),
                    },
                    writable: attachment
                        .as_ref()
                        .is_some_and(|a| discover::writable(&a.mount_point)),
                    attachment: attachment.clone(),
                })
                .collect(),
            error: None,
        },
        Err(e) => CgroupReport {
            mode: CgroupMode::None,
            controllers: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;

/// Cleans up after a sandbox whose launcher died without calling `destroy` (its supervisor was
/// killed): SIGKILLs every process still in the sandbox's cgroups, then removes the
/// directories. Returns the directories that could not be removed.
pub fn remove_leftovers(
    sandbox_id: &str,
    patience: Duration,
) -> io::Result<Vec<(PathBuf, io::Error)>> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    use nix::unistd::Pid;
    let host = HostCgroups::read()?;
    let paths = plan(&host, sandbox_id);
    let mut pids = Vec::new();
    for dir in paths.dirs() {
        let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        pids.extend(
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .map(Pid::from_raw),
        );
    }
    pids.sort();
    pids.dedup();
    for pid in &pids {
        let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    // The orphaned sandbox init may have been reparented to the caller (a child subreaper):
    // reap it, or the pids controller keeps its cgroup busy. Others' children answer ECHILD.
    let deadline = Instant::now() + patience;
    let mut waiting = pids;
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|pid| {
            matches!(
                waitpid(*pid, Some(WaitPidFlag::WNOHANG)),
                Ok(nix::sys::wait::WaitStatus::StillAlive)
            )
        });
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(remove(
        &paths,
        deadline.saturating_duration_since(Instant::now()),
    ))
}

/// Where a sandbox's cgroups are on this host (they exist while it runs).
pub fn sandbox_cgroups(sandbox_id: &str) -> io::Result<CgroupPaths> {
    Ok(plan(&HostCgroups::read()?, sandbox_id))
}
