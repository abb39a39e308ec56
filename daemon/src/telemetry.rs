//! msbd's own instruments (samplers' cost, boot and exec latencies, export health) and the
//! OTLP exporters: started once at daemon start from the `OTEL_*` environment.
//!
//! Boot spans: `start_run` registers each new run with the trace context of the request that
//! started it; when the run record first shows the workload running, [`Telemetry::boot_done`]
//! emits one span per boot phase under that context (their start and end times measured by the
//! supervisor) and feeds the boot-phase histograms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use msb_metrics::{BOOT_PHASES, LATENCY_BUCKETS};
use msb_runtime::lifecycle::END_CAUSES;
use msb_runtime::run_record::RunRecord;
use msb_telemetry::histogram::Histogram;
use msb_telemetry::otlp::{Exporter, OtlpConfig};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

/// How long a spawned run may take to report its boot before msbd stops waiting for it (the
/// start itself gives up after 30 s).
const BOOT_REPORT_WINDOW: Duration = Duration::from_secs(300);

/// A run started by this msbd whose boot has not finished yet.
struct PendingBoot {
    spawned: SystemTime,
    parent: Context,
    sandbox_name: String,
}

pub struct Telemetry {
    pub started: SystemTime,
    /// CPU the samplers spent, summed over every sample received (ns).
    pub sampler_cpu_ns: AtomicU64,
    pub samples: AtomicU64,
    /// Runs ended since msbd started, per entry of [`END_CAUSES`].
    pub runs_ended: [AtomicU64; END_CAUSES.len()],
    /// One histogram per entry of [`BOOT_PHASES`].
    pub boot: Vec<Histogram>,
    pub exec_latency: Histogram,
    pending_boots: Mutex<HashMap<String, PendingBoot>>,
    pub otlp: OtlpConfig,
    pub metrics_exporter: Option<Exporter>,
    pub traces_exporter: Option<Exporter>,
    /// `service.instance.id`: stable for one host and `MSB_HOME`.
    pub instance_id: String,
    pub host_name: String,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Without exporters (tests, and msbd with no OTLP endpoint).
    pub fn new(otlp: OtlpConfig, home: &std::path::Path) -> Telemetry {
        let host_name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Telemetry {
            started: SystemTime::now(),
            sampler_cpu_ns: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            runs_ended: Default::default(),
            boot: BOOT_PHASES
                .iter()
                .map(|_| Histogram::new(LATENCY_BUCKETS))
                .collect(),
            exec_latency: Histogram::new(LATENCY_BUCKETS),
            pending_boots: Mutex::new(HashMap::new()),
            instance_id: format!("{host_name}:{}", home.display()),
            host_name,
            otlp,
            metrics_exporter: None,
            traces_exporter: None,
        }
    }

