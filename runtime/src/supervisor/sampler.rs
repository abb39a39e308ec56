//! The sampler: once per interval, every source of one sandbox read into one [`Sample`].
//!
//! Sources are cgroup files (kept open and read with `pread`, so a tick costs a few reads and
//! no opens), the agent's heartbeat, the supervisor's own session table, and the writable
//! root's directory. A source that does not exist on this host or backend stays `None`; the
//! reason is logged once per sandbox. Samples go to msbd over the watch connections and stay in
//! the [`super::outbox`] until msbd has stored them.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msb_metrics::Sample;

use super::state::Shared;
use crate::backend::{CgroupPaths, CgroupVersion};
use crate::run_record::now_ms;

mod fs;

/// A cgroup (or proc) file kept open.
struct Source {
    file: File,
    buffer: Vec<u8>,
}

impl Source {
    fn open(path: &Path) -> Option<Source> {
        File::open(path).ok().map(|file| Source {
            file,
            buffer: vec![0; 4096],
        })
    }

    /// The whole file, read from offset 0 (works on cgroup files that are regenerated on read).
    fn read(&mut self) -> Option<&str> {
        let mut filled = 0;
        loop {
            let n = self
                .file
                .read_at(&mut self.buffer[filled..], filled as u64)
                .ok()?;
            if n == 0 {
                break;
            }
            filled += n;
            if filled == self.buffer.len() {
                self.buffer.resize(filled * 2, 0);
            }
        }
        std::str::from_utf8(&self.buffer[..filled]).ok()
    }

    fn number(&mut self) -> Option<u64> {
        self.read()?.trim().parse().ok()
    }

    /// `key value` lines (memory.stat, cpu.stat).
    fn keyed(&mut self, key: &str) -> Option<u64> {
        keyed(self.read()?, key)
    }
}

/// What the sampler reads, opened once per run.
pub struct Sampler {
    cpu: Option<(Source, CgroupVersion)>,
    memory_usage: Option<Source>,
    memory_stat: Option<(Source, CgroupVersion)>,
    memory_limit: Option<Source>,
    io: Option<(Source, CgroupVersion)>,
    pids: Option<Source>,
    /// `cgroup.procs` of the pids controller's directory: the processes, whose fds are counted.
    /// Opened at every read: cgroup v1 keeps the pid list of an open file while it is read
    /// again within a second, so a file held open would list the processes of its first read.
    procs: Option<std::path::PathBuf>,
    /// The cpu controller's `cpu.stat`: throttling.
    cpu_stat: Option<(Source, CgroupVersion)>,
    /// v2 `memory.events`, or v1 `memory.oom_control` and `memory.failcnt`.
    memory_events: MemoryEvents,
    /// `cpu.pressure`, `memory.pressure`, `io.pressure` of a cgroup v2 directory.
    pressure: [Option<Source>; 3],
    host_memory_bytes: Option<u64>,
    cpu_ceiling_percent: f64,
    previous_cpu: Option<(u64, Instant)>,
    warned: HashSet<&'static str>,
    sandbox_name: String,
    ticks: u64,
    stat_cache: MemoryStat,
    limit_cache: Option<u64>,
    /// `/.msb`'s file server, when it has one.
    runtime_fs: Option<std::sync::Arc<msb_fs::PassthroughFs>>,
    /// The directory volumes' file servers (guest path, server).
    mount_fs: Vec<(std::path::PathBuf, std::sync::Arc<msb_fs::PassthroughFs>)>,
    /// The network's counters; `None` under `--no-network`.
    net: Option<std::sync::Arc<msb_net::NetCounters>>,
    /// A handle on the upper directory on the root disk (taken by [`run`]).
    root_disk: Option<std::fs::File>,
}

/// What msb takes from memory.stat.
#[derive(Debug, Default, Clone, Copy)]
struct MemoryStat {
    inactive_file: Option<u64>,
    resident: Option<u64>,
    anon: Option<u64>,
    file: Option<u64>,
    page_faults: Option<u64>,
    major_page_faults: Option<u64>,
    usage_at_read: Option<u64>,
}

