//! The OCI runtime spec (`config.json`) msb hands to libcontainer for one sandbox (pure).

use std::path::Path;

use serde_json::{json, Value};

use crate::{cgroups, seccomp, SandboxSpec};

/// Where the runtime directory appears in the sandbox.
pub const RUNTIME_GUEST_DIR: &str = "/.msb";
/// Where the agent binary appears in the sandbox; it is PID 1.
pub const AGENT_GUEST_PATH: &str = "/.msb/bin/msb-agentd";
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

/// Facts about the calling process that shape the spec.
#[derive(Clone, Debug)]
pub(crate) struct Host<'a> {
    /// The directory libcontainer pivots into.
    pub rootfs: &'a Path,
    /// OCI `linux.cgroupsPath` (`/msb/<id>`).
    pub cgroups_path: String,
    /// `Some((uid, gid))` when not root: a user namespace maps root in the sandbox to them.
    pub unprivileged: Option<(u32, u32)>,
}

/// The argv of PID 1.
pub(crate) fn agent_argv(spec: &SandboxSpec) -> Vec<String> {
    spec.agent_argv
        .clone()
        .unwrap_or_else(|| vec![AGENT_GUEST_PATH.to_owned()])
}

/// Builds `config.json`.
pub(crate) fn oci_config(spec: &SandboxSpec, host: &Host<'_>) -> Value {
    let capabilities: Vec<&str> = CAPABILITIES.iter().map(|(name, _)| *name).collect();
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let mut linux = json!({
        "namespaces": [],
        "cgroupsPath": host.cgroups_path,
        "resources": cgroups::oci_resources(&spec.limits),
        "rootfsPropagation": "slave",
        "seccomp": seccomp::oci_seccomp(),
        "maskedPaths": oci_spec::runtime::get_default_maskedpaths(),
        "readonlyPaths": oci_spec::runtime::get_default_readonly_paths(),
    });
    if let Some((uid, gid)) = host.unprivileged {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    linux["namespaces"] = Value::Array(namespaces);

    json!({
        "ociVersion": "1.0.2",
        "root": {"path": host.rootfs, "readonly": false},
        "hostname": spec.hostname,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": agent_argv(spec),
            "env": [
                format!("PATH={GUEST_PATH_ENV}"),
                format!("MSB_AGENT_FD={AGENT_FD}"),
                "HOME=/root",
            ],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
                "inheritable": [],
                "ambient": [],
            },
        },
        "mounts": mounts(spec, host.unprivileged.is_some()),
        "linux": linux,
    })
}

fn mounts(spec: &SandboxSpec, unprivileged: bool) -> Vec<Value> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": if unprivileged {
            // gid=5 does not exist in a one-id user namespace.
            json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])
        } else {
            json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])
        }}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
        bind(&spec.runtime_dir, Path::new(RUNTIME_GUEST_DIR), false),
        bind(&spec.agent_binary, Path::new(AGENT_GUEST_PATH), true),
    ];
    for mount in &spec.mounts {
        mounts.push(bind(&mount.host, &mount.guest, mount.readonly));
    }
    mounts
}

fn bind(host: &Path, guest: &Path, readonly: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.push(if readonly { "ro" } else { "rw" });
    json!({"destination": guest, "type": "bind", "source": host, "options": options})
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
