//! `msb-agentd`: the static binary that runs as PID 1 inside every sandbox.
//!
//! It owns everything that happens on the guest side of the host ↔ agent protocol
//! (`msb_protocol::agent`): it reads `ToAgent` frames from an inherited socket (fd
//! `$MSB_AGENT_FD`, default 3), starts and feeds exec sessions (buffered, stream and PTY), relays
//! their output and exit status, reaps every process in the sandbox (orphans included), forwards
//! the signals it receives to the main workload, reports a heartbeat from its own OS thread and
//! carries out `Shutdown`. The threads are: the main thread (frame reader and dispatcher, the only
//! one that forks), the reaper (signalfd), the heartbeat, and per session one output pump and one
//! stdin writer. Diagnostics go to stderr, prefixed `msb-agentd: WARN` or `INFO`; stdout is never written.

/// Writes one diagnostic line to stderr in one `write` (stderr is unbuffered: `writeln!` would
/// make one per formatted piece), `msb-agentd: <LEVEL> <message>`, the level where the
/// supervisor's own lines in `supervisor.log` have theirs (msbd's crash message quotes the last
/// line above `INFO`); never panics, even when stderr is gone.
macro_rules! log_at {
    ($level:literal, $($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("msb-agentd: {} {}\n", $level, format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

/// Something failed or is amiss (`WARN`).
macro_rules! log {
    ($($arg:tt)*) => {
        log_at!("WARN", $($arg)*)
    };
}

/// How things went (`INFO`): a session started, the shutdown's steps.
macro_rules! note {
    ($($arg:tt)*) => {
        log_at!("INFO", $($arg)*)
    };
}

mod agent;
mod channel;
mod heartbeat;
mod pty;
mod pump;
mod reaper;
mod session;
mod shutdown;
mod spawn;
mod sys;

use std::sync::Arc;
use std::time::Duration;

use msb_protocol::agent::{FromAgent, ToAgent};
use msb_protocol::{FrameError, PROTOCOL_VERSION};

use crate::agent::Agent;

/// Grace period used when the host disappears without sending `Shutdown`.
const HOST_GONE_GRACE: Duration = Duration::from_millis(2000);

fn main() {
    if let Err(error) = run() {
        log!("{error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    sys::ensure_standard_fds();
    // Not dumpable: a workload runs as the same user, and would otherwise read and write the
    // agent's memory (`/proc/1/mem`) and open its descriptors (`/proc/1/fd/*`: the channel to
    // the supervisor, the log), forging heartbeats, output and exit codes. Workloads become
    // dumpable again at their exec.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("clearing dumpable: {e}"))?;
    let is_pid1 = nix::unistd::getpid().as_raw() == 1;
    // Before any thread exists, so that every thread inherits the mask.
    let signals = reaper::block_signals().map_err(|e| format!("blocking signals: {e}"))?;
    if is_pid1 {
        sys::bring_up_loopback();
    } else if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log!("cannot become a child subreaper ({e}); orphans will not be reported to us");
    }
    let (mut reader, writer) = channel::open_from_env().map_err(|e| e.to_string())?;
    let agent = Arc::new(Agent::new(writer, is_pid1));

    reaper::start(agent.clone(), &signals).map_err(|e| format!("starting the reaper: {e}"))?;
    agent.writer.send(&FromAgent::Ready {
        version: PROTOCOL_VERSION,
    });
    // The heartbeat starts with the host's first frame, once that is served: a sandbox booted
    // ahead of time waits for its supervisor to take it, which reads nothing meanwhile, and
    // the first exec is not held up by the thread's start.
    let mut heartbeat_started = false;
    loop {
        match msb_protocol::read_frame::<_, ToAgent>(&mut reader) {
            Ok(Some(message)) => {
                dispatch(&agent, message);
                if !heartbeat_started {
                    heartbeat_started = true;
                    heartbeat::start(agent.clone())
                        .map_err(|e| format!("starting the heartbeat: {e}"))?;
                }
            }
            Ok(None) => {
                note!("channel closed by the host; shutting down");
                shutdown::run(&agent, HOST_GONE_GRACE);
            }
            // The whole body was consumed, so the stream is still in step: skip the frame.
            Err(FrameError::Malformed(e)) => log!("ignoring a malformed frame: {e}"),
            Err(e) => {
                log!("channel unusable ({e}); shutting down");
                shutdown::run(&agent, HOST_GONE_GRACE);
            }
        }
    }
}

fn dispatch(agent: &Arc<Agent>, message: ToAgent) {
    match message {
        ToAgent::Exec { session, spec } => spawn::exec(agent, session, spec),
        ToAgent::Stdin { session, data } => agent.stdin(session, data),
        ToAgent::StdinEof { session } => agent.stdin_eof(session),
        ToAgent::Resize {
            session,
            rows,
            cols,
        } => agent.resize(session, rows, cols),
        ToAgent::Signal { session, signal } => agent.signal(session, signal),
        ToAgent::Shutdown { grace_ms } => shutdown::run(agent, Duration::from_millis(grace_ms)),
    }
}
