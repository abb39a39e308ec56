//! History query tests: the Rust aggregation against the single SQL statement it replaced (kept
//! here as the reference), and the caches it relies on (partition list, open-hour readings).

use std::sync::atomic::Ordering;
use std::time::Duration;

use duckdb::{params, OptionalExt};
use msb_metrics::Sample;

use super::partitions::{hour_start, raw_name, HOUR_MS};
use super::readings::{COUNTERS, GAUGES, MAXED, OPEN_READINGS_ENTRIES};
use super::*;
use crate::catalog::now_ms;
use crate::Store;

/// A sample of `run`'s `tick` (counters count from the run's start), with some values missing
/// the way a source that cannot be read leaves them.
fn sample(sandbox: &str, run: &str, ts_ms: i64, tick: u64) -> Sample {
    let every = |n: u64| tick % n != 3;
    Sample {
        sandbox_id: sandbox.into(),
        run_id: run.into(),
        timestamp_ms: ts_ms as u64,
        uptime_secs: tick as f64,
        cpu_percent: every(7).then(|| (tick * 37 % 1000) as f64 / 10.0),
        vcpu_time_ns: Some(tick * 95_000_000 + tick * tick),
        memory_bytes: Some((100 << 20) + (tick % 13) * 4096),
        memory_available_bytes: every(5).then_some(400 << 20),
        memory_limit_bytes: Some(512 << 20),
        memory_host_resident_bytes: Some((120 << 20) + tick * 4096),
        disk_read_bytes: every(11).then_some(tick * 1000),
        // A source reset now and then: a negative difference, counted as zero.
        disk_write_bytes: Some(if tick % 500 == 499 {
            0
        } else {
            tick * 2000 + tick % 3
        }),
        net_rx_bytes: Some(tick * 300),
        net_tx_bytes: every(4).then_some(tick * 400),
        net_rx_packets: Some(tick * 3),
        net_tx_packets: Some(tick * 4),
        upper_used_bytes: Some(1 << 20),
        upper_free_bytes: None,
        upper_host_allocated_bytes: Some(2 << 20),
        processes: Some(3 + tick % 2),
        heartbeat_seq: Some(tick),
        heartbeat_age_ms: Some(tick % 1000),
        active_sessions: Some(tick % 2),
        memory_oom_kills: Some(tick / 100),
        threads: every(6).then_some(5 + tick % 3),
        ..Sample::default()
    }
}

