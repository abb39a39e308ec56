//! The namespace backend: Linux namespaces, cgroups and seccomp through `msb-namespace`.

use std::os::fd::OwnedFd;

use msb_namespace::{BindMount, Limits, Root, Sandbox, SandboxSpec, WarmLauncher};

use super::{Backend, BackendError};
use crate::config::{RootfsSource, SupervisorConfig};
use crate::paths::SandboxDir;

/// Tasks a sandbox may hold at once unless configured otherwise.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

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
    let spec = SandboxSpec {
        id: config.sandbox_id.clone(),
        hostname: config.config.name.chars().take(63).collect(),
        root,
        runtime_dir: dir.runtime(),
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
    Ok(NamespaceBackend { sandbox })
}

pub struct NamespaceBackend {
    sandbox: Sandbox,
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

    fn cgroups(&self) -> Option<super::CgroupPaths> {
        Some(self.sandbox.cgroup().clone())
    }
}
