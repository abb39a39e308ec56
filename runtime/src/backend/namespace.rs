//! The namespace backend: Linux namespaces, cgroups and seccomp through `msb-namespace`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use msb_namespace::{
    BindMount, DiskMount, Limits, Root, Sandbox, SandboxSpec, ServedMount, WarmLauncher,
};

use super::{Backend, BackendError};
use crate::config::{RootfsSource, SupervisorConfig};
use crate::paths::SandboxDir;

/// Tasks a sandbox may hold at once unless configured otherwise.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

/// The budget of `/.msb`, the sandbox's runtime directory: fixed, as microsandbox's (its issue
/// 1007: a guest wrote 60 GB there). Only growth is charged, so rewriting a file in place (a
/// heartbeat) never drains it.
pub const RUNTIME_QUOTA_BYTES: u64 = 16 << 20;

/// Worker threads of the runtime directory's file server (it carries little traffic).
const RUNTIME_SERVER_THREADS: usize = 2;
/// Worker threads of each directory mount's file server.
const MOUNT_SERVER_THREADS: usize = 2;

/// Serves `dir` (the runtime directory) over a new FUSE connection with the runtime quota;
/// returns the server and the descriptor PID 1 mounts. With an id map, `dir` is given to the
/// sandbox's root first: requests arrive with the mapped ids, and the server acts with them.
fn runtime_file_server(
    dir: &Path,
    id_map: Option<&msb_namespace::IdMap>,
) -> Result<(msb_fs::Server, OwnedFd), String> {
    if let Some(map) = id_map {
        std::os::unix::fs::lchown(dir, Some(map.host_uid), Some(map.host_gid))
            .map_err(|e| format!("giving {} to the sandbox's root: {e}", dir.display()))?;
    }
    file_server(
        dir,
        msb_fs::FsConfig {
            quota_bytes: Some(RUNTIME_QUOTA_BYTES),
            owners: id_map.map(|map| msb_fs::IdShift {
                uid_base: map.host_uid,
                gid_base: map.host_gid,
                count: map.count,
            }),
            ..msb_fs::FsConfig::default()
        },
        RUNTIME_SERVER_THREADS,
    )
}

/// Serves `dir` with `config` over a new FUSE connection; returns the server and the
/// descriptor PID 1 mounts.
fn file_server(
    dir: &Path,
    config: msb_fs::FsConfig,
    threads: usize,
) -> Result<(msb_fs::Server, OwnedFd), String> {
    let fs = msb_fs::PassthroughFs::new(dir, config).map_err(|e| e.to_string())?;
    let device = msb_fs::open_device().map_err(|e| format!("opening /dev/fuse: {e}"))?;
    let for_pid1 = device
        .try_clone()
        .map_err(|e| format!("duplicating the /dev/fuse descriptor: {e}"))?;
    let server = msb_fs::serve(device, Arc::new(fs), threads)
        .map_err(|e| format!("starting the file server: {e}"))?;
    Ok((server, for_pid1))
}

/// A directory mount's file server: the host directory as it is (owners unchanged), with the
/// mount's quota; with an id map, the sandbox's ids act as the same ids on disk, as an
/// idmapped bind would (its root is root there, its uid 1000 is 1000).
fn mount_file_server(
    volume: &crate::config::VolumeMount,
    id_map: Option<&msb_namespace::IdMap>,
    hidden: &[(u64, u64)],
) -> Result<(msb_fs::Server, OwnedFd), String> {
    let quota = (!volume.readonly).then(|| volume.quota_bytes()).flatten();
    dir_file_server(&volume.host, quota, id_map, hidden)
}

/// The (device, inode) of msb's home (`$MSB_HOME`, two levels above the sandbox's directory),
/// which directory servers never resolve: a mount of one of its ancestors must not hand the
/// sandbox the catalog, the images other sandboxes run from or the kept seccomp filter.
fn msb_home_identity(dir: &SandboxDir) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    dir.root()
        .parent()
        .and_then(Path::parent)
        // Followed: a home reached through a link is hidden as the directory it is.
        .and_then(|home| std::fs::metadata(home).ok())
        .map(|meta| vec![(meta.dev(), meta.ino())])
        .unwrap_or_default()
}

