//! The one writer of the time series: a thread that owns its own DuckDB connection (a clone of
//! the store's, so one database instance serves both) and drains a bounded queue.
//!
//! [`SeriesWriter::append`] never waits for the writer: it takes a mutex held only for queue
//! pushes and pops, and when the queue is over capacity it drops the *oldest* batches and counts
//! them. A checkpoint can stall the writer for 100+ ms; the sampler never notices. The writer
//! gathers what arrives for a short window ([`DEFAULT_BATCH_WINDOW`], or until
//! [`DEFAULT_BATCH_MAX_SAMPLES`]) and commits it in one transaction of Arrow record batches (the
//! fastest path measured, ADR 004): a commit costs DuckDB milliseconds whatever it holds, so a
//! hundred sandboxes sampling each second cost one commit a second, not a hundred. That is safe
//! because supervisors keep every sample until it is committed:
//! [`SeriesWriter::append_then`] says when (msbd then acknowledges them). A
//! [`SeriesWriter::flush`] commits at once. Maintenance (close, roll up, drop expired) runs every
//! [`MAINTENANCE_EVERY`] and on every flush.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use msb_metrics::{Number, Sample, ValueType};

use super::cache::lock;
use super::open_hour::{fill_in_background, FillDone, OpenHourCache};
use super::partitions::{hour_start, Partitions};
use super::{RetentionConfig, SeriesError};
use crate::{Store, StoreError};

/// How often the writer closes, rolls up and drops partitions on its own.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// Default queue bound: 5 minutes of 1,000 sandboxes at 1 s (about 100 MB of samples).
pub const DEFAULT_MAX_QUEUED_SAMPLES: usize = 300_000;

/// How long the writer gathers samples before committing them, by default. A commit costs about
/// 3 ms of CPU here whatever it holds (plus about 30 µs a sample): at 100 sandboxes sampling each
/// second, msbd measured 0.29 ms of CPU per sandbox per sample with a 250 ms window and 0.15 ms
/// with 1 s (benches/ingest.sh). Nothing waits for it: history queries flush, the live view and
/// the exporters do not read the store, and supervisors keep what is not committed.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_secs(1);

/// The writer commits at once when this many samples are queued, by default.
pub const DEFAULT_BATCH_MAX_SAMPLES: usize = 10_000;

/// Told once whether an append's samples were committed (`true`) or dropped (`false`: the queue
/// overflowed, or the write failed).
pub type Committed = Box<dyn FnOnce(bool) + Send>;

/// How a writer runs. The default is what msbd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub retention: RetentionConfig,
    /// Queue bound in samples; past it the oldest batches are dropped.
    pub max_queued_samples: usize,
    /// How often the writer closes and drops partitions on its own; it also does on
    /// every [`SeriesWriter::flush`]. Benchmarks that write an hour in seconds set it long, so
    /// the hour is not closed half written.
    pub maintenance_every: Duration,
    /// How long samples are gathered before one commit (zero: commit whatever is queued as
    /// soon as the writer runs).
    pub batch_window: Duration,
    /// Commit at once when this many samples are queued.
    pub batch_max_samples: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            retention: RetentionConfig::default(),
            max_queued_samples: DEFAULT_MAX_QUEUED_SAMPLES,
            maintenance_every: MAINTENANCE_EVERY,
            batch_window: DEFAULT_BATCH_WINDOW,
            batch_max_samples: DEFAULT_BATCH_MAX_SAMPLES,
        }
    }
}

/// Counters of what the writer did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    pub written_samples: u64,
    /// Batches dropped because the queue was full (oldest first).
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    /// Samples older than raw retention when they arrived.
    pub expired_samples: u64,
    pub write_errors: u64,
    pub queued_samples: u64,
    /// Time the writer spent appending (not maintenance), for throughput figures.
    pub write_nanos: u64,
    /// Transactions that committed samples.
    pub commits: u64,
}

enum Item {
    Batch(Vec<Sample>, Option<Committed>),
    Flush(mpsc::SyncSender<Result<(), String>>),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    queued_samples: usize,
    /// Flushes among `items`: they end the gathering window at once.
    flushes: usize,
    shutdown: bool,
    /// When the oldest queued item was queued.
    oldest_at: Option<Instant>,
}

