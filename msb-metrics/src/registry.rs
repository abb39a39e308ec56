//! Every instrument msb emits, declared once.
//!
//! The JSON fields of `msb metrics`, `docs/metrics.md`, the exporters (Prometheus, OTLP) and the
//! dashboard checks all iterate [`INSTRUMENTS`]; nothing emits a metric that is not declared
//! here. Names keep microsandbox's `microsandbox.*` OTel names where it has them, so existing
//! dashboards and alerts keep working; msb's additions live in the same namespace.

use crate::{Sample, INSTRUMENTS};

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

/// A [`Sample`] value: what the field holds, before [`Instrument::scale`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    U64(u64),
    F64(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::U64(v) => v as f64,
            Number::F64(v) => v,
        }
    }
}

/// The Rust type of a [`Sample`] field, which is also its store column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U64,
    F64,
}

impl ValueType {
    /// The DuckDB column type the value is stored as.
    pub fn sql_type(self) -> &'static str {
        match self {
            ValueType::U64 => "UBIGINT",
            ValueType::F64 => "DOUBLE",
        }
    }
}

/// How history aggregates an instrument over a step (and the 1-minute rollups keep it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// A gauge: the step's average (`<field>` in history points).
    Average,
    /// A gauge whose maximum is also shown (`<field>` and `<field>_max`).
    AverageAndMax,
    /// A counter: the per-second rate over the step (`<field>_per_sec`).
    Rate,
    /// Kept in the store (rollups keep the last value) but not a history column.
    Last,
}

/// One declared per-sandbox instrument: everything any surface needs to know about it. The
/// entries are made by `declare_sample!` in `sample.rs`, one line each.
#[derive(Debug, Clone, Copy)]
pub struct Instrument {
    /// OTel name. Several fields may share one name, told apart by [`Instrument::attributes`].
    pub name: &'static str,
    pub kind: Kind,
    /// UCUM unit, as OTel expects (`By`, `s`, `1`, `{process}`).
    pub unit: &'static str,
    pub description: &'static str,
    /// The [`Sample`] field, `msb metrics` JSON key and store column it is read from.
    pub field: &'static str,
    /// Multiplier from the field's unit to the instrument's (e.g. ns -> s is 1e-9).
    pub scale: f64,
    /// What has to exist for the value to be produced, when it is not produced everywhere
    /// (until then the field is null, with the reason logged once per sandbox).
    pub requires: Option<&'static str>,
    /// Fixed attributes of this field's points, after the sandbox's own.
    pub attributes: &'static [(&'static str, &'static str)],
    pub history: History,
    /// The field's type (`u64` or `f64`), which is also the JSON and store type.
    pub value_type: ValueType,
    /// Whether the field is optional (`null` when its source is missing).
    pub nullable: bool,
    /// Reads the field.
    pub get: fn(&Sample) -> Option<Number>,
    /// Writes the field (`None` leaves a non-optional field at zero).
    pub set: fn(&mut Sample, Option<Number>),
}

impl Instrument {
    /// The instrument's value in its own unit; `None` when the source is missing.
    pub fn value(&self, sample: &Sample) -> Option<f64> {
        (self.get)(sample).map(|v| v.as_f64() * self.scale)
    }
}

/// Attributes every per-sandbox instrument carries (user labels are added from an allow-list).
pub const SANDBOX_ATTRIBUTES: &[&str] = &["sandbox.name", "sandbox.id"];

/// Number of instruments whose history is `kind` (`Average` counts both averaged kinds).
pub const fn history_count(kind: History) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < INSTRUMENTS.len() {
        if history_matches(INSTRUMENTS[i].history, kind) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn history_matches(have: History, want: History) -> bool {
    match want {
        History::Average => matches!(have, History::Average | History::AverageAndMax),
        History::AverageAndMax => matches!(have, History::AverageAndMax),
        History::Rate => matches!(have, History::Rate),
        History::Last => matches!(have, History::Last),
    }
}

/// The fields whose history is `kind`, in declaration order (`N` must be
/// [`history_count`]`(kind)`, or the constant that calls it fails to compile).
pub const fn history_fields<const N: usize>(kind: History) -> [&'static str; N] {
    let mut out = [""; N];
    let mut n = 0;
    let mut i = 0;
    while i < INSTRUMENTS.len() {
        if history_matches(INSTRUMENTS[i].history, kind) {
            out[n] = INSTRUMENTS[i].field;
            n += 1;
        }
        i += 1;
    }
    assert!(n == N, "history_fields: N is not history_count(kind)");
    out
}

/// The instruments grouped by OTel name, in declaration order: one slice per metric family
/// (fields that share a name are declared next to each other; a test checks).
pub fn families() -> impl Iterator<Item = &'static [Instrument]> {
    INSTRUMENTS.chunk_by(|a, b| a.name == b.name)
}

