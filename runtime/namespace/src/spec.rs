//! What a sandbox looks like from inside: its mounts, devices, capabilities and PID 1's argv and
//! environment (pure data; `setup` makes it so).

use std::path::PathBuf;

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::{IdMap, SandboxSpec};

/// Where the runtime directory appears in the sandbox.
pub const RUNTIME_GUEST_DIR: &str = "/.msb";
/// PID 1's `argv[0]`. The agent binary is not in the sandbox: PID 1 opens the host's before
/// the pivot and executes it from that fd (`fexecve`), so no mount point, bind or file of it
/// is made per run and the workload cannot read it.
pub const AGENT_ARGV0: &str = "msb-agentd";
/// The fd number of the agent's socket in PID 1.
pub const AGENT_FD: i32 = 3;
/// `PATH` of PID 1.
pub const GUEST_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities PID 1 keeps (bounding, permitted and effective sets; inheritable and ambient are
/// empty), with their numbers. Docker's default set minus `CAP_MKNOD` (the device list is
/// fixed), `CAP_NET_RAW` (packet crafting on the sandbox network), `CAP_AUDIT_WRITE` and
/// `CAP_SETFCAP` (file capabilities are ignored under no_new_privs anyway).
pub const CAPABILITIES: [(&str, u32); 10] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_SYS_CHROOT", 18),
];

/// The `CapEff` mask PID 1 runs with.
pub fn capability_mask() -> u64 {
    CAPABILITIES
        .iter()
        .fold(0, |mask, (_, bit)| mask | 1 << bit)
}

/// Device nodes of the sandbox's `/dev` (name, major, minor): created with `mknod` when the
/// caller is root, bound from the host's `/dev` in a user namespace (where `mknod` is refused).
pub const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symbolic links in `/dev` (link, target).
pub const DEV_LINKS: [(&str, &str); 5] = [
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Kernel files hidden from the sandbox (`/dev/null` bound over files, an empty read-only tmpfs
/// over directories): they leak host information or are host-wide knobs. The list of the OCI
/// runtime spec's defaults, which Docker and Podman use too, with `/proc/interrupts` (per-CPU
/// interrupt counts of the host) and `/sys/devices/virtual/powercap` (RAPL energy counters, a
/// side channel).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel directories the sandbox may read but not write: without a user namespace, root in
/// the sandbox is host root, and `/proc/sys` would otherwise set host-wide sysctls.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// One mount PID 1 makes inside its new root, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum GuestMount {
    /// A new instance of a kernel filesystem (`proc`, `tmpfs`, `devpts`, `sysfs`).
    Fs {
        fs_type: String,
        target: String,
        #[serde(with = "ms_flags")]
        flags: MsFlags,
        data: String,
    },
    /// A host path bound (recursively) at `target`, which becomes a directory or an empty file
    /// to match the source. `nosuid,nodev` always, read-only on request.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// The `connection`-th served directory ([`crate::ServedMount`]): a FUSE mount of the
    /// caller's connection at `target` (a directory), `nosuid,nodev`, read-only on request.
    Served {
        target: PathBuf,
        readonly: bool,
        connection: usize,
    },
    /// An ext4 filesystem on the block device `device` (a loop device the caller attached),
    /// mounted at `target` (a directory) `nosuid,nodev`, read-only on request.
    Disk {
        device: String,
        target: PathBuf,
        readonly: bool,
    },
}

/// The mounts of a sandbox, after its root and `/.msb` (pure). The runtime directory is bound
/// at [`RUNTIME_GUEST_DIR`] before the pivot (it carries the old root's temporary mount point),
/// so it is not in this list; nor is the agent binary, which PID 1 executes from an fd.
pub(crate) fn guest_mounts(
    spec: &SandboxSpec,
    unprivileged: bool,
    id_map: Option<&IdMap>,
) -> Vec<GuestMount> {
    let fs = |fs_type: &str, target: &str, flags, data: &str| GuestMount::Fs {
        fs_type: fs_type.to_owned(),
        target: target.to_owned(),
        flags,
        data: data.to_owned(),
    };
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    // With a mapped user namespace, the tmpfs roots belong to the sandbox's root and ttys to
    // its group 5; gid 5 ("tty") does not exist in a one-id user namespace.
    let (owner, devpts) = match (id_map, unprivileged) {
        (Some(map), false) => (
            format!(",uid={},gid={}", map.host_uid, map.host_gid),
            format!(
                "newinstance,ptmxmode=0666,mode=0620,gid={}",
                map.host_gid + 5
            ),
        ),
        (_, true) => (
            String::new(),
            "newinstance,ptmxmode=0666,mode=0620".to_owned(),
        ),
        (None, false) => (
            String::new(),
            "newinstance,ptmxmode=0666,mode=0620,gid=5".to_owned(),
        ),
    };
    let mut mounts = vec![
        fs("proc", "/proc", hardened, ""),
        fs(
            "tmpfs",
            "/dev",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            &format!("mode=755,size=65536k{owner}"),
        ),
        fs(
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            &devpts,
        ),
        fs(
            "tmpfs",
            "/dev/shm",
            hardened,
            &format!("mode=1777,size=65536k{owner}"),
        ),
        fs("sysfs", "/sys", hardened | MsFlags::MS_RDONLY, ""),
        fs(
            "tmpfs",
            "/tmp",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            &format!("mode=1777{owner}"),
        ),
    ];
    mounts.extend(spec.mounts.iter().map(|m| GuestMount::Bind {
        source: m.host.clone(),
        target: m.guest.clone(),
        readonly: m.readonly,
    }));
    mounts.extend(
        spec.served
            .iter()
            .enumerate()
            .map(|(connection, m)| GuestMount::Served {
                target: m.guest.clone(),
                readonly: m.readonly,
                connection,
            }),
    );
    mounts
}

/// `MsFlags` as their bits on the wire to a warm launcher.
mod ms_flags {
    use nix::mount::MsFlags;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(flags: &MsFlags, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(flags.bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MsFlags, D::Error> {
        let bits = u64::deserialize(deserializer)?;
        Ok(MsFlags::from_bits_truncate(bits))
    }
}

/// The argv of PID 1.
pub(crate) fn agent_argv(spec: &SandboxSpec) -> Vec<String> {
    spec.agent_argv
        .clone()
        .unwrap_or_else(|| vec![AGENT_ARGV0.to_owned()])
}

/// The environment of PID 1: nothing of the caller's.
pub(crate) fn agent_env() -> Vec<String> {
    vec![
        format!("PATH={GUEST_PATH_ENV}"),
        format!("MSB_AGENT_FD={AGENT_FD}"),
        "HOME=/root".to_owned(),
    ]
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
