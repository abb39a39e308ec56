//! The sandbox handle: start, wait, kill, destroy.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cgroups::{self, CgroupPaths, HostCgroups};
use crate::error::NamespaceError;
use crate::launch::{self, LaunchFds, Layout, Plan};
use crate::warm::WarmLauncher;
use crate::{seccomp, setup, spec, sys, userns, IdMap, Root, SandboxSpec};

/// How PID 1 ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => write!(f, "signal {signal}"),
        }
    }
}

pub(crate) fn exit_status(status: WaitStatus) -> ExitStatus {
    match status {
        WaitStatus::Signaled(_, signal, _) => ExitStatus::Signaled(signal as i32),
        WaitStatus::Exited(_, code) => ExitStatus::Exited(code),
        // Stops and continues are not reported without WUNTRACED/WCONTINUED.
        _ => ExitStatus::Exited(-1),
    }
}

/// A running (or exited, not yet destroyed) namespace sandbox. `Send + Sync`: `wait` may block
/// in one thread while another calls `kill`.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    pid: i32,
    /// Signals go through a pidfd, so they can never hit a process that reused the pid.
    pidfd: OwnedFd,
    /// The host's cgroup layout the sandbox's cgroups were planned from (a claim plans the
    /// new name's from it).
    host: HostCgroups,
    cgroups: CgroupPaths,
    layout: Layout,
    /// Set once PID 1 has been reaped.
    exit: Mutex<Option<ExitStatus>>,
    /// PID 1's mount namespace, held until `destroy`: the last process of a mount namespace
    /// unmounts all of it (the overlay, proc, sysfs, ...) in its own exit, which would delay
    /// the moment PID 1 is seen to end; held here, that happens when `destroy` lets go.
    mount_namespace: Mutex<Option<std::fs::File>>,
}

impl Sandbox {
    /// Starts the sandbox; returns once PID 1 has exec'd the agent. On error nothing is left
    /// behind (cgroups and state removed).
    pub fn start(spec: SandboxSpec) -> Result<Sandbox, NamespaceError> {
        Self::start_with(spec, None)
    }

    /// Like [`Sandbox::start`], through a launcher forked ahead of time (which then skips the
    /// cgroup migration). If the warm launcher cannot be used (it died, or the host's cgroup
    /// layout changed), it is dropped and the sandbox starts cold.
    pub fn start_warm(spec: SandboxSpec, warm: WarmLauncher) -> Result<Sandbox, NamespaceError> {
        Self::start_with(spec, Some(warm))
    }

