//! Reaps the orphans msbd inherits as a child subreaper.
//!
//! msbd is a subreaper so that the processes of a sandbox whose supervisor died (its agent,
//! workloads, a launcher) are reparented to it rather than to init, where the crash clean-up
//! finds them. Once they exit they are msbd's zombies, and nothing else waits for them. Every
//! second this reaps the zombie children that are in a session other than msbd's: supervisors
//! and everything they started start sessions of their own (a warm supervisor first thing),
//! while the programs msbd runs and waits for itself (`mkfs`, a doctor) stay in msbd's, so
//! their owners still get their exit status. A supervisor reaped here rather than by its
//! waiting thread only makes that thread's wait return early.

use std::time::Duration;

/// Starts the reaping thread.
pub fn start() {
    let spawned = std::thread::Builder::new()
        .name("msb-orphans".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            reap();
        });
    if let Err(e) = spawned {
        tracing::warn!("no orphan reaper ({e}); orphaned zombies stay until msbd exits");
    }
}

/// Reaps the zombie children outside msbd's session; returns how many.
pub fn reap() -> usize {
    let own_session = nix::unistd::getsid(None).map(|sid| sid.as_raw()).ok();
    let mut reaped = 0;
    for pid in children() {
        let Some((state, session)) = state_and_session(pid) else {
            continue;
        };
        if state == 'Z' && Some(session) != own_session {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).is_ok() {
                reaped += 1;
            }
        }
    }
    reaped
}

/// msbd's children, from every thread's `children` list.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The state letter and session id of process `pid` (`/proc/<pid>/stat`).
fn state_and_session(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, ppid, pgrp, session, ...
    let mut fields = stat.rsplit_once(") ")?.1.split(' ');
    let state = fields.next()?.chars().next()?;
    let session = fields.nth(2)?.parse().ok()?;
    Some((state, session))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_zombie_in_a_session_of_its_own_is_reaped_and_one_in_ours_is_left() {
        let mut own = std::process::Command::new("true").spawn().unwrap();
        // util-linux's setsid: `true` in a session of its own (the child is no group leader,
        // so it does not fork again).
        let other = std::process::Command::new("setsid")
            .arg("true")
            .spawn()
            .unwrap();
        let other_pid = other.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(300));
        super::reap();
        assert!(
            !std::path::Path::new(&format!("/proc/{other_pid}")).exists(),
            "the zombie in its own session is reaped"
        );
        // Ours is still there for its owner to wait for.
        assert!(own.wait().unwrap().success());
        drop(other);
    }
}