/// How long queued samples may wait for the writer's idle-priority CPU time, past the end of
/// their gathering window, before it is raised to nice 10: a bound on how long supervisors hold
/// samples msbd has not acknowledged, and on how stale the store is for readers that do not
/// flush.
const MAX_IDLE_LAG: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Counters {
    written_samples: AtomicU64,
    dropped_batches: AtomicU64,
    dropped_samples: AtomicU64,
    expired_samples: AtomicU64,
    write_errors: AtomicU64,
    write_nanos: AtomicU64,
    commits: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    counters: Counters,
    max_queued_samples: usize,
    batch_window: Duration,
    batch_max_samples: usize,
    /// The writer thread's id (0 until it runs), and whether it was raised from idle priority.
    writer_tid: AtomicI32,
    raised: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent (pushes and pops
        // only), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises the writer from idle priority when the queue has waited too long (`oldest_at`)
    /// or when `urgent` (a flush someone waits for); the writer lowers itself again once it
    /// has caught up.
    fn raise_if_late(&self, oldest_at: Option<Instant>, urgent: bool) {
        let late =
            urgent || oldest_at.is_some_and(|at| at.elapsed() >= self.batch_window + MAX_IDLE_LAG);
        let tid = self.writer_tid.load(Ordering::Acquire);
        if late && tid != 0 && !self.raised.swap(true, Ordering::AcqRel) {
            crate::set_thread_priority(tid, crate::WriterPriority::Low);
        }
    }
}

/// The time-series writer. Create one per store at msbd start; dropping it flushes.
pub struct SeriesWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Set once the open hours that existed at start are in the open-hour cache.
    open_hour_filled: Arc<FillDone>,
}

impl std::fmt::Debug for SeriesWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl SeriesWriter {
    /// Starts the writer thread on a new connection to `store`'s database.
    pub fn start(store: &Store, retention: RetentionConfig) -> Result<SeriesWriter, StoreError> {
        SeriesWriter::start_with_capacity(store, retention, DEFAULT_MAX_QUEUED_SAMPLES)
    }

    /// Like [`SeriesWriter::start`], with the queue bounded at `max_queued_samples`.
    pub fn start_with_capacity(
        store: &Store,
        retention: RetentionConfig,
        max_queued_samples: usize,
    ) -> Result<SeriesWriter, StoreError> {
        SeriesWriter::start_with_options(
            store,
            WriterOptions {
                retention,
                max_queued_samples,
                ..WriterOptions::default()
            },
        )
    }

