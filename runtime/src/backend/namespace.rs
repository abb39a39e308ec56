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

pub fn start(
    config: &SupervisorConfig,
    agent_fd: OwnedFd,
    warm: Option<WarmLauncher>,
    prepared_disk: Option<msb_namespace::disk::PreparedDisk>,
) -> Result<NamespaceBackend, BackendError> {
    let dir = SandboxDir::new(config.sandbox_dir.clone());
    // The root disk first: the upper and work directories are on it.
    let root_disk = match config.config.rootfs {
        RootfsSource::Default if dir.root_disk_image().exists() => {
            Some(RootDisk::mount(&dir, prepared_disk).map_err(BackendError::RootDisk)?)
        }
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
    for path in [dir.runtime(), dir.upper(), dir.work(), dir.backend_state()] {
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
    // Ports bound before anything starts: one in use fails the start here.
    let network = super::network::configure(&config.config)?;
    if let Some(network) = &network {
        let owner = config.id_map.map(|map| (map.host_uid, map.host_gid));
        let (root_dir, lower) = match &config.config.rootfs {
            RootfsSource::Default => (dir.upper(), Some(config.default_rootfs.as_path())),
            RootfsSource::Bind { path } => (path.clone(), None),
        };
        if let Err(e) = super::network::write_guest_files(
            &root_dir,
            lower,
            &network.config().guest_setup(),
            owner,
        ) {
            tracing::warn!("writing the guest's resolv.conf and hosts: {e}");
        }
    }
    let spec = SandboxSpec {
        id: config.sandbox_id.clone(),
        hostname: config.config.name.chars().take(63).collect(),
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
        limits: Limits {
            cpus: config.config.cpus,
            memory_bytes: Some(config.config.memory_limit_mib() << 20),
            pids_max: Some(DEFAULT_PIDS_MAX),
        },
        state_dir: dir.backend_state(),
        stdio_log: Some(dir.supervisor_log()),
        id_map: config.id_map,
    };
    // A warm launcher made the network namespace PID 1 will have: eth0 is made in it on a
    // thread while PID 1 makes the rest.
    let mut warm = warm;
    let early_tap = match (&network, warm.as_mut()) {
        (Some(network), Some(launcher)) => super::network::open_tap_early(network, launcher),
        _ => None,
    };
    let sandbox = match warm {
        Some(launcher) => Sandbox::start_warm(spec, launcher)?,
        None => Sandbox::start(spec)?,
    };
    let network = match network {
        Some(network) => match super::network::start(network, sandbox.pid(), early_tap) {
            Ok(running) => Some(running),
            Err(e) => {
                let _ = sandbox.kill();
                let _ = sandbox.wait();
                let _ = sandbox.destroy();
                return Err(e);
            }
        },
        None => None,
    };
    Ok(NamespaceBackend {
        sandbox,
        // A named sandbox's next start mounts the same image: its disk goes before the run's
        // end is recorded. An ephemeral one's image is never mounted again, and in the
        // supervisor's own mount namespace nobody else sees the mount: it goes with this
        // process, after the end is recorded, instead of costing an RCU grace period before.
        detach_disk_at_exit: !(config.config.ephemeral && crate::mount_ns::is_own()),
        root_disk: std::sync::Mutex::new(root_disk),
        root_disk_upper,
        net_counters: network.as_ref().map(|running| running.counters().clone()),
        network: std::sync::Mutex::new(network),
        runtime_server,
        mount_servers,
    })
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
    /// sandbox that disk's image, else its own image.
    fn mount(
        dir: &SandboxDir,
        prepared: Option<msb_namespace::disk::PreparedDisk>,
    ) -> Result<RootDisk, String> {
        let mount = dir.root_disk_mount();
        // A mount left by a supervisor that was killed goes first.
        msb_namespace::disk::unmount(&mount)?;
        // 0700 like everything under MSB_HOME (this process's umask is 022).
        msb_host::private::ensure_private_dir(&mount)
            .map_err(|e| format!("create {}: {e}", mount.display()))?;
        if let Some(prepared) = prepared {
            match prepared.adopt(&dir.root_disk_image(), &mount) {
                Ok(device) => return Ok(RootDisk { mount, device }),
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
        self.sandbox.destroy().map_err(|e| e.to_string())
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
