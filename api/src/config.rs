//! What a sandbox is asked to be: the configuration a client sends in a create request, msbd
//! stores in the catalog and hands to the sandbox's supervisor, and the checks it passes first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest sandbox name accepted (as microsandbox: 128 bytes).
pub const MAX_NAME_BYTES: usize = 128;
/// What a sandbox name is made of (ECMA-262, as the OpenAPI document states it): a letter or
/// digit, then letters, digits, `-`, `_` and `.`.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// The smallest and largest `cpus` (cores; the smallest is exclusive).
pub const MIN_CPUS_EXCLUSIVE: f64 = 0.0;
pub const MAX_CPUS: f64 = 1024.0;
/// The smallest and largest `memory_mib` (the largest keeps the limit in bytes far from u64's).
pub const MIN_MEMORY_MIB: u64 = 16;
pub const MAX_MEMORY_MIB: u64 = 1 << 32;
/// The memory limit of a sandbox created without one (`-m`), as microsandbox's default guest
/// size. msbd writes it into the stored configuration at create, so `inspect` and `capacity`
/// show the limit the sandbox runs under. Swap is never available to a sandbox.
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// The size of the writable root's disk (`root_disk_mib`, `--root-disk`) when none is given:
/// 4 GiB, sparse (the host allocates only what is written). msbd writes it into the stored
/// configuration at create for the default root.
pub const DEFAULT_ROOT_DISK_MIB: u64 = 4096;
/// The smallest and largest root disk: ext4 needs room for its journal and tables; the
/// largest is ext4's own limit with 4 KiB blocks (16 TiB). A size beyond the filesystem that
/// holds `MSB_HOME` is refused by msbd.
pub const MIN_ROOT_DISK_MIB: u64 = 64;
pub const MAX_ROOT_DISK_MIB: u64 = 16 << 20;
/// The network rings' size when none is given, and the range accepted (`net_ring_frames`).
pub const DEFAULT_NET_RING_FRAMES: u32 = 1024;
pub const MIN_NET_RING_FRAMES: u32 = 8;
pub const MAX_NET_RING_FRAMES: u32 = 65536;
/// The range of `max_duration_secs` and `idle_timeout_secs`: at least a second, at most ten
/// years.
pub const MIN_DURATION_SECS: u64 = 1;
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;
/// An environment variable name: not empty, no `=`, no NUL.
pub const ENV_NAME_PATTERN: &str = "^[^=\\u0000]+$";
/// A string the kernel can carry (argv, environment values): no NUL.
pub const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";
/// An absolute path without NUL (workdir, host paths).
pub const ABSOLUTE_PATH_PATTERN: &str = "^/[^\\u0000]*$";
/// A volume's guest path: absolute, without NUL, and not `/` itself (a volume over the
/// sandbox's root, read-only, left no place for the other mount points).
pub const GUEST_PATH_PATTERN: &str = "^/[^\\u0000]*[^/\\u0000][^\\u0000]*$";

/// The write quota of a directory bind mount unless its `quota_mib` says otherwise.
pub const DEFAULT_BIND_QUOTA_MIB: u64 = 4 << 10;
/// The largest `quota_mib` a request may carry (1 PiB; the host's disk bounds it further).
pub const MAX_QUOTA_MIB: u64 = 1 << 30;

/// A host path mounted into the sandbox. A directory is served by msb's file server with a
/// write quota (only growth is charged; `df` inside shows the budget); a single file is bound
/// as it is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The host path (absolute); empty when `volume` names a volume instead.
    #[serde(default, skip_serializing_if = "host_is_unset")]
    #[schema(value_type = String)]
    pub host: PathBuf,
    /// A named volume (`msb volume create`) instead of a host path; msbd fills `host` with the
    /// volume's place when it records the sandbox.
    #[serde(default)]
    pub volume: Option<String>,
    /// The named volume's kind (msbd fills it in; a `disk` volume is an ext4 image attached as a
    /// block device at each start).
    #[serde(default)]
    pub kind: Option<crate::volumes::VolumeKind>,
    #[schema(value_type = String)]
    pub guest: PathBuf,
    pub readonly: bool,
    /// Write quota in MiB of a directory mount (default 4096, at most the size of the
    /// filesystem holding `host`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub quota_mib: Option<u64>,
}