    fn start_with(
        spec: SandboxSpec,
        warm: Option<WarmLauncher>,
    ) -> Result<Sandbox, NamespaceError> {
        let unprivileged = !nix::unistd::geteuid().is_root();
        validate(&spec, unprivileged).map_err(|reason| NamespaceError::InvalidSpec {
            id: spec.id.clone(),
            reason,
        })?;
        let host = match &warm {
            Some(warm) => warm.host.clone(),
            None => HostCgroups::read().map_err(NamespaceError::HostCgroups)?,
        };
        let cgroups = cgroups::plan(&host, &spec.id);
        check_limits_placeable(&spec.id, &spec.limits, &cgroups)?;
        // Compiled here, before the fork, so the launcher and PID 1 inherit it.
        seccomp::program().map_err(|message| NamespaceError::Start {
            id: spec.id.clone(),
            message,
        })?;
        let layout = Layout::new(&spec.state_dir);
        let mount_point = match &spec.root {
            Root::Bind(dir) => dir.clone(),
            Root::Overlay {
                disk: Some(disk), ..
            } => disk.mount_point.join(crate::disk::OVERLAY_MOUNT_POINT),
            Root::Overlay { disk: None, .. } => layout.rootfs.clone(),
        };
        let identity = unprivileged.then(|| {
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        });
        // The agent binary is the caller's own (trusted) path: its links are resolved here, as
        // bind sources are opened without following any at the start.
        let mut spec = spec;
        let runtime_fuse = spec.runtime_fuse.take();
        let root_fuse = spec.root_fuse.take();

        let fuse_planned = runtime_fuse.is_some();
        spec.agent_binary = std::fs::canonicalize(&spec.agent_binary).map_err(|e| {
            NamespaceError::io("resolve the agent binary", spec.agent_binary.clone(), e)
        })?;
        // A root caller's sandbox gets its user namespace from here (see `userns`).
        let id_map = spec.id_map.filter(|_| !unprivileged);
        // Disk images on loop devices held open until PID 1 has mounted them (autoclear then
        // detaches each with its last mount).
        let mut disk_devices = Vec::new();
        let mut disk_mounts = Vec::new();
        for disk in &spec.disks {
            let (device, path) = attach_disk(disk).map_err(|e| NamespaceError::Start {
                id: spec.id.clone(),
                message: e,
            })?;
            disk_devices.push(device);
            disk_mounts.push(crate::spec::GuestMount::Disk {
                device: path,
                target: disk.guest.clone(),
                readonly: disk.readonly,
            });
        }
        let setup = setup::Plan {
            root: spec.root.clone(),
            mount_point,
            runtime_dir: spec.runtime_dir.clone(),
            mounts: {
                let mut mounts = spec::guest_mounts(&spec, unprivileged, id_map.as_ref());
                mounts.extend(disk_mounts);
                mounts
            },
            id_map,
            hostname: spec.hostname.clone(),
            unprivileged,
            agent_binary: spec.agent_binary.clone(),
            argv: spec::agent_argv(&spec),
            env: spec::agent_env(),
            capabilities: spec::capability_mask(),
            late_cgroup_joins: Vec::new(),
            runtime_fuse: fuse_planned,
            root_served: root_fuse.is_some(),
        };
        // The plan names the served mounts' targets; their connections travel as fds.
        // The root's connection, when it is served, comes last.
        let served: Vec<OwnedFd> = std::mem::take(&mut spec.served)
            .into_iter()
            .map(|m| m.fuse)
            .chain(root_fuse)
            .collect();
        // A root caller's PID 1 joins the memory cgroup after its mounts; an unprivileged one's
        // cannot write the host's cgroup files from its user namespace, so it is born inside.
        let (early_joins, late_joins) = cgroups::join_files_split(&cgroups, !unprivileged);
        let mut setup = setup;
        setup.late_cgroup_joins = late_joins;

        if let Root::Overlay { upper, .. } = &spec.root {
            // A disk made before the mount point was kept on it has none; never a link.
            crate::setup::ensure_real_dir(&setup.mount_point).map_err(|e| {
                NamespaceError::Start {
                    id: spec.id.clone(),
                    message: format!("the root's mount point: {e}"),
                }
            })?;
            if let Some(map) = &id_map {
                own_upper(upper, map)?;
            }
        }
        let mut warm = warm;
        let prepared_userns = match (&mut warm, &id_map) {
            (Some(warm), Some(map)) => warm.take_userns(map),
            _ => None,
        };
        let userns = match prepared_userns {
            Some(fd) => Some(fd),
            None => id_map.as_ref().map(userns::create).transpose()?,
        };
        let cleanup = |cgroups: &CgroupPaths| {
            let _ = cgroups::remove(cgroups, Duration::from_secs(2));
            let _ = remove_layout(&layout);
        };
        let warm = warm.and_then(|mut warm| match warm.adopt(&cgroups) {
            Ok(()) => Some(warm),
            Err(reason) => {
                tracing::warn!(id = %spec.id, "starting cold: {reason}");
                None
            }
        });
        let fds = cgroups::create(&cgroups, &spec.limits).and_then(|()| {
            LaunchFds::open(spec.stdio_log.as_deref(), userns, runtime_fuse, served)
        });
        let fds = match fds {
            Ok(fds) => fds,
            Err(e) => {
                cleanup(&cgroups);
                return Err(e);
            }
        };
        let plan = Plan {
            id: &spec.id,
            setup: &setup,
            cgroup_joins: early_joins,
            unprivileged: identity,
        };
        let launched = match warm {
            Some(warm) => warm.launch(&spec.id, &setup, fds, &spec.agent_fd),
            None => launch::launch(&plan, fds, &spec.agent_fd),
        };
        let started = launched.and_then(|pid| {
            Ok((
                pid,
                sys::pidfd_open(pid).map_err(|e| NamespaceError::sys("pidfd_open", e))?,
            ))
        });
        drop(disk_devices);
        match started {
            Ok((pid, pidfd)) => {
                tracing::debug!(id = %spec.id, pid, "namespace sandbox started");
                let mount_namespace = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).ok();
                Ok(Sandbox {
                    id: spec.id,
                    pid,
                    pidfd,
                    host,
                    cgroups,
                    layout,
                    exit: Mutex::new(None),
                    mount_namespace: Mutex::new(mount_namespace),
                })
            }
            Err(e) => {
                cleanup(&cgroups);
                Err(e)
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state directory is now `state_dir` (the caller moved it).
    pub fn moved(&mut self, state_dir: &Path) {
        self.layout = Layout::new(state_dir);
    }

    /// Makes a sandbox started ahead of time, under a placeholder id and hostname, the sandbox
    /// `id`: its cgroups renamed to `id`'s (the tasks stay) and given `limits`, its hostname set
    /// through `hostname` (a [`HostnameSetter`] in its UTS namespace, or one started now), and
    /// its state directory `state_dir`, where the caller moved it. On error the sandbox keeps
    /// its old name and cgroups (destroy it).
    pub fn claim(
        &mut self,
        id: &str,
        hostname: (&str, Option<HostnameSetter>),
        limits: &crate::Limits,
        state_dir: &Path,
    ) -> Result<(), NamespaceError> {
        let (hostname, setter) = hostname;
        let invalid = |reason: String| NamespaceError::InvalidSpec {
            id: id.to_owned(),
            reason,
        };
        validate_id(id).map_err(invalid)?;
        validate_hostname(hostname).map_err(invalid)?;
        cgroups::validate_limits(limits).map_err(invalid)?;
        let target = cgroups::plan(&self.host, id);
        check_limits_placeable(id, limits, &target)?;
        let start = |message: String| NamespaceError::Start {
            id: id.to_owned(),
            message,
        };
        let setter = match setter {
            Some(setter) => setter,
            None => HostnameSetter::join(self.pid).map_err(start)?,
        };
        // Set on its thread while the cgroups move.
        setter.set(hostname).map_err(start)?;
        cgroups::rename(&self.cgroups, &target).map_err(start)?;
        let limited =
            cgroups::write_limits(&target, limits).and_then(|()| setter.wait().map_err(start));
        if let Err(e) = limited {
            let _ = cgroups::rename(&target, &self.cgroups);
            return Err(e);
        }
        self.cgroups = target;
        self.id = id.to_owned();
        self.layout = Layout::new(state_dir);
        Ok(())
    }

    /// Host pid of PID 1.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Where each controller's directory for this sandbox is.
    pub fn cgroup(&self) -> &CgroupPaths {
        &self.cgroups
    }

    /// Blocks until PID 1 exits and reaps it. Later calls return the same status.
    pub fn wait(&self) -> Result<ExitStatus, NamespaceError> {
        let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = *exit {
            return Ok(status);
        }
        let status = loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    break exit_status(status)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(NamespaceError::sys("waitpid PID 1", e)),
            }
        };
        *exit = Some(status);
        Ok(status)
    }

