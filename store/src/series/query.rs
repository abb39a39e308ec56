//! The fleet query, the last stored sample of a run, and what the history query ([`super::history`]) shares.
//!
//! The fleet query normalises raw rows and rollup rows into one shape (sums and counts of the
//! gauges) and aggregates that once, so a step that straddles the raw/rollup boundary is still
//! one point. Raw data serves everything from the raw boundary on ([`raw_boundary_ms`]); rollups
//! serve what is older.

use duckdb::params;

use super::cache::PartitionRow;
use super::SeriesError;
use crate::Store;

/// How far before the window the queries look for the previous sample of each run.
pub(super) const LOOKBACK_MS: i64 = 5 * 60 * 1000;

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

/// Steps a default may take, in ms: round numbers a reader can think in.
const NICE_STEPS_MS: &[i64] = &[
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
];

/// Points a default step aims at: at most this many.
pub const DEFAULT_POINTS_MAX: i64 = 300;

/// The step a history query takes when none is given: the smallest round step that gives at most
/// [`DEFAULT_POINTS_MAX`] points over the window (so between about 100 and 300), but never finer
/// than the sampling interval `interval_ms`, so that a short window returns the raw samples one
/// per point.
pub fn default_step_ms(window_ms: i64, interval_ms: i64) -> i64 {
    let wanted = ((window_ms.max(0) + DEFAULT_POINTS_MAX - 1) / DEFAULT_POINTS_MAX).max(1);
    let step = NICE_STEPS_MS
        .iter()
        .copied()
        .find(|s| *s >= wanted)
        .unwrap_or_else(|| (wanted + 86_400_000 - 1) / 86_400_000 * 86_400_000);
    step.max(interval_ms)
}

pub(super) fn check_window(since_ms: i64, until_ms: i64, step_ms: i64) -> Result<(), SeriesError> {
    if step_ms < 1 || until_ms <= since_ms {
        return Err(SeriesError::BadWindow {
            since_ms,
            until_ms,
            step_ms,
        });
    }
    Ok(())
}

/// Where raw data takes over from rollups. For steps of whole minutes, rollups serve every
/// closed hour (same averages, maxima and rates, 60× fewer rows); otherwise raw data serves
/// everything from the oldest live raw partition on.
pub(super) fn raw_boundary_ms(partitions: &[PartitionRow], step_ms: i64) -> i64 {
    let whole_minutes = step_ms % 60_000 == 0;
    partitions
        .iter()
        .filter(|p| p.raw && !(whole_minutes && p.closed))
        .map(|p| p.start_ms)
        .min()
        .unwrap_or(i64::MAX)
}

/// Only the partitions of one kind that overlap `[from_ms, until_ms)`, as one relation: a window
/// of an hour reads one hour's tables rather than planning and scanning a union of every live
/// partition. An empty window reads the (empty-result) view.
fn partitions_relation(
    partitions: &[PartitionRow],
    raw: bool,
    from_ms: i64,
    until_ms: i64,
) -> String {
    let union: Vec<String> = partitions
        .iter()
        .filter(|p| p.raw == raw && p.overlaps(from_ms, until_ms))
        .map(|p| format!("SELECT * FROM {}", p.name))
        .collect();
    match (union.is_empty(), raw) {
        (true, true) => "samples".to_owned(),
        (true, false) => "samples_1m".to_owned(),
        (false, _) => format!("({})", union.join(" UNION ALL ")),
    }
}

impl Store {
    /// All sandboxes per `step_ms` in `[since_ms, until_ms)`: each sandbox's average over the
    /// step, summed, and the number of sandboxes reporting.
    pub fn fleet(
        &self,
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<FleetPoint>, SeriesError> {
        check_window(since_ms, until_ms, step_ms)?;
        let partitions = self.series_cache().partitions(self.conn())?;
        let boundary = raw_boundary_ms(&partitions, step_ms);
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
                &partitions_relation(&partitions, true, raw_from, until_ms),
                "ts_ms",
                "1",
                ""
            ),
            rollup = shape(
                &partitions_relation(&partitions, false, since_ms, rollup_until),
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

    /// The time of the latest sample of run `run_id` of `sandbox_id` in the store taken at or
    /// after `since_ms`. msbd asks once per run it reattaches to, before it takes in the
    /// samples the supervisor sends again: any of them taken at or before this time is already
    /// stored (a run's sample times strictly increase, and samples are committed in order).
    pub fn last_sample_ms(
        &self,
        sandbox_id: &str,
        run_id: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, SeriesError> {
        let partitions = self.series_cache().partitions(self.conn())?;
        let relation = partitions_relation(&partitions, true, since_ms, i64::MAX);
        let mut statement = self.conn().prepare_cached(&format!(
            "SELECT max(ts_ms) FROM {relation} WHERE sandbox_id = ? AND run_id = ? AND ts_ms >= ?"
        ))?;
        Ok(statement.query_row(params![sandbox_id, run_id, since_ms], |row| row.get(0))?)
    }
}
