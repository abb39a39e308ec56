//! The sampler's readings of msb's file servers: `/.msb`'s and the directory volumes' quota
//! ledgers and byte counts, the operations of all of them by class with their latency, and the
//! root disk's statfs.

use msb_fs::CountersSnapshot;
use msb_metrics::{LatencyHistogram, MountQuota, Sample};

use super::Sampler;

impl Sampler {
    /// Reads every file server's counters once, into the `/.msb`, volume and operation fields.
    pub(super) fn read_file_servers(&mut self, sample: &mut Sample) {
        let runtime = self.runtime_fs.as_ref().map(|fs| fs.counters());
        let mounts: Vec<_> = self.mount_fs.iter().map(|(_, fs)| fs.counters()).collect();
        self.read_runtime_fs(sample, runtime.as_ref());
        self.read_mount_fs(sample, &mounts);
        let all: Vec<&CountersSnapshot> = runtime.iter().chain(&mounts).collect();
        self.read_fs_operations(sample, &all);
        let guests = self.runtime_fs.iter().map(|_| "/.msb".to_owned()).chain(
            self.mount_fs
                .iter()
                .map(|(guest, _)| guest.to_string_lossy().into_owned()),
        );
        sample.fs_mounts = guests
            .zip(all)
            .map(|(guest, counters)| MountQuota {
                guest,
                used_bytes: counters.quota.used_bytes,
                limit_bytes: counters.quota.limit_bytes,
                baseline_bytes: counters.quota.baseline_bytes,
            })
            .collect();
    }

    fn read_mount_fs(&mut self, sample: &mut Sample, mounts: &[CountersSnapshot]) {
        if mounts.is_empty() {
            self.missing(
                "volumes_fs_used_bytes",
                "the sandbox has no directory volume served by msb's file server",
            );
            return;
        }
        let (mut used, mut limit, mut rejections, mut read, mut written) = (0, 0, 0, 0, 0);
        for counters in mounts {
            used += counters.quota.used_bytes;
            limit += counters.quota.limit_bytes.unwrap_or(0);
            rejections += counters.enospc_rejections;
            read += counters.read_bytes;
            written += counters.written_bytes;
        }
        sample.volumes_fs_used_bytes = Some(used);
        sample.volumes_fs_limit_bytes = Some(limit);
        sample.volumes_fs_quota_rejections = Some(rejections);
        sample.volumes_fs_read_bytes = Some(read);
        sample.volumes_fs_written_bytes = Some(written);
    }

    fn read_runtime_fs(&mut self, sample: &mut Sample, counters: Option<&CountersSnapshot>) {
        let Some(counters) = counters else {
            self.missing(
                "runtime_fs_used_bytes",
                "/.msb is a plain bind (no /dev/fuse for its file server)",
            );
            return;
        };
        sample.runtime_fs_used_bytes = Some(counters.quota.used_bytes);
        sample.runtime_fs_limit_bytes = counters.quota.limit_bytes;
        sample.runtime_fs_baseline_bytes = counters.quota.baseline_bytes;
        sample.runtime_fs_quota_rejections = Some(counters.enospc_rejections);
        sample.runtime_fs_read_bytes = Some(counters.read_bytes);
        sample.runtime_fs_written_bytes = Some(counters.written_bytes);
    }

    /// Operations by class, errors and the latency histogram, summed over every file server
    /// of the sandbox.
    fn read_fs_operations(&mut self, sample: &mut Sample, servers: &[&CountersSnapshot]) {
        if servers.is_empty() {
            self.missing(
                "fs_ops_metadata",
                "neither /.msb nor a directory volume is served by msb's file server",
            );
            return;
        }
        let mut classes = [0u64; msb_fs::counters::OP_CLASSES.len()];
        let mut errors = 0;
        let mut latency = LatencyHistogram {
            counts: vec![0; msb_fs::counters::LATENCY_BUCKETS],
            sum_us: 0,
        };
        for counters in servers {
            for (op, count) in &counters.ops {
                let class = msb_fs::counters::OP_CLASSES
                    .iter()
                    .position(|c| *c == op.class())
                    .expect("every class is listed");
                classes[class] += count;
            }
            errors += counters.errors;
            for (total, count) in latency.counts.iter_mut().zip(&counters.latency_buckets) {
                *total += count;
            }
            latency.sum_us += counters.latency_sum_us;
        }
        let [metadata, read, write, open, create, remove, rename, sync, other] = classes;
        sample.fs_ops_metadata = Some(metadata);
        sample.fs_ops_read = Some(read);
        sample.fs_ops_write = Some(write);
        sample.fs_ops_open = Some(open);
        sample.fs_ops_create = Some(create);
        sample.fs_ops_remove = Some(remove);
        sample.fs_ops_rename = Some(rename);
        sample.fs_ops_sync = Some(sync);
        sample.fs_ops_other = Some(other);
        sample.fs_op_errors = Some(errors);
        sample.fs_op_latency = Some(latency);
    }
}

/// The root disk's used and free bytes as the workload's `df /` sees them (through `disk`, a
/// handle on its upper directory) into `sample`; returns the image's allocated bytes.
pub(super) fn read_root_disk(
    disk: &std::fs::File,
    image: &std::path::Path,
    sample: &mut Sample,
) -> Option<u64> {
    if let Ok(st) = nix::sys::statfs::fstatfs(disk) {
        let block = st.block_size() as u64;
        let used = st.blocks().saturating_sub(st.blocks_free());
        sample.upper_used_bytes = Some(used.saturating_mul(block));
        sample.upper_free_bytes = Some(st.blocks_available().saturating_mul(block));
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(image).ok().map(|m| m.blocks() * 512)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_buckets_are_the_file_servers() {
        let servers: Vec<f64> = msb_fs::counters::LATENCY_BOUNDS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .collect();
        assert_eq!(servers, msb_metrics::FS_LATENCY_BUCKETS);
    }

    #[test]
    fn the_classes_destructured_are_the_listed_ones() {
        // `read_fs_operations` destructures the class totals in this order.
        assert_eq!(
            msb_fs::counters::OP_CLASSES,
            ["metadata", "read", "write", "open", "create", "remove", "rename", "sync", "other"]
        );
        for op in msb_fs::Op::ALL {
            assert!(msb_fs::counters::OP_CLASSES.contains(&op.class()), "{op:?}");
        }
    }
}
