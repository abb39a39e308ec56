//! Tracing, spans and OTLP export shared by msbd, supervisors and the CLI.
//!
//! - [`init`]: human-readable logs to stderr, filtered by `MSB_LOG` (an `EnvFilter` directive)
//!   or the level the process was started with. The CLI and supervisors use only this.
//! - [`init_with_traces`]: the same, plus an OpenTelemetry layer that turns msbd's `tracing`
//!   spans into OTel spans sent through the OTLP traces exporter ([`otlp`]).
//! - [`propagation`]: W3C `traceparent` in and out, so a caller's trace is the parent of msbd's
//!   spans.
//! - [`histogram`]: the fixed-bucket latency histograms msbd exports.

pub mod histogram;
pub mod otlp;
pub mod propagation;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

fn filter(default_level: &str) -> EnvFilter {
    std::env::var("MSB_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(default_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

fn fmt_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// Installs the global subscriber. `default_level` applies when `MSB_LOG` is unset.
pub fn init(component: &'static str, default_level: &str) {
    let _ = tracing_subscriber::registry()
        .with(fmt_layer().with_filter(filter(default_level)))
        .try_init();
    tracing::debug!(component, "logging initialised");
}

/// Like [`init`], and spans at `info` and above go to `provider` as OTel spans (the log filter
/// does not apply to them).
pub fn init_with_traces(
    component: &'static str,
    default_level: &str,
    provider: &SdkTracerProvider,
) {
    let tracer = provider.tracer("msbd");
    let _ = TRACER.set(tracer.clone());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(fmt_layer().with_filter(filter(default_level)))
        .with(spans)
        .try_init();
    tracing::debug!(component, "logging and traces initialised");
}

/// The tracer spans go to, when traces are exported: for spans with explicit start and end
/// times (boot phases measured by a supervisor), which `tracing` cannot express.
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}