    /// How PID 1 ended, if [`Sandbox::wait`] has seen it end.
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends SIGKILL to PID 1, which takes every process of the sandbox's pid namespace with it.
    /// Succeeds if PID 1 is already gone.
    pub fn kill(&self) -> Result<(), NamespaceError> {
        match sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(NamespaceError::sys("pidfd_send_signal SIGKILL", e)),
        }
    }

    /// Kills PID 1 if it still runs, reaps it, and removes the sandbox's cgroups and state
    /// (the overlay mount point; the root, upper, runtime and state
    /// directories themselves belong to the caller). Idempotent: call again after an error.
    /// The error names everything that is still there. Nothing is mounted on the host, so there
    /// is nothing to unmount.
    pub fn destroy(&self) -> Result<(), NamespaceError> {
        let mut remaining = Vec::new();
        if let Err(e) = self.kill() {
            remaining.push(format!("PID 1 {} ({e})", self.pid));
        } else if let Err(e) = self.wait() {
            // ECHILD: someone else reaped it; its cgroups still empty out.
            tracing::debug!(id = %self.id, error = %e, "PID 1 not reaped by destroy");
        }
        drop(
            self.mount_namespace
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        for (path, e) in cgroups::remove(&self.cgroups, Duration::from_secs(2)) {
            remaining.push(format!("cgroup {} ({e})", path.display()));
        }
        remaining.extend(remove_layout(&self.layout));
        if remaining.is_empty() {
            Ok(())
        } else {
            Err(NamespaceError::Destroy {
                id: self.id.clone(),
                remaining,
            })
        }
    }
}