/// What [`Store::history`] computed before it aggregated in Rust: one SQL statement over the
/// views, the same normalised shape, `lag()` per run, grouped by step.
fn reference(store: &Store, sandbox: &str, since: i64, until: i64, step: i64) -> Vec<HistoryPoint> {
    let conn = store.conn();
    let boundary_sql = if step % 60_000 == 0 {
        "SELECT min(start_ms) FROM series_partitions WHERE kind = 'raw' AND NOT closed"
    } else {
        "SELECT min(start_ms) FROM series_partitions WHERE kind = 'raw'"
    };
    let boundary: i64 = conn
        .query_row(boundary_sql, [], |r| r.get::<_, Option<i64>>(0))
        .optional()
        .unwrap()
        .flatten()
        .unwrap_or(i64::MAX);
    let raw_from = since.max(boundary);
    let rollup_until = until.min(boundary);
    let shape = |relation: &str, ts: &str, n: &str, rollup: bool| {
        let mut list = vec![format!("{ts} AS ts_ms"), format!("{n} AS n")];
        for g in gauges() {
            let name = g.name;
            if rollup {
                list.push(format!("{name}_avg * samples AS {name}_sum"));
                list.push(format!(
                    "CASE WHEN {name}_avg IS NULL THEN 0 ELSE samples::BIGINT END AS {name}_n"
                ));
                list.push(format!("{name}_max::DOUBLE AS {name}_max"));
            } else {
                list.push(format!("{name}::DOUBLE AS {name}_sum"));
                list.push(format!("({name} IS NOT NULL)::BIGINT AS {name}_n"));
                list.push(format!("{name}::DOUBLE AS {name}_max"));
            }
        }
        for c in counters() {
            let name = c.name;
            list.push(format!(
                "{name}::DOUBLE - lag({name}::DOUBLE) OVER w AS {name}_d"
            ));
        }
        let clock = if rollup { "last_ts_ms" } else { "ts_ms" };
        list.push(format!("{clock} - lag({clock}) OVER w AS dt"));
        format!(
            "SELECT {} FROM {relation} WHERE sandbox_id = ? AND {ts} >= ? AND {ts} < ?
             WINDOW w AS (PARTITION BY sandbox_id, run_id ORDER BY {ts})",
            list.join(", ")
        )
    };
    let mut select = vec![
        format!("ts_ms // {step} * {step} AS bucket"),
        "sum(n)::UBIGINT".to_owned(),
    ];
    for g in gauges() {
        let name = g.name;
        select.push(format!("sum({name}_sum) / nullif(sum({name}_n), 0)"));
    }
    for name in MAXED {
        select.push(format!("max({name}_max)"));
    }
    for c in counters() {
        let name = c.name;
        select.push(format!(
            "sum(greatest({name}_d, 0)) * 1000.0
               / nullif(sum(dt) FILTER (WHERE {name}_d IS NOT NULL), 0)"
        ));
    }
    let sql = format!(
        "WITH r AS ({}), u AS ({}),
              b AS (SELECT * FROM r WHERE ts_ms >= ? UNION ALL SELECT * FROM u WHERE ts_ms >= ?)
         SELECT {} FROM b GROUP BY bucket ORDER BY bucket",
        shape("samples", "ts_ms", "1", false),
        shape("samples_1m", "minute_ms", "samples::BIGINT", true),
        select.join(", ")
    );
    let lookback = 5 * 60 * 1000;
    let mut statement = conn.prepare(&sql).unwrap();
    let rows = statement
        .query_map(
            params![
                sandbox,
                raw_from - lookback,
                until,
                sandbox,
                since - lookback,
                rollup_until,
                raw_from,
                since
            ],
            |row| {
                let f = |i: usize| row.get::<_, Option<f64>>(i);
                let gauges_at = 2;
                let maxima_at = gauges_at + GAUGES.len();
                let rates_at = maxima_at + MAXED.len();
                let mut point = HistoryPoint {
                    ts_ms: row.get(0)?,
                    samples: row.get(1)?,
                    gauges: [None; GAUGES.len()],
                    maxima: [None; MAXED.len()],
                    rates: [None; COUNTERS.len()],
                };
                for i in 0..GAUGES.len() {
                    point.gauges[i] = f(gauges_at + i)?;
                }
                for i in 0..MAXED.len() {
                    point.maxima[i] = f(maxima_at + i)?;
                }
                for i in 0..COUNTERS.len() {
                    point.rates[i] = f(rates_at + i)?;
                }
                Ok(point)
            },
        )
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Equal points: same steps and sample counts, the same values present, values equal but for
/// the order floating-point sums were added in.
fn assert_same(found: &[HistoryPoint], expected: &[HistoryPoint], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: number of points");
    for (f, e) in found.iter().zip(expected) {
        let (fj, ej) = (
            serde_json::to_value(f).unwrap(),
            serde_json::to_value(e).unwrap(),
        );
        for (key, ev) in ej.as_object().unwrap() {
            let fv = &fj[key];
            let same = match (fv.as_f64(), ev.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                _ => fv == ev,
            };
            assert!(same, "{what}: step {} {key}: {fv} != {ev}", e.ts_ms);
        }
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn value_column_lists_follow_the_table() {
    let names = |it: &mut dyn Iterator<Item = &'static Column>| -> Vec<&str> {
        it.map(|c| c.name).collect()
    };
    assert_eq!(names(&mut gauges()), GAUGES);
    assert_eq!(names(&mut counters()), COUNTERS);
}

/// Two sandboxes over a closed hour (rolled up) and an open one: restarts, missing values, a
/// replayed duplicate, late samples; windows inside, across and around both hours, at steps
/// that read raw rows, rollups or both; then the same after raw retention dropped the closed
/// hour. The answer must be the reference's every time.
#[test]
fn history_matches_the_sql_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let closed = hour_start(now_ms() - 3 * HOUR_MS);
    let open = hour_start(now_ms()) + 2 * HOUR_MS;
    let mut samples = Vec::new();
    for (hour, first_run) in [(closed, "a1"), (open, "b1")] {
        for tick in 0..1800u64 {
            let ts = hour + tick as i64 * 1000;
            samples.push(sample("sb-a", first_run, ts, tick));
            // sb-b restarts half way through each hour (counters from zero again).
            samples.push(sample("sb-b", first_run, ts + 7, tick));
            samples.push(sample("sb-a", "x", ts + 1_800_000, tick + 5));
            samples.push(sample("sb-b", "y", ts + 1_800_000 + 7, tick / 2));
        }
    }
    // A replayed duplicate and samples that arrive after later ones.
    samples.push(sample("sb-a", "a1", closed + 5000, 5));
    samples.push(sample("sb-b", "b1", open + 100_007, 100));
    for chunk in samples.chunks(997) {
        writer.append(chunk.to_vec());
    }
    writer.append(vec![sample("sb-a", "b1", open + 2_000, 2)]);
    writer.flush().unwrap();
    let windows = [
        (closed, closed + HOUR_MS, 10_000),
        (closed, closed + HOUR_MS, 60_000),
        (closed + 603_000, closed + 3_000_000, 7_000),
        (closed - HOUR_MS, open + 2 * HOUR_MS, 60_000),
        (closed - HOUR_MS, open + 2 * HOUR_MS, 600_000),
        (closed + 1_790_000, open + 10_000, 10_000),
        (open, open + 1_800_000, 1_000),
        (open + 290_000, open + 370_500, 1_500),
        (open - 30_000, open + HOUR_MS, 120_000),
    ];
    let check = |store: &Store, phase: &str| {
        for sandbox in ["sb-a", "sb-b", "nobody"] {
            for (since, until, step) in windows {
                let what = format!("{phase} {sandbox} [{since}, {until}) @ {step}");
                let found = store.history(sandbox, since, until, step).unwrap();
                assert_same(
                    &found,
                    &reference(store, sandbox, since, until, step),
                    &what,
                );
                // Asked again (from the open-hour readings kept by the first call).
                let again = store.history(sandbox, since, until, step).unwrap();
                assert_same(&again, &found, &what);
            }
        }
    };
    // The open hour is answered from the writer's cache (filled as it appended)...
    let open_table = raw_name(open);
    assert!(store.series_cache().open_hour().is_ready(&open_table));
    check(&store, "raw, open hour from the writer's cache");
    // ... and from DuckDB once the cache does not hold it.
    store.series_cache().open_hour().clear();
    check(&store, "raw, open hour from DuckDB");
    assert!(!store
        .history("sb-a", closed, open + HOUR_MS, 10_000)
        .unwrap()
        .is_empty());
    drop(writer);
    let writer = SeriesWriter::start(
        &store,
        RetentionConfig {
            raw: Duration::from_secs(2 * 3600),
            ..RetentionConfig::default()
        },
    )
    .unwrap();
    writer.flush().unwrap();
    let name = raw_name(closed);
    assert_eq!(
        count(
            &store,
            &format!("SELECT count(*) FROM series_partitions WHERE name = '{name}'")
        ),
        0
    );
    // The new writer filled its cache from the table in the background.
    writer.wait_open_hour_filled();
    assert!(store.series_cache().open_hour().is_ready(&open_table));
    check(&store, "rollups");
    // msbd restarted: a fresh database instance, a writer that fills the cache from the file.
    drop(writer);
    drop(store);
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    writer.wait_open_hour_filled();
    assert!(store.series_cache().open_hour().is_ready(&open_table));
    check(&store, "after a restart");
}

/// A writer that starts on a store with an open hour (msbd restarted) fills its cache in the
/// background; what it commits meanwhile is kept aside and added after, so the cache ends up
/// with every row, in commit order, and answers as DuckDB does.
#[test]
fn commits_during_the_fill_are_kept_aside_and_added_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msb.duckdb");
    let open = hour_start(now_ms()) + 2 * HOUR_MS;
    let table = raw_name(open);
    let batch = |from: u64, to: u64| -> Vec<Sample> {
        (from..to)
            .flat_map(|t| {
                let ts = open + t as i64 * 1000;
                [sample("sb-a", "r1", ts, t), sample("sb-b", "r2", ts + 3, t)]
            })
            .collect()
    };
    {
        let store = Store::open(&path).unwrap();
        let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
        writer.append(batch(0, 600));
        writer.flush().unwrap();
    }
    let store = Store::open(&path).unwrap();
    store.series_cache().open_hour().hold_fill = true;
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    // Committed while the fill waits: kept aside, the table still read from DuckDB.
    writer.append(batch(600, 900));
    // A late sample of sb-a's run, older than what it already has.
    writer.append(vec![sample("sb-a", "r1", open + 300_500, 300)]);
    writer.flush().unwrap();
    assert!(!store.series_cache().open_hour().is_ready(&table));
    let window = (open, open + HOUR_MS, 10_000);
    let before: Vec<_> = ["sb-a", "sb-b"]
        .map(|s| store.history(s, window.0, window.1, window.2).unwrap())
        .into();
    store.series_cache().open_hour().hold_fill = false;
    writer.wait_open_hour_filled();
    assert!(store.series_cache().open_hour().is_ready(&table));
    // And what comes after the fill goes straight in.
    writer.append(batch(900, 1000));
    writer.flush().unwrap();
    for (i, sandbox) in ["sb-a", "sb-b"].into_iter().enumerate() {
        let found = store
            .history(sandbox, window.0, window.1, window.2)
            .unwrap();
        let expected = reference(&store, sandbox, window.0, window.1, window.2);
        assert_same(&found, &expected, sandbox);
        assert_eq!(
            found.iter().map(|p| p.samples).sum::<u64>(),
            1000 + u64::from(i == 0)
        );
        assert!(found.len() > before[i].len());
    }
    // At one second per point, every raw value is compared, not only averages.
    for sandbox in ["sb-a", "sb-b"] {
        let found = store
            .history(sandbox, open, open + 1_000_000, 1000)
            .unwrap();
        assert_same(
            &found,
            &reference(&store, sandbox, open, open + 1_000_000, 1000),
            sandbox,
        );
    }
}

