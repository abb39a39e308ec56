//! One sandbox's measurements at one instant, and the one declaration of every per-sandbox
//! instrument.
//!
//! [`declare_sample!`] takes one line per instrument (the [`Sample`] field, its Rust type, the
//! OTel name, kind, unit and how history aggregates it) and produces both the [`Sample`] struct
//! and [`INSTRUMENTS`], whose entries carry an accessor and a setter for their field. Everything
//! else derives from that table: the store's columns, history's gauges and rates, the API's
//! JSON and OpenAPI schema, the Prometheus and OTLP exporters and `docs/metrics.md`. Adding an
//! instrument is one line below plus the code that measures it.

use serde::{Deserialize, Serialize};

use crate::registry::{History, Instrument, Kind, Number, ValueType};

/// How a [`Sample`] field's Rust type maps to a value: `f64`, `Option<f64>` or `Option<u64>`.
pub trait FieldValue: Sized {
    const TYPE: ValueType;
    const NULLABLE: bool;
    fn number(&self) -> Option<Number>;
    fn from_number(value: Option<Number>) -> Self;
}

impl FieldValue for f64 {
    const TYPE: ValueType = ValueType::F64;
    const NULLABLE: bool = false;
    fn number(&self) -> Option<Number> {
        Some(Number::F64(*self))
    }
    fn from_number(value: Option<Number>) -> Self {
        value.map_or(0.0, Number::as_f64)
    }
}

impl FieldValue for Option<f64> {
    const TYPE: ValueType = ValueType::F64;
    const NULLABLE: bool = true;
    fn number(&self) -> Option<Number> {
        self.map(Number::F64)
    }
    fn from_number(value: Option<Number>) -> Self {
        value.map(Number::as_f64)
    }
}

impl FieldValue for Option<u64> {
    const TYPE: ValueType = ValueType::U64;
    const NULLABLE: bool = true;
    fn number(&self) -> Option<Number> {
        self.map(Number::U64)
    }
    fn from_number(value: Option<Number>) -> Self {
        value.map(|n| match n {
            Number::U64(v) => v,
            Number::F64(v) => v.max(0.0) as u64,
        })
    }
}

/// Base of every declaration line: a gauge or counter with no attributes, whose history is the
/// kind's default (gauges averaged, counters as rates).
const fn base(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    description: &'static str,
) -> Instrument {
    Instrument {
        name,
        kind,
        unit,
        description,
        field: "",
        scale: 1.0,
        requires: None,
        attributes: &[],
        history: match kind {
            Kind::Counter => History::Rate,
            _ => History::Average,
        },
        value_type: ValueType::U64,
        nullable: true,
        get: |_| None,
        set: |_, _| {},
    }
}

/// One file-server mount's quota ledger in a sample (`/.msb` or a directory volume), exported
/// per mount as `msb.sandbox.mount.quota.*` with the mount's guest path as `msb.mount`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MountQuota {
    /// Where the mount is in the sandbox (`/.msb`, `/data`).
    pub guest: String,
    /// Bytes of growth charged.
    pub used_bytes: u64,
    /// The quota; `None` when the mount is unbounded (a volume without one, read-only).
    pub limit_bytes: Option<u64>,
    /// What the mount held before its first write; `None` until measured.
    pub baseline_bytes: Option<u64>,
}

/// A cumulative latency histogram in a sample: per bucket counts (not cumulative) over the
/// bounds it was declared with plus an overflow bucket, and the sum of the observations.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct LatencyHistogram {
    /// `bounds.len() + 1` entries (see [`crate::FS_LATENCY_BUCKETS`]).
    pub counts: Vec<u64>,
    /// Sum of the observed latencies, in microseconds.
    pub sum_us: u64,
}

