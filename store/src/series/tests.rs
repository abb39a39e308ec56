//! Time-series tests on real DuckDB files in temporary directories.

use std::time::{Duration, Instant};

use msb_metrics::Sample;

use super::partitions::{hour_start, raw_name, rollup_name, HOUR_MS};
use super::*;
use crate::catalog::now_ms;
use crate::Store;

pub(super) fn sample(sandbox: &str, run: &str, ts_ms: i64, tick: u64) -> Sample {
    Sample {
        sandbox_id: sandbox.into(),
        run_id: run.into(),
        timestamp_ms: ts_ms as u64,
        uptime_secs: tick as f64,
        cpu_percent: Some(10.0 + (tick % 7) as f64),
        vcpu_time_ns: Some(tick * 100_000_000),
        memory_bytes: Some(100 << 20),
        memory_available_bytes: Some(400 << 20),
        memory_limit_bytes: Some(512 << 20),
        memory_host_resident_bytes: Some((120 << 20) + tick * 4096),
        disk_read_bytes: Some(tick * 1000),
        disk_write_bytes: Some(tick * 2000),
        net_rx_bytes: Some(tick * 300),
        net_tx_bytes: Some(tick * 400),
        net_rx_packets: Some(tick * 3),
        net_tx_packets: Some(tick * 4),
        upper_used_bytes: Some(1 << 20),
        upper_free_bytes: Some(1 << 30),
        upper_host_allocated_bytes: Some(2 << 20),
        processes: Some(3),
        heartbeat_seq: Some(tick),
        heartbeat_age_ms: Some(tick % 1000),
        active_sessions: Some(tick % 2),
        ..Sample::default()
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("msb.duckdb")).unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn retention(raw_hours: u64) -> RetentionConfig {
    RetentionConfig {
        raw: Duration::from_secs(raw_hours * 3600),
        rollup: Duration::from_secs(30 * 24 * 3600),
    }
}

#[test]
fn partition_names_are_utc_hours_and_days() {
    assert_eq!(raw_name(0), "samples_raw_1970010100");
    // 2024-02-29T13:00:00Z
    assert_eq!(raw_name(1_709_211_600_000), "samples_raw_2024022913");
    assert_eq!(rollup_name(1_709_164_800_000), "samples_1m_20240229");
}

#[test]
fn templates_match_the_value_columns() {
    let store = Store::open_in_memory().unwrap();
    let mut statement = store
        .conn()
        .prepare("SELECT column_name FROM duckdb_columns() WHERE table_name = 'samples_raw_template' ORDER BY column_index")
        .unwrap();
    let names: Vec<String> = statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names[..3], ["sandbox_id", "run_id", "ts_ms"]);
    // Every declared instrument has its column; the ones declared after the template was first
    // made come after the original ones (ALTER TABLE appends), in declaration order.
    let mut found: Vec<&str> = names[3..].iter().map(String::as_str).collect();
    let mut expected: Vec<&str> = VALUE_COLUMNS.iter().map(|c| c.name).collect();
    let appended_at = found
        .iter()
        .position(|n| *n == "memory_working_set_bytes")
        .unwrap();
    assert_eq!(found[appended_at..], expected[appended_at..]);
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn samples_round_trip_with_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let t0 = now_ms() - 60_000;
    let full = sample("sb-1", "run-1", t0, 5);
    let empty = Sample {
        sandbox_id: "sb-1".into(),
        run_id: "run-1".into(),
        timestamp_ms: (t0 + 1000) as u64,
        uptime_secs: 6.25,
        ..Sample::default()
    };
    writer.append(vec![full, empty]);
    writer.flush().unwrap();
    let (columns, rows) = store
        .read_only_sql("SELECT * EXCLUDE (ts) FROM samples ORDER BY ts_ms")
        .unwrap();
    assert_eq!(columns.len(), 3 + VALUE_COLUMNS.len());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][2], serde_json::json!(t0));
    assert_eq!(rows[0][3], serde_json::json!(5.0));
    assert_eq!(rows[0][4], serde_json::json!(15.0));
    assert_eq!(rows[0][5], serde_json::json!(500_000_000u64));
    assert_eq!(rows[1][3], serde_json::json!(6.25));
    assert!(
        rows[1][4..].iter().all(serde_json::Value::is_null),
        "{:?}",
        rows[1]
    );
    assert_eq!(writer.stats().written_samples, 2);
}

