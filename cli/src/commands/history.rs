//! `msb metrics NAME --since ...` and `msb metrics --sql ...`: history from the store.

use anyhow::{bail, Result};
use hyper::Method;
use serde_json::Value;

use super::metrics::{MetricsArgs, MetricsFormat};
use crate::api::{ExportRequest, ExportResponse, HistoryResponse, SqlRequest, SqlResponse};
use crate::client::{segment, Client};

pub async fn history(client: &Client, args: &MetricsArgs, since_ms: i64) -> Result<i32> {
    let until_ms = args
        .until
        .unwrap_or_else(|| msb_host::clock::now_ms() as i64);
    if until_ms <= since_ms {
        bail!("--until must be after --since");
    }
    if let Some(path) = &args.output {
        let Some(name) = &args.name else {
            bail!("--output needs a sandbox NAME")
        };
        let absolute = std::path::absolute(path)?;
        let request = ExportRequest {
            since_ms,
            until_ms,
            path: absolute.display().to_string(),
        };
        let response: ExportResponse = client
            .call(
                Method::POST,
                &format!("/v1/sandboxes/{}/export", segment(name)),
                Some(&request),
            )
            .await?;
        eprintln!("{} samples written to {}", response.rows, response.path);
        return Ok(0);
    }
    // Without --step msbd picks one: 100 to 300 points, never finer than the sampling interval.
    let mut window = format!("since_ms={since_ms}&until_ms={until_ms}");
    if let Some(step) = args.step {
        window.push_str(&format!("&step_ms={}", step.as_millis()));
    }
    let uri = match &args.name {
        Some(name) => format!("/v1/sandboxes/{}/history?{window}", segment(name)),
        None => format!("/v1/history/fleet?{window}"),
    };
    let response: HistoryResponse = client.call::<(), _>(Method::GET, &uri, None).await?;
    let columns: Vec<String> = match response.points.first() {
        Some(Value::Object(first)) => first.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let rows: Vec<Vec<Value>> = response
        .points
        .iter()
        .map(|p| {
            columns
                .iter()
                .map(|c| p.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    print_rows(
        &columns,
        &rows,
        args.format.unwrap_or(MetricsFormat::Table),
        &response.points,
    )
}

pub async fn sql(client: &Client, sql: &str, format: Option<MetricsFormat>) -> Result<i32> {
    let response: SqlResponse = client
        .call(
            Method::POST,
            "/v1/sql",
            Some(&SqlRequest {
                sql: sql.to_owned(),
            }),
        )
        .await?;
    let objects: Vec<Value> = response
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                response
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect(),
            )
        })
        .collect();
    print_rows(
        &response.columns,
        &response.rows,
        format.unwrap_or(MetricsFormat::Table),
        &objects,
    )
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn print_rows(
    columns: &[String],
    rows: &[Vec<Value>],
    format: MetricsFormat,
    objects: &[Value],
) -> Result<i32> {
    match format {
        MetricsFormat::Json => println!("{}", serde_json::to_string_pretty(objects)?),
        MetricsFormat::Csv => {
            println!(
                "{}",
                columns
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for row in rows {
                println!(
                    "{}",
                    row.iter()
                        .map(|v| csv_field(&cell(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        MetricsFormat::Table => {
            if rows.is_empty() {
                eprintln!("No data in that window.");
                return Ok(0);
            }
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(columns);
            for row in rows {
                table.add_row(row.iter().map(cell));
            }
            println!("{}", table.trim_fmt());
        }
    }
    Ok(0)
}