fn host_is_unset(host: &std::path::Path) -> bool {
    host.as_os_str().is_empty()
}

impl VolumeMount {
    /// The write quota in bytes this mount gets when it is a directory: its own, else a host
    /// directory's default (4 GiB) or a named volume's (unbounded unless the volume has one,
    /// which msbd copies into `quota_mib`).
    pub fn quota_bytes(&self) -> Option<u64> {
        match (&self.volume, self.quota_mib) {
            (_, Some(mib)) => Some(mib << 20),
            (Some(_), None) => None,
            (None, None) => Some(DEFAULT_BIND_QUOTA_MIB << 20),
        }
    }
}

/// The sandbox's root filesystem.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RootfsSource {
    /// msb's default busybox root (read-only lower, per-sandbox writable upper).
    Default,
    /// A host directory used as the root, read-write.
    Bind {
        #[schema(value_type = String)]
        path: PathBuf,
    },
}

/// Everything needed to (re)start a sandbox. Unknown fields are refused (a misspelt limit must
/// not be silently ignored).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub name: String,
    /// The startup command (argv). Empty means the root's default shell, `/bin/sh`.
    pub command: Vec<String>,
    /// `[name, value]` pairs, in order.
    #[schema(value_type = Vec<Vec<String>>)]
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// CPU quota in cores.
    pub cpus: Option<f64>,
    /// Memory limit in MiB (swap included: a sandbox gets none). Unset means 512 MiB
    /// (`DEFAULT_MEMORY_MIB`), written in at create; more than the host's memory is refused.
    pub memory_mib: Option<u64>,
    pub volumes: Vec<VolumeMount>,
    pub rootfs: RootfsSource,
    pub labels: BTreeMap<String, String>,
    pub max_duration_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    /// Unnamed sandboxes are removed by the runtime when their run ends.
    pub ephemeral: bool,
    /// Sampling interval in ms: absent = 1000, 0 = metrics disabled, else 100 to 3600000.
    #[serde(default)]
    pub metrics_interval_ms: Option<u64>,
    /// Published ports, each `[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]` (`-p`);
    /// the host side binds `127.0.0.1` unless an address is given.
    #[serde(default)]
    pub published_ports: Vec<String>,
    /// Egress rules, each `allow|deny@TARGET[:tcp|udp[:PORTS]]` (`--net-rule`), first match wins;
    /// without a match public addresses are allowed and private, loopback and metadata ones denied.
    #[serde(default)]
    pub net_rules: Vec<String>,
    /// No network: the sandbox's namespace keeps only `lo` (`--no-network`).
    #[serde(default)]
    pub no_network: bool,
    /// Size in MiB of the ext4 disk that holds the writable root's changes (`--root-disk`):
    /// writes past it fail with ENOSPC. Unset means 4 GiB (`DEFAULT_ROOT_DISK_MIB`), written
    /// in at create; a host-directory root has no such disk, and msbd drops the field for one
    /// (with a warning). Sandboxes made before root disks had none and keep none.
    #[serde(default)]
    pub root_disk_mib: Option<u64>,
    /// Frames each of the network's rings holds (`--net-ring-frames`; guest to stack and
    /// stack to guest): unset means 1024 (`DEFAULT_NET_RING_FRAMES`). A full transmit ring
    /// drops the guest's frame, a full receive ring a datagram for it; both are counted.
    #[serde(default)]
    pub net_ring_frames: Option<u32>,
}

/// The sampling interval when none is configured.
pub const DEFAULT_METRICS_INTERVAL_MS: u64 = 1000;
/// The shortest sampling interval accepted (0 aside, which turns metrics off).
pub const MIN_METRICS_INTERVAL_MS: u64 = 100;
/// The longest sampling interval accepted: an hour.
pub const MAX_METRICS_INTERVAL_MS: u64 = 3_600_000;

