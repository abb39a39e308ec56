//! `msb logs`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use http_body_util::BodyExt;
use msb_api::LogEntry;

use crate::client::{segment, Client};

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub name: String,
    /// Keep printing new output until the sandbox stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N chunks.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Prefix each line with the time it was received.
    #[arg(long)]
    pub timestamps: bool,
}

pub async fn logs(client: &Client, args: LogsArgs) -> Result<i32> {
    let mut uri = format!(
        "/v1/sandboxes/{}/logs?follow={}",
        segment(&args.name),
        args.follow
    );
    if let Some(tail) = args.tail {
        uri.push_str(&format!("&tail={tail}"));
    }
    let (headers, mut body) = client.stream_with_headers(&uri).await?;
    let dropped = headers
        .get("x-msb-log-dropped-bytes")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if dropped > 0 && args.tail.is_none() {
        eprintln!(
            "msb: {dropped} bytes of earlier output were dropped by the output log's cap \
             (msbd.toml [sandboxes] output_log_max_bytes)"
        );
    }
    let mut pending = Vec::new();
    let mut at_line_start = true;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading logs")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let entry: LogEntry = serde_json::from_slice(&line).context("decoding a log entry")?;
            print_entry(&entry, args.timestamps, &mut at_line_start)?;
        }
    }
    Ok(0)
}

fn print_entry(entry: &LogEntry, timestamps: bool, at_line_start: &mut bool) -> Result<()> {
    let mut out: Box<dyn Write> = if entry.stream == "stderr" {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    if !timestamps {
        out.write_all(entry.data.as_bytes())?;
        return Ok(out.flush()?);
    }
    let stamp = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.ts_ms),
    );
    for piece in entry.data.split_inclusive('\n') {
        if *at_line_start {
            write!(out, "{stamp} ")?;
        }
        out.write_all(piece.as_bytes())?;
        *at_line_start = piece.ends_with('\n');
    }
    Ok(out.flush()?)
}
