//! Partition bookkeeping: naming, creation, the views over the live partitions, closing a raw
//! partition (rewrite sorted by sandbox and time, then roll it up) and retention (drop whole
//! partitions, then checkpoint so the freed blocks are reused).
//!
//! Only the writer thread calls into this module, on its own connection. Every transaction that
//! changes `series_partitions` bumps the generation the query side's cache checks
//! ([`super::cache`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use duckdb::{params, Connection};

use super::{duration_ms, rollup_columns, RetentionConfig, CLOSE_GRACE_MS, VALUE_COLUMNS};

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, Clone)]
struct RawPartition {
    name: String,
    closed: bool,
}

/// The writer's view of `series_partitions`, keyed by start time.
#[derive(Debug)]
pub(crate) struct Partitions {
    raw: BTreeMap<i64, RawPartition>,
    rollup: BTreeMap<i64, String>,
    /// Bumped after every transaction that changes `series_partitions`.
    generation: Arc<AtomicU64>,
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Maintenance {
    pub closed: usize,
    pub dropped: usize,
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn raw_name(hour_start_ms: i64) -> String {
    let (y, m, d) = civil_from_days(hour_start_ms.div_euclid(DAY_MS));
    let hour = hour_start_ms.rem_euclid(DAY_MS) / HOUR_MS;
    format!("samples_raw_{y:04}{m:02}{d:02}{hour:02}")
}

pub(crate) fn rollup_name(day_start_ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_start_ms.div_euclid(DAY_MS));
    format!("samples_1m_{y:04}{m:02}{d:02}")
}

pub(crate) fn hour_start(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(HOUR_MS)
}

fn day_start(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(DAY_MS)
}

/// The `SELECT` list that rolls raw rows up, each aggregate named after its rollup column
/// (the insert goes by name, so the rollup table's physical column order does not matter).
fn rollup_select_list() -> String {
    let mut list = vec![
        "sandbox_id".to_owned(),
        "run_id".to_owned(),
        "ts_ms // 60000 * 60000 AS minute_ms".to_owned(),
        "count(*)::UINTEGER AS samples".to_owned(),
        "max(ts_ms) AS last_ts_ms".to_owned(),
    ];
    for column in &VALUE_COLUMNS {
        for (name, _, aggregate) in rollup_columns(column) {
            list.push(format!("{aggregate} AS {name}"));
        }
    }
    list.join(", ")
}

impl Partitions {
    pub(crate) fn load(
        conn: &Connection,
        generation: Arc<AtomicU64>,
    ) -> duckdb::Result<Partitions> {
        let mut partitions = Partitions {
            raw: BTreeMap::new(),
            rollup: BTreeMap::new(),
            generation,
        };
        let mut statement =
            conn.prepare("SELECT name, kind, start_ms, closed FROM series_partitions")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (name, kind, start_ms, closed) = row?;
            if kind == "raw" {
                partitions
                    .raw
                    .insert(start_ms, RawPartition { name, closed });
            } else {
                partitions.rollup.insert(start_ms, name);
            }
        }
        Ok(partitions)
    }

    /// Whether the raw partition of the hour starting at `hour_start_ms` exists.
    pub(crate) fn has_raw(&self, hour_start_ms: i64) -> bool {
        self.raw.contains_key(&hour_start_ms)
    }

    /// Whether `name` is a raw partition that is not closed yet.
    pub(crate) fn is_open_raw(&self, name: &str) -> bool {
        self.raw.values().any(|p| !p.closed && p.name == name)
    }

    /// The raw partitions that are not closed yet.
    pub(crate) fn open_raw_names(&self) -> Vec<String> {
        self.raw
            .values()
            .filter(|p| !p.closed)
            .map(|p| p.name.clone())
            .collect()
    }

