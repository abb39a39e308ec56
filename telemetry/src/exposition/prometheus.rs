//! Prometheus text exposition of a [`Snapshot`]: counters are counters (`_total`, with a
//! `_created` timestamp in OpenMetrics), gauges are gauges, histograms `_bucket`/`_sum`/`_count`.
//! Per-sandbox series carry `sandbox_name` and `sandbox_id` (and allow-listed user labels, with a
//! `label_` prefix where one would clash with msb's own); fields that share an instrument name
//! are one family told apart by their attributes. Names follow OpenTelemetry's translation
//! (`msb_metrics::prometheus`). Why by hand rather than through a client library: docs/adr/005.

use std::fmt::Write;

use msb_metrics::prometheus::{family_name, family_name_of, sample_name, sample_name_of};
use msb_metrics::{Kind, DAEMON_INSTRUMENTS, INSTRUMENTS};

use super::{Snapshot, Value};

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A Prometheus label name for an attribute ([`msb_metrics::prometheus::label_name`]); a user
/// label that would collide with msb's own labels, or start with a digit, gets a `label_`
/// prefix.
fn label_name(attribute: &str, user: bool) -> String {
    let mut name = msb_metrics::prometheus::label_name(attribute);
    if user && (name.starts_with(|c: char| c.is_ascii_digit()) || reserved_label(&name)) {
        name = format!("label_{name}");
    }
    name
}

/// The Prometheus label name a user label key is exported under (msbd refuses, at start, a set
/// of keys two of which would share one).
pub fn user_label_name(key: &str) -> String {
    label_name(key, true)
}

/// A label msb itself puts on some series: a user label of that name would be ambiguous.
fn reserved_label(name: &str) -> bool {
    let declared = msb_metrics::SANDBOX_ATTRIBUTES
        .iter()
        .copied()
        .chain(
            INSTRUMENTS
                .iter()
                .flat_map(|i| i.attributes.iter().map(|(k, _)| *k)),
        )
        .chain(
            DAEMON_INSTRUMENTS
                .iter()
                .flat_map(|i| i.attributes.iter().copied()),
        );
    declared
        .map(msb_metrics::prometheus::label_name)
        .any(|label| label == name)
        || name == "le"
}

