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
/// How a sandbox's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStatus {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for InitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            InitStatus::Exited(code) => write!(f, "exited with status {code}"),
            InitStatus::Signaled(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => write!(f, "was killed by signal {signal} ({name})"),
                Err(_) => write!(f, "was killed by signal {signal}"),
            },
        }
    }
}

pub trait Backend: Send + Sync {
    /// Host pid of the sandbox's PID 1.
    fn init_pid(&self) -> i32;
    /// Blocks until PID 1 has exited (and is reaped).
    fn wait_exit(&self);
    /// How PID 1 ended, once it is reaped: its exit status or the signal that killed it.
    fn init_status(&self) -> Option<InitStatus> {
        None
    }
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
    /// A second launcher, for the sandbox booted ahead of time ([`Prepared::with_boot`]); the
    /// first stays for a start that cannot take that sandbox.
    boot_launcher: Option<msb_namespace::WarmLauncher>,
    disk: Option<std::sync::Arc<std::sync::Mutex<DiskState>>>,
}

pub use namespace::{bootable, BootPlan};

/// Where a warm supervisor boots its sandbox ahead of time, and with what.
#[derive(Debug)]
pub struct WarmBoot {
    pub plan: BootPlan,
    /// The sandbox's directory while it boots, and once it runs (`spawn::warm_boot_dirs`).
    pub booting: std::path::PathBuf,
    pub booted: std::path::PathBuf,
}

/// Where a warm supervisor makes its root disk: a copy of `template` at `image` (which msbd
/// takes by renaming it into the sandbox's directory), mounted at `mount`; or the disk an
/// ephemeral run `handed_on` (`crate::hand_on`), when it passes the checks.
#[derive(Debug)]
pub struct WarmDisk {
    pub template: std::path::PathBuf,
    pub image: std::path::PathBuf,
    pub mount: std::path::PathBuf,
    pub handed_on: Option<msb_namespace::disk::HandedOnDisk>,
}

/// A disk being made on a thread of its own while the supervisor waits for its sandbox.
#[derive(Debug)]
enum DiskState {
    Making,
    Ready(msb_namespace::disk::PreparedDisk),
    /// A sandbox is booting on it (its image moved into the boot's directory, where msbd does
    /// not take it as a bare disk).
    Booting,
    /// That sandbox runs, its directory published for msbd.
    Booted(Box<namespace::Booted>),
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
                boot_launcher: None,
                disk: None,
            },
            Err(e) => {
                tracing::warn!("preparing a warm launcher (the sandbox will start cold): {e}");
                Prepared::none()
            }
        }
    }

    /// Prepares for a sandbox booted ahead of time (by [`Prepared::with_disk`], once its disk
    /// is made): a launcher with the namespaces and the user namespace for `id_map` for it, and
    /// with `spare`, a spare one, without namespaces, for a start that cannot take it (which
    /// otherwise launches cold). Call while the process has one thread.
    pub fn with_boot(id_map: Option<crate::idmap::IdMap>, spare: bool) -> Prepared {
        let pid = std::process::id();
        let launchers = msb_namespace::WarmLauncher::prepare_with(
            &pid.to_string(),
            id_map.as_ref(),
        )
        .and_then(|boot| {
            let spare = spare
                .then(|| msb_namespace::WarmLauncher::prepare_spare(&format!("{pid}-spare")))
                .transpose()?;
            Ok((boot, spare))
        });
        match launchers {
            Ok((boot, spare)) => Prepared {
                launcher: spare,
                boot_launcher: Some(boot),
                disk: None,
            },
            Err(e) => {
                tracing::warn!("no sandbox booted ahead of time: {e}");
                Prepared::new(id_map)
            }
        }
    }

    /// Starts making the root disk described by `disk`, on a thread of its own, for a sandbox
    /// of the home whose id map is `id_map` (after the launcher's fork, so that the sandbox's
    /// mount namespace never holds it), then, with `boot` and a boot launcher, booting a
    /// sandbox on it. Only in the supervisor's own mount namespace: a disk mounted in the
    /// host's would outlive a crash. A sandbox handed over before the disk is ready does not
    /// wait for it (msbd made its image from the template then); a failure is logged, and the
    /// sandbox's disk is mounted at its start.
    pub fn with_disk(
        mut self,
        disk: WarmDisk,
        id_map: Option<crate::idmap::IdMap>,
        boot: Option<WarmBoot>,
    ) -> Prepared {
        if !crate::mount_ns::is_own() {
            return self;
        }
        let owner = id_map.map(|map| (map.host_uid, map.host_gid));
        let state = std::sync::Arc::new(std::sync::Mutex::new(DiskState::Making));
        let shared = state.clone();
        let boot = boot.zip(self.boot_launcher.take());
        // The boot's directory exists from now on, until the boot fails or is published: msbd
        // waits for a sandbox on its way rather than start another.
        let boot = boot.filter(|(boot, _)| {
            msb_host::private::ensure_private_dir(&boot.booting)
                .inspect_err(|e| tracing::warn!("no sandbox booted ahead of time: {e}"))
                .is_ok()
        });
        msb_namespace::disk::background("msb-disk-prepare", move || {
            let WarmDisk {
                template,
                image,
                mount,
                handed_on,
            } = disk;
            let reused = handed_on.and_then(|handed_on| {
                msb_namespace::disk::PreparedDisk::from_handed_on(handed_on, &image, &mount, owner)
                    .inspect_err(|e| tracing::warn!("not using the disk handed on: {e}"))
                    .ok()
            });
            let made = match reused {
                Some(disk) => Ok(disk),
                None => msb_namespace::disk::PreparedDisk::make(&template, &image, &mount, owner),
            };
            let prepared = match made {
                Ok(prepared) => prepared,
                Err(e) => {
                    tracing::warn!("preparing a root disk (mounted at the start instead): {e}");
                    if let Some((boot, _)) = boot {
                        let _ = std::fs::remove_dir_all(&boot.booting);
                    }
                    return;
                }
            };
            match boot {
                Some((boot, launcher)) => boot_on(&shared, prepared, &image, boot, launcher),
                None => {
                    let mut state = lock(&shared);
                    if matches!(*state, DiskState::Abandoned) {
                        drop(state);
                        prepared.discard();
                    } else {
                        *state = DiskState::Ready(prepared);
                    }
                }
            }
        });
        self.disk = Some(state);
        self
    }

    /// The disk made ahead of time, if it is ready; one still being made is let go, and so is
    /// a sandbox booted on it.
    fn take_disk(&mut self) -> Option<msb_namespace::disk::PreparedDisk> {
        let state = self.disk.take()?;
        let mut state = lock(&state);
        match std::mem::replace(&mut *state, DiskState::Abandoned) {
            DiskState::Ready(disk) => Some(disk),
            DiskState::Booted(booted) => {
                msb_namespace::disk::background("msb-boot-discard", move || booted.discard());
                None
            }
            _ => None,
        }
    }

    /// The sandbox booted ahead of time, if it runs.
    fn take_booted(&mut self) -> Option<namespace::Booted> {
        let mut state = lock(self.disk.as_ref()?);
        match std::mem::replace(&mut *state, DiskState::Abandoned) {
            DiskState::Booted(booted) => Some(*booted),
            other => {
                *state = other;
                None
            }
        }
    }
}

