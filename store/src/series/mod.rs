//! The time series half of the store: raw samples, 1-minute rollups, and the queries over them.
//!
//! Layout (ADR 004): one wide row per sandbox per tick in hourly raw partitions
//! (`samples_raw_<yyyymmddhh>`, UTC) and one row per sandbox, run and minute in daily rollup
//! partitions (`samples_1m_<yyyymmdd>`). `series_partitions` lists the live partitions and the
//! views `samples` and `samples_1m` are rebuilt over them whenever that list changes. Retention
//! drops whole partitions, because deleted rows never shrink a DuckDB file. A closed raw partition
//! (its hour over plus [`CLOSE_GRACE_MS`]) is rewritten sorted by (sandbox, time), which is what
//! makes it small and fast to read, and rolled up.
//!
//! One writer thread ([`SeriesWriter`]) does every write; queries ([`Store::history`],
//! [`Store::fleet`], [`Store::read_only_sql`], [`Store::export_parquet`]) read through the
//! store's own connection and see what the writer has committed. The store keeps the partition
//! list (and, for the history query, the rows last read from the hour being written) between
//! queries; the writer tells it when the list changes ([`cache`]).

mod cache;
mod history;
mod partitions;
mod query;
mod readings;
mod sql;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_history;

use std::time::Duration;

pub(crate) use cache::SeriesCache;
pub use history::HistoryPoint;
pub use query::FleetPoint;
pub use sql::{SqlResult, MAX_SQL_ROWS, SQL_RELATIONS};
pub use writer::{SeriesWriter, WriterOptions, WriterStats};

/// How long a raw partition stays open for late samples after its hour ends (a supervisor
/// replays its buffer when msbd comes back).
pub const CLOSE_GRACE_MS: i64 = 10 * 60 * 1000;

/// How long each resolution is kept. Partitions whose whole span is older are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub raw: Duration,
    pub rollup: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw: Duration::from_secs(24 * 3600),
            rollup: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error(transparent)]
    Db(#[from] duckdb::Error),
    #[error("writing the time series failed: {0}")]
    Write(String),
    #[error("the series writer thread is gone")]
    WriterGone,
    #[error("step must be at least 1 ms and the window non-empty (since {since_ms}, until {until_ms}, step {step_ms})")]
    BadWindow {
        since_ms: i64,
        until_ms: i64,
        step_ms: i64,
    },
    #[error("query refused: {0}")]
    Refused(String),
    #[error("query failed to parse: {0}")]
    Parse(String),
    #[error("the result has more than {MAX_SQL_ROWS} rows; add a LIMIT")]
    TooManyRows,
}

/// How a value column is aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Averaged (and maxed) per bucket.
    Gauge,
    /// Cumulative for the run: rates from consecutive differences; rollups keep the last value.
    Counter,
    /// Seconds since the run started: rollups keep the last value.
    Uptime,
}

/// One value column of the raw table (every `Sample` field except the keys).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub float: bool,
    pub kind: Kind,
}

const fn col(name: &'static str, float: bool, kind: Kind) -> Column {
    Column { name, float, kind }
}

/// The value columns in table order (after `sandbox_id, run_id, ts_ms`).
pub(crate) const VALUE_COLUMNS: &[Column] = &[
    col("uptime_secs", true, Kind::Uptime),
    col("cpu_percent", true, Kind::Gauge),
    col("vcpu_time_ns", false, Kind::Counter),
    col("memory_bytes", false, Kind::Gauge),
    col("memory_available_bytes", false, Kind::Gauge),
    col("memory_limit_bytes", false, Kind::Gauge),
    col("memory_host_resident_bytes", false, Kind::Gauge),
    col("disk_read_bytes", false, Kind::Counter),
    col("disk_write_bytes", false, Kind::Counter),
    col("net_rx_bytes", false, Kind::Counter),
    col("net_tx_bytes", false, Kind::Counter),
    col("net_rx_packets", false, Kind::Counter),
    col("net_tx_packets", false, Kind::Counter),
    col("upper_used_bytes", false, Kind::Gauge),
    col("upper_free_bytes", false, Kind::Gauge),
    col("upper_host_allocated_bytes", false, Kind::Gauge),
    col("processes", false, Kind::Gauge),
    col("heartbeat_seq", false, Kind::Counter),
    col("heartbeat_age_ms", false, Kind::Gauge),
    col("active_sessions", false, Kind::Gauge),
];

#[cfg(test)]
pub(crate) fn gauges() -> impl Iterator<Item = &'static Column> {
    VALUE_COLUMNS.iter().filter(|c| c.kind == Kind::Gauge)
}

#[cfg(test)]
pub(crate) fn counters() -> impl Iterator<Item = &'static Column> {
    VALUE_COLUMNS.iter().filter(|c| c.kind == Kind::Counter)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
