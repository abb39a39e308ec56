//! The Prometheus scrape endpoint: `GET /metrics` on loopback TCP (default `127.0.0.1:9464`).
//!
//! Rendered from the instrument registry and the latest samples on every scrape: counters are
//! counters (`_total`, with a `_created` timestamp in OpenMetrics), gauges are gauges, every
//! per-sandbox series carries `sandbox_name` and `sandbox_id`, and a removed sandbox's series are
//! gone at the next scrape. A value whose source is missing is omitted, never exported as 0.
//! Content negotiation: OpenMetrics 1.0 when the scraper accepts it, else text format 0.0.4.
//! Why by hand rather than through a client library's registry: see docs/adr/005.
//!
//! DNS rebinding: a web page whose name is re-pointed at 127.0.0.1 could read the endpoint from
//! a browser on this host. Such a request carries the page's name in its `Host` header, so a
//! request is answered only when its `Host` is a loopback name (`localhost`, `127.0.0.1`,
//! `[::1]`, any port) or the address the endpoint is bound to (any IP address of the host when
//! bound to all of them); otherwise `421` ([`host_allowed`]).

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
        .layer(axum::middleware::from_fn(move |request, next| {
            check_host(bound, request, next)
        }))
        .with_state(daemon);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the Prometheus endpoint stopped: {e}");
        }
    });
    tracing::info!("Prometheus endpoint on http://{bound}/metrics");
    Some(bound)
}

/// Whether a request whose `Host` header is `host` (`None`: no header, which no browser sends)
/// may be answered by the endpoint bound to `bound`.
pub fn host_allowed(host: Option<&str>, bound: SocketAddr) -> bool {
    let Some(host) = host else {
        return true;
    };
    let host = host.trim().to_ascii_lowercase();
    // `name[:port]`, where an IPv6 name is bracketed.
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port))
            if !port.contains(']') && (!name.contains(':') || name.ends_with(']')) =>
        {
            (name, Some(port))
        }
        _ => (host.as_str(), None),
    };
    if matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
        return true;
    }
    let bound_name = match bound {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let port_ok = port.is_none_or(|p| p == bound.port().to_string());
    // Bound to every address: any IP literal names this host (a rebound name never is one).
    if bound.ip().is_unspecified() {
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        return port_ok && literal.parse::<std::net::IpAddr>().is_ok();
    }
    name == bound_name && port_ok
}

async fn check_host(
    bound: SocketAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if host_allowed(host.as_deref(), bound) {
        return next.run(request).await;
    }
    let host = host.unwrap_or_default();
    tracing::warn!(host, "refused a Prometheus request for another host name");
    (
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        format!(
            "msbd's Prometheus endpoint answers only requests for localhost, 127.0.0.1, [::1] or {bound}, not Host: {host:?} (DNS rebinding protection); scrape http://{bound}/metrics\n"
        ),
    )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_loopback_names_and_the_bound_address_only() {
        let bound: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        for ok in [
            None,
            Some("localhost"),
            Some("LOCALHOST:9464"),
            Some("127.0.0.1:9464"),
            Some("127.0.0.1"),
            Some("[::1]:9464"),
            Some("[::1]"),
        ] {
            assert!(host_allowed(ok, bound), "{ok:?}");
        }
        for refused in [
            Some("evil.example"),
            Some("evil.example:9464"),
            Some("localhost.evil.example"),
            Some("127.0.0.1.nip.io:9464"),
            Some(""),
        ] {
            assert!(!host_allowed(refused, bound), "{refused:?}");
        }
        let everywhere: SocketAddr = "10.1.2.3:9100".parse().unwrap();
        assert!(host_allowed(Some("10.1.2.3:9100"), everywhere));
        assert!(host_allowed(Some("10.1.2.3"), everywhere));
        assert!(!host_allowed(Some("10.1.2.3:80"), everywhere));
        let v6: SocketAddr = "[fd00::1]:9464".parse().unwrap();
        assert!(host_allowed(Some("[fd00::1]:9464"), v6));
        assert!(!host_allowed(Some("fd00::1"), v6));
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        assert!(host_allowed(Some("192.168.1.5:9464"), any));
        assert!(!host_allowed(Some("evil.example:9464"), any));
    }
}