/// Past its budget the cache drops the oldest hour first (read from DuckDB from then on), and
/// it forgets a table once the writer closed it.
#[test]
fn the_open_hour_cache_drops_the_oldest_hour_first_and_closed_hours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let first = hour_start(now_ms()) + 2 * HOUR_MS;
    let second = first + HOUR_MS;
    let samples = |hour: i64| -> Vec<Sample> {
        (0..300)
            .map(|t| sample("sb", "r", hour + t as i64 * 1000, t))
            .collect()
    };
    writer.append(samples(first));
    writer.append(samples(second));
    writer.flush().unwrap();
    let (older, newer) = (raw_name(first), raw_name(second));
    {
        let mut cache = store.series_cache().open_hour();
        assert!(cache.is_ready(&older) && cache.is_ready(&newer));
        cache.budget_bytes = cache.table_bytes(&newer) + cache.table_bytes(&older) / 2;
        cache.keep_under_budget();
        assert!(!cache.is_ready(&older), "the older hour goes first");
        assert!(cache.is_ready(&newer));
    }
    for hour in [first, second] {
        let found = store.history("sb", hour, hour + HOUR_MS, 10_000).unwrap();
        assert_same(
            &found,
            &reference(&store, "sb", hour, hour + HOUR_MS, 10_000),
            "budget",
        );
        assert_eq!(found.iter().map(|p| p.samples).sum::<u64>(), 300);
    }
    // A past hour is closed by the writer's maintenance: forgotten.
    let past = hour_start(now_ms()) - 2 * HOUR_MS;
    writer.append(samples(past));
    writer.flush().unwrap();
    let cache = store.series_cache().open_hour();
    assert!(!cache.is_ready(&raw_name(past)));
    assert!(cache.is_ready(&newer));
}

