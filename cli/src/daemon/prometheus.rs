//! The Prometheus scrape endpoint: `GET /metrics` on loopback TCP (default `127.0.0.1:9464`).
//!
//! Rendered from the instrument registry and the latest samples on every scrape: counters are
//! counters (`_total`, with a `_created` timestamp in OpenMetrics), gauges are gauges, every
//! per-sandbox series carries `sandbox_name` and `sandbox_id`, and a removed sandbox's series are
//! gone at the next scrape. A value whose source is missing is omitted, never exported as 0.
//! Content negotiation: OpenMetrics 1.0 when the scraper accepts it, else text format 0.0.4.
//! Why by hand rather than through a client library's registry: see docs/adr/005.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use msb_metrics::prometheus::{family_name, sample_name};
use msb_metrics::{Kind, INSTRUMENTS};
use msb_runtime::lifecycle::SandboxStatus;

use super::state::Daemon;

/// Default listen address; `MSB_PROMETHEUS_ADDR` overrides (`off` disables, port 0 picks one).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Binds the endpoint if it can: a taken port logs one warning and msbd runs without it.
pub async fn start(daemon: Arc<Daemon>) -> Option<SocketAddr> {
    let wanted = std::env::var("MSB_PROMETHEUS_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
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
    match render(&daemon, openmetrics) {
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

/// User labels exported as series labels: the keys in `MSB_PROMETHEUS_LABELS` (comma-separated),
/// none by default (every distinct value is a new series). Names are sanitised to Prometheus'
/// `[a-zA-Z_][a-zA-Z0-9_]*` (`user.id` -> `user_id`, as OTLP translation does); one that would
/// collide with msb's own labels gets a `label_` prefix.
fn label_allow_list() -> Vec<(String, String)> {
    std::env::var("MSB_PROMETHEUS_LABELS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|key| {
            let mut name: String = key
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            if name.starts_with(|c: char| c.is_ascii_digit())
                || ["sandbox_name", "sandbox_id", "status"].contains(&name.as_str())
            {
                name = format!("label_{name}");
            }
            (key.to_owned(), name)
        })
        .collect()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition body.
pub fn render(daemon: &Daemon, openmetrics: bool) -> Result<String, String> {
    let rows = daemon.store().list_sandboxes().map_err(|e| e.to_string())?;
    let mut out = String::new();
    // Per-sandbox series, one family per instrument.
    let live: Vec<_> = rows
        .iter()
        .filter(|row| {
            row.status
                .parse::<SandboxStatus>()
                .is_ok_and(|s| s.is_active())
        })
        .filter_map(|row| daemon.live.get(&row.id).map(|latest| (row, latest)))
        .collect();
    let allowed = label_allow_list();
    for instrument in INSTRUMENTS {
        let family = family_name(instrument);
        let kind = match (instrument.kind, openmetrics) {
            (Kind::Counter, _) => "counter",
            (Kind::Gauge, _) => "gauge",
        };
        let family_line = if openmetrics || instrument.kind == Kind::Gauge {
            family.clone()
        } else {
            sample_name(instrument)
        };
        let _ = writeln!(out, "# HELP {family_line} {}", instrument.description);
        let _ = writeln!(out, "# TYPE {family_line} {kind}");
        if openmetrics {
            if let Some(unit) = family
                .rsplit('_')
                .next()
                .filter(|u| ["bytes", "seconds", "ratio"].contains(u))
            {
                let _ = writeln!(out, "# UNIT {family} {unit}");
            }
        }
        for (row, latest) in &live {
            let Some(value) = instrument.value(&latest.sample) else {
                continue;
            };
            let mut labels = format!(
                "sandbox_name=\"{}\",sandbox_id=\"{}\"",
                escape(&row.name),
                escape(&row.id)
            );
            for (key, name) in &allowed {
                if let Some(value) = row.labels.get(key) {
                    let _ = write!(labels, ",{name}=\"{}\"", escape(value));
                }
            }
            let _ = writeln!(out, "{}{{{labels}}} {value}", sample_name(instrument));
            if openmetrics && instrument.kind == Kind::Counter {
                let started_s =
                    latest.sample.timestamp_ms as f64 / 1000.0 - latest.sample.uptime_secs;
                let _ = writeln!(out, "{family}_created{{{labels}}} {started_s:.3}");
            }
        }
    }
    // Host-level series.
    let _ = writeln!(
        out,
        "# HELP msb_sandboxes Sandboxes in the catalog by status."
    );
    let _ = writeln!(out, "# TYPE msb_sandboxes gauge");
    for status in SandboxStatus::ALL {
        let count = rows.iter().filter(|r| r.status == status.as_str()).count();
        let _ = writeln!(out, "msb_sandboxes{{status=\"{status}\"}} {count}");
    }
    if let Ok(capacity) = super::routes::metrics::capacity_of(daemon, &rows) {
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            "msb_host_cpus",
            "CPUs of the host.",
            capacity.host_cpus as f64,
        );
        gauge(
            "msb_cpus_committed",
            "Sum of running sandboxes' CPU quotas.",
            capacity.cpus_committed,
        );
        if let Some(bytes) = capacity.host_memory_bytes {
            gauge("msb_host_memory_bytes", "Memory of the host.", bytes as f64);
        }
        if let Some(bytes) = capacity.host_memory_available_bytes {
            gauge(
                "msb_host_memory_available_bytes",
                "Memory the host has available.",
                bytes as f64,
            );
        }
        gauge(
            "msb_memory_committed_bytes",
            "Sum of running sandboxes' memory limits.",
            capacity.memory_committed_bytes as f64,
        );
    }
    let store_bytes = std::fs::metadata(daemon.home.database())
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = writeln!(out, "# HELP msb_store_size_bytes Size of the DuckDB file.");
    let _ = writeln!(out, "# TYPE msb_store_size_bytes gauge");
    if openmetrics {
        let _ = writeln!(out, "# UNIT msb_store_size_bytes bytes");
    }
    let _ = writeln!(out, "msb_store_size_bytes {store_bytes}");
    if openmetrics {
        out.push_str("# EOF\n");
    }
    Ok(out)
}
