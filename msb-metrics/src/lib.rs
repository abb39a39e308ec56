//! The instrument registry and the typed sample: the one place msb declares what it measures
//! (`sample.rs` declares each per-sandbox instrument in one line; `registry.rs` holds the types,
//! msbd's own instruments and the generated docs).
//!
//! [`Sample`] is what a supervisor's sampler produces once per interval for its sandbox and what
//! msbd keeps (latest per sandbox) and stores (one row per sandbox per tick). Every optional
//! field is `None` when its source is missing on this host or backend; the sampler logs the
//! reason once. A missing source is never reported as zero.

pub mod prometheus;
mod registry;
mod sample;

pub use registry::{
    by_field, families, history_count, history_fields, markdown, DaemonInstrument, History,
    Instrument, Kind, Number, ValueType, BOOT_PHASES, DAEMON_INSTRUMENTS, FS_LATENCY_BUCKETS,
    LATENCY_BUCKETS, SANDBOX_ATTRIBUTES,
};
pub use sample::{
    FieldValue, LatencyHistogram, MountQuota, Sample, INSTRUMENTS, MICROSANDBOX_FIELDS,
};
