//! Reading one sandbox's rows out of the raw and rollup tables, for the history query.
//!
//! Each table is read with a small cached statement that selects only the needed columns of one
//! sandbox: a closed (sorted) raw hour answers from the one row group its zone maps point at
//! (2-4 ms for an hour). The hour being written is in arrival order (every sandbox in every
//! tick), so one sandbox's rows are spread over all of it and reading them is a scan of the
//! whole table (65-100 ms at 1,000 sandboxes). For those tables the store keeps what it read
//! ([`OpenReadings`], the last [`OPEN_READINGS_ENTRIES`] sandbox-and-table pairs asked for) and
//! the next query of the same sandbox reads only the rows appended since (3-8 ms after 10 s of
//! 1,000 sandboxes): row ids grow with every append and DuckDB prunes `rowid >= n` to the row
//! groups past `n`. ADR 004 has the measurements and what else was tried. Tables the writer's
//! open-hour cache holds ([`super::open_hour`]) are answered from it instead, without DuckDB.

use duckdb::arrow::array::{
    Array, Float64Array, Int64Array, StringArray, StringViewArray, StructArray,
};
use duckdb::types::Type;

use msb_metrics::{history_count, history_fields, History};

use super::cache::PartitionRow;
use super::SeriesError;
use crate::Store;

/// The gauge columns (history averages them), in declaration order.
pub(crate) const GAUGES: [&str; history_count(History::Average)] = history_fields(History::Average);

/// The counter columns (history shows their rates), in declaration order.
pub(crate) const COUNTERS: [&str; history_count(History::Rate)] = history_fields(History::Rate);

/// The gauges whose maximum history also shows (`<field>_max`), in declaration order.
pub(crate) const MAXED: [&str; history_count(History::AverageAndMax)] =
    history_fields(History::AverageAndMax);

/// Where each of [`MAXED`] is in [`GAUGES`].
pub(super) const MAXED_IN_GAUGES: [usize; MAXED.len()] = {
    let mut out = [0; MAXED.len()];
    let mut m = 0;
    while m < MAXED.len() {
        let mut g = 0;
        while !str_eq(GAUGES[g], MAXED[m]) {
            g += 1;
        }
        out[m] = g;
        m += 1;
    }
    out
};

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// How many (table, sandbox) pairs of tables still being written the store keeps readings of.
/// An hour of one sandbox at 1 s is about 1.5 MB of readings.
pub(crate) const OPEN_READINGS_ENTRIES: usize = 8;

/// Raw rows or rollup rows: differences are taken within one resolution only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolution {
    Raw,
    Rollup,
}

/// One raw sample or one rollup minute, as read.
#[derive(Debug, Clone)]
pub(super) struct Reading {
    /// Raw: the sample's time; rollup: the minute's start. Orders readings and picks the step.
    pub ts_ms: i64,
    /// What elapsed time is measured on: raw `ts_ms`, rollup `last_ts_ms`.
    pub clock_ms: i64,
    /// Index into the run ids of whoever holds the reading ([`Runs`]).
    pub run: usize,
    /// Raw samples behind the reading (1 for a raw row).
    pub samples: u64,
    /// Raw: the value; rollup: the minute's average.
    pub gauges: [Option<f64>; GAUGES.len()],
    /// Raw: the value; rollup: the minute's maximum (of each of [`MAXED`]).
    pub maxima: [Option<f64>; MAXED.len()],
    pub counters: [Option<f64>; COUNTERS.len()],
}

/// Run ids, numbered in order of appearance.
#[derive(Debug, Default, Clone)]
pub(super) struct Runs(Vec<String>);

