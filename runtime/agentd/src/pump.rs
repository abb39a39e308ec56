//! The output pump: one thread per session that relays the process's output as `Output` frames
//! (at most `MAX_CHUNK_BYTES` each) and then sends the session's one `Exited` frame.
//!
//! `Exited` goes out once the process has been reaped and its output has reached end of file,
//! or at the latest [`DRAIN_AFTER_EXIT`] after the reap: a background grandchild that keeps the
//! pipe (or the terminal) open must not hold the session open forever. Time spent handing
//! output to a slow host does not count against that window (up to [`MAX_DRAIN_AFTER_EXIT`]),
//! so back-pressure cannot cut off the tail of the output that was already written.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use msb_protocol::agent::{FromAgent, SessionId};
use msb_protocol::{ExitStatus, Stream, MAX_CHUNK_BYTES};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::agent::Agent;
use crate::session::ExitWaiter;
use crate::spawn::HELPER_STACK_BYTES;

/// How long the pump waits for more output after the process has exited.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);
/// Hard limit on the drain, however slowly the host accepts the output.
pub const MAX_DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);

pub struct Pump {
    agent: Arc<Agent>,
    session: SessionId,
    /// Open output streams; a stream is removed at end of file.
    sources: Vec<(Stream, File)>,
    waiter: ExitWaiter,
}

/// Starts the pump's thread. If no thread can be made, the pump runs on the caller's thread
/// (the session is then killed first, so that it ends promptly): the session must still end
/// with `Exited`.
pub fn start(pump: Pump) {
    let session = pump.session;
    let slot = Arc::new(Mutex::new(Some(pump)));
    let for_thread = slot.clone();
    let spawned = thread::Builder::new()
        .name(format!("pump-{session}"))
        .stack_size(HELPER_STACK_BYTES)
        .spawn(move || take(&for_thread).map(Pump::run));
    if let Err(e) = spawned {
        log!("session {session}: no output thread ({e}); killing it");
        if let Some(pump) = take(&slot) {
            pump.agent.signal(session, libc::SIGKILL);
            pump.run();
        }
    }
}

fn take(slot: &Mutex<Option<Pump>>) -> Option<Pump> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

impl Pump {
    pub fn new(
        agent: Arc<Agent>,
        session: SessionId,
        sources: Vec<(Stream, File)>,
        waiter: ExitWaiter,
    ) -> Self {
        Self {
            agent,
            session,
            sources,
            waiter,
        }
    }

    fn run(mut self) {
        let mut buffer = vec![0u8; MAX_CHUNK_BYTES];
        let mut drain: Option<Drain> = None;
        loop {
            let timeout = match &drain {
                None => PollTimeout::NONE,
                Some(_) if self.sources.is_empty() => break,
                Some(drain) => match drain.left() {
                    None => break,
                    Some(timeout) => timeout,
                },
            };
            let (ready, exited) = match self.wait(timeout, drain.is_none()) {
                Ok(readiness) => readiness,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log!(
                        "session {}: poll failed ({e}); dropping its output",
                        self.session
                    );
                    self.sources.clear();
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // Read in reverse so that removing a finished source keeps the other indices valid.
            for index in ready.into_iter().rev() {
                let started = Instant::now();
                if !self.read_once(index, &mut buffer) {
                    self.sources.remove(index);
                }
                if let Some(drain) = &mut drain {
                    drain.extend(started.elapsed());
                }
            }
            if exited {
                drain = Some(Drain::new(self.waiter.status()));
            }
        }
        let status = drain.map_or(
            ExitStatus {
                code: None,
                signal: None,
            },
            |drain| drain.status,
        );
        self.agent.writer.send(&FromAgent::Exited {
            session: self.session,
            status,
        });
        self.agent.sessions.finish(self.session);
    }

    /// Polls the open sources (and the exit notification while `watch_exit`); returns the
    /// indices of readable sources and whether the process has exited.
    fn wait(&self, timeout: PollTimeout, watch_exit: bool) -> nix::Result<(Vec<usize>, bool)> {
        let mut fds: Vec<PollFd<'_>> = self
            .sources
            .iter()
            .map(|(_, file)| PollFd::new(file.as_fd(), PollFlags::POLLIN))
            .collect();
        if watch_exit {
            fds.push(PollFd::new(self.waiter.fd(), PollFlags::POLLIN));
        }
        poll(&mut fds, timeout)?;
        let is_ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|events| !events.is_empty());
        let ready = fds[..self.sources.len()]
            .iter()
            .enumerate()
            .filter(|(_, fd)| is_ready(fd))
            .map(|(index, _)| index)
            .collect();
        let exited = watch_exit && is_ready(&fds[self.sources.len()]);
        Ok((ready, exited))
    }

    /// Relays one chunk from source `index`; false at end of file (or on a read error).
    fn read_once(&mut self, index: usize, buffer: &mut [u8]) -> bool {
        let (stream, file) = &mut self.sources[index];
        match file.read(buffer) {
            Ok(0) => false,
            Ok(n) => {
                self.agent.note_activity(self.session);
                self.agent.writer.send(&FromAgent::Output {
                    session: self.session,
                    stream: *stream,
                    data: buffer[..n].to_vec(),
                });
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                true
            }
            // A PTY master reports EIO once every slave fd is closed: that is its end of file.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => false,
            Err(e) => {
                log!("session {}: reading {stream:?} failed: {e}", self.session);
                false
            }
        }
    }
}

/// The process has exited: its status, and how much longer output may trickle in.
struct Drain {
    status: ExitStatus,
    deadline: Instant,
    limit: Instant,
}

impl Drain {
    fn new(status: ExitStatus) -> Self {
        let now = Instant::now();
        Self {
            status,
            deadline: now + DRAIN_AFTER_EXIT,
            limit: now + MAX_DRAIN_AFTER_EXIT,
        }
    }

    /// Gives back time spent relaying output rather than waiting for it.
    fn extend(&mut self, relaying: Duration) {
        self.deadline = (self.deadline + relaying).min(self.limit);
    }

    /// The poll timeout until the deadline; `None` once it has passed.
    fn left(&self) -> Option<PollTimeout> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        // Round up so the last poll does not spin with a zero timeout.
        let millis = left.as_millis().saturating_add(1);
        Some(PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX))
    }
}
