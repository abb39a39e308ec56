//! State shared by the agent's threads, and the per-session requests that need no new process:
//! stdin, end of stdin, terminal resize and signals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use msb_protocol::agent::{SessionId, MAIN_SESSION};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::channel::Writer;
use crate::pty;
use crate::session::Sessions;

/// What a PTY session receives for `StdinEof`: the terminal's default VEOF character (^D),
/// which ends input for a reader at the start of a line.
const PTY_EOF: u8 = 0x04;

pub struct Agent {
    pub writer: Arc<Writer>,
    pub sessions: Sessions,
    /// Bumped on every exec-session start and every exec-session stdin or output chunk.
    activity_seq: AtomicU64,
    /// PID 1 of its own pid namespace (a real sandbox), as opposed to a test run.
    pub is_pid1: bool,
}

impl Agent {
    pub fn new(writer: Arc<Writer>, is_pid1: bool) -> Self {
        Self {
            writer,
            sessions: Sessions::default(),
            activity_seq: AtomicU64::new(0),
            is_pid1,
        }
    }

    /// Counts activity of `session`; the main workload's I/O does not count.
    pub fn note_activity(&self, session: SessionId) {
        if session != MAIN_SESSION {
            self.activity_seq.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn activity_seq(&self) -> u64 {
        self.activity_seq.load(Ordering::Relaxed)
    }

    pub fn stdin(&self, session: SessionId, data: Vec<u8>) {
        let mut table = self.sessions.lock();
        let Some(sender) = table
            .running(session)
            .and_then(|entry| entry.stdin.as_ref())
        else {
            return; // Buffered, closed or finished: the bytes have nowhere to go.
        };
        // A send error means the writer thread already gave up (the reader went away).
        let _ = sender.send(data);
        drop(table);
        self.note_activity(session);
    }

    pub fn stdin_eof(&self, session: SessionId) {
        let mut table = self.sessions.lock();
        let Some(entry) = table.running(session) else {
            return;
        };
        if entry.terminal.is_some() {
            // The master stays open for output; end of input is a terminal character.
            if let Some(sender) = &entry.stdin {
                let _ = sender.send(vec![PTY_EOF]);
            }
        } else {
            // The writer thread closes the pipe once it has written what is queued.
            entry.stdin = None;
        }
    }

    pub fn resize(&self, session: SessionId, rows: u16, cols: u16) {
        let mut table = self.sessions.lock();
        let Some(terminal) = table
            .running(session)
            .and_then(|entry| entry.terminal.clone())
        else {
            return;
        };
        drop(table);
        if let Err(e) = pty::resize(&terminal, rows, cols) {
            log!("session {session}: resizing the terminal failed: {e}");
        }
    }

    /// Delivers `signal` to the session's process (its process group for PTY sessions).
    pub fn signal(&self, session: SessionId, signal: i32) {
        let Ok(signal) = Signal::try_from(signal) else {
            log!("session {session}: ignoring unknown signal {signal}");
            return;
        };
        let mut table = self.sessions.lock();
        let Some(entry) = table.running(session) else {
            return;
        };
        // Under the lock: the pid cannot have been reaped (and reused) yet.
        deliver(entry.pid, entry.signal_group, signal);
    }

    /// Delivers `signal` to every running session.
    pub fn signal_all_sessions(&self, signal: Signal) {
        let table = self.sessions.lock();
        for (pid, group) in table.running_targets() {
            deliver(pid, group, signal);
        }
    }
}

fn deliver(pid: Pid, group: bool, signal: Signal) {
    // The group may already be gone while its leader is still a zombie: fall back to the pid.
    if group && killpg(pid, signal).is_ok() {
        return;
    }
    if let Err(e) = kill(pid, signal) {
        log!("delivering {signal} to {pid} failed: {e}");
    }
}
