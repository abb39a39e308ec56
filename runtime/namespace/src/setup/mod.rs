//! PID 1's side of the start: from a fresh set of namespaces to the agent's `execve`.
//!
//! Runs in the sandbox's PID 1 right after the launcher forked it (single-threaded, so it may
//! allocate), as root of its namespaces with every capability. In order:
//!
//! 1. `/` of the new mount namespace becomes a recursive slave (host mounts propagate in,
//!    nothing propagates out); the root is mounted at its mount point: an overlay, or the bind
//!    directory bound onto itself; both `nodev`, so device nodes a root may carry are inert
//!    (the sandbox's only usable nodes are the ones msb makes in `/dev`).
//! 2. The runtime directory is bound at `<root>/.msb`; bind sources are opened (`O_PATH`) while
//!    host paths still resolve on the host.
//! 3. `pivot_root(".", ".")` in the root: the old root is stacked on top of the new one, where
//!    no path leads. Everything after is created inside the sandbox's own root, so a symbolic
//!    link planted by an earlier run can only point inside it. The old root stays attached
//!    until the end because a `proc` or `sysfs` mount in a user namespace is allowed only
//!    while another one is visible.
//! 4. `/proc`, `/dev` (nodes, `devpts`, `shm`, links), `/sys`, `/tmp`, the
//!    caller's binds (sources through `/proc/self/fd/N`), masked and read-only kernel paths;
//!    then the old root is detached.
//! 5. Hostname, `lo` up, stdio and the agent fd at 0-3 (everything else close-on-exec), default
//!    signal handling, a new session.
//! 6. The memory cgroup (v1; `crate::cgroups::join_files_split`: the setup's kernel objects are
//!    not charged to it), then a new cgroup namespace rooted in the sandbox's cgroups.
//! 7. Capabilities reduced to [`CAPABILITIES`](crate::CAPABILITIES), `no_new_privs`, the seccomp
//!    filter, `fexecve` of the agent binary opened before the pivot (it is not in the sandbox).
//!
//! Any error ends PID 1 with a one-line report on the launcher's report pipe.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{fstat, makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use serde::{Deserialize, Serialize};

use crate::spec::{
    GuestMount, DEVICES, DEV_LINKS, MASKED_PATHS, READONLY_PATHS, RUNTIME_GUEST_DIR,
};
use crate::{sys, Root};

mod points;
use points::{in_dir, mount_point, through_fd};

/// Everything PID 1 needs, prepared by the caller (before the launcher's fork, or sent to a
/// warm launcher as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub root: Root,
    /// Where the root is mounted (and pivoted into): the bind directory itself, or the overlay's
    /// mount point.
    pub mount_point: PathBuf,
    pub runtime_dir: PathBuf,
    pub mounts: Vec<GuestMount>,
    pub hostname: String,
    pub unprivileged: bool,
    /// The user namespace's map (root caller only): PID 1 idmaps the root and binds with it
    /// and joins the namespace ([`Stdio::userns`]) last.
    pub id_map: Option<crate::IdMap>,
    /// The agent binary on the host: opened before the pivot, executed from that fd.
    pub agent_binary: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub capabilities: u64,
    /// Cgroup files PID 1 writes itself into after its mounts, before it gives up its
    /// privileges (`crate::cgroups::join_files_split`); opened before the pivot.
    #[serde(default)]
    pub late_cgroup_joins: Vec<PathBuf>,
    /// `/.msb` is a FUSE mount of the connection in [`Stdio::runtime_fuse`] instead of a bind
    /// of `runtime_dir`.
    #[serde(default)]
    pub runtime_fuse: bool,
    /// The [`Root::Bind`] root is a FUSE mount of the last of [`Stdio::served`] (after the
    /// served mounts' connections) instead of a bind of the directory.
    #[serde(default)]
    pub root_served: bool,
}

impl Plan {
    /// How many file server connections the plan has: the served mounts' and the root's.
    pub(crate) fn served_count(&self) -> usize {
        self.mounts
            .iter()
            .filter(|m| matches!(m, GuestMount::Served { .. }))
            .count()
            + usize::from(self.root_served)
    }
}