/// A configuration problem, found before anything is created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("sandbox name must not be empty")]
    EmptyName,
    #[error("sandbox name {name:?} is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong { name: String },
    #[error("sandbox name {name:?} may only contain letters, digits, '-', '_' and '.', and must start with a letter or digit")]
    NameCharacters { name: String },
    #[error("cpus: --cpus must be more than 0 and at most {MAX_CPUS}, got {0}")]
    Cpus(f64),
    #[error("root_disk_mib: --root-disk must be {MIN_ROOT_DISK_MIB} to {MAX_ROOT_DISK_MIB} MiB, got {0} MiB")]
    RootDisk(u64),
    #[error("memory_mib: --memory must be {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB, got {0} MiB")]
    Memory(u64),
    #[error("rootfs directory {path} does not exist or is not a directory")]
    MissingRootfs { path: PathBuf },
    #[error("volume host path {path} does not exist")]
    MissingVolume { path: PathBuf },
    #[error("{field}: host path {path} must be absolute")]
    RelativeHostPath { field: &'static str, path: PathBuf },
    #[error("volumes: guest path {path} must be absolute and not /")]
    RelativeGuestPath { path: PathBuf },
    #[error("volumes: quota_mib of {path} must be 1 to {MAX_QUOTA_MIB} MiB, got {quota_mib}")]
    Quota { path: PathBuf, quota_mib: u64 },
    #[error("volumes: a quota of {quota_mib} MiB for {path} exceeds the {disk_mib} MiB filesystem holding it")]
    QuotaBeyondDisk {
        path: PathBuf,
        quota_mib: u64,
        disk_mib: u64,
    },
    #[error("volumes: {path} is a file; a quota applies to directory mounts only")]
    QuotaOnFile { path: PathBuf },
    #[error("volumes: {0:?} is not a valid volume name (letters, digits, '.', '_', '-'; no '/')")]
    VolumeName(String),
    #[error("volumes: no volume named {0:?} (create it with `msb volume create {0}`)")]
    UnresolvedVolume(String),
    #[error("env: environment variable name {0:?} is invalid")]
    EnvName(String),
    #[error("{field}: must not contain a NUL character")]
    Nul { field: &'static str },
    #[error("workdir: {0:?} must be an absolute path")]
    Workdir(String),
    #[error(
        "{field}: {what} must be {MIN_DURATION_SECS} to {MAX_DURATION_SECS} seconds, got {secs}"
    )]
    Duration {
        field: &'static str,
        what: &'static str,
        secs: u64,
    },
    #[error(
        "metrics_interval_ms: --metrics-interval must be 0 (off) or {MIN_METRICS_INTERVAL_MS} to {MAX_METRICS_INTERVAL_MS} ms, got {0} ms"
    )]
    MetricsInterval(u64),
    #[error("published_ports: invalid published port {value:?}: {reason}")]
    PublishedPort { value: String, reason: String },
    #[error("net_rules: invalid network rule {value:?}: {reason}")]
    NetRule { value: String, reason: String },
    #[error("net_ring_frames: --net-ring-frames must be {MIN_NET_RING_FRAMES} to {MAX_NET_RING_FRAMES}, got {0}")]
    NetRingFrames(u32),
    #[error("no_network: --no-network cannot be combined with published ports, network rules or a ring size")]
    NoNetworkWithNetworkOptions,
}

impl ConfigError {
    /// The OpenAPI document cannot state the rule (a path that does not exist on the host, a
    /// grammar of msb-net's, a combination of fields), so msbd answers 422, not 400.
    pub fn is_beyond_the_schema(&self) -> bool {
        matches!(
            self,
            ConfigError::MissingRootfs { .. }
                | ConfigError::MissingVolume { .. }
                | ConfigError::QuotaBeyondDisk { .. }
                | ConfigError::QuotaOnFile { .. }
                | ConfigError::UnresolvedVolume(_)
                // The `-p` and `--net-rule` grammars are msb-net's parsers, not schema patterns.
                | ConfigError::PublishedPort { .. }
                | ConfigError::NetRule { .. }
                // A combination of fields, which the document does not state either.
                | ConfigError::NoNetworkWithNetworkOptions
        )
    }
}

impl SandboxConfig {
    /// A configuration named `name` with nothing else set: the default root and shell, no
    /// limits, mounts, labels or timers, a network (the values msbd fills in at create stay
    /// unset). The base of a configuration built in code (`..SandboxConfig::named(..)`).
    pub fn named(name: impl Into<String>) -> SandboxConfig {
        SandboxConfig {
            name: name.into(),
            command: Vec::new(),
            env: Vec::new(),
            workdir: None,
            cpus: None,
            memory_mib: None,
            volumes: Vec::new(),
            rootfs: RootfsSource::Default,
            labels: BTreeMap::new(),
            max_duration_secs: None,
            idle_timeout_secs: None,
            ephemeral: false,
            metrics_interval_ms: None,
            published_ports: Vec::new(),
            net_rules: Vec::new(),
            no_network: false,
            root_disk_mib: None,
            net_ring_frames: None,
        }
    }

