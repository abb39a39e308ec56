//! Starting a sandbox: prepare on the caller's side, then run libcontainer in a forked launcher.
//!
//! ```text
//! caller (supervisor, maybe multi-threaded; PR_SET_CHILD_SUBREAPER)
//!  └─ launcher (fork): private mount ns (+ overlay), fd 3 = agent, runs libcontainer
//!      ├─ libcontainer intermediate (exits)
//!      ├─ PID 1 (CLONE_PARENT sibling of the intermediate) ── reparented to the caller
//!      └─ lo-up helper (fork): setns into PID 1's netns, sets lo up
//! ```
//!
//! The launcher reports `ok <pid>` or `err <message>` on a close-on-exec pipe. The caller reads
//! it until end-of-file, which comes only when every copy of the write end is closed: the
//! launcher's (at exit) and PID 1's (at its exec). So `start` returns after PID 1 has exec'd
//! the agent or died trying.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::error::NamespaceError;
use crate::spec::{AGENT_FD, AGENT_GUEST_PATH};
use crate::{sys, Root, SandboxSpec};

/// Where a sandbox's files live under its state directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The OCI bundle (`config.json`).
    pub bundle: PathBuf,
    /// libcontainer's root: it keeps `<id>/state.json` and its notify socket there.
    pub containers: PathBuf,
    /// Mount point of the overlay root (inside the launcher's mount namespace only).
    pub rootfs: PathBuf,
}

impl Layout {
    pub(crate) fn new(state_dir: &Path) -> Layout {
        Layout {
            bundle: state_dir.join("bundle"),
            containers: state_dir.join("containers"),
            rootfs: state_dir.join("rootfs"),
        }
    }
}

/// The fds handed to the launcher.
pub(crate) struct LaunchFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl LaunchFds {
    pub(crate) fn open(stdio_log: Option<&Path>) -> Result<LaunchFds, NamespaceError> {
        let null = Path::new("/dev/null");
        let stdin = File::open(null).map_err(|e| NamespaceError::io("open", null, e))?;
        let log_path = stdio_log.unwrap_or(null);
        let stdout = OpenOptions::new()
            .append(true)
            .create(stdio_log.is_some())
            .mode(0o640)
            .open(log_path)
            .map_err(|e| NamespaceError::io("open stdio log", log_path, e))?;
        let stderr = stdout
            .try_clone()
            .map_err(|e| NamespaceError::io("dup stdio log", log_path, e))?;
        Ok(LaunchFds {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
        })
    }
}

/// What `run` needs besides the spec.
pub(crate) struct Plan<'a> {
    pub spec: &'a SandboxSpec,
    pub layout: &'a Layout,
    pub unprivileged: bool,
}

/// Forks the launcher and waits until PID 1 has exec'd. Returns PID 1's host pid, which is a
/// child of the caller when this returns.
pub(crate) fn launch(plan: &Plan<'_>, fds: LaunchFds) -> Result<i32, NamespaceError> {
    let id = &plan.spec.id;
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NamespaceError::sys("pipe2", e))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| NamespaceError::sys("PR_SET_CHILD_SUBREAPER", e))?;

    match sys::fork().map_err(|e| NamespaceError::sys("fork", e))? {
        ForkResult::Child => {
            drop(report_read);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                launcher_main(plan, fds, report_write)
            }));
            if outcome.is_err() {
                sys::exit_now(2);
            }
            sys::exit_now(0);
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            drop(fds);
            let mut report = String::new();
            let read = File::from(report_read).read_to_string(&mut report);
            let launcher = waitpid(child, None);
            read.map_err(|e| NamespaceError::sys("read launcher report", e))?;
            if let Some(pid) = report.strip_prefix("ok ") {
                let pid: i32 = pid.trim().parse().map_err(|_| NamespaceError::Start {
                    id: id.clone(),
                    message: format!("garbled launcher report {report:?}"),
                })?;
                return confirm_running(id, pid);
            }
            let message = match report.strip_prefix("err ") {
                Some(message) => message.to_owned(),
                None => format!("launcher died without a report ({launcher:?})"),
            };
            Err(NamespaceError::Start {
                id: id.clone(),
                message,
            })
        }
    }
}

/// After the report pipe closed, PID 1 has either exec'd the agent or exited.
fn confirm_running(id: &str, pid: i32) -> Result<i32, NamespaceError> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => Ok(pid),
        Ok(status) => Err(NamespaceError::AgentExited {
            id: id.to_owned(),
            status: crate::sandbox::exit_status(status),
        }),
        Err(e) => Err(NamespaceError::sys("waitpid PID 1", e)),
    }
}

/// The launcher process. Never returns into the caller's code: `launch` `_exit`s after it.
fn launcher_main(plan: &Plan<'_>, fds: LaunchFds, report: OwnedFd) {
    // Keep the report pipe away from fd 3, which `run` overwrites.
    crate::launch_log::LauncherLog::install();
    let Ok(report) = sys::dup_cloexec_above(&report, 64) else {
        return;
    };
    let message = match run(plan, fds) {
        Ok(pid) => format!("ok {pid}"),
        Err(message) => format!("err {message}"),
    };
    let _ = File::from(report).write_all(message.as_bytes());
}

