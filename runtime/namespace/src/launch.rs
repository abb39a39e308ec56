//! Starting a sandbox: a forked launcher makes the namespaces, PID 1 makes the rest.
//!
//! ```text
//! caller (supervisor, maybe multi-threaded; PR_SET_CHILD_SUBREAPER)
//!  └─ launcher (glibc fork): joins the sandbox's cgroups but memory, [user namespace,]
//!     │                      unshares mount, network, ipc, uts and pid namespaces, forks, exits
//!     └─ PID 1 (fork, first process of the new pid namespace): `setup::pid1` (mounts, then
//!        the memory cgroup and a cgroup namespace), exec of the agent; reparented to the
//!        caller when the launcher exits
//! ```
//!
//! The launcher reports `pid <n>` on a close-on-exec pipe; PID 1 reports `err <message>` there
//! if its setup fails. The caller reads it until end-of-file, which comes only when every copy
//! of the write end is closed: the launcher's (at exit) and PID 1's (at its exec or death). So
//! `launch` returns after PID 1 has exec'd the agent or died trying. Why not libcontainer (which
//! msb used first): `docs/adr/002-namespace-backend.md`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::error::NamespaceError;
use crate::setup::{self, Stdio};
use crate::sys;

/// Where a sandbox's files live under its state directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Mount point of the overlay root (inside the sandbox's mount namespace only).
    pub rootfs: PathBuf,
}

impl Layout {
    pub(crate) fn new(state_dir: &Path) -> Layout {
        Layout {
            rootfs: state_dir.join("rootfs"),
        }
    }
}

/// The fds handed to the launcher.
pub(crate) struct LaunchFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The sandbox's user namespace (`userns::create`), for PID 1 to join.
    pub userns: Option<OwnedFd>,
    /// The `/dev/fuse` connection PID 1 mounts at `/.msb`.
    pub runtime_fuse: Option<OwnedFd>,
    /// The connections of the served mounts, in the plan's order.
    pub served: Vec<OwnedFd>,
}

impl LaunchFds {
    /// stdin on `/dev/null`; stdout and stderr on `/dev/null`, or on a pipe whose other end a
    /// thread copies into `stdio_log`. A pipe, not the file: a workload that got hold of PID 1's
    /// descriptors could otherwise rewrite the log through them (it can only add to the pipe,
    /// and the copy stops at [`AGENT_LOG_CAP`]).
    pub(crate) fn open(
        stdio_log: Option<&Path>,
        userns: Option<OwnedFd>,
        runtime_fuse: Option<OwnedFd>,
        served: Vec<OwnedFd>,
    ) -> Result<LaunchFds, NamespaceError> {
        let null = Path::new("/dev/null");
        let stdin = File::open(null).map_err(|e| NamespaceError::io("open", null, e))?;
        let stdout: OwnedFd = match stdio_log {
            None => OpenOptions::new()
                .append(true)
                .open(null)
                .map_err(|e| NamespaceError::io("open", null, e))?
                .into(),
            Some(path) => {
                let log = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| NamespaceError::io("open stdio log", path, e))?;
                let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                    .map_err(|e| NamespaceError::sys("pipe2", e))?;
                std::thread::Builder::new()
                    .name("pid1-log".to_owned())
                    .spawn(move || copy_capped(File::from(read), log, AGENT_LOG_CAP))
                    .map_err(|e| NamespaceError::io("spawn log thread", path, e))?;
                write
            }
        };
        let stderr = stdout
            .try_clone()
            .map_err(|e| NamespaceError::sys("dup stdio", e))?;
        Ok(LaunchFds {
            stdin: stdin.into(),
            stdout,
            stderr,
            userns,
            runtime_fuse,
            served,
        })
    }
}

/// How much of PID 1's own output (the agent's log lines) one run may add to the stdio log.
pub(crate) const AGENT_LOG_CAP: u64 = 1 << 20;

