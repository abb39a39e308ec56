//! Where each cgroup controller is attached on this host.
//!
//! Reads `/proc/self/mountinfo` (which hierarchies are mounted where, and which controllers each
//! v1 hierarchy carries) and `/proc/self/cgroup` (which cgroup the calling process is in, per
//! hierarchy). A controller found on a v1 hierarchy is used there; otherwise it is used on the
//! cgroup2 tree if that tree offers it. This is what makes hybrid hosts (v1 controllers plus an
//! almost empty `/sys/fs/cgroup/unified`) work: nothing assumes "all v1" or "all v2".

use std::path::{Path, PathBuf};

/// The controllers msb places sandboxes in. `blkio` (v1) and `io` (v2) are one logical
/// controller, named [`Controller::Io`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Controller {
    Cpu,
    CpuAcct,
    Memory,
    Pids,
    Io,
}

impl Controller {
    /// Every controller, in report order.
    pub const ALL: [Controller; 5] = [
        Controller::Cpu,
        Controller::CpuAcct,
        Controller::Memory,
        Controller::Pids,
        Controller::Io,
    ];

    /// The controller's name on a v1 hierarchy.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "blkio",
        }
    }

    /// The controller's name in a v2 `cgroup.controllers` file, if it has one. On v2, CPU
    /// accounting (`cpu.stat`) is always present, so `cpuacct` maps to the `cpu` directory.
    pub fn v2_name(self) -> &'static str {
        match self {
            Controller::Cpu | Controller::CpuAcct => "cpu",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "io",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// How the host mounts cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies ("legacy").
    V1,
    /// Only the cgroup2 tree ("unified").
    V2,
    /// v1 hierarchies plus a cgroup2 tree (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

/// Where a controller is attached, as seen by the calling process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub version: CgroupVersion,
    /// Mount point of the hierarchy (e.g. `/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// The calling process's own cgroup directory in that hierarchy. Sandboxes are created
    /// below it.
    pub own_dir: PathBuf,
}

/// One cgroup filesystem mount, from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub mount_point: PathBuf,
    /// The root of the hierarchy that is mounted there (field 4 of mountinfo).
    pub root: String,
    /// `None` for cgroup2, the v1 controllers (and `name=` options) otherwise.
    pub v1_options: Option<Vec<String>>,
}

/// One line of `/proc/self/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Empty for the v2 line (`0::/path`).
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses the cgroup mounts out of mountinfo text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mountinfo(left[4]));
        let root = unescape_mountinfo(left[3]);
        match right[0] {
            "cgroup2" => mounts.push(CgroupMount {
                mount_point,
                root,
                v1_options: None,
            }),
            "cgroup" => mounts.push(CgroupMount {
                mount_point,
                root,
                v1_options: Some(right[2].split(',').map(str::to_owned).collect()),
            }),
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The host's cgroup mode from its mounts. A v1 mount that only carries a named hierarchy
/// (`name=systemd`) does not count as a v1 controller hierarchy.
pub(crate) fn mode_of(mounts: &[CgroupMount]) -> CgroupMode {
    let has_v2 = mounts.iter().any(|m| m.v1_options.is_none());
    let has_v1 = mounts.iter().any(|m| {
        m.v1_options.as_ref().is_some_and(|opts| {
            opts.iter()
                .any(|o| V1_CONTROLLER_NAMES.contains(&o.as_str()))
        })
    });
    match (has_v1, has_v2) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        (false, true) => CgroupMode::V2,
        (false, false) => CgroupMode::None,
    }
}

const V1_CONTROLLER_NAMES: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
];

/// Joins a cgroup path from `/proc/self/cgroup` onto a mount whose root is `mount_root`.
/// Returns `None` when the process's cgroup is outside the mounted subtree.
fn own_dir(mount: &CgroupMount, cgroup_path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" {
        cgroup_path
    } else {
        let rest = cgroup_path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let relative = relative.trim_start_matches('/');
    Some(if relative.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(relative)
    })
}

