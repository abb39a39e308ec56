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
use super::readings::{Reading, Resolution, Runs, COUNTERS, GAUGES, MAXED};
use super::SeriesError;
use crate::Store;

/// One step of one sandbox's history. Gauges are averages over the step (`None` when no sample
/// in the step had the value); counters are per-second rates over the step. Which fields are
/// which comes from the instrument declaration (`msb_metrics::INSTRUMENTS`); it serialises as
/// one flat object: `ts_ms`, `samples`, each gauge (and `<gauge>_max` where declared), then each
/// counter's `<counter>_per_sec`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    /// Start of the step, ms since the Unix epoch (aligned to a multiple of the step).
    pub ts_ms: i64,
    /// Raw samples behind this point.
    pub samples: u64,
    /// In [`GAUGES`] order.
    pub gauges: [Option<f64>; GAUGES.len()],
    /// In [`MAXED`] order.
    pub maxima: [Option<f64>; MAXED.len()],
    /// Per second, in [`COUNTERS`] order (`vcpu_time_ns`: CPU nanoseconds per second).
    pub rates: [Option<f64>; COUNTERS.len()],
}

impl HistoryPoint {
    /// The step's average of gauge `field`.
    pub fn gauge(&self, field: &str) -> Option<f64> {
        GAUGES
            .iter()
            .position(|g| *g == field)
            .and_then(|i| self.gauges[i])
    }

    /// The step's maximum of `field` (declared with a maximum).
    pub fn max(&self, field: &str) -> Option<f64> {
        MAXED
            .iter()
            .position(|g| *g == field)
            .and_then(|i| self.maxima[i])
    }

    /// The per-second rate of counter `field` over the step.
    pub fn rate(&self, field: &str) -> Option<f64> {
        COUNTERS
            .iter()
            .position(|c| *c == field)
            .and_then(|i| self.rates[i])
    }
}

/// The keys of the maxima (`<gauge>_max`, in [`MAXED`] order) and rates (`<counter>_per_sec`,
/// in [`COUNTERS`] order); gauges are keyed by their field. Built once.
static KEYS: std::sync::LazyLock<(Vec<String>, Vec<String>)> = std::sync::LazyLock::new(|| {
    (
        MAXED.iter().map(|g| format!("{g}_max")).collect(),
        COUNTERS.iter().map(|c| format!("{c}_per_sec")).collect(),
    )
});

impl serde::Serialize for HistoryPoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (max_keys, rate_keys) = &*KEYS;
        let len = 2 + GAUGES.len() + MAXED.len() + COUNTERS.len();
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("ts_ms", &self.ts_ms)?;
        map.serialize_entry("samples", &self.samples)?;
        for (gauge, value) in GAUGES.iter().zip(&self.gauges) {
            map.serialize_entry(gauge, value)?;
            if let Some(m) = MAXED.iter().position(|g| g == gauge) {
                map.serialize_entry(&max_keys[m], &self.maxima[m])?;
            }
        }
        for (key, value) in rate_keys.iter().zip(&self.rates) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// What the readings of one step add up to.
#[derive(Debug)]
struct Step {
    samples: u64,
    gauge_sum: [f64; GAUGES.len()],
    gauge_count: [u64; GAUGES.len()],
    maxima: [Option<f64>; MAXED.len()],
    /// Sum of positive differences, and of the elapsed ms, over readings with a difference.
    rate_sum: [f64; COUNTERS.len()],
    rate_ms: [i64; COUNTERS.len()],
    rate_readings: [u64; COUNTERS.len()],
}

// By hand: arrays longer than 32 have no `Default`.
impl Default for Step {
    fn default() -> Self {
        Step {
            samples: 0,
            gauge_sum: [0.0; GAUGES.len()],
            gauge_count: [0; GAUGES.len()],
            maxima: [None; MAXED.len()],
            rate_sum: [0.0; COUNTERS.len()],
            rate_ms: [0; COUNTERS.len()],
            rate_readings: [0; COUNTERS.len()],
        }
    }
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
        for (mine, theirs) in self.maxima.iter_mut().zip(reading.maxima) {
            *mine = max(*mine, theirs);
        }
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
            gauges: std::array::from_fn(gauge),
            maxima: self.maxima,
            rates: std::array::from_fn(rate),
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