/// Where the memory cgroup reports OOM kills and limit hits.
#[derive(Default)]
enum MemoryEvents {
    #[default]
    None,
    /// `memory.events`: `max` (limit hits) and `oom_kill`.
    V2(Source),
    /// `memory.oom_control` (`oom_kill`), `memory.failcnt` and `memory.memsw.failcnt` (limit
    /// hits: with memory and swap limited together a failed charge is counted in exactly one
    /// of the two, the memory-and-swap counter being tried first).
    V1(Option<Source>, Option<Source>, Option<Source>),
}

/// `(limit hits, OOM kills)`.
fn read_memory_events(events: &mut MemoryEvents) -> (Option<u64>, Option<u64>) {
    match events {
        MemoryEvents::None => (None, None),
        MemoryEvents::V2(source) => {
            let text = source.read().unwrap_or_default();
            (keyed(text, "max"), keyed(text, "oom_kill"))
        }
        MemoryEvents::V1(oom_control, failcnt, memsw_failcnt) => (
            failcnt
                .as_mut()
                .and_then(Source::number)
                .map(|hits| hits + memsw_failcnt.as_mut().and_then(Source::number).unwrap_or(0)),
            oom_control
                .as_mut()
                .and_then(|s| keyed(s.read().unwrap_or_default(), "oom_kill")),
        ),
    }
}

/// The value of `key value` line `key` in `text`.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `(periods, throttled periods, throttled ns)` from a cpu controller's `cpu.stat`.
fn throttling(text: &str, version: CgroupVersion) -> (Option<u64>, Option<u64>, Option<u64>) {
    let time_ns = match version {
        CgroupVersion::V1 => keyed(text, "throttled_time"),
        CgroupVersion::V2 => keyed(text, "throttled_usec").map(|us| us * 1000),
    };
    (
        keyed(text, "nr_periods"),
        keyed(text, "nr_throttled"),
        time_ns,
    )
}

/// `(some total, full total)` in µs from a pressure file (`some avg10=.. total=N`).
fn pressure_totals(text: &str) -> (Option<u64>, Option<u64>) {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total=")?.parse().ok())
    };
    (total("some "), total("full "))
}

/// Open file descriptors of the processes listed in `procs` (a `cgroup.procs` text); `None`
/// when there are more than `max_processes` (counting them would cost more than a tick).
fn open_fds(procs: &str, max_processes: usize) -> Option<u64> {
    let mut total = 0u64;
    for (n, pid) in procs.lines().enumerate() {
        if n >= max_processes {
            return None;
        }
        // A process that exits meanwhile has no fd directory any more: it has no fds either.
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", pid.trim())) {
            total += entries.count() as u64;
        }
    }
    Some(total)
}

fn read_memory_stat(
    source: &mut Option<(Source, CgroupVersion)>,
    usage: Option<u64>,
) -> MemoryStat {
    let Some((stat, version)) = source else {
        return MemoryStat::default();
    };
    let (inactive, rss, mapped, file, faults, major) = match version {
        CgroupVersion::V1 => (
            "total_inactive_file ",
            "total_rss ",
            "total_mapped_file ",
            "total_cache ",
            "total_pgfault ",
            "total_pgmajfault ",
        ),
        CgroupVersion::V2 => (
            "inactive_file ",
            "anon ",
            "file_mapped ",
            "file ",
            "pgfault ",
            "pgmajfault ",
        ),
    };
    let text = stat.read().unwrap_or_default();
    let key = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
    };
    MemoryStat {
        inactive_file: key(inactive),
        resident: key(rss).zip(key(mapped)).map(|(a, b)| a + b),
        anon: key(rss),
        file: key(file),
        page_faults: key(faults),
        major_page_faults: key(major),
        usage_at_read: usage,
    }
}

fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl Sampler {
    pub fn new(cgroups: Option<&CgroupPaths>, cpus: Option<f64>, sandbox_name: &str) -> Sampler {
        let dir = |d: &Option<crate::backend::ControllerDir>| {
            d.as_ref().map(|d| (d.path.clone(), d.version))
        };
        let cgroups = cgroups.cloned().unwrap_or_default();
        let cpu = dir(&cgroups.cpuacct)
            .or_else(|| dir(&cgroups.cpu))
            .and_then(|(path, version)| {
                let file = if version == CgroupVersion::V1 {
                    "cpuacct.usage"
                } else {
                    "cpu.stat"
                };
                Source::open(&path.join(file)).map(|s| (s, version))
            });
        let memory = dir(&cgroups.memory);
        let (memory_usage, memory_stat, memory_limit) = match &memory {
            Some((path, CgroupVersion::V1)) => (
                Source::open(&path.join("memory.usage_in_bytes")),
                Source::open(&path.join("memory.stat")).map(|s| (s, CgroupVersion::V1)),
                Source::open(&path.join("memory.limit_in_bytes")),
            ),
            Some((path, CgroupVersion::V2)) => (
                Source::open(&path.join("memory.current")),
                Source::open(&path.join("memory.stat")).map(|s| (s, CgroupVersion::V2)),
                Source::open(&path.join("memory.max")),
            ),
            None => (None, None, None),
        };
        // Only cgroup v2's io.stat attributes buffered writes (writeback) to the cgroup that
        // dirtied the pages; v1's blkio counts only throttled or direct I/O, so its totals would
        // understate what the workload moved. On v1 the disk fields stay null.
        let io = dir(&cgroups.io)
            .filter(|(_, version)| *version == CgroupVersion::V2)
            .and_then(|(path, version)| Source::open(&path.join("io.stat")).map(|s| (s, version)));
        let pids =
            dir(&cgroups.pids).and_then(|(path, _)| Source::open(&path.join("pids.current")));
        let procs = dir(&cgroups.pids).map(|(path, _)| path.join("cgroup.procs"));
        let cpu_stat = dir(&cgroups.cpu)
            .and_then(|(path, version)| Source::open(&path.join("cpu.stat")).map(|s| (s, version)));
        let memory_events = match &memory {
            Some((path, CgroupVersion::V1)) => MemoryEvents::V1(
                Source::open(&path.join("memory.oom_control")),
                Source::open(&path.join("memory.failcnt")),
                Source::open(&path.join("memory.memsw.failcnt")),
            ),
            Some((path, CgroupVersion::V2)) => Source::open(&path.join("memory.events"))
                .map_or(MemoryEvents::None, MemoryEvents::V2),
            None => MemoryEvents::None,
        };
        // Pressure files exist in every cgroup v2 directory (when the kernel has PSI); a
        // sandbox placed only in v1 hierarchies has none.
        let v2_dir = [&cgroups.cpu, &cgroups.memory, &cgroups.io, &cgroups.pids]
            .into_iter()
            .flatten()
            .find(|d| d.version == CgroupVersion::V2)
            .map(|d| d.path.clone());
        let pressure = ["cpu.pressure", "memory.pressure", "io.pressure"].map(|file| {
            v2_dir
                .as_ref()
                .and_then(|dir| Source::open(&dir.join(file)))
        });
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        Sampler {
            cpu,
            memory_usage,
            memory_stat,
            memory_limit,
            io,
            pids,
            procs,
            cpu_stat,
            memory_events,
            pressure,
            host_memory_bytes: host_memory_bytes(),
            cpu_ceiling_percent: cpus.unwrap_or(host_cpus).min(host_cpus) * 100.0,
            previous_cpu: None,
            warned: HashSet::new(),
            sandbox_name: sandbox_name.to_owned(),
            ticks: 0,
            stat_cache: MemoryStat::default(),
            limit_cache: None,
            runtime_fs: None,
            mount_fs: Vec::new(),
            net: None,
            root_disk: None,
        }
    }

    /// Makes the next [`Sampler::read`] re-read every cached source (memory.stat, the limit):
    /// for the run's final sample.
    pub fn refresh_everything_next(&mut self) {
        self.ticks = 0;
    }

    fn missing(&mut self, field: &'static str, why: &str) {
        if self.warned.insert(field) {
            tracing::info!(sandbox = %self.sandbox_name, "{field} is null: {why}");
        }
    }

    /// Reads every source into `sample` (identity, time and supervisor fields are the caller's).
    pub fn read(&mut self, sample: &mut Sample) {
        let now = Instant::now();
        sample.vcpu_time_ns = match &mut self.cpu {
            Some((source, CgroupVersion::V1)) => source.number(),
            Some((source, CgroupVersion::V2)) => source.keyed("usage_usec").map(|us| us * 1000),
            None => None,
        };
        match (sample.vcpu_time_ns, self.previous_cpu) {
            (Some(cpu_ns), Some((previous_ns, at))) => {
                let wall_ns = now.duration_since(at).as_nanos() as f64;
                let percent = cpu_ns.saturating_sub(previous_ns) as f64 / wall_ns.max(1.0) * 100.0;
                sample.cpu_percent = Some(percent.clamp(0.0, self.cpu_ceiling_percent));
            }
            (None, _) => self.missing(
                "vcpu_time_ns",
                "no cpuacct/cpu cgroup controller for this sandbox",
            ),
            _ => {}
        }
        if let Some(cpu_ns) = sample.vcpu_time_ns {
            self.previous_cpu = Some((cpu_ns, now));
        }

        let usage = self.memory_usage.as_mut().and_then(Source::number);
        // memory.stat is the costliest file to generate: re-read it every 10th tick, or as soon
        // as usage moved by more than 1 MiB since it was read (then it matters).
        let moved = match (usage, self.stat_cache.usage_at_read) {
            (Some(now), Some(then)) => now.abs_diff(then) > 1 << 20,
            _ => true,
        };
        if moved || self.ticks % 10 == 0 {
            self.stat_cache = read_memory_stat(&mut self.memory_stat, usage);
        }
        let (inactive_file, resident) = (self.stat_cache.inactive_file, self.stat_cache.resident);
        sample.memory_bytes = usage.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)));
        // The limit changes only on a resize: re-read it every 10th tick.
        if self.ticks % 10 == 0 {
            self.limit_cache = self
                .memory_limit
                .as_mut()
                .and_then(Source::read)
                .map(str::trim)
                .and_then(|text| {
                    // "max" (v2) or a huge page-rounded number (v1) mean no limit.
                    text.parse::<u64>().ok().filter(|l| *l < (1u64 << 62))
                });
        }
        let limit = self.limit_cache;
        sample.memory_limit_bytes = limit
            .or(self.host_memory_bytes)
            .map(|l| l.min(self.host_memory_bytes.unwrap_or(u64::MAX)));
        sample.memory_available_bytes = sample
            .memory_limit_bytes
            .zip(sample.memory_bytes)
            .map(|(l, u)| l.saturating_sub(u));
        sample.memory_host_resident_bytes = resident;
        if usage.is_none() {
            self.missing(
                "memory_bytes",
                "no memory cgroup controller for this sandbox",
            );
        }

        (sample.disk_read_bytes, sample.disk_write_bytes) = match &mut self.io {
            Some((source, version)) => io_totals(source.read().unwrap_or_default(), *version),
            None => (None, None),
        };
        if sample.disk_read_bytes.is_none() {
            self.missing("disk_read_bytes", "no cgroup v2 io controller for this sandbox (v1 blkio does not attribute buffered writes)");
        }
        self.read_breakdown(sample);
        sample.threads = self.pids.as_mut().and_then(Source::number);
        self.read_file_servers(sample);
        self.read_net(sample);
        let procs = self
            .procs
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok());
        sample.processes = procs.as_ref().map(|p| p.lines().count() as u64);
        if sample.processes.is_none() {
            self.missing("processes", "no pids cgroup controller for this sandbox");
        }
        sample.open_fds = procs.as_deref().and_then(|p| open_fds(p, MAX_FD_PROCESSES));
        if procs.is_some() && sample.open_fds.is_none() {
            self.missing(
                "open_fds",
                "more processes than the sampler counts descriptors of in one tick",
            );
        }
        self.ticks += 1;
    }
}

