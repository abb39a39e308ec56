//! History endpoints: they read DuckDB on a blocking thread, under the store's lock.

use msb_api::operations::WindowQuery;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;

use crate::error::{error_chain, ApiError};
use crate::state::Daemon;
use msb_api::{ExportRequest, ExportResponse, HistoryResponse, SqlRequest, SqlResponse};

/// `(since, until, step)` of a window query; `interval_ms` is the sampling interval the default
/// step is never finer than.
fn resolve(query: &WindowQuery, interval_ms: i64) -> Result<(i64, i64, i64), ApiError> {
    let until = query.until_ms.unwrap_or_else(msb_store::catalog::now_ms);
    let step = query.step_ms.unwrap_or_else(|| {
        msb_store::default_step_ms(until.saturating_sub(query.since_ms), interval_ms)
    });
    if step < 100 {
        return Err(ApiError::Invalid(format!(
            "step {step} ms is shorter than 100 ms"
        )));
    }
    if until <= query.since_ms {
        return Err(ApiError::Invalid(
            "the window is empty: until must be after since".into(),
        ));
    }
    if (until - query.since_ms) / step > 100_000 {
        return Err(ApiError::Invalid(
            "the window holds more than 100000 steps; use a larger step".into(),
        ));
    }
    Ok((query.since_ms, until, step))
}

/// The sampling interval assumed for the fleet, and for a sandbox whose configuration cannot be
/// read: msb's default.
const DEFAULT_INTERVAL_MS: i64 = 1_000;

fn series_error(e: msb_store::SeriesError) -> ApiError {
    match e {
        msb_store::SeriesError::BadWindow { .. } => ApiError::Invalid(e.to_string()),
        other => ApiError::Invalid(error_chain(&other)),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal("history query", e))?
}

fn flush(daemon: &Daemon) {
    // Samples already received should be visible to a query made after them.
    if let Some(series) = &daemon.series {
        if let Err(e) = series.flush() {
            tracing::warn!("flushing the series writer: {e}");
        }
    }
}

pub async fn sandbox(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let row = daemon.sandbox(&name)?;
    let interval_ms = serde_json::from_str::<msb_runtime::config::SandboxConfig>(&row.config_json)
        .ok()
        .and_then(|c| c.metrics_interval())
        .map_or(DEFAULT_INTERVAL_MS, |ms| ms as i64);
    let (since, until, step) = resolve(&query, interval_ms)?;
    blocking(move || {
        flush(&daemon);
        let points = daemon
            .store()
            .history(&row.id, since, until, step)
            .map_err(series_error)?;
        let points = points
            .iter()
            .map(|p| serde_json::to_value(p).expect("point serialises"))
            .collect();
        Ok(Json(HistoryResponse {
            name,
            since_ms: since,
            until_ms: until,
            step_ms: step,
            points,
        }))
    })
    .await
}

pub async fn fleet(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let (since, until, step) = resolve(&query, DEFAULT_INTERVAL_MS)?;
    blocking(move || {
        flush(&daemon);
        let points = daemon
            .store()
            .fleet(since, until, step)
            .map_err(series_error)?;
        let points = points
            .iter()
            .map(|p| serde_json::to_value(p).expect("point serialises"))
            .collect();
        Ok(Json(HistoryResponse {
            name: "*".into(),
            since_ms: since,
            until_ms: until,
            step_ms: step,
            points,
        }))
    })
    .await
}

pub async fn sql(
    State(daemon): State<Arc<Daemon>>,
    Json(request): Json<SqlRequest>,
) -> Result<Json<SqlResponse>, ApiError> {
    blocking(move || {
        flush(&daemon);
        let (columns, rows) = daemon
            .store()
            .read_only_sql(&request.sql)
            .map_err(series_error)?;
        Ok(Json(SqlResponse { columns, rows }))
    })
    .await
}

pub async fn export(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Json(request): Json<ExportRequest>,
) -> Result<Json<ExportResponse>, ApiError> {
    let row = daemon.sandbox(&name)?;
    let path = std::path::PathBuf::from(&request.path);
    if !path.is_absolute() || path.extension().is_none_or(|e| e != "parquet") {
        return Err(ApiError::Invalid(format!(
            "{} must be an absolute path ending in .parquet",
            request.path
        )));
    }
    if !path.parent().is_some_and(|p| p.is_dir()) {
        return Err(ApiError::Invalid(format!(
            "the directory of {} does not exist",
            request.path
        )));
    }
    blocking(move || {
        flush(&daemon);
        let rows = daemon
            .store()
            .export_parquet(&row.id, request.since_ms, request.until_ms, &path)
            .map_err(series_error)?;
        Ok(Json(ExportResponse {
            rows,
            path: request.path,
        }))
    })
    .await
}
