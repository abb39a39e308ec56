//! A launcher forked ahead of time, already inside a set of cgroups, for the next sandbox.
//!
//! On cgroup v1 the first migration of a task into a cgroup after a quiet spell waits for an
//! RCU grace period (8-15 ms on the development host; see ADR 002, "Start latency"), which is
//! most of a sandbox's start. A [`WarmLauncher`] pays it before anyone asks for a sandbox: it
//! forks the launcher into placeholder cgroups (`msb/warm-<name>`), where it waits on a socket.
//! It also makes the sandbox's namespaces then (they do not depend on the sandbox), so a claim
//! is left with forking PID 1. [`crate::Sandbox::start_warm`] renames the placeholder
//! directories to the sandbox's (cgroupfs allows a rename within the same parent; the tasks
//! stay, and the cgroup namespace's root is the directory, whatever its name), writes the
//! limits and sends the launcher PID 1's plan as JSON with its four fds (`SCM_RIGHTS`); from
//! there the launcher goes on exactly as a cold one (PID 1, report).
//!
//! Dropping an unclaimed `WarmLauncher` closes the socket (the launcher exits), reaps the
//! launcher and removes the placeholder cgroups.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::cgroups::{self, CgroupPaths, HostCgroups};
use crate::error::NamespaceError;
use crate::launch::{self, LaunchFds};
use crate::setup::{self, Stdio};
use crate::{seccomp, sys};

/// Prefix of placeholder cgroup directories (`msb/warm-<name>`).
pub const WARM_PREFIX: &str = "warm-";

/// What the launcher writes on its socket once it is in every placeholder cgroup.
const JOINED: [u8; 1] = *b"j";
/// How long a claim waits for that (the migration takes milliseconds).
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest plan a warm launcher accepts.
const MAX_ORDER_BYTES: usize = 1 << 20;

/// What a warm launcher receives when its sandbox is claimed.
#[derive(Serialize, Deserialize)]
struct Order {
    setup: setup::Plan,
}

/// A launcher waiting in placeholder cgroups; see the module documentation.
#[derive(Debug)]
pub struct WarmLauncher {
    pid: Pid,
    /// The host's cgroup layout as read for the placeholders; the sandbox's cgroups are planned
    /// from the same snapshot (they replace the placeholders one for one), without reading
    /// mountinfo again at the start.
    pub(crate) host: HostCgroups,
    /// The launcher's cgroups: the placeholders, or the sandbox's once adopted.
    cgroups: CgroupPaths,
    channel: Option<UnixStream>,
    report: Option<OwnedFd>,
    /// A user namespace made ahead of time for the id map the sandbox is expected to use
    /// (the home's); taken by a start whose map is the same, else a new one is made then.
    userns: Option<(crate::IdMap, OwnedFd)>,
    /// The launcher said it is in its cgroups and namespaces ([`JOINED`]).
    joined: bool,
}

impl WarmLauncher {
    /// Forks a launcher into new placeholder cgroups `msb/warm-<name>` (`name`: `[a-z0-9-]`)
    /// and returns at once; the launcher joins them in the background. Compiles the seccomp
    /// filter first, so the launcher inherits it. Sets `PR_SET_CHILD_SUBREAPER` like
    /// [`crate::Sandbox::start`].
    pub fn prepare(name: &str) -> Result<WarmLauncher, NamespaceError> {
        Self::prepare_with(name, None)
    }

    /// [`WarmLauncher::prepare`], also making the user namespace for `id_map` (the home's), a
    /// fork that a start would otherwise pay for. Only for a root caller; a failure here is
    /// left to the start, which makes its own.
    pub fn prepare_with(
        name: &str,
        id_map: Option<&crate::IdMap>,
    ) -> Result<WarmLauncher, NamespaceError> {
        let mut launcher = Self::prepare_launcher(name, true)?;
        if nix::unistd::geteuid().is_root() {
            if let Some(map) = id_map {
                launcher.userns = crate::userns::create(map).ok().map(|fd| (*map, fd));
            }
        }
        Ok(launcher)
    }

    /// [`WarmLauncher::prepare`] for a launcher that is likely to go unused (a spare): it makes
    /// the sandbox's namespaces only once it has an order, since making and tearing down a
    /// network namespace nobody uses costs more CPU than the start it would speed up.
    pub fn prepare_spare(name: &str) -> Result<WarmLauncher, NamespaceError> {
        Self::prepare_launcher(name, false)
    }

    /// Takes the namespace made ahead of time if it is `map`'s.
    pub(crate) fn take_userns(&mut self, map: &crate::IdMap) -> Option<OwnedFd> {
        match self.userns.take() {
            Some((prepared, fd)) if prepared == *map => Some(fd),
            _ => None,
        }
    }

