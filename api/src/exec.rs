//! Exec and drain in the API, for clients that speak JSON only (the SDKs):
//!
//! - the buffered exec (`POST /v1/sandboxes/{name}/exec`): one request, one answer with the
//!   exit status and both outputs (base64), bounded by [`MAX_EXEC_OUTPUT_BYTES`] per stream;
//! - the JSON session (`GET /v1/sandboxes/{name}/session` with `Upgrade: msb-session-json`):
//!   newline-delimited [`SessionRequest`]s from the client and [`SessionEvent`]s from msbd,
//!   which translates them to and from the supervisor's framed protocol;
//! - drain (`POST /v1/sandboxes/{name}/drain`): no new exec sessions, the running ones finish,
//!   then the sandbox stops.
//!
//! Bytes (stdin, output) travel as standard base64 with padding.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ConfigError;
use crate::requests::{RequestError, MAX_STOP_TIMEOUT_SECS};

/// The `Upgrade` token of the JSON session.
pub const SESSION_JSON_UPGRADE: &str = "msb-session-json";
/// The most bytes of each stream (stdout, stderr) a buffered exec answers with; what the
/// process writes past it is read and dropped, and `stdout_truncated`/`stderr_truncated` say so.
pub const MAX_EXEC_OUTPUT_BYTES: usize = 16 << 20;
/// The most bytes of stdin a buffered exec takes (decoded).
pub const MAX_EXEC_STDIN_BYTES: usize = 16 << 20;
/// The longest `stdin` (base64 characters) a buffered exec takes.
pub const MAX_EXEC_STDIN_BASE64_CHARS: usize = MAX_EXEC_STDIN_BYTES.div_ceil(3) * 4;
/// The longest `timeout_ms` of a buffered exec: one day.
pub const MAX_EXEC_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// The longest a drain waits for exec sessions (`timeout_secs`): one day.
pub const MAX_DRAIN_TIMEOUT_SECS: u64 = 24 * 3600;
/// Standard base64 with padding (stdin).
pub const BASE64_PATTERN: &str = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// A buffered exec: run `argv`, feed it `stdin`, wait for it to end.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments; looked up on `PATH` in the sandbox.
    pub argv: Vec<String>,
    /// `[name, value]` pairs added to (and overriding) the sandbox's environment.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub env: Vec<(String, String)>,
    /// Absolute working directory; default the sandbox's.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Bytes for stdin, base64 (at most 16 MiB decoded); absent: stdin is closed at once.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Milliseconds after which the process is killed (SIGKILL) and the answer says
    /// `timed_out`; absent: no limit.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// How a buffered exec ended and what it wrote.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ExecResponse {
    /// The exit code, or 128 + signal when a signal ended the process (the shell convention).
    pub exit_code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Standard output, base64.
    pub stdout: String,
    /// Standard error, base64.
    pub stderr: String,
    /// The process wrote more than `MAX_EXEC_OUTPUT_BYTES` (16 MiB) to stdout; the rest was
    /// dropped.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// `timeout_ms` passed and the process was killed.
    pub timed_out: bool,
}

/// A pseudo-terminal's size.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// The first message of a JSON session that runs a new process.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionExec {
    pub argv: Vec<String>,
    /// `[name, value]` pairs added to (and overriding) the sandbox's environment.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run under a pseudo-terminal of this size (stdout and stderr arrive merged as stdout).
    #[serde(default)]
    pub pty: Option<TerminalSize>,
    /// Keep stdin open for `stdin` messages (pipes, byte for byte); false closes it at once.
    #[serde(default)]
    pub stdin: bool,
}

/// An empty object (`{"attach": {}}`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// One line from the client on a JSON session. The first opens the session (`exec` or
/// `attach`); the others act on it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionRequest {
    /// Run a new process.
    Exec(SessionExec),
    /// Follow the sandbox's main workload: its output from now on, its exit; stdin goes to it.
    Attach(Empty),
    /// Bytes for the process's stdin, base64.
    Stdin(String),
    /// Close the process's stdin (the value is `true`).
    StdinEof(bool),
    /// The terminal's new size (pty sessions).
    Resize(TerminalSize),
    /// Send this signal (1 to 64) to the process.
    Signal(i32),
}

/// Why a process could not start.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecFailureKind {
    /// The command is not in the sandbox (a shell would exit 127).
    NotFound,
    /// Not executable (126).
    PermissionDenied,
    InvalidRequest,
    Other,
}

/// `stdout` or `stderr`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line from msbd on a JSON session. An exec session answers `started` or `exec_failed`
/// first; `exited` (or `exec_failed`) is the last line, after all output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    /// The process runs (its pid inside the sandbox).
    Started { pid: u32 },
    /// The process could not start.
    ExecFailed {
        kind: ExecFailureKind,
        message: String,
    },
    /// A chunk of output, base64.
    Output { stream: OutputStream, data: String },
    /// The process ended: exactly one of `code` and `signal` is set.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The session failed (a malformed line, the supervisor gone); the last line.
    Error(String),
}

