//! Named volumes: a directory (optionally with a write quota) or an ext4 disk image, kept
//! under `$MSB_HOME/volumes/<name>/` and mounted into sandboxes with `-v NAME:/path`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{validate_name, MAX_QUOTA_MIB};

/// Smallest and largest disk volume, in MiB (ext4 needs a few MiB for its own structures).
pub const MIN_DISK_MIB: u64 = 16;
pub const MAX_DISK_MIB: u64 = 16 << 20;
/// The size of a disk volume created without one.
pub const DEFAULT_DISK_MIB: u64 = 1024;

/// What a volume is on the host.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A directory served by msb's file server (its quota, if any, charged for growth).
    #[default]
    Dir,
    /// A sparse ext4 image attached as a block device; its size is its budget.
    Disk,
}

impl VolumeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Dir => "dir",
            VolumeKind::Disk => "disk",
        }
    }
}

impl std::str::FromStr for VolumeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dir" => Ok(VolumeKind::Dir),
            "disk" => Ok(VolumeKind::Disk),
            other => Err(format!("unknown volume kind {other:?} (dir or disk)")),
        }
    }
}

/// `POST /v1/volumes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    /// Letters, digits, `.`, `_`, `-`; at most 128 bytes; starts with a letter or digit.
    pub name: String,
    #[serde(default)]
    pub kind: VolumeKind,
    /// A `dir` volume's write quota in MiB (unbounded when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub quota_mib: Option<u64>,
    /// A `disk` volume's size in MiB (16 to 16 TiB; default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 16777216)]
    pub size_mib: Option<u64>,
}

/// Why a volume request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    #[error("volume name: {0}")]
    Name(String),
    #[error("quota_mib: must be 1 to {MAX_QUOTA_MIB} MiB, got {0}")]
    Quota(u64),
    #[error("size_mib: must be {MIN_DISK_MIB} to {MAX_DISK_MIB} MiB, got {0}")]
    Size(u64),
    #[error("quota_mib applies to dir volumes (a disk volume's budget is its size_mib)")]
    QuotaOnDisk,
    #[error("size_mib applies to disk volumes (a dir volume's budget is its quota_mib)")]
    SizeOnDir,
}

impl CreateVolumeRequest {
    pub fn validate(&self) -> Result<(), VolumeError> {
        validate_name(&self.name)
            .map_err(|e| VolumeError::Name(e.to_string().replace("sandbox name", "name")))?;
        match self.kind {
            VolumeKind::Dir => {
                if self.size_mib.is_some() {
                    return Err(VolumeError::SizeOnDir);
                }
                if let Some(q) = self.quota_mib.filter(|q| !(1..=MAX_QUOTA_MIB).contains(q)) {
                    return Err(VolumeError::Quota(q));
                }
            }
            VolumeKind::Disk => {
                if self.quota_mib.is_some() {
                    return Err(VolumeError::QuotaOnDisk);
                }
                if let Some(s) = self
                    .size_mib
                    .filter(|s| !(MIN_DISK_MIB..=MAX_DISK_MIB).contains(s))
                {
                    return Err(VolumeError::Size(s));
                }
            }
        }
        Ok(())
    }
}

/// A volume as `msb volume inspect` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, ToSchema)]
pub struct VolumeInfo {
    pub name: String,
    pub kind: VolumeKind,
    /// A `dir` volume's write quota (null: unbounded, or a disk volume).
    pub quota_mib: Option<u64>,
    /// A `disk` volume's size (null for a dir volume).
    pub size_mib: Option<u64>,
    /// Where it lives on msbd's host: the directory, or the image file.
    pub path: String,
    pub created_at_ms: i64,
    /// Sandboxes whose configuration mounts it (a volume in use cannot be removed).
    pub used_by: Vec<String>,
    /// Bytes of its files (a dir's apparent size; a disk image's length).
    pub logical_bytes: Option<u64>,
    /// Bytes the host's disk holds for it (allocated blocks).
    pub allocated_bytes: Option<u64>,
}
