//! The checks on request bodies and query strings other than the sandbox configuration
//! ([`crate::config`]): each request type's `validate()`, which msbd calls first, and the
//! bounds it uses, which the OpenAPI document states (`crate::contract`).

use crate::config::{validate_name, ConfigError};
use crate::exec::{MAX_DRAIN_TIMEOUT_SECS, MAX_EXEC_STDIN_BYTES, MAX_EXEC_TIMEOUT_MS};
use crate::operations::{LogsQuery, StreamQuery, WindowQuery};
use crate::{CreateSandboxRequest, ExportRequest, KillRequest, StopRequest};

/// Signals `kill` accepts: 1 to `SIGRTMAX` (64 on Linux).
pub const MIN_SIGNAL: i32 = 1;
pub const MAX_SIGNAL: i32 = 64;
/// The longest `stop` grace, in seconds.
pub const MAX_STOP_TIMEOUT_SECS: u64 = 3600;
/// The range of the metrics stream's interval, in ms.
pub const MIN_STREAM_INTERVAL_MS: u64 = 100;
pub const MAX_STREAM_INTERVAL_MS: u64 = 3_600_000;
/// The range of history's `step_ms`.
pub const MIN_STEP_MS: i64 = 100;
/// The range of instants in ms since the Unix epoch: 1970 to the end of year 9999.
pub const MIN_EPOCH_MS: i64 = 0;
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;
/// The most steps a history answer holds; a finer step is coarsened to fit.
pub const MAX_HISTORY_STEPS: i64 = 100_000;
/// The most log entries `tail` asks for.
pub const MAX_TAIL: u64 = 1 << 32;
/// An export's file: an absolute path ending in `.parquet`, without NUL.
pub const PARQUET_PATH_PATTERN: &str = "^/[^\\u0000]*\\.parquet$";

/// A request that breaks a documented constraint; the message starts with the field's name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("signal: {0} is out of range {MIN_SIGNAL}-{MAX_SIGNAL}")]
    Signal(i32),
    #[error("timeout_secs: {0} is more than {MAX_STOP_TIMEOUT_SECS}")]
    StopTimeout(u64),
    #[error(
        "interval_ms: must be {MIN_STREAM_INTERVAL_MS} to {MAX_STREAM_INTERVAL_MS} ms, got {0}"
    )]
    StreamInterval(u64),
    #[error("step_ms: must be {MIN_STEP_MS} to {MAX_EPOCH_MS} ms, got {0}")]
    Step(i64),
    #[error(
        "{field}: must be {MIN_EPOCH_MS} to {MAX_EPOCH_MS} (ms since the Unix epoch), got {value}"
    )]
    Instant { field: &'static str, value: i64 },
    #[error("tail: {0} is more than {MAX_TAIL}")]
    Tail(usize),
    #[error("path: {0:?} must be an absolute path ending in .parquet")]
    ExportPath(String),
    #[error("name: {0}")]
    Name(ConfigError),
    #[error("argv: must name a command")]
    EmptyArgv,
    #[error("{0}: must be standard base64 with padding")]
    Base64(&'static str),
    #[error("stdin: more than {MAX_EXEC_STDIN_BYTES} bytes")]
    StdinTooLarge,
    #[error("timeout_ms: must be 1 to {MAX_EXEC_TIMEOUT_MS} ms, got {0}")]
    ExecTimeout(u64),
    #[error("timeout_secs: {0} is more than {MAX_DRAIN_TIMEOUT_SECS}")]
    DrainTimeout(u64),
    #[error("attach: attaching requires start")]
    AttachWithoutStart,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RequestError {
    /// See [`ConfigError::is_beyond_the_schema`].
    pub fn is_beyond_the_schema(&self) -> bool {
        matches!(self, RequestError::Config(e) if e.is_beyond_the_schema())
    }
}

fn instant(field: &'static str, value: i64) -> Result<(), RequestError> {
    if (MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(&value) {
        Ok(())
    } else {
        Err(RequestError::Instant { field, value })
    }
}

impl CreateSandboxRequest {
    /// The configuration's checks ([`crate::config::SandboxConfig::validate`]; an empty name
    /// is refused, so msbd names an unnamed sandbox first), and `attach` only with `start`.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.attach.is_some() && !self.start {
            return Err(RequestError::AttachWithoutStart);
        }
        Ok(self.config.validate()?)
    }
}

impl KillRequest {
    pub fn validate(&self) -> Result<(), RequestError> {
        if !(MIN_SIGNAL..=MAX_SIGNAL).contains(&self.signal) {
            return Err(RequestError::Signal(self.signal));
        }
        Ok(())
    }
}

impl StopRequest {
    pub fn validate(&self) -> Result<(), RequestError> {
        match self.timeout_secs {
            Some(secs) if secs > MAX_STOP_TIMEOUT_SECS => Err(RequestError::StopTimeout(secs)),
            _ => Ok(()),
        }
    }
}

impl StreamQuery {
    pub fn validate(&self) -> Result<(), RequestError> {
        if let Some(ms) = self.interval_ms {
            if !(MIN_STREAM_INTERVAL_MS..=MAX_STREAM_INTERVAL_MS).contains(&ms) {
                return Err(RequestError::StreamInterval(ms));
            }
        }
        if let Some(name) = &self.name {
            validate_name(name).map_err(RequestError::Name)?;
        }
        Ok(())
    }
}

impl LogsQuery {
    pub fn validate(&self) -> Result<(), RequestError> {
        match self.tail {
            Some(tail) if tail as u64 > MAX_TAIL => Err(RequestError::Tail(tail)),
            _ => Ok(()),
        }
    }
}

impl WindowQuery {
    /// The bounds of each field. That the window is not empty (`until_ms > since_ms`) cannot
    /// be stated field by field; msbd answers 422 when it is.
    pub fn validate(&self) -> Result<(), RequestError> {
        instant("since_ms", self.since_ms)?;
        if let Some(until) = self.until_ms {
            instant("until_ms", until)?;
        }
        if let Some(step) = self.step_ms {
            if !(MIN_STEP_MS..=MAX_EPOCH_MS).contains(&step) {
                return Err(RequestError::Step(step));
            }
        }
        Ok(())
    }
}

/// `step_ms`, coarsened so that the window from `since_ms` to `until_ms` holds at most
/// [`MAX_HISTORY_STEPS`] steps.
pub fn fit_step(since_ms: i64, until_ms: i64, step_ms: i64) -> i64 {
    let window = until_ms.saturating_sub(since_ms).max(0);
    step_ms.max((window + MAX_HISTORY_STEPS - 1) / MAX_HISTORY_STEPS)
}

impl ExportRequest {
    /// Field bounds and the path's form; that the window is not empty and that the path's
    /// directory exists on msbd's host are checked by msbd (422).
    pub fn validate(&self) -> Result<(), RequestError> {
        instant("since_ms", self.since_ms)?;
        instant("until_ms", self.until_ms)?;
        let path = &self.path;
        if !(path.starts_with('/') && path.ends_with(".parquet") && !path.contains('\0')) {
            return Err(RequestError::ExportPath(path.clone()));
        }
        Ok(())
    }
}
