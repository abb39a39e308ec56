//! The hours being written, kept in memory by the writer for the history query (issue 5).
//!
//! An open raw partition is in arrival order (every sandbox in every tick), so the first history
//! read of one sandbox from it is a scan of the whole table: 47 ms cold (a fresh msbd) and 21 ms
//! warm at 1,000 sandboxes, 7 ms at 100, before the rest of the query. DuckDB offers nothing
//! that fetches 3,600 scattered rows faster (ADR 004). So the writer, which has every sample in
//! hand when it commits it, keeps each open table's rows per sandbox here, and the history query
//! answers from them instead of reading the table ([`super::readings`]).
//!
//! The writer registers each table it creates (empty) and after every commit adds exactly what
//! it committed, from the Arrow batch it appended, so the values are the stored ones (rounded as
//! stored; `u64 as f64` is the cast DuckDB makes). Tables that exist when a writer starts (msbd
//! restarted) are filled in the background ([`fill_in_background`]): the writer counts each
//! one's rows before its first append and keeps what it commits to it aside; a thread of its own
//! reads the rows below that count and then adds what was kept aside. A table is answered from
//! here only once every committed row of it is here; until then (filling, failed, or dropped to
//! stay under [`MAX_CACHE_BYTES`], oldest hour first) the query reads it from DuckDB as before.
//! Closed and dropped tables are forgotten at once.
//!
//! Rows are stored compactly, about 30 B a sample instead of the ~600 B of a [`Reading`]: per
//! sandbox one byte string of varints, each row its time (delta), run index, which values
//! appeared or disappeared, which changed, and the zigzag delta of each changed value's bits
//! (most gauges and counters do not move from one second to the next).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use duckdb::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, StringViewArray, UInt64Array,
};
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use msb_metrics::ValueType;

use super::readings::{Reading, Runs, COUNTERS, GAUGES, MAXED_IN_GAUGES};

/// The most the cache may hold (all tables). Past it the oldest tables are dropped from the
/// cache (and read from DuckDB).
pub(crate) const MAX_CACHE_BYTES: usize = 256 << 20;

/// The cached value columns: the gauges, then the counters.
const VALUES: usize = GAUGES.len() + COUNTERS.len();
// Which values a row has (and which changed) is one bit each in a `Mask`.
type Mask = u128;
const _: () = assert!(VALUES <= Mask::BITS as usize);

/// The cached columns' names, in order.
static VALUE_NAMES: LazyLock<[&'static str; VALUES]> =
    LazyLock::new(|| std::array::from_fn(column_name));

fn column_name(i: usize) -> &'static str {
    if i < GAUGES.len() {
        GAUGES[i]
    } else {
        COUNTERS[i - GAUGES.len()]
    }
}

/// Whether each cached column is stored as DOUBLE (else UBIGINT).
static FLOAT: LazyLock<[bool; VALUES]> = LazyLock::new(|| {
    std::array::from_fn(|i| {
        msb_metrics::by_field(column_name(i)).map(|i| i.value_type) == Some(ValueType::F64)
    })
});