/// The instrument read from `field`.
pub fn by_field(field: &str) -> Option<&'static Instrument> {
    INSTRUMENTS.iter().find(|i| i.field == field)
}

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

use Kind::{Counter, Gauge, Histogram};

/// Upper bounds (seconds) of the latency histograms' buckets: sub-millisecond exec round trips
/// up to boots that take seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the file-server operation latency buckets
/// (`msb.sandbox.filesystem.operation.duration`): operations take microseconds, not the
/// milliseconds of [`LATENCY_BUCKETS`]. The file server counts in microseconds with the same
/// bounds (`msb_fs::counters::LATENCY_BOUNDS_US`; a test in the sampler keeps them equal).
pub const FS_LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    1.0, 10.0,
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
    daemon_needs(daemon("msb.sandbox.filesystem.operation.duration", Histogram, "s", &["sandbox.name", "sandbox.id"], "Latency of msb's file-server operations for a sandbox's run (/.msb and its directory volumes), from the request reaching the server to its answer; buckets: FS_LATENCY_BUCKETS"), "msb's file server (/.msb or a directory volume)"),
    daemon_needs(daemon("msb.sandbox.mount.quota.used", Gauge, "By", &["sandbox.name", "sandbox.id", "msb.mount"], "Bytes of growth charged to one file-server mount's quota (msb.mount: its path in the sandbox)"), "msb's file server (/.msb or a directory volume)"),
    daemon_needs(daemon("msb.sandbox.mount.quota.limit", Gauge, "By", &["sandbox.name", "sandbox.id", "msb.mount"], "One file-server mount's quota (absent for an unbounded mount)"), "a mount with a quota"),
    daemon_needs(daemon("msb.sandbox.mount.quota.baseline", Gauge, "By", &["sandbox.name", "sandbox.id", "msb.mount"], "What one file-server mount held before its first write (never charged)"), "a mount written to"),
    daemon("msb.supervisors.warm", Gauge, "{supervisor}", &[], "Supervisors spawned ahead of time and ready for the next start (MSB_WARM_SUPERVISORS is the target)"),
    daemon("msb.sandbox.runs.ended", Counter, "{run}", &["reason"], "Runs that ended, by why: exit (the workload exited), signal, oom_kill, max_duration, idle, stop, agent_unresponsive, error"),
    daemon("msb.sandbox.starts", Counter, "{start}", &["path"], "Sandbox starts by how they got their supervisor: booted (a warm supervisor's sandbox booted ahead of time, only claimed), warm (a supervisor spawned ahead of time that built the sandbox) or cold (spawned for the start)"),
    daemon_needs(daemon("msb.otlp.exports", Counter, "{export}", &["signal", "result"], "OTLP export requests by signal and result (success, failure)"), "an OTLP endpoint"),
    daemon_needs(daemon("msb.otlp.dropped", Counter, "{item}", &["signal"], "Data points or spans dropped: export failed or queue full"), "an OTLP endpoint"),
    daemon_needs(daemon("msb.otlp.last_success_timestamp", Gauge, "s", &["signal"], "Unix time of the last successful export"), "an OTLP endpoint"),
];