macro_rules! declare_sample {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty => $decl:expr ; )*) => {
        /// A sandbox's measurements at one tick. Counters are cumulative for the run (`run_id`);
        /// a new run starts them again from zero. Every optional field is `None` when its source
        /// is missing on this host or backend, never zero.
        #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
        pub struct Sample {
            pub sandbox_id: String,
            pub run_id: String,
            /// Milliseconds since the Unix epoch when the sample was taken.
            pub timestamp_ms: u64,
            $( $(#[doc = $doc])* pub $field: $ty, )*
            /// The latency of msb's file-server operations for this run (`/.msb` and the
            /// directory volumes together), exported as the histogram
            /// `msb.sandbox.filesystem.operation.duration`; live only: history keeps the
            /// operation counts, Prometheus and OTLP receivers keep the histogram.
            #[serde(default)]
            pub fs_op_latency: Option<LatencyHistogram>,
            /// Each file-server mount's quota ledger (`runtime_fs_*` and `volumes_fs_*` hold
            /// the totals), exported as `msb.sandbox.mount.quota.*`; live only, like
            /// `fs_op_latency` (`msb df` has the same figures per volume).
            #[serde(default)]
            pub fs_mounts: Vec<MountQuota>,
            /// CPU time the sampler has spent taking this run's samples so far, this one
            /// included: msb's own cost, exported as `msb.sampler.cpu`, not a measurement of the
            /// sandbox.
            pub sampler_cpu_ns: Option<u64>,
        }

        /// The per-sandbox instruments, in the order of the `msb metrics` JSON fields.
        pub const INSTRUMENTS: &[Instrument] = &[
            $( Instrument {
                field: stringify!($field),
                value_type: <$ty as FieldValue>::TYPE,
                nullable: <$ty as FieldValue>::NULLABLE,
                get: |s: &Sample| FieldValue::number(&s.$field),
                set: |s: &mut Sample, v: Option<Number>| s.$field = FieldValue::from_number(v),
                ..$decl
            }, )*
        ];
    };
}

/// How many leading [`INSTRUMENTS`] are microsandbox's `msb metrics --format json` keys (its
/// 18 keys are `name`, `state`, `cpus`, `timestamp` and these); `sandbox_id` and `run_id`
/// follow them, then msb's additions.
pub const MICROSANDBOX_FIELDS: usize = 14;

const fn scaled(mut i: Instrument, scale: f64) -> Instrument {
    i.scale = scale;
    i
}
const fn needs(mut i: Instrument, what: &'static str) -> Instrument {
    i.requires = Some(what);
    i
}
const fn with_max(mut i: Instrument) -> Instrument {
    i.history = History::AverageAndMax;
    i
}
const fn last(mut i: Instrument) -> Instrument {
    i.history = History::Last;
    i
}
const fn attrs(
    mut i: Instrument,
    attributes: &'static [(&'static str, &'static str)],
) -> Instrument {
    i.attributes = attributes;
    i
}

use Kind::{Counter, Gauge};

const PSI: &str = "cgroup v2 directory with pressure files (not on hybrid hosts)";
/// One instrument for the six pressure totals, told apart by attributes.
const STALL: Instrument = scaled(base("microsandbox.pressure.stall", Counter, "s", "Pressure stall time: some = at least one task stalled, full = all non-idle tasks stalled (cgroup v2 cpu/memory/io.pressure totals)"), 1e-6);
/// One instrument for major and minor faults, as OTel's `container.paging.faults`.
const FAULTS: Instrument = base(
    "container.paging.faults",
    Counter,
    "{fault}",
    "Page faults of the sandbox's processes (memory.stat pgfault, pgmajfault)",
);

#[rustfmt::skip]
declare_sample! {
    // microsandbox's keys, in its order.
    /// CPU time over wall time × 100 since the previous sample (100 = one core busy), clamped
    /// to cpus × 100. `None` on the first sample of a run.
    cpu_percent: Option<f64> => with_max(scaled(base("microsandbox.cpu.utilization", Gauge, "1", "CPU time over wall time since the previous sample; 1 = one core busy; clamped to the CPU quota"), 0.01));
    /// Cumulative CPU time of the sandbox's processes (cgroup `cpuacct.usage` / `cpu.stat`).
    vcpu_time_ns: Option<u64> => scaled(base("microsandbox.cpu.time", Counter, "s", "CPU time consumed by the sandbox's processes (cgroup cpuacct / cpu.stat)"), 1e-9);
    /// Memory in use by the sandbox (cgroup usage minus inactive page cache).
    memory_bytes: Option<u64> => with_max(base("microsandbox.memory.usage", Gauge, "By", "Memory in use: cgroup usage minus inactive file cache (tmpfs included)"));
    /// `memory_limit_bytes - memory_bytes`.
    memory_available_bytes: Option<u64> => base("microsandbox.memory.available", Gauge, "By", "Memory limit minus memory in use");
    /// Resident set of the sandbox's processes on the host (cgroup rss + mapped file).
    memory_host_resident_bytes: Option<u64> => base("microsandbox.memory.host_resident", Gauge, "By", "Anonymous and mapped-file memory resident on the host");
    /// The effective limit (the host's memory when unlimited).
    memory_limit_bytes: Option<u64> => base("microsandbox.memory.limit", Gauge, "By", "The effective memory limit (the host's memory when unlimited)");
    disk_read_bytes: Option<u64> => needs(base("microsandbox.disk.bytes_read", Counter, "By", "Bytes read from block devices by the sandbox"), "cgroup v2 io controller");
    disk_write_bytes: Option<u64> => needs(base("microsandbox.disk.bytes_written", Counter, "By", "Bytes written to block devices by the sandbox, writeback included"), "cgroup v2 io controller");
    net_rx_bytes: Option<u64> => needs(base("microsandbox.network.bytes_received", Counter, "By", "Ethernet bytes delivered to the sandbox"), "userspace network stack");
    net_tx_bytes: Option<u64> => needs(base("microsandbox.network.bytes_sent", Counter, "By", "Ethernet bytes sent by the sandbox"), "userspace network stack");
    /// The writable root's `statfs`: `(f_blocks - f_bfree) × f_frsize`.
    upper_used_bytes: Option<u64> => needs(base("microsandbox.upper.used", Gauge, "By", "Used space of the writable root's filesystem (its statfs)"), "ext4 writable root");
    /// The writable root's `statfs`: `f_bavail × f_frsize`.
    upper_free_bytes: Option<u64> => needs(base("microsandbox.upper.free", Gauge, "By", "Space left on the writable root's filesystem (its statfs)"), "ext4 writable root");
    /// Host blocks allocated to the writable root's backing storage (`st_blocks × 512`).
    upper_host_allocated_bytes: Option<u64> => needs(base("microsandbox.upper.host_allocated", Gauge, "By", "Host blocks allocated to the writable root's backing storage"), "default (overlay) root");
    /// Seconds since the run started.
    uptime_secs: f64 => last(base("microsandbox.uptime", Gauge, "s", "Time since the run started"));
    // msb's additions (after `sandbox_id` and `run_id` in the JSON).
    net_rx_packets: Option<u64> => needs(base("microsandbox.network.packets_received", Counter, "{packet}", "Frames delivered to the sandbox"), "userspace network stack");
    net_tx_packets: Option<u64> => needs(base("microsandbox.network.packets_sent", Counter, "{packet}", "Frames sent by the sandbox"), "userspace network stack");
    /// Processes in the sandbox (cgroup `cgroup.procs`).
    processes: Option<u64> => base("microsandbox.processes", Gauge, "{process}", "Processes in the sandbox (cgroup.procs of its pids cgroup)");
    /// The agent's latest heartbeat sequence number.
    heartbeat_seq: Option<u64> => base("microsandbox.heartbeat.sequence", Counter, "{heartbeat}", "Heartbeats the agent has sent in this run");
    /// Milliseconds since that heartbeat arrived.
    heartbeat_age_ms: Option<u64> => scaled(base("microsandbox.heartbeat.age", Gauge, "s", "Time since the agent's last heartbeat arrived"), 1e-3);
    /// Exec sessions running in the sandbox.
    active_sessions: Option<u64> => base("microsandbox.exec.sessions.active", Gauge, "{session}", "Exec sessions running in the sandbox");
    /// Usage minus inactive file cache: what the kernel cannot reclaim without swapping.
    memory_working_set_bytes: Option<u64> => base("container.memory.working_set", Gauge, "By", "Working set: cgroup usage minus inactive file cache (what eviction decisions look at)");
    /// Anonymous memory (v1 `total_rss`, v2 `anon` in memory.stat).
    memory_anon_bytes: Option<u64> => base("container.memory.rss", Gauge, "By", "Anonymous memory of the sandbox's processes (memory.stat anon / total_rss)");
    /// Page cache charged to the sandbox (v1 `total_cache`, v2 `file`).
    memory_file_bytes: Option<u64> => base("microsandbox.memory.file_cache", Gauge, "By", "Page cache charged to the sandbox (memory.stat file / total_cache), tmpfs included");
    /// Processes the kernel's OOM killer ended in the sandbox during the run.
    memory_oom_kills: Option<u64> => base("microsandbox.memory.oom_kills", Counter, "{kill}", "Processes killed by the kernel's OOM killer in the sandbox's memory cgroup (memory.events / memory.oom_control)");
    /// Times the memory limit was hit (v1 `memory.failcnt` plus `memory.memsw.failcnt`, v2 `max` in memory.events).
    memory_limit_hits: Option<u64> => base("microsandbox.memory.limit_hits", Counter, "{event}", "Times the sandbox's memory usage reached its limit and the kernel had to reclaim (memory.events max / memory.failcnt plus memory.memsw.failcnt)");
    /// Minor page faults (`pgfault - pgmajfault` in memory.stat).
    page_faults_minor: Option<u64> => attrs(FAULTS, &[("system.paging.fault.type", "minor")]);
    /// Major page faults (`pgmajfault` in memory.stat).
    page_faults_major: Option<u64> => attrs(FAULTS, &[("system.paging.fault.type", "major")]);
    /// CFS enforcement periods elapsed (`nr_periods` in cpu.stat; only move under a CPU quota).
    cpu_periods: Option<u64> => base("microsandbox.cpu.periods", Counter, "{period}", "CPU quota enforcement periods that elapsed while the sandbox ran (cpu.stat nr_periods)");
    /// Periods in which the sandbox was throttled (`nr_throttled`).
    cpu_throttled_periods: Option<u64> => base("microsandbox.cpu.throttled_periods", Counter, "{period}", "Enforcement periods in which the sandbox used up its CPU quota and was throttled (cpu.stat nr_throttled)");
    /// Time the sandbox was throttled (`throttled_time` v1, `throttled_usec` v2), in ns.
    cpu_throttled_time_ns: Option<u64> => scaled(base("microsandbox.cpu.throttled_time", Counter, "s", "Time the sandbox's processes were throttled by its CPU quota (cpu.stat throttled_time / throttled_usec)"), 1e-9);
    /// Time some task waited for CPU (cgroup v2 `cpu.pressure` some total), in µs.
    cpu_pressure_some_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "cpu"), ("pressure.scope", "some")]), PSI);
    cpu_pressure_full_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "cpu"), ("pressure.scope", "full")]), PSI);
    memory_pressure_some_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "memory"), ("pressure.scope", "some")]), PSI);
    memory_pressure_full_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "memory"), ("pressure.scope", "full")]), PSI);
    io_pressure_some_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "io"), ("pressure.scope", "some")]), PSI);
    io_pressure_full_us: Option<u64> => needs(attrs(STALL, &[("pressure.resource", "io"), ("pressure.scope", "full")]), PSI);
    /// Open file descriptors of the sandbox's processes (`/proc/PID/fd` entries).
    open_fds: Option<u64> => base("microsandbox.file_descriptors", Gauge, "{file_descriptor}", "Open file descriptors of the sandbox's processes (/proc/PID/fd)");
    /// Threads in the sandbox (cgroup `pids.current`, which counts tasks).
    threads: Option<u64> => base("microsandbox.threads", Gauge, "{thread}", "Threads in the sandbox (pids.current of its pids cgroup)");
    /// Bytes of growth charged to `/.msb`'s budget (its file server's quota ledger).
    runtime_fs_used_bytes: Option<u64> => needs(attrs(QUOTA_USED, RUNTIME_MOUNT), RUNTIME_FS);
    /// Bytes of growth charged to the quotas of the sandbox's directory volumes (`-v` binds
    /// and named directory volumes, together; `msb df` has each one).
    volumes_fs_used_bytes: Option<u64> => needs(attrs(QUOTA_USED, VOLUMES_MOUNT), VOLUMES_FS);
    /// `/.msb`'s budget (16 MiB).
    runtime_fs_limit_bytes: Option<u64> => needs(attrs(QUOTA_LIMIT, RUNTIME_MOUNT), RUNTIME_FS);
    /// The sum of the directory volumes' quotas (read-only volumes have none).
    volumes_fs_limit_bytes: Option<u64> => needs(attrs(QUOTA_LIMIT, VOLUMES_MOUNT), VOLUMES_FS);
    /// What `/.msb` held before its first write (never charged); null until measured.
    runtime_fs_baseline_bytes: Option<u64> => needs(attrs(QUOTA_BASELINE, RUNTIME_MOUNT), RUNTIME_FS);
    /// Writes into `/.msb` refused with ENOSPC by its budget.
    runtime_fs_quota_rejections: Option<u64> => needs(attrs(QUOTA_REJECTIONS, RUNTIME_MOUNT), RUNTIME_FS);
    /// Writes into the directory volumes refused with ENOSPC by their quotas.
    volumes_fs_quota_rejections: Option<u64> => needs(attrs(QUOTA_REJECTIONS, VOLUMES_MOUNT), VOLUMES_FS);
    /// Bytes the workload read from `/.msb` through its file server.
    runtime_fs_read_bytes: Option<u64> => needs(attrs(FS_IO, &[("msb.mount", "/.msb"), ("disk.io.direction", "read")]), RUNTIME_FS);
    /// Bytes the workload wrote into `/.msb` through its file server.
    runtime_fs_written_bytes: Option<u64> => needs(attrs(FS_IO, &[("msb.mount", "/.msb"), ("disk.io.direction", "write")]), RUNTIME_FS);
    /// Bytes the workload read from its directory volumes through their file servers.
    volumes_fs_read_bytes: Option<u64> => needs(attrs(FS_IO, &[("msb.mount", "volumes"), ("disk.io.direction", "read")]), VOLUMES_FS);
    /// Bytes the workload wrote into its directory volumes through their file servers.
    volumes_fs_written_bytes: Option<u64> => needs(attrs(FS_IO, &[("msb.mount", "volumes"), ("disk.io.direction", "write")]), VOLUMES_FS);
    /// Metadata operations (lookup, getattr, setattr, access, readlink, statfs, xattrs,
    /// forget) msb's file servers handled for the sandbox (`/.msb` and its directory volumes).
    fs_ops_metadata: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "metadata")]), ANY_FS);
    /// Reads and directory reads.
    fs_ops_read: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "read")]), ANY_FS);
    /// Writes and fallocates.
    fs_ops_write: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "write")]), ANY_FS);
    /// Opens, closes (release, flush) of files and directories.
    fs_ops_open: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "open")]), ANY_FS);
    /// Files, directories, nodes and links made.
    fs_ops_create: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "create")]), ANY_FS);
    /// Unlinks and rmdirs.
    fs_ops_remove: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "remove")]), ANY_FS);
    /// Renames.
    fs_ops_rename: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "rename")]), ANY_FS);
    /// fsyncs of files and directories.
    fs_ops_sync: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "sync")]), ANY_FS);
    /// Operations the file server does not implement (answered ENOSYS).
    fs_ops_other: Option<u64> => needs(attrs(FS_OPS, &[("msb.fs.operation", "other")]), ANY_FS);
    /// Operations msb's file servers answered with an error (any errno; quota refusals too).
    fs_op_errors: Option<u64> => needs(base("microsandbox.filesystem.operation.errors", Counter, "{operation}", "File-server operations answered with an error (any errno, ENOSPC of a quota included)"), ANY_FS);
    /// Guest frames dropped because the transmit ring (guest -> stack) was full.
    net_drops_tx_ring_full: Option<u64> => needs(attrs(NET_DROPPED, &[("network.drop.reason", "tx_ring_full")]), NET);
    /// Datagrams for the guest dropped because the receive ring was full.
    net_drops_rx_ring_full: Option<u64> => needs(attrs(NET_DROPPED, &[("network.drop.reason", "rx_ring_full")]), NET);
    /// Flows and packets the egress policy refused.
    net_drops_policy_denied: Option<u64> => needs(attrs(NET_DROPPED, &[("network.drop.reason", "policy_denied")]), NET);
    /// DNS queries that got no answer or were refused.
    net_drops_dns_failed: Option<u64> => needs(attrs(NET_DROPPED, &[("network.drop.reason", "dns_failed")]), NET);
    /// Frames waiting in the transmit ring now.
    net_tx_ring_frames: Option<u64> => needs(attrs(NET_RING, &[("network.io.direction", "transmit")]), NET);
    /// Frames waiting in the receive ring now.
    net_rx_ring_frames: Option<u64> => needs(attrs(NET_RING, &[("network.io.direction", "receive")]), NET);
    /// TCP connections open now (outbound and published).
    net_tcp_open: Option<u64> => needs(attrs(NET_OPEN, &[("network.transport", "tcp")]), NET);
    /// UDP flows open now (outbound and published).
    net_udp_open: Option<u64> => needs(attrs(NET_OPEN, &[("network.transport", "udp")]), NET);
    /// TCP connections refused at the connection limit.
    net_tcp_limit_refused: Option<u64> => needs(attrs(NET_REFUSED, &[("network.transport", "tcp")]), NET);
    /// UDP flows refused at the flow limit.
    net_udp_limit_refused: Option<u64> => needs(attrs(NET_REFUSED, &[("network.transport", "udp")]), NET);
    /// DNS queries the gateway received.
    net_dns_queries: Option<u64> => needs(base("microsandbox.network.dns.queries", Counter, "{query}", "DNS queries the sandbox's gateway received"), NET);
}