/// LEB128: seven bits a byte, low first (masks are `u128`, values `u64`).
fn put_varint(out: &mut Vec<u8>, value: impl Into<u128>) {
    let mut value: u128 = value.into();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> u128 {
    let mut value = 0u128;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u128::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

fn zigzag(delta: u64) -> u64 {
    let delta = delta as i64;
    ((delta << 1) ^ (delta >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as u64
}

/// One row as the cache stores it: values as bits (`f64::to_bits` for DOUBLE columns).
struct Row<'a> {
    run_id: &'a str,
    ts_ms: i64,
    values: [Option<u64>; VALUES],
}

/// One sandbox's rows of one table, in commit (row id) order.
#[derive(Debug)]
struct SandboxRows {
    runs: Vec<String>,
    bytes: Vec<u8>,
    rows: usize,
    previous_ts: i64,
    previous_present: Mask,
    previous: [u64; VALUES],
}

impl Default for SandboxRows {
    fn default() -> Self {
        SandboxRows {
            runs: Vec::new(),
            bytes: Vec::new(),
            rows: 0,
            previous_ts: 0,
            previous_present: 0,
            previous: [0; VALUES],
        }
    }
}

impl SandboxRows {
    fn push(&mut self, row: &Row<'_>) {
        let run = match self.runs.iter().rposition(|r| r == row.run_id) {
            Some(run) => run,
            None => {
                self.runs.push(row.run_id.to_owned());
                self.runs.len() - 1
            }
        };
        put_varint(
            &mut self.bytes,
            zigzag(row.ts_ms.wrapping_sub(self.previous_ts) as u64),
        );
        self.previous_ts = row.ts_ms;
        put_varint(&mut self.bytes, run as u64);
        let (mut present, mut changed): (Mask, Mask) = (0, 0);
        for (i, value) in row.values.iter().enumerate() {
            if let Some(value) = *value {
                present |= 1 << i;
                if value != self.previous[i] {
                    changed |= 1 << i;
                }
            }
        }
        put_varint(&mut self.bytes, present ^ self.previous_present);
        put_varint(&mut self.bytes, changed);
        self.previous_present = present;
        for (i, value) in row.values.iter().enumerate() {
            if changed & 1 << i != 0 {
                let value = value.unwrap_or(0);
                put_varint(
                    &mut self.bytes,
                    zigzag(value.wrapping_sub(self.previous[i])),
                );
                self.previous[i] = value;
            }
        }
        self.rows += 1;
    }

    /// Appends the readings in `[from_ms, until_ms)` to `out`, their runs numbered in `runs`.
    fn readings(&self, (from_ms, until_ms): (i64, i64), runs: &mut Runs, out: &mut Vec<Reading>) {
        let run_index: Vec<usize> = self.runs.iter().map(|r| runs.index(r)).collect();
        let (mut at, mut ts, mut present, mut previous) = (0, 0i64, 0 as Mask, [0u64; VALUES]);
        for _ in 0..self.rows {
            ts = ts.wrapping_add(unzigzag(get_varint(&self.bytes, &mut at) as u64) as i64);
            let run = get_varint(&self.bytes, &mut at) as usize;
            present ^= get_varint(&self.bytes, &mut at);
            let changed = get_varint(&self.bytes, &mut at);
            let mut values = [None; VALUES];
            for (i, value) in values.iter_mut().enumerate() {
                if changed & 1 << i != 0 {
                    let delta = unzigzag(get_varint(&self.bytes, &mut at) as u64);
                    previous[i] = previous[i].wrapping_add(delta);
                }
                if present & 1 << i != 0 {
                    *value = Some(if FLOAT[i] {
                        f64::from_bits(previous[i])
                    } else {
                        previous[i] as f64
                    });
                }
            }
            if ts < from_ms || ts >= until_ms {
                continue;
            }
            let gauges: [Option<f64>; GAUGES.len()] = std::array::from_fn(|i| values[i]);
            out.push(Reading {
                ts_ms: ts,
                clock_ms: ts,
                run: run_index[run],
                samples: 1,
                gauges,
                maxima: std::array::from_fn(|m| gauges[MAXED_IN_GAUGES[m]]),
                counters: std::array::from_fn(|i| values[GAUGES.len() + i]),
            });
        }
    }

    fn size_bytes(&self) -> usize {
        self.bytes.capacity() + self.runs.iter().map(String::capacity).sum::<usize>() + 128
    }
}

#[derive(Debug, Default)]
struct TableRows {
    sandboxes: HashMap<String, SandboxRows>,
    size_bytes: usize,
}

#[derive(Debug)]
enum Table {
    /// Every committed row is here.
    Ready(TableRows),
    /// Being read in the background; what the writer committed since it counted the rows.
    Filling(Vec<RecordBatch>),
}

/// See the module documentation. Shared by the store (readers), its writer (the feeder) and the
/// writer's fill thread.
#[derive(Debug)]
pub(crate) struct OpenHourCache {
    tables: HashMap<String, Table>,
    /// [`MAX_CACHE_BYTES`]; smaller in tests.
    pub(crate) budget_bytes: usize,
    /// Tests: the fill thread waits while this is set.
    #[cfg(test)]
    pub(crate) hold_fill: bool,
}

impl Default for OpenHourCache {
    fn default() -> Self {
        OpenHourCache {
            tables: HashMap::new(),
            budget_bytes: MAX_CACHE_BYTES,
            #[cfg(test)]
            hold_fill: false,
        }
    }
}

/// One column of a batch, by cached column.
enum Values<'a> {
    Float(&'a Float64Array),
    Unsigned(&'a UInt64Array),
    Missing,
}

impl Values<'_> {
    fn at(&self, row: usize) -> Option<u64> {
        match self {
            Values::Float(a) => a.is_valid(row).then(|| a.value(row).to_bits()),
            Values::Unsigned(a) => a.is_valid(row).then(|| a.value(row)),
            Values::Missing => None,
        }
    }
}

fn strings<'a>(column: &'a ArrayRef) -> Option<Box<dyn Fn(usize) -> &'a str + 'a>> {
    if let Some(a) = column.as_any().downcast_ref::<StringArray>() {
        Some(Box::new(move |row| a.value(row)))
    } else {
        let a = column.as_any().downcast_ref::<StringViewArray>()?;
        Some(Box::new(move |row| a.value(row)))
    }
}

/// Why a batch could not be taken in (the table is then dropped from the cache).
#[derive(Debug)]
pub(crate) struct Unreadable(String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl OpenHourCache {
    /// Forgets everything (a writer starts and fills it again).
    pub(crate) fn clear(&mut self) {
        self.tables.clear();
    }

    /// A table just created, empty: cached from its first row on.
    pub(crate) fn start_table(&mut self, table: &str) {
        self.tables
            .entry(table.to_owned())
            .or_insert_with(|| Table::Ready(TableRows::default()));
    }

    /// A table whose rows the fill thread is about to read: from now on the writer's commits to
    /// it are kept aside until it has.
    pub(crate) fn start_filling(&mut self, table: &str) {
        self.tables
            .insert(table.to_owned(), Table::Filling(Vec::new()));
    }

    /// Keeps only the tables for which `keep` is true (the writer closed or dropped the others).
    pub(crate) fn retain_tables(&mut self, keep: impl Fn(&str) -> bool) {
        self.tables.retain(|table, _| keep(table));
    }

    /// Whether `table` is answered from here.
    #[cfg(test)]
    pub(crate) fn is_ready(&self, table: &str) -> bool {
        matches!(self.tables.get(table), Some(Table::Ready(_)))
    }

    /// Bytes held for `table`.
    #[cfg(test)]
    pub(crate) fn table_bytes(&self, table: &str) -> usize {
        match self.tables.get(table) {
            Some(Table::Ready(rows)) => rows.size_bytes,
            _ => 0,
        }
    }

    /// Bytes held, all tables (what is kept aside while filling is not counted).
    pub(crate) fn size_bytes(&self) -> usize {
        self.tables
            .values()
            .map(|t| match t {
                Table::Ready(rows) => rows.size_bytes,
                Table::Filling(_) => 0,
            })
            .sum()
    }

    /// Appends `sandbox_id`'s readings in `[from_ms, until_ms)` of `table` to `out`, or returns
    /// false when the table is not answered from here (read it from DuckDB).
    pub(super) fn readings(
        &self,
        table: &str,
        sandbox_id: &str,
        window: (i64, i64),
        runs: &mut Runs,
        out: &mut Vec<Reading>,
    ) -> bool {
        let Some(Table::Ready(rows)) = self.tables.get(table) else {
            return false;
        };
        if let Some(sandbox) = rows.sandboxes.get(sandbox_id) {
            sandbox.readings(window, runs, out);
        }
        true
    }

    /// Adds the rows of `batch`, just committed to `table`, if the table is cached. Columns are
    /// found by name (`sandbox_id`, `run_id`, `ts_ms`, then the value columns, DOUBLE as
    /// Float64 and UBIGINT as UInt64; a value column missing from the batch is NULL).
    pub(crate) fn append(&mut self, table: &str, batch: &RecordBatch) {
        match self.tables.get_mut(table) {
            None => {}
            Some(Table::Filling(kept)) => kept.push(batch.clone()),
            Some(Table::Ready(rows)) => {
                if let Err(error) = add_batch(rows, batch) {
                    tracing::warn!(%error, table, "the open-hour cache cannot take this batch; the table is read from DuckDB");
                    self.tables.remove(table);
                }
                self.keep_under_budget();
            }
        }
    }

    /// Drops the oldest tables (names sort by hour) while over the budget ([`MAX_CACHE_BYTES`]).
    pub(crate) fn keep_under_budget(&mut self) {
        while self.size_bytes() > self.budget_bytes {
            let Some(oldest) = self
                .tables
                .iter()
                .filter(|(_, t)| matches!(t, Table::Ready(_)))
                .map(|(name, _)| name.clone())
                .min()
            else {
                return;
            };
            tracing::info!(
                table = oldest,
                "the open-hour cache is full; this table is read from DuckDB"
            );
            self.tables.remove(&oldest);
        }
    }

    /// The fill thread's result for `table`: its rows below the count, or why they could not be
    /// read. Adds what was kept aside meanwhile and makes the table ready, unless the writer
    /// forgot it meanwhile (closed or dropped).
    fn filled(&mut self, table: &str, read: Result<TableRows, String>) {
        let Some(Table::Filling(kept)) = self.tables.remove(table) else {
            return;
        };
        let mut rows = match read {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, table, "filling the open-hour cache failed; the table is read from DuckDB");
                return;
            }
        };
        for batch in &kept {
            if let Err(error) = add_batch(&mut rows, batch) {
                tracing::warn!(%error, table, "the open-hour cache cannot take this batch; the table is read from DuckDB");
                return;
            }
        }
        self.tables.insert(table.to_owned(), Table::Ready(rows));
        self.keep_under_budget();
    }
}

/// Reads the rows of `table` with a row id below `rows` (those committed before the writer
/// started: it is the only one that appends, and appended rows get higher row ids).
fn read_rows(conn: &Connection, table: &str, rows: i64) -> Result<TableRows, String> {
    let present = super::table_columns(conn, table).map_err(|e| e.to_string())?;
    let mut list = vec!["sandbox_id", "run_id", "ts_ms"];
    list.extend(
        VALUE_NAMES
            .iter()
            .filter(|name| present.iter().any(|p| p == *name)),
    );
    // No ORDER BY: DuckDB returns a plain scan in insertion (row id) order, as the history
    // query's own reads see it.
    let sql = format!(
        "SELECT {} FROM {table} WHERE rowid < {rows}",
        list.join(", ")
    );
    let mut statement = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut out = TableRows::default();
    for batch in statement.query_arrow([]).map_err(|e| e.to_string())? {
        add_batch(&mut out, &batch).map_err(|e| e.0)?;
    }
    Ok(out)
}

/// Whether the fill thread has finished (for tests and the benchmark).
#[derive(Debug, Default)]
pub(crate) struct FillDone {
    done: Mutex<bool>,
    changed: Condvar,
}

impl FillDone {
    pub(crate) fn wait(&self) {
        let mut done = super::cache::lock(&self.done);
        while !*done {
            done = self.changed.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn set(&self) {
        *super::cache::lock(&self.done) = true;
        self.changed.notify_all();
    }
}

/// Starts the thread that fills `tables` (name and row count, each already
/// [`OpenHourCache::start_filling`]) on its own connection, at idle CPU priority.
pub(crate) fn fill_in_background(
    conn: Connection,
    tables: Vec<(String, i64)>,
    cache: Arc<Mutex<OpenHourCache>>,
    done: Arc<FillDone>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("msb-series-fill".into())
        .spawn(move || {
            crate::set_thread_priority(0, crate::WriterPriority::Idle);
            #[cfg(test)]
            while super::cache::lock(&cache).hold_fill {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            for (table, rows) in tables {
                let read = read_rows(&conn, &table, rows);
                super::cache::lock(&cache).filled(&table, read);
            }
            done.set();
        })
}

impl crate::Store {
    /// Bytes the open-hour cache holds now (see [`super::open_hour`]).
    pub fn open_hour_cache_bytes(&self) -> usize {
        self.series_cache().open_hour().size_bytes()
    }
}

fn add_batch(rows: &mut TableRows, batch: &RecordBatch) -> Result<(), Unreadable> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Unreadable(format!("no column {name}")))
    };
    let sandbox_ids = column("sandbox_id")?;
    let sandbox_of = strings(sandbox_ids)
        .ok_or_else(|| Unreadable(format!("sandbox_id is {}", sandbox_ids.data_type())))?;
    let run_ids = column("run_id")?;
    let run_of =
        strings(run_ids).ok_or_else(|| Unreadable(format!("run_id is {}", run_ids.data_type())))?;
    let ts = column("ts_ms")?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Unreadable("ts_ms is not BIGINT".into()))?;
    let mut values = Vec::with_capacity(VALUES);
    for (i, name) in VALUE_NAMES.iter().enumerate() {
        values.push(match batch.column_by_name(name) {
            None => Values::Missing,
            Some(c) => match (c.data_type(), FLOAT[i]) {
                (DataType::Float64, true) => {
                    Values::Float(c.as_any().downcast_ref().expect("a Float64Array"))
                }
                (DataType::UInt64, false) => {
                    Values::Unsigned(c.as_any().downcast_ref().expect("a UInt64Array"))
                }
                (other, _) => return Err(Unreadable(format!("{name} is {other}"))),
            },
        });
    }
    for row in 0..batch.num_rows() {
        let sandbox_id = sandbox_of(row);
        let entry = rows.sandboxes.entry_ref_or_default(sandbox_id);
        let before = entry.size_bytes();
        entry.push(&Row {
            run_id: run_of(row),
            ts_ms: ts.value(row),
            values: std::array::from_fn(|i| values[i].at(row)),
        });
        rows.size_bytes = rows.size_bytes + entry.size_bytes() - before;
    }
    Ok(())
}

/// `HashMap::entry` without allocating the key when it is there already.
trait EntryRef {
    fn entry_ref_or_default(&mut self, key: &str) -> &mut SandboxRows;
}

impl EntryRef for HashMap<String, SandboxRows> {
    fn entry_ref_or_default(&mut self, key: &str) -> &mut SandboxRows {
        if !self.contains_key(key) {
            self.insert(key.to_owned(), SandboxRows::default());
        }
        self.get_mut(key).expect("just inserted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        let values = [0u64, 1, 127, 128, 300, u64::MAX, u64::MAX - 1, 1 << 63];
        let mut bytes = Vec::new();
        for v in values {
            put_varint(&mut bytes, zigzag(v));
        }
        let mut at = 0;
        for v in values {
            assert_eq!(unzigzag(get_varint(&bytes, &mut at) as u64), v);
        }
        assert_eq!(at, bytes.len());
        // Masks of more than 64 values.
        let masks: [u128; 4] = [0, 1 << 64, u128::MAX, (1 << 100) | 5];
        for m in masks {
            put_varint(&mut bytes, m);
        }
        for m in masks {
            assert_eq!(get_varint(&bytes, &mut at), m);
        }
        assert_eq!(at, bytes.len());
    }
}
