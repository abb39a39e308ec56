//! End-to-end test support: a [`TestHome`] is one `MSB_HOME` with its own msbd, driven only
//! through the real `msb` binary, and cleaned up (sandboxes removed, daemon stopped) on drop.
//!
//! The binaries come from `MSB_BIN_DIR` (set by `scripts/test`), else from the target
//! directory this test binary was built in; the agent from `MSB_AGENTD`, else the static build
//! in the same target directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Namespace sandboxes need root here; tests call this first and return early without it.
pub fn require_root() -> bool {
    let root = nix_euid() == 0;
    if !root {
        eprintln!("skipped: end-to-end sandbox tests need root (namespaces, cgroups)");
    }
    root
}

/// Tests that start a real Prometheus call this; without Debian's `prometheus` package they
/// return early (scripts/setup installs it).
pub fn require_prometheus() -> bool {
    let present = Command::new("prometheus").arg("--version").output().is_ok();
    if !present {
        eprintln!(
            "skipped: Debian's prometheus package is not installed (scripts/setup installs it)"
        );
    }
    present
}

fn nix_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Builds the C program `source` (relative to the `tests` crate) statically into `dir`, for
/// use inside a sandbox whose root has no libc of its own; `None` (with the reason printed:
/// the caller skips) without a C compiler or a static libc.
pub fn build_static_c(source: &str, dir: &Path) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let binary = dir.join(source.file_stem().expect("a file name"));
    let built = Command::new("cc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .output();
    match built {
        Ok(out) if out.status.success() => Some(binary),
        other => {
            eprintln!(
                "skipped: cannot build {} statically: {other:?}",
                source.display()
            );
            None
        }
    }
}

pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MSB_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // <target>/release/deps/<this test> -> <target>/release
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir layout")
        .to_owned()
}

pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MSB_AGENTD").filter(|d| !d.is_empty()) {
        return PathBuf::from(path);
    }
    let release = bin_dir();
    release
        .parent()
        .expect("target dir")
        .join("x86_64-unknown-linux-gnu/release/msb-agentd")
}