/// Copies `from` into `to` until end-of-file, keeping the first `cap` bytes and noting how many
/// were dropped after them.
pub(crate) fn copy_capped(mut from: impl Read, mut to: impl Write, cap: u64) {
    let mut buffer = [0u8; 8192];
    let (mut kept, mut dropped) = (0u64, 0u64);
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let room = usize::try_from(cap - kept).unwrap_or(usize::MAX).min(n);
        if room > 0 && to.write_all(&buffer[..room]).is_ok() {
            kept += room as u64;
        }
        dropped += (n - room) as u64;
    }
    if dropped > 0 {
        let _ = writeln!(
            to,
            "msb: {dropped} more bytes of PID 1's output dropped (cap {cap})"
        );
    }
}

/// What a launcher needs besides its fds.
pub(crate) struct Plan<'a> {
    pub id: &'a str,
    pub setup: &'a setup::Plan,
    /// Files the launcher writes itself into, so PID 1 starts inside the sandbox's cgroups
    /// ([`crate::cgroups::join_files`]).
    pub cgroup_joins: Vec<PathBuf>,
    /// `Some((uid, gid))` when the caller is not root: a user namespace maps root to them.
    pub unprivileged: Option<(u32, u32)>,
}

/// Forks the launcher and waits until PID 1 has exec'd. Returns PID 1's host pid, which is a
/// child of the caller when this returns.
pub(crate) fn launch(
    plan: &Plan<'_>,
    fds: LaunchFds,
    agent_fd: &OwnedFd,
) -> Result<i32, NamespaceError> {
    let id = plan.id;
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NamespaceError::sys("pipe2", e))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| NamespaceError::sys("PR_SET_CHILD_SUBREAPER", e))?;

    match sys::fork().map_err(|e| NamespaceError::sys("fork", e))? {
        ForkResult::Child => {
            drop(report_read);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                launcher_main(plan, fds, agent_fd, report_write)
            }));
            sys::exit_now(if outcome.is_err() { 2 } else { 0 });
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            drop(fds);
            finish(id, File::from(report_read), child)
        }
    }
}

/// The caller's end of a launch: reads the report until end-of-file (the launcher exited and
/// PID 1 exec'd or died), reaps the launcher, and returns PID 1's pid or the reported error.
pub(crate) fn finish(id: &str, mut report: File, launcher: Pid) -> Result<i32, NamespaceError> {
    let mut text = String::new();
    let read = report.read_to_string(&mut text);
    let launcher = waitpid(launcher, None);
    read.map_err(|e| NamespaceError::sys("read launcher report", e))?;
    let (pid, error) = parse_report(&text);
    if let Some(message) = error {
        if let Some(pid) = pid {
            // PID 1 died reporting; it is our child now (subreaper): reap it.
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        return Err(NamespaceError::Start {
            id: id.to_owned(),
            message,
        });
    }
    match pid {
        Some(pid) => confirm_running(id, pid),
        None => Err(NamespaceError::Start {
            id: id.to_owned(),
            message: format!("launcher died without a report ({launcher:?})"),
        }),
    }
}

/// Reads `pid <n>` and `err <message>` lines (pure).
pub(crate) fn parse_report(report: &str) -> (Option<i32>, Option<String>) {
    let mut pid = None;
    let mut error = None;
    for line in report.lines() {
        if let Some(n) = line.strip_prefix("pid ") {
            pid = n.trim().parse().ok();
        } else if let Some(message) = line.strip_prefix("err ") {
            error.get_or_insert_with(|| message.to_owned());
        } else if !line.is_empty() {
            error.get_or_insert_with(|| format!("garbled launcher report {line:?}"));
        }
    }
    (pid, error)
}

/// After the report pipe closed, PID 1 has either exec'd the agent or exited.
fn confirm_running(id: &str, pid: i32) -> Result<i32, NamespaceError> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => Ok(pid),
        Ok(status) => Err(NamespaceError::AgentExited {
            id: id.to_owned(),
            status: crate::sandbox::exit_status(status),
        }),
        Err(e) => Err(NamespaceError::sys("waitpid PID 1", e)),
    }
}

/// The launcher process. Never returns into the caller's code: `launch` `_exit`s after it.
/// Single-threaded (a fork of one thread), so it and PID 1 may allocate; they must not touch
/// locks the caller's other threads may have held at the fork (no `tracing`, no `std::env`).
fn launcher_main(plan: &Plan<'_>, fds: LaunchFds, agent_fd: &OwnedFd, report: OwnedFd) {
    let message = match launcher(plan, fds, agent_fd, &report) {
        Ok(pid) => format!("pid {pid}\n"),
        Err(message) => format!("err {message}\n"),
    };
    let _ = File::from(report).write_all(message.as_bytes());
}