/// `drain`: refuse new exec sessions, let the running ones end, then stop the sandbox.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Seconds to wait for the running exec sessions to end (at most 86400); after it the
    /// sandbox is stopped anyway. Absent: wait as long as they run.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The stop's grace between SIGTERM and SIGKILL for the workload, in seconds; default 10,
    /// at most 3600.
    #[serde(default)]
    pub stop_timeout_secs: Option<u64>,
}

fn validate_command(
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
) -> Result<(), RequestError> {
    if argv.is_empty() {
        return Err(RequestError::EmptyArgv);
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(RequestError::Config(ConfigError::Nul { field: "argv" }));
    }
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(RequestError::Config(ConfigError::EnvName(name.clone())));
        }
        if value.contains('\0') {
            return Err(RequestError::Config(ConfigError::Nul { field: "env" }));
        }
    }
    if let Some(dir) = workdir {
        if !dir.starts_with('/') || dir.contains('\0') {
            return Err(RequestError::Config(ConfigError::Workdir(dir.to_owned())));
        }
    }
    Ok(())
}

/// Whether `text` is standard base64 with padding ([`BASE64_PATTERN`]).
pub fn is_base64(text: &str) -> bool {
    text.len() % 4 == 0
        && text.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric()
                || b == b'+'
                || b == b'/'
                || (b == b'=' && i + 2 >= text.len() && text[i..].bytes().all(|c| c == b'='))
        })
}

impl ExecRequest {
    pub fn validate(&self) -> Result<(), RequestError> {
        validate_command(&self.argv, &self.env, self.workdir.as_deref())?;
        if let Some(stdin) = &self.stdin {
            if !is_base64(stdin) {
                return Err(RequestError::Base64("stdin"));
            }
            if stdin.len() > MAX_EXEC_STDIN_BASE64_CHARS {
                return Err(RequestError::StdinTooLarge);
            }
        }
        match self.timeout_ms {
            Some(ms) if !(1..=MAX_EXEC_TIMEOUT_MS).contains(&ms) => {
                Err(RequestError::ExecTimeout(ms))
            }
            _ => Ok(()),
        }
    }
}

impl SessionExec {
    pub fn validate(&self) -> Result<(), RequestError> {
        validate_command(&self.argv, &self.env, self.workdir.as_deref())
    }
}

impl DrainRequest {
    pub fn validate(&self) -> Result<(), RequestError> {
        if let Some(secs) = self.timeout_secs.filter(|s| *s > MAX_DRAIN_TIMEOUT_SECS) {
            return Err(RequestError::DrainTimeout(secs));
        }
        if let Some(secs) = self
            .stop_timeout_secs
            .filter(|s| *s > MAX_STOP_TIMEOUT_SECS)
        {
            return Err(RequestError::StopTimeout(secs));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_checked_as_the_pattern_says() {
        let pattern = regex::Regex::new(BASE64_PATTERN).unwrap();
        for text in [
            "", "YQ==", "YWI=", "YWJj", "YWJjZA==", "a", "YQ=", "Y===", "YQ==YQ==", "Y Q=", "=YWJ",
        ] {
            assert_eq!(is_base64(text), pattern.is_match(text), "{text:?}");
        }
    }

    #[test]
    fn session_messages_are_spelt_as_documented() {
        let exec: SessionRequest =
            serde_json::from_str(r#"{"exec": {"argv": ["cat"], "stdin": true}}"#).unwrap();
        assert!(matches!(
            exec,
            SessionRequest::Exec(SessionExec { stdin: true, .. })
        ));
        let attach: SessionRequest = serde_json::from_str(r#"{"attach": {}}"#).unwrap();
        assert_eq!(attach, SessionRequest::Attach(Empty {}));
        let eof: SessionRequest = serde_json::from_str(r#"{"stdin_eof": true}"#).unwrap();
        assert_eq!(eof, SessionRequest::StdinEof(true));
        let resize: SessionRequest =
            serde_json::from_str(r#"{"resize": {"rows": 24, "cols": 80}}"#).unwrap();
        assert_eq!(
            resize,
            SessionRequest::Resize(TerminalSize { rows: 24, cols: 80 })
        );
        let event = SessionEvent::Output {
            stream: OutputStream::Stderr,
            data: "YQ==".into(),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"output":{"stream":"stderr","data":"YQ=="}}"#
        );
        assert_eq!(
            serde_json::to_string(&SessionEvent::Exited {
                code: Some(3),
                signal: None
            })
            .unwrap(),
            r#"{"exited":{"code":3,"signal":null}}"#
        );
    }
}
