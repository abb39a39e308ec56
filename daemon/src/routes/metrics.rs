//! Live metrics, the metrics stream and capacity.

use msb_api::operations::{MetricsQuery, StreamQuery};
use std::sync::Arc;
use std::time::Duration;

use crate::extract::Json;
use crate::extract::Query;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use msb_runtime::config::SandboxConfig;
use msb_runtime::lifecycle::SandboxStatus;
use msb_store::SandboxRow;
use tokio_stream::wrappers::ReceiverStream;

use super::sandboxes::rfc3339;
use crate::error::ApiError;
use crate::live::state_of;
use crate::state::Daemon;
use msb_api::{CapacityReport, MetricsReport, SandboxHeadroom};

/// The report for one catalog row, if it has a sample.
fn report(daemon: &Daemon, row: &SandboxRow) -> Result<Option<MetricsReport>, ApiError> {
    let Some(latest) = daemon.live.get(&row.id) else {
        return Ok(None);
    };
    let status: SandboxStatus = row
        .status
        .parse()
        .map_err(|e| ApiError::internal("catalog", e))?;
    let config: SandboxConfig = serde_json::from_str(&row.config_json)
        .map_err(|e| ApiError::internal("stored sandbox config", e))?;
    let state = state_of(&latest, status.is_active());
    let s = latest.sample;
    Ok(Some(MetricsReport {
        name: row.name.clone(),
        state: serde_json::to_value(state)
            .expect("state serialises")
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        cpus: config.cpus,
        timestamp: rfc3339(s.timestamp_ms as i64),
        sample: s,
    }))
}

/// Every sandbox with a sample, sorted by name; exited ones only with `all`.
fn reports(daemon: &Daemon, all: bool) -> Result<Vec<MetricsReport>, ApiError> {
    let rows = daemon.store().list_sandboxes()?;
    let mut out = Vec::new();
    for row in &rows {
        if let Some(r) = report(daemon, row)? {
            if all || r.state != "exited" {
                out.push(r);
            }
        }
    }
    Ok(out)
}

pub async fn list(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<Vec<MetricsReport>>, ApiError> {
    Ok(Json(reports(&daemon, query.all)?))
}

pub async fn one(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> Result<Json<MetricsReport>, ApiError> {
    let row = daemon.sandbox(&name)?;
    if let Some(r) = report(&daemon, &row)? {
        return Ok(Json(r));
    }
    let config: SandboxConfig = serde_json::from_str(&row.config_json)
        .map_err(|e| ApiError::internal("stored sandbox config", e))?;
    if config.metrics_interval().is_none() {
        return Err(ApiError::Conflict(format!(
            "metrics are disabled for sandbox {name:?} (--metrics-interval 0)"
        )));
    }
    Err(ApiError::Conflict(format!(
        "no metrics sample for sandbox {name:?} yet"
    )))
}

pub async fn stream(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    query.validate()?;
    let interval_ms = query.interval_ms.unwrap_or(1000);
    if let Some(name) = &query.name {
        daemon.sandbox(name)?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
        loop {
            ticker.tick().await;
            let batch = match &query.name {
                Some(name) => match daemon.sandbox(name) {
                    Ok(row) => report(&daemon, &row).ok().flatten().into_iter().collect(),
                    Err(_) => return,
                },
                None => reports(&daemon, query.all).unwrap_or_default(),
            };
            let lines: String = batch
                .iter()
                .map(|r| serde_json::to_string(r).expect("report serialises") + "\n")
                .collect();
            if !lines.is_empty() && tx.send(Ok(lines)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("static response parts"))
}

pub async fn capacity(State(daemon): State<Arc<Daemon>>) -> Result<Json<CapacityReport>, ApiError> {
    Ok(Json(capacity_report(&daemon)?))
}

/// What the host has and what running sandboxes were given and use (also exported to Prometheus).
pub fn capacity_report(daemon: &Daemon) -> Result<CapacityReport, ApiError> {
    let rows = daemon.store().list_sandboxes()?;
    capacity_of(daemon, &rows)
}

/// [`capacity_report`] over catalog rows the caller already has.
pub fn capacity_of(daemon: &Daemon, rows: &[SandboxRow]) -> Result<CapacityReport, ApiError> {
    let (host_memory_bytes, host_memory_available_bytes) = meminfo();
    let mut report = CapacityReport {
        host_cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        host_memory_bytes,
        host_memory_available_bytes,
        cpus_committed: 0.0,
        sandboxes_without_cpu_limit: 0,
        memory_committed_bytes: 0,
        sandboxes_without_memory_limit: 0,
        cpu_percent_used: 0.0,
        memory_used_bytes: 0,
        msb_home_free_bytes: nix::sys::statvfs::statvfs(daemon.home.root())
            .ok()
            .map(|s| s.blocks_available() * s.fragment_size()),
        sandboxes: Vec::new(),
    };
    for row in rows {
        let status: SandboxStatus = row
            .status
            .parse()
            .map_err(|e| ApiError::internal("catalog", e))?;
        if !status.is_active() {
            continue;
        }
        let config: SandboxConfig = serde_json::from_str(&row.config_json)
            .map_err(|e| ApiError::internal("stored sandbox config", e))?;
        match config.cpus {
            Some(c) => report.cpus_committed += c,
            None => report.sandboxes_without_cpu_limit += 1,
        }
        match config.memory_mib {
            Some(m) => report.memory_committed_bytes += m << 20,
            None => report.sandboxes_without_memory_limit += 1,
        }
        let sample = daemon.live.get(&row.id).map(|l| l.sample);
        let sample = sample.as_ref();
        report.cpu_percent_used += sample.and_then(|s| s.cpu_percent).unwrap_or(0.0);
        report.memory_used_bytes += sample.and_then(|s| s.memory_bytes).unwrap_or(0);
        report.sandboxes.push(SandboxHeadroom {
            name: row.name.clone(),
            cpus: config.cpus,
            cpu_percent: sample.and_then(|s| s.cpu_percent),
            memory_limit_bytes: sample.and_then(|s| s.memory_limit_bytes),
            memory_headroom_bytes: sample.and_then(|s| s.memory_available_bytes),
            upper_free_bytes: sample.and_then(|s| s.upper_free_bytes),
        });
    }
    Ok(report)
}

fn meminfo() -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    (kib("MemTotal:"), kib("MemAvailable:"))
}
