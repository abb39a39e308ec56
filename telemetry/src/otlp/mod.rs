//! OTLP export: configuration from the standard environment, one bounded exporter per signal,
//! and the span processor that feeds the traces exporter. msbd builds its metric requests
//! itself from the instrument registry (see `daemon/src/otlp.rs` and docs/adr/007).

pub mod config;
pub mod export;
pub mod traces;
pub mod transport;

pub use config::{OtlpConfig, Protocol, Signal, SignalConfig};
pub use export::{ExportStats, Exporter, Payload, DEFAULT_QUEUE_BYTES};