impl Sampler {
    /// Reports the root disk's `statfs` through a handle on its upper directory.
    pub fn with_root_disk(mut self, upper: Option<std::fs::File>) -> Self {
        self.root_disk = upper;
        self
    }

    /// Reports `/.msb` through the file server that serves it.
    pub fn with_runtime_fs(mut self, fs: Option<std::sync::Arc<msb_fs::PassthroughFs>>) -> Self {
        self.runtime_fs = fs;
        self
    }

    /// Reports the directory volumes through their file servers.
    pub fn with_net(mut self, counters: Option<std::sync::Arc<msb_net::NetCounters>>) -> Self {
        self.net = counters;
        self
    }

    fn read_net(&mut self, sample: &mut Sample) {
        let Some(counters) = &self.net else {
            self.missing("net_rx_bytes", "the sandbox has no network (--no-network)");
            return;
        };
        let net = counters.snapshot();
        sample.net_rx_bytes = Some(net.rx_bytes);
        sample.net_tx_bytes = Some(net.tx_bytes);
        sample.net_rx_packets = Some(net.rx_packets);
        sample.net_tx_packets = Some(net.tx_packets);
        sample.net_drops_tx_ring_full = Some(net.drops_tx_ring_full);
        sample.net_drops_rx_ring_full = Some(net.drops_rx_ring_full);
        sample.net_drops_policy_denied = Some(net.drops_policy_denied);
        sample.net_drops_dns_failed = Some(net.drops_dns_failed);
        sample.net_tx_ring_frames = Some(net.tx_ring_frames);
        sample.net_rx_ring_frames = Some(net.rx_ring_frames);
        sample.net_tcp_open = Some(net.tcp_open);
        sample.net_udp_open = Some(net.udp_open);
        sample.net_tcp_limit_refused = Some(net.tcp_limit_refused);
        sample.net_udp_limit_refused = Some(net.udp_limit_refused);
        sample.net_dns_queries = Some(net.dns_queries);
    }

