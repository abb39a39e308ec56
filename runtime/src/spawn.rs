//! Starting a supervisor process with its configuration on an inherited fd.
//!
//! The configuration (which holds `-e` values) travels on an inherited fd, never in argv or the
//! environment (which only names the fd, `MSB_CONFIG_FD`): a memfd written before the spawn,
//! or, for a *warm* supervisor spawned ahead of time (`--warm`), one end of a socketpair msbd
//! writes the configuration into when it hands the supervisor a sandbox. argv carries only what `ps` may show (name, id, cpus,
//! memory, log level; `--warm` for one still waiting).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::config::SupervisorConfig;

/// The environment variable naming the fd the supervisor reads its configuration from.
pub const CONFIG_FD_ENV: &str = "MSB_CONFIG_FD";

/// Serialises spawns that pass an fd: the fd is inheritable only while its own spawn runs.
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Spawns `command` with `fd` inherited and named in [`CONFIG_FD_ENV`]. No `pre_exec` hook, so
/// std uses `posix_spawn` (a vfork: no copy of msbd's page tables, which cost milliseconds of
/// msbd's CPU and stalled its other threads' page faults while it ran). The fd is made
/// inheritable only under [`SPAWN_LOCK`], so no other spawn of this process can inherit it.
fn spawn_passing(command: &mut Command, fd: &impl AsRawFd) -> std::io::Result<Child> {
    spawn_passing_all(command, &[(CONFIG_FD_ENV, fd.as_raw_fd())])
}

/// [`spawn_passing`] of several fds, each named in its environment variable.
fn spawn_passing_all(
    command: &mut Command,
    fds: &[(&str, std::os::fd::RawFd)],
) -> std::io::Result<Child> {
    let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for (name, raw) in fds {
        command.env(name, raw.to_string());
    }
    let mut passed = Vec::new();
    let mut result = Ok(());
    for (_, raw) in fds {
        result = set_cloexec(*raw, false);
        if result.is_err() {
            break;
        }
        passed.push(*raw);
    }
    let child = result.and_then(|()| command.spawn());
    for raw in passed {
        set_cloexec(raw, true)?;
    }
    child
}

fn set_cloexec(fd: i32, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Spawns `msb-supervisor ...` (`exe`), with stdout and stderr to `log`. It starts a session of
/// its own first thing (`setsid`, which a process group leader could not do), so neither msbd's
/// death nor a signal to msbd's group reaches it.
pub fn spawn_supervisor(
    exe: &Path,
    config: &SupervisorConfig,
    log: &File,
) -> std::io::Result<Child> {
    let memfd = nix::sys::memfd::memfd_create(
        c"msb-supervisor-config",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut file = File::from(memfd);
    file.write_all(&serde_json::to_vec(config).expect("config serialises"))?;
    file.seek(SeekFrom::Start(0))?;

    let sandbox = &config.config;
    let mut command = Command::new(exe);
    command
        .args(["--name", &sandbox.name, "--id", &config.sandbox_id])
        .args([
            "--cpus",
            &sandbox.cpus.map_or("-".to_owned(), |c| c.to_string()),
        ])
        .args([
            "--memory-mib",
            &sandbox.memory_mib.map_or("-".to_owned(), |m| m.to_string()),
        ])
        .args(["--log-level", &config.log_level])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    spawn_passing(&mut command, &file)
}

/// Spawns `msb-supervisor --warm --socket SOCKET` (`exe`), with stdout and stderr to `log` until
/// it is handed a sandbox (and its own session from then on). It inherits the calling thread's
/// CPU priority (msbd spawns it from a thread at nice 10; it raises its own once handed a
/// sandbox). It binds its supervisor socket at `socket` first thing; msbd moves that file into
/// the sandbox's directory when it hands it one. With `handed_on` (and a template) it makes
/// its root disk of that disk, which it inherits ([`crate::hand_on`]). Returns the child and
/// msbd's end of its configuration socket.
pub fn spawn_warm_supervisor(
    exe: &Path,
    log_level: &str,
    log: &File,
    socket: &Path,
    disk_template: Option<&Path>,
    boot: Option<&crate::backend::BootPlan>,
    handed_on: Option<&crate::hand_on::HandedOnDisk>,
) -> std::io::Result<(Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut command = Command::new(exe);
    command
        .args(["--warm", "--log-level", log_level])
        .arg("--socket")
        .arg(socket);
    let mut fds = vec![(CONFIG_FD_ENV, theirs.as_raw_fd())];
    if let Some(template) = disk_template {
        command.arg("--disk-template").arg(template);
        if let Some(disk) = handed_on {
            command
                .arg("--handed-on-image")
                .arg(&disk.image)
                .args(["--handed-on-device", &disk.device]);
            fds.push((crate::hand_on::FD_ENV, disk.tree.as_raw_fd()));
        }
    }
    if let Some(plan) = boot {
        command
            .arg("--boot-rootfs")
            .arg(&plan.default_rootfs)
            .arg("--boot-agent")
            .arg(&plan.agent_binary);
        if !plan.spare {
            command.arg("--no-spare");
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    let child = spawn_passing_all(&mut command, &fds);
    drop(theirs);
    Ok((child?, ours))
}

pub use msb_namespace::{set_cpu_priority, CpuPriority};

/// [`set_cpu_priority`] for every thread of process `pid` (a thread's priority is its own).
pub fn set_process_cpu_priority(pid: i32, priority: CpuPriority) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return set_cpu_priority(pid, priority);
    };
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            set_cpu_priority(tid, priority);
        }
    }
}

/// Keeps the compiled seccomp filter under `home`'s cache (`$MSB_HOME/cache/seccomp`), where
/// the next supervisor of the same build finds it instead of compiling it again.
pub fn set_seccomp_cache(home: &Path) {
    msb_namespace::seccomp::set_cache_dir(home.join("cache").join("seccomp"));
}

/// Where the warm supervisor bound at `socket` makes its root disk (see
/// [`crate::backend::WarmDisk`]): the image msbd takes, and its mount point.
pub fn warm_disk_paths(socket: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        socket.with_extension("disk.img"),
        socket.with_extension("disk"),
    )
}

/// Where a warm supervisor with a socket at `socket` boots its sandbox ahead of time: the
/// directory while it boots, and its name once the sandbox runs (which msbd renames into place).
pub fn warm_boot_dirs(socket: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        socket.with_extension("booting"),
        socket.with_extension("boot"),
    )
}

/// In msbd: hands a warm supervisor its sandbox (the whole configuration, then end-of-file).
pub fn hand_over(control: &mut UnixStream, config: &SupervisorConfig) -> std::io::Result<()> {
    control.write_all(&serde_json::to_vec(config).expect("config serialises"))?;
    control.shutdown(std::net::Shutdown::Write)
}

/// In the supervisor: reads the configuration from the fd named in [`CONFIG_FD_ENV`] until
/// end-of-file and closes it. `None` when it ends without one (msbd let a warm supervisor go).
pub fn read_supervisor_config() -> std::io::Result<Option<SupervisorConfig>> {
    let fd: i32 = std::env::var(CONFIG_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{CONFIG_FD_ENV} does not name a configuration fd"),
            )
        })?;
    // The fd is not inherited any further (and is closed when `file` drops).
    set_cloexec(fd, true)?;
    // SAFETY: msbd passed this fd to this process for this purpose; nothing else in it uses it.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
