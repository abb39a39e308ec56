//! OTLP metrics: every `OTEL_METRIC_EXPORT_INTERVAL`, one request with every registry
//! instrument, built here from the same data the Prometheus endpoint renders.
//!
//! Types are the registry's: gauges are OTLP gauges, counters cumulative monotonic sums whose
//! start time is the start of the sandbox's run (a restart is a reset, as the data model
//! expects), histograms explicit-bucket cumulative histograms. Per-sandbox points carry
//! `sandbox.name`, `sandbox.id` and allow-listed user labels, as microsandbox's do. Why msbd
//! builds the protobuf itself rather than through the SDK's meter: docs/adr/007.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use msb_metrics::Kind;
use msb_telemetry::otlp::Payload;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exposition::{self, Value};
use super::state::Daemon;

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

/// The request of one export, and how many data points it carries.
pub fn build_request(daemon: &Daemon) -> Result<(ExportMetricsServiceRequest, u64), String> {
    let rows = daemon.store().list_sandboxes().map_err(|e| e.to_string())?;
    let live = exposition::live_sandboxes(daemon, &rows);
    let now = nanos(SystemTime::now());
    let mut metrics = Vec::new();
    let mut count = 0u64;
    for family in msb_metrics::families() {
        let first = &family[0];
        let points: Vec<NumberDataPoint> = live
            .iter()
            .flat_map(|sandbox| family.iter().map(move |instrument| (sandbox, instrument)))
            .filter_map(|(sandbox, instrument)| {
                let value = instrument.value(&sandbox.latest.sample)?;
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
                    time_unix_nano: sandbox.latest.sample.timestamp_ms * 1_000_000,
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
    for family in exposition::daemon_families(daemon, &rows, &live) {
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
        attributes: key_values(&daemon.telemetry.resource_attributes()),
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
    Ok((request, count))
}

/// Exports every interval until msbd stops; never waits on the collector (the exporter's
/// queue does).
pub fn spawn(daemon: Arc<Daemon>) {
    let Some(exporter) = daemon.telemetry.metrics_exporter.clone() else {
        return;
    };
    let interval = daemon.telemetry.otlp.metric_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let built = {
                let daemon = daemon.clone();
                tokio::task::spawn_blocking(move || build_request(&daemon)).await
            };
            match built {
                Ok(Ok((request, points))) => exporter.submit(Payload::Metrics(request), points),
                Ok(Err(e)) => tracing::warn!("OTLP metrics: reading the catalog: {e}"),
                Err(e) => tracing::warn!("OTLP metrics: {e}"),
            }
        }
    });
}
