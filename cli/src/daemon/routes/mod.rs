//! The API router: one file per group of endpoints.

pub mod history;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod sandboxes;
pub mod server;
pub mod session;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
        .route_layer(axum::middleware::from_fn(trace_request))
        .with_state(daemon)
}

/// One span per API request (OTel HTTP server conventions), the child of the caller's
/// `traceparent` when it sends one.
async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let span = tracing::info_span!(
        "api.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let (traceparent, tracestate) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header("traceparent"), header("tracestate"))
    };
    if let Some(traceparent) = traceparent {
        match msb_telemetry::propagation::context_from(&traceparent, tracestate.as_deref()) {
            Some(parent) => {
                let _ = span.set_parent(parent);
            }
            None => tracing::debug!("ignoring a malformed traceparent {traceparent:?}"),
        }
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