/// A host directory's file server with a quota, the sandbox's ids acting as the same ids on
/// disk (see [`mount_file_server`]): a directory mount's, or a `--rootfs DIR` root's.
fn dir_file_server(
    dir: &Path,
    quota_bytes: Option<u64>,
    id_map: Option<&msb_namespace::IdMap>,
    hidden: &[(u64, u64)],
) -> Result<(msb_fs::Server, OwnedFd), String> {
    let ids = id_map.map(|map| msb_fs::IdShift {
        uid_base: map.host_uid,
        gid_base: map.host_gid,
        count: map.count,
    });
    file_server(
        dir,
        msb_fs::FsConfig {
            quota_bytes,
            ids,
            hidden: hidden.to_vec(),
            ..msb_fs::FsConfig::default()
        },
        MOUNT_SERVER_THREADS,
    )
    .map_err(|e| format!("serving {}: {e}", dir.display()))
}

/// What [`launch`] made: a sandbox whose PID 1 runs the agent, with what serves it.
struct Launched {
    sandbox: Sandbox,
    root_disk: Option<RootDisk>,
    root_disk_upper: Option<std::fs::File>,
    runtime_server: Option<msb_fs::Server>,
    mount_servers: Vec<MountServer>,
    /// `eth0`, being made in the namespace PID 1 is in (with a warm launcher).
    early_tap: Option<super::network::EarlyTap>,
}

impl Launched {
    fn into_backend(
        self,
        config: &SupervisorConfig,
        network: Option<msb_net::RunningNetwork>,
    ) -> NamespaceBackend {
        NamespaceBackend {
            sandbox: self.sandbox,
            // A named sandbox's next start mounts the same image: its disk goes before the
            // run's end is recorded. An ephemeral one's image is never mounted again, and in
            // the supervisor's own mount namespace nobody else sees the mount: it goes with
            // this process, after the end is recorded, instead of costing an RCU grace period
            // before.
            detach_disk_at_exit: !(config.config.ephemeral && crate::mount_ns::is_own()),
            hand_on: self
                .root_disk
                .as_ref()
                .and_then(|_| crate::hand_on::HandOn::plan(config)),
            root_disk: std::sync::Mutex::new(self.root_disk),
            root_disk_upper: self.root_disk_upper,
            net_counters: network.as_ref().map(|running| running.counters().clone()),
            network: std::sync::Mutex::new(network),
            runtime_server: self.runtime_server,
            mount_servers: self.mount_servers,
        }
    }

    /// Ends a sandbox nobody will use: PID 1 killed and reaped, its cgroups removed, the
    /// disk's host mount detached (as this is dropped).
    fn discard(self) {
        let _ = self.sandbox.kill();
        let _ = self.sandbox.wait();
        if let Err(e) = self.sandbox.destroy() {
            tracing::warn!("{e}");
        }
    }
}

/// The sandbox's limits: the configuration's, and the default number of tasks.
fn limits(config: &SupervisorConfig) -> Limits {
    Limits {
        cpus: config.config.cpus,
        memory_bytes: Some(config.config.memory_limit_mib() << 20),
        pids_max: Some(DEFAULT_PIDS_MAX),
    }
}

/// The sandbox's hostname: its name, cut to the kernel's 64 bytes' worth of characters.
fn hostname(config: &SupervisorConfig) -> String {
    config.config.name.chars().take(63).collect()
}

