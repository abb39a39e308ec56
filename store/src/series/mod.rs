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
//! queries; the writer tells it when the list changes ([`cache`]), and keeps the rows of the
//! hours being written in memory for the history query ([`open_hour`]).

mod cache;
mod export;
mod history;
mod open_hour;
mod partitions;
mod query;
mod readings;
mod sql;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_sql;
#[cfg(test)]
mod tests_writer;

use std::collections::HashSet;
use std::time::Duration;

use msb_metrics::{History, ValueType, INSTRUMENTS};

pub(crate) use cache::SeriesCache;
pub use history::HistoryPoint;
pub(crate) use partitions::Partitions;
pub use query::{default_step_ms, FleetPoint, DEFAULT_POINTS_MAX};
pub(crate) use sql::lock_down;
pub use sql::{
    SqlResult, MAX_SQL_ROWS, SQL_MEMORY_LIMIT, SQL_RELATIONS, SQL_TEMP_DIRECTORY_LIMIT,
    SQL_THREADS, SQL_TIMEOUT,
};
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
    #[error("query cancelled after {after:?} (the limit for a query)")]
    Cancelled { after: Duration },
    #[error("export to {path}: {reason}")]
    Export { path: String, reason: String },
}

/// How a value column is aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Averaged (and maxed) per bucket.
    Gauge,
    /// Cumulative for the run: rates from consecutive differences; rollups keep the last value.
    Counter,
    /// Kept as the last value per rollup minute (uptime), not part of history points.
    Last,
}

/// One value column of the raw table (every `Sample` field except the keys), derived from the
/// instrument declaration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub float: bool,
    pub kind: Kind,
}

impl Column {
    pub(crate) fn sql_type(&self) -> &'static str {
        if self.float {
            "DOUBLE"
        } else {
            "UBIGINT"
        }
    }
}

/// The value columns, one per declared instrument, in declaration order. Tables created before
/// an instrument was declared get its column appended when the store opens ([`sync_columns`]),
/// so a table's physical order may differ: writers and readers go by name.
pub(crate) const VALUE_COLUMNS: [Column; INSTRUMENTS.len()] = {
    let mut out = [Column {
        name: "",
        float: false,
        kind: Kind::Gauge,
    }; INSTRUMENTS.len()];
    let mut i = 0;
    while i < INSTRUMENTS.len() {
        let instrument = &INSTRUMENTS[i];
        out[i] = Column {
            name: instrument.field,
            float: matches!(instrument.value_type, ValueType::F64),
            kind: match instrument.history {
                History::Average | History::AverageAndMax => Kind::Gauge,
                History::Rate => Kind::Counter,
                History::Last => Kind::Last,
            },
        };
        i += 1;
    }
    out
};

/// The rollup columns of one value column: `(name, SQL type, aggregate over raw rows)`.
pub(crate) fn rollup_columns(column: &Column) -> Vec<(String, &'static str, String)> {
    let name = column.name;
    match column.kind {
        Kind::Gauge => vec![
            (format!("{name}_avg"), "DOUBLE", format!("avg({name})")),
            (
                format!("{name}_max"),
                column.sql_type(),
                format!("max({name})"),
            ),
        ],
        // Counters never decrease within a run (one rollup row per run), so the maximum is the
        // last value.
        Kind::Counter | Kind::Last => {
            vec![(name.to_owned(), column.sql_type(), format!("max({name})"))]
        }
    }
}

/// Adds the columns of instruments declared since a table was created to the templates and
/// every live partition (DuckDB appends them at the end, with NULL in existing rows), then
/// rebuilds the views. Runs when the store opens, after the numbered migrations: this is the
/// schema migration every new instrument gets without a hand-written one.
pub(crate) fn sync_columns(conn: &duckdb::Connection) -> duckdb::Result<()> {
    let mut tables: Vec<(String, bool)> = vec![
        ("samples_raw_template".to_owned(), true),
        ("samples_1m_template".to_owned(), false),
    ];
    let mut statement = conn.prepare("SELECT name, kind = 'raw' FROM series_partitions")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    for row in rows {
        tables.push(row?);
    }
    // Every series table's columns in one read, not one per table.
    let mut existing: HashSet<(String, String)> = HashSet::new();
    let mut statement = conn.prepare(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE table_name LIKE 'samples_%'",
    )?;
    for row in statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
        existing.insert(row?);
    }
    let raw_wanted: Vec<(String, &str)> = VALUE_COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), c.sql_type()))
        .collect();
    let rollup_wanted: Vec<(String, &str)> = VALUE_COLUMNS
        .iter()
        .flat_map(rollup_columns)
        .map(|(name, sql_type, _)| (name, sql_type))
        .collect();
    let mut missing_any = false;
    for (table, raw) in tables {
        let wanted = if raw { &raw_wanted } else { &rollup_wanted };
        for (name, sql_type) in wanted {
            if !existing.contains(&(table.clone(), name.clone())) {
                missing_any = true;
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))?;
            }
        }
    }
    if missing_any {
        Partitions::load(conn, Default::default())?.refresh_views(conn)?;
    }
    Ok(())
}

/// A table's column names, in table order.
pub(crate) fn table_columns(conn: &duckdb::Connection, table: &str) -> duckdb::Result<Vec<String>> {
    let mut statement = conn.prepare(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
    )?;
    let names = statement.query_map([table], |row| row.get(0))?;
    names.collect()
}

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
