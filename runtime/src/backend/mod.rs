//! Isolation backends, behind one small trait the supervisor drives.
//!
//! Only `namespace` exists so far; `microvm` (msb_krun) will implement the same trait.

mod namespace;
mod network;

use std::os::fd::OwnedFd;

/// Host cgroup facts, for `msb doctor`.
pub use msb_namespace::{
    host_cgroups, remove_stale_warm_cgroups, sandbox_cgroups, CgroupMode, CgroupPaths,
    CgroupReport, CgroupVersion, ControllerDir,
};

use crate::config::SupervisorConfig;

/// A started sandbox whose PID 1 is the agent.
pub trait Backend: Send + Sync {
    /// Host pid of the sandbox's PID 1.
    fn init_pid(&self) -> i32;
    /// Blocks until PID 1 has exited (and is reaped).
    fn wait_exit(&self);
    /// Ends the sandbox at once (SIGKILL to PID 1, which takes its pid namespace with it).
    fn kill(&self);
    /// Releases everything the sandbox held on the host (cgroups, mounts, state). Call after
    /// PID 1 has exited.
    fn destroy(&self) -> Result<(), String>;
    /// The sandbox's cgroup directories, where the sampler reads CPU, memory, I/O and pids.
    fn cgroups(&self) -> Option<CgroupPaths> {
        None
    }
    /// The network's counters; `None` under `--no-network`.
    fn net_counters(&self) -> Option<std::sync::Arc<msb_net::NetCounters>> {
        None
    }
    /// The file server of `/.msb`, whose counters and quota the sampler reports.
    fn runtime_fs(&self) -> Option<std::sync::Arc<msb_fs::PassthroughFs>> {
        None
    }
    /// The file servers of the directory mounts (guest path, server), whose quotas and
    /// counters the sampler reports.
    fn mount_fs(&self) -> Vec<(std::path::PathBuf, std::sync::Arc<msb_fs::PassthroughFs>)> {
        Vec::new()
    }
    /// A handle on the writable root's upper directory when it is on a root disk of its own,
    /// for the sampler's `statfs` (it keeps describing the disk after the host mount goes).
    fn root_disk(&self) -> Option<std::fs::File> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Namespace(#[from] msb_namespace::NamespaceError),
    #[error("{0}")]
    Serve(String),
    #[error("{0}")]
    Network(String),
    /// The writable root's disk could not be mounted.
    #[error("the root disk: {0}")]
    RootDisk(String),
    #[error("preparing {path}: {source}")]
    Prepare {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Work a warm supervisor does for its sandbox before the sandbox's configuration arrives:
/// for the namespace backend, a launcher forked into placeholder cgroups, and a root disk of
/// the default size (see [`WarmDisk`]).
#[derive(Debug, Default)]
pub struct Prepared {
    launcher: Option<msb_namespace::WarmLauncher>,
    disk: Option<std::sync::Arc<std::sync::Mutex<DiskState>>>,
}

/// Where a warm supervisor makes its root disk: a copy of `template` at `image` (which msbd
/// takes by renaming it into the sandbox's directory), mounted at `mount`.
#[derive(Debug)]
pub struct WarmDisk {
    pub template: std::path::PathBuf,
    pub image: std::path::PathBuf,
    pub mount: std::path::PathBuf,
}

/// A disk being made on a thread of its own while the supervisor waits for its sandbox.
#[derive(Debug)]
enum DiskState {
    Making,
    Ready(msb_namespace::disk::PreparedDisk),
    /// The sandbox came first (msbd then made its image itself): the disk is let go once made.
    Abandoned,
}

impl Prepared {
    /// Nothing prepared: the sandbox starts cold.
    pub fn none() -> Prepared {
        Prepared::default()
    }

    /// Prepares what can be (a failure is logged and leaves a cold start), with the user
    /// namespace for `id_map` when one is given.
    pub fn new(id_map: Option<crate::idmap::IdMap>) -> Prepared {
        let name = std::process::id().to_string();
        match msb_namespace::WarmLauncher::prepare_with(&name, id_map.as_ref()) {
            Ok(launcher) => Prepared {
                launcher: Some(launcher),
                disk: None,
            },
            Err(e) => {
                tracing::warn!("preparing a warm launcher (the sandbox will start cold): {e}");
                Prepared::none()
            }
        }
    }

    /// Starts making the root disk described by `disk`, on a thread of its own, for a sandbox
    /// of the home whose id map is `id_map` (after the launcher's fork, so that the sandbox's
    /// mount namespace never holds it). Only in the supervisor's own mount namespace: a disk
    /// mounted in the host's would outlive a crash. A sandbox handed over before the disk is
    /// ready does not wait for it (msbd made its image from the template then); a failure is
    /// logged, and the sandbox's disk is mounted at its start.
    pub fn with_disk(mut self, disk: WarmDisk, id_map: Option<crate::idmap::IdMap>) -> Prepared {
        if !crate::mount_ns::is_own() {
            return self;
        }
        let owner = id_map.map(|map| (map.host_uid, map.host_gid));
        let state = std::sync::Arc::new(std::sync::Mutex::new(DiskState::Making));
        let shared = state.clone();
        msb_namespace::disk::background("msb-disk-prepare", move || {
            let made = msb_namespace::disk::PreparedDisk::make(
                &disk.template,
                &disk.image,
                &disk.mount,
                owner,
            );
            let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
            match (made, &*state) {
                (Ok(prepared), DiskState::Abandoned) => prepared.discard(),
                (Ok(prepared), _) => *state = DiskState::Ready(prepared),
                (Err(e), _) => {
                    tracing::warn!("preparing a root disk (mounted at the start instead): {e}")
                }
            }
        });
        self.disk = Some(state);
        self
    }

    /// The disk made ahead of time, if it is ready; one still being made is let go.
    fn take_disk(&mut self) -> Option<msb_namespace::disk::PreparedDisk> {
        let state = self.disk.take()?;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *state, DiskState::Abandoned) {
            DiskState::Ready(disk) => Some(disk),
            _ => None,
        }
    }
}

impl Drop for Prepared {
    /// A disk nobody took (the start failed before it looked, or no sandbox came) is let go:
    /// its image deleted, on a thread [`msb_namespace::disk::finish_background`] waits for.
    fn drop(&mut self) {
        if let Some(disk) = self.take_disk() {
            disk.discard_later();
        }
    }
}

/// Starts the sandbox with `agent_fd` as the agent's end of its channel, using what was
/// prepared.
pub fn start(
    config: &SupervisorConfig,
    agent_fd: OwnedFd,
    prepared: Prepared,
) -> Result<Box<dyn Backend>, BackendError> {
    let mut prepared = prepared;
    let disk = prepared.take_disk();
    namespace::start(config, agent_fd, prepared.launcher.take(), disk)
        .map(|s| Box::new(s) as Box<dyn Backend>)
}

/// Releases what a sandbox whose supervisor died still holds on the host: its processes (the
/// agent and the workload, orphaned) and its cgroups. Safe to call when nothing is left.
pub fn clean_up_after_crash(
    sandbox_id: &str,
    dir: &crate::paths::SandboxDir,
) -> Result<(), String> {
    // The root disk's host mount (a no-op when there is none).
    msb_namespace::disk::unmount(&dir.root_disk_mount())?;
    let left = msb_namespace::remove_leftovers(sandbox_id, std::time::Duration::from_secs(3))
        .map_err(|e| format!("reading the host's cgroups: {e}"))?;
    if left.is_empty() {
        Ok(())
    } else {
        let dirs: Vec<String> = left
            .iter()
            .map(|(dir, e)| format!("{}: {e}", dir.display()))
            .collect();
        Err(format!("cgroups left behind: {}", dirs.join(", ")))
    }
}
