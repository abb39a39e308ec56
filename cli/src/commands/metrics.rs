//! `msb metrics`: live (one-shot, `--watch`, `--follow`), drop-in compatible with
//! microsandbox's JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use comfy_table::presets::NOTHING;
use comfy_table::Table;
use http_body_util::BodyExt;
use hyper::Method;

use super::parse;
use crate::api::MetricsReport;
use crate::client::{segment, Client};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Name,
    Cpu,
    Mem,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// One sandbox (in any state); omitted: every running sandbox.
    pub name: Option<String>,
    /// One-shot JSON: an array sorted by name, or one object when NAME is given.
    #[arg(long, value_enum, conflicts_with_all = ["watch", "follow"])]
    pub format: Option<MetricsFormat>,
    /// Refresh a table in place (needs a terminal); Ctrl-C quits.
    #[arg(short, long, conflicts_with = "follow")]
    pub watch: bool,
    /// JSON Lines, one object per sandbox per interval.
    #[arg(short, long)]
    pub follow: bool,
    /// Refresh interval for --watch and --follow: 500ms, 2s, 1m or seconds; at least 100ms.
    #[arg(long, default_value = "1s", value_parser = parse::duration)]
    pub interval: Duration,
    /// Include sandboxes whose run has ended.
    #[arg(short, long)]
    pub all: bool,
    #[arg(long, value_enum, default_value = "name")]
    pub sort: SortBy,
    /// History from this long ago (10m, 2h) or this RFC 3339 time, instead of live values.
    #[arg(long, value_parser = parse::time_ms, conflicts_with_all = ["watch", "follow"])]
    pub since: Option<i64>,
    /// End of the history window (default now).
    #[arg(long, value_parser = parse::time_ms, requires = "since")]
    pub until: Option<i64>,
    /// History step (default: 100 to 300 points over the window, never finer than the sampling
    /// interval): gauges are averaged per step, counters become rates.
    #[arg(long, value_parser = parse::duration, requires = "since")]
    pub step: Option<Duration>,
    /// Write the raw samples of the window to this Parquet file instead of printing.
    #[arg(long, value_name = "FILE.parquet", requires = "since")]
    pub output: Option<std::path::PathBuf>,
    /// Run one read-only SQL statement over the store's views (samples, samples_1m, sandboxes,
    /// runs, events, ...).
    #[arg(long, conflicts_with_all = ["name", "watch", "follow", "since"])]
    pub sql: Option<String>,
}

pub async fn metrics(client: &Client, args: MetricsArgs) -> Result<i32> {
    if args.interval < Duration::from_millis(100) {
        bail!("--interval must be at least 100ms");
    }
    if let Some(sql) = &args.sql {
        return super::history::sql(client, sql, args.format).await;
    }
    if let Some(since) = args.since {
        return super::history::history(client, &args, since).await;
    }
    if args.follow {
        return follow(client, &args).await;
    }
    if args.watch {
        if !std::io::stdout().is_terminal() {
            bail!("--watch needs a terminal; use --follow for a stream of JSON Lines");
        }
        return watch(client, &args).await;
    }
    let reports = fetch(client, &args).await?;
    if args.format == Some(MetricsFormat::Csv) {
        bail!(
            "--format csv is for history (--since) and --sql; live values come as a table or JSON"
        );
    }
    if args.format == Some(MetricsFormat::Json) {
        match &args.name {
            Some(_) => println!("{}", serde_json::to_string_pretty(&reports[0])?),
            None => println!("{}", serde_json::to_string_pretty(&reports)?),
        }
        return Ok(0);
    }
    if reports.is_empty() {
        eprintln!("No running sandboxes.");
        return Ok(0);
    }
    // Rates need two samples: wait for the next one of every running row (up to 2 s).
    let mut later = reports.clone();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        later = fetch(client, &args).await?;
        let fresh = later.iter().filter(|r| r.state == "running").all(|r| {
            reports
                .iter()
                .any(|p| p.name == r.name && p.timestamp != r.timestamp)
        });
        if fresh {
            break;
        }
    }
    print!("{}", render(&reports, &later));
    Ok(0)
}

pub(super) async fn fetch(client: &Client, args: &MetricsArgs) -> Result<Vec<MetricsReport>> {
    let mut reports: Vec<MetricsReport> = match &args.name {
        Some(name) => vec![
            client
                .call::<(), _>(
                    Method::GET,
                    &format!("/v1/sandboxes/{}/metrics", segment(name)),
                    None,
                )
                .await?,
        ],
        None => {
            client
                .call::<(), _>(Method::GET, &format!("/v1/metrics?all={}", args.all), None)
                .await?
        }
    };
    sort(&mut reports, args.sort);
    Ok(reports)
}

