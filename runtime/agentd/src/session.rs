//! The session table: which process runs each session, how to reach its stdin and terminal, and
//! how its output pump learns that the process has exited.
//!
//! The table's lock also orders spawning against reaping: the main thread holds it from fork to
//! registration, and the reaper holds it while it calls `waitpid`, so a pid is always in the
//! table before it can be reaped (and std's own `waitpid` after a failed exec never races ours).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use msb_protocol::agent::{SessionId, MAIN_SESSION};
use msb_protocol::ExitStatus;
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};

/// All sessions whose `Exited` frame has not been sent yet.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
    changed: Condvar,
}

#[derive(Default)]
pub struct Table {
    entries: HashMap<SessionId, Entry>,
    by_pid: HashMap<Pid, SessionId>,
}

/// One started session.
pub struct Entry {
    pub pid: Pid,
    /// PTY sessions lead their own process group; signals go to the whole group.
    pub signal_group: bool,
    /// Chunks for the stdin writer thread; `None` once stdin is closed or for buffered sessions.
    pub stdin: Option<Sender<Vec<u8>>>,
    /// The PTY master, for `Resize`.
    pub terminal: Option<Arc<OwnedFd>>,
    /// Present until the process has been reaped.
    exit: Option<ExitNotifier>,
}

impl Entry {
    pub fn new(
        pid: Pid,
        signal_group: bool,
        stdin: Option<Sender<Vec<u8>>>,
        terminal: Option<Arc<OwnedFd>>,
        exit: ExitNotifier,
    ) -> Self {
        Self {
            pid,
            signal_group,
            stdin,
            terminal,
            exit: Some(exit),
        }
    }

    pub fn is_running(&self) -> bool {
        self.exit.is_some()
    }
}

impl Sessions {
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a session once its `Exited` frame is out.
    pub fn finish(&self, session: SessionId) {
        self.lock().entries.remove(&session);
        self.changed.notify_all();
    }

    /// Waits until no session is left and `also` holds (checked under the table lock), or until
    /// `deadline`. Returns whether the condition was met.
    pub fn wait_until_idle(&self, deadline: Instant, mut also: impl FnMut() -> bool) -> bool {
        // `also` may depend on things the condvar is not told about (other processes exiting),
        // so wake up regularly to re-check it.
        const RECHECK: std::time::Duration = std::time::Duration::from_millis(25);
        let mut table = self.lock();
        loop {
            if table.entries.is_empty() && also() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(RECHECK);
            table = self
                .changed
                .wait_timeout(table, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Table {
    pub fn contains(&self, session: SessionId) -> bool {
        self.entries.contains_key(&session)
    }

    pub fn insert(&mut self, session: SessionId, entry: Entry) {
        self.by_pid.insert(entry.pid, session);
        self.entries.insert(session, entry);
    }

    /// The session's entry while its process has not been reaped.
    pub fn running(&mut self, session: SessionId) -> Option<&mut Entry> {
        self.entries
            .get_mut(&session)
            .filter(|entry| entry.is_running())
    }

    /// Records a reaped process; returns false when it belonged to no session (an orphan).
    pub fn reaped(&mut self, pid: Pid, status: ExitStatus) -> bool {
        let Some(session) = self.by_pid.remove(&pid) else {
            return false;
        };
        if let Some(entry) = self.entries.get_mut(&session) {
            entry.stdin = None;
            if let Some(exit) = entry.exit.take() {
                exit.notify(status);
            }
        }
        true
    }

    /// Exec sessions (not the main workload) whose process is still running.
    pub fn running_exec_sessions(&self) -> u32 {
        let running = self
            .entries
            .iter()
            .filter(|(id, entry)| **id != MAIN_SESSION && entry.is_running())
            .count();
        u32::try_from(running).unwrap_or(u32::MAX)
    }

    /// `(pid, signal_group)` of every running session.
    pub fn running_targets(&self) -> Vec<(Pid, bool)> {
        self.entries
            .values()
            .filter(|entry| entry.is_running())
            .map(|entry| (entry.pid, entry.signal_group))
            .collect()
    }
}

/// Held by the session table; tells the pump the process's exit status.
pub struct ExitNotifier {
    status: Sender<ExitStatus>,
    /// Closing it wakes the pump's `poll`.
    _wake: OwnedFd,
}

/// Held by the pump: a pollable fd that becomes readable (hung up) once the status is known.
pub struct ExitWaiter {
    status: Receiver<ExitStatus>,
    wake: OwnedFd,
}

/// A one-shot exit notification that a `poll` loop can wait on.
pub fn exit_channel() -> nix::Result<(ExitNotifier, ExitWaiter)> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    let (sender, receiver) = mpsc::channel();
    Ok((
        ExitNotifier {
            status: sender,
            _wake: write,
        },
        ExitWaiter {
            status: receiver,
            wake: read,
        },
    ))
}

impl ExitNotifier {
    fn notify(self, status: ExitStatus) {
        // The waiter lives as long as the pump; if the pump is gone nobody needs the status.
        let _ = self.status.send(status);
        // Dropping `self` closes the pipe's write end.
    }
}

impl ExitWaiter {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The exit status, once the wake fd has hung up.
    pub fn status(&self) -> ExitStatus {
        self.status.try_recv().unwrap_or(ExitStatus {
            code: None,
            signal: None,
        })
    }
}
