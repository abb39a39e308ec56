//! An OTLP metrics request from a [`Snapshot`]. Types are the registry's: gauges are OTLP
//! gauges, counters cumulative monotonic sums whose start time is the start of the sandbox's run
//! (a restart is a reset, as the data model expects), histograms explicit-bucket cumulative
//! histograms. Per-sandbox points carry `sandbox.name`, `sandbox.id`, allow-listed user labels
//! and the field's own attributes (fields that share a name are one metric). Why the protobuf is
//! built here rather than through the SDK's meter: docs/adr/007.

use std::time::{SystemTime, UNIX_EPOCH};

use msb_metrics::Kind;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{Snapshot, Value};

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn key_values(attributes: &[(String, String)]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

/// Integer units stay integers (bytes, counts); seconds and ratios are doubles.
fn number(unit: &str, value: f64) -> number_data_point::Value {
    if unit == "s" || unit == "1" {
        number_data_point::Value::AsDouble(value)
    } else {
        number_data_point::Value::AsInt(value.round() as i64)
    }
}

fn metric(
    name: &str,
    description: &str,
    unit: &str,
    kind: Kind,
    points: Vec<NumberDataPoint>,
) -> Metric {
    let data = match kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge | Kind::Histogram => metric::Data::Gauge(Gauge {
            data_points: points,
        }),
    };
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

/// The request of one export of `snapshot` from a process described by `resource` (OTel
/// resource attributes), and how many data points it carries.
pub fn metrics_request(
    snapshot: &Snapshot,
    resource: &[(String, String)],
) -> (ExportMetricsServiceRequest, u64) {
    let live = &snapshot.sandboxes;
    let now = nanos(snapshot.taken);
    let mut metrics = Vec::new();
    let mut count = 0u64;
    for family in msb_metrics::families() {
        let first = &family[0];
        let points: Vec<NumberDataPoint> = live
            .iter()
            .flat_map(|sandbox| family.iter().map(move |instrument| (sandbox, instrument)))
            .filter_map(|(sandbox, instrument)| {
                let value = instrument.value(&sandbox.sample)?;
                let mut attributes = key_values(&sandbox.attributes);
                attributes.extend(key_values(
                    &instrument
                        .attributes
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<Vec<_>>(),
                ));
                Some(NumberDataPoint {
                    attributes,
                    start_time_unix_nano: match instrument.kind {
                        Kind::Counter => nanos(sandbox.run_start()),
                        _ => 0,
                    },
                    time_unix_nano: sandbox.sample.timestamp_ms * 1_000_000,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(number(instrument.unit, value)),
                })
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        count += points.len() as u64;
        metrics.push(metric(
            first.name,
            first.description,
            first.unit,
            first.kind,
            points,
        ));
    }
    for family in &snapshot.daemon {
        let i = family.instrument;
        let start = nanos(family.start);
        count += family.points.len() as u64;
        if i.kind == Kind::Histogram {
            let points = family
                .points
                .iter()
                .filter_map(|point| match &point.value {
                    Value::Histogram(h) => Some(HistogramDataPoint {
                        attributes: key_values(&point.attributes),
                        start_time_unix_nano: nanos(h.start),
                        time_unix_nano: now,
                        count: h.count,
                        sum: Some(h.sum_secs),
                        bucket_counts: h.counts.clone(),
                        explicit_bounds: h.bounds.to_vec(),
                        exemplars: Vec::new(),
                        flags: 0,
                        min: None,
                        max: None,
                    }),
                    Value::Number(_) => None,
                })
                .collect();
            metrics.push(Metric {
                name: i.name.to_owned(),
                description: i.description.to_owned(),
                unit: i.unit.to_owned(),
                metadata: Vec::new(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
            });
            continue;
        }
        let points = family
            .points
            .iter()
            .filter_map(|point| match point.value {
                Value::Number(value) => Some(NumberDataPoint {
                    attributes: key_values(&point.attributes),
                    start_time_unix_nano: if i.kind == Kind::Counter { start } else { 0 },
                    time_unix_nano: now,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(number(i.unit, value)),
                }),
                Value::Histogram(_) => None,
            })
            .collect();
        metrics.push(metric(i.name, i.description, i.unit, i.kind, points));
    }
    let resource = Resource {
        attributes: key_values(resource),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "msbd".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    (request, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::fixtures::snapshot;

    fn attribute<'a>(point: &'a NumberDataPoint, key: &str) -> Option<&'a str> {
        point
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            })
    }

    #[test]
    fn one_metric_per_family_with_every_point_and_the_right_types() {
        let snapshot = snapshot();
        let (request, count) =
            metrics_request(&snapshot, &[("service.name".into(), "msbd".into())]);
        let scope = &request.resource_metrics[0].scope_metrics[0];
        let families: Vec<&str> = msb_metrics::families().map(|f| f[0].name).collect();
        let names: Vec<&str> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(&names[..families.len()], families.as_slice());
        assert_eq!(
            &names[families.len()..],
            ["msb.sandbox.runs.ended", "msb.exec.latency"]
        );
        // web: every field; idle: uptime only; daemon: one point each.
        let expected = msb_metrics::INSTRUMENTS.len() as u64 + 1 + 2;
        assert_eq!(count, expected);
        let run_start = nanos(snapshot.sandboxes[0].run_start());
        for metric in &scope.metrics[..families.len()] {
            let family: Vec<_> = msb_metrics::INSTRUMENTS
                .iter()
                .filter(|i| i.name == metric.name)
                .collect();
            match metric.data.as_ref().unwrap() {
                metric::Data::Sum(sum) => {
                    assert_eq!(family[0].kind, Kind::Counter, "{}", metric.name);
                    assert!(sum.is_monotonic);
                    assert_eq!(sum.data_points.len(), family.len(), "{}", metric.name);
                    assert!(sum
                        .data_points
                        .iter()
                        .all(|p| p.start_time_unix_nano == run_start));
                }
                metric::Data::Gauge(gauge) => {
                    assert_eq!(family[0].kind, Kind::Gauge, "{}", metric.name);
                    let web = gauge
                        .data_points
                        .iter()
                        .filter(|p| attribute(p, "sandbox.name") == Some("web"))
                        .count();
                    assert_eq!(web, family.len(), "{}", metric.name);
                }
                other => panic!("{}: {other:?}", metric.name),
            }
        }
        let faults = scope
            .metrics
            .iter()
            .find(|m| m.name == "container.paging.faults")
            .unwrap();
        let Some(metric::Data::Sum(sum)) = &faults.data else {
            panic!("faults are a sum")
        };
        let mut kinds: Vec<&str> = sum
            .data_points
            .iter()
            .map(|p| attribute(p, "system.paging.fault.type").unwrap())
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["major", "minor"]);
        let Some(metric::Data::Histogram(h)) = &scope.metrics.last().unwrap().data else {
            panic!("exec latency is a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, [1, 1, 1]);
        assert_eq!(h.data_points[0].count, 3);
    }
}
