//! PID 1's signal duties, on one thread reading a signalfd: reap every child (orphans
//! reparented to the agent included) and hand session exits to their pumps; forward SIGTERM,
//! SIGINT and SIGHUP received by the agent to the main workload.

use std::sync::Arc;
use std::thread;

use msb_protocol::agent::MAIN_SESSION;
use msb_protocol::ExitStatus;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::agent::Agent;

/// Signals the agent handles itself; forwarded ones are all but SIGCHLD.
const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
];

/// Blocks the handled signals in the calling thread; call before any other thread exists so
/// that every thread inherits the mask (session processes get an empty mask from std).
pub fn block_signals() -> nix::Result<SigSet> {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        set.add(signal);
    }
    set.thread_block()?;
    Ok(set)
}

/// Starts the reaper thread.
pub fn start(agent: Arc<Agent>, signals: &SigSet) -> std::io::Result<()> {
    let fd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)?;
    thread::Builder::new()
        .name("reaper".into())
        .spawn(move || run(&agent, &fd))?;
    Ok(())
}

fn run(agent: &Agent, fd: &SignalFd) {
    // Children may have exited before the signalfd existed.
    reap_all(agent);
    loop {
        match fd.read_signal() {
            Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => reap_all(agent),
                Ok(signal) => {
                    log!("received {signal}; forwarding it to the main workload");
                    agent.signal(MAIN_SESSION, signal as i32);
                }
                Err(_) => {}
            },
            Ok(None) | Err(Errno::EINTR) => {}
            Err(e) => {
                log!("reading the signalfd failed: {e}");
                thread::sleep(std::time::Duration::from_millis(100));
                reap_all(agent);
            }
        }
    }
}

/// Reaps every child that has exited. SIGCHLD does not queue, so one signal may stand for
/// several exits: loop until none is left.
fn reap_all(agent: &Agent) {
    // Held across waitpid: see `session` on ordering against spawns.
    let mut table = agent.sessions.lock();
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (
                pid,
                ExitStatus {
                    code: Some(code),
                    signal: None,
                },
            ),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => (
                pid,
                ExitStatus {
                    code: None,
                    signal: Some(signal as i32),
                },
            ),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                log!("waitpid failed: {e}");
                return;
            }
        };
        table.reaped(pid, status);
    }
}
