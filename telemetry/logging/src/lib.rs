//! Logging for every msb process, and nothing of OpenTelemetry: the `msb` client and the
//! supervisors (static executables started for every command and every sandbox) link only this;
//! msbd adds the OTLP layer on top (crate `msb-telemetry`).
//!
//! - [`init`]: human-readable logs to stderr, filtered by `MSB_LOG` (an `EnvFilter` directive)
//!   or the level the process was started with.
//! - [`traceparent_is_valid`]: the W3C `traceparent` syntax, so the client forwards only values
//!   msbd will accept (`msb-telemetry` tests that both agree).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `MSB_LOG` when set and valid, else `default_level`, else `info`.
pub fn filter(default_level: &str) -> EnvFilter {
    std::env::var("MSB_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(default_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Lines to stderr, coloured on a terminal.
pub fn fmt_layer<S>() -> impl Layer<S>
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

/// Whether `value` is a W3C `traceparent` a receiver accepts: `VV-TTTT…(32)-SSSS…(16)-FF` in
/// lower-case hex, version not `ff`, trace and span ids not all zero; version `00` has exactly
/// these four fields, a later version may add more after a `-`.
pub fn traceparent_is_valid(value: &str) -> bool {
    let value = value.trim();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = value.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = match version {
        "00" => parts.next().is_none(),
        _ => true,
    };
    hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && not_zero(trace)
        && hex(span, 16)
        && not_zero(span)
        && hex(flags, 2)
        && rest_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_syntax() {
        assert!(traceparent_is_valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-zz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(!traceparent_is_valid(bad), "{bad:?}");
        }
    }
}