/// The fds PID 1 arranges at 0, 1, 2 and 3 (held above 64 until then).
pub(crate) struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub agent: OwnedFd,
    /// The user namespace PID 1 joins last, when the plan has an id map.
    pub userns: Option<OwnedFd>,
    /// The `/dev/fuse` connection to mount at `/.msb` (`Plan::runtime_fuse`).
    pub runtime_fuse: Option<OwnedFd>,
    /// The connections of the plan's `GuestMount::Served` mounts, in order.
    pub served: Vec<OwnedFd>,
}

impl Stdio {
    /// Close-on-exec copies above 64 of stdin, stdout, stderr, the agent fd and the user
    /// namespace, out of the way of the `dup2`s to 0-3.
    pub(crate) fn above(
        fds: [&OwnedFd; 4],
        userns: Option<&OwnedFd>,
        runtime_fuse: Option<&OwnedFd>,
        served: &[OwnedFd],
    ) -> Result<Stdio, String> {
        let dup = |fd: &OwnedFd| {
            sys::dup_cloexec_above(fd, 64).map_err(|e| format!("dup fd {}: {e}", fd.as_raw_fd()))
        };
        let [stdin, stdout, stderr, agent] = fds.map(dup);
        Ok(Stdio {
            stdin: stdin?,
            stdout: stdout?,
            stderr: stderr?,
            agent: agent?,
            userns: userns.map(dup).transpose()?,
            runtime_fuse: runtime_fuse.map(dup).transpose()?,
            served: served.iter().map(dup).collect::<Result<_, _>>()?,
        })
    }
}

/// Makes the sandbox and execs the agent; returns only on failure, with what failed.
pub(crate) fn pid1(plan: &Plan, stdio: &Stdio) -> String {
    match run(plan, stdio) {
        Ok(never) => match never {},
        Err(message) => message,
    }
}

