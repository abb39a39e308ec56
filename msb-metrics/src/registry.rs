//! Every instrument msb emits, declared once.
//!
//! The JSON fields of `msb metrics`, `docs/metrics.md`, the exporters (Prometheus, OTLP) and the
//! dashboard checks all iterate [`INSTRUMENTS`]; nothing emits a metric that is not declared
//! here. Names keep microsandbox's `microsandbox.*` OTel names where it has them, so existing
//! dashboards and alerts keep working; msb's additions live in the same namespace.

use crate::Sample;

/// How a value behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level that goes up and down.
    Gauge,
    /// A cumulative total for the run; only grows (a new run starts again at zero).
    Counter,
    /// A distribution of observations in fixed buckets (msbd's own latencies only).
    Histogram,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One declared instrument.
#[derive(Debug, Clone, Copy)]
pub struct Instrument {
    /// OTel name.
    pub name: &'static str,
    pub kind: Kind,
    /// UCUM unit, as OTel expects (`By`, `s`, `1`, `{process}`).
    pub unit: &'static str,
    pub description: &'static str,
    /// The [`Sample`] field (and `msb metrics` JSON key) it is read from.
    pub field: &'static str,
    /// Multiplier from the field's unit to the instrument's (e.g. ns -> s is 1e-9).
    pub scale: f64,
    /// What has to exist for the value to be produced, when it is not produced everywhere
    /// (until then the field is null, with the reason logged once per sandbox).
    pub requires: Option<&'static str>,
}

/// Attributes every per-sandbox instrument carries (user labels are added from an allow-list).
pub const SANDBOX_ATTRIBUTES: &[&str] = &["sandbox.name", "sandbox.id"];

const fn instrument(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    field: &'static str,
    description: &'static str,
) -> Instrument {
    Instrument {
        name,
        kind,
        unit,
        description,
        field,
        scale: 1.0,
        requires: None,
    }
}

const fn needs(mut i: Instrument, what: &'static str) -> Instrument {
    i.requires = Some(what);
    i
}

const fn scaled(mut i: Instrument, scale: f64) -> Instrument {
    i.scale = scale;
    i
}

use Kind::{Counter, Gauge};

/// The per-sandbox instruments, in the order of the `msb metrics` JSON fields.
pub const INSTRUMENTS: &[Instrument] = &[
    scaled(instrument("microsandbox.cpu.utilization", Gauge, "1", "cpu_percent", "CPU time over wall time since the previous sample; 1 = one core busy; clamped to the CPU quota"), 0.01),
    scaled(instrument("microsandbox.cpu.time", Counter, "s", "vcpu_time_ns", "CPU time consumed by the sandbox's processes (cgroup cpuacct / cpu.stat)"), 1e-9),
    instrument("microsandbox.memory.usage", Gauge, "By", "memory_bytes", "Memory in use: cgroup usage minus inactive file cache (tmpfs included)"),
    instrument("microsandbox.memory.available", Gauge, "By", "memory_available_bytes", "Memory limit minus memory in use"),
    instrument("microsandbox.memory.host_resident", Gauge, "By", "memory_host_resident_bytes", "Anonymous and mapped-file memory resident on the host"),
    instrument("microsandbox.memory.limit", Gauge, "By", "memory_limit_bytes", "The effective memory limit (the host's memory when unlimited)"),
    needs(instrument("microsandbox.disk.bytes_read", Counter, "By", "disk_read_bytes", "Bytes read from block devices by the sandbox"), "cgroup v2 io controller"),
    needs(instrument("microsandbox.disk.bytes_written", Counter, "By", "disk_write_bytes", "Bytes written to block devices by the sandbox, writeback included"), "cgroup v2 io controller"),
    needs(instrument("microsandbox.network.bytes_received", Counter, "By", "net_rx_bytes", "Ethernet bytes delivered to the sandbox"), "userspace network stack"),
    needs(instrument("microsandbox.network.bytes_sent", Counter, "By", "net_tx_bytes", "Ethernet bytes sent by the sandbox"), "userspace network stack"),
    needs(instrument("microsandbox.upper.used", Gauge, "By", "upper_used_bytes", "Used space of the writable root's filesystem (its statfs)"), "ext4 writable root"),
    needs(instrument("microsandbox.upper.free", Gauge, "By", "upper_free_bytes", "Space left on the writable root's filesystem (its statfs)"), "ext4 writable root"),
    needs(instrument("microsandbox.upper.host_allocated", Gauge, "By", "upper_host_allocated_bytes", "Host blocks allocated to the writable root's backing storage"), "default (overlay) root"),
    instrument("microsandbox.uptime", Gauge, "s", "uptime_secs", "Time since the run started"),
    needs(instrument("microsandbox.network.packets_received", Counter, "{packet}", "net_rx_packets", "Frames delivered to the sandbox"), "userspace network stack"),
    needs(instrument("microsandbox.network.packets_sent", Counter, "{packet}", "net_tx_packets", "Frames sent by the sandbox"), "userspace network stack"),
    instrument("microsandbox.processes", Gauge, "{process}", "processes", "Processes in the sandbox (cgroup pids.current)"),
    instrument("microsandbox.heartbeat.sequence", Counter, "{heartbeat}", "heartbeat_seq", "Heartbeats the agent has sent in this run"),
    scaled(instrument("microsandbox.heartbeat.age", Gauge, "s", "heartbeat_age_ms", "Time since the agent's last heartbeat arrived"), 1e-3),
    instrument("microsandbox.exec.sessions.active", Gauge, "{session}", "active_sessions", "Exec sessions running in the sandbox"),
];

