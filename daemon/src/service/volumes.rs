//! Named volumes: create, list, inspect, remove, and their resolution when a sandbox names one.
//!
//! A dir volume is `$MSB_HOME/volumes/<name>/data/`, served into sandboxes by msb's file
//! server with the volume's quota; a disk volume is `$MSB_HOME/volumes/<name>/disk.ext4`, a
//! sparse image made with `mkfs.ext4` and attached through a loop device at each start. The
//! catalog row records the kind, so a restart of msbd finds each volume as it was made.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use msb_api::volumes::{VolumeError, DEFAULT_DISK_MIB};
use msb_api::{CreateVolumeRequest, VolumeInfo, VolumeKind};
use msb_store::VolumeRow;

use crate::state::Daemon;

/// What a volume operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum VolumesError {
    #[error(transparent)]
    Invalid(#[from] VolumeError),
    #[error("no volume named {0:?}")]
    NotFound(String),
    #[error("a volume named {0:?} already exists")]
    Exists(String),
    #[error("volume {name:?} is used by sandbox {}; remove {} first", used_by.join(", "), if used_by.len() == 1 { "it" } else { "them" })]
    InUse { name: String, used_by: Vec<String> },
    #[error("a size of {size_mib} MiB exceeds the {free_mib} MiB free on the filesystem holding {}", path.display())]
    TooLarge {
        size_mib: u64,
        free_mib: u64,
        path: PathBuf,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making the disk image of volume {name:?}: {message}")]
    Mkfs { name: String, message: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumesError {
    let path = path.to_owned();
    move |source| VolumesError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Where a volume's content lives: the directory of a dir volume, the image of a disk one.
pub fn content_path(daemon: &Daemon, name: &str, kind: VolumeKind) -> PathBuf {
    let dir = daemon.home.volumes().join(name);
    match kind {
        VolumeKind::Dir => dir.join("data"),
        VolumeKind::Disk => dir.join("disk.ext4"),
    }
}

fn kind_of(row: &VolumeRow) -> VolumeKind {
    row.kind.parse().unwrap_or(VolumeKind::Dir)
}

/// Creates a volume: validates, claims the name in the catalog (so that of two concurrent
/// creates one wins and the other gets `Exists`), then makes its content; a failure there
/// removes the claim and whatever was made.
pub async fn create(
    daemon: &Arc<Daemon>,
    request: CreateVolumeRequest,
) -> Result<VolumeInfo, VolumesError> {
    request.validate()?;
    let size_mib =
        (request.kind == VolumeKind::Disk).then(|| request.size_mib.unwrap_or(DEFAULT_DISK_MIB));
    let row = VolumeRow {
        name: request.name.clone(),
        kind: request.kind.as_str().to_owned(),
        quota_mib: request.quota_mib,
        size_bytes: size_mib.map(|mib| mib << 20),
        created_at_ms: msb_store::catalog::now_ms(),
    };
    let dir = daemon.home.volumes().join(&row.name);
    if let Some(size_mib) = size_mib {
        let volumes = daemon.home.volumes();
        std::fs::create_dir_all(&volumes).map_err(io("create", &volumes))?;
        if let Some(free_mib) = free_mib(&volumes).filter(|free| size_mib > *free) {
            return Err(VolumesError::TooLarge {
                size_mib,
                free_mib,
                path: volumes,
            });
        }
    }
    daemon.store().insert_volume(&row).map_err(|e| match e {
        msb_store::StoreError::VolumeExists(name) => VolumesError::Exists(name),
        other => VolumesError::Io {
            what: "record",
            path: dir.clone(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    let made = {
        let daemon = daemon.clone();
        let row = row.clone();
        tokio::task::spawn_blocking(move || make_content(&daemon, &row))
            .await
            .unwrap_or_else(|e| {
                Err(VolumesError::Mkfs {
                    name: request.name.clone(),
                    message: e.to_string(),
                })
            })
    };
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&dir);
        daemon.store().delete_volume(&row.name);
        return Err(e);
    }
    Ok(info_of(daemon, &row))
}

/// The volume's directory, or its formatted image.
fn make_content(daemon: &Daemon, row: &VolumeRow) -> Result<(), VolumesError> {
    let dir = daemon.home.volumes().join(&row.name);
    // A leftover of an earlier volume of this name (removed while msbd was down) goes first.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove the leftover", &dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let kind = kind_of(row);
    let content = content_path(daemon, &row.name, kind);
    match kind {
        VolumeKind::Dir => std::fs::create_dir(&content).map_err(io("create", &content)),
        VolumeKind::Disk => {
            let size = row.size_bytes.unwrap_or(DEFAULT_DISK_MIB << 20);
            msb_runtime::disk::make_image(&content, size).map_err(|message| VolumesError::Mkfs {
                name: row.name.clone(),
                message,
            })
        }
    }
}

/// Free MiB for an unprivileged user on the filesystem holding `path`.
fn free_mib(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64) >> 20)
}

/// Sandboxes whose configuration mounts volume `name`.
fn used_by(daemon: &Daemon, name: &str) -> Vec<String> {
    let Ok(rows) = daemon.store().list_sandboxes() else {
        return Vec::new();
    };
    rows.iter()
        .filter(|row| {
            crate::catalog::config_of_row(row).is_ok_and(|config| {
                config
                    .volumes
                    .iter()
                    .any(|v| v.volume.as_deref() == Some(name))
            })
        })
        .map(|row| row.name.clone())
        .collect()
}

/// Apparent and allocated bytes under `path` (not following links, not crossing mounts).
pub fn usage(path: &Path) -> Option<(u64, u64)> {
    let top = std::fs::symlink_metadata(path).ok()?;
    let (mut logical, mut allocated) = (top.len(), top.blocks() * 512);
    if top.is_dir() {
        let mut stack = vec![path.to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.dev() != top.dev() {
                    continue;
                }
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    logical += meta.len();
                }
                allocated += meta.blocks() * 512;
            }
        }
    }
    Some((logical, allocated))
}

fn info_of(daemon: &Daemon, row: &VolumeRow) -> VolumeInfo {
    let kind = kind_of(row);
    let path = content_path(daemon, &row.name, kind);
    let usage = usage(&path);
    VolumeInfo {
        name: row.name.clone(),
        kind,
        quota_mib: row.quota_mib,
        size_mib: row.size_bytes.map(|b| b >> 20),
        path: path.display().to_string(),
        created_at_ms: row.created_at_ms,
        used_by: used_by(daemon, &row.name),
        logical_bytes: usage.map(|u| u.0),
        allocated_bytes: usage.map(|u| u.1),
    }
}

pub fn list(daemon: &Daemon) -> Vec<VolumeInfo> {
    // The rows first: `info_of` takes the store's lock again.
    let rows = daemon.store().list_volumes();
    rows.iter().map(|row| info_of(daemon, row)).collect()
}

pub fn inspect(daemon: &Daemon, name: &str) -> Result<VolumeInfo, VolumesError> {
    let row = daemon
        .store()
        .volume(name)
        .ok_or_else(|| VolumesError::NotFound(name.to_owned()))?;
    Ok(info_of(daemon, &row))
}

/// Removes a volume no sandbox mounts: its catalog row, then its content (renamed into the
/// trash first, so a crash halfway leaves nothing under the name).
pub async fn remove(daemon: &Daemon, name: &str) -> Result<(), VolumesError> {
    // One removal or sandbox creation at a time: a sandbox recorded after this check would
    // otherwise mount a volume on its way out.
    let _guard = daemon.volume_lock.lock().await;
    if daemon.store().volume(name).is_none() {
        return Err(VolumesError::NotFound(name.to_owned()));
    }
    let users = used_by(daemon, name);
    if !users.is_empty() {
        return Err(VolumesError::InUse {
            name: name.to_owned(),
            used_by: users,
        });
    }
    daemon.store().delete_volume(name);
    let dir = daemon.home.volumes().join(name);
    let trash = daemon.home.trash();
    let _ = std::fs::create_dir_all(&trash);
    let parked = trash.join(format!("volume-{name}-{}", msb_store::catalog::now_ms()));
    match std::fs::rename(&dir, &parked) {
        Ok(()) => {
            std::thread::spawn(move || std::fs::remove_dir_all(parked));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => {
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        }
    }
    Ok(())
}

/// Fills in the mounts of `config` that name a volume: the host path of its content, its
/// kind, and (a dir volume's) quota unless the mount sets its own. A name with no volume is
/// left unresolved, which the configuration's validation reports.
pub fn resolve_mounts(daemon: &Daemon, config: &mut msb_runtime::config::SandboxConfig) {
    for mount in &mut config.volumes {
        let Some(name) = mount.volume.clone() else {
            continue;
        };
        let Some(row) = daemon.store().volume(&name) else {
            mount.host = PathBuf::new();
            continue;
        };
        let kind = kind_of(&row);
        mount.host = content_path(daemon, &name, kind);
        mount.kind = Some(kind);
        if kind == VolumeKind::Dir && mount.quota_mib.is_none() {
            mount.quota_mib = row.quota_mib;
        }
    }
}
