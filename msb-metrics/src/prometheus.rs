//! Prometheus names for the registry's instruments, following OpenTelemetry's translation
//! (so a dashboard written against an OTLP-to-Prometheus pipeline finds the same series):
//! dots become underscores, the unit becomes a suffix (`By` -> `_bytes`, `s` -> `_seconds`,
//! a unit-less gauge `1` -> `_ratio`, annotations like `{process}` are dropped), and counters end
//! in `_total`.

use crate::{Instrument, Kind, DAEMON_INSTRUMENTS};

/// The metric family name of an OTel instrument, without the `_total` of counters.
pub fn family_name_of(name: &str, unit: &str, kind: Kind) -> String {
    let base = name.replace(['.', '-'], "_");
    let suffix = match (unit, kind) {
        ("By", _) => "_bytes",
        ("s", _) => "_seconds",
        ("1", Kind::Gauge) => "_ratio",
        _ => "",
    };
    if suffix.is_empty() || base.ends_with(suffix) {
        base
    } else {
        format!("{base}{suffix}")
    }
}

/// The name of an instrument's sample lines (counters get `_total`; a histogram's lines are
/// this name with `_bucket`, `_sum` and `_count`).
pub fn sample_name_of(name: &str, unit: &str, kind: Kind) -> String {
    let family = family_name_of(name, unit, kind);
    match kind {
        Kind::Counter => format!("{family}_total"),
        Kind::Gauge | Kind::Histogram => family,
    }
}

/// The metric family name, without the `_total` of counters.
pub fn family_name(instrument: &Instrument) -> String {
    family_name_of(instrument.name, instrument.unit, instrument.kind)
}

/// The name of the sample line (counters get `_total`).
pub fn sample_name(instrument: &Instrument) -> String {
    sample_name_of(instrument.name, instrument.unit, instrument.kind)
}

/// A Prometheus label name for an OTel attribute: every character outside `[a-zA-Z0-9]`
/// becomes `_`, as OTLP translation does (`sandbox.name` -> `sandbox_name`, `user.id` ->
/// `user_id`).
pub fn label_name(attribute: &str) -> String {
    attribute
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Every sample name msbd's endpoint can serve: what dashboards and alert rules may use.
pub fn exported_names() -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |name: &str, unit: &str, kind: Kind| {
        let family = family_name_of(name, unit, kind);
        match kind {
            Kind::Gauge => names.push(family),
            Kind::Counter => {
                names.push(format!("{family}_total"));
                names.push(format!("{family}_created"));
            }
            Kind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count", "_created"] {
                    names.push(format!("{family}{suffix}"));
                }
            }
        }
    };
    for family in crate::registry::families() {
        add(family[0].name, family[0].unit, family[0].kind);
    }
    for i in DAEMON_INSTRUMENTS {
        add(i.name, i.unit, i.kind);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::INSTRUMENTS;

    fn by(name: &str) -> &'static Instrument {
        INSTRUMENTS.iter().find(|i| i.name == name).unwrap()
    }

    #[test]
    fn names_match_the_otel_translation() {
        assert_eq!(
            sample_name(by("microsandbox.cpu.utilization")),
            "microsandbox_cpu_utilization_ratio"
        );
        assert_eq!(
            sample_name(by("microsandbox.memory.usage")),
            "microsandbox_memory_usage_bytes"
        );
        assert_eq!(
            sample_name(by("microsandbox.cpu.time")),
            "microsandbox_cpu_time_seconds_total"
        );
        assert_eq!(
            sample_name(by("microsandbox.disk.bytes_written")),
            "microsandbox_disk_bytes_written_bytes_total"
        );
        assert_eq!(
            sample_name(by("microsandbox.processes")),
            "microsandbox_processes"
        );
        assert_eq!(
            sample_name(by("microsandbox.uptime")),
            "microsandbox_uptime_seconds"
        );
        assert_eq!(
            sample_name_of("msb.sandbox.boot.duration", "s", Kind::Histogram),
            "msb_sandbox_boot_duration_seconds"
        );
        assert_eq!(
            sample_name_of("msb.otlp.exports", "{export}", Kind::Counter),
            "msb_otlp_exports_total"
        );
        let mut names: Vec<String> = crate::registry::families()
            .map(|f| family_name(&f[0]))
            .chain(
                DAEMON_INSTRUMENTS
                    .iter()
                    .map(|i| family_name_of(i.name, i.unit, i.kind)),
            )
            .collect();
        let declared = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), declared, "families are unique");
        let exported = exported_names();
        assert!(exported.contains(&"msb_exec_latency_seconds_bucket".to_owned()));
        assert!(exported.contains(&"msb_sandbox_stalled".to_owned()));
        assert!(exported.contains(&"msb_sampler_cpu_seconds_total".to_owned()));
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }
}