/// A finished `msb` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub struct TestHome {
    dir: tempfile::TempDir,
    /// Extra environment for every command (and so for the msbd the first one starts).
    env: Vec<(String, String)>,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    pub fn new() -> Self {
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("msb-e2e-")
            .tempdir_in("/tmp")
            .expect("temp home");
        // As msb makes a home (tempfile's follows the umask): one open to others would be
        // tightened by the first command, with a note on stderr.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("a private temp home");
        TestHome {
            dir,
            env: Vec::new(),
        }
    }

    /// A home that keeps one warm supervisor (`MSB_WARM_SUPERVISORS=1`), past its first run
    /// (which builds the default root and chooses the id map), with a sandbox booted ahead.
    pub fn with_one_booted_supervisor() -> Self {
        let home = Self::with_env(&[("MSB_WARM_SUPERVISORS", "1")]);
        assert_eq!(home.ok(&["run", "--", "echo", "first"]).trim(), "first");
        home.wait_for_booted_sandbox();
        home
    }

    /// A home whose commands, and the msbd they start, also get `env`.
    pub fn with_env(env: &[(&str, &str)]) -> Self {
        let mut home = Self::new();
        home.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin_dir().join("msb"));
        command
            .args(args)
            .env("MSB_HOME", self.path())
            .env("MSB_AGENTD", agent_binary())
            // Each test's msbd gets a free port rather than fighting over 9464.
            .env("MSB_PROMETHEUS_ADDR", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs `msb ARGS` with stdin closed.
    pub fn msb(&self, args: &[&str]) -> Run {
        self.msb_with_input(args, None)
    }

    /// Runs `msb ARGS` feeding `input` on stdin.
    pub fn msb_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Run {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawning msb");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let output = wait_with_timeout(child, Duration::from_secs(120), args);
        output.into()
    }

    /// Runs `msb ARGS` and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.msb(args);
        if run.code != 0 {
            let log = std::fs::read_to_string(self.path().join("msbd.log")).unwrap_or_default();
            panic!("msb {args:?} failed: {run:?}\nmsbd.log:\n{log}");
        }
        run.stdout
    }

    /// Starts a detached sandbox running `command` (a shell snippet).
    pub fn detached(&self, name: &str, script: &str) {
        self.ok(&["run", "-n", name, "-d", "--", "sh", "-c", script]);
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", name, "--format", "json"]))
            .expect("inspect json")
    }

    /// The pid of the supervisor of the sandbox's last run.
    pub fn supervisor_pid(&self, name: &str) -> i32 {
        let info = self.inspect(name);
        let runs = info["runs"].as_array().expect("runs");
        runs.last().expect("a run")["supervisor_pid"]
            .as_i64()
            .expect("supervisor pid") as i32
    }

    /// `path` as the sandbox's supervisor sees it: a root supervisor mounts the root disk in a
    /// mount namespace of its own, which the host's (and this test's) does not show.
    pub fn seen_by_supervisor(&self, name: &str, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        Path::new(&format!("/proc/{}/root", self.supervisor_pid(name))).join(relative)
    }

    /// Loop devices backing this home's root disks (sandboxes', or in the trash): one per
    /// running sandbox with a disk; none once its run has ended (they clear themselves with
    /// their last mount).
    pub fn root_disk_devices(&self) -> usize {
        let home = self.path().to_string_lossy().into_owned();
        let Ok(devices) = std::fs::read_dir("/sys/block") else {
            return 0;
        };
        devices
            .flatten()
            .filter_map(|device| {
                std::fs::read_to_string(device.path().join("loop/backing_file")).ok()
            })
            // Not those of the idle sandboxes booted ahead of time under `warm/`.
            .filter(|backing| {
                backing.contains(&home)
                    && backing.contains("root-disk.img")
                    && !backing.contains(&format!("{home}/warm/"))
            })
            .count()
    }

    /// Mounts of this home's root disks in the host's mount table (this test's): always none.
    pub fn root_disk_host_mounts(&self) -> usize {
        let home = self.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&home) && l.contains("root-disk"))
            .count()
    }

    /// `msb metrics NAME --format json`.
    pub fn metrics(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["metrics", name, "--format", "json"]))
            .expect("metrics json")
    }

    /// Waits until the sandbox has a sample (the first arrives within one interval); returns it.
    pub fn first_sample(&self, name: &str) -> serde_json::Value {
        self.eventually(Duration::from_secs(20), "a first sample", || {
            self.msb(&["metrics", name, "--format", "json"]).code == 0
        });
        self.metrics(name)
    }

    /// The Prometheus exposition of the home's msbd (`GET /metrics`, text format), headers
    /// included.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let status: serde_json::Value =
            serde_json::from_str(&self.ok(&["server", "status", "--format", "json"]))
                .expect("server status json");
        let address = status["prometheus_address"]
            .as_str()
            .expect("msbd serves Prometheus")
            .to_owned();
        let mut stream = std::net::TcpStream::connect(&address).expect("connect to /metrics");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        response
    }

    pub fn status(&self, name: &str) -> String {
        self.inspect(name)["status"].as_str().unwrap().to_owned()
    }

    /// Names in `msb ls -a`.
    pub fn names(&self) -> Vec<String> {
        self.ok(&["ls", "-a", "-q"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path().join("msbd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Sandbox directories under `$MSB_HOME/sandboxes`.
    pub fn sandbox_dirs(&self) -> usize {
        std::fs::read_dir(self.path().join("sandboxes"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Directories of sandboxes booted ahead of time under `$MSB_HOME/warm`: being booted
    /// (`.booting`), or running and waiting for a start (`.boot`).
    pub fn boot_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.path().join("warm"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".boot") || name.ends_with(".booting"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until a warm supervisor runs a sandbox booted ahead of time. One spawned before
    /// the home's disk template existed (it is made in the background by the first spawn that
    /// needs it) boots none: a start every few seconds replaces it.
    pub fn wait_for_booted_sandbox(&self) {
        let mut since_start = Instant::now();
        self.eventually(Duration::from_secs(30), "a sandbox booted ahead", || {
            if self.boot_dirs().iter().any(|d| d.ends_with(".boot")) {
                return true;
            }
            if since_start.elapsed() > Duration::from_secs(3) {
                assert_eq!(self.ok(&["run", "--", "echo", "x"]).trim(), "x");
                since_start = Instant::now();
            }
            false
        });
    }

    /// For tests of root disks handed on (`runtime/src/hand_on.rs`): runs `script` in an
    /// unnamed detached sandbox booted ahead of time, stops it, and starts (detached, `sleep
    /// 600`) the next sandbox booted on the disk that run handed on, checking on the way that
    /// msbd kept the run's very image, counted it handed on and that the next sandbox has it.
    /// Returns the next sandbox's name. The home keeps one warm supervisor
    /// (`MSB_WARM_SUPERVISORS=1`): with more, the next start takes an older one's sandbox.
    pub fn hand_on_after(&self, script: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        self.ok(&["run", "--", "true"]);
        self.wait_for_booted_sandbox();
        let first = self
            .ok(&["run", "-d", "--", "sleep", "600"])
            .trim()
            .to_owned();
        let image = |name: &str| {
            let id = self.inspect(name)["id"].as_str().unwrap().to_owned();
            self.path().join(format!("sandboxes/{id}/root-disk.img"))
        };
        let inode = std::fs::metadata(image(&first)).unwrap().ino();
        let supervisor = self.inspect(&first)["runs"][0]["supervisor_pid"]
            .as_i64()
            .unwrap();
        self.ok(&["exec", &first, "--", "sh", "-c", script]);
        self.ok(&["stop", &first]);
        // Its supervisor hands the disk to msbd and exits; msbd keeps it for the next spawn.
        self.eventually(Duration::from_secs(10), "the run's supervisor gone", || {
            std::fs::read_to_string(format!("/proc/{supervisor}/stat"))
                .map(|stat| stat.contains(") Z "))
                .unwrap_or(true)
        });
        let handed_on = self.path().join(format!("warm/handed-on-{supervisor}.img"));
        assert_eq!(
            std::fs::metadata(&handed_on).map(|m| m.ino()).ok(),
            Some(inode),
            "the run's image, kept by msbd"
        );
        let handed_on_count = || -> u64 {
            let status = self.ok(&["server", "status", "--format", "json"]);
            serde_json::from_str::<serde_json::Value>(&status).unwrap()["warm_supervisors"]
                ["disks_handed_on"]
                .as_u64()
                .unwrap()
        };
        let before = handed_on_count();
        // The next start takes the sandbox booted ahead and spawns its replacement on that disk.
        self.ok(&["run", "--", "true"]);
        self.eventually(Duration::from_secs(10), "the disk taken by a spawn", || {
            !handed_on.exists()
        });
        assert_eq!(handed_on_count(), before + 1);
        self.wait_for_booted_sandbox();
        let second = self
            .ok(&["run", "-d", "--", "sleep", "600"])
            .trim()
            .to_owned();
        assert_eq!(
            std::fs::metadata(image(&second)).unwrap().ino(),
            inode,
            "the sandbox booted on the disk handed on"
        );
        second
    }

    /// Polls `check` until it holds or `limit` passes.
    pub fn eventually(&self, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.path().join("msbd.log")).unwrap_or_default();
                panic!("timed out waiting for: {what}\nmsbd.log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        if self.daemon_pid().is_none() && !self.path().join("msbd.sock").exists() {
            return;
        }
        for name in self.msb(&["ls", "-a", "-q"]).stdout.lines() {
            let _ = self.msb(&["rm", "-f", name]);
        }
        let _ = self.msb(&["server", "stop"]);
    }
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration, args: &[&str]) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buffer);
            }
            buffer
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for msb") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "msb {args:?} did not finish within {limit:?}; stdout: {} stderr: {}",
                String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