fn launcher(
    plan: &Plan<'_>,
    fds: LaunchFds,
    agent_fd: &OwnedFd,
    report: &OwnedFd,
) -> Result<i32, String> {
    let stdio = Stdio::above(
        [&fds.stdin, &fds.stdout, &fds.stderr, agent_fd],
        fds.userns.as_ref(),
        fds.runtime_fuse.as_ref(),
        &fds.served,
    )?;
    drop(fds);
    let report = sys::dup_cloexec_above(report, 64).map_err(|e| format!("dup report: {e}"))?;
    join_cgroups(&plan.cgroup_joins)?;
    enter_namespaces_and_fork(plan.setup, plan.unprivileged, &stdio, report)
}

/// Makes the calling process, PID 1 before it execs the agent, exempt from the OOM killer
/// where the host lets it (`CAP_SYS_RESOURCE` on the host; a failure keeps the default score).
/// Either way the agent puts each workload at the kernel's first choice before it execs
/// (`msb-agentd`'s `prepare_child`), so when a workload outgrows the sandbox's memory limit and
/// the kernel picks again before the first victim's memory is freed, it picks another workload,
/// not the agent: a killed agent would end the run as "the agent channel closed" instead of an
/// OOM kill.
pub(crate) fn protect_from_oom_killer() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
}

/// Moves the calling process into each cgroup by writing `0` ("myself") to each file. The caller
/// must be single-threaded: on v1 the file is `tasks`, which moves one thread.
pub(crate) fn join_cgroups(files: &[PathBuf]) -> Result<(), String> {
    for file in files {
        std::fs::write(file, "0").map_err(|e| format!("join cgroup {}: {e}", file.display()))?;
    }
    Ok(())
}

/// The launcher's part after the cgroups: namespaces, then the fork of PID 1, which runs
/// `setup::pid1` and reports its failure on `report`. Returns PID 1's pid.
pub(crate) fn enter_namespaces_and_fork(
    setup: &setup::Plan,
    unprivileged: Option<(u32, u32)>,
    stdio: &Stdio,
    report: OwnedFd,
) -> Result<i32, String> {
    enter_namespaces(unprivileged)?;
    fork_pid1(setup, stdio, report)
}

/// Gives the calling (single-threaded) process the sandbox's namespaces; its next child is PID
/// 1 of the new pid namespace. The cgroup namespace is PID 1's to make, once it is in all of
/// the sandbox's cgroups (`setup`).
pub(crate) fn enter_namespaces(unprivileged: Option<(u32, u32)>) -> Result<(), String> {
    if let Some((uid, gid)) = unprivileged {
        enter_user_namespace(uid, gid)?;
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| format!("unshare namespaces: {e}"))
}

/// Forks PID 1, which runs `setup::pid1` and reports its failure on `report`.
pub(crate) fn fork_pid1(
    setup: &setup::Plan,
    stdio: &Stdio,
    report: OwnedFd,
) -> Result<i32, String> {
    match sys::fork().map_err(|e| format!("fork PID 1: {e}"))? {
        ForkResult::Child => {
            protect_from_oom_killer();
            let message = setup::pid1(setup, stdio);
            let _ = File::from(report).write_all(format!("err {message}\n").as_bytes());
            sys::exit_now(1);
        }
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// A user namespace in which root is the caller's uid and gid (the only mapping an
/// unprivileged process may write for itself).
fn enter_user_namespace(uid: u32, gid: u32) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare user namespace: {e}"))?;
    for (file, text) in [
        ("/proc/self/setgroups", "deny".to_owned()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ] {
        std::fs::write(file, text).map_err(|e| format!("write {file}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_capped_keeps_the_first_bytes_and_says_how_many_it_dropped() {
        let mut out = Vec::new();
        copy_capped(&b"0123456789"[..], &mut out, 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0123msb: 6 more bytes of PID 1's output dropped (cap 4)\n"
        );
        let mut out = Vec::new();
        copy_capped(&b"short"[..], &mut out, 4096);
        assert_eq!(out, b"short");
    }
}
