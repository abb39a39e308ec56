//! What the query side keeps between queries: the partition list, and the readings of the
//! sandboxes last asked about from the tables still being written ([`OpenReadings`]).
//!
//! Listing the partitions is a DuckDB query of its own (about 1 ms, plus 1 ms more to find the
//! raw/rollup boundary), a fifth of a history query's budget, and the list changes only when the
//! writer creates, closes or drops a partition: a few times an hour. So the store keeps the list
//! with the *generation* it was read at; the writer ([`super::partitions::Partitions`]) bumps a
//! counter shared with the store after every transaction that touches the list, and a query
//! whose copy is older reads the list again. The bump comes after the commit, so a copy read
//! before a commit always carries an older generation. A reload also empties the connection's
//! prepared-statement cache (a statement may name a table that was just rewritten or dropped)
//! and forgets the open-table readings of tables that are gone or closed (rewritten sorted).
//! A second counter, bumped by the writer after every append it commits, tells the open-table
//! readings whether there can be anything new to read at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use duckdb::Connection;

use super::open_hour::OpenHourCache;
use super::readings::OpenReadings;

/// How many prepared statements the store's connection keeps: one per table a history query
/// reads (a day of raw hours plus a rollup day or two) and the fleet query's.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// One row of `series_partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionRow {
    pub name: String,
    /// A raw table (else a rollup table).
    pub raw: bool,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Raw: rewritten sorted and rolled up; only late samples are appended after that.
    pub closed: bool,
}

impl PartitionRow {
    pub(crate) fn overlaps(&self, from_ms: i64, until_ms: i64) -> bool {
        self.start_ms < until_ms && self.end_ms > from_ms
    }
}

#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    generation: Arc<AtomicU64>,
    appends: Arc<AtomicU64>,
    partitions: Mutex<Option<(u64, Arc<[PartitionRow]>)>>,
    open_readings: Mutex<OpenReadings>,
    /// The open hours' rows, kept by the writer ([`OpenHourCache`]).
    open_hour: Arc<Mutex<OpenHourCache>>,
    /// Times the list was read from the database (for tests).
    loads: AtomicU64,
    /// Times an open table was read for appended rows (for tests).
    #[cfg(test)]
    scans: AtomicU64,
}

/// Only the store's own (single) user takes these locks, and a panic cannot leave what they
/// guard half updated in a way a later query would misread (at worst an entry is dropped).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SeriesCache {
    /// The counter the writer bumps after changing the partition list.
    pub(crate) fn generation(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.generation)
    }

    /// The counter the writer bumps after committing appended samples.
    pub(crate) fn appends(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.appends)
    }

    /// The appends counter now (read it before reading what it guards).
    pub(crate) fn appends_now(&self) -> u64 {
        self.appends.load(Ordering::Acquire)
    }

    pub(crate) fn configure(conn: &Connection) {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    }

    /// The live partitions ordered by start, read again only when the writer has changed them.
    pub(crate) fn partitions(&self, conn: &Connection) -> duckdb::Result<Arc<[PartitionRow]>> {
        let current = self.generation.load(Ordering::Acquire);
        let mut loaded = lock(&self.partitions);
        if let Some((generation, rows)) = loaded.as_ref() {
            if *generation == current {
                return Ok(Arc::clone(rows));
            }
        }
        conn.flush_prepared_statement_cache();
        let mut statement = conn.prepare(
            "SELECT name, kind, start_ms, end_ms, closed FROM series_partitions
             ORDER BY start_ms, name",
        )?;
        let rows: Arc<[PartitionRow]> = statement
            .query_map([], |row| {
                Ok(PartitionRow {
                    name: row.get(0)?,
                    raw: row.get::<_, String>(1)? == "raw",
                    start_ms: row.get(2)?,
                    end_ms: row.get(3)?,
                    closed: row.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        lock(&self.open_readings)
            .retain_tables(|table| rows.iter().any(|p| p.name == table && p.raw && !p.closed));
        *loaded = Some((current, Arc::clone(&rows)));
        Ok(rows)
    }

    /// The open-hour cache, for the writer that feeds it.
    pub(crate) fn open_hour_shared(&self) -> Arc<Mutex<OpenHourCache>> {
        Arc::clone(&self.open_hour)
    }

    pub(crate) fn open_hour(&self) -> MutexGuard<'_, OpenHourCache> {
        lock(&self.open_hour)
    }

    pub(crate) fn open_readings(&self) -> MutexGuard<'_, OpenReadings> {
        lock(&self.open_readings)
    }

    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn count_scan(&self) {
        self.scans.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }
}