    /// Starts the writer thread with every knob given.
    pub fn start_with_options(
        store: &Store,
        options: WriterOptions,
    ) -> Result<SeriesWriter, StoreError> {
        let WriterOptions {
            retention,
            max_queued_samples,
            maintenance_every,
            batch_window,
            batch_max_samples,
        } = options;
        let conn = store.conn().try_clone()?;
        let partitions = Partitions::load(&conn, store.series_cache().generation())?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
            max_queued_samples: max_queued_samples.max(1),
            batch_window,
            batch_max_samples: batch_max_samples.max(1),
            writer_tid: AtomicI32::new(0),
            raised: AtomicBool::new(false),
        });
        let schema = Arc::new(raw_schema(&conn)?);
        // What a previous writer cached may be behind the file from now on; this writer fills
        // the cache again once it runs.
        let open_hour = store.series_cache().open_hour_shared();
        lock(&open_hour).clear();
        let open_hour_filled = Arc::new(FillDone::default());
        let worker = Worker {
            conn,
            partitions,
            open_hour,
            open_hour_filled: Arc::clone(&open_hour_filled),
            filler: None,
            appends: store.series_cache().appends(),
            retention,
            maintenance_every,
            shared: Arc::clone(&shared),
            schema,
        };
        let thread = std::thread::Builder::new()
            .name("msb-series-writer".into())
            .spawn(move || {
                crate::set_thread_priority(0, crate::WriterPriority::Idle);
                worker
                    .shared
                    .writer_tid
                    .store(crate::current_tid(), Ordering::Release);
                worker.run()
            })
            .map_err(|e| StoreError::Corrupt {
                what: "series writer thread",
                detail: e.to_string(),
            })?;
        Ok(SeriesWriter {
            shared,
            thread: Some(thread),
            open_hour_filled,
        })
    }

    /// Queues samples for writing. Never blocks on the writer: when the queue is full the
    /// oldest queued batches are dropped and counted ([`SeriesWriter::dropped_batches`]).
    pub fn append(&self, samples: Vec<Sample>) {
        self.queue(samples, None);
    }

    /// Like [`SeriesWriter::append`], and calls `committed` on the writer thread once the
    /// samples are in the store (`true`) or will never be (`false`). Appends are committed in
    /// order, so `true` also covers every earlier append that was not dropped. Nothing may block
    /// in `committed`.
    pub fn append_then(&self, samples: Vec<Sample>, committed: impl FnOnce(bool) + Send + 'static) {
        self.queue(samples, Some(Box::new(committed)));
    }

    fn queue(&self, samples: Vec<Sample>, committed: Option<Committed>) {
        // An empty append with a callback still queues: it is told once everything queued
        // before it is committed.
        if samples.is_empty() && committed.is_none() {
            return;
        }
        let counters = &self.shared.counters;
        let mut queue = self.shared.lock();
        let was_empty = queue.items.is_empty();
        queue.queued_samples += samples.len();
        queue.items.push_back(Item::Batch(samples, committed));
        queue.oldest_at.get_or_insert_with(Instant::now);
        let mut dropped_callbacks = Vec::new();
        while queue.queued_samples > self.shared.max_queued_samples {
            let Some(index) = queue
                .items
                .iter()
                .position(|i| matches!(i, Item::Batch(..)))
            else {
                break;
            };
            if let Some(Item::Batch(dropped, committed)) = queue.items.remove(index) {
                queue.queued_samples -= dropped.len();
                counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .dropped_samples
                    .fetch_add(dropped.len() as u64, Ordering::Relaxed);
                dropped_callbacks.extend(committed);
            }
        }
        let oldest_at = queue.oldest_at;
        let full = queue.queued_samples >= self.shared.batch_max_samples;
        drop(queue);
        for committed in dropped_callbacks {
            committed(false);
        }
        self.shared.raise_if_late(oldest_at, false);
        // The writer times its window from the first item; later ones need not wake it unless
        // they fill the batch.
        if was_empty || full {
            self.shared.wake.notify_one();
        }
    }

    /// Writes everything queued so far and runs maintenance; blocks until done. For tests and
    /// shutdown.
    pub fn flush(&self) -> Result<(), SeriesError> {
        let (reply, done) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.lock();
            if queue.shutdown {
                return Err(SeriesError::WriterGone);
            }
            queue.items.push_back(Item::Flush(reply));
            queue.flushes += 1;
            queue.oldest_at.get_or_insert_with(Instant::now);
        }
        self.shared.raise_if_late(None, true);
        self.shared.wake.notify_one();
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(SeriesError::Write(message)),
            Err(_) => Err(SeriesError::WriterGone),
        }
    }

    /// Waits until the hours that were open when the writer started are in the open-hour cache
    /// (read in the background; until then history reads them from DuckDB). For tests and the
    /// benchmark.
    pub fn wait_open_hour_filled(&self) {
        self.open_hour_filled.wait();
    }

    /// Batches dropped because the queue was full.
    pub fn dropped_batches(&self) -> u64 {
        self.shared.counters.dropped_batches.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            written_samples: c.written_samples.load(Ordering::Relaxed),
            dropped_batches: c.dropped_batches.load(Ordering::Relaxed),
            dropped_samples: c.dropped_samples.load(Ordering::Relaxed),
            expired_samples: c.expired_samples.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            queued_samples: self.shared.lock().queued_samples as u64,
            write_nanos: c.write_nanos.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SeriesWriter {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    conn: Connection,
    partitions: Partitions,
    /// The open hours' rows for the history query: filled at start, fed after every commit.
    open_hour: Arc<Mutex<OpenHourCache>>,
    open_hour_filled: Arc<FillDone>,
    /// The thread filling the open-hour cache at start, joined at shutdown.
    filler: Option<JoinHandle<()>>,
    /// Bumped after every committed append (see the store's `SeriesCache`).
    appends: Arc<AtomicU64>,
    retention: RetentionConfig,
    maintenance_every: Duration,
    shared: Arc<Shared>,
    schema: Arc<Schema>,
}

impl Worker {
    fn run(mut self) {
        let mut last_maintenance = Instant::now();
        // First pass at start: close what was left open by the previous msbd, drop expired.
        let _ = self.maintain();
        self.fill_open_hour();
        loop {
            let (items, shutdown) = self.next_items(last_maintenance);
            let mut batches = Vec::new();
            let mut callbacks = Vec::new();
            let mut flushes = Vec::new();
            for item in items {
                match item {
                    Item::Batch(samples, committed) => {
                        batches.push(samples);
                        callbacks.extend(committed);
                    }
                    Item::Flush(reply) => flushes.push(reply),
                }
            }
            let mut result = self.write(batches);
            for committed in callbacks {
                committed(result.is_ok());
            }
            if !flushes.is_empty()
                || shutdown
                || last_maintenance.elapsed() >= self.maintenance_every
            {
                let maintained = self.maintain();
                result = result.and(maintained);
                last_maintenance = Instant::now();
            }
            for reply in flushes {
                let _ = reply.send(result.clone());
            }
            if shutdown {
                if let Some(filler) = self.filler.take() {
                    let _ = filler.join();
                }
                return;
            }
            // Caught up after being raised (a late queue or a flush): back to idle priority.
            if self.shared.raised.load(Ordering::Acquire) && self.shared.lock().items.is_empty() {
                crate::set_thread_priority(0, crate::WriterPriority::Idle);
                self.shared.raised.store(false, Ordering::Release);
            }
        }
    }

    /// Waits until the queue is due (its window is over, it is full, a flush waits, or the
    /// writer is stopping) and takes it, or until maintenance is due (then takes nothing
    /// unless the queue is due too).
    fn next_items(&self, last_maintenance: Instant) -> (VecDeque<Item>, bool) {
        let window = self.shared.batch_window;
        let mut queue = self.shared.lock();
        loop {
            let waited = queue.oldest_at.map(|at| at.elapsed());
            let due = queue.shutdown
                || queue.flushes > 0
                || queue.queued_samples >= self.shared.batch_max_samples
                || waited.is_some_and(|waited| waited >= window);
            if due {
                break;
            }
            let until_maintenance = self
                .maintenance_every
                .saturating_sub(last_maintenance.elapsed());
            if until_maintenance.is_zero() {
                return (VecDeque::new(), false);
            }
            let pause = match waited {
                Some(waited) => window - waited,
                None => Duration::from_secs(1),
            }
            .min(until_maintenance);
            queue = self
                .shared
                .wake
                .wait_timeout(queue, pause)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        queue.queued_samples = 0;
        queue.flushes = 0;
        queue.oldest_at = None;
        (std::mem::take(&mut queue.items), queue.shutdown)
    }

    /// Starts filling the open-hour cache with the raw partitions open now (before the first
    /// append): each one's rows up to the highest row id now are read by a thread of its own;
    /// what this writer commits meanwhile is kept aside and added after.
    fn fill_open_hour(&mut self) {
        let mut tables = Vec::new();
        for table in self.partitions.open_raw_names() {
            let rows = self.conn.query_row(
                &format!("SELECT coalesce(max(rowid) + 1, 0) FROM {table}"),
                [],
                |row| row.get::<_, i64>(0),
            );
            match rows {
                Ok(rows) => tables.push((table, rows)),
                Err(error) => {
                    tracing::warn!(%error, table, "counting an open table failed; it is read from DuckDB")
                }
            }
        }
        if tables.is_empty() {
            self.open_hour_filled.set();
            return;
        }
        let mut cache = lock(&self.open_hour);
        for (table, _) in &tables {
            cache.start_filling(table);
        }
        drop(cache);
        let started = self
            .conn
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|conn| {
                fill_in_background(
                    conn,
                    tables.clone(),
                    Arc::clone(&self.open_hour),
                    Arc::clone(&self.open_hour_filled),
                )
                .map_err(|e| e.to_string())
            });
        match started {
            Ok(filler) => self.filler = Some(filler),
            Err(error) => {
                tracing::warn!(%error, "the open-hour cache cannot be filled; open tables are read from DuckDB");
                lock(&self.open_hour).retain_tables(|t| !tables.iter().any(|(n, _)| n == t));
                self.open_hour_filled.set();
            }
        }
    }

    fn maintain(&mut self) -> Result<(), String> {
        let now = crate::catalog::now_ms();
        let result = self.partitions.maintain(&self.conn, now, &self.retention);
        // Closed (rewritten sorted) and dropped tables are read from DuckDB; also after a
        // failure, which may have left the list reloaded.
        let partitions = &self.partitions;
        lock(&self.open_hour).retain_tables(|table| partitions.is_open_raw(table));
        result.map(|_| ()).map_err(|error| {
            self.shared
                .counters
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "time-series maintenance failed");
            error.to_string()
        })
    }

    fn write(&mut self, batches: Vec<Vec<Sample>>) -> Result<(), String> {
        if batches.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let now = crate::catalog::now_ms();
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let mut by_hour: BTreeMap<i64, Vec<&Sample>> = BTreeMap::new();
        for sample in batches.iter().flatten() {
            let ts = i64::try_from(sample.timestamp_ms).unwrap_or(i64::MAX);
            if Partitions::expired_raw(ts, now, &self.retention) {
                counters.expired_samples.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            by_hour.entry(hour_start(ts)).or_default().push(sample);
        }
        let count: usize = by_hour.values().map(Vec::len).sum();
        let result = self.write_hours(&by_hour);
        match &result {
            Ok(()) if count > 0 => {
                self.appends.fetch_add(1, Ordering::Release);
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .written_samples
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, samples = count, "writing samples failed");
            }
        }
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counters.write_nanos.fetch_add(nanos, Ordering::Relaxed);
        result.map_err(|e| e.to_string())
    }

    /// Appends every hour's samples in one transaction (the partitions are created first, each
    /// in its own), so a commit holds all of them or none.
    /// Once committed, the batches go to the open-hour cache too (tables it holds only).
    fn write_hours(&mut self, by_hour: &BTreeMap<i64, Vec<&Sample>>) -> duckdb::Result<()> {
        let mut tables = Vec::with_capacity(by_hour.len());
        for (hour, samples) in by_hour {
            let created = !self.partitions.has_raw(*hour);
            let table = self.partitions.ensure_raw(&self.conn, *hour)?;
            if created {
                // Empty, so the cache holds all of it from here on.
                lock(&self.open_hour).start_table(&table);
            }
            let batch = record_batch(&self.schema, samples)
                .map_err(|e| duckdb::Error::ToSqlConversionFailure(Box::new(e)))?;
            tables.push((table, batch));
        }
        let committed = match tables.as_slice() {
            [] => return Ok(()),
            // One table (all but the first seconds of an hour): the appender's flush is its own
            // transaction, and two statements fewer a commit.
            [(table, batch)] => self.append_to(table, batch.clone()),
            _ => {
                self.conn.execute_batch("BEGIN TRANSACTION")?;
                let appended = tables
                    .iter()
                    .try_for_each(|(table, batch)| self.append_to(table, batch.clone()));
                match appended.and_then(|()| self.conn.execute_batch("COMMIT")) {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        Err(error)
                    }
                }
            }
        };
        if committed.is_ok() {
            let mut cache = lock(&self.open_hour);
            for (table, batch) in &tables {
                cache.append(table, batch);
            }
        } else {
            // An append that failed may have left part of itself behind in a table: read those
            // tables from DuckDB from now on.
            let mut cache = lock(&self.open_hour);
            cache.retain_tables(|t| !tables.iter().any(|(table, _)| table == t));
        }
        committed
    }

    fn append_to(&self, table: &str, batch: RecordBatch) -> duckdb::Result<()> {
        let mut appender = self.conn.appender(table)?;
        appender.append_record_batch(batch)?;
        appender.flush()
    }
}