pub fn start(
    config: &SupervisorConfig,
    agent_fd: OwnedFd,
    warm: Option<WarmLauncher>,
    prepared_disk: Option<msb_namespace::disk::PreparedDisk>,
) -> Result<NamespaceBackend, BackendError> {
    // Ports bound before anything starts: one in use fails the start here.
    let network = super::network::configure(&config.config)?;
    let guest = network.as_ref().map(|n| n.config().guest_setup());
    let mut launched = launch(config, agent_fd, warm, prepared_disk, guest.as_ref())?;
    let network = match network {
        Some(network) => {
            let pid = launched.sandbox.pid();
            let tap = launched
                .early_tap
                .take()
                .and_then(|early| early.finish(pid));
            match super::network::start(network, pid, tap) {
                Ok(running) => Some(running),
                Err(e) => {
                    launched.discard();
                    return Err(e);
                }
            }
        }
        None => None,
    };
    Ok(launched.into_backend(config, network))
}

/// Builds and starts the sandbox of `config` (all but its network's stack), writing the
/// guest's network files for `guest` when it has a network.
fn launch(
    config: &SupervisorConfig,
    agent_fd: OwnedFd,
    warm: Option<WarmLauncher>,
    prepared_disk: Option<msb_namespace::disk::PreparedDisk>,
    guest: Option<&msb_net::GuestSetup>,
) -> Result<Launched, BackendError> {
    let dir = SandboxDir::new(config.sandbox_dir.clone());
    // The root disk first: the upper and work directories are on it.
    let root_disk = match config.config.rootfs {
        RootfsSource::Default if dir.root_disk_image().exists() => Some(
            RootDisk::mount(&dir, prepared_disk, !config.config.ephemeral)
                .map_err(BackendError::RootDisk)?,
        ),
        _ => {
            if let Some(disk) = prepared_disk {
                disk.discard_later();
            }
            None
        }
    };
    let root = match &config.config.rootfs {
        RootfsSource::Default => Root::Overlay {
            lower: config.default_rootfs.clone(),
            upper: dir.upper(),
            work: dir.work(),
            disk: root_disk.as_ref().map(|disk| msb_namespace::RootDiskMount {
                device: disk.device.clone(),
                mount_point: disk.mount.clone(),
            }),
        },
        RootfsSource::Bind { path } => Root::Bind(path.clone()),
    };
    // The overlay's mount point is on the root disk when there is one (`backend/` would only
    // hold it).
    let mut dirs = vec![dir.runtime(), dir.upper(), dir.work()];
    if root_disk.is_none() {
        dirs.push(dir.backend_state());
    }
    for path in dirs {
        std::fs::create_dir_all(&path).map_err(|source| BackendError::Prepare { path, source })?;
    }
    let root_disk_upper = match &root_disk {
        Some(_) => Some(upper_handle(&dir)?),
        None => None,
    };
    // `/.msb` through the quota'd file server; without /dev/fuse, the plain bind (unbounded).
    let (runtime_server, runtime_fuse) =
        match runtime_file_server(&dir.runtime(), config.id_map.as_ref()) {
            Ok((server, fd)) => (Some(server), Some(fd)),
            Err(e) => {
                tracing::warn!("/.msb without its 16 MiB quota (a plain bind): {e}");
                (None, None)
            }
        };
    // Directories through quota'd file servers (when msbd is root: the server maps the
    // sandbox's ids); files, and every mount of an unprivileged msbd, as kernel binds.
    let hidden = msb_home_identity(&dir);
    let mut mounts = Vec::new();
    let mut served = Vec::new();
    let mut disks = Vec::new();
    let mut mount_servers = Vec::new();
    for volume in &config.config.volumes {
        if volume.kind == Some(msb_api::VolumeKind::Disk) {
            disks.push(DiskMount {
                image: volume.host.clone(),
                guest: volume.guest.clone(),
                readonly: volume.readonly,
            });
        } else if config.id_map.is_some() && volume.host.is_dir() {
            let (server, fuse) = mount_file_server(volume, config.id_map.as_ref(), &hidden)
                .map_err(BackendError::Serve)?;
            served.push(ServedMount {
                guest: volume.guest.clone(),
                readonly: volume.readonly,
                fuse,
            });
            mount_servers.push(MountServer {
                guest: volume.guest.clone(),
                server,
            });
        } else {
            mounts.push(BindMount {
                host: volume.host.clone(),
                guest: volume.guest.clone(),
                readonly: volume.readonly,
            });
        }
    }
    // A `--rootfs DIR` root through a file server too (root msbd, as for directory mounts), with
    // a bind mount's default quota: the workload writes into a host directory.
    let mut root_fuse = None;
    if let (RootfsSource::Bind { path }, Some(_)) = (&config.config.rootfs, &config.id_map) {
        if path.is_dir() {
            let quota = Some(msb_api::config::DEFAULT_BIND_QUOTA_MIB << 20);
            let (server, fuse) = dir_file_server(path, quota, config.id_map.as_ref(), &hidden)
                .map_err(BackendError::Serve)?;
            root_fuse = Some(fuse);
            mount_servers.push(MountServer {
                guest: PathBuf::from("/"),
                server,
            });
        }
    }
    if let Some(guest) = guest {
        let owner = config.id_map.map(|map| (map.host_uid, map.host_gid));
        let (root_dir, lower) = match &config.config.rootfs {
            RootfsSource::Default => (dir.upper(), Some(config.default_rootfs.as_path())),
            RootfsSource::Bind { path } => (path.clone(), None),
        };
        if let Err(e) = super::network::write_guest_files(&root_dir, lower, guest, owner) {
            tracing::warn!("writing the guest's resolv.conf and hosts: {e}");
        }
    }
    let spec = SandboxSpec {
        id: config.sandbox_id.clone(),
        hostname: hostname(config),
        root,
        runtime_dir: dir.runtime(),
        runtime_fuse,
        root_fuse,
        agent_binary: config.agent_binary.clone(),
        agent_argv: None,
        agent_fd,
        mounts,
        served,
        disks,
        limits: limits(config),
        state_dir: dir.backend_state(),
        stdio_log: Some(dir.supervisor_log()),
        id_map: config.id_map,
    };
    // A warm launcher made the network namespace PID 1 will have: eth0 is made in it on a
    // thread while PID 1 makes the rest.
    let mut warm = warm;
    let early_tap = match (guest, warm.as_mut()) {
        (Some(guest), Some(launcher)) => super::network::open_tap_early(guest, launcher),
        _ => None,
    };
    let sandbox = match warm {
        Some(launcher) => Sandbox::start_warm(spec, launcher)?,
        None => Sandbox::start(spec)?,
    };
    Ok(Launched {
        sandbox,
        root_disk,
        root_disk_upper,
        runtime_server,
        mount_servers,
        early_tap,
    })
}

