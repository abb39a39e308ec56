//! The API router: one file per group of endpoints.

pub mod history;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod sandboxes;
pub mod server;
pub mod session;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use super::state::Daemon;

pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/server", get(server::status))
        .route("/v1/server/shutdown", post(server::shutdown))
        .route("/v1/health", get(server::health))
        .route("/v1/metrics", get(metrics::list))
        .route("/v1/metrics/stream", get(metrics::stream))
        .route("/v1/capacity", get(metrics::capacity))
        .route("/v1/sandboxes/{name}/metrics", get(metrics::one))
        .route("/v1/sandboxes/{name}/history", get(history::sandbox))
        .route("/v1/sandboxes/{name}/export", post(history::export))
        .route("/v1/history/fleet", get(history::fleet))
        .route("/v1/sql", post(history::sql))
        .route(
            "/v1/sandboxes",
            get(sandboxes::list).post(sandboxes::create),
        )
        .route(
            "/v1/sandboxes/{name}",
            get(sandboxes::inspect).delete(sandboxes::remove),
        )
        .route("/v1/sandboxes/{name}/start", post(lifecycle::start))
        .route("/v1/sandboxes/{name}/stop", post(lifecycle::stop))
        .route("/v1/sandboxes/{name}/kill", post(lifecycle::kill))
        .route("/v1/sandboxes/{name}/wait", post(lifecycle::wait))
        .route("/v1/sandboxes/{name}/logs", get(logs::logs))
        .route("/v1/sandboxes/{name}/session", get(session::session))
        .with_state(daemon)
}