    /// The memory limit the sandbox runs under: the one asked for, or [`DEFAULT_MEMORY_MIB`]
    /// (a configuration stored before msbd wrote the default in has none).
    pub fn memory_limit_mib(&self) -> u64 {
        self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB)
    }

    /// Parses the published ports and egress rules with msb-net's parsers (the supervisor parses
    /// them again to build the network).
    fn validate_network(&self) -> Result<(), ConfigError> {
        if self.no_network
            && !(self.published_ports.is_empty()
                && self.net_rules.is_empty()
                && self.net_ring_frames.is_none())
        {
            return Err(ConfigError::NoNetworkWithNetworkOptions);
        }
        if let Some(frames) = self.net_ring_frames {
            if !(MIN_NET_RING_FRAMES..=MAX_NET_RING_FRAMES).contains(&frames) {
                return Err(ConfigError::NetRingFrames(frames));
            }
        }
        for value in &self.published_ports {
            if let Err(e) = value.parse::<msb_net::PortSpec>() {
                return Err(ConfigError::PublishedPort {
                    value: value.clone(),
                    reason: e.to_string(),
                });
            }
        }
        for value in &self.net_rules {
            if let Err(e) = value.parse::<msb_net::Rule>() {
                return Err(ConfigError::NetRule {
                    value: value.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Checks everything that can be checked on the host before a sandbox exists. Every check
    /// but the host paths' existence is stated in the OpenAPI document (`crate::contract`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        if let Some(cpus) = self.cpus {
            if !(cpus.is_finite() && cpus > MIN_CPUS_EXCLUSIVE && cpus <= MAX_CPUS) {
                return Err(ConfigError::Cpus(cpus));
            }
        }
        if let Some(mib) = self.memory_mib {
            if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
                return Err(ConfigError::Memory(mib));
            }
        }
        if let Some(mib) = self.root_disk_mib {
            if !(MIN_ROOT_DISK_MIB..=MAX_ROOT_DISK_MIB).contains(&mib) {
                return Err(ConfigError::RootDisk(mib));
            }
        }
        if self.command.iter().any(|arg| arg.contains('\0')) {
            return Err(ConfigError::Nul { field: "command" });
        }
        if let RootfsSource::Bind { path } = &self.rootfs {
            if !absolute_path(&path.to_string_lossy()) {
                return Err(ConfigError::RelativeHostPath {
                    field: "rootfs",
                    path: path.clone(),
                });
            }
        }
        for volume in &self.volumes {
            if let Some(name) = &volume.volume {
                validate_name(name).map_err(|_| ConfigError::VolumeName(name.clone()))?;
                if volume.host.as_os_str().is_empty() {
                    return Err(ConfigError::UnresolvedVolume(name.clone()));
                }
            }
            if !absolute_path(&volume.host.to_string_lossy()) {
                return Err(ConfigError::RelativeHostPath {
                    field: "volumes",
                    path: volume.host.clone(),
                });
            }
            let guest = volume.guest.to_string_lossy();
            if !absolute_path(&guest) || guest.chars().all(|c| c == '/') {
                return Err(ConfigError::RelativeGuestPath {
                    path: volume.guest.clone(),
                });
            }
            if let Some(quota_mib) = volume
                .quota_mib
                .filter(|q| !(1..=MAX_QUOTA_MIB).contains(q))
            {
                return Err(ConfigError::Quota {
                    path: volume.host.clone(),
                    quota_mib,
                });
            }
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ConfigError::EnvName(key.clone()));
            }
            if value.contains('\0') {
                return Err(ConfigError::Nul { field: "env" });
            }
        }
        if let Some(workdir) = &self.workdir {
            if !absolute_path(workdir) {
                return Err(ConfigError::Workdir(workdir.clone()));
            }
        }
        for (field, what, secs) in [
            (
                "max_duration_secs",
                "--max-duration",
                self.max_duration_secs,
            ),
            (
                "idle_timeout_secs",
                "--idle-timeout",
                self.idle_timeout_secs,
            ),
        ] {
            if let Some(secs) =
                secs.filter(|s| !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(s))
            {
                return Err(ConfigError::Duration { field, what, secs });
            }
        }
        if let Some(ms) = self.metrics_interval_ms.filter(|ms| {
            *ms != 0 && !(MIN_METRICS_INTERVAL_MS..=MAX_METRICS_INTERVAL_MS).contains(ms)
        }) {
            return Err(ConfigError::MetricsInterval(ms));
        }
        self.validate_network()?;
        // Last, the checks that depend on the host rather than on the request.
        if let RootfsSource::Bind { path } = &self.rootfs {
            if !path.is_dir() {
                return Err(ConfigError::MissingRootfs { path: path.clone() });
            }
        }
        for volume in &self.volumes {
            let Ok(meta) = std::fs::metadata(&volume.host) else {
                return Err(ConfigError::MissingVolume {
                    path: volume.host.clone(),
                });
            };
            let Some(quota_mib) = volume.quota_mib else {
                continue;
            };
            if !meta.is_dir() {
                return Err(ConfigError::QuotaOnFile {
                    path: volume.host.clone(),
                });
            }
            if let Some(disk_mib) = filesystem_mib(&volume.host).filter(|d| quota_mib > *d) {
                return Err(ConfigError::QuotaBeyondDisk {
                    path: volume.host.clone(),
                    quota_mib,
                    disk_mib,
                });
            }
        }
        Ok(())
    }

    /// The sampling interval in ms; `None` when metrics are disabled.
    pub fn metrics_interval(&self) -> Option<u64> {
        match self.metrics_interval_ms {
            None => Some(DEFAULT_METRICS_INTERVAL_MS),
            Some(0) => None,
            Some(ms) => Some(ms),
        }
    }

    /// The argv the workload runs with.
    pub fn effective_command(&self) -> Vec<String> {
        if self.command.is_empty() {
            vec!["/bin/sh".to_owned()]
        } else {
            self.command.clone()
        }
    }
}