fn run(plan: &Plan, stdio: &Stdio) -> Result<std::convert::Infallible, String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make / a recursive slave: {e}"))?;
    let userns = match (&plan.id_map, &stdio.userns) {
        (Some(_), Some(fd)) => Some(fd),
        (Some(_), None) => return Err("the plan maps ids but no user namespace came".into()),
        (None, _) => None,
    };
    // Opened now, written last: the host's cgroup file system is out of reach after the pivot.
    // Held above 64, out of the way of the stdio and agent fds `arrange_fds` puts at 0-3.
    let late_joins = plan
        .late_cgroup_joins
        .iter()
        .map(|file| {
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(file)
                .map_err(|e| format!("open cgroup {}: {e}", file.display()))?;
            let above = sys::dup_cloexec_above(&OwnedFd::from(opened), 64)
                .map_err(|e| format!("dup cgroup {}: {e}", file.display()))?;
            Ok((file, std::fs::File::from(above)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    mount_root(plan, stdio, userns)?;

    let runtime_target = plan
        .mount_point
        .join(RUNTIME_GUEST_DIR.trim_start_matches('/'));
    ensure_real_dir(&runtime_target)?;
    match (&stdio.runtime_fuse, plan.runtime_fuse) {
        (Some(fuse), true) => mount_fuse(fuse, &runtime_target, MsFlags::empty())
            .map_err(|e| format!("mount the runtime file server: {e}"))?,
        (None, true) => return Err("the plan mounts /.msb by FUSE but no connection came".into()),
        (_, false) => bind(
            &plan.runtime_dir,
            &runtime_target,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        )?,
    }

    // Bind sources are resolved on the host, before the pivot, without following a symbolic
    // link anywhere in their path, and copied as detached mount trees with their flags (and
    // idmap) already set.
    let mut trees = Vec::new();
    let mut disk_trees = Vec::new();
    for guest in &plan.mounts {
        match guest {
            GuestMount::Bind {
                source, readonly, ..
            } => trees.push(bind_tree(source, *readonly, userns)?),
            GuestMount::Disk {
                device, readonly, ..
            } => disk_trees.push(disk_tree(device, *readonly, userns)?),
            _ => {}
        }
    }
    // Above 64, out of the way of the fds `arrange_fds` puts at 0-3; close-on-exec.
    let agent = open(
        &plan.agent_binary,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| sys::dup_cloexec_above(&sys::own_fd(fd), 64))
    .map_err(|e| format!("open the agent {}: {e}", plan.agent_binary.display()))?;
    let mut device_sources = Vec::new();
    if plan.unprivileged {
        for (name, ..) in DEVICES {
            device_sources.push(open_path(&Path::new("/dev").join(name))?);
        }
    }

    // The old root is stacked on top of the new one (`pivot_root(".", ".")`): no directory is
    // made for it, and no path leads into it (lookups start at the new root, under it), yet it
    // stays attached, which `proc` and `sysfs` need, until `detach_old_root`.
    nix::unistd::chdir(&plan.mount_point)
        .map_err(|e| format!("chdir {}: {e}", plan.mount_point.display()))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| format!("pivot_root into {}: {e}", plan.mount_point.display()))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    // From here every mount point is resolved inside the new root, refusing symbolic links (a
    // sandbox may have planted one in its root or `/.msb` in an earlier run).
    let root = open_path(Path::new("/"))?;

    let mut trees = trees.into_iter();
    let mut disk_trees = disk_trees.into_iter();
    for guest in &plan.mounts {
        match guest {
            GuestMount::Fs {
                fs_type,
                target,
                flags,
                data,
            } => {
                let point = mount_point(&root, Path::new(target), true)?;
                let data = (!data.is_empty()).then_some(data.as_str());
                // On the mount point as the working directory: `/proc` is the first of these
                // mounts, and until it is there no `/proc/self/fd` names a handle.
                in_dir(&point, || {
                    mount(
                        Some(fs_type.as_str()),
                        ".",
                        Some(fs_type.as_str()),
                        *flags,
                        data,
                    )
                })
                .map_err(|e| format!("mount {fs_type} at {target}: {e}"))?;
                if *target == "/dev" {
                    populate_dev(&device_sources)?;
                }
            }
            GuestMount::Bind { source, target, .. } => {
                let (tree, is_dir) = trees.next().expect("one tree per bind");
                let point = mount_point(&root, target, is_dir)?;
                sys::move_mount(&tree, &point).map_err(|e| {
                    format!("bind {} at {}: {e}", source.display(), target.display())
                })?;
            }
            GuestMount::Served {
                target,
                readonly,
                connection,
            } => {
                let fuse = stdio
                    .served
                    .get(*connection)
                    .ok_or_else(|| format!("no file server connection for {}", target.display()))?;
                let point = mount_point(&root, target, true)?;
                let mut flags = MsFlags::empty();
                if *readonly {
                    flags |= MsFlags::MS_RDONLY;
                }
                mount_fuse(fuse, Path::new(&through_fd(&point)), flags)
                    .map_err(|e| format!("serve {}: {e}", target.display()))?;
            }
            GuestMount::Disk { device, target, .. } => {
                let tree = disk_trees.next().expect("one tree per disk");
                let point = mount_point(&root, target, true)?;
                sys::move_mount(&tree, &point)
                    .map_err(|e| format!("mount {device} at {}: {e}", target.display()))?;
            }
        }
    }
    for path in MASKED_PATHS {
        mask(Path::new(path))?;
    }
    for path in READONLY_PATHS {
        let path = Path::new(path);
        if path.exists() {
            bind(path, path, MsFlags::MS_RDONLY)?;
        }
    }
    detach_old_root()?;

    nix::unistd::sethostname(&plan.hostname).map_err(|e| format!("sethostname: {e}"))?;
    sys::loopback_up().map_err(|e| format!("bring lo up: {e}"))?;
    arrange_fds(stdio)?;
    sys::reset_signals().map_err(|e| format!("reset signals: {e}"))?;
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));

    let c_strings = |strings: &[String]| {
        strings
            .iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("NUL byte in {s:?}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let argv = c_strings(&plan.argv)?;
    let env = c_strings(&plan.env)?;
    // Compiled by the caller before the launcher's fork; this is the inherited copy.
    let seccomp = crate::seccomp::program()?;
    // Into the rest of the sandbox's cgroups now that the mounts are made (PID 1 is
    // single-threaded: on v1 `tasks` moves this one thread), then a cgroup namespace rooted
    // there, so that the sandbox sees its own cgroups as `/`.
    for (file, mut handle) in late_joins {
        handle
            .write_all(b"0")
            .map_err(|e| format!("join cgroup {}: {e}", file.display()))?;
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("unshare the cgroup namespace: {e}"))?;
    if let Some(userns) = userns {
        become_mapped_root(userns)?;
    }
    drop_privileges(plan.capabilities)?;
    sys::install_seccomp(seccomp).map_err(|e| format!("install seccomp filter: {e}"))?;
    let error = match nix::unistd::fexecve(agent.as_raw_fd(), &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(format!(
        "execute the agent {}: {error}",
        plan.agent_binary.display()
    ))
}

/// Mounts the FUSE connection `fuse` (served by the caller) at `target`, `nosuid,nodev` plus
/// `flags`, as host root in the host's user namespace: the kernel then sends the host ids of
/// whoever asks (the sandbox's mapped ids), and `allow_other` lets the sandbox's processes, in
/// their own user namespace, in.
fn mount_fuse(fuse: &OwnedFd, target: &Path, flags: MsFlags) -> Result<(), String> {
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
        fuse.as_raw_fd()
    );
    mount(
        Some("msb-fs"),
        target,
        Some("fuse.msb-fs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | flags,
        Some(data.as_str()),
    )
    .map_err(|e| format!("mount fuse at {}: {e}", target.display()))
}

/// Joins the sandbox's user namespace and becomes its root (the first mapped host ids), with
/// no supplementary groups. Everything mounted so far belongs to the host's namespace, so the
/// capabilities PID 1 keeps act only on what the namespace owns and on the mapped ids.
fn become_mapped_root(userns: &OwnedFd) -> Result<(), String> {
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("join the sandbox's user namespace: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(|e| format!("setresgid 0: {e}"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(|e| format!("setresuid 0: {e}"))
}

fn mount_root(plan: &Plan, stdio: &Stdio, userns: Option<&OwnedFd>) -> Result<(), String> {
    match &plan.root {
        Root::Overlay {
            lower,
            upper,
            work,
            disk,
        } => {
            if let Some(disk) = disk {
                let tree = disk_tree(&disk.device, false, None)?;
                let point = open_path(&disk.mount_point)?;
                sys::move_mount(&tree, &point).map_err(|e| {
                    format!(
                        "mount the root disk {} at {}: {e}",
                        disk.device,
                        disk.mount_point.display()
                    )
                })?;
            }
            if let Some(userns) = userns {
                // The shared lower stays owned by host root on disk; an idmapped copy of it,
                // attached over it in this mount namespace only, shows its files as the
                // sandbox's root's. The upper already belongs to the mapped root (the caller
                // made it so), and copy-up keeps the mapped owners.
                let fd = open_path(lower)?;
                let tree = sys::clone_tree(&fd, false)
                    .map_err(|e| format!("clone the lower {}: {e}", lower.display()))?;
                idmap(&tree, lower, userns)?;
                sys::move_mount(&tree, &fd)
                    .map_err(|e| format!("attach the idmapped lower {}: {e}", lower.display()))?;
            }
            let options = overlay_options(lower, upper, work);
            mount(
                Some("overlay"),
                &plan.mount_point,
                Some("overlay"),
                MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
                Some(options.as_str()),
            )
            .map_err(|e| {
                format!(
                    "mount overlay ({options}) at {}: {e}",
                    plan.mount_point.display()
                )
            })
        }
        Root::Bind(dir) if plan.root_served => {
            let fuse = stdio
                .served
                .last()
                .ok_or("the plan serves the root but no connection came")?;
            mount_fuse(fuse, &plan.mount_point, MsFlags::empty())
                .map_err(|e| format!("mount the root's file server ({}): {e}", dir.display()))
        }
        Root::Bind(dir) => {
            let (tree, _) = bind_tree(dir, false, userns)?;
            let point = open_path(&plan.mount_point)?;
            sys::move_mount(&tree, &point)
                .map_err(|e| format!("bind the root {}: {e}", dir.display()))
        }
    }
}

/// A detached copy of the host tree at `source` (opened without following a symbolic link in
/// any component) with all its mounts `nosuid,nodev` (and read-only when asked), idmapped with
/// `userns` when given. Returns it and whether it is a directory.
fn bind_tree(
    source: &Path,
    readonly: bool,
    userns: Option<&OwnedFd>,
) -> Result<(OwnedFd, bool), String> {
    let path = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| format!("NUL byte in {}", source.display()))?;
    let fd = sys::openat2(
        &AtCwd,
        &path,
        libc::O_PATH,
        sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "bind source {}: a component of the path is a symbolic link, which msb does not \
             follow (give the resolved path)",
            source.display()
        ),
        _ => format!("open bind source {}: {e}", source.display()),
    })?;
    let is_dir = fstat(fd.as_raw_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| format!("stat {}: {e}", source.display()))?;
    let tree =
        sys::clone_tree(&fd, true).map_err(|e| format!("clone {}: {e}", source.display()))?;
    let mut flags = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    if readonly {
        flags |= sys::MOUNT_ATTR_RDONLY;
    }
    // Every mount of the tree, not only its top: `-v /:/host:ro` must leave `/host/dev` inert
    // and `/host/tmp` read-only too.
    sys::mount_setattr(&tree, true, flags, None).map_err(|e| {
        format!(
            "set nosuid,nodev{} on {}: {e}",
            if readonly { ",ro" } else { "" },
            source.display()
        )
    })?;
    if let Some(userns) = userns {
        idmap(&tree, source, userns)?;
    }
    Ok((tree, is_dir))
}

/// A detached ext4 mount of `device` (`nosuid,nodev`, read-only when asked), idmapped with
/// `userns` when given, so that the image's root (made owned by 0) is the sandbox root's.
fn disk_tree(device: &str, readonly: bool, userns: Option<&OwnedFd>) -> Result<OwnedFd, String> {
    let path = CString::new(device).map_err(|_| format!("NUL byte in {device}"))?;
    // The supervisor's mount of the same device is there already, and with it the
    // filesystem's options; this mount shares them.
    let tree = sys::mount_block_ext4(&path, readonly, true)
        .map_err(|e| format!("mount the ext4 image on {device}: {e}"))?;
    if let Some(userns) = userns {
        sys::mount_setattr(&tree, false, sys::MOUNT_ATTR_IDMAP, Some(userns))
            .map_err(|e| format!("idmap the ext4 mount of {device}: {e}"))?;
    }
    Ok(tree)
}

/// Idmaps the detached `tree` with `userns`: every mount of it where the filesystems allow,
/// else its top mount only (the mounts below then show host ids unmapped, as `nobody`).
fn idmap(tree: &OwnedFd, name: &Path, userns: &OwnedFd) -> Result<(), String> {
    if sys::mount_setattr(tree, true, sys::MOUNT_ATTR_IDMAP, Some(userns)).is_ok() {
        return Ok(());
    }
    sys::mount_setattr(tree, false, sys::MOUNT_ATTR_IDMAP, Some(userns)).map_err(|e| {
        format!(
            "idmapped mount of {} ({e}): its filesystem does not support idmapped mounts",
            name.display()
        )
    })
}

/// `AT_FDCWD` for [`sys::openat2`].
struct AtCwd;

impl AsRawFd for AtCwd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        libc::AT_FDCWD
    }
}

