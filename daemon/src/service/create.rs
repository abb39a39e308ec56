//! Creating a sandbox: validate, build the default root if needed, record it, and start it
//! when asked (a sandbox that cannot start is removed again, not left half-created).

use std::sync::Arc;

use msb_api::requests::RequestError;
use msb_api::{CreateSandboxRequest, SandboxInfo};
use msb_runtime::config::RootfsSource;
use msb_runtime::lifecycle::SandboxStatus;
use msb_store::SandboxRow;

use super::info::{info_by_name, sandbox_info};
use super::lifecycle::{start_run, LifecycleError};
use super::removal::remove_sandbox;
use super::CatalogError;
use crate::state::Daemon;

/// What creating a sandbox can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("building the default root: {0}")]
    DefaultRoot(String),
    /// A host path of the request (root or volume) could not be resolved.
    #[error("resolving {}", path.display())]
    HostPath {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// More memory asked for than the host has (a limit the sandbox could never reach would
    /// leave the host's OOM killer, not the sandbox's, to end it).
    #[error("memory_mib: {asked_mib} MiB is more than this host's memory ({host_mib} MiB)")]
    MemoryAboveHost { asked_mib: u64, host_mib: u64 },
    /// A published port is taken on the host (checked before the record, so a create-with-start
    /// leaves nothing; the supervisor's bind at start is the real check).
    #[error("published port {address}/{protocol} is in use on the host")]
    PortInUse {
        address: std::net::SocketAddr,
        protocol: msb_net::Protocol,
        #[source]
        source: std::io::Error,
    },
    /// A root disk larger than the filesystem that would hold it.
    #[error("root_disk_mib: {asked_mib} MiB is more than the filesystem holding MSB_HOME ({fs_mib} MiB)")]
    RootDiskAboveFilesystem { asked_mib: u64, fs_mib: u64 },
    /// The root disk's image could not be made.
    #[error("making the root disk: {0}")]
    RootDisk(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Created, but its start failed (and it was removed again).
    #[error(transparent)]
    Start(LifecycleError),
}

impl From<msb_store::StoreError> for CreateError {
    fn from(e: msb_store::StoreError) -> Self {
        CreateError::Catalog(CatalogError::Store(e))
    }
}

/// Binds and releases every published port, so one in use refuses the create with a clear
/// error before a record exists.
fn check_published_ports(config: &msb_runtime::config::SandboxConfig) -> Result<(), CreateError> {
    for value in &config.published_ports {
        let Ok(spec) = value.parse::<msb_net::PortSpec>() else {
            continue; // validation already refused it
        };
        for (host, _) in spec.pairs() {
            let address = std::net::SocketAddr::new(spec.bind, host);
            let bound = match spec.protocol {
                msb_net::Protocol::Tcp => std::net::TcpListener::bind(address).map(drop),
                msb_net::Protocol::Udp => std::net::UdpSocket::bind(address).map(drop),
            };
            bound.map_err(|source| CreateError::PortInUse {
                address,
                protocol: spec.protocol,
                source,
            })?;
        }
    }
    Ok(())
}

/// Resolves the symbolic links of the root's and the volumes' host paths once, now, as the
/// caller named them: each start then opens the recorded path without following any link
/// (one a sandbox planted later is refused).
fn resolve_host_paths(config: &mut msb_runtime::config::SandboxConfig) -> Result<(), CreateError> {
    let resolve = |path: &mut std::path::PathBuf| {
        *path = std::fs::canonicalize(&*path).map_err(|source| CreateError::HostPath {
            path: path.clone(),
            source,
        })?;
        Ok::<(), CreateError>(())
    };
    if let RootfsSource::Bind { path } = &mut config.rootfs {
        resolve(path)?;
    }
    for volume in &mut config.volumes {
        resolve(&mut volume.host)?;
    }
    Ok(())
}

/// The limit a sandbox gets: the one asked for, or the default, never more than the host has
/// (`host_mib`, when it can be read).
fn memory_limit_mib(asked: Option<u64>, host_mib: Option<u64>) -> Result<u64, CreateError> {
    let mib = asked.unwrap_or(msb_api::config::DEFAULT_MEMORY_MIB);
    match host_mib {
        Some(host_mib) if mib > host_mib => match asked {
            Some(asked_mib) => Err(CreateError::MemoryAboveHost {
                asked_mib,
                host_mib,
            }),
            // A host smaller than the default: the default shrinks to the host.
            None => Ok(host_mib),
        },
        _ => Ok(mib),
    }
}

/// The root disk a sandbox gets: for the default root, the size asked for or the default, at
/// most the size of the filesystem holding it (`fs_mib`, when it can be read); a host
/// directory root has none (the CLI warns when one was asked for).
fn root_disk_mib(
    config: &msb_runtime::config::SandboxConfig,
    fs_mib: Option<u64>,
) -> Result<Option<u64>, CreateError> {
    if config.rootfs != RootfsSource::Default {
        if config.root_disk_mib.is_some() {
            tracing::warn!(sandbox = %config.name, "root_disk_mib ignored: the root is a host directory");
        }
        return Ok(None);
    }
    let mib = config
        .root_disk_mib
        .unwrap_or(msb_api::config::DEFAULT_ROOT_DISK_MIB);
    match fs_mib {
        Some(fs_mib) if mib > fs_mib => match config.root_disk_mib {
            Some(asked_mib) => Err(CreateError::RootDiskAboveFilesystem { asked_mib, fs_mib }),
            // A filesystem smaller than the default: the default shrinks to it.
            None => Ok(Some(fs_mib.max(msb_api::config::MIN_ROOT_DISK_MIB))),
        },
        _ => Ok(Some(mib)),
    }
}

/// The size in MiB of the filesystem holding `path`.
fn filesystem_mib(path: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some((st.blocks() as u64).saturating_mul(st.fragment_size() as u64) >> 20)
}

/// Makes the sandbox's directory and its root disk's image.
fn make_root_disk(
    dir: &msb_runtime::paths::SandboxDir,
    templates: &std::path::Path,
    mib: u64,
) -> Result<(), CreateError> {
    let made = std::fs::create_dir_all(dir.root())
        .map_err(|e| format!("create {}: {e}", dir.root().display()))
        .and_then(|()| {
            msb_runtime::disk::make_image_from_template(
                templates,
                &dir.root_disk_image(),
                mib << 20,
            )
        });
    made.map_err(|message| {
        let _ = std::fs::remove_dir_all(dir.root());
        CreateError::RootDisk(message)
    })
}

/// The host's memory (`MemTotal`) in MiB.
fn host_memory_mib() -> Option<u64> {
    super::capacity::meminfo().0.map(|bytes| bytes >> 20)
}

pub async fn create_sandbox(
    daemon: &Arc<Daemon>,
    request: CreateSandboxRequest,
) -> Result<SandboxInfo, CreateError> {
    let mut request = request;
    if request.config.name.is_empty() {
        request.config.name = msb_runtime::ids::ephemeral_name();
        request.config.ephemeral = true;
    }
    // Named volumes become host paths first (what validation and the supervisor read); the
    // lock keeps a volume from being removed between this and the sandbox's record.
    let volume_guard = match request.config.volumes.is_empty() {
        true => None,
        false => Some(daemon.volume_lock.lock().await),
    };
    super::volumes::resolve_mounts(daemon, &mut request.config);
    request.validate()?;
    let mut config = request.config;
    resolve_host_paths(&mut config)?;
    if request.start {
        check_published_ports(&config)?;
    }
    config.memory_mib = Some(memory_limit_mib(config.memory_mib, host_memory_mib())?);
    config.root_disk_mib = root_disk_mib(&config, filesystem_mib(daemon.home.root()))?;
    if config.rootfs == RootfsSource::Default
        && !msb_runtime::rootfs::default_rootfs_ready(&daemon.home.default_rootfs())
    {
        let target = daemon.home.default_rootfs();
        tokio::task::spawn_blocking(move || msb_runtime::rootfs::ensure_default_rootfs(&target))
            .await
            .map_err(|e| CreateError::DefaultRoot(e.to_string()))?
            .map_err(|e| CreateError::DefaultRoot(crate::display::error_chain(&e)))?;
    }
    let id = msb_runtime::ids::random_id();
    if let Some(mib) = config.root_disk_mib.filter(|_| !request.start) {
        // A create with start leaves the directory and the image to the start, which can take
        // a disk a warm supervisor made ahead of time, or its whole booted sandbox
        // (`crate::warm`).
        let (dir, templates) = (daemon.home.sandbox(&id), daemon.home.disk_templates());
        tokio::task::spawn_blocking(move || make_root_disk(&dir, &templates, mib))
            .await
            .map_err(|e| CreateError::RootDisk(e.to_string()))??;
    }
    let now = msb_store::catalog::now_ms();
    let row = SandboxRow {
        id,
        name: config.name.clone(),
        status: SandboxStatus::Created.to_string(),
        config_json: serde_json::to_string(&config).expect("config serialises"),
        ephemeral: config.ephemeral,
        created_at_ms: now,
        updated_at_ms: now,
        labels: config.labels.clone(),
    };
    if let Err(e) = daemon.store().insert_sandbox(&row) {
        let _ = std::fs::remove_dir_all(daemon.home.sandbox(&row.id).root());
        return Err(e.into());
    }
    drop(volume_guard);
    tracing::info!(sandbox = %row.name, id = %row.id, "created");
    if request.start {
        let lock = daemon.op_lock(&row.id);
        let _guard = lock.lock().await;
        if let Err(e) = start_run(daemon, &row.id, request.attach).await {
            // A sandbox that cannot start is not left half-created.
            if let Err(cleanup) = remove_sandbox(daemon, &row.id) {
                tracing::error!("rolling back {}: {cleanup}", row.name);
            }
            return Err(CreateError::Start(e));
        }
    }
    match info_by_name(daemon, &row.name) {
        // An ephemeral sandbox whose run already ended (a detached `sh -c 'exit 5'`) is removed
        // at once, maybe before this answer: answer with what it was, and how it ended.
        Err(CatalogError::NotFound(_)) if row.ephemeral => {
            let status = daemon
                .ending(&row.name)
                .map_or(SandboxStatus::Stopped, |ending| ending.status);
            let gone = SandboxRow {
                status: status.to_string(),
                ..row
            };
            Ok(sandbox_info(daemon, gone)?)
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_defaults_and_is_bounded_by_the_host() {
        let default = msb_api::config::DEFAULT_MEMORY_MIB;
        assert_eq!(memory_limit_mib(None, Some(24_000)).unwrap(), default);
        assert_eq!(memory_limit_mib(Some(2048), Some(24_000)).unwrap(), 2048);
        assert_eq!(
            memory_limit_mib(Some(24_000), Some(24_000)).unwrap(),
            24_000
        );
        let err = memory_limit_mib(Some(24_001), Some(24_000)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory_mib: 24001 MiB is more than this host's memory (24000 MiB)"
        );
        assert_eq!(memory_limit_mib(None, Some(256)).unwrap(), 256);
        assert_eq!(memory_limit_mib(Some(1 << 20), None).unwrap(), 1 << 20);
    }
}
