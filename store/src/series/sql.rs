//! `msb metrics --sql`: a user's query, read-only, over the documented relations only.
//!
//! msbd runs as root, so a query that reached the host's files would read or write them as
//! root. Two layers keep it inside the store, either enough on its own for file access:
//!
//! 1. The engine. When the store opens, before anything else runs, [`lock_down`] turns off
//!    external access for the whole database instance (no file or URL readers, replacement scans
//!    of `'path'` strings, `COPY`, `ATTACH`, `INSTALL`/`LOAD`; only the store's own files and its
//!    exports directory stay reachable), extension auto-install and auto-load, bounds memory
//!    ([`SQL_MEMORY_LIMIT`]), threads ([`SQL_THREADS`]) and spilling
//!    ([`SQL_TEMP_DIRECTORY_LIMIT`]), and then locks the configuration so that no statement can
//!    `SET` any of it back. These settings are global in DuckDB (there is no per-connection
//!    memory limit or file access), so they hold for the store's own statements too: it needs
//!    no file access after opening but for exports, which DuckDB writes into the exports
//!    directory ([`super::export`]). A query runs on a connection of its own, in a read-only
//!    transaction that is always rolled back, and is cancelled through that connection's
//!    interrupt handle after [`SQL_TIMEOUT`] (DuckDB has no statement timeout).
//! 2. The statement. DuckDB parses the text first (`json_serialize_sql`, which serialises SELECT
//!    statements only and reports anything else as an error), without running anything. It is
//!    refused unless it is exactly one SELECT (WITH, FROM-first, DESCRIBE, SUMMARIZE and VALUES
//!    included) whose tables are all in [`SQL_RELATIONS`] or CTEs *in scope where they are
//!    named* (a CTE is visible in the query that defines it, below it, and in the CTEs defined
//!    after it in the same WITH; not outside: `(WITH "/x" AS (..) ..) s, '/x'` reads `'/x'`),
//!    and whose table functions are in a short allow-list (no file readers, no `query()`, no
//!    `checkpoint()`). Everything else (INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH, COPY,
//!    PRAGMA, SET, INSTALL, LOAD, EXPLAIN, CALL, several statements) is refused before it
//!    reaches the engine; PRAGMA and CALL matter here, as some change connection state even with
//!    the configuration locked.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use duckdb::types::{TimeUnit, ValueRef};
use duckdb::Connection;
use serde_json::Value;

use super::SeriesError;
use crate::Store;

/// How long a user query may run, by default ([`crate::StoreOptions::sql_timeout`]).
pub const SQL_TIMEOUT: Duration = Duration::from_secs(10);

/// The database engine's memory limit (the store's own statements included: DuckDB has no
/// per-connection limit). What cannot spill to disk fails past it with "Out of Memory Error".
pub const SQL_MEMORY_LIMIT: &str = "512MB";

/// The database engine's worker threads.
pub const SQL_THREADS: u32 = 2;

/// The most the engine may spill to its temporary directory (`msb.duckdb.tmp`).
pub const SQL_TEMP_DIRECTORY_LIMIT: &str = "1GB";

/// Applies the engine settings of layer 1 (module documentation) to the database instance of
/// `conn`, `exports` being the one directory outside the store's files that DuckDB may write
/// (`None`: none). Order matters: `allowed_directories` cannot change once external access is
/// off, and nothing can once the configuration is locked.
pub(crate) fn lock_down(
    conn: &Connection,
    exports: Option<&std::path::Path>,
) -> duckdb::Result<()> {
    if let Some(dir) = exports.and_then(std::path::Path::to_str) {
        conn.execute_batch(&format!(
            "SET allowed_directories = ['{}/']",
            dir.replace('\'', "''")
        ))?;
    }
    conn.execute_batch(&format!(
        "SET enable_external_access = false;
         SET autoinstall_known_extensions = false;
         SET autoload_known_extensions = false;
         SET allow_community_extensions = false;
         SET memory_limit = '{SQL_MEMORY_LIMIT}';
         SET threads = {SQL_THREADS};
         SET max_temp_directory_size = '{SQL_TEMP_DIRECTORY_LIMIT}';
         SET lock_configuration = true;"
    ))
}

/// Relations a user query may read.
pub const SQL_RELATIONS: &[&str] = &[
    "samples",
    "samples_1m",
    "events",
    "sandboxes",
    "runs",
    "labels",
    "volumes",
];

