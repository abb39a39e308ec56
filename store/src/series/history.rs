//! One sandbox's history: DuckDB reads the rows, this module aggregates them.
//!
//! A history query touches a few thousand rows (an hour at 1 s is 3,600), so what costs is not
//! the arithmetic but getting DuckDB to do it: as one SQL statement (normalise, `lag()` window,
//! group by step) it took 4 ms to prepare, 5-8 ms to bind and optimise again on every execution
//! (DuckDB re-plans a statement once it knows the parameter values) and 8 ms in the window and
//! hash aggregate. Here each table is read with a small cached statement that selects only the
//! needed columns of one sandbox ([`super::readings`]), and the rows are aggregated in Rust
//! (ADR 004).
//!
//! The result is the one that SQL statement gave (a test keeps it as the reference): raw rows and
//! rollup rows are normalised to one shape (gauge sum, count and maximum; counter difference to the previous
//! reading *of the same run* of the same resolution; elapsed ms) and summed per step, with rates
//! `sum(max(diff, 0)) / sum(elapsed)` over readings that have a difference, so a restart never
//! gives a negative rate. Raw data serves from the raw boundary on, rollups serve what is older;
//! readings from [`LOOKBACK_MS`] before the window only provide the first differences.

use std::collections::BTreeMap;

use super::query::{check_window, raw_boundary_ms, LOOKBACK_MS};
use super::readings::{Reading, Resolution, Runs, COUNTERS, CPU, GAUGES, MEMORY};
use super::SeriesError;
use crate::Store;

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

/// What the readings of one step add up to.
#[derive(Debug, Default)]
struct Step {
    samples: u64,
    gauge_sum: [f64; GAUGES.len()],
    gauge_count: [u64; GAUGES.len()],
    cpu_percent_max: Option<f64>,
    memory_bytes_max: Option<f64>,
    /// Sum of positive differences, and of the elapsed ms, over readings with a difference.
    rate_sum: [f64; COUNTERS.len()],
    rate_ms: [i64; COUNTERS.len()],
    rate_readings: [u64; COUNTERS.len()],
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Step {
    fn add(&mut self, reading: &Reading, diffs: &[Option<f64>; COUNTERS.len()], elapsed: i64) {
        self.samples += reading.samples;
        let weight = reading.samples as f64;
        for (i, value) in reading.gauges.iter().enumerate() {
            if let Some(value) = value {
                self.gauge_sum[i] += value * weight;
                self.gauge_count[i] += reading.samples;
            }
        }
        self.cpu_percent_max = max(self.cpu_percent_max, reading.cpu_percent_max);
        self.memory_bytes_max = max(self.memory_bytes_max, reading.memory_bytes_max);
        for (i, diff) in diffs.iter().enumerate() {
            if let Some(diff) = diff {
                self.rate_sum[i] += diff.max(0.0);
                self.rate_ms[i] += elapsed;
                self.rate_readings[i] += 1;
            }
        }
    }

    fn point(&self, ts_ms: i64) -> HistoryPoint {
        let gauge = |i: usize| {
            (self.gauge_count[i] > 0).then(|| self.gauge_sum[i] / self.gauge_count[i] as f64)
        };
        let rate = |i: usize| {
            (self.rate_readings[i] > 0 && self.rate_ms[i] != 0)
                .then(|| self.rate_sum[i] * 1000.0 / self.rate_ms[i] as f64)
        };
        HistoryPoint {
            ts_ms,
            samples: self.samples,
            cpu_percent: gauge(CPU),
            cpu_percent_max: self.cpu_percent_max,
            memory_bytes: gauge(MEMORY),
            memory_bytes_max: self.memory_bytes_max,
            memory_available_bytes: gauge(2),
            memory_limit_bytes: gauge(3),
            memory_host_resident_bytes: gauge(4),
            upper_used_bytes: gauge(5),
            upper_free_bytes: gauge(6),
            upper_host_allocated_bytes: gauge(7),
            processes: gauge(8),
            heartbeat_age_ms: gauge(9),
            active_sessions: gauge(10),
            vcpu_time_ns_per_sec: rate(0),
            disk_read_bytes_per_sec: rate(1),
            disk_write_bytes_per_sec: rate(2),
            net_rx_bytes_per_sec: rate(3),
            net_tx_bytes_per_sec: rate(4),
            net_rx_packets_per_sec: rate(5),
            net_tx_packets_per_sec: rate(6),
            heartbeat_seq_per_sec: rate(7),
        }
    }
}

impl Store {
    /// One sandbox's history in `[since_ms, until_ms)`, one point per `step_ms` that has data.
    pub fn history(
        &self,
        sandbox_id: &str,
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<HistoryPoint>, SeriesError> {
        check_window(since_ms, until_ms, step_ms)?;
        let partitions = self.series_cache().partitions(self.conn())?;
        let boundary = raw_boundary_ms(&partitions, step_ms);
        let raw_from = since_ms.max(boundary);
        let rollup_until = until_ms.min(boundary);
        let mut runs = Runs::default();
        let mut steps: BTreeMap<i64, Step> = BTreeMap::new();
        // Rollup minutes count from `since_ms` up to the boundary; raw samples from the boundary.
        let sources = [
            (Resolution::Rollup, since_ms, rollup_until),
            (Resolution::Raw, raw_from, until_ms),
        ];
        for (resolution, keep_from, until) in sources {
            if until <= keep_from {
                continue;
            }
            let from = keep_from.saturating_sub(LOOKBACK_MS);
            let raw = resolution == Resolution::Raw;
            let mut readings = Vec::new();
            for table in partitions
                .iter()
                .filter(|p| p.raw == raw && p.overlaps(from, until))
            {
                self.read_table(
                    table,
                    resolution,
                    sandbox_id,
                    (from, until),
                    &mut runs,
                    &mut readings,
                )?;
            }
            accumulate(&mut readings, runs.len(), keep_from, step_ms, &mut steps);
        }
        Ok(steps
            .iter()
            .map(|(bucket, step)| step.point(*bucket))
            .collect())
    }
}

/// Takes each reading's differences to the previous reading of its run and adds the readings
/// from `keep_from` on to their steps.
fn accumulate(
    readings: &mut [Reading],
    run_count: usize,
    keep_from: i64,
    step_ms: i64,
    steps: &mut BTreeMap<i64, Step>,
) {
    readings.sort_by_key(|r| r.ts_ms);
    let mut previous: Vec<Option<(i64, [Option<f64>; COUNTERS.len()])>> = vec![None; run_count];
    for reading in readings.iter() {
        let (diffs, elapsed) = match previous[reading.run] {
            Some((clock, counters)) => (
                std::array::from_fn(|i| match (reading.counters[i], counters[i]) {
                    (Some(now), Some(before)) => Some(now - before),
                    _ => None,
                }),
                reading.clock_ms - clock,
            ),
            None => ([None; COUNTERS.len()], 0),
        };
        previous[reading.run] = Some((reading.clock_ms, reading.counters));
        if reading.ts_ms >= keep_from {
            steps
                .entry(reading.ts_ms / step_ms * step_ms)
                .or_default()
                .add(reading, &diffs, elapsed);
        }
    }
}