/// The raw tables' Arrow schema, in the template's column order (declared instruments added
/// after the template was made sit at its end; see `sync_columns`).
fn raw_schema(conn: &Connection) -> duckdb::Result<Schema> {
    let mut fields = vec![
        Field::new("sandbox_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
    ];
    for name in super::table_columns(conn, "samples_raw_template")?
        .iter()
        .skip(3)
    {
        let data_type = match msb_metrics::by_field(name).map(|i| i.value_type) {
            Some(ValueType::F64) => DataType::Float64,
            Some(ValueType::U64) => DataType::UInt64,
            // A column no instrument declares any more: written as NULL.
            None => DataType::UInt64,
        };
        fields.push(Field::new(name.as_str(), data_type, true));
    }
    Ok(Schema::new(fields))
}

/// Rounds to `scale` decimals: stored resolution is 0.01 % for CPU and 1 ms for uptime (and
/// other floats), which lets DuckDB's ALP encoding store the doubles as small integers.
fn round_to(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

fn record_batch(
    schema: &Arc<Schema>,
    samples: &[&Sample],
) -> Result<RecordBatch, duckdb::arrow::error::ArrowError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.sandbox_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.run_id.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            samples
                .iter()
                .map(|s| i64::try_from(s.timestamp_ms).unwrap_or(i64::MAX)),
        )),
    ];
    for field in schema.fields().iter().skip(3) {
        let instrument = msb_metrics::by_field(field.name());
        let get = |s: &Sample| instrument.and_then(|i| (i.get)(s));
        let column: ArrayRef = match field.data_type() {
            DataType::Float64 => {
                let scale = if field.name() == "cpu_percent" {
                    100.0
                } else {
                    1000.0
                };
                Arc::new(
                    samples
                        .iter()
                        .map(|s| get(s).map(|v| round_to(v.as_f64(), scale)))
                        .collect::<Float64Array>(),
                )
            }
            _ => Arc::new(
                samples
                    .iter()
                    .map(|s| match get(s) {
                        Some(Number::U64(v)) => Some(v),
                        Some(Number::F64(v)) => Some(v.max(0.0) as u64),
                        None => None,
                    })
                    .collect::<UInt64Array>(),
            ),
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
}
