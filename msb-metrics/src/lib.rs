//! The instrument registry and the typed sample: the one place msb declares what it measures.
//!
//! [`Sample`] is what a supervisor's sampler produces once per interval for its sandbox and what
//! msbd keeps (latest per sandbox) and stores (one row per sandbox per tick). Every optional
//! field is `None` when its source is missing on this host or backend; the sampler logs the
//! reason once. A missing source is never reported as zero.

pub mod prometheus;
mod registry;
mod sample;

pub use registry::{
    field_value, markdown, DaemonInstrument, Instrument, Kind, BOOT_PHASES, DAEMON_INSTRUMENTS,
    INSTRUMENTS, LATENCY_BUCKETS, SANDBOX_ATTRIBUTES,
};
pub use sample::Sample;