/// Finds where `controller` is attached. `v2_available` lists the controllers the cgroup2 tree
/// offers in the caller's cgroup (its `cgroup.controllers`).
pub(crate) fn locate(
    controller: Controller,
    mounts: &[CgroupMount],
    memberships: &[Membership],
    v2_available: &[String],
) -> Option<Attachment> {
    let v1_name = controller.v1_name();
    for mount in mounts {
        let Some(options) = &mount.v1_options else {
            continue;
        };
        if !options.iter().any(|o| o == v1_name) {
            continue;
        }
        let membership = memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == v1_name))?;
        return Some(Attachment {
            version: CgroupVersion::V1,
            mount_point: mount.mount_point.clone(),
            own_dir: own_dir(mount, &membership.path)?,
        });
    }
    let v2_name = controller.v2_name();
    if !v2_available.iter().any(|c| c == v2_name) {
        return None;
    }
    let mount = mounts.iter().find(|m| m.v1_options.is_none())?;
    let membership = memberships.iter().find(|m| m.controllers.is_empty())?;
    Some(Attachment {
        version: CgroupVersion::V2,
        mount_point: mount.mount_point.clone(),
        own_dir: own_dir(mount, &membership.path)?,
    })
}

/// The v2 directory of the calling process, if a cgroup2 tree is mounted.
pub(crate) fn v2_own_dir(mounts: &[CgroupMount], memberships: &[Membership]) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| m.v1_options.is_none())?;
    let membership = memberships.iter().find(|m| m.controllers.is_empty())?;
    own_dir(mount, &membership.path)
}

/// One mounted hierarchy that carries a controller (a v1 one of [`LEFTOVER_V1_CONTROLLERS`],
/// or the cgroup2 tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: CgroupVersion,
    pub mount_point: PathBuf,
}

/// The v1 controllers in whose hierarchies a sandbox directory may be left: msb's own, plus
/// those libcontainer's cgroup manager (libcgroups 0.7) created one in when msb used it.
const LEFTOVER_V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// The hierarchies a sandbox directory may be in (pure).
pub(crate) fn hierarchies(mounts: &[CgroupMount]) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for mount in mounts {
        let version = match &mount.v1_options {
            None => CgroupVersion::V2,
            Some(options)
                if options
                    .iter()
                    .any(|o| LEFTOVER_V1_CONTROLLERS.contains(&o.as_str())) =>
            {
                CgroupVersion::V1
            }
            Some(_) => continue,
        };
        if !found.iter().any(|h| h.mount_point == mount.mount_point) {
            found.push(Hierarchy {
                version,
                mount_point: mount.mount_point.clone(),
            });
        }
    }
    found
}

/// A snapshot of the host's cgroup layout as seen by the calling process.
#[derive(Clone, Debug)]
pub struct HostCgroups {
    pub mode: CgroupMode,
    pub attachments: Vec<(Controller, Option<Attachment>)>,
    pub hierarchies: Vec<Hierarchy>,
}

impl HostCgroups {
    /// Reads `/proc/self/mountinfo`, `/proc/self/cgroup` and the v2 `cgroup.controllers`.
    pub fn read() -> std::io::Result<HostCgroups> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
        let mounts = parse_mountinfo(&mountinfo);
        let memberships = parse_proc_cgroup(&proc_cgroup);
        let v2_available: Vec<String> = v2_own_dir(&mounts, &memberships)
            .and_then(|dir| std::fs::read_to_string(dir.join("cgroup.controllers")).ok())
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Self::from_parts(&mounts, &memberships, &v2_available))
    }

    pub(crate) fn from_parts(
        mounts: &[CgroupMount],
        memberships: &[Membership],
        v2_available: &[String],
    ) -> HostCgroups {
        HostCgroups {
            mode: mode_of(mounts),
            attachments: Controller::ALL
                .iter()
                .map(|&c| (c, locate(c, mounts, memberships, v2_available)))
                .collect(),
            hierarchies: hierarchies(mounts),
        }
    }

    pub fn attachment(&self, controller: Controller) -> Option<&Attachment> {
        self.attachments
            .iter()
            .find(|(c, _)| *c == controller)
            .and_then(|(_, a)| a.as_ref())
    }
}

/// Whether the calling process may create cgroups below `dir` (`access(W_OK)`).
pub(crate) fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
