//! `GET /v1/sandboxes/{name}/logs`: the output log as JSON Lines, optionally followed.

use msb_api::operations::LogsQuery;
use std::sync::Arc;
use std::time::Duration;

use crate::extract::Query;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use msb_runtime::lifecycle::SandboxStatus;
use msb_runtime::logs::{dropped_bytes, read_log, read_more, LogEntry};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::state::Daemon;

/// The response header stating how many bytes of older output the log's cap dropped.
pub const DROPPED_HEADER: &str = "x-msb-log-dropped-bytes";

pub async fn logs(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    query.validate()?;
    let row = daemon.sandbox(&name)?;
    let path = daemon.home.sandbox(&row.id).output_log();
    // With a tail, read from the end: never the whole log into msbd.
    let (entries, mut cursor) =
        read_log(&path, query.tail).map_err(|e| ApiError::internal("reading the output log", e))?;
    let dropped = dropped_bytes(&path);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    let follow = query.follow;
    tokio::spawn(async move {
        let send = |entries: Vec<LogEntry>| {
            entries
                .into_iter()
                .map(|e| serde_json::to_string(&e).expect("entry serialises") + "\n")
                .collect::<String>()
        };
        if !entries.is_empty() && tx.send(Ok(send(entries))).await.is_err() {
            return;
        }
        if !follow {
            return;
        }
        loop {
            let running = daemon
                .store()
                .sandbox_by_id(&row.id)
                .ok()
                .flatten()
                .and_then(|r| r.status.parse::<SandboxStatus>().ok())
                .is_some_and(|s| s.is_active());
            let more = match read_more(&path, &mut cursor) {
                Ok(more) => more,
                Err(_) => return,
            };
            if !more.is_empty() && tx.send(Ok(send(more))).await.is_err() {
                return;
            }
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        // Output the log's cap dropped before the oldest entry kept (`msb logs` says so).
        .header(DROPPED_HEADER, dropped)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("static response parts"))
}