const NET: &str = "userspace network stack";
const NET_DROPPED: Instrument = base(
    "microsandbox.network.dropped",
    Counter,
    "{packet}",
    "Frames, datagrams and flows the sandbox's network dropped, by reason",
);
const NET_RING: Instrument = base(
    "microsandbox.network.ring.frames",
    Gauge,
    "{frame}",
    "Frames waiting in the sandbox's network rings (transmit: guest to stack)",
);
const NET_OPEN: Instrument = base(
    "microsandbox.network.connections",
    Gauge,
    "{connection}",
    "TCP connections and UDP flows open in the sandbox's network",
);
const NET_REFUSED: Instrument = base(
    "microsandbox.network.connections.refused",
    Counter,
    "{connection}",
    "New TCP connections and UDP flows refused at the sandbox's connection limits",
);

const VOLUMES_FS: &str = "a directory volume (-v HOST_DIR:GUEST) served by msb's file server";
const VOLUMES_MOUNT: &[(&str, &str)] = &[("msb.mount", "volumes")];

const ANY_FS: &str = "msb's file server (/.msb or a directory volume)";
const FS_OPS: Instrument = base(
    "microsandbox.filesystem.operations",
    Counter,
    "{operation}",
    "Operations msb's file servers handled for the sandbox (/.msb and its directory volumes together), by class",
);
const RUNTIME_FS: &str = "/.msb served by msb's file server (/dev/fuse)";
const RUNTIME_MOUNT: &[(&str, &str)] = &[("msb.mount", "/.msb")];
const QUOTA_USED: Instrument = base("microsandbox.filesystem.quota.used", Gauge, "By", "Bytes of growth charged to a mount's write quota (only growth is charged; content there before the first write is not)");
const QUOTA_LIMIT: Instrument = base(
    "microsandbox.filesystem.quota.limit",
    Gauge,
    "By",
    "A mount's write quota",
);
const QUOTA_BASELINE: Instrument = base(
    "microsandbox.filesystem.quota.baseline",
    Gauge,
    "By",
    "What a quota'd mount held before its first write (never charged)",
);
const QUOTA_REJECTIONS: Instrument = base(
    "microsandbox.filesystem.quota.rejections",
    Counter,
    "{write}",
    "Writes a mount's quota refused with ENOSPC",
);
const FS_IO: Instrument = base(
    "microsandbox.filesystem.io",
    Counter,
    "By",
    "Bytes read and written through msb's file server, per mount",
);