/// Table functions a user query may call (they read nothing outside the query).
const TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest"];

/// Scalar functions refused even inside a SELECT (side effects or host access).
const REFUSED_FUNCTIONS: &[&str] = &["nextval", "setseed", "getenv", "current_setting"];

/// The most rows a user query may return.
pub const MAX_SQL_ROWS: usize = 100_000;

/// Column names and rows of a user query, values as JSON.
pub type SqlResult = (Vec<String>, Vec<Vec<Value>>);

fn refused(message: impl Into<String>) -> SeriesError {
    SeriesError::Refused(message.into())
}

/// Checks the parsed statement; see the module documentation.
fn check(parsed: &Value) -> Result<(), SeriesError> {
    if parsed["error"].as_bool() == Some(true) {
        let message = parsed["error_message"].as_str().unwrap_or("unknown error");
        return Err(if message.contains("Only SELECT statements") {
            refused("only a single read-only SELECT query is allowed")
        } else {
            SeriesError::Parse(message.to_owned())
        });
    }
    let statements = parsed["statements"].as_array().map_or(0, Vec::len);
    if statements != 1 {
        return Err(refused(format!(
            "exactly one statement is allowed, found {statements}"
        )));
    }
    walk(parsed, &[])
}

/// The names a query node's WITH defines (lowercased, in order), if it has one.
fn cte_names(map: &serde_json::Map<String, Value>) -> Option<(Vec<String>, &Vec<Value>)> {
    let entries = map
        .get("cte_map")
        .and_then(|c| c.get("map"))
        .and_then(Value::as_array)?;
    let names = entries
        .iter()
        .map(|entry| entry["key"].as_str().unwrap_or("").to_lowercase())
        .collect();
    Some((names, entries))
}

/// Checks `node`, where the CTE names in `scope` are visible.
fn walk(node: &Value, scope: &[String]) -> Result<(), SeriesError> {
    match node {
        Value::Object(map) => {
            if let Some((names, entries)) = cte_names(map) {
                // Each CTE sees those defined before it in the same WITH, and itself (WITH
                // RECURSIVE); the rest of the node sees all of them. Nothing outside does.
                for (i, entry) in entries.iter().enumerate() {
                    let visible: Vec<String> = scope.iter().chain(&names[..=i]).cloned().collect();
                    walk(entry, &visible)?;
                }
                let visible: Vec<String> = scope.iter().chain(&names).cloned().collect();
                let mut rest = map.clone();
                rest.remove("cte_map");
                return walk(&Value::Object(rest), &visible);
            }
            let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
            match text("type") {
                "BASE_TABLE" | "SHOW_REF" => {
                    let table = text("table_name").to_lowercase();
                    let qualified = !text("catalog_name").is_empty()
                        || !matches!(text("schema_name"), "" | "main");
                    let known = SQL_RELATIONS.contains(&table.as_str()) || scope.contains(&table);
                    if qualified || !(known || table.is_empty() && text("type") == "SHOW_REF") {
                        return Err(refused(format!(
                            "{:?} is not a queryable relation (allowed: {})",
                            text("table_name"),
                            SQL_RELATIONS.join(", ")
                        )));
                    }
                }
                "TABLE_FUNCTION" => {
                    let name = map
                        .get("function")
                        .and_then(|f| f.get("function_name"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !TABLE_FUNCTIONS.contains(&name.to_lowercase().as_str()) {
                        return Err(refused(format!(
                            "table function {name}() is not allowed (allowed: {})",
                            TABLE_FUNCTIONS.join(", ")
                        )));
                    }
                }
                _ => {}
            }
            let function = text("function_name").to_lowercase();
            if REFUSED_FUNCTIONS.contains(&function.as_str()) {
                return Err(refused(format!("function {function}() is not allowed")));
            }
            map.values().try_for_each(|v| walk(v, scope))
        }
        Value::Array(items) => items.iter().try_for_each(|v| walk(v, scope)),
        _ => Ok(()),
    }
}

/// ISO 8601 (UTC) for a timestamp in microseconds.
fn iso_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let micro = micros.rem_euclid(1_000_000);
    let (y, m, d) = super::partitions::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        micro / 1000
    )
}