/// Makes the overlay's upper directory belong to the sandbox's root (`map`'s first ids), so
/// that root in the sandbox owns `/` and what it wrote before. A fresh upper is one `chown`; an
/// upper written under another map (or before sandboxes had user namespaces, as host root) has
/// every entry's ids shifted from the old map to this one. Symbolic links are not followed.
fn own_upper(upper: &Path, map: &IdMap) -> Result<(), NamespaceError> {
    use std::os::unix::fs::MetadataExt;
    let metadata =
        std::fs::symlink_metadata(upper).map_err(|e| NamespaceError::io("stat", upper, e))?;
    let old = (metadata.uid(), metadata.gid());
    if old == (map.host_uid, map.host_gid) {
        return Ok(());
    }
    shift_ids(upper, old, map)
}

/// The id `id` of a tree owned from `old` moved to `new` (pure): ids within `count` of the old
/// base move with it, others stay.
pub(crate) fn shifted(id: u32, old: u32, new: u32, count: u32) -> u32 {
    match id.checked_sub(old) {
        Some(offset) if offset < count => new + offset,
        _ => id,
    }
}

fn shift_ids(path: &Path, old: (u32, u32), map: &IdMap) -> Result<(), NamespaceError> {
    use std::os::unix::fs::MetadataExt;
    let metadata =
        std::fs::symlink_metadata(path).map_err(|e| NamespaceError::io("stat", path, e))?;
    let uid = shifted(metadata.uid(), old.0, map.host_uid, map.count);
    let gid = shifted(metadata.gid(), old.1, map.host_gid, map.count);
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| NamespaceError::io("chown", path, e))?;
    if metadata.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| NamespaceError::io("list", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| NamespaceError::io("list", path, e))?;
            shift_ids(&entry.path(), old, map)?;
        }
    }
    Ok(())
}

/// Checks the spec (pure but for `unprivileged`).
/// Opens the image of `disk` (no symbolic link followed) and attaches it to a loop device.
fn attach_disk(disk: &crate::DiskMount) -> Result<(std::os::fd::OwnedFd, String), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let image = std::fs::OpenOptions::new()
        .read(true)
        .write(!disk.readonly)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&disk.image)
        .map_err(|e| format!("open the disk image {}: {e}", disk.image.display()))?;
    crate::sys::attach_loop(&image, disk.readonly)
        .map_err(|e| format!("attach {} to a loop device: {e}", disk.image.display()))
}

/// A thread in the UTS namespace of a sandbox's PID 1, which sets its hostname when asked:
/// joined ahead of time, so that a claim does not wait for a thread's start.
pub struct HostnameSetter {
    names: std::sync::mpsc::Sender<String>,
    done: std::sync::mpsc::Receiver<Result<(), String>>,
}

impl std::fmt::Debug for HostnameSetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostnameSetter")
    }
}

