//! What msbd exports, gathered once per scrape or export into one
//! [`msb_telemetry::exposition::Snapshot`], which each exporter renders (Prometheus text,
//! OTLP protobuf: pure functions in `msb-telemetry`).
//!
//! Per-sandbox values come from the latest samples of active sandboxes (a removed or ended
//! sandbox has no series); msbd's and the host's come from [`super::telemetry::Telemetry`],
//! the catalog and the capacity report. A missing value is left out, never made zero.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use msb_metrics::BOOT_PHASES;
use msb_runtime::lifecycle::{SandboxStatus, END_CAUSES};
use msb_store::SandboxRow;
use msb_telemetry::exposition::{
    daemon_instrument, run_start_of, Family, Point, SandboxSeries, Snapshot, Value,
};

use super::live::{state_of, Latest, MetricsState};
use super::state::Daemon;

/// An active sandbox with a sample, and the attributes its series carry.
#[derive(Debug)]
pub struct LiveSandbox<'a> {
    pub row: &'a SandboxRow,
    pub latest: Latest,
    /// `sandbox.name`, `sandbox.id` ([`msb_metrics::SANDBOX_ATTRIBUTES`]), then allow-listed
    /// user labels (OTel attribute names).
    pub attributes: Vec<(String, String)>,
}

/// Everything one scrape or export renders, gathered now.
pub fn snapshot(daemon: &Daemon) -> Result<Snapshot, String> {
    let rows = daemon.store().list_sandboxes().map_err(|e| e.to_string())?;
    let live = live_sandboxes(daemon, &rows);
    let families = daemon_families(daemon, &rows, &live);
    Ok(Snapshot {
        sandboxes: live
            .into_iter()
            .map(|s| SandboxSeries {
                attributes: s.attributes,
                sample: s.latest.sample,
            })
            .collect(),
        daemon: families,
        taken: SystemTime::now(),
    })
}

/// Active sandboxes that have a latest sample, with their attributes.
pub fn live_sandboxes<'a>(daemon: &Daemon, rows: &'a [SandboxRow]) -> Vec<LiveSandbox<'a>> {
    // User labels exported as attributes: none by default, since every distinct value is a
    // new series (`MSB_PROMETHEUS_LABELS` or `msbd.toml`).
    let allowed = &daemon.config.prometheus_labels;
    rows.iter()
        .filter(|row| {
            row.status
                .parse::<SandboxStatus>()
                .is_ok_and(|s| s.is_active())
        })
        .filter_map(|row| {
            let latest = daemon.live.get(&row.id)?;
            let mut attributes = vec![
                ("sandbox.name".to_owned(), row.name.clone()),
                ("sandbox.id".to_owned(), row.id.clone()),
            ];
            for key in allowed {
                if let Some(value) = row.labels.get(key) {
                    attributes.push((key.clone(), value.clone()));
                }
            }
            Some(LiveSandbox {
                row,
                latest,
                attributes,
            })
        })
        .collect()
}

fn point(attributes: &[(&str, String)], value: f64) -> Point {
    Point {
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        value: Value::Number(value),
    }
}

