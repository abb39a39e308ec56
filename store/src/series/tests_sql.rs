//! Users' SQL and exports cannot reach the host: each attack fails, through both layers where
//! it can reach the second, and leaves the host as it was (real DuckDB files, real paths in a
//! temporary directory).

use std::path::Path;
use std::time::Duration;

use super::tests::sample;
use super::*;
use crate::catalog::now_ms;
use crate::{Store, StoreOptions};

fn store_in(dir: &Path, sql_timeout: Duration) -> Store {
    let store = Store::open_with(&dir.join("msb.duckdb"), StoreOptions { sql_timeout }).unwrap();
    let writer = SeriesWriter::start(&store, RetentionConfig::default()).unwrap();
    writer.append(
        (0..30)
            .map(|i| sample("sb", "r", now_ms() - 60_000 + i * 1000, i as u64))
            .collect(),
    );
    writer.flush().unwrap();
    store
}

/// Runs `sql` on the connection users' queries run on, past the statement check (the second
/// layer alone).
fn on_user_connection(store: &Store, sql: &str) -> Result<(), String> {
    store
        .sql_conn()
        .execute_batch(sql)
        .map_err(|e| e.to_string())
}

fn setting(store: &Store, name: &str) -> String {
    store
        .sql_conn()
        .query_row(
            "SELECT value FROM duckdb_settings() WHERE name = ?",
            [name],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn user_sql_cannot_read_or_write_host_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), SQL_TIMEOUT);
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").unwrap();
    let secret = secret.display().to_string();
    let copied = dir.path().join("copied.csv");
    let attached = dir.path().join("attached.duckdb");
    let host_files = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = host_files();
    let attacks = [
        // A CTE named like the file, defined inside a subquery, does not hide the file name
        // outside it (the old check collected CTE names without scope).
        format!("SELECT * FROM (WITH \"{secret}\" AS (SELECT 1) SELECT 1) s, '{secret}'"),
        format!("SELECT * FROM (WITH \"{secret}\" AS (SELECT 1) SELECT * FROM \"{secret}\") s, '{secret}'"),
        format!("WITH a AS (SELECT * FROM '{secret}'), \"{secret}\" AS (SELECT 1) SELECT * FROM a"),
        format!("SELECT * FROM samples UNION ALL SELECT * FROM (WITH \"{secret}\" AS (SELECT 1) SELECT 1), '{secret}'"),
        format!("SELECT * FROM read_csv('{secret}')"),
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        format!("SELECT * FROM '{secret}'"),
        "SELECT * FROM '/etc/passwd'".to_owned(),
        "SELECT * FROM 'https://example.com/x.csv'".to_owned(),
        format!("SELECT * FROM read_text('{secret}')"),
        format!("SELECT * FROM glob('{}/*')", dir.path().display()),
        format!("COPY (SELECT 1) TO '{}'", copied.display()),
        format!("ATTACH '{}' AS other", attached.display()),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
    ];
    for sql in &attacks {
        let refused = store.read_only_sql(sql).unwrap_err();
        assert!(
            matches!(refused, SeriesError::Refused(_)),
            "{sql}: {refused:?}"
        );
        // The engine refuses it too, on its own.
        let error = on_user_connection(&store, sql).expect_err(sql);
        assert!(
            error.contains("disabled by configuration")
                || error.contains("does not exist")
                || error.contains("disabled through configuration"),
            "{sql}: {error}"
        );
    }
    assert_eq!(host_files(), before, "no file created");
    // The store's own statements read as before.
    assert_eq!(
        store
            .read_only_sql("SELECT count(*) FROM samples")
            .unwrap()
            .1[0][0],
        30
    );
}

#[test]
fn the_engine_settings_are_locked_and_state_changing_statements_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), SQL_TIMEOUT);
    let expected = [
        ("enable_external_access", "false"),
        ("autoinstall_known_extensions", "false"),
        ("autoload_known_extensions", "false"),
        ("allow_community_extensions", "false"),
        ("lock_configuration", "true"),
        ("threads", "2"),
        // 512 MB in DuckDB's units.
        ("memory_limit", "488.2 MiB"),
        ("max_temp_directory_size", "953.6 MiB"),
    ];
    let check = |what: &str| {
        for (name, value) in expected {
            assert_eq!(setting(&store, name), value, "{what}: {name}");
        }
    };
    check("at open");
    for sql in [
        "SET enable_external_access = true",
        "SET GLOBAL enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "SET memory_limit = '100GB'",
        "SET threads = 64",
        "SET autoload_known_extensions = true",
        "PRAGMA enable_profiling",
        "PRAGMA memory_limit = '100GB'",
        "CALL checkpoint()",
        "SELECT * FROM checkpoint()",
        "CALL enable_logging()",
        "SELECT current_setting('memory_limit')",
    ] {
        let error = store.read_only_sql(sql).unwrap_err();
        assert!(matches!(error, SeriesError::Refused(_)), "{sql}: {error:?}");
    }
    // Past the check, the configuration still does not move.
    for sql in [
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET memory_limit = '100GB'",
        "PRAGMA memory_limit = '100GB'",
    ] {
        let error = on_user_connection(&store, sql).expect_err(sql);
        assert!(error.contains("locked"), "{sql}: {error}");
    }
    check("after the attempts");
}

