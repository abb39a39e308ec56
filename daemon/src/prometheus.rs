//! The Prometheus scrape endpoint: `GET /metrics` on loopback TCP (default `127.0.0.1:9464`).
//!
//! Rendered from the instrument registry and the latest samples on every scrape: counters are
//! counters (`_total`, with a `_created` timestamp in OpenMetrics), gauges are gauges, every
//! per-sandbox series carries `sandbox_name` and `sandbox_id`, and a removed sandbox's series are
//! gone at the next scrape. A value whose source is missing is omitted, never exported as 0.
//! Content negotiation: OpenMetrics 1.0 when the scraper accepts it, else text format 0.0.4.
//! Why by hand rather than through a client library's registry: see docs/adr/005.

use std::net::SocketAddr;
use std::sync::Arc;

use super::exposition;
use super::state::Daemon;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Binds the endpoint if it can: a taken port logs one warning and msbd runs without it.
pub async fn start(daemon: Arc<Daemon>) -> Option<SocketAddr> {
    let wanted = daemon.config.prometheus_addr.clone();
    if wanted == "off" {
        return None;
    }
    let addr: SocketAddr = match wanted.parse() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!("MSB_PROMETHEUS_ADDR={wanted:?} is not an address ({e}); the Prometheus endpoint is off");
            return None;
        }
    };
    if !addr.ip().is_loopback() {
        tracing::warn!("the Prometheus endpoint listens on {addr}, which is not loopback: other hosts can read sandbox metrics");
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(
                "the Prometheus endpoint cannot listen on {addr} ({e}); running without it"
            );
            return None;
        }
    };
    let bound = listener.local_addr().ok()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(daemon);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the Prometheus endpoint stopped: {e}");
        }
    });
    tracing::info!("Prometheus endpoint on http://{bound}/metrics");
    Some(bound)
}

async fn scrape(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let rendered = exposition::snapshot(&daemon)
        .map(|snapshot| msb_telemetry::exposition::prometheus::render(&snapshot, openmetrics));
    match rendered {
        Ok(body) => {
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