/// An instrument of msbd itself or of the host, not read from a sandbox's [`Sample`]: the
/// fleet, capacity, the store, the samplers' own cost, the exporters' health, and the latencies
/// of boots and exec sessions. Exported next to [`INSTRUMENTS`] by the same exporters.
#[derive(Debug, Clone, Copy)]
pub struct DaemonInstrument {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub description: &'static str,
    /// Attributes its points carry (OTel names; Prometheus labels replace `.` with `_`).
    pub attributes: &'static [&'static str],
    /// When it is produced, if not always.
    pub requires: Option<&'static str>,
}

const fn daemon(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    attributes: &'static [&'static str],
    description: &'static str,
) -> DaemonInstrument {
    DaemonInstrument {
        name,
        kind,
        unit,
        description,
        attributes,
        requires: None,
    }
}

const fn daemon_needs(mut i: DaemonInstrument, what: &'static str) -> DaemonInstrument {
    i.requires = Some(what);
    i
}

use Kind::Histogram;

/// Upper bounds (seconds) of the latency histograms' buckets: sub-millisecond exec round trips
/// up to boots that take seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Boot phases, in order, as the `phase` attribute of `msb.sandbox.boot.duration`.
pub const BOOT_PHASES: &[&str] = &["spawn", "sandbox", "agent", "workload", "total"];

