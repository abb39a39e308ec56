//! Messages on one connection to a supervisor's socket.
//!
//! The first request opens the session (`Attach`, `Exec`, `Control`, `Watch`); after an `Attach` or
//! `Exec`, only `Stdin`, `StdinEof`, `Resize` and `Signal` are accepted on that connection.

use serde::{Deserialize, Serialize};

use crate::{ExecErrorKind, ExecSpec, ExitStatus, Stream};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// Follow the main workload: its output from now on (and, for a sandbox started waiting
    /// for its first attach, from the very start), its exit, and forward stdin to it.
    Attach,
    /// Run a new process in the sandbox.
    Exec(ExecSpec),
    Stdin(Vec<u8>),
    StdinEof,
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal(i32),
    /// A lifecycle request; answered with one `Done` or `Error`.
    Control(Control),
    /// Ring on every change of the run record; the connection stays open until the supervisor
    /// exits, so its end of stream says the supervisor is gone.
    Watch,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Graceful stop: SIGTERM the workload, SIGKILL after `timeout_ms`; the supervisor then
    /// exits. Answered once the sandbox is down.
    Stop { timeout_ms: u64 },
    /// Send a signal to the main workload (SIGKILL takes the whole sandbox down at once).
    Kill { signal: i32 },
    /// A liveness probe; answered with `Done`.
    Ping,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Started {
        pid: u32,
    },
    ExecFailed {
        kind: ExecErrorKind,
        message: String,
    },
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
    Exited(ExitStatus),
    Done,
    Error(String),
    /// The run record (`run.json`) changed; read it.
    RecordChanged,
    /// Measurements, oldest first (to watchers; a backlog after a reattach).
    Samples(Vec<msb_metrics::Sample>),
}
