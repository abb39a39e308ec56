//! The API router: one file per group of endpoints.

pub mod df;
pub mod exec;
pub mod history;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod sandboxes;
pub mod server;
pub mod session;
pub mod session_json;
pub mod volumes;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::state::Daemon;

/// How one operation is served.
type Handler = fn() -> MethodRouter<Arc<Daemon>>;

/// Every operation msbd serves: `(METHOD, path, handler)`. It is exactly the operations of the
/// API document (`msb_api::operations`); a test compares the two.
pub const ROUTES: &[(&str, &str, Handler)] = &[
    ("GET", "/v1/server", || get(server::status)),
    ("POST", "/v1/server/shutdown", || post(server::shutdown)),
    ("GET", "/v1/health", || get(server::health)),
    ("GET", "/v1/metrics", || get(metrics::list)),
    ("GET", "/v1/metrics/stream", || get(metrics::stream)),
    ("GET", "/v1/capacity", || get(metrics::capacity)),
    ("GET", "/v1/sandboxes/{name}/metrics", || get(metrics::one)),
    ("GET", "/v1/sandboxes/{name}/history", || {
        get(history::sandbox)
    }),
    ("POST", "/v1/sandboxes/{name}/export", || {
        post(history::export)
    }),
    ("GET", "/v1/history/fleet", || get(history::fleet)),
    ("POST", "/v1/sql", || post(history::sql)),
    ("GET", "/v1/sandboxes", || get(sandboxes::list)),
    ("POST", "/v1/sandboxes", || post(sandboxes::create)),
    ("GET", "/v1/sandboxes/{name}", || get(sandboxes::inspect)),
    ("DELETE", "/v1/sandboxes/{name}", || {
        delete(sandboxes::remove)
    }),
    ("POST", "/v1/sandboxes/{name}/start", || {
        post(lifecycle::start)
    }),
    ("POST", "/v1/sandboxes/{name}/stop", || {
        post(lifecycle::stop)
    }),
    ("POST", "/v1/sandboxes/{name}/kill", || {
        post(lifecycle::kill)
    }),
    ("POST", "/v1/sandboxes/{name}/wait", || {
        post(lifecycle::wait)
    }),
    ("GET", "/v1/sandboxes/{name}/logs", || get(logs::logs)),
    ("GET", "/v1/sandboxes/{name}/session", || {
        get(session::session)
    }),
    ("GET", "/v1/df", || get(df::disk_usage)),
    ("GET", "/v1/volumes", || get(volumes::list)),
    ("POST", "/v1/volumes", || post(volumes::create)),
    ("GET", "/v1/volumes/{name}", || get(volumes::inspect)),
    ("DELETE", "/v1/volumes/{name}", || delete(volumes::remove)),
    ("POST", "/v1/sandboxes/{name}/exec", || post(exec::exec)),
    ("POST", "/v1/sandboxes/{name}/drain", || post(exec::drain)),
];

pub fn router(daemon: Arc<Daemon>) -> Router {
    let mut by_path: Vec<(&str, MethodRouter<Arc<Daemon>>)> = Vec::new();
    for (_, path, handler) in ROUTES {
        match by_path.iter_mut().find(|(p, _)| p == path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler()),
            None => by_path.push((path, handler())),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
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

#[cfg(test)]
mod tests {
    /// msbd serves exactly the operations the API document declares: a route without a
    /// declaration (or a declaration without a route) fails here.
    #[test]
    fn routes_are_the_documented_operations() {
        let mut served: Vec<(String, String)> = super::ROUTES
            .iter()
            .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        let mut documented: Vec<(String, String)> = msb_api::operations::operations()
            .into_iter()
            .map(|(method, path)| (method.to_owned(), path))
            .collect();
        served.sort();
        documented.sort();
        assert_eq!(served, documented);
    }
}
