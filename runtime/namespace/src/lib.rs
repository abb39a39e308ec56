//! The `namespace` isolation backend: runs `msb-agentd` as PID 1 of a sandbox made of Linux
//! namespaces, cgroup limits, a seccomp filter, no_new_privs and reduced capabilities, made with
//! plain syscalls (a forked launcher and PID 1's own setup; see `launch` and `setup`).
//! Decisions and their reasons: `docs/adr/002-namespace-backend.md`.
//!
//! # Use
//!
//! ```no_run
//! # fn demo(spec: msb_namespace::SandboxSpec) -> Result<(), msb_namespace::NamespaceError> {
//! let sandbox = msb_namespace::Sandbox::start(spec)?; // PID 1 has exec'd msb-agentd
//! let status = sandbox.wait()?;                       // blocks until PID 1 exits
//! sandbox.destroy()?;                                 // cgroups and state gone
//! # Ok(()) }
//! ```
//!
//! # What the sandbox gets
//!
//! - Namespaces: mount, pid, network (only `lo`, brought **up** by msb before the agent runs),
//!   ipc, uts (hostname set), cgroup, and a user namespace: with a root caller, PID 1 joins one
//!   mapping the sandbox's ids `0..65536` to an unprivileged host range ([`IdMap`]) as its last
//!   step before dropping capabilities, and the root and binds are idmapped mounts; a non-root
//!   caller's launcher maps root to the caller's own uid.
//! - `pivot_root` into the root ([`Root::Bind`] directory, or an overlay of a shared lower
//!   directory), mounted `nodev`. `/proc`, a minimal `/dev` (null, zero, full, random, urandom,
//!   tty, ptmx, `devpts` with `newinstance`, `shm`), read-only `/sys`, tmpfs `/tmp`, the
//!   runtime directory read-write at `/.msb`, the caller's binds; host-revealing kernel files
//!   masked, `/proc/sys` and friends read-only. The agent binary is not in the sandbox: PID 1
//!   executes it from an fd opened before the pivot.
//! - PID 1's argv is `["msb-agentd"]` (see [`SandboxSpec::agent_argv`]), its env
//!   `PATH`, `HOME=/root`, `MSB_AGENT_FD=3`; fd 3 is [`SandboxSpec::agent_fd`]; fds 0 (null),
//!   1 and 2 ([`SandboxSpec::stdio_log`]) are the only others; nothing else of the caller
//!   survives the exec.
//! - no_new_privs, the capabilities in [`CAPABILITIES`], the seccomp filter in [`seccomp`],
//!   cgroup limits from [`Limits`], written by msb in `<hierarchy>/msb/<id>` in the hierarchy of
//!   each controller it uses, v1 or v2, wherever that controller is attached
//!   ([`Sandbox::cgroup`], [`host_cgroups`]).
//!
//! # What the caller must know
//!
//! - [`Sandbox::start`] may be called from a multi-threaded process (e.g. under tokio; call it
//!   from a blocking thread, it blocks for the millisecond or two PID 1 takes to exec). It forks
//!   a short-lived *launcher* (glibc `fork`, so malloc stays usable in the child), which changes
//!   namespaces and cgroups for itself and forks PID 1; nothing process-wide happens to the
//!   caller but the subreaper flag below. The launcher and PID 1 avoid locks other threads may
//!   have held at the fork: no `tracing`, no `std::env` (PID 1's environment is built before the
//!   fork).
//! - `start` sets `PR_SET_CHILD_SUBREAPER` on the calling process (process-wide, permanent):
//!   PID 1 is forked by the launcher and reparented to the caller when the launcher exits, so
//!   the caller can `waitpid` it ([`Sandbox::wait`] does). The caller must not set `SIGCHLD` to
//!   `SIG_IGN` and must not reap unknown children with `waitpid(-1)`.
//! - The caller's fd 3 is not touched (the launcher moves the agent socket there in its own fd
//!   table). Create the agent socket `SOCK_CLOEXEC`, as every fd of the caller should be.
//! - The caller must be root for an overlay root; non-root callers get a user namespace and
//!   need delegated cgroups (not exercised on the development host, which runs as root).

mod cgroups;
pub mod disk;
mod error;
mod launch;
mod sandbox;
pub mod seccomp;
mod seccomp_bpf;
mod seccomp_cache;
mod setup;
mod spec;
mod sys;
mod userns;
mod warm;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use cgroups::{
    host_cgroups, remove_leftovers, remove_stale_warm_cgroups, sandbox_cgroups, Attachment,
    CgroupMode, CgroupPaths, CgroupReport, CgroupVersion, Controller, ControllerDir,
    ControllerReport, Hierarchy, CPU_PERIOD_US, MEMORY_BYTES_MIN, PIDS_MAX_MIN,
};
pub use error::NamespaceError;
pub use sandbox::{ExitStatus, HostnameSetter, Sandbox};
pub use spec::{
    capability_mask, AGENT_ARGV0, AGENT_FD, CAPABILITIES, DEVICES, GUEST_PATH_ENV, MASKED_PATHS,
    READONLY_PATHS, RUNTIME_GUEST_DIR,
};
pub use sys::{set_cpu_priority, CpuPriority};
pub use warm::{WarmLauncher, WARM_PREFIX};

