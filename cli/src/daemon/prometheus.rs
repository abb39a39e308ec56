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
use msb_metrics::prometheus::{family_name, family_name_of, sample_name, sample_name_of};
use msb_metrics::Kind;

use super::exposition::{self, Value};
use super::state::Daemon;

/// Default listen address; `MSB_PROMETHEUS_ADDR` or `msbd.toml` override (`off` disables, port 0
/// picks one).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

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

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A Prometheus label name for an attribute ([`msb_metrics::prometheus::label_name`]); a user
/// label that would collide with msb's own labels, or start with a digit, gets a `label_`
/// prefix.
fn label_name(attribute: &str, user: bool) -> String {
    let mut name = msb_metrics::prometheus::label_name(attribute);
    if user
        && (name.starts_with(|c: char| c.is_ascii_digit())
            || ["sandbox_name", "sandbox_id", "status"].contains(&name.as_str()))
    {
        name = format!("label_{name}");
    }
    name
}

fn labels(attributes: &[(String, String)], user_from: usize) -> String {
    attributes
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            format!("{}=\"{}\"", label_name(key, i >= user_from), escape(value))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn with_braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

fn seconds(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn header(out: &mut String, family: &str, kind: Kind, help: &str, openmetrics: bool) {
    let type_name = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    // Text format 0.0.4 names a counter family with its `_total`; OpenMetrics without.
    let family_line = if !openmetrics && kind == Kind::Counter {
        format!("{family}_total")
    } else {
        family.to_owned()
    };
    let _ = writeln!(out, "# HELP {family_line} {help}.");
    let _ = writeln!(out, "# TYPE {family_line} {type_name}");
    if openmetrics {
        if let Some(unit) = family
            .rsplit('_')
            .next()
            .filter(|u| ["bytes", "seconds", "ratio"].contains(u))
        {
            let _ = writeln!(out, "# UNIT {family} {unit}");
        }
    }
}

/// The exposition body.
pub fn render(daemon: &Daemon, openmetrics: bool) -> Result<String, String> {
    let rows = daemon.store().list_sandboxes().map_err(|e| e.to_string())?;
    let live = exposition::live_sandboxes(daemon, &rows);
    let mut out = String::new();
    // Per-sandbox series, one family per instrument name (fields that share a name, such as
    // major and minor page faults, are its series told apart by their attributes).
    for family in msb_metrics::families() {
        let first = &family[0];
        let name = family_name(first);
        header(&mut out, &name, first.kind, first.description, openmetrics);
        for sandbox in &live {
            for instrument in family {
                let Some(value) = instrument.value(&sandbox.latest.sample) else {
                    continue;
                };
                let mut labels = labels(&sandbox.attributes, msb_metrics::SANDBOX_ATTRIBUTES.len());
                for (key, value) in instrument.attributes {
                    let _ = write!(
                        labels,
                        ",{}=\"{}\"",
                        msb_metrics::prometheus::label_name(key),
                        escape(value)
                    );
                }
                let _ = writeln!(out, "{}{{{labels}}} {value}", sample_name(instrument));
                if openmetrics && instrument.kind == Kind::Counter {
                    let created = seconds(sandbox.run_start());
                    let _ = writeln!(out, "{name}_created{{{labels}}} {created:.3}");
                }
            }
        }
    }
    // msbd's and the host's.
    for family in exposition::daemon_families(daemon, &rows, &live) {
        let i = family.instrument;
        let name = family_name_of(i.name, i.unit, i.kind);
        header(&mut out, &name, i.kind, i.description, openmetrics);
        let created = seconds(family.start);
        for point in &family.points {
            let labels = labels(&point.attributes, usize::MAX);
            match &point.value {
                Value::Number(value) => {
                    let sample = sample_name_of(i.name, i.unit, i.kind);
                    let _ = writeln!(out, "{sample}{} {value}", with_braces(&labels));
                    if openmetrics && i.kind == Kind::Counter {
                        let _ =
                            writeln!(out, "{name}_created{} {created:.3}", with_braces(&labels));
                    }
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0;
                    let bounds = h
                        .bounds
                        .iter()
                        .map(|b| b.to_string())
                        .chain(["+Inf".to_owned()]);
                    for (bound, count) in bounds.zip(&h.counts) {
                        cumulative += count;
                        let le = if labels.is_empty() {
                            format!("le=\"{bound}\"")
                        } else {
                            format!("{labels},le=\"{bound}\"")
                        };
                        let _ = writeln!(out, "{name}_bucket{{{le}}} {cumulative}");
                    }
                    let _ = writeln!(out, "{name}_sum{} {}", with_braces(&labels), h.sum_secs);
                    let _ = writeln!(out, "{name}_count{} {}", with_braces(&labels), h.count);
                    if openmetrics {
                        let _ =
                            writeln!(out, "{name}_created{} {created:.3}", with_braces(&labels));
                    }
                }
            }
        }
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    Ok(out)
}