#[test]
fn a_ten_second_window_at_one_second_holds_ten_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    writer.append(
        (0..30)
            .map(|i| sample("sb", "r", t0 + i * 1000, i as u64))
            .collect(),
    );
    writer.flush().unwrap();
    let since = t0 + 5000;
    let rows = count(
        &store,
        &format!("SELECT count(*) FROM samples WHERE ts_ms >= {since} AND ts_ms < {since} + 10000"),
    );
    assert_eq!(rows, 10);
    let points = store.history("sb", since, since + 10_000, 1000).unwrap();
    assert_eq!(points.len(), 10);
    assert!(points.iter().all(|p| p.samples == 1));
}

#[test]
fn rates_are_right_and_never_negative_across_a_run_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let t0 = (now_ms() - 600_000) / 60_000 * 60_000;
    // Run a: 20 s, then run b starts from zero.
    let mut samples: Vec<Sample> = (0..20)
        .map(|i| sample("sb", "a", t0 + i * 1000, i as u64 + 50))
        .collect();
    samples.extend((0..20).map(|i| sample("sb", "b", t0 + 20_000 + i * 1000, i as u64)));
    writer.append(samples);
    writer.flush().unwrap();
    let points = store.history("sb", t0, t0 + 40_000, 5000).unwrap();
    assert_eq!(points.len(), 8);
    for p in &points {
        // disk_read_bytes grows by 1000 per 1 s tick in both runs.
        let rate = p.rate("disk_read_bytes").unwrap();
        assert!((rate - 1000.0).abs() < 1e-6, "{p:?}");
        assert!(
            (p.rate("vcpu_time_ns").unwrap() - 1e8).abs() < 1e-3,
            "{p:?}"
        );
    }
    assert!(points
        .iter()
        .all(|p| p.rate("net_rx_bytes").unwrap() >= 0.0));
}