/// msbd's and the host's instruments.
pub const DAEMON_INSTRUMENTS: &[DaemonInstrument] = &[
    daemon("msb.sandboxes", Gauge, "{sandbox}", &["status"], "Sandboxes in the catalog by status"),
    daemon("msb.host.cpus", Gauge, "{cpu}", &[], "CPUs of the host"),
    daemon("msb.cpus.committed", Gauge, "{cpu}", &[], "Sum of running sandboxes' CPU quotas"),
    daemon("msb.host.memory", Gauge, "By", &[], "Memory of the host"),
    daemon("msb.host.memory.available", Gauge, "By", &[], "Memory the host has available"),
    daemon("msb.memory.committed", Gauge, "By", &[], "Sum of running sandboxes' memory limits"),
    daemon("msb.store.size", Gauge, "By", &[], "Size of the DuckDB file"),
    daemon("msb.sandbox.sample_age", Gauge, "s", &["sandbox.name", "sandbox.id"], "Time since msbd received the sandbox's latest sample"),
    daemon("msb.sandbox.stalled", Gauge, "{bool}", &["sandbox.name", "sandbox.id"], "1 when no sample arrived for max(3 intervals, 3 s) from a running sandbox, else 0"),
    daemon("msb.sampler.cpu", Counter, "s", &[], "CPU time the sandboxes' samplers spent taking samples (msb's own cost)"),
    daemon("msb.sampler.samples", Counter, "{sample}", &[], "Samples msbd received from the sandboxes' samplers"),
    daemon("msb.sandbox.boot.duration", Histogram, "s", &["phase"], "Time of each boot phase: spawn (supervisor up), sandbox (namespaces, root, cgroups), agent (agent ready), workload (command started), total"),
    daemon("msb.exec.latency", Histogram, "s", &[], "Time from an exec request reaching msbd to the process running in the sandbox"),
    daemon("msb.supervisors.warm", Gauge, "{supervisor}", &[], "Supervisors spawned ahead of time and ready for the next start (MSB_WARM_SUPERVISORS is the target)"),
    daemon("msb.sandbox.starts", Counter, "{start}", &["path"], "Sandbox starts by how they got their supervisor: warm (spawned ahead of time) or cold (spawned for the start)"),
    daemon_needs(daemon("msb.otlp.exports", Counter, "{export}", &["signal", "result"], "OTLP export requests by signal and result (success, failure)"), "an OTLP endpoint"),
    daemon_needs(daemon("msb.otlp.dropped", Counter, "{item}", &["signal"], "Data points or spans dropped: export failed or queue full"), "an OTLP endpoint"),
    daemon_needs(daemon("msb.otlp.last_success_timestamp", Gauge, "s", &["signal"], "Unix time of the last successful export"), "an OTLP endpoint"),
];

/// The raw value of `field` in `sample` (before [`Instrument::scale`]); `None` when the source
/// is missing. Panics on an undeclared field: a registry entry must name a real field.
pub fn field_value(sample: &Sample, field: &str) -> Option<f64> {
    let u = |v: Option<u64>| v.map(|v| v as f64);
    match field {
        "cpu_percent" => sample.cpu_percent,
        "vcpu_time_ns" => u(sample.vcpu_time_ns),
        "memory_bytes" => u(sample.memory_bytes),
        "memory_available_bytes" => u(sample.memory_available_bytes),
        "memory_host_resident_bytes" => u(sample.memory_host_resident_bytes),
        "memory_limit_bytes" => u(sample.memory_limit_bytes),
        "disk_read_bytes" => u(sample.disk_read_bytes),
        "disk_write_bytes" => u(sample.disk_write_bytes),
        "net_rx_bytes" => u(sample.net_rx_bytes),
        "net_tx_bytes" => u(sample.net_tx_bytes),
        "net_rx_packets" => u(sample.net_rx_packets),
        "net_tx_packets" => u(sample.net_tx_packets),
        "upper_used_bytes" => u(sample.upper_used_bytes),
        "upper_free_bytes" => u(sample.upper_free_bytes),
        "upper_host_allocated_bytes" => u(sample.upper_host_allocated_bytes),
        "uptime_secs" => Some(sample.uptime_secs),
        "processes" => u(sample.processes),
        "heartbeat_seq" => u(sample.heartbeat_seq),
        "heartbeat_age_ms" => u(sample.heartbeat_age_ms),
        "active_sessions" => u(sample.active_sessions),
        other => panic!("the registry names {other:?}, which is not a Sample field"),
    }
}

impl Instrument {
    /// The instrument's value in its own unit.
    pub fn value(&self, sample: &Sample) -> Option<f64> {
        field_value(sample, self.field).map(|v| v * self.scale)
    }
}

