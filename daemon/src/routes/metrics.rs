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
use msb_store::SandboxRow;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::live::state_of;
use crate::service::info::rfc3339;
use crate::service::{config_of_row, status_of_row};
use crate::state::Daemon;
use msb_api::{CapacityReport, MetricsReport};

/// The report for one catalog row, if it has a sample.
fn report(daemon: &Daemon, row: &SandboxRow) -> Result<Option<MetricsReport>, ApiError> {
    let Some(latest) = daemon.live.get(&row.id) else {
        return Ok(None);
    };
    let status = status_of_row(row)?;
    let config = config_of_row(row)?;
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
    let config = config_of_row(&row)?;
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
    Ok(Json(crate::service::capacity::capacity_report(&daemon)?))
}
