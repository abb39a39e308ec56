//! Time-series benchmarks (ADR 004): ingest through the real write path, bytes per stored value
//! after checkpoint, and history / fleet query latency, for 1 h × 1,000 sandboxes at 1 s.
//!
//! `cargo bench -p msb-store --bench series` (release). Prints figures; asserts nothing.
//! `MSB_BENCH_SANDBOXES` and `MSB_BENCH_TICKS` shrink the dataset for a quick run.

use std::path::Path;
use std::time::{Duration, Instant};

use msb_metrics::Sample;
use msb_store::{RetentionConfig, SeriesWriter, Store};

const HOUR_MS: i64 = 3_600_000;
/// Non-key columns per row: one "value" each.
const VALUES_PER_ROW: f64 = 20.0;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One sandbox's evolving state: mostly idle, some busy, counters that grow like real ones.
struct Sandbox {
    id: String,
    run: String,
    busy: bool,
    sample: Sample,
}

fn sandboxes(count: usize, rng: &mut Rng) -> Vec<Sandbox> {
    (0..count)
        .map(|i| {
            let limit: u64 = if i % 4 == 0 { 1 << 30 } else { 512 << 20 };
            Sandbox {
                id: format!("sbx-{i:05}-{:08x}", rng.next() as u32),
                run: format!("run-{:016x}", rng.next()),
                busy: i % 10 == 0,
                sample: Sample {
                    memory_limit_bytes: Some(limit),
                    memory_bytes: Some((40 << 20) + rng.below(100) * 4096 * 64),
                    upper_used_bytes: Some((200 << 20) + rng.below(1000) * 4096),
                    upper_free_bytes: Some(4 << 30),
                    upper_host_allocated_bytes: Some((210 << 20) + rng.below(1000) * 4096),
                    processes: Some(3 + rng.below(5)),
                    vcpu_time_ns: Some(0),
                    disk_read_bytes: Some(0),
                    disk_write_bytes: Some(0),
                    net_rx_bytes: Some(0),
                    net_tx_bytes: Some(0),
                    net_rx_packets: Some(0),
                    net_tx_packets: Some(0),
                    heartbeat_seq: Some(0),
                    active_sessions: Some(0),
                    ..Sample::default()
                },
            }
        })
        .collect()
}

fn add(value: &mut Option<u64>, delta: u64) {
    *value = value.map(|v| v + delta);
}