/// Inside the launcher: everything up to PID 1's exec. Errors are flattened to text because
/// they cross a process boundary.
fn run(plan: &Plan<'_>, fds: LaunchFds) -> Result<i32, String> {
    let spec = plan.spec;
    if !plan.unprivileged {
        private_mounts(spec, plan.layout)?;
    }

    // fd 3 of the launcher becomes fd 3 of PID 1 (libcontainer keeps fds 0..3 open and marks
    // every other one close-on-exec). Move our own fds out of the way first.
    let agent =
        sys::dup_cloexec_above(&spec.agent_fd, 64).map_err(|e| format!("dup agent fd: {e}"))?;
    let stdin = sys::dup_cloexec_above(&fds.stdin, 64).map_err(|e| format!("dup stdin: {e}"))?;
    let stdout = sys::dup_cloexec_above(&fds.stdout, 64).map_err(|e| format!("dup stdout: {e}"))?;
    let stderr = sys::dup_cloexec_above(&fds.stderr, 64).map_err(|e| format!("dup stderr: {e}"))?;
    drop(fds);
    nix::unistd::dup2(agent.as_raw_fd(), AGENT_FD).map_err(|e| format!("dup2 agent fd: {e}"))?;

    let mut container = ContainerBuilder::new(spec.id.clone(), SyscallType::default())
        .with_root_path(&plan.layout.containers)
        .and_then(|b| b.validate_id())
        .map_err(|e| chain(&e))?
        .with_preserved_fds(1)
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .with_executor(AgentExecutor)
        .as_init(&plan.layout.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| chain(&e))?;
    let pid = container
        .pid()
        .ok_or_else(|| "libcontainer created no PID 1".to_owned())?
        .as_raw();
    if let Err(e) = loopback_up(pid, plan.unprivileged) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        return Err(e);
    }
    container.start().map_err(|e| chain(&e))?;
    Ok(pid)
}

/// A private mount namespace for the launcher, so the overlay root (and anything libcontainer
/// might leak) never reaches the host's mount table.
fn private_mounts(spec: &SandboxSpec, layout: &Layout) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make / rslave: {e}"))?;
    if let Root::Overlay { lower, upper, work } = &spec.root {
        let options = overlay_options(lower, upper, work);
        mount(
            Some("overlay"),
            &layout.rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| {
            format!(
                "mount overlay ({options}) at {}: {e}",
                layout.rootfs.display()
            )
        })?;
    }
    Ok(())
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

/// Sets `lo` up in PID 1's network namespace from a throwaway child of the launcher, which may
/// change namespaces freely (it is single-threaded and exits right after).
fn loopback_up(pid: i32, unprivileged: bool) -> Result<(), String> {
    let open = |ns: &str| {
        File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|e| format!("open {ns} namespace: {e}"))
    };
    let user = if unprivileged {
        Some(open("user")?)
    } else {
        None
    };
    let net = open("net")?;
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let result = (|| -> Result<(), String> {
                if let Some(user) = &user {
                    setns(user, CloneFlags::CLONE_NEWUSER).map_err(|e| e.to_string())?;
                }
                setns(&net, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
                sys::loopback_up().map_err(|e| e.to_string())
            })();
            sys::exit_now(if result.is_ok() { 0 } else { 1 });
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!("bringing lo up failed ({other:?})")),
        },
    }
}

/// Runs the agent binary at its fixed path with the spec's argv (so `argv[0]` may differ from
/// the path) and exactly the spec's environment. Unlike libcontainer's default executor it
/// never touches `std::env`, whose lock a caller thread may have held at the launcher's fork.
#[derive(Clone)]
struct AgentExecutor;

impl Executor for AgentExecutor {
    fn exec(&self, oci: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        let args = oci
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .ok_or(ExecutorError::InvalidArg)?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        let env: Vec<CString> = oci
            .process()
            .as_ref()
            .and_then(|p| p.env().as_ref())
            .into_iter()
            .flatten()
            .map(|e| CString::new(e.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        let path = CString::new(AGENT_GUEST_PATH).map_err(|_| ExecutorError::InvalidArg)?;
        let err = match nix::unistd::execve(&path, &argv, &env) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Err(ExecutorError::Execution(
            format!("execv {AGENT_GUEST_PATH}: {err}").into(),
        ))
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        Ok(())
    }

    fn validate(
        &self,
        oci: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), ExecutorValidationError> {
        let has_args = oci
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .is_some_and(|a| !a.is_empty());
        if has_args {
            Ok(())
        } else {
            Err(ExecutorValidationError::ArgValidationError(
                "PID 1 needs an argv".into(),
            ))
        }
    }
}

/// An error and all its sources on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
