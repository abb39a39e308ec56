//! What a sandbox is asked to be: the configuration a client sends in a create request, msbd
//! stores in the catalog and hands to the sandbox's supervisor, and the checks it passes first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest sandbox name accepted (as microsandbox: 128 bytes).
pub const MAX_NAME_BYTES: usize = 128;

/// A host path mounted into the sandbox.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct VolumeMount {
    #[schema(value_type = String)]
    pub host: PathBuf,
    #[schema(value_type = String)]
    pub guest: PathBuf,
    pub readonly: bool,
}

/// The sandbox's root filesystem.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootfsSource {
    /// msb's default busybox root (read-only lower, per-sandbox writable upper).
    Default,
    /// A host directory used as the root, read-write.
    Bind {
        #[schema(value_type = String)]
        path: PathBuf,
    },
}

/// Everything needed to (re)start a sandbox.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
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
    pub memory_mib: Option<u64>,
    pub volumes: Vec<VolumeMount>,
    pub rootfs: RootfsSource,
    pub labels: BTreeMap<String, String>,
    pub max_duration_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    /// Unnamed sandboxes are removed by the runtime when their run ends.
    pub ephemeral: bool,
    /// Sampling interval in ms: absent = 1000, 0 = metrics disabled, else at least 100.
    #[serde(default)]
    pub metrics_interval_ms: Option<u64>,
}

/// The sampling interval when none is configured.
pub const DEFAULT_METRICS_INTERVAL_MS: u64 = 1000;
/// The shortest sampling interval accepted.
pub const MIN_METRICS_INTERVAL_MS: u64 = 100;

/// A configuration problem, found before anything is created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("sandbox name must not be empty")]
    EmptyName,
    #[error("sandbox name {name:?} is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong { name: String },
    #[error("sandbox name {name:?} may only contain letters, digits, '-', '_' and '.', and must start with a letter or digit")]
    NameCharacters { name: String },
    #[error("--cpus must be a positive number, got {0}")]
    Cpus(f64),
    #[error("--memory must be at least 16 MiB, got {0} MiB")]
    Memory(u64),
    #[error("rootfs directory {path} does not exist or is not a directory")]
    MissingRootfs { path: PathBuf },
    #[error("volume host path {path} does not exist")]
    MissingVolume { path: PathBuf },
    #[error("volume guest path {path} must be absolute")]
    RelativeGuestPath { path: PathBuf },
    #[error("environment variable name {0:?} is invalid")]
    EnvName(String),
    #[error("workdir {0:?} must be an absolute path")]
    Workdir(String),
    #[error("{what} must be greater than zero")]
    ZeroDuration { what: &'static str },
    #[error(
        "--metrics-interval must be 0 (off) or at least {MIN_METRICS_INTERVAL_MS} ms, got {0} ms"
    )]
    MetricsInterval(u64),
}

impl SandboxConfig {
    /// Checks everything that can be checked on the host before a sandbox exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        if let Some(cpus) = self.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(ConfigError::Cpus(cpus));
            }
        }
        if let Some(mib) = self.memory_mib {
            if mib < 16 {
                return Err(ConfigError::Memory(mib));
            }
        }
        if let RootfsSource::Bind { path } = &self.rootfs {
            if !path.is_dir() {
                return Err(ConfigError::MissingRootfs { path: path.clone() });
            }
        }
        for volume in &self.volumes {
            if !volume.host.exists() {
                return Err(ConfigError::MissingVolume {
                    path: volume.host.clone(),
                });
            }
            if !volume.guest.is_absolute() {
                return Err(ConfigError::RelativeGuestPath {
                    path: volume.guest.clone(),
                });
            }
        }
        for (key, _) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ConfigError::EnvName(key.clone()));
            }
        }
        if let Some(workdir) = &self.workdir {
            if !workdir.starts_with('/') {
                return Err(ConfigError::Workdir(workdir.clone()));
            }
        }
        if self.max_duration_secs == Some(0) {
            return Err(ConfigError::ZeroDuration {
                what: "--max-duration",
            });
        }
        if self.idle_timeout_secs == Some(0) {
            return Err(ConfigError::ZeroDuration {
                what: "--idle-timeout",
            });
        }
        if let Some(ms) = self
            .metrics_interval_ms
            .filter(|ms| *ms != 0 && *ms < MIN_METRICS_INTERVAL_MS)
        {
            return Err(ConfigError::MetricsInterval(ms));
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SandboxConfig {
        SandboxConfig {
            name: "web".into(),
            command: vec![],
            env: vec![],
            workdir: None,
            cpus: None,
            memory_mib: None,
            volumes: vec![],
            rootfs: RootfsSource::Default,
            labels: BTreeMap::new(),
            max_duration_secs: None,
            idle_timeout_secs: None,
            ephemeral: false,
            metrics_interval_ms: None,
        }
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