fn tick(sandboxes: &mut [Sandbox], ts_ms: i64, tick: u64, rng: &mut Rng) -> Vec<Sample> {
    sandboxes
        .iter_mut()
        .map(|sb| {
            let s = &mut sb.sample;
            let cpu = if sb.busy {
                85.0 + rng.below(1500) as f64 / 100.0
            } else {
                rng.below(300) as f64 / 100.0
            };
            s.sandbox_id.clone_from(&sb.id);
            s.run_id.clone_from(&sb.run);
            s.timestamp_ms = ts_ms as u64 + rng.below(3);
            s.uptime_secs = tick as f64 + 0.001 * rng.below(3) as f64;
            s.cpu_percent = (tick > 0).then_some(cpu);
            add(&mut s.vcpu_time_ns, (cpu * 1e7) as u64);
            if rng.below(10) == 0 {
                let pages = rng.below(64);
                let limit = s.memory_limit_bytes.unwrap_or(0);
                let next = (s.memory_bytes.unwrap_or(0) + pages * 4096).min(limit - (64 << 20));
                s.memory_bytes = Some(next.saturating_sub(rng.below(64) * 4096));
            }
            let used = s.memory_bytes.unwrap_or(0);
            s.memory_available_bytes = Some(s.memory_limit_bytes.unwrap_or(0) - used);
            s.memory_host_resident_bytes = Some(used + (30 << 20));
            if rng.below(20) == 0 {
                add(&mut s.disk_read_bytes, rng.below(64) * 4096);
                add(&mut s.disk_write_bytes, rng.below(256) * 4096);
                add(&mut s.upper_used_bytes, rng.below(16) * 4096);
                add(&mut s.upper_host_allocated_bytes, rng.below(16) * 4096);
            }
            let packets = rng.below(20);
            add(&mut s.net_rx_packets, packets);
            add(&mut s.net_tx_packets, packets / 2);
            add(&mut s.net_rx_bytes, packets * (64 + rng.below(1400)));
            add(&mut s.net_tx_bytes, packets / 2 * (64 + rng.below(400)));
            add(&mut s.heartbeat_seq, 1);
            s.heartbeat_age_ms = Some(rng.below(1000));
            if rng.below(300) == 0 {
                s.active_sessions = Some(1 - s.active_sessions.unwrap_or(0).min(1));
            }
            s.clone()
        })
        .collect()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Used bytes of the database at `path` after a checkpoint, and its raw partition's name.
fn used_bytes(path: &Path) -> (u64, String) {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch("CHECKPOINT").unwrap();
    let used: i64 = conn
        .query_row(
            "SELECT used_blocks * block_size FROM pragma_database_size()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let raw: Option<String> = conn
        .query_row(
            "SELECT max(name) FROM series_partitions WHERE kind = 'raw'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (used as u64, raw.unwrap_or_default())
}

/// Bytes of `select` stored alone in a fresh file (after checkpoint).
fn fresh_copy_bytes(path: &Path, select: &str) -> u64 {
    let fresh = path.with_extension("copy.duckdb");
    let _ = std::fs::remove_file(&fresh);
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "ATTACH '{}' AS fresh; CREATE TABLE fresh.t AS {select}; DETACH fresh;",
        fresh.display()
    ))
    .unwrap();
    drop(conn);
    let conn = duckdb::Connection::open(&fresh).unwrap();
    let used: i64 = conn
        .query_row(
            "SELECT used_blocks * block_size FROM pragma_database_size()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    used as u64
}

/// Ingests `ticks` ticks of `count` sandboxes starting at `start_ms`; returns (rows, wall, writer busy).
fn ingest(
    store: &Store,
    count: usize,
    ticks: usize,
    start_ms: i64,
) -> (u64, Duration, Duration, Duration) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut fleet = sandboxes(count, &mut rng);
    let writer =
        SeriesWriter::start_with_capacity(store, RetentionConfig::default(), 10_000_000).unwrap();
    let started = Instant::now();
    let mut slowest_append = Duration::ZERO;
    for t in 0..ticks {
        let batch = tick(&mut fleet, start_ms + t as i64 * 1000, t as u64, &mut rng);
        let before = Instant::now();
        writer.append(batch);
        slowest_append = slowest_append.max(before.elapsed());
        // Keep generator memory bounded (the bench only; the sampler never waits).
        while writer.stats().queued_samples > 200_000 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    while writer.stats().written_samples < (count * ticks) as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    let stats = writer.stats();
    writer.flush().unwrap();
    drop(writer);
    (
        stats.written_samples,
        wall,
        Duration::from_nanos(stats.write_nanos),
        slowest_append,
    )
}

fn main() {
    let count = env("MSB_BENCH_SANDBOXES", 1000);
    let ticks = env("MSB_BENCH_TICKS", 3600);
    let dir = tempfile::tempdir().unwrap();
    let values = (count * ticks) as f64 * VALUES_PER_ROW;
    println!(
        "dataset: {count} sandboxes x {ticks} ticks at 1 s = {} rows, {values} values",
        count * ticks
    );

    // 1. An hour that is over: flush closes it (sorted rewrite + rollup).
    let path = dir.path().join("closed.duckdb");
    let store = Store::open(&path).unwrap();
    let empty = {
        drop(store);
        used_bytes(&path).0
    };
    let store = Store::open(&path).unwrap();
    let hour = (now_ms() - 3 * HOUR_MS) / HOUR_MS * HOUR_MS;
    let (rows, wall, busy, slowest) = ingest(&store, count, ticks, hour);
    println!(
        "ingest: {rows} rows; writer {:.2} M values/s (busy {:.2} s), end to end {:.2} M values/s; slowest append {:?}",
        values / busy.as_secs_f64() / 1e6,
        busy.as_secs_f64(),
        values / wall.as_secs_f64() / 1e6,
        slowest
    );
    drop(store);
    let (used, raw) = used_bytes(&path);
    println!(
        "stored after close + checkpoint (sorted raw + rollups + catalog): {:.2} B/value",
        (used - empty) as f64 / values
    );
    let sorted = fresh_copy_bytes(&path, &format!("FROM {raw}"));
    println!(
        "  raw partition alone, sorted (sandbox, ts), fresh file: {:.2} B/value",
        sorted as f64 / values
    );
    let arrival = fresh_copy_bytes(
        &path,
        &format!("FROM {raw} ORDER BY ts_ms, hash(sandbox_id)"),
    );
    println!(
        "  same rows in arrival order (by tick): {:.2} B/value",
        arrival as f64 / values
    );
    let narrow_ts = fresh_copy_bytes(
        &path,
        &format!("SELECT * REPLACE ((ts_ms - {hour})::UINTEGER AS ts_ms) FROM {raw}"),
    );
    println!(
        "  sorted, ts as UINTEGER offset from the hour: {:.2} B/value",
        narrow_ts as f64 / values
    );
    let pages = fresh_copy_bytes(
        &path,
        &format!(
            "SELECT * REPLACE (memory_bytes // 4096 AS memory_bytes,
                memory_available_bytes // 4096 AS memory_available_bytes,
                memory_host_resident_bytes // 4096 AS memory_host_resident_bytes,
                upper_used_bytes // 4096 AS upper_used_bytes,
                upper_free_bytes // 4096 AS upper_free_bytes,
                upper_host_allocated_bytes // 4096 AS upper_host_allocated_bytes) FROM {raw}"
        ),
    );
    println!(
        "  sorted, byte gauges in 4 KiB pages: {:.2} B/value",
        pages as f64 / values
    );
    let no_doubles = fresh_copy_bytes(
        &path,
        &format!("SELECT * EXCLUDE (uptime_secs, cpu_percent) FROM {raw}"),
    );
    println!(
        "  sorted, without the two DOUBLE columns: {:.2} B/value (of 18 values)",
        no_doubles as f64 / ((count * ticks) as f64 * 18.0)
    );

    let store = Store::open(&path).unwrap();
    let sandbox = "sbx-00007";
    let id: String = store
        .read_only_sql(&format!(
            "SELECT sandbox_id FROM samples WHERE sandbox_id LIKE '{sandbox}%' LIMIT 1"
        ))
        .unwrap()
        .1[0][0]
        .as_str()
        .unwrap()
        .to_owned();
    let time = |f: &dyn Fn()| {
        median(
            (0..15)
                .map(|_| {
                    let s = Instant::now();
                    f();
                    s.elapsed()
                })
                .collect(),
        )
    };
    let end = hour + ticks as i64 * 1000;
    let history = time(&|| assert!(!store.history(&id, hour, end, 10_000).unwrap().is_empty()));
    let fleet = time(&|| assert!(!store.fleet(hour, end, 60_000).unwrap().is_empty()));
    println!("queries on the closed (sorted) hour: history 1 h @ 10 s {history:?}, fleet 1 h @ 1 min {fleet:?} (medians)");
    drop(store);

    // 2. The open hour (arrival order, not yet closed): what queries see for the current hour.
    let path = dir.path().join("open.duckdb");
    let store = Store::open(&path).unwrap();
    let future = (now_ms() / HOUR_MS + 2) * HOUR_MS;
    let (_, wall, busy, _) = ingest(&store, count, ticks, future);
    println!(
        "ingest (open hour, no close): writer {:.2} M values/s, end to end {:.2} M values/s",
        values / busy.as_secs_f64() / 1e6,
        values / wall.as_secs_f64() / 1e6
    );
    let end = future + ticks as i64 * 1000;
    let history = time(&|| assert!(!store.history(&id, future, end, 10_000).unwrap().is_empty()));
    let fleet = time(&|| assert!(!store.fleet(future, end, 60_000).unwrap().is_empty()));
    println!(
        "queries on the open (arrival-order) hour: history {history:?}, fleet {fleet:?} (medians)"
    );
    drop(store);
    let (used, _) = used_bytes(&path);
    println!(
        "stored open hour after checkpoint: {:.2} B/value",
        (used - empty) as f64 / values
    );
}
