//! History and fleet queries, and Parquet export, over the `samples` and `samples_1m` views.
//!
//! Both queries normalise raw rows and rollup rows into one shape (sums and counts for gauges,
//! consecutive differences for counters) and aggregate that once, so a step that straddles the
//! raw/rollup boundary is still one point. Raw data serves everything from the oldest live raw
//! partition on; rollups serve what is older. Counter rates come from differences between
//! consecutive samples *of the same run* (`lag() OVER (PARTITION BY run_id ...)`), so a restart,
//! which starts counters again from zero, never yields a negative rate; a difference that is
//! negative anyway (a source reset) counts as zero.

use std::path::Path;

use duckdb::{params, OptionalExt};

use super::{counters, gauges, SeriesError};
use crate::Store;

/// How far before the window the queries look for the previous sample of each run.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// One step of one sandbox's history. Gauges are averages over the step (`None` when no sample
/// in the step had the value); counters are per-second rates over the step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryPoint {
    /// Start of the step, ms since the Unix epoch (aligned to a multiple of the step).
    pub ts_ms: i64,
    /// Raw samples behind this point.
    pub samples: u64,
    pub cpu_percent: Option<f64>,
    pub cpu_percent_max: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub memory_bytes_max: Option<f64>,
    pub memory_available_bytes: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    pub memory_host_resident_bytes: Option<f64>,
    pub upper_used_bytes: Option<f64>,
    pub upper_free_bytes: Option<f64>,
    pub upper_host_allocated_bytes: Option<f64>,
    pub processes: Option<f64>,
    pub heartbeat_age_ms: Option<f64>,
    pub active_sessions: Option<f64>,
    /// CPU nanoseconds per second (1e9 = one core busy).
    pub vcpu_time_ns_per_sec: Option<f64>,
    pub disk_read_bytes_per_sec: Option<f64>,
    pub disk_write_bytes_per_sec: Option<f64>,
    pub net_rx_bytes_per_sec: Option<f64>,
    pub net_tx_bytes_per_sec: Option<f64>,
    pub net_rx_packets_per_sec: Option<f64>,
    pub net_tx_packets_per_sec: Option<f64>,
    pub heartbeat_seq_per_sec: Option<f64>,
}

/// One step over all sandboxes: each sandbox's average over the step, summed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FleetPoint {
    pub ts_ms: i64,
    /// Sandboxes with at least one sample in the step.
    pub sandboxes: u64,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub memory_host_resident_bytes: Option<f64>,
}

fn check_window(since_ms: i64, until_ms: i64, step_ms: i64) -> Result<(), SeriesError> {
    if step_ms < 1 || until_ms <= since_ms {
        return Err(SeriesError::BadWindow {
            since_ms,
            until_ms,
            step_ms,
        });
    }
    Ok(())
}

/// Raw rows in the normalised shape, read from `relation`; parameters: sandbox filter value,
/// low, high.
fn raw_rows(relation: &str, sandbox_filter: &str) -> String {
    let mut list = vec![
        "ts_ms".to_owned(),
        "sandbox_id".to_owned(),
        "1 AS n".to_owned(),
    ];
    for g in gauges() {
        let name = g.name;
        list.push(format!("{name}::DOUBLE AS {name}_sum"));
        list.push(format!("({name} IS NOT NULL)::BIGINT AS {name}_n"));
        list.push(format!("{name}::DOUBLE AS {name}_max"));
    }
    for c in counters() {
        let name = c.name;
        list.push(format!(
            "{name}::DOUBLE - lag({name}::DOUBLE) OVER w AS {name}_d"
        ));
    }
    list.push("ts_ms - lag(ts_ms) OVER w AS dt".to_owned());
    format!(
        "SELECT {} FROM {relation} WHERE {sandbox_filter} AND ts_ms >= ? AND ts_ms < ?
         WINDOW w AS (PARTITION BY sandbox_id, run_id ORDER BY ts_ms)",
        list.join(", ")
    )
}

/// Rollup rows in the same shape, read from `relation`.
fn rollup_rows(relation: &str, sandbox_filter: &str) -> String {
    let mut list = vec![
        "minute_ms AS ts_ms".to_owned(),
        "sandbox_id".to_owned(),
        "samples::BIGINT AS n".to_owned(),
    ];
    for g in gauges() {
        let name = g.name;
        list.push(format!("{name}_avg * samples AS {name}_sum"));
        list.push(format!(
            "CASE WHEN {name}_avg IS NULL THEN 0 ELSE samples::BIGINT END AS {name}_n"
        ));
        list.push(format!("{name}_max::DOUBLE AS {name}_max"));
    }
    for c in counters() {
        let name = c.name;
        list.push(format!(
            "{name}::DOUBLE - lag({name}::DOUBLE) OVER w AS {name}_d"
        ));
    }
    list.push("last_ts_ms - lag(last_ts_ms) OVER w AS dt".to_owned());
    format!(
        "SELECT {} FROM {relation} WHERE {sandbox_filter} AND minute_ms >= ? AND minute_ms < ?
         WINDOW w AS (PARTITION BY sandbox_id, run_id ORDER BY minute_ms)",
        list.join(", ")
    )
}

