//! Cgroup placement and limits for namespace sandboxes.
//!
//! A sandbox gets `<mount point>/msb/<id>` in the hierarchy of each controller msb uses (cpu,
//! cpuacct, memory, pids, io/blkio), found where that controller is actually attached (see
//! [`discover`]): on v1 and hybrid hosts one directory per v1 hierarchy, on v2 one directory in
//! the unified tree (with the controllers enabled in the parents' `cgroup.subtree_control`).
//! [`create`] makes the directories and writes the limits before PID 1 exists; the launcher
//! writes itself into each `cgroup.procs`, so PID 1 is born inside. The same directories go to
//! the metrics sampler and are removed on destroy. Why not nested below the caller's own cgroup:
//! `docs/adr/002-namespace-backend.md`.

mod discover;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use discover::{Attachment, CgroupMode, CgroupVersion, Controller, Hierarchy, HostCgroups};

use crate::error::NamespaceError;
use crate::Limits;

/// CFS period msb uses for CPU quotas (100 ms, the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts (1 ms).
const CPU_QUOTA_MIN_US: u64 = 1_000;
/// The launcher and PID 1 briefly coexist in the sandbox's pids cgroup while it starts; one more
/// task leaves PID 1 room to do anything at all.
pub const PIDS_MAX_MIN: u64 = 3;
/// The launcher and PID 1 are charged to the sandbox's memory cgroup while it starts.
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
    /// Every directory of the sandbox, each once (on v2 all controllers share one; on v1
    /// co-mounted controllers such as `cpu,cpuacct` do).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.hierarchy_dirs
    }

    fn placed(&self) -> impl Iterator<Item = &ControllerDir> {
        [&self.cpu, &self.cpuacct, &self.memory, &self.pids, &self.io]
            .into_iter()
            .flatten()
    }
}

