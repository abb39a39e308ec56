//! Tracing, spans and OTLP export shared by msbd, supervisors and the CLI.
//!
//! - [`init`]: human-readable logs to stderr (crate `msb-logging`, which the CLI and supervisors
//!   use directly, without this crate's OpenTelemetry stack).
//! - [`init_with_traces`]: the same, plus an OpenTelemetry layer that turns msbd's `tracing`
//!   spans into OTel spans sent through the OTLP traces exporter ([`otlp`]).
//! - [`propagation`]: W3C `traceparent` in and out, so a caller's trace is the parent of msbd's
//!   spans.
//! - [`histogram`]: the fixed-bucket latency histograms msbd exports.
//! - [`exposition`]: what msbd exports as one snapshot value, rendered as Prometheus text or an
//!   OTLP metrics request by pure functions.

pub mod exposition;
pub mod histogram;
pub mod otlp;
pub mod propagation;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

pub use msb_logging::init;
use msb_logging::{filter, fmt_layer};

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
