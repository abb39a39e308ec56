//! `msb df`: what each sandbox and volume takes on the host, and what removing it would free.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use msb_api::{DiskUsageReport, DiskUsageTotals, SandboxDiskUsage, VolumeDiskUsage, VolumeKind};

use super::status_of_row;
use super::volumes::usage;
use crate::state::Daemon;

pub fn report(daemon: &Daemon) -> DiskUsageReport {
    let rows = daemon.store().list_sandboxes().unwrap_or_default();
    let sandboxes: Vec<SandboxDiskUsage> = rows
        .iter()
        .map(|row| {
            let dir = daemon.home.sandbox(&row.id);
            let (logical_bytes, allocated_bytes) = usage(dir.root()).unwrap_or((0, 0));
            let status = status_of_row(row).ok();
            let image = dir.root_disk_image();
            let has_disk = image.is_file();
            let quota_bytes = has_disk
                .then(|| std::fs::metadata(&image).ok().map(|m| m.len()))
                .flatten();
            let running = status.is_some_and(|s| s.is_active());
            let used_bytes = if !has_disk {
                None
            } else if let Some(mount) = running.then(|| mounted_disk(&dir)).flatten() {
                statfs_used(&mount)
            } else {
                ext4_used(&image)
            };
            SandboxDiskUsage {
                name: row.name.clone(),
                id: row.id.clone(),
                status: status.map_or_else(|| row.status.clone(), |s| s.to_string()),
                logical_bytes,
                allocated_bytes,
                quota_bytes,
                used_bytes,
                reclaimable_bytes: if running { 0 } else { allocated_bytes },
            }
        })
        .collect();
    let volumes: Vec<VolumeDiskUsage> = super::volumes::list(daemon)
        .into_iter()
        .map(|info| {
            let allocated_bytes = info.allocated_bytes.unwrap_or(0);
            VolumeDiskUsage {
                quota_bytes: info.quota_mib.or(info.size_mib).map(|mib| mib << 20),
                used_bytes: match info.kind {
                    VolumeKind::Disk => ext4_used(Path::new(&info.path)),
                    VolumeKind::Dir => None,
                },
                reclaimable_bytes: if info.used_by.is_empty() {
                    allocated_bytes
                } else {
                    0
                },
                name: info.name,
                kind: info.kind,
                used_by: info.used_by,
                logical_bytes: info.logical_bytes.unwrap_or(0),
                allocated_bytes,
            }
        })
        .collect();
    let mut totals = DiskUsageTotals::default();
    for (logical, allocated, reclaimable) in sandboxes
        .iter()
        .map(|s| (s.logical_bytes, s.allocated_bytes, s.reclaimable_bytes))
        .chain(
            volumes
                .iter()
                .map(|v| (v.logical_bytes, v.allocated_bytes, v.reclaimable_bytes)),
        )
    {
        totals.logical_bytes += logical;
        totals.allocated_bytes += allocated;
        totals.reclaimable_bytes += reclaimable;
    }
    DiskUsageReport {
        sandboxes,
        volumes,
        totals,
    }
}

/// Where a running sandbox's root disk is mounted, as msbd can reach it: in its supervisor's
/// mount namespace (`msb_runtime::mount_ns`), else (a supervisor that could not make one) in
/// msbd's own.
fn mounted_disk(dir: &msb_runtime::paths::SandboxDir) -> Option<std::path::PathBuf> {
    let supervisor = msb_runtime::run_record::RunRecord::read(&dir.run_record())
        .ok()
        .map(|record| record.supervisor_pid);
    supervisor
        .map(|pid| msb_runtime::mount_ns::seen_by(pid, &dir.root_disk_mount()))
        .into_iter()
        .chain([dir.root_disk_mount()])
        .find(|mount| msb_runtime::disk::is_mounted(mount))
}

/// Used bytes of the mounted filesystem at `path`, as `df` counts them.
fn statfs_used(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64);
    Some(used.saturating_mul(st.fragment_size() as u64))
}

/// Used bytes of the ext4 image at `path` from its superblock (blocks less free blocks; ext4's
/// own metadata included). Exact for an unmounted filesystem; a mounted one writes its counts
/// back only at sync and unmount.
fn ext4_used(path: &Path) -> Option<u64> {
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(1024)).ok()?;
    let mut sb = [0u8; 1024];
    file.read_exact(&mut sb).ok()?;
    ext4_used_of_superblock(&sb)
}

/// (pure) The used bytes a 1 KiB ext4 superblock states, or `None` if it is not one.
fn ext4_used_of_superblock(sb: &[u8; 1024]) -> Option<u64> {
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(sb[at..at + 4].try_into().unwrap()));
    const MAGIC: u16 = 0xEF53;
    const INCOMPAT_64BIT: u64 = 0x80;
    if u16::from_le_bytes([sb[56], sb[57]]) != MAGIC {
        return None;
    }
    let log_block_size = u32_at(24);
    if log_block_size > 6 {
        return None;
    }
    let wide = u32_at(96) & INCOMPAT_64BIT != 0;
    let (mut blocks, mut free) = (u32_at(4), u32_at(12));
    if wide {
        blocks |= u32_at(0x150) << 32;
        free |= u32_at(0x158) << 32;
    }
    Some(blocks.saturating_sub(free) << (10 + log_block_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_states_used_blocks_and_a_stranger_is_refused() {
        let mut sb = [0u8; 1024];
        assert_eq!(ext4_used_of_superblock(&sb), None);
        sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[24..28].copy_from_slice(&2u32.to_le_bytes()); // 4 KiB blocks
        sb[4..8].copy_from_slice(&1000u32.to_le_bytes());
        sb[12..16].copy_from_slice(&400u32.to_le_bytes());
        assert_eq!(ext4_used_of_superblock(&sb), Some(600 * 4096));
        sb[96..100].copy_from_slice(&0x80u32.to_le_bytes());
        sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            ext4_used_of_superblock(&sb),
            Some(((1u64 << 32) + 600) * 4096)
        );
    }

    #[test]
    fn a_fresh_image_reads_as_mkfs_left_it() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("d.img");
        if msb_runtime::disk::make_image(&image, 64 << 20).is_err() {
            eprintln!("skipped: no mkfs.ext4");
            return;
        }
        let used = ext4_used(&image).unwrap();
        // The journal and tables of a 64 MiB ext4, and no more.
        assert!((1 << 20..16 << 20).contains(&used), "{used}");
    }
}