fn to_micros(unit: TimeUnit, value: i64) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => value / 1000,
    }
}

fn json_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Boolean(b) => b.into(),
        ValueRef::TinyInt(v) => v.into(),
        ValueRef::SmallInt(v) => v.into(),
        ValueRef::Int(v) => v.into(),
        ValueRef::BigInt(v) => v.into(),
        ValueRef::UTinyInt(v) => v.into(),
        ValueRef::USmallInt(v) => v.into(),
        ValueRef::UInt(v) => v.into(),
        ValueRef::UBigInt(v) => v.into(),
        ValueRef::HugeInt(v) => i64::try_from(v).map_or_else(|_| v.to_string().into(), Value::from),
        ValueRef::UHugeInt(v) => {
            u64::try_from(v).map_or_else(|_| v.to_string().into(), Value::from)
        }
        ValueRef::Float(v) => {
            serde_json::Number::from_f64(f64::from(v)).map_or(Value::Null, Value::Number)
        }
        ValueRef::Double(v) => serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned().into(),
        ValueRef::Timestamp(unit, v) => iso_timestamp(to_micros(unit, v)).into(),
        ValueRef::Date32(days) => iso_timestamp(i64::from(days) * 86_400_000_000)[..10].into(),
        other => format!("{:?}", other.to_owned()).into(),
    }
}

/// Runs `query` and cancels it through `conn`'s interrupt handle if it has not returned after
/// `timeout`.
fn with_timeout<T>(
    conn: &Connection,
    timeout: Duration,
    query: impl FnOnce() -> Result<T, SeriesError>,
) -> Result<T, SeriesError> {
    #[derive(PartialEq)]
    enum State {
        Running,
        Done,
        Cancelled,
    }
    let watch = Arc::new((Mutex::new(State::Running), Condvar::new()));
    let timer = {
        let watch = Arc::clone(&watch);
        let interrupt = conn.interrupt_handle();
        std::thread::Builder::new()
            .name("msb-sql-timeout".into())
            .spawn(move || {
                let (state, changed) = &*watch;
                let state = super::cache::lock(state);
                let (mut state, _) = changed
                    .wait_timeout_while(state, timeout, |s| *s == State::Running)
                    .unwrap_or_else(|p| p.into_inner());
                // Under the lock: once the query is done, it is never interrupted.
                if *state == State::Running {
                    interrupt.interrupt();
                    *state = State::Cancelled;
                }
            })
            .map_err(|e| SeriesError::Write(format!("starting the query timer: {e}")))?
    };
    let result = query();
    let cancelled = {
        let (state, changed) = &*watch;
        let mut state = super::cache::lock(state);
        let cancelled = *state == State::Cancelled;
        *state = State::Done;
        changed.notify_one();
        cancelled
    };
    let _ = timer.join();
    match result {
        Err(_) if cancelled => Err(SeriesError::Cancelled { after: timeout }),
        other => other,
    }
}

fn run(conn: &Connection, sql: &str) -> Result<SqlResult, SeriesError> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if out.len() == MAX_SQL_ROWS {
            return Err(SeriesError::TooManyRows);
        }
        let width = row.as_ref().column_count();
        out.push(
            (0..width)
                .map(|i| row.get_ref(i).map(json_value))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    drop(rows);
    Ok((statement.column_names(), out))
}

impl Store {
    /// Runs a user's read-only query over [`SQL_RELATIONS`]; refuses anything else with
    /// [`SeriesError::Refused`] before it runs. At most [`MAX_SQL_ROWS`] rows; cancelled
    /// ([`SeriesError::Cancelled`]) after the store's query timeout.
    pub fn read_only_sql(&self, sql: &str) -> Result<SqlResult, SeriesError> {
        // The catalog tables are among the relations: let them catch up with the mirror.
        self.catalog_writer
            .flush()
            .map_err(|e| SeriesError::Write(format!("catalog not persisted: {e}")))?;
        let conn = self.sql_conn();
        let parsed: String =
            conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))?;
        let parsed: Value = serde_json::from_str(&parsed)
            .map_err(|e| SeriesError::Parse(format!("unreadable parse tree: {e}")))?;
        check(&parsed)?;
        conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
        let result = with_timeout(conn, self.sql_timeout(), || run(conn, sql));
        conn.execute_batch("ROLLBACK")?;
        result
    }
}
