//! What msbd exports, as one value, and the two renderings of it: Prometheus text
//! ([`prometheus`]) and an OTLP metrics request ([`otlp`]).
//!
//! msbd gathers a [`Snapshot`] once per scrape or export (`msb-daemon`, `exposition.rs`): the
//! latest sample and attributes of every active sandbox, and the points of its own instruments.
//! Both renderings are pure functions of it, so they are tested here with fixed snapshots,
//! without a daemon, a store or root. A missing value is left out of both, never made zero.

pub mod otlp;
pub mod prometheus;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use msb_metrics::{DaemonInstrument, Sample};

use crate::histogram::HistogramSnapshot;

/// One active sandbox's latest sample and the attributes its series carry.
#[derive(Debug, Clone)]
pub struct SandboxSeries {
    /// `sandbox.name`, `sandbox.id` ([`msb_metrics::SANDBOX_ATTRIBUTES`]), then allow-listed
    /// user labels (OTel attribute names).
    pub attributes: Vec<(String, String)>,
    pub sample: Sample,
}

impl SandboxSeries {
    /// When the run's counters started from zero.
    pub fn run_start(&self) -> SystemTime {
        run_start_of(&self.sample)
    }
}

/// When the run a sample belongs to started: the sample's time less the run's uptime.
pub fn run_start_of(sample: &Sample) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(sample.timestamp_ms)
        - Duration::from_secs_f64(sample.uptime_secs.max(0.0))
}

/// One point of a daemon instrument.
#[derive(Debug, Clone)]
pub enum Value {
    Number(f64),
    Histogram(HistogramSnapshot),
}

#[derive(Debug, Clone)]
pub struct Point {
    pub attributes: Vec<(String, String)>,
    pub value: Value,
}

/// A daemon instrument's points; `start` is when its counters or histograms began.
#[derive(Debug, Clone)]
pub struct Family {
    pub instrument: &'static DaemonInstrument,
    pub start: SystemTime,
    pub points: Vec<Point>,
}

/// Everything one scrape or export renders.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub sandboxes: Vec<SandboxSeries>,
    /// msbd's and the host's instruments, in registry order; one without points is left out.
    pub daemon: Vec<Family>,
    /// When the snapshot was taken (the time of the daemon instruments' points).
    pub taken: SystemTime,
}

/// The declared daemon instrument called `name`. Panics on an undeclared name: gathering code
/// may only emit what the registry declares.
pub fn daemon_instrument(name: &str) -> &'static DaemonInstrument {
    msb_metrics::DAEMON_INSTRUMENTS
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} is not declared in the registry"))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use msb_metrics::{Number, ValueType, INSTRUMENTS};

    /// Two sandboxes: `web` with every field set (and a user label), `idle` with only uptime
    /// (every optional source missing); two daemon families, one a histogram.
    pub fn snapshot() -> Snapshot {
        let mut full = Sample {
            sandbox_id: "id-web".into(),
            run_id: "run-1".into(),
            timestamp_ms: 1_700_000_010_000,
            ..Sample::default()
        };
        for (n, i) in INSTRUMENTS.iter().enumerate() {
            let value = match i.value_type {
                ValueType::U64 => Number::U64(1000 + n as u64),
                ValueType::F64 => Number::F64(10.0 + n as f64),
            };
            (i.set)(&mut full, Some(value));
        }
        full.uptime_secs = 10.0;
        let idle = Sample {
            sandbox_id: "id-idle".into(),
            run_id: "run-2".into(),
            timestamp_ms: 1_700_000_010_000,
            uptime_secs: 2.5,
            ..Sample::default()
        };
        let histogram = crate::histogram::Histogram::new(&[0.01, 0.1]);
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_secs(1));
        Snapshot {
            sandboxes: vec![
                SandboxSeries {
                    attributes: vec![
                        ("sandbox.name".into(), "web".into()),
                        ("sandbox.id".into(), "id-web".into()),
                        ("team".into(), "a\"b".into()),
                    ],
                    sample: full,
                },
                SandboxSeries {
                    attributes: vec![
                        ("sandbox.name".into(), "idle".into()),
                        ("sandbox.id".into(), "id-idle".into()),
                    ],
                    sample: idle,
                },
            ],
            daemon: vec![
                Family {
                    instrument: daemon_instrument("msb.sandbox.runs.ended"),
                    start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                    points: vec![Point {
                        attributes: vec![("reason".into(), "oom_kill".into())],
                        value: Value::Number(2.0),
                    }],
                },
                Family {
                    instrument: daemon_instrument("msb.exec.latency"),
                    start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                    points: vec![Point {
                        attributes: Vec::new(),
                        value: Value::Histogram(histogram.snapshot()),
                    }],
                },
            ],
            taken: UNIX_EPOCH + Duration::from_secs(1_700_000_011),
        }
    }
}