    pub fn with_mount_fs(
        mut self,
        servers: Vec<(std::path::PathBuf, std::sync::Arc<msb_fs::PassthroughFs>)>,
    ) -> Self {
        self.mount_fs = servers;
        self
    }
}

/// Above this many processes the sampler does not count their descriptors (null instead).
const MAX_FD_PROCESSES: usize = 1024;

impl Sampler {
    /// Memory breakdown, page faults, memory events, CPU throttling and pressure.
    fn read_breakdown(&mut self, sample: &mut Sample) {
        let stat = self.stat_cache;
        sample.memory_working_set_bytes = sample.memory_bytes;
        sample.memory_anon_bytes = stat.anon;
        sample.memory_file_bytes = stat.file;
        sample.page_faults_major = stat.major_page_faults;
        sample.page_faults_minor = stat
            .page_faults
            .zip(stat.major_page_faults)
            .map(|(all, major)| all.saturating_sub(major));
        (sample.memory_limit_hits, sample.memory_oom_kills) =
            read_memory_events(&mut self.memory_events);
        if sample.memory_oom_kills.is_none() {
            self.missing(
                "memory_oom_kills",
                "the memory cgroup reports no OOM kills here (no memory.events / oom_control)",
            );
        }
        (
            sample.cpu_periods,
            sample.cpu_throttled_periods,
            sample.cpu_throttled_time_ns,
        ) = match &mut self.cpu_stat {
            Some((source, version)) => throttling(source.read().unwrap_or_default(), *version),
            None => (None, None, None),
        };
        if sample.cpu_throttled_periods.is_none() {
            self.missing(
                "cpu_throttled_periods",
                "no cpu controller cpu.stat for this sandbox",
            );
        }
        let [cpu, memory, io] = &mut self.pressure;
        let totals = |source: &mut Option<Source>| {
            source
                .as_mut()
                .and_then(Source::read)
                .map(pressure_totals)
                .unwrap_or_default()
        };
        (sample.cpu_pressure_some_us, sample.cpu_pressure_full_us) = totals(cpu);
        (
            sample.memory_pressure_some_us,
            sample.memory_pressure_full_us,
        ) = totals(memory);
        (sample.io_pressure_some_us, sample.io_pressure_full_us) = totals(io);
        if sample.cpu_pressure_some_us.is_none() {
            self.missing(
                "cpu_pressure_some_us",
                "the sandbox has no cgroup v2 directory with pressure files (cgroups v1 or hybrid)",
            );
        }
    }
}

