//! Numbered schema migrations, applied in order, each in its own transaction.
//!
//! Never edit a migration that has shipped: add the next number.

use duckdb::Connection;

use crate::StoreError;

/// (version, name, SQL). Versions are dense and increasing.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
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
)];

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
