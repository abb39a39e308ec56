//! History endpoints: they read DuckDB on a blocking thread, under the store's lock.

use msb_api::operations::WindowQuery;
use std::sync::Arc;

use crate::extract::Json;
use crate::extract::Query;
use axum::extract::{Path, State};

use crate::error::{error_chain, ApiError};
use crate::service::config_of_row;
use crate::state::Daemon;
use msb_api::{ExportRequest, ExportResponse, HistoryResponse, SqlRequest, SqlResponse};

/// `(since, until, step)` of a window query; `interval_ms` is the sampling interval the default
/// step is never finer than.
fn resolve(query: &WindowQuery, interval_ms: i64) -> Result<(i64, i64, i64), ApiError> {
    query.validate()?;
    let until = query.until_ms.unwrap_or_else(msb_store::catalog::now_ms);
    if until <= query.since_ms {
        return Err(ApiError::Unprocessable(
            "the window is empty: until_ms must be after since_ms".into(),
        ));
    }
    let step = query.step_ms.unwrap_or_else(|| {
        msb_store::default_step_ms(until.saturating_sub(query.since_ms), interval_ms)
    });
    let step = msb_api::requests::fit_step(query.since_ms, until, step);
    Ok((query.since_ms, until, step))
}

/// The sampling interval assumed for the fleet, and for a sandbox whose configuration cannot be
/// read: msb's default.
const DEFAULT_INTERVAL_MS: i64 = 1_000;

/// A statement or window the store refuses is the request's fault (422); a store that cannot
/// be written or read is msbd's (500).
fn series_error(e: msb_store::SeriesError) -> ApiError {
    use msb_store::SeriesError as E;
    match e {
        E::Write(_) | E::WriterGone => ApiError::Internal(error_chain(&e)),
        other => ApiError::Unprocessable(error_chain(&other)),
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

/// The answer for a window of points.
fn window_response<P: serde::Serialize>(
    name: String,
    (since_ms, until_ms, step_ms): (i64, i64, i64),
    points: &[P],
) -> Json<HistoryResponse> {
    Json(HistoryResponse {
        name,
        since_ms,
        until_ms,
        step_ms,
        points: points
            .iter()
            .map(|p| serde_json::to_value(p).expect("point serialises"))
            .collect(),
    })
}

pub async fn sandbox(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let row = daemon.sandbox(&name)?;
    let interval_ms = config_of_row(&row)
        .ok()
        .and_then(|c| c.metrics_interval())
        .map_or(DEFAULT_INTERVAL_MS, |ms| ms as i64);
    let window = resolve(&query, interval_ms)?;
    blocking(move || {
        flush(&daemon);
        let (since, until, step) = window;
        let points = daemon
            .store()
            .history(&row.id, since, until, step)
            .map_err(series_error)?;
        Ok(window_response(name, window, &points))
    })
    .await
}

pub async fn fleet(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let window = resolve(&query, DEFAULT_INTERVAL_MS)?;
    blocking(move || {
        flush(&daemon);
        let (since, until, step) = window;
        let points = daemon
            .store()
            .fleet(since, until, step)
            .map_err(series_error)?;
        Ok(window_response("*".into(), window, &points))
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
    request.validate()?;
    let row = daemon.sandbox(&name)?;
    let path = std::path::PathBuf::from(&request.path);
    if request.until_ms <= request.since_ms {
        return Err(ApiError::Unprocessable(
            "the window is empty: until_ms must be after since_ms".into(),
        ));
    }
    if !path.parent().is_some_and(|p| p.is_dir()) {
        return Err(ApiError::Unprocessable(format!(
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