    fn prepare_launcher(name: &str, namespaces: bool) -> Result<WarmLauncher, NamespaceError> {
        let id = format!("{WARM_PREFIX}{name}");
        seccomp::program().map_err(|message| NamespaceError::Start {
            id: id.clone(),
            message,
        })?;
        let host = HostCgroups::read().map_err(NamespaceError::HostCgroups)?;
        let placeholder = cgroups::plan(&host, &id);
        cgroups::create(&placeholder, &crate::Limits::default())?;
        let result = fork_waiting(&placeholder, namespaces);
        if result.is_err() {
            let _ = cgroups::remove(&placeholder, Duration::from_secs(2));
        }
        let (pid, channel, report) = result?;
        Ok(WarmLauncher {
            pid,
            host,
            cgroups: placeholder,
            channel: Some(channel),
            report: Some(report),
            userns: None,
            joined: false,
        })
    }

    /// Host pid of the waiting launcher.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The sandbox's network namespace, which the launcher made before PID 1 exists (PID 1
    /// stays in it): the caller can set up the sandbox's interface while PID 1 makes the rest.
    /// Waits until the launcher is in it, and refuses a namespace that is the caller's own.
    pub fn network_namespace(&mut self) -> Result<File, String> {
        use std::os::unix::fs::MetadataExt;
        self.wait_joined()?;
        let ours = std::fs::metadata("/proc/self/ns/net")
            .map_err(|e| format!("reading /proc/self/ns/net: {e}"))?;
        let path = format!("/proc/{}/ns/net", self.pid);
        let netns = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        let theirs = netns
            .metadata()
            .map_err(|e| format!("reading {path}: {e}"))?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return Err("the warm launcher is still in the host's network namespace".into());
        }
        Ok(netns)
    }

    /// Waits (once) for the launcher to say it is in every placeholder cgroup and in its
    /// namespaces.
    fn wait_joined(&mut self) -> Result<(), String> {
        if self.joined {
            return Ok(());
        }
        // It says so with one byte (at once, unless it is still waiting out the migration,
        // which it does at the low priority it was forked at: raise it, the start waits for it
        // now).
        sys::set_cpu_priority(self.pid.as_raw(), sys::CpuPriority::Normal);
        let channel = self.channel.as_ref().expect("unclaimed");
        let mut joined = [0u8; 1];
        let read = channel
            .set_read_timeout(Some(JOIN_TIMEOUT))
            .and_then(|()| (&*channel).read_exact(&mut joined))
            .and_then(|()| channel.set_read_timeout(None));
        match read {
            Ok(()) if joined == JOINED => {
                self.joined = true;
                Ok(())
            }
            Ok(()) => Err(format!("the warm launcher said {joined:?}")),
            Err(e) => Err(format!("the warm launcher did not join its cgroups: {e}")),
        }
    }

    /// Moves the placeholder directories to `target` (the sandbox's, from the same host plan).
    /// On error nothing moved and the launcher is unusable (drop it and start cold).
    pub(crate) fn adopt(&mut self, target: &CgroupPaths) -> Result<(), String> {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            other => return Err(format!("the warm launcher is gone ({other:?})")),
        }
        // The directories may only move once the launcher is in all of them.
        self.wait_joined()?;
        cgroups::rename(&self.cgroups, target)?;
        self.cgroups = target.clone();
        Ok(())
    }

    /// Sends the plan and fds, then waits like a cold start until PID 1 has exec'd.
    pub(crate) fn launch(
        mut self,
        id: &str,
        setup: &setup::Plan,
        fds: LaunchFds,
        agent_fd: &OwnedFd,
    ) -> Result<i32, NamespaceError> {
        let channel = self.channel.take().expect("unclaimed");
        let report = self.report.take().expect("unclaimed");
        let order = serde_json::to_vec(&Order {
            setup: setup.clone(),
        })
        .map_err(|e| NamespaceError::sys("serialize the launch plan", std::io::Error::other(e)))?;
        let mut sent_fds = vec![&fds.stdin, &fds.stdout, &fds.stderr, agent_fd];
        sent_fds.extend(fds.userns.as_ref());
        sent_fds.extend(fds.runtime_fuse.as_ref());
        sent_fds.extend(fds.served.iter());
        let sent = send(&channel, &order, &sent_fds);
        drop(fds);
        drop(channel);
        let pid = self.pid;
        // From here the launcher is ours to reap, not Drop's.
        self.pid = Pid::from_raw(0);
        if let Err(e) = sent {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(NamespaceError::sys(
                "handing the plan to the warm launcher",
                e,
            ));
        }
        launch::finish(id, File::from(report), pid)
    }
}

impl Drop for WarmLauncher {
    fn drop(&mut self) {
        if self.pid.as_raw() == 0 {
            return;
        }
        // End-of-file on its socket makes the launcher exit.
        drop(self.channel.take());
        drop(self.report.take());
        let _ = waitpid(self.pid, None);
        let _ = cgroups::remove(&self.cgroups, Duration::from_secs(2));
    }
}