/// Detaches the host's old root, stacked on top of the new root since the pivot: with the
/// working directory at `/`, `.` names the topmost mount there, which is the old root.
fn detach_old_root() -> Result<(), String> {
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))
}

/// overlayfs mount options (pure). Paths were checked for `,` and `:` by validation.
pub(crate) fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    )
}

/// `/dev`'s nodes and links, right after its tmpfs is mounted.
fn populate_dev(host_nodes: &[OwnedFd]) -> Result<(), String> {
    for (index, (name, major, minor)) in DEVICES.iter().enumerate() {
        let path = Path::new("/dev").join(name);
        match host_nodes.get(index) {
            Some(fd) => bind_fd(fd, &path, &path, MsFlags::empty())?,
            None => {
                mknod(
                    &path,
                    SFlag::S_IFCHR,
                    Mode::from_bits_truncate(0o666),
                    makedev(*major, *minor),
                )
                .map_err(|e| format!("mknod {}: {e}", path.display()))?;
                // mknod honours the umask; the nodes must be usable by every user.
                nix::sys::stat::fchmodat(
                    None,
                    &path,
                    Mode::from_bits_truncate(0o666),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            }
        }
    }
    for (link, target) in DEV_LINKS {
        std::os::unix::fs::symlink(target, link).map_err(|e| format!("symlink {link}: {e}"))?;
    }
    Ok(())
}

/// Hides `path`: `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<(), String> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if metadata.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("mask {}: {e}", path.display()))
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("mask {}: {e}", path.display()))
    }
}

