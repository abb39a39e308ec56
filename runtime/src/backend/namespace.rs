//! The namespace backend: Linux namespaces, cgroups and seccomp through `msb-namespace`.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use msb_namespace::{BindMount, Limits, Root, Sandbox, SandboxSpec, WarmLauncher};

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
    let fs = msb_fs::PassthroughFs::new(
        dir,
        msb_fs::FsConfig {
            quota_bytes: Some(RUNTIME_QUOTA_BYTES),
            ..msb_fs::FsConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let device = msb_fs::open_device().map_err(|e| format!("opening /dev/fuse: {e}"))?;
    let for_pid1 = device
        .try_clone()
        .map_err(|e| format!("duplicating the /dev/fuse descriptor: {e}"))?;
    let server = msb_fs::serve(device, Arc::new(fs), RUNTIME_SERVER_THREADS)
        .map_err(|e| format!("starting the file server: {e}"))?;
    Ok((server, for_pid1))
}

pub fn start(
    config: &SupervisorConfig,
    agent_fd: OwnedFd,
    warm: Option<WarmLauncher>,
) -> Result<NamespaceBackend, BackendError> {
    let dir = SandboxDir::new(config.sandbox_dir.clone());
    let root = match &config.config.rootfs {
        RootfsSource::Default => Root::Overlay {
            lower: config.default_rootfs.clone(),
            upper: dir.upper(),
            work: dir.work(),
        },
        RootfsSource::Bind { path } => Root::Bind(path.clone()),
    };
    for path in [dir.runtime(), dir.upper(), dir.work(), dir.backend_state()] {
        std::fs::create_dir_all(&path).map_err(|source| BackendError::Prepare { path, source })?;
    }
    // `/.msb` through the quota'd file server; without /dev/fuse, the plain bind (unbounded).
    let (runtime_server, runtime_fuse) =
        match runtime_file_server(&dir.runtime(), config.id_map.as_ref()) {
            Ok((server, fd)) => (Some(server), Some(fd)),
            Err(e) => {
                tracing::warn!("/.msb without its 16 MiB quota (a plain bind): {e}");
                (None, None)
            }
        };
    let spec = SandboxSpec {
        id: config.sandbox_id.clone(),
        hostname: config.config.name.chars().take(63).collect(),
        root,
        runtime_dir: dir.runtime(),
        runtime_fuse,
        agent_binary: config.agent_binary.clone(),
        agent_argv: None,
        agent_fd,
        mounts: config
            .config
            .volumes
            .iter()
            .map(|v| BindMount {
                host: v.host.clone(),
                guest: v.guest.clone(),
                readonly: v.readonly,
            })
            .collect(),
        limits: Limits {
            cpus: config.config.cpus,
            memory_bytes: Some(config.config.memory_limit_mib() << 20),
            pids_max: Some(DEFAULT_PIDS_MAX),
        },
        state_dir: dir.backend_state(),
        stdio_log: Some(dir.supervisor_log()),
        id_map: config.id_map,
    };
    let sandbox = match warm {
        Some(launcher) => Sandbox::start_warm(spec, launcher)?,
        None => Sandbox::start(spec)?,
    };
    Ok(NamespaceBackend {
        sandbox,
        runtime_server,
    })
}

pub struct NamespaceBackend {
    sandbox: Sandbox,
    /// Serves `/.msb` until the sandbox's mount namespace goes (its workers then end).
    runtime_server: Option<msb_fs::Server>,
}

impl Backend for NamespaceBackend {
    fn init_pid(&self) -> i32 {
        self.sandbox.pid()
    }

    fn wait_exit(&self) {
        if let Err(e) = self.sandbox.wait() {
            tracing::warn!("waiting for the sandbox's init: {e}");
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

    fn cgroups(&self) -> Option<super::CgroupPaths> {
        Some(self.sandbox.cgroup().clone())
    }
}