    /// The raw partition for the hour starting at `hour_start_ms`, created if needed.
    pub(crate) fn ensure_raw(
        &mut self,
        conn: &Connection,
        hour_start_ms: i64,
    ) -> duckdb::Result<String> {
        if let Some(partition) = self.raw.get(&hour_start_ms) {
            return Ok(partition.name.clone());
        }
        let name = raw_name(hour_start_ms);
        self.in_transaction(conn, |this| {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {name} AS FROM samples_raw_template LIMIT 0"
            ))?;
            conn.execute(
                "INSERT INTO series_partitions VALUES (?, 'raw', ?, ?, false)",
                params![name, hour_start_ms, hour_start_ms + HOUR_MS],
            )?;
            this.raw.insert(
                hour_start_ms,
                RawPartition {
                    name: name.clone(),
                    closed: false,
                },
            );
            this.refresh_views(conn)
        })?;
        Ok(name)
    }

    fn ensure_rollup(&mut self, conn: &Connection, day_start_ms: i64) -> duckdb::Result<String> {
        if let Some(name) = self.rollup.get(&day_start_ms) {
            return Ok(name.clone());
        }
        let name = rollup_name(day_start_ms);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {name} AS FROM samples_1m_template LIMIT 0"
        ))?;
        conn.execute(
            "INSERT INTO series_partitions VALUES (?, 'rollup', ?, ?, true)",
            params![name, day_start_ms, day_start_ms + DAY_MS],
        )?;
        self.rollup.insert(day_start_ms, name.clone());
        Ok(name)
    }

    /// Runs `f` in a transaction; on error rolls back and reloads the in-memory list so it
    /// matches the database again.
    fn in_transaction<T>(
        &mut self,
        conn: &Connection,
        f: impl FnOnce(&mut Self) -> duckdb::Result<T>,
    ) -> duckdb::Result<T> {
        conn.execute_batch("BEGIN TRANSACTION")?;
        let result = f(self).and_then(|value| conn.execute_batch("COMMIT").map(|()| value));
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            if let Ok(reloaded) = Partitions::load(conn, Arc::clone(&self.generation)) {
                *self = reloaded;
            }
        }
        // After the commit (or rollback): a query that read the list before it sees a newer
        // generation next time and reads it again.
        self.generation.fetch_add(1, Ordering::Release);
        result
    }

    /// Rebuilds `samples` and `samples_1m` over the template plus the live partitions.
    pub(crate) fn refresh_views(&self, conn: &Connection) -> duckdb::Result<()> {
        let union = |template: &str, names: Vec<&String>| {
            std::iter::once(template)
                .chain(names.into_iter().map(String::as_str))
                .map(|name| format!("SELECT * FROM {name}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL BY NAME ")
        };
        let raw = union(
            "samples_raw_template",
            self.raw.values().map(|p| &p.name).collect(),
        );
        let rollup = union("samples_1m_template", self.rollup.values().collect());
        conn.execute_batch(&format!(
            "CREATE OR REPLACE VIEW samples AS SELECT *, epoch_ms(ts_ms) AS ts FROM ({raw});
             CREATE OR REPLACE VIEW samples_1m AS
                 SELECT *, epoch_ms(minute_ms) AS ts FROM ({rollup});"
        ))
    }

    /// Rewrites a raw partition sorted by (sandbox, time) into a fresh table, rolls it up into
    /// its day's rollup partition and marks it closed.
    fn close_raw(&mut self, conn: &Connection, start_ms: i64) -> duckdb::Result<()> {
        let Some(partition) = self.raw.get(&start_ms).cloned() else {
            return Ok(());
        };
        let name = partition.name;
        self.in_transaction(conn, |this| {
            conn.execute_batch(&format!(
                "CREATE TABLE {name}__sorted AS SELECT * FROM {name} ORDER BY sandbox_id, ts_ms;
                 DROP TABLE {name};
                 ALTER TABLE {name}__sorted RENAME TO {name};"
            ))?;
            let rollup = this.ensure_rollup(conn, day_start(start_ms))?;
            conn.execute_batch(&format!(
                "INSERT INTO {rollup} BY NAME SELECT {} FROM {name}
                 GROUP BY sandbox_id, run_id, minute_ms ORDER BY sandbox_id, minute_ms",
                rollup_select_list()
            ))?;
            conn.execute(
                "UPDATE series_partitions SET closed = true WHERE name = ?",
                params![name],
            )?;
            if let Some(p) = this.raw.get_mut(&start_ms) {
                p.closed = true;
            }
            this.refresh_views(conn)
        })
    }

    /// Whether samples taken at `ts_ms` are already past raw retention.
    pub(crate) fn expired_raw(ts_ms: i64, now_ms: i64, retention: &RetentionConfig) -> bool {
        hour_start(ts_ms) + HOUR_MS <= now_ms.saturating_sub(duration_ms(retention.raw))
    }

    /// Closes raw partitions whose hour (plus grace) is over, drops expired partitions, and
    /// checkpoints when anything was dropped so the freed blocks are reused.
    pub(crate) fn maintain(
        &mut self,
        conn: &Connection,
        now_ms: i64,
        retention: &RetentionConfig,
    ) -> duckdb::Result<Maintenance> {
        let mut done = Maintenance::default();
        let to_close: Vec<i64> = self
            .raw
            .iter()
            .filter(|(start, p)| !p.closed && *start + HOUR_MS + CLOSE_GRACE_MS <= now_ms)
            .map(|(start, _)| *start)
            .collect();
        for start in to_close {
            self.close_raw(conn, start)?;
            done.closed += 1;
        }
        let raw_cutoff = now_ms.saturating_sub(duration_ms(retention.raw));
        let rollup_cutoff = now_ms.saturating_sub(duration_ms(retention.rollup));
        let raw_expired: Vec<i64> = self
            .raw
            .keys()
            .filter(|start| *start + HOUR_MS <= raw_cutoff)
            .copied()
            .collect();
        let rollup_expired: Vec<i64> = self
            .rollup
            .keys()
            .filter(|start| *start + DAY_MS <= rollup_cutoff)
            .copied()
            .collect();
        if raw_expired.is_empty() && rollup_expired.is_empty() {
            return Ok(done);
        }
        self.in_transaction(conn, |this| {
            for start in &raw_expired {
                if let Some(p) = this.raw.remove(start) {
                    drop_partition(conn, &p.name)?;
                }
            }
            for start in &rollup_expired {
                if let Some(name) = this.rollup.remove(start) {
                    drop_partition(conn, &name)?;
                }
            }
            this.refresh_views(conn)
        })?;
        done.dropped = raw_expired.len() + rollup_expired.len();
        if let Err(error) = conn.execute_batch("CHECKPOINT") {
            tracing::warn!(%error, "checkpoint after dropping partitions failed; DuckDB retries on its own");
        }
        Ok(done)
    }
}

fn drop_partition(conn: &Connection, name: &str) -> duckdb::Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {name}"))?;
    conn.execute(
        "DELETE FROM series_partitions WHERE name = ?",
        params![name],
    )?;
    Ok(())
}
