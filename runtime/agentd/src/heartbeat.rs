//! The heartbeat: a dedicated OS thread that reports liveness and activity once a second, so a
//! busy or wedged main thread never delays it.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use msb_protocol::agent::{FromAgent, Heartbeat};

use crate::agent::Agent;

pub const INTERVAL: Duration = Duration::from_secs(1);

pub fn start(agent: Arc<Agent>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || run(&agent))?;
    Ok(())
}

fn run(agent: &Agent) {
    let mut next = Instant::now() + INTERVAL;
    for seq in 1u64.. {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        // Keep the cadence, but do not burst to catch up after a long stall.
        next = (next + INTERVAL).max(Instant::now());
        let active_sessions = agent.sessions.lock().running_exec_sessions();
        agent.writer.send(&FromAgent::Heartbeat(Heartbeat {
            seq,
            activity_seq: agent.activity_seq(),
            active_sessions,
            processes: count_processes(),
        }));
    }
}

/// Numeric entries of `/proc` (one per process, threads excluded); 0 without `/proc`.
fn count_processes() -> u32 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let count = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}