impl Runs {
    pub(super) fn index(&mut self, run: &str) -> usize {
        // A window holds one run, or a few: a linear search beats hashing.
        if let Some(i) = self.0.iter().rposition(|r| r == run) {
            return i;
        }
        self.0.push(run.to_owned());
        self.0.len() - 1
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The readings of one sandbox from one table still being written, up to a row id.
#[derive(Debug)]
struct OpenTableReadings {
    table: String,
    sandbox_id: String,
    /// Every row of the sandbox with a lower row id has been read.
    read_rows: i64,
    /// The last read found no new rows of the sandbox: count the table's rows first next time,
    /// so `read_rows` moves past the other sandboxes' rows (see [`Store::read_appended`]).
    count_first: bool,
    /// The writer's appends counter before the last read: while it stays the same there is
    /// nothing new to read.
    appends_seen: Option<u64>,
    runs: Runs,
    readings: Vec<Reading>,
    last_used: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct OpenReadings {
    entries: Vec<OpenTableReadings>,
    clock: u64,
}

impl OpenReadings {
    /// Forgets the readings of tables for which `keep` is false.
    pub(crate) fn retain_tables(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|e| keep(&e.table));
    }

    /// The entry for (`table`, `sandbox_id`), created empty if needed (evicting the least
    /// recently used one beyond [`OPEN_READINGS_ENTRIES`]).
    fn entry(&mut self, table: &str, sandbox_id: &str) -> &mut OpenTableReadings {
        self.clock += 1;
        let clock = self.clock;
        let found = self
            .entries
            .iter()
            .position(|e| e.table == table && e.sandbox_id == sandbox_id);
        let index = match found {
            Some(index) => index,
            None => {
                if self.entries.len() >= OPEN_READINGS_ENTRIES {
                    let oldest = (0..self.entries.len())
                        .min_by_key(|i| self.entries[*i].last_used)
                        .unwrap_or(0);
                    self.entries.swap_remove(oldest);
                }
                self.entries.push(OpenTableReadings {
                    table: table.to_owned(),
                    sandbox_id: sandbox_id.to_owned(),
                    read_rows: 0,
                    count_first: true,
                    appends_seen: None,
                    runs: Runs::default(),
                    readings: Vec::new(),
                    last_used: clock,
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.last_used = clock;
        entry
    }

    fn forget(&mut self, table: &str, sandbox_id: &str) {
        self.entries
            .retain(|e| !(e.table == table && e.sandbox_id == sandbox_id));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The columns of a [`Reading`], in order.
fn select_list(resolution: Resolution) -> String {
    let mut list: Vec<String> = Vec::with_capacity(6 + GAUGES.len() + COUNTERS.len());
    match resolution {
        Resolution::Raw => {
            list.extend(["run_id", "ts_ms", "ts_ms", "1::BIGINT"].map(String::from));
            list.extend(GAUGES.iter().map(|g| format!("{g}::DOUBLE")));
        }
        Resolution::Rollup => {
            list.extend(["run_id", "minute_ms", "last_ts_ms", "samples::BIGINT"].map(String::from));
            list.extend(GAUGES.iter().map(|g| format!("{g}_avg")));
            list.extend(MAXED.iter().map(|g| format!("{g}_max::DOUBLE")));
        }
    }
    list.extend(COUNTERS.iter().map(|c| format!("{c}::DOUBLE")));
    list.join(", ")
}

fn column_type_error(index: usize, found: &duckdb::arrow::datatypes::DataType) -> SeriesError {
    SeriesError::Db(duckdb::Error::InvalidColumnType(
        index,
        format!("history column of type {found}"),
        Type::Any,
    ))
}

fn int64s(chunk: &StructArray, i: usize) -> Result<&Int64Array, SeriesError> {
    let column = chunk.column(i);
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| column_type_error(i, column.data_type()))
}

fn float64s(chunk: &StructArray, i: usize) -> Result<&Float64Array, SeriesError> {
    let column = chunk.column(i);
    column
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| column_type_error(i, column.data_type()))
}

fn float_at(column: &Float64Array, row: usize) -> Option<f64> {
    column.is_valid(row).then(|| column.value(row))
}

/// Row ids of rows read from a table still being written (one more column after
/// [`select_list`]'s): only rows below `below`, when given, are kept; `last` is the highest kept.
#[derive(Debug, Default)]
struct RowIds {
    below: Option<i64>,
    last: Option<i64>,
}

/// Appends the readings of one result chunk (columns of [`select_list`], then the row id when
/// `row_ids` is given) to `out`.
fn push_readings(
    chunk: &StructArray,
    resolution: Resolution,
    mut row_ids: Option<&mut RowIds>,
    runs: &mut Runs,
    out: &mut Vec<Reading>,
) -> Result<(), SeriesError> {
    const GAUGE_AT: usize = 4;
    const MAX_AT: usize = GAUGE_AT + GAUGES.len();
    let counter_at = match resolution {
        Resolution::Raw => MAX_AT,
        Resolution::Rollup => MAX_AT + MAXED.len(),
    };
    let run_ids = chunk.column(0);
    let run_of = |row: usize| -> Result<&str, SeriesError> {
        if let Some(a) = run_ids.as_any().downcast_ref::<StringArray>() {
            Ok(a.value(row))
        } else if let Some(a) = run_ids.as_any().downcast_ref::<StringViewArray>() {
            Ok(a.value(row))
        } else {
            Err(column_type_error(0, run_ids.data_type()))
        }
    };
    let (ts, clock, samples) = (int64s(chunk, 1)?, int64s(chunk, 2)?, int64s(chunk, 3)?);
    let gauges: Vec<&Float64Array> = (0..GAUGES.len())
        .map(|i| float64s(chunk, GAUGE_AT + i))
        .collect::<Result<_, _>>()?;
    let counters: Vec<&Float64Array> = (0..COUNTERS.len())
        .map(|i| float64s(chunk, counter_at + i))
        .collect::<Result<_, _>>()?;
    let maxima: Option<Vec<&Float64Array>> = match resolution {
        Resolution::Raw => None,
        Resolution::Rollup => Some(
            (0..MAXED.len())
                .map(|i| float64s(chunk, MAX_AT + i))
                .collect::<Result<_, _>>()?,
        ),
    };
    let id_column = match row_ids {
        Some(_) => Some(int64s(chunk, counter_at + COUNTERS.len())?),
        None => None,
    };
    out.reserve(chunk.len());
    for row in 0..chunk.len() {
        if let (Some(ids), Some(row_ids)) = (id_column, row_ids.as_deref_mut()) {
            let id = ids.value(row);
            if row_ids.below.is_some_and(|below| id >= below) {
                continue;
            }
            row_ids.last = row_ids.last.max(Some(id));
        }
        let gauge_values: [Option<f64>; GAUGES.len()] =
            std::array::from_fn(|i| float_at(gauges[i], row));
        let maxima = std::array::from_fn(|i| match &maxima {
            None => gauge_values[MAXED_IN_GAUGES[i]],
            Some(columns) => float_at(columns[i], row),
        });
        out.push(Reading {
            ts_ms: ts.value(row),
            clock_ms: clock.value(row),
            run: runs.index(run_of(row)?),
            samples: u64::try_from(samples.value(row)).unwrap_or(0),
            gauges: gauge_values,
            maxima,
            counters: std::array::from_fn(|i| float_at(counters[i], row)),
        });
    }
    Ok(())
}

impl Store {
    /// Runs `sql` (a cached statement) with `params` and appends its readings to `out` (see
    /// [`push_readings`] for `row_ids`).
    fn query_readings(
        &self,
        sql: &str,
        params: impl duckdb::Params,
        (resolution, mut row_ids): (Resolution, Option<&mut RowIds>),
        runs: &mut Runs,
        out: &mut Vec<Reading>,
    ) -> Result<(), SeriesError> {
        let mut statement = self.conn().prepare_cached(sql)?;
        statement.execute(params)?;
        while let Some(chunk) = statement.step()? {
            push_readings(&chunk, resolution, row_ids.as_deref_mut(), runs, out)?;
        }
        Ok(())
    }

    /// Appends the readings of `sandbox_id` in `[from_ms, until_ms)` of `table` to `out`.
    pub(super) fn read_table(
        &self,
        table: &PartitionRow,
        resolution: Resolution,
        sandbox_id: &str,
        (from_ms, until_ms): (i64, i64),
        runs: &mut Runs,
        out: &mut Vec<Reading>,
    ) -> Result<(), SeriesError> {
        let time = match resolution {
            Resolution::Raw => "ts_ms",
            Resolution::Rollup => "minute_ms",
        };
        if !table.raw || table.closed {
            let sql = format!(
                "SELECT {} FROM {} WHERE sandbox_id = ? AND {time} >= ? AND {time} < ?",
                select_list(resolution),
                table.name
            );
            return self.query_readings(
                &sql,
                duckdb::params![sandbox_id, from_ms, until_ms],
                (resolution, None::<&mut RowIds>),
                runs,
                out,
            );
        }
        if self.series_cache().open_hour().readings(
            &table.name,
            sandbox_id,
            (from_ms, until_ms),
            runs,
            out,
        ) {
            return Ok(());
        }
        let mut open = self.series_cache().open_readings();
        let entry = open.entry(&table.name, sandbox_id);
        if let Err(error) = self.read_appended(entry) {
            open.forget(&table.name, sandbox_id);
            return Err(error);
        }
        let run_index: Vec<usize> = entry.runs.0.iter().map(|r| runs.index(r)).collect();
        out.extend(
            entry
                .readings
                .iter()
                .filter(|r| r.ts_ms >= from_ms && r.ts_ms < until_ms)
                .map(|r| Reading {
                    run: run_index[r.run],
                    ..r.clone()
                }),
        );
        Ok(())
    }

    /// Brings `entry` up to date: reads its sandbox's rows appended since it was last read.
    ///
    /// Row ids grow with every append, and the one writer commits its appends one after the
    /// other, so a row committed after a read has a higher id than every row that read could
    /// see. After a read that found rows of the sandbox, the next read starts past the last of
    /// them. After one that found none, the next starts by counting the table's rows, so it
    /// can move past the other sandboxes' rows (an exited sandbox is not scanned for again and
    /// again); rows counted are committed, so those at or past the count are left for later.
    fn read_appended(&self, entry: &mut OpenTableReadings) -> Result<(), SeriesError> {
        let appends = self.series_cache().appends_now();
        if entry.appends_seen == Some(appends) {
            return Ok(());
        }
        #[cfg(test)]
        self.series_cache().count_scan();
        let table = &entry.table;
        let mut row_ids = RowIds::default();
        if entry.count_first {
            let rows: i64 = self
                .conn()
                .prepare_cached(&format!("SELECT count(*) FROM {table}"))?
                .query_row([], |row| row.get(0))?;
            if rows < entry.read_rows {
                // Not a table that only grows after all (never expected): start over.
                entry.read_rows = 0;
                entry.runs = Runs::default();
                entry.readings.clear();
            }
            if rows == entry.read_rows {
                entry.appends_seen = Some(appends);
                return Ok(());
            }
            row_ids.below = Some(rows);
        }
        // Only a lower bound in SQL: DuckDB 1.5 prunes `rowid >= ?` to the row groups past it,
        // but with an upper bound too it scans the whole table (16 ms instead of 2 at 3.6 M
        // rows); the upper bound is applied while reading.
        let sql = format!(
            "SELECT {}, rowid FROM {table} WHERE rowid >= ? AND sandbox_id = ?",
            select_list(Resolution::Raw)
        );
        self.query_readings(
            &sql,
            duckdb::params![entry.read_rows, entry.sandbox_id],
            (Resolution::Raw, Some(&mut row_ids)),
            &mut entry.runs,
            &mut entry.readings,
        )?;
        entry.appends_seen = Some(appends);
        entry.count_first = row_ids.last.is_none();
        entry.read_rows = match (row_ids.below, row_ids.last) {
            (Some(below), _) => below,
            (None, Some(last)) => last + 1,
            (None, None) => entry.read_rows,
        };
        Ok(())
    }
}