#[test]
fn a_query_that_runs_too_long_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), Duration::from_millis(300));
    let error = store
        .read_only_sql("SELECT sum(i) FROM range(1000000000000) t(i)")
        .unwrap_err();
    assert!(matches!(error, SeriesError::Cancelled { .. }), "{error:?}");
    assert!(
        error.to_string().contains("cancelled after 300ms"),
        "{error}"
    );
    // The connection works again at once, and the next query is not cancelled.
    assert_eq!(
        store
            .read_only_sql("SELECT count(*) FROM samples")
            .unwrap()
            .1[0][0],
        30
    );
    assert_eq!(store.read_only_sql("SELECT 42").unwrap().1[0][0], 42);
}

#[test]
fn a_huge_allocation_hits_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), SQL_TIMEOUT);
    // 200 M BIGINTs in one list: 1.6 GB that cannot spill to disk.
    let error = store
        .read_only_sql("SELECT length(list(i)) FROM range(200000000) t(i)")
        .unwrap_err();
    assert!(error.to_string().contains("Out of Memory"), "{error}");
    assert_eq!(
        store
            .read_only_sql("SELECT count(*) FROM samples")
            .unwrap()
            .1[0][0],
        30
    );
}

#[test]
fn read_only_queries_over_the_relations_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), SQL_TIMEOUT);
    store
        .append_event(&crate::EventRecord {
            ts_ms: now_ms(),
            sandbox_id: Some("sb".into()),
            kind: "created".into(),
            detail_json: "{}".into(),
        })
        .unwrap();
    for (sql, rows) in [
        ("SELECT count(*) FROM samples", 1),
        ("SELECT sandbox_id, avg(cpu_percent) FROM samples GROUP BY ALL", 1),
        ("SELECT kind FROM events", 1),
        ("WITH s AS (SELECT * FROM samples) SELECT ts FROM s ORDER BY ts LIMIT 5", 5),
        ("WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b", 1),
        ("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t", 3),
        ("SELECT * FROM (WITH s AS (SELECT 1 AS x) SELECT * FROM s) q", 1),
        ("SELECT count(*) FROM samples_1m", 1),
        ("SELECT * FROM range(3)", 3),
    ] {
        let (_, found) = store.read_only_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(found.len(), rows, "{sql}");
    }
}

#[test]
fn exports_write_only_where_asked_and_never_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), SQL_TIMEOUT);
    let (since, until) = (now_ms() - 120_000, now_ms());
    let export = |path: &Path| store.export_parquet("sb", since, until, path);
    let rows_in = |path: &Path| -> i64 {
        duckdb::Connection::open_in_memory()
            .unwrap()
            .query_row(
                &format!("SELECT count(*) FROM read_parquet('{}')", path.display()),
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // An ordinary export, and again over the same file.
    let file = out.join("sb.parquet");
    assert_eq!(export(&file).unwrap(), 30);
    assert_eq!(export(&file).unwrap(), 30);
    assert_eq!(rows_in(&file), 30);
    // A symbolic link at the target is replaced, not written through.
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let link = out.join("link.parquet");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert_eq!(export(&link).unwrap(), 30);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    // Refused: relative, `..`, a directory reached through a link, not .parquet, a directory.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("via")).unwrap();
    std::fs::create_dir(out.join("dir.parquet")).unwrap();
    for path in [
        Path::new("sb.parquet").to_owned(),
        out.join("../escaped.parquet"),
        out.join("via/sb.parquet"),
        out.join("sb.csv"),
        out.join("missing/sb.parquet"),
        out.join("dir.parquet"),
    ] {
        let error = export(&path).unwrap_err();
        assert!(
            matches!(error, SeriesError::Export { .. }),
            "{}: {error:?}",
            path.display()
        );
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(!dir.path().join("escaped.parquet").exists());
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["dir.parquet", "link.parquet", "sb.parquet", "via"]);
    // Nothing is left behind in the exports directory.
    let exports = Store::exports_path(&dir.path().join("msb.duckdb"));
    assert_eq!(std::fs::read_dir(exports).unwrap().count(), 0);
}
