//! What the file server counts, for msb's metrics.
//!
//! The core keeps plain atomics ([`Counters`]); the supervisor's sampler reads them all at once
//! with [`Counters::snapshot`] into a [`CountersSnapshot`], a plain value it can turn into a
//! sample. Every field says its unit. Counters only go up for the life of the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::quota::QuotaState;

/// The operations the server counts, one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Create,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Releasedir,
    Fsyncdir,
    Statfs,
    Fallocate,
    Access,
    Xattr,
    /// Anything the server does not implement (answered `ENOSYS`).
    Other,
}

impl Op {
    /// Every operation, in counter order.
    pub const ALL: [Op; 28] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Symlink,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Create,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Opendir,
        Op::Readdir,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Statfs,
        Op::Fallocate,
        Op::Access,
        Op::Xattr,
        Op::Other,
    ];

    /// Lower-case name, as a metric attribute value (`op="write"`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Forget => "forget",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mknod => "mknod",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Open => "open",
            Op::Create => "create",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Releasedir => "releasedir",
            Op::Fsyncdir => "fsyncdir",
            Op::Statfs => "statfs",
            Op::Fallocate => "fallocate",
            Op::Access => "access",
            Op::Xattr => "xattr",
            Op::Other => "other",
        }
    }
}

/// The classes operations are exported by (`msb.fs.operation`), in export order.
pub const OP_CLASSES: [&str; 9] = [
    "metadata", "read", "write", "open", "create", "remove", "rename", "sync", "other",
];

impl Op {
    /// The class this operation is exported under: what it does to the file system, coarse
    /// enough for a dashboard (the 28 operations stay apart in [`CountersSnapshot::ops`]).
    pub fn class(self) -> &'static str {
        match self {
            Op::Lookup
            | Op::Forget
            | Op::Getattr
            | Op::Setattr
            | Op::Readlink
            | Op::Statfs
            | Op::Access
            | Op::Xattr => "metadata",
            Op::Read | Op::Readdir => "read",
            Op::Write | Op::Fallocate => "write",
            Op::Open | Op::Release | Op::Flush | Op::Opendir | Op::Releasedir => "open",
            Op::Create | Op::Mknod | Op::Mkdir | Op::Symlink | Op::Link => "create",
            Op::Unlink | Op::Rmdir => "remove",
            Op::Rename => "rename",
            Op::Fsync | Op::Fsyncdir => "sync",
            Op::Other => "other",
        }
    }
}

/// Upper bounds (inclusive), in microseconds, of the latency histogram's buckets; a last bucket
/// holds everything slower than the last bound.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];

/// Number of latency buckets: one per bound plus the overflow bucket.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// The live counters of one server (atomics, updated by the worker threads).
#[derive(Debug)]
pub struct Counters {
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    ops: [AtomicU64; Op::ALL.len()],
    errors: AtomicU64,
    enospc_rejections: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS],
    latency_sum_us: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            ops: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            enospc_rejections: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of a server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Bytes returned to the guest by `read`, in bytes.
    pub read_bytes: u64,
    /// Bytes the guest wrote that reached the host file (`write`), in bytes.
    pub written_bytes: u64,
    /// Operations handled, per type, in operations; indexed like [`Op::ALL`] (see
    /// [`CountersSnapshot::ops_of`]).
    pub ops: Vec<(Op, u64)>,
    /// Operations answered with an error (any `errno`), in operations.
    pub errors: u64,
    /// Operations refused with `ENOSPC` by the quota (not by the host disk), in operations.
    pub enospc_rejections: u64,
    /// Operation latency histogram, in operations per bucket (not cumulative); bucket `i` holds
    /// latencies `<= LATENCY_BOUNDS_US[i]` microseconds and above the previous bound, the last
    /// bucket everything slower.
    pub latency_buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all operation latencies, in microseconds.
    pub latency_sum_us: u64,
    /// The quota ledger: limit, used and baseline, in bytes.
    pub quota: QuotaState,
}

impl CountersSnapshot {
    /// How many operations of type `op` were handled.
    pub fn ops_of(&self, op: Op) -> u64 {
        self.ops
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(0, |(_, n)| *n)
    }
}

impl Counters {
    /// Adds `bytes` to the bytes read.
    pub fn add_read(&self, bytes: u64) {
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds `bytes` to the bytes written.
    pub fn add_written(&self, bytes: u64) {
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one quota rejection.
    pub fn add_enospc(&self) {
        self.enospc_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished operation, its outcome and how long it took.
    pub fn record(&self, op: Op, failed: bool, elapsed: Duration) {
        self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Starts timing an operation; finish it with [`OpTimer::done`].
    pub fn start(&self, op: Op) -> OpTimer<'_> {
        OpTimer {
            counters: self,
            op,
            started: Instant::now(),
        }
    }

    /// Copies every counter (each read atomically; the set is not one atomic cut).
    pub fn snapshot(&self, quota: QuotaState) -> CountersSnapshot {
        CountersSnapshot {
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
            ops: Op::ALL
                .iter()
                .map(|op| (*op, self.ops[*op as usize].load(Ordering::Relaxed)))
                .collect(),
            errors: self.errors.load(Ordering::Relaxed),
            enospc_rejections: self.enospc_rejections.load(Ordering::Relaxed),
            latency_buckets: std::array::from_fn(|i| {
                self.latency_buckets[i].load(Ordering::Relaxed)
            }),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            quota,
        }
    }
}

/// An operation being timed.
#[derive(Debug)]
pub struct OpTimer<'a> {
    counters: &'a Counters,
    op: Op,
    started: Instant,
}

impl OpTimer<'_> {
    /// Records the operation with its outcome and passes the result through.
    pub fn done<T>(self, result: std::io::Result<T>) -> std::io::Result<T> {
        self.counters
            .record(self.op, result.is_err(), self.started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket() {
        let counters = Counters::default();
        counters.record(Op::Write, false, Duration::from_micros(10));
        counters.record(Op::Write, true, Duration::from_micros(11));
        counters.record(Op::Read, false, Duration::from_secs(100));
        let snap = counters.snapshot(QuotaState::default());
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[1], 1);
        assert_eq!(snap.latency_buckets[LATENCY_BUCKETS - 1], 1);
        assert_eq!(snap.ops_of(Op::Write), 2);
        assert_eq!(snap.ops_of(Op::Read), 1);
        assert_eq!(snap.errors, 1);
        assert_eq!(snap.latency_sum_us, 100_000_021);
    }

    #[test]
    fn op_table_is_in_discriminant_order() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{}", op.name());
        }
    }
}