/// A host path bind-mounted into the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub readonly: bool,
}

/// An ext4 image mounted into the sandbox: attached to a loop device (autoclear) at the start
/// and mounted by PID 1 (`nosuid,nodev`, idmapped like the root), so the image's size is the
/// budget. Root callers only (attaching a loop device needs it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskMount {
    pub image: PathBuf,
    pub guest: PathBuf,
    pub readonly: bool,
}

/// Most served mounts one sandbox may have.
pub const MAX_SERVED_MOUNTS: usize = 32;

/// A directory served into the sandbox by the caller's file server (a `/dev/fuse` connection
/// PID 1 mounts at `guest`, after the binds, as host root; `nosuid,nodev`, read-only on
/// request). The server decides what the sandbox may do there (a write quota, the host-side
/// rules); the caller keeps serving the connection for the sandbox's life.
#[derive(Debug)]
pub struct ServedMount {
    pub guest: PathBuf,
    pub readonly: bool,
    pub fuse: OwnedFd,
}

/// The host ids that a sandbox's ids `0..count` are (its user namespace's map, and the idmap of
/// its root and bind mounts). Used when the caller is root; a non-root caller can only map its
/// own ids and ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// Host uid of the sandbox's root.
    pub host_uid: u32,
    /// Host gid of the sandbox's root group.
    pub host_gid: u32,
    /// How many consecutive ids are mapped (65,536: every id a Linux distribution uses).
    pub count: u32,
}

/// Resource limits, applied through cgroups before PID 1 runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// CPU quota in cores (CFS quota per 100 ms period); below 0.01 counts as 0.01.
    pub cpus: Option<f64>,
    /// Memory limit (v1 `memory.limit_in_bytes`, v2 `memory.max`). At least 4 MiB.
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks. At least 3 (the launcher and PID 1 coexist briefly).
    pub pids_max: Option<u64>,
}

/// The sandbox's root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Root {
    /// A host directory used directly as the root (read-write), like microsandbox's
    /// `RootfsSource::Bind`.
    Bind(PathBuf),
    /// A read-only lower directory (shared by many sandboxes) under an overlayfs whose upper and
    /// work directories are given. The overlay is mounted in the launcher's private mount
    /// namespace, so it never appears on the host and disappears with the sandbox.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        /// The ext4 disk `upper` and `work` are on, when the caller mounted one on the host
        /// (`disk::mount_image`).
        #[serde(default)]
        disk: Option<RootDiskMount>,
    },
}

/// A root disk mounted on the host at `mount_point` from the loop device `device`. PID 1
/// mounts the same device at the same place in the sandbox's mount namespace before the
/// overlay: a warm launcher's namespace was copied from the host's before the host mount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootDiskMount {
    pub device: String,
    pub mount_point: PathBuf,
}

/// Everything needed to start one sandbox.
#[derive(Debug)]
pub struct SandboxSpec {
    /// Unique, `[a-z0-9-]`, at most 64 bytes; names the cgroups (`msb-<id>`) and state.
    pub id: String,
    pub hostname: String,
    pub root: Root,
    /// Host directory bind-mounted read-write at `/.msb` (when `runtime_fuse` is `None`).
    pub runtime_dir: PathBuf,
    /// A `/dev/fuse` descriptor whose file server (the caller's) serves the runtime directory:
    /// PID 1 mounts it at `/.msb` instead of the bind, as host root, so requests carry host
    /// ids (the sandbox's mapped ones).
    pub runtime_fuse: Option<OwnedFd>,
    /// A `/dev/fuse` descriptor whose file server (the caller's) serves a [`Root::Bind`]
    /// directory: PID 1 mounts it as the root instead of binding the directory.
    pub root_fuse: Option<OwnedFd>,
    /// The agent's host file: PID 1 opens it before the pivot and executes it from that fd (it
    /// is not in the sandbox).
    pub agent_binary: PathBuf,
    /// PID 1's argv, `argv[0]` included; `None` means `["msb-agentd"]`. The program
    /// executed is always the agent binary; tests use this to run busybox (which dispatches on
    /// `argv[0]`) as the agent.
    pub agent_argv: Option<Vec<String>>,
    /// Arrives in PID 1 as fd 3 (`MSB_AGENT_FD=3`).
    pub agent_fd: OwnedFd,
    pub mounts: Vec<BindMount>,
    /// Directories served by the caller's file servers, mounted after `mounts`.
    pub served: Vec<ServedMount>,
    /// Disk images, mounted after `served`.
    pub disks: Vec<DiskMount>,
    pub limits: Limits,
    /// Existing per-sandbox host directory; holds the overlay root's mount point.
    pub state_dir: PathBuf,
    /// File receiving PID 1's stdout and stderr (appended); `None` means `/dev/null`.
    pub stdio_log: Option<PathBuf>,
    /// The sandbox's user namespace when the caller is root: `None` runs root in the sandbox
    /// as host root (tests of the backend only; msb always gives one).
    pub id_map: Option<IdMap>,
}