fn sort(reports: &mut [MetricsReport], by: SortBy) {
    match by {
        SortBy::Name => reports.sort_by(|a, b| a.name.cmp(&b.name)),
        SortBy::Cpu => reports.sort_by(|a, b| {
            b.sample
                .cpu_percent
                .unwrap_or(0.0)
                .total_cmp(&a.sample.cpu_percent.unwrap_or(0.0))
        }),
        SortBy::Mem => {
            reports.sort_by_key(|r| std::cmp::Reverse(r.sample.memory_bytes.unwrap_or(0)))
        }
    }
}

async fn follow(client: &Client, args: &MetricsArgs) -> Result<i32> {
    let mut uri = format!(
        "/v1/metrics/stream?interval_ms={}&all={}",
        args.interval.as_millis(),
        args.all
    );
    if let Some(name) = &args.name {
        uri.push_str(&format!("&name={}", segment(name)));
    }
    let mut body = client.stream(&uri).await?;
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the metrics stream")?;
        if let Some(data) = frame.data_ref() {
            if out.write_all(data).and_then(|_| out.flush()).is_err() {
                break; // stdout closed (e.g. piped into head)
            }
        }
    }
    Ok(0)
}

async fn watch(client: &Client, args: &MetricsArgs) -> Result<i32> {
    let mut previous = fetch(client, args).await?;
    loop {
        tokio::time::sleep(args.interval).await;
        let current = fetch(client, args).await?;
        let mut out = std::io::stdout().lock();
        write!(out, "\x1b[H\x1b[2J")?;
        if current.is_empty() {
            writeln!(out, "No running sandboxes.")?;
        } else {
            write!(out, "{}", render(&previous, &current))?;
        }
        out.flush()?;
        previous = current;
    }
}

fn rate(before: Option<u64>, after: Option<u64>, seconds: f64) -> Option<f64> {
    let (b, a) = (before?, after?);
    (seconds > 0.0 && a >= b).then(|| (a - b) as f64 / seconds)
}

fn bytes(value: f64) -> String {
    crate::commands::doctor::human_bytes(value.max(0.0) as u64)
}

/// The table: NAME STATE CPU MEM DISK R/W /s NET RX/TX /s UPTIME, rates from two reports.
pub fn render(previous: &[MetricsReport], current: &[MetricsReport]) -> String {
    let before: HashMap<&str, &MetricsReport> =
        previous.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header([
        "NAME",
        "STATE",
        "CPU",
        "MEM",
        "DISK R/W /s",
        "NET RX/TX /s",
        "UPTIME",
    ]);
    for r in current {
        let cpu = match (r.sample.cpu_percent, r.cpus) {
            (Some(p), Some(c)) => format!("{:.2} / {c}c", p / 100.0),
            (Some(p), None) => format!("{p:.1}%"),
            (None, _) => "—".into(),
        };
        let mem = match (r.sample.memory_bytes, r.sample.memory_limit_bytes) {
            (Some(m), Some(l)) => format!("{} / {}", bytes(m as f64), bytes(l as f64)),
            (Some(m), None) => bytes(m as f64),
            _ => "—".into(),
        };
        let pair = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{} / {}", bytes(a), bytes(b)),
            _ => "—".into(),
        };
        let (disk, net) = match (r.state.as_str(), before.get(r.name.as_str())) {
            ("stalled", _) => ("—".to_owned(), "—".to_owned()),
            ("exited", _) => (
                pair(
                    r.sample.disk_read_bytes.map(|v| v as f64),
                    r.sample.disk_write_bytes.map(|v| v as f64),
                ),
                pair(
                    r.sample.net_rx_bytes.map(|v| v as f64),
                    r.sample.net_tx_bytes.map(|v| v as f64),
                ),
            ),
            (_, Some(p))
                if p.sample.run_id == r.sample.run_id
                    && p.sample.uptime_secs < r.sample.uptime_secs =>
            {
                let dt = r.sample.uptime_secs - p.sample.uptime_secs;
                (
                    pair(
                        rate(p.sample.disk_read_bytes, r.sample.disk_read_bytes, dt),
                        rate(p.sample.disk_write_bytes, r.sample.disk_write_bytes, dt),
                    ),
                    pair(
                        rate(p.sample.net_rx_bytes, r.sample.net_rx_bytes, dt),
                        rate(p.sample.net_tx_bytes, r.sample.net_tx_bytes, dt),
                    ),
                )
            }
            _ => ("—".into(), "—".into()),
        };
        let uptime = humantime::format_duration(Duration::from_secs(r.sample.uptime_secs as u64))
            .to_string();
        table.add_row([r.name.clone(), r.state.clone(), cpu, mem, disk, net, uptime]);
    }
    format!("{}\n", table.trim_fmt())
}