/// Where a sandbox's cgroups go (pure): each controller's directory in the hierarchy it is
/// attached to.
pub fn plan(host: &HostCgroups, sandbox_id: &str) -> CgroupPaths {
    let relative = Path::new(PARENT_DIR).join(sandbox_id);
    let place = |controller: Controller| {
        let attachment = host.attachment(controller)?;
        Some(ControllerDir {
            version: attachment.version,
            path: attachment.mount_point.join(&relative),
        })
    };
    let mut paths = CgroupPaths {
        cpu: place(Controller::Cpu),
        cpuacct: place(Controller::CpuAcct),
        memory: place(Controller::Memory),
        pids: place(Controller::Pids),
        io: place(Controller::Io),
        hierarchy_dirs: Vec::new(),
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in paths.placed() {
        if !dirs.contains(&dir.path) {
            dirs.push(dir.path.clone());
        }
    }
    paths.hierarchy_dirs = dirs;
    paths
}

/// The file a single-threaded process writes `0` to, per directory, to move itself in (pure).
///
/// On v1 that is `tasks`: moving the calling thread is the one migration the kernel does
/// without taking the global `cgroup_threadgroup_rwsem` for writing, which otherwise waits for
/// an RCU grace period (8-15 ms here) while holding the cgroup mutex, stalling every other
/// cgroup operation on the host meanwhile (measured: 0.37 ms instead of 8 ms; ADR 002). A
/// single-threaded process is all its one thread. On v2, `cgroup.procs`.
pub(crate) fn join_files(paths: &CgroupPaths) -> Vec<PathBuf> {
    paths
        .dirs()
        .iter()
        .map(|dir| {
            let v2 = paths
                .placed()
                .any(|d| d.path == *dir && d.version == CgroupVersion::V2);
            dir.join(if v2 { "cgroup.procs" } else { "tasks" })
        })
        .collect()
}

/// [`join_files`] in two parts (pure): the files the launcher writes, and the one PID 1 writes
/// itself once it has built the sandbox's mounts, just before it execs the agent: the memory
/// cgroup's (with whatever controllers share its directory). Kernel objects PID 1's setup
/// allocates (the overlay's and the upper's dentries and inodes, mount points made in the
/// upper) are then not charged to the sandbox's memory cgroup, which otherwise stayed alive as a
/// dying cgroup after removal for as long as any of them stayed cached. Only for a v1 memory
/// hierarchy, where PID 1 moves its one thread (`tasks`) without the global lock a process
/// migration takes (ADR 002); on v2 the memory controller shares the one directory with every
/// other, and a late `cgroup.procs` write would cost the warm start its 8-15 ms. With
/// `defer_memory` false everything is in the first part.
pub(crate) fn join_files_split(
    paths: &CgroupPaths,
    defer_memory: bool,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let all = join_files(paths);
    match &paths.memory {
        Some(dir) if defer_memory && dir.version == CgroupVersion::V1 => all
            .into_iter()
            .partition(|file| file.parent() != Some(dir.path.as_path())),
        _ => (all, Vec::new()),
    }
}

/// `msb/<id>` in every mounted hierarchy (pure): where a crashed sandbox, or one started by an
/// older msb that let libcontainer create a directory in each hierarchy, may have left some.
fn every_hierarchy_dir(host: &HostCgroups, sandbox_id: &str) -> Vec<PathBuf> {
    let relative = Path::new(PARENT_DIR).join(sandbox_id);
    host.hierarchies
        .iter()
        .map(|h| h.mount_point.join(&relative))
        .collect()
}

/// Creates the sandbox's directories and writes the limits. On error, removes what it created.
pub(crate) fn create(paths: &CgroupPaths, limits: &Limits) -> Result<(), NamespaceError> {
    let result = create_and_limit(paths, limits);
    if result.is_err() {
        let _ = remove(paths, Duration::from_millis(100));
    }
    result
}

/// Writes the limits into directories that exist (a claimed sandbox's, which it is in).
pub(crate) fn write_limits(paths: &CgroupPaths, limits: &Limits) -> Result<(), NamespaceError> {
    create_and_limit(paths, limits)
}

fn create_and_limit(paths: &CgroupPaths, limits: &Limits) -> Result<(), NamespaceError> {
    let failed = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| NamespaceError::Cgroup { op, path, source }
    };
    for dir in paths.dirs() {
        let v2 = paths
            .placed()
            .any(|d| d.path == *dir && d.version == CgroupVersion::V2);
        if v2 {
            enable_v2_controllers(paths, dir)?;
        }
        std::fs::create_dir_all(dir).map_err(failed("create", dir))?;
    }
    let write = |dir: &Option<ControllerDir>, v1: &str, v2: &str, value: String| {
        let Some(dir) = dir else {
            return Ok(());
        };
        let file = dir.path.join(match dir.version {
            CgroupVersion::V1 => v1,
            CgroupVersion::V2 => v2,
        });
        std::fs::write(&file, value).map_err(failed("write", &file))
    };
    if let Some(cpus) = limits.cpus {
        let quota = cpu_quota_us(cpus);
        match paths.cpu.as_ref().map(|d| d.version) {
            Some(CgroupVersion::V1) => {
                write(
                    &paths.cpu,
                    "cpu.cfs_period_us",
                    "",
                    CPU_PERIOD_US.to_string(),
                )?;
                write(&paths.cpu, "cpu.cfs_quota_us", "", quota.to_string())?;
            }
            _ => write(
                &paths.cpu,
                "",
                "cpu.max",
                format!("{quota} {CPU_PERIOD_US}"),
            )?,
        }
    }
    if let Some(bytes) = limits.memory_bytes {
        write(
            &paths.memory,
            "memory.limit_in_bytes",
            "memory.max",
            bytes.to_string(),
        )?;
        // No swap beyond the limit: v2 limits swap alone (`memory.swap.max` 0); v1 limits
        // memory and swap together (`memsw`, at least the memory limit, so written after it).
        // On v1 only when the host has swap: the kernel (6.x) then fails charges on the `memsw`
        // counter, which keeps no `failcnt`, so limit hits could no longer be counted, and a
        // host without swap has none to limit. Either file is absent when the kernel does not
        // account swap.
        if let Some(dir) = &paths.memory {
            let swap = match dir.version {
                CgroupVersion::V1 => {
                    host_has_swap().then_some(("memory.memsw.limit_in_bytes", bytes))
                }
                CgroupVersion::V2 => Some(("memory.swap.max", 0)),
            };
            if let Some((file, value)) = swap {
                let file = dir.path.join(file);
                if file.is_file() {
                    std::fs::write(&file, value.to_string()).map_err(failed("write", &file))?;
                }
            }
        }
    }
    if let Some(max) = limits.pids_max {
        write(&paths.pids, "pids.max", "pids.max", max.to_string())?;
    }
    Ok(())
}