/// Boots a sandbox on the disk just made (`prepared`, its image at `image`), unless the start
/// came first: the image moves into the boot's directory under the state's lock (msbd takes a
/// bare disk by renaming the image too, so exactly one of the two gets it), the sandbox boots,
/// and its directory is published under its final name, which msbd looks for. The boot's
/// directory goes whenever no sandbox is published in it.
fn boot_on(
    shared: &std::sync::Mutex<DiskState>,
    prepared: msb_namespace::disk::PreparedDisk,
    image: &std::path::Path,
    boot: WarmBoot,
    launcher: msb_namespace::WarmLauncher,
) {
    let unpublished = || {
        let _ = std::fs::remove_dir_all(&boot.booting);
    };
    {
        let mut state = lock(shared);
        if matches!(*state, DiskState::Abandoned) {
            drop(state);
            prepared.discard();
            return unpublished();
        }
        let dir = crate::paths::SandboxDir::new(boot.booting.clone());
        if let Err(e) = std::fs::rename(image, dir.root_disk_image()) {
            tracing::debug!("no sandbox booted ahead of time: {e}");
            *state = DiskState::Ready(prepared);
            drop(state);
            return unpublished();
        }
        *state = DiskState::Booting;
    }
    let placeholder = format!("{}{}", msb_namespace::WARM_PREFIX, std::process::id());
    let booted = match namespace::boot(&boot.plan, &boot.booting, &placeholder, launcher, prepared)
    {
        Ok(booted) => booted,
        Err(e) => {
            tracing::warn!("booting a sandbox ahead of time: {e}");
            *lock(shared) = DiskState::Abandoned;
            return unpublished();
        }
    };
    let mut state = lock(shared);
    if !matches!(*state, DiskState::Booting) {
        // The start came while it booted.
        drop(state);
        return booted.discard();
    }
    match std::fs::rename(&boot.booting, &boot.booted) {
        Ok(()) => *state = DiskState::Booted(Box::new(booted.moved_to(&boot.booted))),
        Err(e) => {
            tracing::warn!("publishing the sandbox booted ahead of time: {e}");
            *state = DiskState::Abandoned;
            drop(state);
            booted.discard();
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// Takes the sandbox `prepared` booted ahead of time as `config`'s (msbd moved its directory
/// into place): `None` when there is none or it could not be claimed (logged; it is gone, and
/// the caller starts one as usual with `prepared`). Returns the backend and the supervisor's
/// end of the agent's channel.
pub fn claim(
    config: &SupervisorConfig,
    prepared: &mut Prepared,
) -> Option<(Box<dyn Backend>, std::os::unix::net::UnixStream)> {
    let booted = prepared.take_booted();
    if booted.is_none() {
        tracing::warn!("no sandbox booted ahead of time to claim; starting one");
    }
    match namespace::claim(config, booted?) {
        Ok((backend, host_end)) => Some((Box::new(backend) as Box<dyn Backend>, host_end)),
        Err(e) => {
            tracing::warn!("claiming the sandbox booted ahead of time (starting one): {e}");
            None
        }
    }
}

/// Lets go, on a thread of its own, of what a start did not use (a spare launcher exits and
/// its placeholder cgroups go).
pub fn release(prepared: Prepared) {
    msb_namespace::disk::background("msb-warm-release", move || drop(prepared));
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
    let launcher = prepared.launcher.take();
    if prepared.boot_launcher.is_some() || prepared.disk.is_some() {
        release(prepared);
    }
    namespace::start(config, agent_fd, launcher, disk).map(|s| Box::new(s) as Box<dyn Backend>)
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
