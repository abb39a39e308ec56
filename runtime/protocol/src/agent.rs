//! Messages between the supervisor (host side) and `msb-agentd` (PID 1 in the sandbox).
//!
//! Session 0 is the sandbox's main workload; exec sessions use ids the supervisor allocates
//! from 1 upwards. The agent answers every `Exec` with exactly one `Started` or `ExecFailed`,
//! and every `Started` session with exactly one `Exited`, sent after all of its output.

use serde::{Deserialize, Serialize};

use crate::{ExecErrorKind, ExecSpec, ExitStatus, Stream};

/// Identifies one process the agent runs on the host's behalf.
pub type SessionId = u32;

/// The main workload's session.
pub const MAIN_SESSION: SessionId = 0;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    /// Start a process.
    Exec { session: SessionId, spec: ExecSpec },
    /// Bytes for the session's stdin.
    Stdin { session: SessionId, data: Vec<u8> },
    /// Close the session's stdin.
    StdinEof { session: SessionId },
    /// New terminal size for a PTY session.
    Resize {
        session: SessionId,
        rows: u16,
        cols: u16,
    },
    /// Deliver a signal to the session's process.
    Signal { session: SessionId, signal: i32 },
    /// SIGTERM every process, wait up to `grace_ms`, SIGKILL what is left, then exit.
    Shutdown { grace_ms: u64 },
}

/// A liveness and activity report, written once a second by a dedicated agent thread.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Increments by one per heartbeat.
    pub seq: u64,
    /// Increments on every exec start and every chunk of exec-session I/O; the idle timeout
    /// looks at this, never at heartbeat age.
    pub activity_seq: u64,
    /// Exec sessions currently running (the main workload is not counted).
    pub active_sessions: u32,
    /// Processes alive in the sandbox, the agent included.
    pub processes: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum FromAgent {
    /// The agent is up and serving.
    Ready {
        version: u32,
    },
    /// A session's process is running with this pid (in the sandbox's pid namespace).
    Started {
        session: SessionId,
        pid: u32,
    },
    /// A session's process could not be started.
    ExecFailed {
        session: SessionId,
        kind: ExecErrorKind,
        message: String,
    },
    /// Output of a session.
    Output {
        session: SessionId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// A session's process ended; no more output follows for it.
    Exited {
        session: SessionId,
        status: ExitStatus,
    },
    Heartbeat(Heartbeat),
}