fn labels(attributes: &[(String, String)], user_from: usize) -> String {
    attributes
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            format!("{}=\"{}\"", label_name(key, i >= user_from), escape(value))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn with_braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

fn seconds(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn header(out: &mut String, family: &str, kind: Kind, help: &str, openmetrics: bool) {
    let type_name = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    // Text format 0.0.4 names a counter family with its `_total`; OpenMetrics without.
    let family_line = if !openmetrics && kind == Kind::Counter {
        format!("{family}_total")
    } else {
        family.to_owned()
    };
    let _ = writeln!(out, "# HELP {family_line} {help}.");
    let _ = writeln!(out, "# TYPE {family_line} {type_name}");
    if openmetrics {
        if let Some(unit) = family
            .rsplit('_')
            .next()
            .filter(|u| ["bytes", "seconds", "ratio"].contains(u))
        {
            let _ = writeln!(out, "# UNIT {family} {unit}");
        }
    }
}

/// The exposition body of `snapshot`: OpenMetrics 1.0 when `openmetrics`, else text 0.0.4.
pub fn render(snapshot: &Snapshot, openmetrics: bool) -> String {
    let live = &snapshot.sandboxes;
    let mut out = String::new();
    // Per-sandbox series, one family per instrument name (fields that share a name, such as
    // major and minor page faults, are its series told apart by their attributes).
    for family in msb_metrics::families() {
        let first = &family[0];
        let name = family_name(first);
        header(&mut out, &name, first.kind, first.description, openmetrics);
        for sandbox in live {
            for instrument in family {
                let Some(value) = instrument.value(&sandbox.sample) else {
                    continue;
                };
                let mut labels = labels(&sandbox.attributes, msb_metrics::SANDBOX_ATTRIBUTES.len());
                for (key, value) in instrument.attributes {
                    let _ = write!(
                        labels,
                        ",{}=\"{}\"",
                        msb_metrics::prometheus::label_name(key),
                        escape(value)
                    );
                }
                let _ = writeln!(out, "{}{{{labels}}} {value}", sample_name(instrument));
                if openmetrics && instrument.kind == Kind::Counter {
                    let created = seconds(sandbox.run_start());
                    let _ = writeln!(out, "{name}_created{{{labels}}} {created:.3}");
                }
            }
        }
    }
    // msbd's and the host's.
    for family in &snapshot.daemon {
        let i = family.instrument;
        let name = family_name_of(i.name, i.unit, i.kind);
        header(&mut out, &name, i.kind, i.description, openmetrics);
        let created = seconds(family.start);
        for point in &family.points {
            let labels = labels(&point.attributes, usize::MAX);
            match &point.value {
                Value::Number(value) => {
                    let sample = sample_name_of(i.name, i.unit, i.kind);
                    let _ = writeln!(out, "{sample}{} {value}", with_braces(&labels));
                    if openmetrics && i.kind == Kind::Counter {
                        let _ =
                            writeln!(out, "{name}_created{} {created:.3}", with_braces(&labels));
                    }
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0;
                    let bounds = h
                        .bounds
                        .iter()
                        .map(|b| b.to_string())
                        .chain(["+Inf".to_owned()]);
                    for (bound, count) in bounds.zip(&h.counts) {
                        cumulative += count;
                        let le = if labels.is_empty() {
                            format!("le=\"{bound}\"")
                        } else {
                            format!("{labels},le=\"{bound}\"")
                        };
                        let _ = writeln!(out, "{name}_bucket{{{le}}} {cumulative}");
                    }
                    let _ = writeln!(out, "{name}_sum{} {}", with_braces(&labels), h.sum_secs);
                    let _ = writeln!(out, "{name}_count{} {}", with_braces(&labels), h.count);
                    if openmetrics {
                        // A histogram's own start: a sandbox's run, or msbd's.
                        let created = seconds(h.start);
                        let _ =
                            writeln!(out, "{name}_created{} {created:.3}", with_braces(&labels));
                    }
                }
            }
        }
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::fixtures::snapshot;

    fn lines_of<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
        body.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn every_family_once_with_its_series_and_missing_values_left_out() {
        let body = render(&snapshot(), false);
        for family in msb_metrics::families() {
            let name = sample_name(&family[0]);
            assert_eq!(
                lines_of(&body, &format!("# TYPE {name} ")).len(),
                1,
                "{name}: one TYPE line for the family"
            );
            // web has every field: one series per field, with the field's own attributes.
            for instrument in family {
                let series: Vec<&str> = lines_of(&body, &format!("{name}{{"))
                    .into_iter()
                    .filter(|l| l.contains("sandbox_name=\"web\""))
                    .filter(|l| {
                        instrument.attributes.iter().all(|(k, v)| {
                            l.contains(&format!(
                                "{}=\"{v}\"",
                                msb_metrics::prometheus::label_name(k)
                            ))
                        })
                    })
                    .collect();
                assert_eq!(series.len(), 1, "{}: {series:?}", instrument.field);
            }
        }
        // idle has only its uptime: a missing source is absent, never 0.
        let idle: Vec<&str> = body
            .lines()
            .filter(|l| l.contains("sandbox_name=\"idle\""))
            .collect();
        assert_eq!(idle.len(), 1, "{idle:?}");
        assert!(
            idle[0].starts_with("microsandbox_uptime_seconds{"),
            "{idle:?}"
        );
        assert!(idle[0].ends_with(" 2.5"), "{idle:?}");
        // A user label is escaped; one that names msb's own label is prefixed.
        assert!(body.contains("team=\"a\\\"b\""), "{body}");
        // Scales apply: nanoseconds become seconds.
        let cpu = lines_of(
            &body,
            "microsandbox_cpu_time_seconds_total{sandbox_name=\"web\"",
        )[0];
        let value: f64 = cpu.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((value - 1001e-9).abs() < 1e-15, "{cpu}");
    }

    #[test]
    fn daemon_families_counters_and_histograms() {
        let body = render(&snapshot(), false);
        assert!(
            body.contains("# TYPE msb_sandbox_runs_ended_total counter"),
            "{body}"
        );
        assert!(body.contains("msb_sandbox_runs_ended_total{reason=\"oom_kill\"} 2\n"));
        for (le, count) in [("0.01", 1), ("0.1", 2), ("+Inf", 3)] {
            assert!(
                body.contains(&format!(
                    "msb_exec_latency_seconds_bucket{{le=\"{le}\"}} {count}\n"
                )),
                "{le}: {body}"
            );
        }
        assert!(body.contains("msb_exec_latency_seconds_count 3\n"));
    }

    #[test]
    fn openmetrics_has_units_created_timestamps_and_eof() {
        let body = render(&snapshot(), true);
        assert!(body.ends_with("# EOF\n"));
        assert!(body.contains("# TYPE microsandbox_cpu_time_seconds counter"));
        assert!(body.contains("# UNIT microsandbox_cpu_time_seconds seconds"));
        // The run started uptime (10 s) before the sample was taken.
        assert!(
            body.contains("microsandbox_cpu_time_seconds_created{sandbox_name=\"web\",sandbox_id=\"id-web\",team=\"a\\\"b\"} 1700000000.000"),
            "{body}"
        );
        assert!(!body.contains("microsandbox_uptime_seconds_created"));
    }

    #[test]
    fn user_labels_that_clash_with_msb_labels_are_prefixed() {
        let mut snapshot = snapshot();
        snapshot.sandboxes[0]
            .attributes
            .push(("reason".into(), "x".into()));
        snapshot.sandboxes[0]
            .attributes
            .push(("9lives".into(), "y".into()));
        let body = render(&snapshot, false);
        assert!(body.contains("label_reason=\"x\""), "{body}");
        assert!(body.contains("label_9lives=\"y\""));
        assert!(!body.contains(",reason=\"x\""));
    }
}
