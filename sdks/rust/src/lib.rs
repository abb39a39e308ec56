//! The Rust client of msbd, the msb sandbox daemon: sandbox lifecycle, exec (buffered and
//! streaming), metrics (live, streamed, history) and capacity, async on tokio. Its types are
//! the API contract's own (`msb-api`, from which docs/openapi.json is generated).
//!
//! ```no_run
//! # async fn demo() -> msb_sdk::Result<()> {
//! let client = msb_sdk::Client::new(); // $MSB_HOME or ~/.msb; starts msbd if needed
//! let mut sandbox = client.sandbox("demo").memory_mib(256).start().await?;
//! println!("{}", sandbox.exec(["echo", "hello"]).await?.stdout_text());
//! println!("{:?}", sandbox.metrics().await?.sample.memory_bytes);
//! sandbox.stop(None).await?;
//! # Ok(()) }
//! ```

mod error;
mod process;
mod sandbox;
mod transport;

pub use error::{Error, Result};
pub use msb_api::{
    CapacityReport, HistoryResponse, MetricsReport, RunInfo, SandboxHeadroom, SandboxInfo,
    WaitResponse,
};
pub use process::{OutputChunk, Process, StreamOptions};
pub use sandbox::{ExecOptions, ExecOutput, MetricsStream, Sandbox, SandboxBuilder};

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use error::Operation;
use transport::Transport;

/// A connection to the msbd of an MSB_HOME, or to a given socket. msbd is started on first use
/// if it is not running (for a home; a bare socket is only connected to). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// The msbd of `$MSB_HOME`, else `~/.msb`.
    pub fn new() -> Self {
        Self::with_home(transport::default_home())
    }

    /// The msbd of this home.
    pub fn with_home(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        let socket = home.join("msbd.sock");
        Self {
            transport: Transport::new(Some(home), socket, None),
        }
    }

    /// A socket only: msbd is never started.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Self {
        Self {
            transport: Transport::new(None, socket.into(), None),
        }
    }

    /// Starts this msbd binary when none runs (default: `$MSB_BIN_DIR/msbd`, the PATH,
    /// /usr/local/lib/msb).
    pub fn msbd(mut self, path: impl AsRef<Path>) -> Self {
        self.transport.msbd = Some(path.as_ref().to_owned());
        self
    }

    /// A builder for a new sandbox; an empty name lets msbd pick one (and makes it ephemeral).
    pub fn sandbox(&self, name: &str) -> SandboxBuilder {
        SandboxBuilder::new(self.clone(), name)
    }

    /// The sandbox named `name` ([`Error::NotFound`] if there is none).
    pub async fn get(&self, name: &str) -> Result<Sandbox> {
        let info: SandboxInfo = self
            .transport
            .call(
                "GET",
                &sandbox_path(name, None),
                None::<&()>,
                Operation::Other,
            )
            .await?;
        Ok(Sandbox::new(self.clone(), info))
    }

    /// Every sandbox (`all` false: the running ones), as live handles.
    pub async fn list(&self, all: bool) -> Result<Vec<Sandbox>> {
        let path = if all {
            "/v1/sandboxes?all=true"
        } else {
            "/v1/sandboxes"
        };
        let infos: Vec<SandboxInfo> = self
            .transport
            .call("GET", path, None::<&()>, Operation::Other)
            .await?;
        Ok(infos
            .into_iter()
            .map(|info| Sandbox::new(self.clone(), info))
            .collect())
    }

    /// Removes a sandbox that is not running (`force`: kills it first).
    pub async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let mut path = sandbox_path(name, None);
        if force {
            path.push_str("?force=true");
        }
        self.transport
            .call_empty("DELETE", &path, Operation::Other)
            .await
    }

    /// The latest sample of every running sandbox (`include_ended`: and of ended runs).
    pub async fn all_sandbox_metrics(
        &self,
        include_ended: bool,
    ) -> Result<std::collections::BTreeMap<String, MetricsReport>> {
        let path = if include_ended {
            "/v1/metrics?all=true"
        } else {
            "/v1/metrics"
        };
        let reports: Vec<MetricsReport> = self
            .transport
            .call("GET", path, None::<&()>, Operation::Metrics)
            .await?;
        Ok(reports.into_iter().map(|r| (r.name.clone(), r)).collect())
    }

    /// The host's CPUs, memory and disk against what sandboxes were given and use.
    pub async fn capacity(&self) -> Result<CapacityReport> {
        self.transport
            .call("GET", "/v1/capacity", None::<&()>, Operation::Other)
            .await
    }

    /// Every running sandbox's report (or `name`'s) each `interval`.
    pub async fn metrics_stream(
        &self,
        interval: Duration,
        name: Option<&str>,
    ) -> Result<MetricsStream> {
        let mut path = format!("/v1/metrics/stream?interval_ms={}", interval.as_millis());
        if let Some(name) = name {
            path.push_str(&format!("&name={}", segment(name)));
        }
        let body = self.transport.stream(&path, Operation::Metrics).await?;
        Ok(MetricsStream::new(body))
    }

    /// The fleet's stored samples over a window (see [`Sandbox::metrics_history`]).
    pub async fn fleet_history(
        &self,
        since: SystemTime,
        until: Option<SystemTime>,
        step: Option<Duration>,
    ) -> Result<HistoryResponse> {
        let path = format!("/v1/history/fleet?{}", window(since, until, step));
        self.transport
            .call("GET", &path, None::<&()>, Operation::Other)
            .await
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// Percent-encodes a path segment.
pub(crate) fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn sandbox_path(name: &str, verb: Option<&str>) -> String {
    match verb {
        Some(verb) => format!("/v1/sandboxes/{}/{verb}", segment(name)),
        None => format!("/v1/sandboxes/{}", segment(name)),
    }
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn window(
    since: SystemTime,
    until: Option<SystemTime>,
    step: Option<Duration>,
) -> String {
    let mut query = format!("since_ms={}", epoch_ms(since));
    if let Some(until) = until {
        query.push_str(&format!("&until_ms={}", epoch_ms(until)));
    }
    if let Some(step) = step {
        query.push_str(&format!("&step_ms={}", step.as_millis()));
    }
    query
}