/// A sandbox a warm supervisor started ahead of time for the configuration most starts ask
/// for ([`bootable`]): the default root on a root disk of the default size, no mounts, a
/// network. Its PID 1 runs the agent (which said `Ready`) in placeholder cgroups under a
/// placeholder name, in a directory laid out as a sandbox's (`$MSB_HOME/warm/<n>.boot`), which
/// msbd renames into place when it hands the supervisor such a sandbox; [`claim`] then names,
/// limits and connects it.
pub struct Booted {
    launched: Launched,
    /// The supervisor's end of the agent's channel.
    host_end: std::os::unix::net::UnixStream,
    /// `eth0`, made in PID 1's network namespace; the stack starts at the claim.
    tap: Option<OwnedFd>,
    /// A thread in PID 1's UTS namespace, to set the sandbox's hostname.
    hostname: Option<msb_namespace::HostnameSetter>,
    guest: msb_net::GuestSetup,
    /// The directory it was booted in (before msbd moved it).
    dir: PathBuf,
}

impl std::fmt::Debug for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Booted")
            .field("pid", &self.launched.sandbox.pid())
            .field("dir", &self.dir)
            .finish()
    }
}

/// What a sandbox is booted ahead of time with: what msbd would give the sandboxes of its home.
#[derive(Clone, Debug)]
pub struct BootPlan {
    pub default_rootfs: PathBuf,
    pub agent_binary: PathBuf,
    pub id_map: Option<crate::idmap::IdMap>,
    /// Whether the supervisor also forks a spare launcher (placeholder cgroups, no namespaces)
    /// for a start that cannot take the booted sandbox. msbd leaves it out while its recent
    /// starts all took booted sandboxes (`daemon/src/warm/mod.rs`, `SpareDemand`): a spare costs
    /// a fork, its cgroups' creation and removal and a migration, per run, and is then unused;
    /// without one such a start launches as a cold one (and migrates into its cgroups then).
    pub spare: bool,
}

