//! Metrics history in DuckDB, through the real binary: rows per window, counters, runs, OOM,
//! restarts of msbd, and bad input.

use std::time::Duration;

use msb_e2e::{require_root, TestHome};
use serde_json::Value;

fn sql(home: &TestHome, query: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&home.ok(&["metrics", "--sql", query, "--format", "json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn id(home: &TestHome, name: &str) -> String {
    home.inspect(name)["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_ten_second_window_holds_ten_rows_and_counters_never_decrease() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("h", "while :; do echo x > /tmp/f; sleep 0.1; done");
    let sandbox = id(&home, "h");
    std::thread::sleep(Duration::from_secs(13));
    let first = sql(
        &home,
        &format!("SELECT min(ts_ms) AS t FROM samples WHERE sandbox_id = '{sandbox}'"),
    )[0]["t"]
        .as_i64()
        .unwrap();
    let start = first + 1_000;
    let rows = sql(
        &home,
        &format!("SELECT count(*) AS n FROM samples WHERE sandbox_id = '{sandbox}' AND ts_ms >= {start} AND ts_ms < {}", start + 10_000),
    );
    let n = rows[0]["n"].as_i64().unwrap();
    assert!((9..=11).contains(&n), "a 10 s window at 1 s holds {n} rows");
    let decreases = sql(
        &home,
        &format!(
            "SELECT count(*) AS n FROM (SELECT vcpu_time_ns - lag(vcpu_time_ns) OVER (PARTITION BY run_id ORDER BY ts_ms) AS d, \
             heartbeat_seq - lag(heartbeat_seq) OVER (PARTITION BY run_id ORDER BY ts_ms) AS h \
             FROM samples WHERE sandbox_id = '{sandbox}') WHERE d < 0 OR h < 0"
        ),
    );
    assert_eq!(decreases[0]["n"], 0, "counters never decrease within a run");

    // Without --step a short window shows the raw samples: ten seconds at 1 Hz, ten points.
    let raw: Vec<Value> =
        serde_json::from_str(&home.ok(&["metrics", "h", "--since", "10s", "--format", "json"]))
            .unwrap();
    assert!(
        (9..=11).contains(&raw.len()),
        "{} points: {raw:?}",
        raw.len()
    );
    assert!(raw.iter().all(|p| p["samples"] == 1), "{raw:?}");

    // The same through the history view: gauges averaged per step, counters as rates.
    let history: Vec<Value> = serde_json::from_str(&home.ok(&[
        "metrics", "h", "--since", "12s", "--step", "2s", "--format", "json",
    ]))
    .unwrap();
    assert!(history.len() >= 5, "{history:?}");
    for point in &history {
        assert!(point["vcpu_time_ns_per_sec"].as_f64().unwrap_or(0.0) >= 0.0);
        assert!(point["memory_bytes"].as_f64().is_some());
    }
    let csv = home.ok(&["metrics", "h", "--since", "12s", "--format", "csv"]);
    assert!(csv.lines().next().unwrap().contains("cpu_percent"), "{csv}");
}

#[test]
fn restarts_are_new_runs_and_an_oom_kill_is_an_event_and_a_reason() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["create", "-n", "twice", "--", "sleep", "2"]);
    home.ok(&["start", "twice"]);
    home.ok(&["wait", "twice"]);
    home.ok(&["start", "twice"]);
    home.ok(&["wait", "twice"]);
    let sandbox = id(&home, "twice");
    let runs = sql(
        &home,
        &format!("SELECT count(DISTINCT run_id) AS n FROM samples WHERE sandbox_id = '{sandbox}'"),
    );
    assert_eq!(runs[0]["n"], 2, "each start is a run of its own in history");

    // A shell holding 100 MB in a variable under a 32 MiB limit.
    let run = home.msb(&[
        "run",
        "-n",
        "oom",
        "-m",
        "32M",
        "--",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(run.code, 137, "{run:?}");
    let info = home.inspect("oom");
    assert_eq!(info["runs"][0]["termination_reason"], "Signal");
    assert!(
        info["runs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("OOM killer"),
        "{info}"
    );
    let oom = id(&home, "oom");
    let events = sql(
        &home,
        &format!("SELECT kind FROM events WHERE sandbox_id = '{oom}' AND kind = 'oom_kill'"),
    );
    assert_eq!(events.len(), 1);
}

/// What history holds of one sandbox's run: samples, distinct times, the largest gap between
/// two in ms, and the first and last uptime.
struct Stored {
    samples: i64,
    distinct: i64,
    gap_ms: i64,
    first_uptime: f64,
    last_uptime: f64,
}

fn stored(home: &TestHome, sandbox: &str) -> Stored {
    let row = &sql(
        home,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT ts_ms) AS d, max(ts_ms - prev) AS gap, \
             min(uptime_secs) AS first, max(uptime_secs) AS last FROM (SELECT ts_ms, uptime_secs, \
             lag(ts_ms) OVER (ORDER BY ts_ms) AS prev FROM samples WHERE sandbox_id = '{sandbox}')"
        ),
    )[0];
    Stored {
        samples: row["n"].as_i64().unwrap(),
        distinct: row["d"].as_i64().unwrap(),
        gap_ms: row["gap"].as_i64().unwrap(),
        first_uptime: row["first"].as_f64().unwrap(),
        last_uptime: row["last"].as_f64().unwrap(),
    }
}

/// Every sample the sampler took (one a second from the start) is in history, once.
fn assert_every_sample_stored(home: &TestHome, sandbox: &str) -> Stored {
    let s = stored(home, sandbox);
    assert_eq!(s.samples, s.distinct, "a sample stored twice");
    assert!(
        s.gap_ms <= 1_500,
        "a {} ms hole in history across the restart",
        s.gap_ms
    );
    assert!(
        s.first_uptime < 0.5,
        "the first sample is missing ({})",
        s.first_uptime
    );
    // One sample per second of uptime (ticks can come a little late, never early).
    let seconds = (s.last_uptime - s.first_uptime).round() as i64;
    assert!(
        (s.samples - 1 - seconds).abs() <= 1,
        "{} samples over {seconds} s of the run",
        s.samples
    );
    s
}

#[test]
fn history_survives_msbd_restarts_without_gaps() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("steady", "sleep 1000");
    let sandbox = id(&home, "steady");
    std::thread::sleep(Duration::from_secs(3));
    // msbd is killed and stays down for a few seconds; the supervisor keeps sampling and keeps
    // what msbd had not acknowledged as stored, and sends it again.
    let pid = home.daemon_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    home.ok(&["server", "start"]);
    std::thread::sleep(Duration::from_secs(3));
    let before = assert_every_sample_stored(&home, &sandbox);
    assert!(before.samples >= 9, "{} samples over ~10 s", before.samples);
    // And a clean restart keeps what was stored.
    home.ok(&["server", "stop"]);
    let after = stored(&home, &sandbox);
    assert!(after.samples >= before.samples);
    assert_eq!(after.samples, after.distinct);
}

#[test]
fn samples_received_but_not_committed_survive_kill_9_and_are_stored_once() {
    if !require_root() {
        return;
    }
    // The writer gathers for an hour: nothing is committed unless a history query flushes.
    let home = TestHome::with_env(&[("MSB_SERIES_BATCH_MS", "3600000")]);
    home.detached("steady", "sleep 1000");
    let sandbox = id(&home, "steady");
    std::thread::sleep(Duration::from_secs(4));
    // The live view shows a sample msbd received; nothing is stored yet.
    let received: Value =
        serde_json::from_str(&home.ok(&["metrics", "steady", "--format", "json"])).unwrap();
    let uptime = received["uptime_secs"].as_f64().unwrap();
    assert!(uptime >= 2.0, "{received}");
    let pid = home.daemon_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // The next msbd is sent everything again; a clean stop commits what it received but closes
    // the watch connections first, so nothing is acknowledged: the third msbd is sent it all
    // again, and must store none of it twice.
    home.ok(&["server", "start"]);
    std::thread::sleep(Duration::from_secs(2));
    home.ok(&["server", "stop"]);
    home.ok(&["server", "start"]);
    std::thread::sleep(Duration::from_secs(2));
    let s = assert_every_sample_stored(&home, &sandbox);
    assert!(s.samples >= 9, "{} samples over ~10 s", s.samples);
    let kept = &sql(
        &home,
        &format!(
            "SELECT count(*) AS n FROM samples WHERE sandbox_id = '{sandbox}' \
             AND abs(uptime_secs - {uptime}) < 0.002"
        ),
    )[0]["n"];
    assert_eq!(
        kept.as_i64(),
        Some(1),
        "the sample msbd had received at uptime {uptime}"
    );
    let log = std::fs::read_to_string(home.path().join("msbd.log")).unwrap();
    assert!(
        log.contains("samples sent again were already stored"),
        "the third msbd was sent samples the second had stored"
    );
}

#[test]
fn history_bad_input_changes_nothing() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "-n", "b", "--", "sleep", "2"]);
    let before = sql(&home, "SELECT count(*) AS n FROM samples")[0]["n"].clone();
    for statement in [
        "DELETE FROM samples",
        "DROP VIEW samples",
        "INSERT INTO events VALUES (1, 'x', 'y', '{}')",
        "SELECT 1; DELETE FROM samples",
        "COPY samples TO '/tmp/x.csv'",
    ] {
        let run = home.msb(&["metrics", "--sql", statement]);
        assert_ne!(run.code, 0, "{statement}");
        assert!(run.stderr.starts_with("error: "), "{statement}: {run:?}");
    }
    assert_eq!(
        sql(&home, "SELECT count(*) AS n FROM samples")[0]["n"],
        before
    );
    let run = home.msb(&["metrics", "b", "--since", "soon"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("invalid time"), "{run:?}");
    let run = home.msb(&["metrics", "ghost", "--since", "1m"]);
    assert!(run.stderr.contains("no sandbox named \"ghost\""), "{run:?}");
    let run = home.msb(&["metrics", "b", "--since", "1m", "--until", "2m"]);
    assert_ne!(run.code, 0, "until before since");
    let run = home.msb(&[
        "metrics",
        "b",
        "--since",
        "1m",
        "--output",
        "/nonexistent-dir/x.parquet",
    ]);
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.parquet");
    let run = home.msb(&[
        "metrics",
        "b",
        "--since",
        "1m",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        std::fs::read(&file).unwrap().starts_with(b"PAR1"),
        "a Parquet file"
    );
}

/// User SQL and exports run as root in msbd: they must not reach the host's files. The
/// store's unit tests (`store/src/series/tests_sql.rs`) cover each layer; this is the same
/// through the binary.
#[test]
fn metrics_sql_and_export_cannot_reach_host_files() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "-n", "b", "--", "sleep", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").unwrap();
    let secret = secret.to_str().unwrap();
    let copied = dir.path().join("copied.csv");
    let attached = dir.path().join("attached.duckdb");
    for statement in [
        format!("SELECT * FROM (WITH \"{secret}\" AS (SELECT 1) SELECT 1) s, '{secret}'"),
        format!("SELECT * FROM read_csv('{secret}')"),
        format!("SELECT * FROM '{secret}'"),
        format!("COPY (SELECT 1) TO '{}'", copied.display()),
        format!("ATTACH '{}' AS o", attached.display()),
        "INSTALL httpfs".to_owned(),
        "SET enable_external_access = true".to_owned(),
    ] {
        let run = home.msb(&["metrics", "--sql", &statement]);
        assert_ne!(run.code, 0, "{statement}");
        assert!(run.stderr.starts_with("error: "), "{statement}: {run:?}");
        assert!(!run.stdout.contains("hunter2"), "{statement}: {run:?}");
    }
    assert!(!copied.exists() && !attached.exists());
    // An export onto a symbolic link replaces the link; the file it pointed to is unchanged.
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let run = home.msb(&[
        "metrics",
        "b",
        "--since",
        "1m",
        "--output",
        link.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(std::fs::read(&link).unwrap().starts_with(b"PAR1"));
    // Ordinary queries still answer.
    assert!(!sql(&home, "SELECT count(*) AS n FROM samples").is_empty());
}