/// msbd's and the host's instruments, in registry order; an instrument without points (an
/// exporter that is not configured, a source that is missing) is left out.
pub fn daemon_families(daemon: &Daemon, rows: &[SandboxRow], live: &[LiveSandbox]) -> Vec<Family> {
    let telemetry = &daemon.telemetry;
    let mut families: Vec<Family> = Vec::new();
    let mut add = |name: &str, start: SystemTime, points: Vec<Point>| {
        if !points.is_empty() {
            families.push(Family {
                instrument: daemon_instrument(name),
                start,
                points,
            });
        }
    };
    let started = telemetry.started;
    add(
        "msb.sandboxes",
        started,
        SandboxStatus::ALL
            .iter()
            .map(|status| {
                let count = rows.iter().filter(|r| r.status == status.as_str()).count();
                point(&[("status", status.to_string())], count as f64)
            })
            .collect(),
    );
    if let Ok(capacity) = super::service::capacity::capacity_of(daemon, rows) {
        add(
            "msb.host.cpus",
            started,
            vec![point(&[], capacity.host_cpus as f64)],
        );
        add(
            "msb.cpus.committed",
            started,
            vec![point(&[], capacity.cpus_committed)],
        );
        if let Some(bytes) = capacity.host_memory_bytes {
            add("msb.host.memory", started, vec![point(&[], bytes as f64)]);
        }
        if let Some(bytes) = capacity.host_memory_available_bytes {
            add(
                "msb.host.memory.available",
                started,
                vec![point(&[], bytes as f64)],
            );
        }
        add(
            "msb.memory.committed",
            started,
            vec![point(&[], capacity.memory_committed_bytes as f64)],
        );
    }
    add(
        "msb.supervisors.warm",
        started,
        vec![point(&[], daemon.warm.idle() as f64)],
    );
    add(
        "msb.sandbox.runs.ended",
        started,
        END_CAUSES
            .iter()
            .zip(&telemetry.runs_ended)
            .map(|(cause, count)| {
                point(
                    &[("reason", (*cause).to_owned())],
                    count.load(Ordering::Relaxed) as f64,
                )
            })
            .collect(),
    );
    add("msb.sandbox.starts", started, {
        // Disjoint paths: a booted start is a warm one too in msbd's counts.
        let booted = daemon.warm.booted_starts.load(Ordering::Relaxed);
        let warm = daemon.warm.warm_starts.load(Ordering::Relaxed);
        let cold = daemon.warm.cold_starts.load(Ordering::Relaxed);
        [
            ("booted", booted),
            ("warm", warm.saturating_sub(booted)),
            ("cold", cold),
        ]
        .into_iter()
        .map(|(path, count)| point(&[("path", path.to_owned())], count as f64))
        .collect()
    });
    if let Ok(meta) = std::fs::metadata(daemon.home.database()) {
        add(
            "msb.store.size",
            started,
            vec![point(&[], meta.len() as f64)],
        );
    }
    // A sandbox's identity without its user labels.
    let identity = |s: &LiveSandbox| s.attributes[..msb_metrics::SANDBOX_ATTRIBUTES.len()].to_vec();
    add(
        "msb.sandbox.sample_age",
        started,
        live.iter()
            .map(|s| Point {
                attributes: identity(s),
                value: Value::Number(s.latest.received.elapsed().as_secs_f64()),
            })
            .collect(),
    );
    add(
        "msb.sandbox.stalled",
        started,
        live.iter()
            .map(|s| {
                let stalled = state_of(&s.latest, true) == MetricsState::Stalled;
                Point {
                    attributes: identity(s),
                    value: Value::Number(if stalled { 1.0 } else { 0.0 }),
                }
            })
            .collect(),
    );
    add(
        "msb.sandbox.filesystem.operation.duration",
        started,
        live.iter()
            .filter_map(|s| {
                let latency = s.latest.sample.fs_op_latency.as_ref()?;
                Some(Point {
                    attributes: identity(s),
                    value: Value::Histogram(fs_latency(latency, run_start_of(&s.latest.sample))),
                })
            })
            .collect(),
    );
    // Each file-server mount's quota ledger, told apart by its path in the sandbox.
    type Pick = fn(&msb_metrics::MountQuota) -> Option<u64>;
    let quotas: [(&str, Pick); 3] = [
        ("msb.sandbox.mount.quota.used", |m| Some(m.used_bytes)),
        ("msb.sandbox.mount.quota.limit", |m| m.limit_bytes),
        ("msb.sandbox.mount.quota.baseline", |m| m.baseline_bytes),
    ];
    for (name, pick) in quotas {
        add(
            name,
            started,
            live.iter()
                .flat_map(|s| {
                    s.latest.sample.fs_mounts.iter().filter_map(move |mount| {
                        let mut attributes = identity(s);
                        attributes.push(("msb.mount".to_owned(), mount.guest.clone()));
                        Some(Point {
                            attributes,
                            value: Value::Number(pick(mount)? as f64),
                        })
                    })
                })
                .collect(),
        );
    }
    add(
        "msb.sampler.cpu",
        started,
        vec![point(
            &[],
            telemetry.sampler_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
        )],
    );
    add(
        "msb.sampler.samples",
        started,
        vec![point(&[], telemetry.samples.load(Ordering::Relaxed) as f64)],
    );
    add(
        "msb.sandbox.boot.duration",
        started,
        BOOT_PHASES
            .iter()
            .zip(&telemetry.boot)
            .map(|(phase, histogram)| Point {
                attributes: vec![("phase".to_owned(), (*phase).to_owned())],
                value: Value::Histogram(histogram.snapshot()),
            })
            .collect(),
    );
    add(
        "msb.exec.latency",
        started,
        vec![Point {
            attributes: Vec::new(),
            value: Value::Histogram(telemetry.exec_latency.snapshot()),
        }],
    );
    let exporters = [&telemetry.metrics_exporter, &telemetry.traces_exporter];
    let exporters: Vec<_> = exporters.into_iter().flatten().collect();
    add(
        "msb.otlp.exports",
        started,
        exporters
            .iter()
            .flat_map(|e| {
                let signal = e.signal.as_str().to_owned();
                let stats = e.stats();
                [
                    point(
                        &[("signal", signal.clone()), ("result", "success".into())],
                        stats.succeeded.load(Ordering::Relaxed) as f64,
                    ),
                    point(
                        &[("signal", signal), ("result", "failure".into())],
                        stats.failed.load(Ordering::Relaxed) as f64,
                    ),
                ]
            })
            .collect(),
    );
    add(
        "msb.otlp.dropped",
        started,
        exporters
            .iter()
            .map(|e| {
                point(
                    &[("signal", e.signal.as_str().to_owned())],
                    e.stats().dropped.load(Ordering::Relaxed) as f64,
                )
            })
            .collect(),
    );
    add(
        "msb.otlp.last_success_timestamp",
        started,
        exporters
            .iter()
            .filter_map(|e| {
                let ms = e.stats().last_success_ms.load(Ordering::Relaxed);
                (ms > 0)
                    .then(|| point(&[("signal", e.signal.as_str().to_owned())], ms as f64 / 1e3))
            })
            .collect(),
    );
    families
}

/// A sample's file-server latency histogram as an exported one (the run's start is its start).
fn fs_latency(
    latency: &msb_metrics::LatencyHistogram,
    start: SystemTime,
) -> msb_telemetry::histogram::HistogramSnapshot {
    msb_telemetry::histogram::HistogramSnapshot {
        bounds: msb_metrics::FS_LATENCY_BUCKETS,
        counts: latency.counts.clone(),
        count: latency.counts.iter().sum(),
        sum_secs: latency.sum_us as f64 / 1e6,
        start,
    }
}