impl Store {
    /// Only the partitions of `kind` that overlap `[from_ms, until_ms)`, as one relation: a
    /// window of an hour reads one or two tables rather than planning and scanning a union of
    /// every live partition. An empty window reads the (empty-result) view.
    fn partitions_relation(
        &self,
        kind: &str,
        view: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<String, SeriesError> {
        let mut statement = self.conn().prepare(
            "SELECT name FROM series_partitions WHERE kind = ? AND start_ms < ? AND end_ms > ? ORDER BY start_ms",
        )?;
        let names = statement
            .query_map(duckdb::params![kind, until_ms, from_ms], |row| {
                row.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Ok(view.to_owned());
        }
        let union: Vec<String> = names
            .iter()
            .map(|name| format!("SELECT * FROM {name}"))
            .collect();
        Ok(format!("({})", union.join(" UNION ALL ")))
    }

    /// Where raw data takes over from rollups. For steps of whole minutes, rollups serve every
    /// closed hour (same averages, maxima and rates, 60× fewer rows); otherwise raw data serves
    /// everything from the oldest live raw partition on.
    fn raw_boundary_ms(&self, step_ms: i64) -> Result<i64, SeriesError> {
        let sql = if step_ms % 60_000 == 0 {
            "SELECT min(start_ms) FROM series_partitions WHERE kind = 'raw' AND NOT closed"
        } else {
            "SELECT min(start_ms) FROM series_partitions WHERE kind = 'raw'"
        };
        let boundary: Option<i64> = self
            .conn()
            .query_row(sql, [], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(boundary.unwrap_or(i64::MAX))
    }

    /// One sandbox's history in `[since_ms, until_ms)`, one point per `step_ms` that has data.
    pub fn history(
        &self,
        sandbox_id: &str,
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<HistoryPoint>, SeriesError> {
        check_window(since_ms, until_ms, step_ms)?;
        let boundary = self.raw_boundary_ms(step_ms)?;
        let raw_from = since_ms.max(boundary);
        let rollup_until = until_ms.min(boundary);
        let mut select = vec![
            format!("ts_ms // {step_ms} * {step_ms} AS bucket"),
            "sum(n)::UBIGINT AS samples".to_owned(),
        ];
        for g in gauges() {
            let name = g.name;
            select.push(format!(
                "sum({name}_sum) / nullif(sum({name}_n), 0) AS {name}"
            ));
        }
        select.push("max(cpu_percent_max) AS cpu_percent_max".to_owned());
        select.push("max(memory_bytes_max) AS memory_bytes_max".to_owned());
        for c in counters() {
            let name = c.name;
            select.push(format!(
                "sum(greatest({name}_d, 0)) * 1000.0
                   / nullif(sum(dt) FILTER (WHERE {name}_d IS NOT NULL), 0) AS {name}_per_sec"
            ));
        }
        let sql = format!(
            "WITH r AS ({raw}), u AS ({rollup}),
                  b AS (SELECT * FROM r WHERE ts_ms >= ? UNION ALL SELECT * FROM u WHERE ts_ms >= ?)
             SELECT {select} FROM b GROUP BY bucket ORDER BY bucket",
            raw = raw_rows(
                &self.partitions_relation(
                    "raw",
                    "samples",
                    raw_from.saturating_sub(LOOKBACK_MS),
                    until_ms
                )?,
                "sandbox_id = ?"
            ),
            rollup = rollup_rows(
                &self.partitions_relation(
                    "rollup",
                    "samples_1m",
                    since_ms.saturating_sub(LOOKBACK_MS),
                    rollup_until
                )?,
                "sandbox_id = ?"
            ),
            select = select.join(", "),
        );
        let mut statement = self.conn().prepare(&sql)?;
        let rows = statement.query_map(
            params![
                sandbox_id,
                raw_from.saturating_sub(LOOKBACK_MS),
                until_ms,
                sandbox_id,
                since_ms.saturating_sub(LOOKBACK_MS),
                rollup_until,
                raw_from,
                since_ms,
            ],
            |row| {
                Ok(HistoryPoint {
                    ts_ms: row.get("bucket")?,
                    samples: row.get("samples")?,
                    cpu_percent: row.get("cpu_percent")?,
                    cpu_percent_max: row.get("cpu_percent_max")?,
                    memory_bytes: row.get("memory_bytes")?,
                    memory_bytes_max: row.get("memory_bytes_max")?,
                    memory_available_bytes: row.get("memory_available_bytes")?,
                    memory_limit_bytes: row.get("memory_limit_bytes")?,
                    memory_host_resident_bytes: row.get("memory_host_resident_bytes")?,
                    upper_used_bytes: row.get("upper_used_bytes")?,
                    upper_free_bytes: row.get("upper_free_bytes")?,
                    upper_host_allocated_bytes: row.get("upper_host_allocated_bytes")?,
                    processes: row.get("processes")?,
                    heartbeat_age_ms: row.get("heartbeat_age_ms")?,
                    active_sessions: row.get("active_sessions")?,
                    vcpu_time_ns_per_sec: row.get("vcpu_time_ns_per_sec")?,
                    disk_read_bytes_per_sec: row.get("disk_read_bytes_per_sec")?,
                    disk_write_bytes_per_sec: row.get("disk_write_bytes_per_sec")?,
                    net_rx_bytes_per_sec: row.get("net_rx_bytes_per_sec")?,
                    net_tx_bytes_per_sec: row.get("net_tx_bytes_per_sec")?,
                    net_rx_packets_per_sec: row.get("net_rx_packets_per_sec")?,
                    net_tx_packets_per_sec: row.get("net_tx_packets_per_sec")?,
                    heartbeat_seq_per_sec: row.get("heartbeat_seq_per_sec")?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All sandboxes per `step_ms` in `[since_ms, until_ms)`: each sandbox's average over the
    /// step, summed, and the number of sandboxes reporting.
    pub fn fleet(
        &self,
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<FleetPoint>, SeriesError> {
        check_window(since_ms, until_ms, step_ms)?;
        let boundary = self.raw_boundary_ms(step_ms)?;
        let raw_from = since_ms.max(boundary);
        let rollup_until = until_ms.min(boundary);
        let shape = |source: &str, ts: &str, weight: &str, suffix: &str| {
            let mut list = vec![format!("{ts} AS ts_ms"), "sandbox_id".to_owned()];
            for name in ["cpu_percent", "memory_bytes", "memory_host_resident_bytes"] {
                list.push(format!("{name}{suffix}::DOUBLE * {weight} AS {name}_sum"));
                list.push(format!(
                    "CASE WHEN {name}{suffix} IS NULL THEN 0 ELSE {weight} END AS {name}_n"
                ));
            }
            format!(
                "SELECT {} FROM {source} WHERE {ts} >= ? AND {ts} < ?",
                list.join(", ")
            )
        };
        let sql = format!(
            "WITH b AS ({raw} UNION ALL {rollup}),
                  per AS (
                    SELECT ts_ms // {step_ms} * {step_ms} AS bucket, sandbox_id,
                           sum(cpu_percent_sum) / nullif(sum(cpu_percent_n), 0) AS cpu,
                           sum(memory_bytes_sum) / nullif(sum(memory_bytes_n), 0) AS mem,
                           sum(memory_host_resident_bytes_sum)
                             / nullif(sum(memory_host_resident_bytes_n), 0) AS rss
                    FROM b GROUP BY bucket, sandbox_id)
             SELECT bucket, count(*)::UBIGINT, sum(cpu), sum(mem), sum(rss)
             FROM per GROUP BY bucket ORDER BY bucket",
            raw = shape(
                &self.partitions_relation("raw", "samples", raw_from, until_ms)?,
                "ts_ms",
                "1",
                ""
            ),
            rollup = shape(
                &self.partitions_relation("rollup", "samples_1m", since_ms, rollup_until)?,
                "minute_ms",
                "samples::BIGINT",
                "_avg"
            ),
        );
        let mut statement = self.conn().prepare(&sql)?;
        let rows =
            statement.query_map(params![raw_from, until_ms, since_ms, rollup_until], |row| {
                Ok(FleetPoint {
                    ts_ms: row.get(0)?,
                    sandboxes: row.get(1)?,
                    cpu_percent: row.get(2)?,
                    memory_bytes: row.get(3)?,
                    memory_host_resident_bytes: row.get(4)?,
                })
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes one sandbox's raw samples in `[since_ms, until_ms)` to a Parquet file (zstd),
    /// ordered by time, with the `samples` view's columns. Returns the number of rows written.
    pub fn export_parquet(
        &self,
        sandbox_id: &str,
        since_ms: i64,
        until_ms: i64,
        path: &Path,
    ) -> Result<u64, SeriesError> {
        check_window(since_ms, until_ms, 1)?;
        let quote = |s: &str| s.replace('\'', "''");
        let target = path.to_str().ok_or_else(|| {
            SeriesError::Refused(format!("{} is not a UTF-8 path", path.display()))
        })?;
        let rows = self.conn().execute(
            &format!(
                "COPY (SELECT * FROM samples WHERE sandbox_id = '{}'
                         AND ts_ms >= {since_ms} AND ts_ms < {until_ms} ORDER BY ts_ms)
                 TO '{}' (FORMAT parquet, COMPRESSION zstd)",
                quote(sandbox_id),
                quote(target)
            ),
            [],
        )?;
        Ok(rows as u64)
    }
}
