//! Daemon status, health and shutdown.

use std::sync::Arc;

use crate::extract::Json;
use axum::extract::State;
use axum::http::StatusCode;
use msb_runtime::lifecycle::SandboxStatus;

use crate::error::ApiError;
use crate::state::Daemon;
use msb_api::{ServerStatus, StoreHealth};

pub async fn status(State(daemon): State<Arc<Daemon>>) -> Result<Json<ServerStatus>, ApiError> {
    let sandboxes = daemon.store().list_sandboxes()?;
    let active = sandboxes
        .iter()
        .filter(|s| {
            s.status
                .parse::<SandboxStatus>()
                .is_ok_and(|st| st.is_active())
        })
        .count();
    Ok(Json(ServerStatus {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        msb_home: daemon.home.root().display().to_string(),
        socket: daemon.home.socket().display().to_string(),
        uptime_secs: daemon.started.elapsed().as_secs_f64(),
        sandboxes_total: sandboxes.len(),
        sandboxes_active: active,
        prometheus_address: daemon.prometheus_addr.get().cloned(),
        executable_dev: daemon.executable.map(|(dev, _)| dev),
        executable_ino: daemon.executable.map(|(_, ino)| ino),
        otlp: otlp_status(&daemon),
        warm_supervisors: msb_api::WarmStatus {
            target: daemon.config.warm_supervisors,
            idle: daemon.warm.idle(),
            warm_starts: daemon
                .warm
                .warm_starts
                .load(std::sync::atomic::Ordering::Relaxed),
            cold_starts: daemon
                .warm
                .cold_starts
                .load(std::sync::atomic::Ordering::Relaxed),
            booted_starts: daemon
                .warm
                .booted_starts
                .load(std::sync::atomic::Ordering::Relaxed),
            disks_handed_on: daemon
                .warm
                .disks_handed_on
                .load(std::sync::atomic::Ordering::Relaxed),
        },
    }))
}

fn otlp_status(daemon: &Daemon) -> Vec<msb_api::OtlpExportStatus> {
    use std::sync::atomic::Ordering;
    let telemetry = &daemon.telemetry;
    [
        (&telemetry.metrics_exporter, &telemetry.otlp.metrics),
        (&telemetry.traces_exporter, &telemetry.otlp.traces),
    ]
    .into_iter()
    .filter_map(|(exporter, config)| {
        let (exporter, config) = (exporter.as_ref()?, config.as_ref()?);
        let stats = exporter.stats();
        let last = stats.last_success_ms.load(Ordering::Relaxed);
        Some(msb_api::OtlpExportStatus {
            signal: exporter.signal.as_str().to_owned(),
            endpoint: exporter.endpoint.clone(),
            protocol: match config.protocol {
                msb_telemetry::otlp::Protocol::Grpc => "grpc",
                msb_telemetry::otlp::Protocol::HttpProtobuf => "http/protobuf",
            }
            .to_owned(),
            succeeded: stats.succeeded.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            last_success: (last > 0).then(|| crate::service::info::rfc3339(last as i64)),
            queued_bytes: stats.queued_bytes.load(Ordering::Relaxed),
        })
    })
    .collect()
}

/// Stops msbd. Supervisors, and so running sandboxes, keep running.
pub async fn shutdown(State(daemon): State<Arc<Daemon>>) -> StatusCode {
    daemon.shutdown.notify_one();
    StatusCode::ACCEPTED
}

pub async fn health(State(daemon): State<Arc<Daemon>>) -> Result<Json<StoreHealth>, ApiError> {
    let store = daemon.store();
    let health = store.health()?;
    Ok(Json(StoreHealth {
        path: store.path().display().to_string(),
        schema_version: health.schema_version,
        sandboxes: health.sandboxes,
        file_bytes: health.file_bytes,
    }))
}