/// Read and write byte totals over every device.
fn io_totals(text: &str, version: CgroupVersion) -> (Option<u64>, Option<u64>) {
    let (mut read, mut write) = (0u64, 0u64);
    match version {
        CgroupVersion::V1 => {
            // "8:0 Read 4096" ... "Total 123"
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [_, op, bytes] = fields.as_slice() {
                    let bytes: u64 = bytes.parse().unwrap_or(0);
                    match *op {
                        "Read" => read += bytes,
                        "Write" => write += bytes,
                        _ => {}
                    }
                }
            }
        }
        CgroupVersion::V2 => {
            // "8:0 rbytes=4096 wbytes=0 rios=1 ..."
            for field in text.split_whitespace() {
                if let Some(v) = field.strip_prefix("rbytes=") {
                    read += v.parse::<u64>().unwrap_or(0);
                } else if let Some(v) = field.strip_prefix("wbytes=") {
                    write += v.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    (Some(read), Some(write))
}

/// Host blocks under `dir` (`st_blocks × 512`), not following links, bounded in entries.
pub fn allocated_bytes(dir: &Path, max_entries: usize) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending = vec![dir.to_owned()];
    let mut seen = 0usize;
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        total += metadata.blocks() * 512;
        seen += 1;
        if seen > max_entries {
            return None;
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).ok()?.flatten() {
                pending.push(entry.path());
            }
        }
    }
    Some(total)
}

/// How the run's end asks the sampler for its final sample: the sampler answers on the enclosed
/// sender once the sample is delivered.
pub type FinalSampleRequest = tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>;