/// Whether the host has swap (`SwapTotal` above 0 in `/proc/meminfo`).
pub fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .is_some_and(|kib| kib > 0)
}

/// On the unified tree a child can use a controller only if every ancestor below the root
/// enables it in `cgroup.subtree_control`: the mount point's and `msb`'s.
fn enable_v2_controllers(paths: &CgroupPaths, dir: &Path) -> Result<(), NamespaceError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let Some(root) = parent.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(parent).map_err(|source| NamespaceError::Cgroup {
        op: "create",
        path: parent.to_path_buf(),
        source,
    })?;
    let mut wanted: Vec<&str> = Vec::new();
    for (placed, name) in [
        (&paths.cpu, "cpu"),
        (&paths.memory, "memory"),
        (&paths.pids, "pids"),
        (&paths.io, "io"),
    ] {
        if placed
            .as_ref()
            .is_some_and(|d| d.version == CgroupVersion::V2)
        {
            wanted.push(name);
        }
    }
    for level in [root, parent] {
        let file = level.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&file).unwrap_or_default();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|name| !enabled.split_whitespace().any(|e| e == **name))
            .map(|name| format!("+{name}"))
            .collect();
        if !missing.is_empty() {
            std::fs::write(&file, missing.join(" ")).map_err(|source| NamespaceError::Cgroup {
                op: "enable controllers",
                path: file.clone(),
                source,
            })?;
        }
    }
    Ok(())
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

/// Moves every directory of `from` to the same controller's directory in `target` (another
/// sandbox's plan from the same host layout): cgroupfs allows a rename within one parent, and
/// the tasks stay. On error nothing moved.
pub(crate) fn rename(from: &CgroupPaths, target: &CgroupPaths) -> Result<(), String> {
    let pairs: Vec<(&PathBuf, &PathBuf)> = from.dirs().iter().zip(target.dirs()).collect();
    if pairs.len() != from.dirs().len() || pairs.len() != target.dirs().len() {
        return Err("the host's cgroup layout changed since the cgroups were made".into());
    }
    for (done, (old, new)) in pairs.iter().enumerate() {
        if let Err(e) = std::fs::rename(old, new) {
            for (old, new) in &pairs[..done] {
                let _ = std::fs::rename(new, old);
            }
            return Err(format!(
                "renaming {} to {}: {e}",
                old.display(),
                new.display()
            ));
        }
    }
    Ok(())
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
                    // The last task's exit is being accounted; that takes microseconds.
                    std::thread::sleep(Duration::from_millis(1));
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
    let mut paths = plan(&host, sandbox_id);
    paths.hierarchy_dirs = every_hierarchy_dir(&host, sandbox_id);
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

/// Removes the placeholder cgroups (`msb/warm-<pid>`) of warm launchers that are gone: no task
/// in them and no live process `<pid>` (the supervisor that made them). Returns their names.
pub fn remove_stale_warm_cgroups() -> io::Result<Vec<String>> {
    let host = HostCgroups::read()?;
    let mut names: Vec<String> = Vec::new();
    for hierarchy in &host.hierarchies {
        let Ok(entries) = std::fs::read_dir(hierarchy.mount_point.join(PARENT_DIR)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `warm-<pid>` or `warm-<pid>-spare`: the supervisor's pid first.
            let Some(pid) = name
                .strip_prefix(crate::WARM_PREFIX)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            // A zombie is dead: a supervisor killed with its msbd is reparented to the host's
            // init and may not be reaped yet when the next msbd looks.
            let owner_alive = pid
                .parse::<i32>()
                .is_ok_and(|pid| msb_host::process::is_alive(pid, None));
            let busy = std::fs::read_to_string(entry.path().join("cgroup.procs"))
                .map(|procs| !procs.trim().is_empty())
                .unwrap_or(false);
            if !owner_alive
                && !busy
                && std::fs::remove_dir(entry.path()).is_ok()
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Where a sandbox's cgroups are on this host (they exist while it runs).
pub fn sandbox_cgroups(sandbox_id: &str) -> io::Result<CgroupPaths> {
    Ok(plan(&HostCgroups::read()?, sandbox_id))
}