#[test]
fn closed_partitions_are_sorted_and_rollups_equal_raw_averages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let hour = hour_start(now_ms() - 3 * HOUR_MS);
    // Arrival order: interleaved sandboxes, as the sampler delivers them.
    for tick in 0..600u64 {
        writer.append(
            ["sb-b", "sb-a"]
                .iter()
                .map(|sb| sample(sb, "r", hour + tick as i64 * 1000, tick))
                .collect(),
        );
    }
    writer.flush().unwrap();
    let closed = count(
        &store,
        "SELECT count(*) FROM series_partitions WHERE kind = 'raw' AND closed",
    );
    assert_eq!(closed, 1);
    let (_, first) = store
        .read_only_sql("SELECT sandbox_id FROM samples LIMIT 1")
        .unwrap();
    assert_eq!(
        first[0][0],
        serde_json::json!("sb-a"),
        "rewritten sorted by sandbox"
    );
    let mismatches = count(
        &store,
        "SELECT count(*) FROM (
            SELECT sandbox_id, ts_ms // 60000 * 60000 AS minute_ms, count(*) AS n,
                   avg(cpu_percent) AS cpu, max(memory_host_resident_bytes) AS rss,
                   max(disk_read_bytes) AS disk
            FROM samples GROUP BY ALL) r
         FULL JOIN samples_1m u USING (sandbox_id, minute_ms)
         WHERE r.n IS DISTINCT FROM u.samples OR abs(r.cpu - u.cpu_percent_avg) > 1e-9
            OR r.rss IS DISTINCT FROM u.memory_host_resident_bytes_max
            OR r.disk IS DISTINCT FROM u.disk_read_bytes",
    );
    assert_eq!(mismatches, 0);
    assert_eq!(count(&store, "SELECT count(*) FROM samples_1m"), 20);
    // Beyond raw retention the same history comes from the rollups.
    // 30 s steps read raw rows; whole-minute steps read the rollups of a closed hour.
    let from_raw: Vec<_> = store.history("sb-a", hour, hour + 600_000, 30_000).unwrap();
    assert_eq!(from_raw.len(), 20);
    let from_raw = store.history("sb-a", hour, hour + 600_000, 60_000).unwrap();
    drop(writer);
    let writer = SeriesWriter::start(&store, retention(1)).unwrap();
    writer.flush().unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM samples"), 0);
    let from_rollups = store.history("sb-a", hour, hour + 600_000, 60_000).unwrap();
    assert_eq!(from_raw.len(), from_rollups.len());
    for (r, u) in from_raw.iter().zip(&from_rollups) {
        assert_eq!(r.samples, u.samples);
        assert!((r.gauge("cpu_percent").unwrap() - u.gauge("cpu_percent").unwrap()).abs() < 1e-9);
        assert_eq!(r.max("cpu_percent"), u.max("cpu_percent"));
        assert!(u.rate("disk_read_bytes").is_none_or(|r| r >= 0.0));
    }
    // Between minutes the rollup rates still see 1000 B/s.
    assert!((from_rollups[5].rate("disk_read_bytes").unwrap() - 1000.0).abs() < 1e-6);
}

fn table_exists(store: &Store, name: &str) -> bool {
    count(
        store,
        &format!("SELECT count(*) FROM duckdb_tables() WHERE table_name = '{name}'"),
    ) == 1
}

#[test]
fn retention_drops_whole_partitions_and_the_file_stops_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msb.duckdb");
    let store = Store::open(&path).unwrap();
    let now = now_ms();
    let fill = |writer: &SeriesWriter, hour: i64| {
        for tick in 0..600 {
            writer.append(
                (0..100)
                    .map(|sb| sample(&format!("sb-{sb}"), "r", hour + tick * 1000, tick as u64))
                    .collect(),
            );
        }
        writer.flush().unwrap();
    };
    let mut sizes = Vec::new();
    // Each phase writes a new hour and, with a tighter retention, drops the previous one.
    for (ago_hours, keep_hours) in [(6, 24), (3, 4), (1, 2)] {
        let hour = hour_start(now - ago_hours * HOUR_MS);
        let writer = SeriesWriter::start(&store, retention(keep_hours as u64)).unwrap();
        fill(&writer, hour);
        drop(writer);
        store.conn().execute_batch("CHECKPOINT").unwrap();
        assert!(table_exists(&store, &raw_name(hour)));
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    for ago_hours in [6, 3] {
        let name = raw_name(hour_start(now - ago_hours * HOUR_MS));
        assert!(!table_exists(&store, &name), "{name} dropped");
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(*) FROM series_partitions WHERE name = '{name}'")
            ),
            0
        );
    }
    assert_eq!(count(&store, "SELECT count(*) FROM samples"), 60_000);
    // The dropped partition's blocks are reused: past the first two phases the file grows by
    // at most a metadata block or two (256 KiB each), not by another hour of data.
    assert!(
        sizes[2] <= sizes[1] + 512 * 1024 && sizes[2].saturating_sub(sizes[1]) < sizes[0] / 8,
        "file sizes {sizes:?}"
    );
}

