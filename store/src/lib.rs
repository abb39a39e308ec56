//! The DuckDB store: `$MSB_HOME/msb.duckdb`, opened by msbd alone.
//!
//! It holds the sandbox catalog (sandboxes, runs, labels, volumes) and an events table; the
//! time series join it in the metrics pipeline. The schema is built by numbered migrations
//! ([`migrations`]); the catalog speaks plain records ([`catalog`]) with statuses as strings,
//! so this crate depends on no runtime type.

pub mod catalog;
pub mod migrations;
pub mod series;

use std::path::{Path, PathBuf};

pub use catalog::{EventRecord, RunRow, SandboxRow, VolumeRow};
pub use series::{
    default_step_ms, FleetPoint, HistoryPoint, RetentionConfig, SeriesError, SeriesWriter,
    WriterOptions, DEFAULT_POINTS_MAX, SQL_MEMORY_LIMIT, SQL_TEMP_DIRECTORY_LIMIT, SQL_THREADS,
    SQL_TIMEOUT,
};

/// The writer threads work behind msbd's answers, never in front of them, so they run at a low
/// CPU priority: on a busy host they yield to sandboxes starting and stopping (and, woken less
/// often, write bigger batches). The catalog writer runs at nice 10. The series writer, whose
/// one-sample commits cost DuckDB a millisecond or two of CPU each and which at nice 10 still
/// kept a runnable supervisor off a CPU for as long (traced), runs as `SCHED_IDLE`, on CPU time
/// nobody else wants, and is raised to nice 10 while its queue is older than it should be (see
/// `series::writer`). Failures leave the priority as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterPriority {
    Low,
    Idle,
}

/// Sets the priority of thread `tid` (0: the calling thread).
#[allow(unsafe_code)]
pub(crate) fn set_thread_priority(tid: i32, priority: WriterPriority) {
    let (policy, nice) = match priority {
        WriterPriority::Low => (libc::SCHED_OTHER, 10),
        WriterPriority::Idle => (libc::SCHED_IDLE, 19),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls; `param` is a valid sched_param that outlives the call.
    unsafe {
        let _ = libc::sched_setscheduler(tid, policy, &param);
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
}

/// The calling thread's id.
#[allow(unsafe_code)]
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: i64,
        name: &'static str,
        source: duckdb::Error,
    },
    #[error("the store was written by a newer msb (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("sandbox name {0:?} is already taken")]
    NameTaken(String),
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    #[error(transparent)]
    Db(#[from] duckdb::Error),
    #[error("persisting the catalog failed: {0}")]
    CatalogWrite(String),
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// How a store is opened. The default is what msbd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a user's query ([`Store::read_only_sql`]) may run before it is cancelled.
    pub sql_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sql_timeout: SQL_TIMEOUT,
        }
    }
}

/// An open store. Not `Sync`: msbd keeps it behind one mutex (one writer).
pub struct Store {
    conn: duckdb::Connection,
    /// A connection of its own for users' queries, so that cancelling one (its interrupt
    /// handle) never reaches the store's own statements.
    sql_conn: duckdb::Connection,
    sql_timeout: std::time::Duration,
    /// Where the database engine may write Parquet exports (the one directory it may touch
    /// besides its own files); `None` in memory.
    exports: Option<PathBuf>,
    /// The catalog in memory, and its writer (see [`catalog`]). Declared after `conn` is fine:
    /// the writer's thread has its own connection and is joined when the store drops.
    mirror: std::sync::Mutex<catalog::Mirror>,
    catalog_writer: catalog::CatalogWriter,
    path: PathBuf,
    /// What the time-series queries keep between calls (partition list, open-hour readings).
    series_cache: series::SeriesCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Like [`Store::open`], with the options given.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let conn = duckdb::Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::with_connection(
            conn,
            path.to_owned(),
            Some(&Self::journal_path(path)),
            options,
        )
    }

    /// Where exports are written before they are copied to their file: `msb.duckdb` ->
    /// `msb.exports/`.
    pub fn exports_path(database: &Path) -> PathBuf {
        database.with_extension("exports")
    }

    /// The catalog's journal beside the database: `msb.duckdb` -> `msb.catalog-journal`.
    pub fn journal_path(database: &Path) -> PathBuf {
        database.with_extension("catalog-journal")
    }

    fn with_connection(
        conn: duckdb::Connection,
        path: PathBuf,
        journal: Option<&Path>,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        migrations::apply(&conn)?;
        series::sync_columns(&conn)?;
        series::SeriesCache::configure(&conn);
        // Before anything else can run: no file, network or extension access from here on
        // (but the exports directory), bounded memory and threads, and locked so (see
        // `series::sql`).
        let exports = journal.map(|_| Self::exports_path(&path));
        series::lock_down(&conn, exports.as_deref())?;
        let sql_conn = conn.try_clone()?;
        // Replays the journal first, so that the mirror sees every acknowledged change.
        let catalog_writer = catalog::CatalogWriter::start(conn.try_clone()?, journal)?;
        let mirror = catalog::Mirror::load(&conn)?;
        Ok(Store {
            conn,
            sql_conn,
            sql_timeout: options.sql_timeout,
            exports,
            mirror: std::sync::Mutex::new(mirror),
            catalog_writer,
            path,
            series_cache: Default::default(),
        })
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = duckdb::Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: ":memory:".into(),
            source,
        })?;
        Self::with_connection(conn, ":memory:".into(), None, StoreOptions::default())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> &duckdb::Connection {
        &self.conn
    }

    pub(crate) fn sql_conn(&self) -> &duckdb::Connection {
        &self.sql_conn
    }

    pub(crate) fn sql_timeout(&self) -> std::time::Duration {
        self.sql_timeout
    }

    pub(crate) fn exports(&self) -> Option<&Path> {
        self.exports.as_deref()
    }

    pub(crate) fn series_cache(&self) -> &series::SeriesCache {
        &self.series_cache
    }

    pub(crate) fn mirror(&self) -> std::sync::MutexGuard<'_, catalog::Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn persist(&self, mutation: catalog::Mutation) {
        self.catalog_writer.send(mutation);
    }

    /// Waits until every catalog change made so far is committed to the file (before reading
    /// the catalog tables through SQL, and at shutdown).
    pub fn flush_catalog(&self) -> Result<(), StoreError> {
        self.catalog_writer
            .flush()
            .map_err(StoreError::CatalogWrite)
    }

    /// The last error persisting the catalog, if any (the change stayed in memory).
    pub fn catalog_error(&self) -> Option<String> {
        self.catalog_writer
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A quick integrity probe for `msb doctor`: the schema version and a catalog read.
    pub fn health(&self) -> Result<StoreHealth, StoreError> {
        self.flush_catalog()?;
        let schema_version = migrations::current_version(&self.conn)?;
        let sandboxes: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sandboxes", [], |r| r.get(0))?;
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).ok();
        Ok(StoreHealth {
            schema_version,
            sandboxes: sandboxes as u64,
            file_bytes,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub schema_version: i64,
    pub sandboxes: u64,
    pub file_bytes: Option<u64>,
}
