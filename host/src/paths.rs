//! Where everything lives under `MSB_HOME`.

use std::path::{Path, PathBuf};

/// The root of one msb installation's state; one `msbd` per home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsbHome {
    root: PathBuf,
}

impl MsbHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$MSB_HOME`, else `~/.msb`.
    pub fn from_env() -> Self {
        if let Some(home) = std::env::var_os("MSB_HOME").filter(|v| !v.is_empty()) {
            return Self::new(home);
        }
        let user_home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        Self::new(Path::new(&user_home).join(".msb"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("msbd.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("msbd.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("msbd.lock")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("msbd.log")
    }
    /// Where idle warm supervisors bind their sockets until they are handed a sandbox.
    pub fn warm_sockets(&self) -> PathBuf {
        self.root.join("warm")
    }
    /// Where idle warm supervisors log (until they are handed a sandbox).
    pub fn warm_supervisor_log(&self) -> PathBuf {
        self.root.join("warm-supervisors.log")
    }
    /// msbd's configuration file (optional; `docs/configuration.md`).
    pub fn daemon_config(&self) -> PathBuf {
        self.root.join("msbd.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("msb.duckdb")
    }
    /// The default root's read-only lower directory.
    pub fn default_rootfs(&self) -> PathBuf {
        self.root.join("images").join("busybox").join("rootfs")
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }
    /// Where removed sandboxes' directories go to be deleted in the background (same
    /// filesystem as `sandboxes`, so moving one there is a rename).
    /// Named volumes: `volumes/<name>/data/` (a dir volume) or `volumes/<name>/disk.ext4`.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Empty ext4 images, one per size, that root disks are copied from (`disk.rs`).
    pub fn disk_templates(&self) -> PathBuf {
        self.root.join("cache").join("disks")
    }
    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }
    pub fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir {
            root: self.sandboxes().join(id),
        }
    }
}

/// `$MSB_HOME/sandboxes/<id>`: everything one sandbox owns on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxDir {
    root: PathBuf,
}

impl SandboxDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The supervisor's socket (exec and attach sessions, control, watch).
    pub fn socket(&self) -> PathBuf {
        self.root.join("supervisor.sock")
    }
    /// The current run's record, written by the supervisor (see `run_record`).
    pub fn run_record(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// Workload and exec output, JSON Lines (see `logs`).
    pub fn output_log(&self) -> PathBuf {
        self.root.join("output.jsonl")
    }
    /// The supervisor's and the agent's own diagnostics.
    pub fn supervisor_log(&self) -> PathBuf {
        self.root.join("supervisor.log")
    }
    /// Mounted at `/.msb` in the sandbox.
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }
    /// The writable root's ext4 image (sparse), for a sandbox made with one (`--root-disk`;
    /// the default for the default root since sandboxes had disks).
    pub fn root_disk_image(&self) -> PathBuf {
        self.root.join("root-disk.img")
    }
    /// Where the supervisor mounts the root disk while the sandbox runs.
    pub fn root_disk_mount(&self) -> PathBuf {
        self.root.join("root-disk")
    }
    /// The overlay's upper directory: on the root disk when the sandbox has one (only there
    /// while it is mounted), else a plain directory of the sandbox's.
    pub fn upper(&self) -> PathBuf {
        self.layer("upper")
    }
    /// The overlay's work directory, on the same filesystem as [`SandboxDir::upper`].
    pub fn work(&self) -> PathBuf {
        self.layer("work")
    }
    fn layer(&self, name: &str) -> PathBuf {
        if self.root_disk_image().exists() {
            self.root_disk_mount().join(name)
        } else {
            self.root.join(name)
        }
    }
    /// Backend state (OCI bundle, container state).
    pub fn backend_state(&self) -> PathBuf {
        self.root.join("backend")
    }
}