#[test]
fn append_never_blocks_and_counts_drops_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer =
        SeriesWriter::start_with_capacity(&store, RetentionConfig::default(), 100).unwrap();
    let t0 = now_ms() - 60_000;
    let mut slowest = Duration::ZERO;
    for tick in 0..5000 {
        let batch = (0..10)
            .map(|sb| sample(&format!("sb-{sb}"), "r", t0 + tick, 1))
            .collect();
        let started = Instant::now();
        writer.append(batch);
        slowest = slowest.max(started.elapsed());
    }
    writer.flush().unwrap();
    let stats = writer.stats();
    assert!(writer.dropped_batches() > 0, "{stats:?}");
    assert_eq!(stats.dropped_samples, stats.dropped_batches * 10);
    assert_eq!(stats.written_samples + stats.dropped_samples, 50_000);
    assert!(
        slowest < Duration::from_millis(50),
        "slowest append {slowest:?}"
    );
}

#[test]
fn read_only_sql_refuses_writes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    writer.append(vec![sample("sb", "r", now_ms() - 5000, 1)]);
    writer.flush().unwrap();
    let tables = "SELECT count(*) FROM duckdb_tables()";
    let before = (
        count(&store, tables),
        count(&store, "SELECT count(*) FROM samples"),
    );
    for sql in [
        "INSERT INTO events VALUES (1, NULL, 'x', '{}')",
        "UPDATE sandboxes SET name = 'x'",
        "DELETE FROM events",
        "CREATE TABLE t (a INT)",
        "DROP VIEW samples",
        "ATTACH 'other.duckdb' AS o",
        "COPY events TO 'x.csv'",
        "PRAGMA enable_profiling",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "EXPLAIN SELECT 1",
        "CALL checkpoint()",
        "SELECT 1; DELETE FROM events",
        "SELECT 1; SELECT 2",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM series_partitions",
        "SELECT * FROM checkpoint()",
        "SELECT * FROM query('DROP TABLE events')",
        "SELECT * FROM system.main.sandboxes",
        "SELECT nextval('x')",
    ] {
        let error = store.read_only_sql(sql).unwrap_err();
        assert!(matches!(error, SeriesError::Refused(_)), "{sql}: {error:?}");
    }
    assert!(matches!(
        store.read_only_sql("SELEC 1"),
        Err(SeriesError::Parse(_))
    ));
    let after = (
        count(&store, tables),
        count(&store, "SELECT count(*) FROM samples"),
    );
    assert_eq!(before, after);
    for sql in [
        "SELECT count(*) FROM samples",
        "WITH s AS (SELECT * FROM samples) SELECT sandbox_id, ts FROM s",
        "FROM samples_1m",
        "DESCRIBE samples",
        "SUMMARIZE samples",
        "SELECT * FROM range(3)",
        "SELECT time_bucket(INTERVAL '10 seconds', ts) AS t, avg(cpu_percent) FROM samples GROUP BY t",
    ] {
        store.read_only_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[test]
fn history_survives_an_msbd_restart_and_exports_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = (now_ms() - 300_000) / 60_000 * 60_000;
    let before = {
        let store = open(&dir);
        let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
        writer.append(
            (0..60)
                .map(|i| sample("sb", "r", t0 + i * 1000, i as u64))
                .collect(),
        );
        drop(writer); // Drop flushes.
        store.history("sb", t0, t0 + 60_000, 10_000).unwrap()
    };
    assert_eq!(before.len(), 6);
    let store = open(&dir);
    assert_eq!(
        store.history("sb", t0, t0 + 60_000, 10_000).unwrap(),
        before
    );
    let fleet = store.fleet(t0, t0 + 60_000, 60_000).unwrap();
    assert_eq!(fleet.len(), 1);
    assert_eq!(fleet[0].sandboxes, 1);
    let file = dir.path().join("sb.parquet");
    assert_eq!(
        store.export_parquet("sb", t0, t0 + 30_000, &file).unwrap(),
        30
    );
    // Read back with a DuckDB of its own: the store's may not read files.
    let rows: i64 = duckdb::Connection::open_in_memory()
        .unwrap()
        .query_row(
            &format!("SELECT count(*) FROM read_parquet('{}')", file.display()),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 30);
}

