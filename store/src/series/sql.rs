//! `msb metrics --sql`: a user's query, read-only, over the documented relations only.
//!
//! DuckDB parses the text first (`json_serialize_sql`, which serialises SELECT statements only
//! and reports anything else as an error), without running anything. The statement is refused
//! unless it is exactly one SELECT (WITH, FROM-first, DESCRIBE, SUMMARIZE and VALUES included)
//! whose tables are all in [`SQL_RELATIONS`] or its own CTEs, and whose table functions are
//! in a short allow-list (no file readers, no `query()`, no `checkpoint()`). It then runs inside
//! a transaction that is always rolled back. Everything else (INSERT, UPDATE, DELETE, CREATE,
//! DROP, ATTACH, COPY, PRAGMA, SET, INSTALL, LOAD, EXPLAIN, CALL, several statements) is
//! refused before it reaches the engine.

use std::collections::HashSet;

use duckdb::types::{TimeUnit, ValueRef};
use serde_json::Value;

use super::SeriesError;
use crate::Store;

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
    let mut ctes = HashSet::new();
    collect_ctes(parsed, &mut ctes);
    walk(parsed, &ctes)
}

fn collect_ctes(node: &Value, ctes: &mut HashSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(entries) = map
                .get("cte_map")
                .and_then(|c| c.get("map"))
                .and_then(Value::as_array)
            {
                for entry in entries {
                    if let Some(key) = entry["key"].as_str() {
                        ctes.insert(key.to_lowercase());
                    }
                }
            }
            map.values().for_each(|v| collect_ctes(v, ctes));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_ctes(v, ctes)),
        _ => {}
    }
}

fn walk(node: &Value, ctes: &HashSet<String>) -> Result<(), SeriesError> {
    match node {
        Value::Object(map) => {
            let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
            match text("type") {
                "BASE_TABLE" | "SHOW_REF" => {
                    let table = text("table_name").to_lowercase();
                    let qualified = !text("catalog_name").is_empty()
                        || !matches!(text("schema_name"), "" | "main");
                    let known = SQL_RELATIONS.contains(&table.as_str()) || ctes.contains(&table);
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
            map.values().try_for_each(|v| walk(v, ctes))
        }
        Value::Array(items) => items.iter().try_for_each(|v| walk(v, ctes)),
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

impl Store {
    /// Runs a user's read-only query over [`SQL_RELATIONS`]; refuses anything else with
    /// [`SeriesError::Refused`] before it runs. At most [`MAX_SQL_ROWS`] rows.
    pub fn read_only_sql(&self, sql: &str) -> Result<SqlResult, SeriesError> {
        // The catalog tables are among the relations: let them catch up with the mirror.
        self.catalog_writer
            .flush()
            .map_err(|e| SeriesError::Write(format!("catalog not persisted: {e}")))?;
        let conn = self.conn();
        let parsed: String =
            conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))?;
        let parsed: Value = serde_json::from_str(&parsed)
            .map_err(|e| SeriesError::Parse(format!("unreadable parse tree: {e}")))?;
        check(&parsed)?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> Result<SqlResult, SeriesError> {
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
        })();
        conn.execute_batch("ROLLBACK")?;
        result
    }
}
