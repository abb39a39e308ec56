//! Numbered schema migrations, applied in order, each in its own transaction.
//!
//! Never edit a migration that has shipped: add the next number.

use duckdb::Connection;

use crate::StoreError;

/// (version, name, SQL). Versions are dense and increasing.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "catalog",
        r#"
    CREATE TABLE sandboxes (
        id            VARCHAR PRIMARY KEY,
        name          VARCHAR NOT NULL UNIQUE,
        status        VARCHAR NOT NULL,
        config_json   VARCHAR NOT NULL,
        ephemeral     BOOLEAN NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE runs (
        id                     VARCHAR PRIMARY KEY,
        sandbox_id             VARCHAR NOT NULL,
        run_number             INTEGER NOT NULL,
        supervisor_pid         INTEGER,
        supervisor_start_ticks UBIGINT,
        init_pid               INTEGER,
        workload_pid           INTEGER,
        started_at_ms          BIGINT NOT NULL,
        ended_at_ms            BIGINT,
        exit_code              INTEGER,
        signal                 INTEGER,
        termination_reason     VARCHAR,
        error                  VARCHAR
    );
    CREATE TABLE labels (
        sandbox_id VARCHAR NOT NULL,
        key        VARCHAR NOT NULL,
        value      VARCHAR NOT NULL,
        PRIMARY KEY (sandbox_id, key)
    );
    CREATE TABLE volumes (
        name          VARCHAR PRIMARY KEY,
        kind          VARCHAR NOT NULL,
        quota_mib     UBIGINT,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE events (
        ts_ms       BIGINT NOT NULL,
        sandbox_id  VARCHAR,
        kind        VARCHAR NOT NULL,
        detail_json VARCHAR NOT NULL
    );
    "#,
    ),
    (
        2,
        "time series",
        r#"
    -- Live partitions of the time series (see store/src/series/ and ADR 004).
    CREATE TABLE series_partitions (
        name     VARCHAR NOT NULL,
        kind     VARCHAR NOT NULL, -- 'raw' (one UTC hour) or 'rollup' (one UTC day)
        start_ms BIGINT NOT NULL,
        end_ms   BIGINT NOT NULL,
        closed   BOOLEAN NOT NULL  -- raw: sorted and rolled up
    );
    -- The shapes every partition is created from (never written to).
    CREATE TABLE samples_raw_template (
        sandbox_id VARCHAR NOT NULL,
        run_id     VARCHAR NOT NULL,
        ts_ms      BIGINT NOT NULL,
        uptime_secs                DOUBLE,
        cpu_percent                DOUBLE,
        vcpu_time_ns               UBIGINT,
        memory_bytes               UBIGINT,
        memory_available_bytes     UBIGINT,
        memory_limit_bytes         UBIGINT,
        memory_host_resident_bytes UBIGINT,
        disk_read_bytes            UBIGINT,
        disk_write_bytes           UBIGINT,
        net_rx_bytes               UBIGINT,
        net_tx_bytes               UBIGINT,
        net_rx_packets             UBIGINT,
        net_tx_packets             UBIGINT,
        upper_used_bytes           UBIGINT,
        upper_free_bytes           UBIGINT,
        upper_host_allocated_bytes UBIGINT,
        processes                  UBIGINT,
        heartbeat_seq              UBIGINT,
        heartbeat_age_ms           UBIGINT,
        active_sessions            UBIGINT
    );
    CREATE TABLE samples_1m_template (
        sandbox_id  VARCHAR NOT NULL,
        run_id      VARCHAR NOT NULL,
        minute_ms   BIGINT NOT NULL,
        samples     UINTEGER NOT NULL,
        last_ts_ms  BIGINT NOT NULL,
        uptime_secs                    DOUBLE,
        cpu_percent_avg                DOUBLE,
        cpu_percent_max                DOUBLE,
        vcpu_time_ns                   UBIGINT,
        memory_bytes_avg               DOUBLE,
        memory_bytes_max               UBIGINT,
        memory_available_bytes_avg     DOUBLE,
        memory_available_bytes_max     UBIGINT,
        memory_limit_bytes_avg         DOUBLE,
        memory_limit_bytes_max         UBIGINT,
        memory_host_resident_bytes_avg DOUBLE,
        memory_host_resident_bytes_max UBIGINT,
        disk_read_bytes                UBIGINT,
        disk_write_bytes               UBIGINT,
        net_rx_bytes                   UBIGINT,
        net_tx_bytes                   UBIGINT,
        net_rx_packets                 UBIGINT,
        net_tx_packets                 UBIGINT,
        upper_used_bytes_avg           DOUBLE,
        upper_used_bytes_max           UBIGINT,
        upper_free_bytes_avg           DOUBLE,
        upper_free_bytes_max           UBIGINT,
        upper_host_allocated_bytes_avg DOUBLE,
        upper_host_allocated_bytes_max UBIGINT,
        processes_avg                  DOUBLE,
        processes_max                  UBIGINT,
        heartbeat_seq                  UBIGINT,
        heartbeat_age_ms_avg           DOUBLE,
        heartbeat_age_ms_max           UBIGINT,
        active_sessions_avg            DOUBLE,
        active_sessions_max            UBIGINT
    );
    CREATE VIEW samples AS
        SELECT *, epoch_ms(ts_ms) AS ts FROM (FROM samples_raw_template);
    CREATE VIEW samples_1m AS
        SELECT *, epoch_ms(minute_ms) AS ts FROM (FROM samples_1m_template);
    "#,
    ),
    (
        3,
        "catalog journal",
        r#"
    -- The sequence number of the last catalog change committed here; changes after it are
    -- replayed from $MSB_HOME/msb.catalog-journal when the store opens (ADR 008).
    CREATE TABLE catalog_journal (applied_seq UBIGINT NOT NULL);
    INSERT INTO catalog_journal VALUES (0);
    "#,
    ),
    (
        4,
        "how runs ended",
        r#"
    ALTER TABLE runs ADD COLUMN oom_kills UBIGINT;
    ALTER TABLE runs ADD COLUMN end_cause VARCHAR;
    "#,
    ),
    (
        5,
        "disk volumes",
        r#"
    -- The image size of a disk volume (NULL for a directory volume).
    ALTER TABLE volumes ADD COLUMN size_bytes UBIGINT;
    "#,
    ),
];

/// The highest version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

pub fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?)
}

pub fn apply(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at_ms BIGINT NOT NULL)",
    )?;
    let current = current_version(conn)?;
    if current > latest_version() {
        return Err(StoreError::TooNew {
            found: current,
            known: latest_version(),
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let run = || -> Result<(), duckdb::Error> {
            conn.execute_batch("BEGIN TRANSACTION")?;
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                duckdb::params![version, name, crate::catalog::now_ms()],
            )?;
            conn.execute_batch("COMMIT")
        };
        if let Err(source) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Migration {
                version,
                name,
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_reopens_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msb.duckdb");
        let store = crate::Store::open(&path).unwrap();
        assert_eq!(store.health().unwrap().schema_version, latest_version());
        drop(store);
        let store = crate::Store::open(&path).unwrap();
        let applied: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(applied, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let store = crate::Store::open_in_memory().unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
                [],
            )
            .unwrap();
        assert!(matches!(
            apply(store.conn()),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }
}