/// The scheduling policy of this process's thread named `comm` (field 41 of its stat file).
fn policy_of_thread(comm: &str) -> Option<u32> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let (name, rest) = stat.split_once(") ")?;
        if name.ends_with(&format!("({comm}")) {
            return rest.split(' ').nth(38)?.parse().ok();
        }
    }
    None
}

#[test]
fn the_writer_waits_at_idle_priority_and_returns_to_it_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let idle = libc::SCHED_IDLE as u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while policy_of_thread("msb-series-writ") != Some(idle) {
        assert!(Instant::now() < deadline, "the writer never went idle");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A flush raises it (someone waits); written and caught up, it goes back to idle.
    writer.append(vec![sample("sb", "run", now_ms(), 1)]);
    writer.flush().unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM samples WHERE sandbox_id = 'sb'"
        ),
        1
    );
    while policy_of_thread("msb-series-writ") != Some(idle) {
        assert!(Instant::now() < deadline, "the writer stayed raised");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A store written before an instrument was declared: opening it adds the instrument's columns
/// to the templates and every partition (raw and rollup), old rows read as null, new rows carry
/// the value, and history and SQL see both.
#[test]
fn a_store_from_before_an_instrument_gains_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msb.duckdb");
    let closed = hour_start(now_ms() - 3 * HOUR_MS);
    let t0 = now_ms() - 60_000;
    {
        let store = Store::open(&path).unwrap();
        let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
        writer.append(
            (0..120)
                .map(|i| sample("sb", "r", closed + i * 1000, i as u64))
                .collect(),
        );
        writer.append(
            (0..5)
                .map(|i| sample("sb", "r", t0 + i * 1000, i as u64))
                .collect(),
        );
        writer.flush().unwrap();
        drop(writer);
        // What an older msb made: no `threads` anywhere.
        let tables: Vec<(String, String)> = {
            let mut statement = store
                .conn()
                .prepare("SELECT name, kind FROM series_partitions")
                .unwrap();
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        assert!(tables.iter().any(|(_, kind)| kind == "rollup"));
        let conn = store.conn();
        conn.execute_batch("DROP VIEW samples; DROP VIEW samples_1m;")
            .unwrap();
        conn.execute_batch("ALTER TABLE samples_raw_template DROP COLUMN threads")
            .unwrap();
        conn.execute_batch("ALTER TABLE samples_1m_template DROP COLUMN threads_avg; ALTER TABLE samples_1m_template DROP COLUMN threads_max").unwrap();
        for (name, kind) in &tables {
            let sql = if kind == "raw" {
                format!("ALTER TABLE {name} DROP COLUMN threads")
            } else {
                format!("ALTER TABLE {name} DROP COLUMN threads_avg; ALTER TABLE {name} DROP COLUMN threads_max")
            };
            conn.execute_batch(&sql).unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let late = Sample {
        threads: Some(7),
        ..sample("sb", "r", t0 + 5000, 5)
    };
    writer.append(vec![late]);
    writer.flush().unwrap();
    let (_, rows) = store
        .read_only_sql(&format!(
            "SELECT ts_ms, threads, cpu_percent FROM samples WHERE ts_ms >= {t0} ORDER BY ts_ms"
        ))
        .unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows[..5].iter().all(|r| r[1].is_null() && !r[2].is_null()));
    assert_eq!(rows[5][1], serde_json::json!(7));
    let (_, rollup) = store
        .read_only_sql("SELECT count(*), count(threads_avg) FROM samples_1m")
        .unwrap();
    assert_eq!(rollup[0], [serde_json::json!(2), serde_json::json!(0)]);
    let points = store.history("sb", t0, t0 + 6000, 1000).unwrap();
    assert_eq!(points.len(), 6);
    assert_eq!(points[5].gauge("threads"), Some(7.0));
    assert_eq!(points[0].gauge("threads"), None);
    assert!(points[0].gauge("cpu_percent").is_some());
}
