//! Tracing setup shared by msbd, supervisors and the CLI.
//!
//! Today: human-readable logs to stderr, filtered by `MSB_LOG` (an `EnvFilter` directive) or the
//! level the process was started with. The OpenTelemetry trace and OTLP exporter wiring joins
//! here with the exporters issue.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default_level` applies when `MSB_LOG` is unset.
pub fn init(component: &'static str, default_level: &str) {
    let filter = std::env::var("MSB_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(default_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    tracing::debug!(component, "logging initialised");
}