/// The partition list is read once, then again only after the writer changed it; samples the
/// writer appends to existing partitions are seen without reading it again.
#[test]
fn the_partition_list_is_read_again_only_after_the_writer_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let loads = || store.series_cache().loads();
    let closed = hour_start(now_ms() - 3 * HOUR_MS);
    let samples = |from: u64, to: u64| -> Vec<Sample> {
        (from..to)
            .map(|t| sample("sb", "r", closed + t as i64 * 1000, t))
            .collect()
    };
    let total = |store: &Store| -> u64 {
        let points = store
            .history("sb", closed, closed + HOUR_MS, 60_000)
            .unwrap();
        points.iter().map(|p| p.samples).sum()
    };
    writer.append(samples(0, 600));
    writer.flush().unwrap(); // Creates the hour, closes it (sorted, rolled up).
    assert_eq!(total(&store), 600);
    let after_first = loads();
    assert_eq!(total(&store), 600);
    assert_eq!(loads(), after_first, "unchanged list, no reload");
    // Late samples of the closed hour go to its table: no partition change, still seen.
    writer.append(samples(600, 660));
    writer.flush().unwrap();
    let points = store
        .history("sb", closed + 600_000, closed + 660_000, 10_000)
        .unwrap();
    assert_eq!(points.iter().map(|p| p.samples).sum::<u64>(), 60);
    assert_eq!(loads(), after_first);
    // A new hour is a new partition: read again, and its samples are there.
    let later = closed + HOUR_MS;
    writer.append(vec![sample("sb", "r", later + 1000, 700)]);
    writer.flush().unwrap();
    assert_eq!(
        store
            .history("sb", later, later + HOUR_MS, 1000)
            .unwrap()
            .len(),
        1
    );
    assert!(loads() > after_first);
    // Retention drops both raw hours: the next query reads the list again and the history
    // comes from the rollups alone (only what was closed in time was rolled up).
    drop(writer);
    let before_drop = loads();
    let writer = SeriesWriter::start(
        &store,
        RetentionConfig {
            raw: Duration::from_secs(3600),
            ..RetentionConfig::default()
        },
    )
    .unwrap();
    writer.flush().unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM samples"), 0);
    assert_eq!(total(&store), 600);
    assert!(loads() > before_drop);
}

