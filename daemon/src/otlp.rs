//! OTLP metrics: every `OTEL_METRIC_EXPORT_INTERVAL`, one request with every registry
//! instrument, built (`msb_telemetry::exposition::otlp`, where its shape is described) from the
//! same snapshot the Prometheus endpoint renders, and handed to the exporter's queue.

use std::sync::Arc;

use msb_telemetry::otlp::Payload;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::exposition;
use super::state::Daemon;

/// The request of one export, and how many data points it carries.
pub fn build_request(daemon: &Daemon) -> Result<(ExportMetricsServiceRequest, u64), String> {
    let snapshot = exposition::snapshot(daemon)?;
    let resource = daemon.telemetry.resource_attributes();
    Ok(msb_telemetry::exposition::otlp::metrics_request(
        &snapshot, &resource,
    ))
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