/// Whether a start of `config` can take a sandbox booted with `plan` (pure but for nothing):
/// the default root on a fresh root disk of the default size, no mounts, a network (any ports
/// and rules: the stack starts at the claim), and the same root, agent and id map.
pub fn bootable(config: &SupervisorConfig, plan: &BootPlan) -> bool {
    let sandbox = &config.config;
    sandbox.rootfs == RootfsSource::Default
        && sandbox.volumes.is_empty()
        && !sandbox.no_network
        && sandbox.root_disk_mib == Some(msb_api::config::DEFAULT_ROOT_DISK_MIB)
        && config.default_rootfs == plan.default_rootfs
        && config.agent_binary == plan.agent_binary
        && config.id_map == plan.id_map
}

/// The configuration a sandbox is booted ahead of time for: the default one, under a
/// placeholder name (its hostname until the claim). Ephemeral until claimed: its disk's cache
/// flushes stay off unless a sandbox that keeps it claims it.
fn booted_config() -> msb_api::config::SandboxConfig {
    msb_api::config::SandboxConfig {
        root_disk_mib: Some(msb_api::config::DEFAULT_ROOT_DISK_MIB),
        ephemeral: true,
        ..msb_api::config::SandboxConfig::named("msb")
    }
}

/// Boots the sandbox of `plan` in `dir` (laid out as a sandbox's directory, holding the root
/// disk's image), through `launcher`, on the `disk` made ahead of time from that image.
pub fn boot(
    plan: &BootPlan,
    dir: &Path,
    placeholder: &str,
    launcher: WarmLauncher,
    disk: msb_namespace::disk::PreparedDisk,
) -> Result<Booted, BackendError> {
    let config = SupervisorConfig {
        sandbox_id: placeholder.to_owned(),
        run_id: String::new(),
        config: booted_config(),
        sandbox_dir: dir.to_owned(),
        default_rootfs: plan.default_rootfs.clone(),
        agent_binary: plan.agent_binary.clone(),
        wait_for_attach: false,
        main_mode: msb_protocol::ExecMode::Buffered,
        log_level: String::new(),
        id_map: plan.id_map,
        output_log_max_bytes: 0,
        claim_booted: false,
    };
    let (host_end, agent_end) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| BackendError::Serve(format!("creating the agent channel: {e}")))?;
    let guest = msb_net::NetConfig::default().guest_setup();
    let mut launched = launch(
        &config,
        agent_end.into(),
        Some(launcher),
        Some(disk),
        Some(&guest),
    )?;
    let pid = launched.sandbox.pid();
    let tap = launched
        .early_tap
        .take()
        .and_then(|early| early.finish(pid));
    let hostname = msb_namespace::HostnameSetter::join(pid)
        .inspect_err(|e| tracing::debug!("the hostname is set at the claim: {e}"))
        .ok();
    Ok(Booted {
        launched,
        host_end,
        tap,
        hostname,
        guest,
        dir: dir.to_owned(),
    })
}

impl Booted {
    /// The same sandbox, its directory renamed to `dir`.
    pub(super) fn moved_to(mut self, dir: &Path) -> Booted {
        let dir = SandboxDir::new(dir);
        if let Some(disk) = self.launched.root_disk.as_mut() {
            disk.mount = dir.root_disk_mount();
        }
        self.launched.sandbox.moved(&dir.backend_state());
        self.dir = dir.root().to_owned();
        self
    }

