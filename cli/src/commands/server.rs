//! `msb server start|stop|status`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hyper::Method;

use crate::api::ServerStatus;
use crate::client::Client;

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub action: ServerAction,
}

#[derive(Subcommand, Debug)]
pub enum ServerAction {
    /// Start msbd for this MSB_HOME (no-op if it is running).
    Start,
    /// Stop msbd; running sandboxes keep running.
    Stop,
    /// Show whether msbd runs, and its pid, socket and sandboxes.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: super::Format,
    },
}

pub async fn server(client: &Client, args: ServerArgs) -> Result<i32> {
    match args.action {
        ServerAction::Start => {
            if client.connect_existing().await.is_none() {
                client.start_daemon().await?;
            }
            let status: ServerStatus = client
                .call::<(), _>(Method::GET, "/v1/server", None)
                .await?;
            println!("msbd running (pid {}) on {}", status.pid, status.socket);
            Ok(0)
        }
        ServerAction::Stop => {
            if client.connect_existing().await.is_none() {
                println!("msbd is not running");
                return Ok(0);
            }
            let status: ServerStatus = client
                .call::<(), _>(Method::GET, "/v1/server", None)
                .await?;
            client
                .call_empty(Method::POST, "/v1/server/shutdown")
                .await?;
            // Done when the process is gone (and with it the lock), not merely the socket.
            let pid = status.pid as i32;
            let deadline = Instant::now() + Duration::from_secs(10);
            while msb_host::process::is_alive(pid, None)
                || client.connect_existing().await.is_some()
            {
                if Instant::now() > deadline {
                    bail!("msbd did not stop within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("msbd stopped");
            Ok(0)
        }
        ServerAction::Status { format } => {
            if client.connect_existing().await.is_none() {
                if format == super::Format::Json {
                    println!(
                        "{}",
                        serde_json::json!({ "running": false, "msb_home": client.home.root() })
                    );
                } else {
                    println!("msbd is not running for {}", client.home.root().display());
                }
                return Ok(3);
            }
            let status: ServerStatus = client
                .call::<(), _>(Method::GET, "/v1/server", None)
                .await?;
            if format == super::Format::Json {
                let mut value = serde_json::to_value(&status)?;
                value["running"] = serde_json::Value::Bool(true);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("msbd running");
                println!("  pid:       {}", status.pid);
                println!("  version:   {}", status.version);
                println!("  home:      {}", status.msb_home);
                println!("  socket:    {}", status.socket);
                println!("  uptime:    {:.0}s", status.uptime_secs);
                println!(
                    "  sandboxes: {} ({} active)",
                    status.sandboxes_total, status.sandboxes_active
                );
                match &status.prometheus_address {
                    Some(addr) => println!("  metrics:   http://{addr}/metrics"),
                    None => println!("  metrics:   Prometheus endpoint off (see msbd.log)"),
                }
                let warm = &status.warm_supervisors;
                println!(
                    "  warm:      {} of {} supervisors ready; starts: {} warm ({} booted ahead), {} cold; root disks handed on: {}",
                    warm.idle, warm.target, warm.warm_starts, warm.booted_starts, warm.cold_starts, warm.disks_handed_on
                );
                if status.otlp.is_empty() {
                    println!("  otlp:      off (no OTEL_EXPORTER_OTLP_* endpoint)");
                }
                for export in &status.otlp {
                    println!(
                        "  otlp:      {} to {} ({}): {} sent, {} failed, {} dropped{}",
                        export.signal,
                        export.endpoint,
                        export.protocol,
                        export.succeeded,
                        export.failed,
                        export.dropped,
                        export
                            .last_success
                            .as_ref()
                            .map(|t| format!(", last success {t}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
    }
}