/// Samples every interval until the run ends (and once more when the end asks for a final
/// sample); hands each to the outbox and the watchers.
pub async fn run(
    shared: Arc<Shared>,
    mut sampler: Sampler,
    (interval_ms, mut final_request): (
        u64,
        tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
    ),
    started: Instant,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let upper = shared.dir.upper();
    let default_root = shared.config.config.rootfs == crate::config::RootfsSource::Default;
    // A root disk is measured through a handle on its upper directory, opened when it was
    // mounted: it keeps describing the disk for the final sample, after the supervisor has
    // detached the mount from the host.
    let root_disk = sampler.root_disk.take();
    if root_disk.is_none() {
        let why = if default_root {
            "the writable root is a host directory without its own filesystem (a sandbox made \
             before root disks)"
        } else {
            "the root is a host directory (--rootfs), written in place"
        };
        tracing::info!(sandbox = %shared.config.config.name, "upper_used_bytes and upper_free_bytes are null: {why}");
    }
    let image = shared.dir.root_disk_image();
    let mut upper_allocated = None;
    let mut tick: u64 = 0;
    let mut cost_ns: u64 = 0;
    let mut last_timestamp_ms: u64 = 0;
    loop {
        // `Some(answer)` for the final sample (the answer is `None` when the asker is gone).
        let last = tokio::select! {
            _ = ticker.tick() => None,
            answer = &mut final_request => Some(answer.ok()),
        };
        // The sampler's own cost: this thread's CPU time over the synchronous reads below.
        let cpu_before = thread_cpu_ns();
        if *shared.finished.borrow() {
            return;
        }
        let final_sample = last.is_some();
        if final_sample {
            sampler.refresh_everything_next();
        }
        // Strictly increasing within the run, even if the wall clock steps back: msbd drops a
        // sample sent again after a reattach when its store has the run's sample of that time.
        let timestamp_ms = now_ms().max(last_timestamp_ms + 1);
        last_timestamp_ms = timestamp_ms;
        let mut sample = Sample {
            sandbox_id: shared.config.sandbox_id.clone(),
            run_id: shared.config.run_id.clone(),
            timestamp_ms,
            uptime_secs: started.elapsed().as_secs_f64(),
            ..Sample::default()
        };
        sampler.read(&mut sample);
        if let Some(disk) = &root_disk {
            upper_allocated = fs::read_root_disk(disk, &image, &mut sample);
        } else if (tick % 10 == 0 || final_sample) && default_root {
            // Walking the upper directory is the one costly source: refresh it every 10 ticks.
            upper_allocated = allocated_bytes(&upper, 100_000);
        }
        tick += 1;
        sample.upper_host_allocated_bytes = upper_allocated;
        if let Some((beat, at)) = *shared.last_heartbeat.lock().unwrap() {
            sample.heartbeat_seq = Some(beat.seq);
            sample.heartbeat_age_ms = Some(at.elapsed().as_millis() as u64);
            sample.active_sessions = Some(u64::from(beat.active_sessions));
        }
        if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
            cost_ns += after.saturating_sub(before);
            sample.sampler_cpu_ns = Some(cost_ns);
        }
        shared.deliver_sample(sample);
        if let Some(answer) = last {
            if let Some(answer) = answer {
                let _ = answer.send(());
            }
            return;
        }
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// OOM kills in the sandbox's memory cgroup so far (v1 `memory.oom_control`, v2
/// `memory.events`); `None` when the host does not say.
pub fn oom_kills(cgroups: Option<&CgroupPaths>) -> Option<u64> {
    let memory = cgroups?.memory.as_ref()?;
    let (file, key) = match memory.version {
        CgroupVersion::V1 => ("memory.oom_control", "oom_kill "),
        CgroupVersion::V2 => ("memory.events", "oom_kill "),
    };
    let text = std::fs::read_to_string(memory.path.join(file)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_totals_parse_both_versions() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1\nTotal 12289\n";
        assert_eq!(io_totals(v1, CgroupVersion::V1), (Some(4097), Some(8192)));
        let v2 = "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(io_totals(v2, CgroupVersion::V2), (Some(11), Some(22)));
    }

    #[test]
    fn breakdown_sources_parse() {
        let v2 = "usage_usec 100\nnr_periods 40\nnr_throttled 7\nthrottled_usec 3500\n";
        assert_eq!(
            throttling(v2, CgroupVersion::V2),
            (Some(40), Some(7), Some(3_500_000))
        );
        let v1 = "nr_periods 12\nnr_throttled 3\nthrottled_time 900\n";
        assert_eq!(
            throttling(v1, CgroupVersion::V1),
            (Some(12), Some(3), Some(900))
        );
        let pressure = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\n\
                        full avg10=0.00 avg60=0.00 avg300=0.00 total=56\n";
        assert_eq!(pressure_totals(pressure), (Some(1234), Some(56)));
        assert_eq!(pressure_totals("some avg10=1 total=9\n"), (Some(9), None));
        let events = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "max"), Some(17));
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        assert_eq!(keyed(events, "oom"), Some(2));
        // This test process has stdin/stdout/stderr at least; too many processes give None.
        let me = format!("{}\n", std::process::id());
        assert!(open_fds(&me, 10).unwrap() >= 3);
        assert_eq!(open_fds(&me, 0), None);
        assert_eq!(open_fds("", 10), Some(0));
    }

    #[test]
    fn allocated_bytes_counts_blocks_and_gives_up_on_huge_trees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 64 * 1024]).unwrap();
        let bytes = allocated_bytes(dir.path(), 10).unwrap();
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(allocated_bytes(dir.path(), 0), None);
    }

    #[test]
    fn a_sampler_without_cgroups_reports_nulls_not_zeros() {
        let mut sampler = Sampler::new(None, None, "t");
        let mut sample = Sample::default();
        sampler.read(&mut sample);
        assert_eq!(sample.vcpu_time_ns, None);
        assert_eq!(sample.cpu_percent, None);
        assert_eq!(sample.memory_bytes, None);
        assert_eq!(sample.disk_write_bytes, None);
        assert_eq!(sample.net_rx_bytes, None);
        assert_eq!(sample.processes, None);
        assert_eq!(sample.threads, None);
        assert_eq!(sample.open_fds, None);
        assert_eq!(sample.memory_oom_kills, None);
        assert_eq!(sample.cpu_throttled_periods, None);
        assert_eq!(sample.cpu_pressure_some_us, None);
        assert_eq!(sample.page_faults_major, None);
    }
}