impl HostnameSetter {
    /// Starts the thread, in the UTS namespace of process `pid`.
    pub fn join(pid: i32) -> Result<HostnameSetter, String> {
        let path = format!("/proc/{pid}/ns/uts");
        let uts = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        let (names, receive) = std::sync::mpsc::channel::<String>();
        let (report, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("msb-hostname".into())
            .spawn(move || {
                // A thread's namespaces go with it.
                if let Err(e) = nix::sched::setns(&uts, nix::sched::CloneFlags::CLONE_NEWUTS) {
                    let _ = report.send(Err(format!("joining {path}: {e}")));
                    return;
                }
                if let Ok(name) = receive.recv() {
                    let set =
                        nix::unistd::sethostname(&name).map_err(|e| format!("sethostname: {e}"));
                    let _ = report.send(set);
                }
            })
            .map_err(|e| format!("starting the hostname thread: {e}"))?;
        Ok(HostnameSetter { names, done })
    }

    /// Asks for `hostname` (validated) without waiting; [`HostnameSetter::wait`] says how it went.
    pub fn set(&self, hostname: &str) -> Result<(), String> {
        validate_hostname(hostname)?;
        self.names
            .send(hostname.to_owned())
            .map_err(|_| "the hostname thread is gone".to_owned())
    }

    /// Waits until the hostname asked for is set.
    pub fn wait(self) -> Result<(), String> {
        self.done
            .recv()
            .unwrap_or_else(|_| Err("the hostname thread is gone".into()))
    }
}

fn validate_id(id: &str) -> Result<(), String> {
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    match id_ok {
        true => Ok(()),
        false => Err("id must be 1-64 characters of [a-z0-9-]".into()),
    }
}

fn validate_hostname(hostname: &str) -> Result<(), String> {
    if hostname.is_empty() || hostname.len() > 64 {
        return Err("hostname must be 1-64 bytes".into());
    }
    if hostname.contains('\0') {
        return Err(format!("{hostname:?} holds a NUL byte"));
    }
    Ok(())
}

pub(crate) fn validate(spec: &SandboxSpec, unprivileged: bool) -> Result<(), String> {
    validate_id(&spec.id)?;
    validate_hostname(&spec.hostname)?;
    let mut paths: Vec<&Path> = vec![&spec.runtime_dir, &spec.agent_binary, &spec.state_dir];
    match &spec.root {
        Root::Bind(dir) => paths.push(dir),
        Root::Overlay {
            lower,
            upper,
            work,
            disk,
        } => {
            if let Some(disk) = disk {
                paths.push(&disk.mount_point);
            }
            if unprivileged {
                return Err("an overlay root needs a root caller".into());
            }
            for dir in [lower, upper, work] {
                let text = dir.to_string_lossy();
                if text.contains(',') || text.contains(':') {
                    return Err(format!("overlay path {text} contains ',' or ':'"));
                }
                paths.push(dir);
            }
        }
    }
    for mount in &spec.mounts {
        paths.push(&mount.host);
        paths.push(&mount.guest);
    }
    if spec.served.len() > crate::MAX_SERVED_MOUNTS {
        return Err(format!(
            "{} served mounts; at most {} are supported",
            spec.served.len(),
            crate::MAX_SERVED_MOUNTS
        ));
    }
    paths.extend(spec.served.iter().map(|m| m.guest.as_path()));
    if unprivileged && !spec.disks.is_empty() {
        return Err("disk mounts need root (a loop device)".into());
    }
    for disk in &spec.disks {
        paths.push(&disk.image);
        paths.push(&disk.guest);
    }
    if let Some(path) = paths.iter().find(|p| !p.is_absolute()) {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    if spec.agent_argv.as_ref().is_some_and(|argv| argv.is_empty()) {
        return Err("agent_argv must not be empty".into());
    }
    let texts = spec.agent_argv.iter().flatten().chain([&spec.hostname]);
    if let Some(text) = texts.into_iter().find(|t| t.contains('\0')) {
        return Err(format!("{text:?} holds a NUL byte"));
    }
    cgroups::validate_limits(&spec.limits)
}

/// A requested limit needs its controller.
fn check_limits_placeable(
    id: &str,
    limits: &crate::Limits,
    paths: &CgroupPaths,
) -> Result<(), NamespaceError> {
    let missing = [
        (limits.cpus.is_some() && paths.cpu.is_none(), "cpu"),
        (
            limits.memory_bytes.is_some() && paths.memory.is_none(),
            "memory",
        ),
        (limits.pids_max.is_some() && paths.pids.is_none(), "pids"),
    ];
    match missing.iter().find(|(missing, _)| *missing) {
        Some((_, controller)) => Err(NamespaceError::InvalidSpec {
            id: id.to_owned(),
            reason: format!(
                "a {controller} limit was requested but the host offers no {controller} controller"
            ),
        }),
        None => Ok(()),
    }
}

/// Removes the overlay's mount point; returns what is left.
fn remove_layout(layout: &Layout) -> Vec<String> {
    let mut remaining = Vec::new();
    // Only an empty mount point is removed; a non-empty one would be a caller's directory.
    match std::fs::remove_dir(&layout.rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => remaining.push(format!("{} ({e})", layout.rootfs.display())),
    }
    remaining
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