/// A directory that is not a symbolic link, created if missing.
pub(crate) fn ensure_real_dir(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "{} exists and is not a directory (msb mounts there)",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(path).map_err(|e| format!("create {}: {e}", path.display()))
        }
        Err(e) => Err(format!("inspect {}: {e}", path.display())),
    }
}

fn mkdir_all(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))
}

fn open_path(path: &Path) -> Result<OwnedFd, String> {
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map(sys::own_fd)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// Binds host path `source` (resolved now) at `target` with `extra` flags.
fn bind(source: &Path, target: &Path, extra: MsFlags) -> Result<(), String> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind {} at {}: {e}", source.display(), target.display()))?;
    remount(target, extra)
}

/// Binds what `fd` (an `O_PATH` fd opened on the host) refers to at `target` (inside the new
/// root), creating the target to match, `nosuid,nodev` plus `extra`. `name` is for errors.
fn bind_fd(fd: &OwnedFd, name: &Path, target: &Path, extra: MsFlags) -> Result<(), String> {
    let is_dir = fstat(fd.as_raw_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| format!("stat {}: {e}", name.display()))?;
    if is_dir {
        mkdir_all(target)?;
    } else {
        if let Some(parent) = target.parent() {
            mkdir_all(parent)?;
        }
        match mknod(target, SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("create {}: {e}", target.display())),
        }
    }
    mount(
        Some(through_fd(fd).as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind {} at {}: {e}", name.display(), target.display()))?;
    remount(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra)
}

/// Adds `extra` to a bind mount's flags, keeping the ones it has (a user namespace may not
/// clear flags it inherited locked).
fn remount(target: &Path, extra: MsFlags) -> Result<(), String> {
    if extra.is_empty() {
        return Ok(());
    }
    let current = statvfs(target)
        .map(|s| s.flags())
        .map_err(|e| format!("statvfs {}: {e}", target.display()))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(fs) {
            flags |= ms;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remount {} ({flags:?}): {e}", target.display()))
}

/// stdin, stdout, stderr and the agent socket at 0-3; every other fd close-on-exec (the report
/// pipe among them, whose closing tells the caller the exec happened).
fn arrange_fds(stdio: &Stdio) -> Result<(), String> {
    for (fd, target) in [
        (&stdio.stdin, 0),
        (&stdio.stdout, 1),
        (&stdio.stderr, 2),
        (&stdio.agent, crate::spec::AGENT_FD),
    ] {
        nix::unistd::dup2(fd.as_raw_fd(), target).map_err(|e| format!("dup2 to {target}: {e}"))?;
    }
    sys::cloexec_from(crate::spec::AGENT_FD as u32 + 1).map_err(|e| format!("close_range: {e}"))
}

/// Bounding set, ambient set, `no_new_privs`, then the effective and permitted sets.
fn drop_privileges(keep: u64) -> Result<(), String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(63);
    for capability in 0..=last.min(63) {
        if keep & (1 << capability) == 0 {
            sys::capbset_drop(capability)
                .map_err(|e| format!("drop capability {capability} from the bounding set: {e}"))?;
        }
    }
    sys::clear_ambient_capabilities().map_err(|e| format!("clear ambient capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("set no_new_privs: {e}"))?;
    sys::capset(keep).map_err(|e| format!("capset: {e}"))
}