    /// Counts a run that ended by `cause` (one of [`END_CAUSES`]).
    pub fn run_ended(&self, cause: &str) {
        if let Some(i) = END_CAUSES.iter().position(|c| *c == cause) {
            self.runs_ended[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the configured exporters; needs a Tokio runtime.
    pub fn start_exporters(&mut self) {
        if let Some(config) = self.otlp.metrics.clone() {
            tracing::info!(
                "OTLP metrics to {} ({:?}) every {:?}",
                config.endpoint,
                config.protocol,
                self.otlp.metric_interval
            );
            self.metrics_exporter = Some(Exporter::start(config, self.otlp.queue_bytes));
        }
        if let Some(config) = self.otlp.traces.clone() {
            tracing::info!("OTLP traces to {} ({:?})", config.endpoint, config.protocol);
            self.traces_exporter = Some(Exporter::start(config, self.otlp.queue_bytes));
        }
    }

    /// The OTel resource of everything msbd exports.
    pub fn resource_attributes(&self) -> Vec<(String, String)> {
        let mut attributes: Vec<(String, String)> = vec![
            ("service.name".into(), self.otlp.service_name.clone()),
            ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
            ("service.instance.id".into(), self.instance_id.clone()),
            ("host.name".into(), self.host_name.clone()),
        ];
        for (key, value) in &self.otlp.resource {
            match attributes.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.clone(),
                None => attributes.push((key.clone(), value.clone())),
            }
        }
        attributes
    }

    /// Counts samplers' cost: `previous` is the sandbox's latest sample before this batch.
    pub fn count_samples(
        &self,
        previous: Option<&msb_metrics::Sample>,
        samples: &[msb_metrics::Sample],
    ) {
        let mut last = previous.map(|s| (s.run_id.as_str(), s.sampler_cpu_ns.unwrap_or(0)));
        let mut cpu = 0;
        for sample in samples {
            if let Some(total) = sample.sampler_cpu_ns {
                let base = match last {
                    Some((run, seen)) if run == sample.run_id => seen,
                    _ => 0,
                };
                cpu += total.saturating_sub(base);
                last = Some((sample.run_id.as_str(), total));
            }
        }
        self.samples
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        self.sampler_cpu_ns.fetch_add(cpu, Ordering::Relaxed);
    }

    /// A run this msbd just spawned; its boot is reported when it is running. Boots that never
    /// report (a supervisor that died before writing its record) are forgotten after
    /// [`BOOT_REPORT_WINDOW`], so the map stays small.
    pub fn boot_started(&self, run_id: &str, sandbox_name: &str, spawned: SystemTime) {
        let mut pending = self.pending_boots.lock().unwrap();
        pending.retain(|_, boot| {
            spawned
                .duration_since(boot.spawned)
                .is_ok_and(|age| age < BOOT_REPORT_WINDOW)
        });
        pending.insert(
            run_id.to_owned(),
            PendingBoot {
                spawned,
                parent: tracing_opentelemetry::OpenTelemetrySpanExt::context(
                    &tracing::Span::current(),
                ),
                sandbox_name: sandbox_name.to_owned(),
            },
        );
    }

    /// The run record of a run: once its workload runs (or the run ended), reports its boot.
    pub fn boot_progress(&self, record: &RunRecord) {
        let done = record.boot.workload_us.is_some()
            || record.phase == msb_runtime::run_record::RunPhase::Exited;
        if !done {
            return;
        }
        let pending = self.pending_boots.lock().unwrap().remove(&record.run_id);
        let Some(pending) = pending else {
            return;
        };
        let boot = &record.boot;
        let at = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
        let ends = [
            boot.supervisor_us.map(at),
            boot.sandbox_us.map(at),
            boot.agent_us.map(at),
            boot.workload_us.map(at),
        ];
        let mut phase_start = Some(pending.spawned);
        for (index, end) in ends.iter().enumerate() {
            let (Some(start), Some(end)) = (phase_start, *end) else {
                phase_start = None;
                continue;
            };
            let duration = end.duration_since(start).unwrap_or_default();
            self.boot[index].observe(duration);
            self.phase_span(&pending, BOOT_PHASES[index], start, end);
            phase_start = Some(end);
        }
        if let Some(end) = ends[3] {
            self.boot[4].observe(end.duration_since(pending.spawned).unwrap_or_default());
        }
    }

    fn phase_span(
        &self,
        pending: &PendingBoot,
        phase: &'static str,
        start: SystemTime,
        end: SystemTime,
    ) {
        let Some(tracer) = msb_telemetry::tracer() else {
            return;
        };
        if !pending.parent.span().span_context().is_valid() {
            return;
        }
        let mut span = tracer
            .span_builder(format!("boot.{phase}"))
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("sandbox.name", pending.sandbox_name.clone()),
                KeyValue::new("msb.boot.phase", phase),
            ])
            .start_with_context(tracer, &pending.parent);
        if phase == "workload" {
            // The end of the boot: the sandbox is ready and its command runs.
            span.add_event_with_timestamp("sandbox.ready", end, Vec::new());
        }
        span.end_with_timestamp(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_metrics::Sample;
    use msb_runtime::run_record::{BootTimes, RunPhase};

    fn telemetry() -> Telemetry {
        let otlp = OtlpConfig::from_lookup(|_| None).unwrap();
        Telemetry::new(otlp, std::path::Path::new("/tmp/home"))
    }

    fn sample(run: &str, cost_ns: u64) -> Sample {
        Sample {
            run_id: run.into(),
            sampler_cpu_ns: Some(cost_ns),
            ..Sample::default()
        }
    }

    #[test]
    fn sampler_cost_adds_each_runs_increments_once() {
        let t = telemetry();
        t.count_samples(None, &[sample("r1", 100), sample("r1", 250)]);
        // The next batch continues from the latest sample seen; a new run starts from zero.
        let previous = sample("r1", 250);
        t.count_samples(Some(&previous), &[sample("r1", 300), sample("r2", 40)]);
        assert_eq!(t.sampler_cpu_ns.load(Ordering::Relaxed), 300 + 40);
        assert_eq!(t.samples.load(Ordering::Relaxed), 4);
    }

    fn record(run: &str, boot: BootTimes) -> RunRecord {
        let mut record: RunRecord = serde_json::from_value(serde_json::json!({
            "run_id": run, "supervisor_pid": 1, "supervisor_start_ticks": null, "init_pid": null,
            "workload_pid": null, "phase": "Running", "started_at_ms": 0, "ended_at_ms": null,
            "exit_code": null, "signal": null, "reason": null, "error": null
        }))
        .unwrap();
        record.boot = boot;
        record
    }

    #[test]
    fn a_boot_is_reported_once_with_each_phase() {
        let t = telemetry();
        let spawned = UNIX_EPOCH + Duration::from_secs(1000);
        t.boot_started("r1", "web", spawned);
        let us = |ms: u64| Some(1_000_000_000 + ms * 1000);
        let mut r = record("r1", BootTimes::default());
        r.boot.supervisor_us = us(5);
        t.boot_progress(&r); // not running yet
        assert_eq!(t.boot[0].snapshot().count, 0);
        r.boot = BootTimes {
            supervisor_us: us(5),
            sandbox_us: us(30),
            agent_us: us(32),
            workload_us: us(35),
        };
        t.boot_progress(&r);
        t.boot_progress(&r); // reported once
        let sums: Vec<f64> = t.boot.iter().map(|h| h.snapshot().sum_secs).collect();
        let counts: Vec<u64> = t.boot.iter().map(|h| h.snapshot().count).collect();
        assert_eq!(counts, vec![1; 5]);
        for (sum, expected) in sums.iter().zip([0.005, 0.025, 0.002, 0.003, 0.035]) {
            assert!((sum - expected).abs() < 1e-9, "{sums:?}");
        }
        // A run this msbd did not start (or an old one) reports nothing.
        r.run_id = "other".into();
        r.phase = RunPhase::Exited;
        t.boot_progress(&r);
        assert_eq!(t.boot[4].snapshot().count, 1);
    }
}