/// `docs/metrics.md`, generated from the registry (a test keeps the committed file current).
pub fn markdown() -> String {
    let mut doc = String::from(
        "# Metrics\n\n\
         Generated from `msb-metrics/src/registry.rs` (`MSB_UPDATE_DOCS=1 cargo test --release -p msb-metrics` \
         rewrites it). One sample per sandbox per interval (default 1 s, `--metrics-interval`). \
         Every per-sandbox instrument carries the attributes `sandbox.name` and `sandbox.id`. \
         A value whose source is missing is null (in JSON) or absent (in exports), never zero; \
         the reason is logged once per sandbox.\n\n\
         | instrument | kind | unit | `msb metrics` field | description | produced when |\n\
         |---|---|---|---|---|---|\n",
    );
    for i in INSTRUMENTS {
        doc.push_str(&format!(
            "| `{}` | {} | `{}` | `{}` | {} | {} |\n",
            i.name,
            i.kind.as_str(),
            i.unit,
            i.field,
            i.description,
            i.requires.unwrap_or("always"),
        ));
    }
    doc.push_str(
        "\n## msbd and host\n\n\
         Instruments of msbd itself and of the host, exported next to the per-sandbox ones. \
         Histograms use the buckets (seconds) ",
    );
    let buckets: Vec<String> = LATENCY_BUCKETS.iter().map(f64::to_string).collect();
    doc.push_str(&buckets.join(", "));
    doc.push_str(
        ".\n\n\
         | instrument | kind | unit | attributes | Prometheus name | description | produced when |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for i in DAEMON_INSTRUMENTS {
        let attributes: Vec<String> = i.attributes.iter().map(|a| format!("`{a}`")).collect();
        doc.push_str(&format!(
            "| `{}` | {} | `{}` | {} | `{}` | {} | {} |\n",
            i.name,
            i.kind.as_str(),
            i.unit,
            attributes.join(", "),
            crate::prometheus::sample_name_of(i.name, i.unit, i.kind),
            i.description,
            i.requires.unwrap_or("always"),
        ));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_sample() -> Sample {
        Sample {
            sandbox_id: "s".into(),
            run_id: "r".into(),
            timestamp_ms: 1,
            uptime_secs: 1.0,
            cpu_percent: Some(1.0),
            vcpu_time_ns: Some(1),
            memory_bytes: Some(1),
            memory_available_bytes: Some(1),
            memory_limit_bytes: Some(1),
            memory_host_resident_bytes: Some(1),
            disk_read_bytes: Some(1),
            disk_write_bytes: Some(1),
            net_rx_bytes: Some(1),
            net_tx_bytes: Some(1),
            net_rx_packets: Some(1),
            net_tx_packets: Some(1),
            upper_used_bytes: Some(1),
            upper_free_bytes: Some(1),
            upper_host_allocated_bytes: Some(1),
            processes: Some(1),
            heartbeat_seq: Some(1),
            heartbeat_age_ms: Some(1),
            active_sessions: Some(1),
            sampler_cpu_ns: Some(5_000),
        }
    }

    #[test]
    fn every_instrument_reads_a_real_field_and_names_are_unique() {
        let sample = full_sample();
        let mut names = std::collections::HashSet::new();
        for i in INSTRUMENTS {
            assert!(i.value(&sample).is_some(), "{}", i.name);
            assert!(i.name.starts_with("microsandbox."), "{}", i.name);
            assert!(names.insert(i.name), "{} declared twice", i.name);
        }
        // Every measured Sample field is declared (identity and time fields are not instruments).
        let json = serde_json::to_value(&sample).unwrap();
        for key in json.as_object().unwrap().keys() {
            // Identity and time, and the sampler's own cost (a daemon instrument).
            if ["sandbox_id", "run_id", "timestamp_ms", "sampler_cpu_ns"].contains(&key.as_str()) {
                continue;
            }
            assert!(
                INSTRUMENTS.iter().any(|i| i.field == key),
                "Sample field {key} has no instrument"
            );
        }
    }

    #[test]
    fn microsandbox_names_are_kept() {
        for name in [
            "microsandbox.cpu.utilization",
            "microsandbox.memory.usage",
            "microsandbox.memory.limit",
            "microsandbox.memory.host_resident",
            "microsandbox.disk.bytes_read",
            "microsandbox.disk.bytes_written",
            "microsandbox.network.bytes_received",
            "microsandbox.network.bytes_sent",
            "microsandbox.upper.used",
            "microsandbox.upper.free",
            "microsandbox.upper.host_allocated",
            "microsandbox.uptime",
        ] {
            assert!(INSTRUMENTS.iter().any(|i| i.name == name), "{name}");
        }
    }

    #[test]
    fn committed_docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        if std::env::var_os("MSB_UPDATE_DOCS").is_some() {
            std::fs::write(&path, markdown()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "docs/metrics.md is stale: MSB_UPDATE_DOCS=1 cargo test --release -p msb-metrics"
        );
    }
}
