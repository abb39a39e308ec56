//! A busybox sandbox fixture: its own temporary directory, busybox as the "agent", cleanup on
//! drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use msb_namespace::{BindMount, Limits, Root, Sandbox, SandboxSpec};

pub const BUSYBOX: &str = "/bin/busybox";

/// `None` (with the reason printed) when this host cannot run the tests.
pub fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("namespace sandbox tests need root");
    }
    if !Path::new(BUSYBOX).exists() {
        return Some("needs a static /bin/busybox (Debian busybox-static)");
    }
    None
}

macro_rules! require_host {
    () => {
        if let Some(reason) = support::skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}
pub(crate) use require_host;

/// Makes a busybox root: bin/busybox, one symlink per applet, etc/passwd, etc/group and the
/// mount point directories.
pub fn busybox_root(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    for sub in ["etc", "tmp", "proc", "sys", "dev", "root", "mnt"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    // A device node in the root itself (as a copied host root may carry): the root is mounted
    // nodev, so it must be unusable inside.
    nix::sys::stat::mknod(
        &dir.join("host-null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
}

/// One test sandbox: a temporary directory with the root, runtime and state directories.
pub struct TestSandbox {
    pub dir: tempfile::TempDir,
    pub id: String,
    /// The host side of the agent socketpair.
    pub agent_peer: UnixStream,
    pub sandbox: Option<Sandbox>,
}

pub struct Options {
    pub overlay: bool,
    pub limits: Limits,
    pub mounts: Vec<BindMount>,
    pub script: String,
    /// Start through this launcher forked ahead of time.
    pub warm: Option<msb_namespace::WarmLauncher>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            warm: None,
            overlay: false,
            limits: Limits::default(),
            mounts: Vec::new(),
            script: "true".into(),
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestSandbox {
    /// Starts busybox `sh -c script` as PID 1.
    pub fn start(options: Options) -> TestSandbox {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("msb-ns-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        let id = format!(
            "t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let base = dir.path();
        let root = if options.overlay {
            for sub in ["lower", "upper", "work"] {
                std::fs::create_dir_all(base.join(sub)).unwrap();
            }
            busybox_root(&base.join("lower"));
            Root::Overlay {
                disk: None,
                lower: base.join("lower"),
                upper: base.join("upper"),
                work: base.join("work"),
            }
        } else {
            busybox_root(&base.join("root"));
            Root::Bind(base.join("root"))
        };
        for sub in ["runtime", "state"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let (agent, agent_peer) = UnixStream::pair().unwrap();
        let spec = SandboxSpec {
            id: id.clone(),
            hostname: "box".into(),
            root,
            runtime_dir: base.join("runtime"),
            runtime_fuse: None,
            root_fuse: None,
            served: Vec::new(),
            disks: Vec::new(),
            agent_binary: PathBuf::from(BUSYBOX),
            agent_argv: Some(vec![
                "busybox".into(),
                "sh".into(),
                "-c".into(),
                options.script,
            ]),
            agent_fd: agent.into(),
            mounts: options.mounts,
            limits: options.limits,
            state_dir: base.join("state"),
            stdio_log: Some(base.join("stdio.log")),
            id_map: None,
        };
        let log = base.join("stdio.log");
        let started = match options.warm {
            Some(warm) => Sandbox::start_warm(spec, warm),
            None => Sandbox::start(spec),
        };
        let sandbox = started.unwrap_or_else(|e| {
            let stdio = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("sandbox starts: {e}\nstdio: {stdio}")
        });
        TestSandbox {
            dir,
            id,
            agent_peer,
            sandbox: Some(sandbox),
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A file the script wrote to `/.msb/<name>`.
    pub fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.path("runtime").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; stdio: {}", self.stdio()))
    }

    pub fn stdio(&self) -> String {
        std::fs::read_to_string(self.path("stdio.log")).unwrap_or_default()
    }

    /// Reads one byte the agent wrote to fd 3.
    pub fn read_agent_byte(&mut self) -> u8 {
        let mut byte = [0u8; 1];
        self.agent_peer.read_exact(&mut byte).unwrap();
        byte[0]
    }

    /// Sends a line the agent reads from fd 3 (the scripts use it as "go on").
    pub fn release(&mut self) {
        self.agent_peer.write_all(b"go\n").unwrap();
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            let _ = sandbox.destroy();
        }
    }
}

/// The host's mount table without mount ids (they are stable anyway) for before/after checks.
pub fn host_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