/// `path` starts with `/` and holds no NUL ([`ABSOLUTE_PATH_PATTERN`]).
fn absolute_path(path: &str) -> bool {
    path.starts_with('/') && !path.contains('\0')
}

/// A sandbox name: not empty, at most [`MAX_NAME_BYTES`], matching [`NAME_PATTERN`].
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::EmptyName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ConfigError::NameTooLong {
            name: name.to_owned(),
        });
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !(first_ok && rest_ok) {
        return Err(ConfigError::NameCharacters {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The size in MiB of the filesystem holding `path`, when `statvfs` answers.
fn filesystem_mib(path: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some((st.blocks() as u64).saturating_mul(st.fragment_size() as u64) >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SandboxConfig {
        SandboxConfig::named("web")
    }

    #[test]
    fn names() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert_eq!(validate_name(""), Err(ConfigError::EmptyName));
        assert!(matches!(
            validate_name("-x"),
            Err(ConfigError::NameCharacters { .. })
        ));
        assert!(matches!(
            validate_name("a/b"),
            Err(ConfigError::NameCharacters { .. })
        ));
        assert!(matches!(
            validate_name(&"a".repeat(129)),
            Err(ConfigError::NameTooLong { .. })
        ));
    }

    #[test]
    fn rejects_bad_values_before_anything_exists() {
        let mut c = sample();
        c.cpus = Some(0.0);
        assert_eq!(c.validate(), Err(ConfigError::Cpus(0.0)));
        let mut c = sample();
        c.memory_mib = Some(1);
        assert_eq!(c.validate(), Err(ConfigError::Memory(1)));
        let mut c = sample();
        c.rootfs = RootfsSource::Bind {
            path: "/nonexistent/root".into(),
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MissingRootfs { .. })
        ));
        let mut c = sample();
        c.env = vec![("A=B".into(), "x".into())];
        assert!(matches!(c.validate(), Err(ConfigError::EnvName(_))));
        let mut c = sample();
        c.workdir = Some("rel".into());
        assert!(matches!(c.validate(), Err(ConfigError::Workdir(_))));
        assert!(sample().validate().is_ok());
        assert_eq!(sample().effective_command(), vec!["/bin/sh".to_owned()]);
    }
}