/// Forks the waiting launcher. Returns its pid, the caller's end of its socket and the read
/// end of its report pipe.
fn fork_waiting(
    placeholder: &CgroupPaths,
    namespaces: bool,
) -> Result<(Pid, UnixStream, OwnedFd), NamespaceError> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| NamespaceError::sys("socketpair", e))?;
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NamespaceError::sys("pipe2", e))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| NamespaceError::sys("PR_SET_CHILD_SUBREAPER", e))?;
    let root = nix::unistd::geteuid().is_root();
    // As a cold launcher: PID 1 joins the memory cgroup itself when the caller is root.
    let (procs, _) = cgroups::join_files_split(placeholder, root);
    let identity = (!root).then(|| {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    });
    match sys::fork().map_err(|e| NamespaceError::sys("fork", e))? {
        ForkResult::Child => {
            drop(ours);
            drop(report_read);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                waiting_main(&procs, identity, namespaces, &theirs, report_write)
            }));
            sys::exit_now(if outcome.is_err() { 2 } else { 0 });
        }
        ForkResult::Parent { child } => Ok((child, ours, report_read)),
    }
}

/// The warm launcher: joins its cgroups, waits for its order, then launches. Single-threaded
/// (a fork of one thread): no `tracing`, no `std::env`.
fn waiting_main(
    procs: &[PathBuf],
    identity: Option<(u32, u32)>,
    namespaces: bool,
    channel: &UnixStream,
    report: OwnedFd,
) {
    let outcome = (|| -> Result<Option<i32>, String> {
        launch::join_cgroups(procs)?;
        // The namespaces do not depend on the sandbox either: make them now too (a network
        // namespace alone takes about a millisecond), unless this is a spare.
        if namespaces {
            launch::enter_namespaces(identity)?;
        }
        (&*channel)
            .write_all(&JOINED)
            .map_err(|e| format!("telling the supervisor the cgroups are joined: {e}"))?;
        let Some((order, fds)) = receive(channel)? else {
            return Ok(None);
        };
        let order: Order =
            serde_json::from_slice(&order).map_err(|e| format!("garbled launch plan: {e}"))?;
        // Forked at its supervisor's low waiting priority: the sandbox runs at the normal one.
        sys::set_cpu_priority(0, sys::CpuPriority::Normal);
        if !namespaces {
            launch::enter_namespaces(identity)?;
        }
        let mut fds = fds.into_iter();
        let mut next = || fds.next().ok_or("fewer fds than the plan needs");
        let (stdin, stdout, stderr, agent) = (next()?, next()?, next()?, next()?);
        let userns = match order.setup.id_map {
            Some(_) => Some(next()?),
            None => None,
        };
        let fuse = match order.setup.runtime_fuse {
            true => Some(next()?),
            false => None,
        };
        let served = (0..order.setup.served_count())
            .map(|_| next())
            .collect::<Result<Vec<_>, _>>()?;
        let stdio = Stdio::above(
            [&stdin, &stdout, &stderr, &agent],
            userns.as_ref(),
            fuse.as_ref(),
            &served,
        )?;
        drop((stdin, stdout, stderr, agent, userns, fuse, served));
        let report = sys::dup_cloexec_above(&report, 64).map_err(|e| format!("dup report: {e}"))?;
        launch::fork_pid1(&order.setup, &stdio, report).map(Some)
    })();
    let message = match outcome {
        Ok(None) => return,
        Ok(Some(pid)) => format!("pid {pid}\n"),
        Err(message) => format!("err {message}\n"),
    };
    let _ = File::from(report).write_all(message.as_bytes());
}

fn send(channel: &UnixStream, bytes: &[u8], fds: &[&OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let sent = sendmsg::<()>(
        channel.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    let mut writer = channel;
    writer.write_all(&bytes[sent..])?;
    writer.shutdown(std::net::Shutdown::Write)
}

/// The order's bytes and the fds that came with them (stdin, stdout, stderr, the agent's, and
/// the user namespace when the order has an id map).
type Received = (Vec<u8>, Vec<OwnedFd>);

/// The order and its fds; `None` when the socket closed without one.
/// Most fds one launch plan carries: stdio, the agent, the user namespace, `/.msb`'s file
/// server and one connection per served mount ([`crate::MAX_SERVED_MOUNTS`]).
const MAX_LAUNCH_FDS: usize = 6 + crate::MAX_SERVED_MOUNTS;

fn receive(channel: &UnixStream) -> Result<Option<Received>, String> {
    let mut first = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_LAUNCH_FDS]);
    let (received, raw) = {
        let mut iov = [IoSliceMut::new(&mut first)];
        let message = recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving the launch plan: {e}"))?;
        let mut raw = Vec::new();
        for cmsg in message
            .cmsgs()
            .map_err(|e| format!("control message: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                raw.extend(fds);
            }
        }
        (message.bytes, raw)
    };
    let owned: Vec<OwnedFd> = raw.into_iter().map(sys::own_fd).collect();
    if received == 0 && owned.is_empty() {
        return Ok(None);
    }
    if !(4..=MAX_LAUNCH_FDS).contains(&owned.len()) {
        return Err(format!(
            "expected 4 to {MAX_LAUNCH_FDS} fds with the plan, got {}",
            owned.len()
        ));
    }
    let fds = owned;
    first.truncate(received);
    let reader = channel;
    reader
        .take(MAX_ORDER_BYTES as u64)
        .read_to_end(&mut first)
        .map_err(|e| format!("receiving the launch plan: {e}"))?;
    Ok(Some((first, fds)))
}
