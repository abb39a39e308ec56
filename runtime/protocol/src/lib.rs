//! The one framed protocol msb speaks over byte channels.
//!
//! Two conversations use it:
//!
//! - **host ↔ agent** ([`agent`]): the supervisor and `msb-agentd` (PID 1 in the sandbox), over
//!   whatever byte channel the backend gives (a socketpair for namespace sandboxes; a
//!   virtio-console or vsock port in a microVM).
//! - **client ↔ supervisor** ([`session`]): one exec or attach session per connection on the
//!   supervisor's unix socket, relayed by `msbd` from the CLI or an SDK.
//!
//! A frame is a 4-byte little-endian body length followed by the body, a postcard-encoded
//! message. Bodies larger than [`MAX_FRAME_BYTES`] are rejected before any allocation, so a
//! hostile peer cannot make the reader allocate more than that. Blocking readers and writers
//! are in [`codec`]; async ones over Tokio streams in [`framing`] (feature `tokio`, which the
//! agent, a blocking program, does without).

pub mod agent;
pub mod codec;
#[cfg(feature = "tokio")]
pub mod framing;
pub mod session;

pub use codec::{decode, encode, read_frame, write_frame, FrameDecoder, FrameError};

/// Version carried in [`agent::FromAgent::Ready`]; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body accepted by any reader.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Largest output or input chunk a sender puts in one frame (leaves room for the envelope).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

use serde::{Deserialize, Serialize};

/// Which output stream a chunk came from.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a process ended: exactly one of `code` or `signal` is set.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + signal number.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        }
    }
}

/// How an exec session's standard streams are wired.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// Pipes; stdin is closed at once; output is delivered as it is produced and the client
    /// prints it when the session ends.
    Buffered,
    /// Pipes; stdin is forwarded byte for byte; output streamed; no translation of any kind.
    Stream,
    /// A pseudo-terminal of the given size; stdout and stderr arrive merged as `Stdout`.
    Pty { rows: u16, cols: u16 },
}

/// Everything the agent needs to start one process.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub mode: ExecMode,
}

/// Why the agent could not start a process.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecErrorKind {
    NotFound,
    PermissionDenied,
    InvalidRequest,
    Other,
}

impl ExecErrorKind {
    /// The exit code a shell gives for this failure.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExecErrorKind::NotFound => 127,
            ExecErrorKind::PermissionDenied => 126,
            ExecErrorKind::InvalidRequest | ExecErrorKind::Other => 125,
        }
    }
}