    /// Ends it (nobody took it): the sandbox destroyed, its disk detached, its directory
    /// deleted unless msbd moved it.
    pub fn discard(self) {
        self.launched.discard();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `booted` the sandbox of `config`, whose directory it now is (msbd renamed it there):
/// names and limits it, starts its network. Returns the backend and the supervisor's end of
/// the agent's channel. On error the booted sandbox is gone.
pub fn claim(
    config: &SupervisorConfig,
    booted: Booted,
) -> Result<(NamespaceBackend, std::os::unix::net::UnixStream), BackendError> {
    let Booted {
        mut launched,
        host_end,
        tap,
        hostname: setter,
        guest,
        dir: _,
    } = booted;
    let dir = SandboxDir::new(config.sandbox_dir.clone());
    // The disk's host mount moved with the directory. It was made for an ephemeral run.
    if let Some(disk) = launched.root_disk.as_mut() {
        disk.mount = dir.root_disk_mount();
        if !config.config.ephemeral {
            if let Err(e) = msb_namespace::disk::make_durable(&disk.mount) {
                launched.discard();
                return Err(BackendError::RootDisk(e));
            }
        }
    }
    let claimed = launched
        .sandbox
        .claim(
            &config.sandbox_id,
            (&hostname(config), setter),
            &limits(config),
            &dir.backend_state(),
        )
        .map_err(BackendError::from)
        .and_then(|()| super::network::configure(&config.config));
    let network = match claimed {
        Ok(Some(network)) if network.config().guest_setup() == guest => network,
        Ok(_) => {
            launched.discard();
            return Err(BackendError::Network(
                "the booted sandbox's network does not fit the configuration".into(),
            ));
        }
        Err(e) => {
            launched.discard();
            return Err(e);
        }
    };
    let pid = launched.sandbox.pid();
    let running = match super::network::start(network, pid, tap) {
        Ok(running) => running,
        Err(e) => {
            launched.discard();
            return Err(e);
        }
    };
    Ok((launched.into_backend(config, Some(running)), host_end))
}

/// The file server of one directory mount.
pub struct MountServer {
    pub guest: std::path::PathBuf,
    pub server: msb_fs::Server,
}

/// The root disk's mount on the host, detached when dropped (the sandbox's own mount namespace
/// keeps the filesystem until it goes; then the loop device clears itself).
struct RootDisk {
    mount: std::path::PathBuf,
    device: String,
}

/// A handle on the upper directory of a root disk (opened once the disk is mounted).
fn upper_handle(dir: &SandboxDir) -> Result<std::fs::File, BackendError> {
    let upper = dir.upper();
    std::fs::File::open(&upper).map_err(|source| BackendError::Prepare {
        path: upper,
        source,
    })
}

impl RootDisk {
    /// Mounts the sandbox's disk: the one a warm supervisor `prepared` when msbd gave the
    /// sandbox that disk's image (made `durable` for a sandbox that keeps it), else its own
    /// image.
    fn mount(
        dir: &SandboxDir,
        prepared: Option<msb_namespace::disk::PreparedDisk>,
        durable: bool,
    ) -> Result<RootDisk, String> {
        let mount = dir.root_disk_mount();
        // A mount left by a supervisor that was killed goes first.
        msb_namespace::disk::unmount(&mount)?;
        // 0700 like everything under MSB_HOME (this process's umask is 022).
        msb_host::private::ensure_private_dir(&mount)
            .map_err(|e| format!("create {}: {e}", mount.display()))?;
        if let Some(prepared) = prepared {
            match prepared.adopt(&dir.root_disk_image(), &mount) {
                Ok(device) => {
                    if durable {
                        msb_namespace::disk::make_durable(&mount)?;
                    }
                    return Ok(RootDisk { mount, device });
                }
                Err(unused) => unused.discard_later(),
            }
        }
        let device = msb_namespace::disk::mount_image(&dir.root_disk_image(), &mount)?;
        Ok(RootDisk { mount, device })
    }
}

impl Drop for RootDisk {
    fn drop(&mut self) {
        if let Err(e) = msb_namespace::disk::unmount(&self.mount) {
            tracing::warn!("{e}");
        }
    }
}

pub struct NamespaceBackend {
    sandbox: Sandbox,
    /// The root disk's mount in the supervisor's namespace, detached as soon as init exits
    /// when `detach_disk_at_exit` (so that a run recorded as ended holds nothing a next start
    /// needs; the sampler measures the disk through a handle), else when this is dropped.
    root_disk: std::sync::Mutex<Option<RootDisk>>,
    detach_disk_at_exit: bool,
    /// An ephemeral run's disk handed on as PID 1 exits ([`crate::hand_on::HandOn`]).
    hand_on: Option<crate::hand_on::HandOn>,
    root_disk_upper: Option<std::fs::File>,
    /// The sandbox's network stack, stopped as soon as init exits (so its published ports are
    /// free for the next run at once); `None` under `--no-network`.
    network: std::sync::Mutex<Option<msb_net::RunningNetwork>>,
    /// Its counters, which outlive the stack for the last sample.
    net_counters: Option<Arc<msb_net::NetCounters>>,
    /// Serves `/.msb` until the sandbox's mount namespace goes (its workers then end).
    runtime_server: Option<msb_fs::Server>,
    /// Serve the directory mounts, likewise.
    mount_servers: Vec<MountServer>,
}

impl Backend for NamespaceBackend {
    fn init_pid(&self) -> i32 {
        self.sandbox.pid()
    }

    fn init_status(&self) -> Option<super::InitStatus> {
        self.sandbox.exited().map(|status| match status {
            msb_namespace::ExitStatus::Exited(code) => super::InitStatus::Exited(code),
            msb_namespace::ExitStatus::Signaled(signal) => super::InitStatus::Signaled(signal),
        })
    }

    fn wait_exit(&self) {
        if let Err(e) = self.sandbox.wait() {
            tracing::warn!("waiting for the sandbox's init: {e}");
        }
        // Nothing is left to talk to: release the host's ports and sockets now.
        let network = self
            .network
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(network) = network {
            network.stop();
        }
        if let Some(hand_on) = &self.hand_on {
            let disk = self
                .root_disk
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(disk) = disk.as_ref() {
                hand_on.take(&disk.mount, &disk.device);
            }
        }
        if self.detach_disk_at_exit {
            drop(
                self.root_disk
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take(),
            );
        }
    }

    fn kill(&self) {
        if let Err(e) = self.sandbox.kill() {
            tracing::debug!("killing the sandbox's init: {e}");
        }
    }

    fn destroy(&self) -> Result<(), String> {
        let destroyed = self.sandbox.destroy().map_err(|e| e.to_string());
        if let Some(hand_on) = &self.hand_on {
            hand_on.finish();
        }
        destroyed
    }

    fn runtime_fs(&self) -> Option<Arc<msb_fs::PassthroughFs>> {
        self.runtime_server
            .as_ref()
            .map(|server| server.fs().clone())
    }

    fn mount_fs(&self) -> Vec<(std::path::PathBuf, Arc<msb_fs::PassthroughFs>)> {
        self.mount_servers
            .iter()
            .map(|m| (m.guest.clone(), m.server.fs().clone()))
            .collect()
    }

    fn root_disk(&self) -> Option<std::fs::File> {
        self.root_disk_upper
            .as_ref()
            .and_then(|upper| upper.try_clone().ok())
    }

    fn net_counters(&self) -> Option<Arc<msb_net::NetCounters>> {
        self.net_counters.clone()
    }

    fn cgroups(&self) -> Option<super::CgroupPaths> {
        Some(self.sandbox.cgroup().clone())
    }
}

#[cfg(test)]
#[path = "namespace_tests.rs"]
mod tests;
