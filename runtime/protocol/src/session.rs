//! Messages on one connection to a supervisor's socket.
//!
//! The first request opens the session (`Attach`, `Exec`, `Control`, `Watch`); after an `Attach` or
//! `Exec`, only `Stdin`, `StdinEof`, `Resize` and `Signal` are accepted on that connection; after
//! a `Watch`, only `SamplesStored`.
//!
//! New variants go at the end of each enum: postcard numbers variants by position, so a peer of
//! an older version reads a new variant as a malformed frame, which both ends skip.

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
    /// On a watch connection: every sample of this run numbered up to `through_seq` is in the
    /// store (committed, not merely received); the supervisor forgets them. Cumulative.
    SamplesStored {
        through_seq: u64,
    },
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
    /// Refuse new exec sessions, wait for the running ones to end (at most `timeout_ms`, when
    /// set), then stop as `Stop` does with `grace_ms`; the run ends as `DrainRequested`.
    /// Answered once the sandbox is down.
    Drain {
        timeout_ms: Option<u64>,
        grace_ms: u64,
    },
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
    /// Measurements, oldest first, unnumbered: what supervisors of earlier versions send. Not
    /// acknowledged.
    Samples(Vec<msb_metrics::Sample>),
    /// Measurements, oldest first, numbered per run from 1: `samples[i]` is number
    /// `first_seq + i`. Each is kept by the supervisor until a `SamplesStored` covers it, and
    /// sent again to every new watcher until then (a backlog after a reattach may repeat
    /// samples the previous msbd stored but had not acknowledged).
    SampleBatch {
        first_seq: u64,
        samples: Vec<msb_metrics::Sample>,
    },
}
