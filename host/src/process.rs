//! Host process identity and liveness, read from `/proc`.
//!
//! A pid alone is not an identity: pids are reused. msb records a process's start time (in
//! clock ticks since boot, `/proc/<pid>/stat` field 22) next to its pid and treats the pair as
//! the identity. A zombie counts as dead: it will never do anything again.

use std::fs;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_ticks: u64,
}

/// Parses the contents of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(contents: &str) -> Option<ProcStat> {
    let after_name = &contents[contents.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come between the state (3) and starttime (22).
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process `pid` that started at `start_ticks` still exists and is not a zombie.
pub fn is_alive(pid: i32, start_ticks: Option<u64>) -> bool {
    match stat(pid) {
        Some(s) => {
            !matches!(s.state, 'Z' | 'X' | 'x') && start_ticks.is_none_or(|t| t == s.start_ticks)
        }
        None => false,
    }
}

/// Whether every thread of `pid` has ended (it is gone, or a zombie with no thread left). A
/// zombie group leader can outlive its main thread while other threads finish a system call;
/// until they do, the process still holds its files and locks.
pub fn has_exited_fully(pid: i32) -> bool {
    match stat(pid) {
        None => true,
        Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => {
            std::fs::read_dir(format!("/proc/{pid}/task")).map_or(true, |tasks| tasks.count() <= 1)
        }
        Some(_) => false,
    }
}

/// This process's own start time, for records others will check against.
pub fn own_start_ticks() -> Option<u64> {
    stat(std::process::id() as i32).map(|s| s.start_ticks)
}

/// The identity (device, inode) of an executable file, to tell a replaced binary from the one a
/// running process was started from.
pub fn executable_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_reaped_child_is_not() {
        let me = std::process::id() as i32;
        let ticks = own_start_ticks();
        assert!(ticks.is_some());
        assert!(is_alive(me, ticks));
        assert!(!is_alive(me, ticks.map(|t| t + 1)));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!is_alive(pid, None));
    }

    #[test]
    fn an_unreaped_zombie_is_dead() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not waited for: it becomes a zombie once it exits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(pid).is_some_and(|s| s.state != 'Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(stat(pid).map(|s| s.state), Some('Z'));
        assert!(!is_alive(pid, None));
        drop(child);
    }
}