/// The hour being written, read from DuckDB (not held by the open-hour cache): the first query
/// reads the sandbox's rows, later ones only what was appended since; readings are forgotten when their table is closed, and at most
/// `OPEN_READINGS_ENTRIES` pairs are kept.
#[test]
fn open_hour_readings_follow_appends_and_are_forgotten_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    let open = hour_start(now_ms()) + 2 * HOUR_MS;
    let window = (open, open + HOUR_MS, 10_000);
    let write = |from: u64, to: u64| {
        let batch = (from..to)
            .flat_map(|t| {
                (0..3).map(move |s| sample(&format!("sb-{s}"), "r", open + t as i64 * 1000, t))
            })
            .collect();
        writer.append(batch);
        writer.flush().unwrap();
    };
    let history = |sandbox: &str| {
        store
            .history(sandbox, window.0, window.1, window.2)
            .unwrap()
    };
    let expected = |sandbox: &str| reference(&store, sandbox, window.0, window.1, window.2);
    write(0, 100);
    // This test is about reading the hour from DuckDB: without the writer's open-hour cache
    // (a table it does not hold stays out of it).
    store.series_cache().open_hour().clear();
    assert_same(&history("sb-1"), &expected("sb-1"), "first read");
    assert_eq!(store.series_cache().open_readings().len(), 1);
    // Nothing appended since: answered from the readings without reading the table.
    let scans = store.series_cache().scans();
    assert_same(&history("sb-1"), &expected("sb-1"), "again");
    assert_eq!(store.series_cache().scans(), scans);
    write(100, 250);
    // A late sample, earlier than everything appended before it.
    writer.append(vec![sample("sb-1", "r", open + 50_500, 50)]);
    writer.flush().unwrap();
    assert_same(&history("sb-1"), &expected("sb-1"), "after appends");
    assert_eq!(history("sb-1").iter().map(|p| p.samples).sum::<u64>(), 251);
    // Readings of more sandboxes than are kept: the oldest go, answers stay right.
    for round in 0..2 {
        for s in 0..OPEN_READINGS_ENTRIES + 3 {
            let sandbox = format!("sb-{}", s % 3);
            let sandbox = if s < 3 {
                sandbox
            } else {
                format!("sb-none-{s}")
            };
            assert_same(
                &history(&sandbox),
                &expected(&sandbox),
                &format!("round {round}"),
            );
        }
        assert!(store.series_cache().open_readings().len() <= OPEN_READINGS_ENTRIES);
    }
    // The hour is closed (as the writer does: rewritten sorted, marked closed, generation
    // bumped): its readings are forgotten and the answer comes from the table itself.
    assert_same(&history("sb-2"), &expected("sb-2"), "before close");
    let name = raw_name(open);
    store
        .conn()
        .execute_batch(&format!(
            "CREATE TABLE {name}__sorted AS SELECT * FROM {name} ORDER BY sandbox_id, ts_ms;
             DROP TABLE {name};
             ALTER TABLE {name}__sorted RENAME TO {name};
             UPDATE series_partitions SET closed = true WHERE name = '{name}';"
        ))
        .unwrap();
    store
        .series_cache()
        .generation()
        .fetch_add(1, Ordering::Release);
    let after_close = history("sb-2");
    assert_eq!(store.series_cache().open_readings().len(), 0);
    assert_same(&after_close, &expected("sb-2"), "after close");
}

#[test]
fn the_default_step_gives_100_to_300_points_and_is_never_finer_than_sampling() {
    // Ten seconds at 1 Hz: the ten raw samples.
    assert_eq!(super::default_step_ms(10_000, 1_000), 1_000);
    assert_eq!(super::default_step_ms(10_000, 100), 100);
    assert_eq!(super::default_step_ms(60_000, 250), 250);
    for window in [
        5 * 60_000,
        3_600_000,
        6 * 3_600_000,
        86_400_000,
        7 * 86_400_000,
        30 * 86_400_000,
    ] {
        let step = super::default_step_ms(window, 1_000);
        let points = window / step;
        assert!(
            (100..=300).contains(&points),
            "{window} ms: step {step} gives {points} points"
        );
    }
    // Longer than the round steps go: whole days.
    assert_eq!(
        super::default_step_ms(400 * 86_400_000, 1_000) % 86_400_000,
        0
    );
}