/// `docs/metrics.md`, generated from the registry (a test keeps the committed file current).
pub fn markdown() -> String {
    let mut doc = String::from(
        "# Metrics\n\n\
         Generated from `msb-metrics/src/registry.rs` (`MSB_UPDATE_DOCS=1 cargo test --release -p msb-metrics` \
         rewrites it). One sample per sandbox per interval (default 1 s, `--metrics-interval`). \
         Every per-sandbox instrument carries the attributes `sandbox.name` and `sandbox.id`. \
         A value whose source is missing is null (in JSON) or absent (in exports), never zero; \
         the reason is logged once per sandbox.\n\n\
         The `field` is the `Sample` field, the `msb metrics --format json` key and the store \
         column (of the SQL type given); history shows gauges as step averages (`<field>`, and \
         `<field>_max` where marked) and counters as rates (`<field>_per_sec`).\n\n\
         | instrument | attributes | kind | unit | Prometheus name | field | type | history | description | produced when |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for i in INSTRUMENTS {
        let attributes: Vec<String> = i
            .attributes
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let history = match i.history {
            History::Average => "average",
            History::AverageAndMax => "average, max",
            History::Rate => "rate",
            History::Last => "stored only",
        };
        let nullable = if i.nullable { ", nullable" } else { "" };
        doc.push_str(&format!(
            "| `{}` | {} | {} | `{}` | `{}` | `{}` | `{}`{} | {} | {} | {} |\n",
            i.name,
            attributes.join(", "),
            i.kind.as_str(),
            i.unit,
            crate::prometheus::sample_name(i),
            i.field,
            i.value_type.sql_type(),
            nullable,
            history,
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
    let fs_buckets: Vec<String> = FS_LATENCY_BUCKETS.iter().map(f64::to_string).collect();
    doc.push_str(" (`msb.sandbox.filesystem.operation.duration`: ");
    doc.push_str(&fs_buckets.join(", "));
    doc.push_str(
        ").\n\n\
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

    /// A sample with every field set through the declaration's setters.
    pub(crate) fn full_sample() -> Sample {
        let mut sample = Sample {
            sandbox_id: "s".into(),
            run_id: "r".into(),
            timestamp_ms: 1,
            sampler_cpu_ns: Some(5_000),
            ..Sample::default()
        };
        for (n, i) in INSTRUMENTS.iter().enumerate() {
            let value = match i.value_type {
                ValueType::U64 => Number::U64(n as u64 + 1),
                ValueType::F64 => Number::F64(n as f64 + 1.5),
            };
            (i.set)(&mut sample, Some(value));
        }
        sample
    }

    #[test]
    fn every_field_is_declared_once_with_its_own_accessor() {
        let sample = full_sample();
        let json = serde_json::to_value(&sample).unwrap();
        let mut fields = std::collections::HashSet::new();
        let mut points = std::collections::HashSet::new();
        for (n, i) in INSTRUMENTS.iter().enumerate() {
            assert!(fields.insert(i.field), "{} declared twice", i.field);
            // The accessor reads its own field: the value the setter wrote, as serde sees it.
            let expected = (n as f64 + 1.0)
                + if i.value_type == ValueType::F64 {
                    0.5
                } else {
                    0.0
                };
            assert_eq!(
                (i.get)(&sample).map(Number::as_f64),
                Some(expected),
                "{}",
                i.field
            );
            assert_eq!(json[i.field].as_f64(), Some(expected), "{}", i.field);
            assert!(
                i.name.starts_with("microsandbox.") || i.name.starts_with("container."),
                "{}",
                i.name
            );
            // Fields sharing a name differ in attributes, and agree on everything else.
            assert!(
                points.insert((i.name, i.attributes)),
                "{} {:?} twice",
                i.name,
                i.attributes
            );
            let first = INSTRUMENTS.iter().find(|j| j.name == i.name).unwrap();
            assert_eq!(
                (first.kind, first.unit, first.description, first.scale),
                (i.kind, i.unit, i.description, i.scale),
                "{}",
                i.name
            );
            assert!(
                i.kind != Kind::Counter || i.history == History::Rate,
                "counter {} must be a rate in history",
                i.field
            );
        }
        // Every measured Sample field is declared (identity and time fields are not instruments).
        for key in json.as_object().unwrap().keys() {
            // Identity and time, the sampler's own cost and the file-server latency histogram
            // (daemon instruments).
            if [
                "sandbox_id",
                "run_id",
                "timestamp_ms",
                "sampler_cpu_ns",
                "fs_op_latency",
                "fs_mounts",
            ]
            .contains(&key.as_str())
            {
                continue;
            }
            assert!(
                by_field(key).is_some(),
                "Sample field {key} has no instrument"
            );
        }
        let family_names: Vec<&str> = families().map(|f| f[0].name).collect();
        let mut distinct = family_names.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            family_names.len(),
            "fields sharing a name are adjacent"
        );
        let gauges: [&str; history_count(History::Average)] = history_fields(History::Average);
        assert!(gauges.contains(&"cpu_percent") && !gauges.contains(&"vcpu_time_ns"));
    }

    #[test]
    fn microsandbox_json_keys_come_first_in_its_order() {
        let keys: Vec<&str> = INSTRUMENTS[..crate::MICROSANDBOX_FIELDS]
            .iter()
            .map(|i| i.field)
            .collect();
        assert_eq!(
            keys,
            [
                "cpu_percent",
                "vcpu_time_ns",
                "memory_bytes",
                "memory_available_bytes",
                "memory_host_resident_bytes",
                "memory_limit_bytes",
                "disk_read_bytes",
                "disk_write_bytes",
                "net_rx_bytes",
                "net_tx_bytes",
                "upper_used_bytes",
                "upper_free_bytes",
                "upper_host_allocated_bytes",
                "uptime_secs",
            ]
        );
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
