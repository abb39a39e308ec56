//! Prometheus names for the registry's instruments, following OpenTelemetry's translation
//! (so a dashboard written against an OTLP-to-Prometheus pipeline finds the same series):
//! dots become underscores, the unit becomes a suffix (`By` -> `_bytes`, `s` -> `_seconds`,
//! a unit-less gauge `1` -> `_ratio`, annotations like `{process}` are dropped), and counters end
//! in `_total`.

use crate::{Instrument, Kind};

/// The metric family name, without the `_total` of counters.
pub fn family_name(instrument: &Instrument) -> String {
    let base = instrument.name.replace(['.', '-'], "_");
    let suffix = match (instrument.unit, instrument.kind) {
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

/// The name of the sample line (counters get `_total`).
pub fn sample_name(instrument: &Instrument) -> String {
    match instrument.kind {
        Kind::Counter => format!("{}_total", family_name(instrument)),
        Kind::Gauge => family_name(instrument),
    }
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
        let mut names: Vec<String> = INSTRUMENTS.iter().map(family_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), INSTRUMENTS.len(), "families are unique");
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }
}
