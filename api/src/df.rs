//! `GET /v1/df` (`msb df`): what each sandbox and volume takes on msbd's host.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::volumes::VolumeKind;

/// One sandbox's footprint: its directory under `$MSB_HOME/sandboxes/`, root disk included.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct SandboxDiskUsage {
    pub name: String,
    pub id: String,
    pub status: String,
    /// Apparent bytes of its files (the root disk image counts with its full length).
    pub logical_bytes: u64,
    /// Bytes the host's disk holds for it (allocated blocks; a sparse image only what was
    /// written).
    pub allocated_bytes: u64,
    /// Its writable root's budget: the root disk's size (null: a host directory root, or a
    /// sandbox made before root disks).
    pub quota_bytes: Option<u64>,
    /// Bytes used on the root disk, from the filesystem itself (its `statfs` while mounted,
    /// its superblock otherwise, which also counts ext4's own metadata); null without a disk.
    pub used_bytes: Option<u64>,
    /// What removing it would free: all it holds when it is not running, else nothing.
    pub reclaimable_bytes: u64,
}

/// One named volume's footprint.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct VolumeDiskUsage {
    pub name: String,
    pub kind: VolumeKind,
    /// Sandboxes whose configuration mounts it.
    pub used_by: Vec<String>,
    pub logical_bytes: u64,
    pub allocated_bytes: u64,
    /// A dir volume's quota or a disk volume's size (null: a dir volume without a quota).
    pub quota_bytes: Option<u64>,
    /// A disk volume's used bytes (as for a root disk). Null for a dir volume: its quota's
    /// charge exists only while a sandbox serves it (`volumes_fs_used_bytes` in `msb metrics`).
    pub used_bytes: Option<u64>,
    /// All it holds when no sandbox mounts it, else nothing.
    pub reclaimable_bytes: u64,
}

/// Sums over every sandbox and volume.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, ToSchema)]
pub struct DiskUsageTotals {
    pub logical_bytes: u64,
    pub allocated_bytes: u64,
    pub reclaimable_bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct DiskUsageReport {
    pub sandboxes: Vec<SandboxDiskUsage>,
    pub volumes: Vec<VolumeDiskUsage>,
    pub totals: DiskUsageTotals,
}
