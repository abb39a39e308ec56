//! `Shutdown` (and the host going away): SIGTERM, a grace period in which exits are still
//! reported, SIGKILL for what is left, then exit 0.
//!
//! As PID 1 of its own pid namespace the agent signals every process (`kill(-1)`) and waits
//! for all of them; otherwise (tests) it only signals its own sessions.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::agent::Agent;

/// How long killed sessions get to deliver their `Exited` frames: the reap plus the pump's
/// drain window, with room for a slow machine.
const AFTER_KILL: Duration = Duration::from_millis(1500);

pub fn run(agent: &Agent, grace: Duration) -> ! {
    note!("shutting down (grace {} ms)", grace.as_millis());
    signal_everything(agent, Signal::SIGTERM);
    let all_gone = || !agent.is_pid1 || no_children_left();
    if !agent
        .sessions
        .wait_until_idle(Instant::now() + grace, all_gone)
    {
        log!("grace period over; killing what is left");
        signal_everything(agent, Signal::SIGKILL);
        if !agent
            .sessions
            .wait_until_idle(Instant::now() + AFTER_KILL, || true)
        {
            log!("some sessions did not report their exit");
        }
    }
    note!("exiting");
    std::process::exit(0);
}

fn signal_everything(agent: &Agent, signal: Signal) {
    agent.signal_all_sessions(signal);
    if agent.is_pid1 {
        // Everyone in the pid namespace but ourselves.
        if let Err(e) = kill(Pid::from_raw(-1), signal) {
            if e != Errno::ESRCH {
                log!("kill(-1, {signal}) failed: {e}");
            }
        }
    }
}

/// True when the agent has no child at all, exited or not. As PID 1 every orphan is our child,
/// so this means no other process is left. `WNOWAIT` leaves reaping to the reaper.
fn no_children_left() -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}
