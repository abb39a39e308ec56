//! Starting a supervisor process with its configuration on an inherited fd.
//!
//! The configuration (which holds `-e` values) travels on fd 3 of the child, never in argv or
//! the environment: a memfd written before the spawn, or, for a *warm* supervisor spawned
//! ahead of time (`--warm`), one end of a socketpair msbd writes the configuration into when it
//! hands the supervisor a sandbox. argv carries only what `ps` may show (name, id, cpus,
//! memory, log level; `--warm` for one still waiting).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::config::SupervisorConfig;

/// The fd number the supervisor reads its configuration from.
pub const CONFIG_FD: i32 = 3;

/// Spawns `msb-supervisor ...` (`exe`) in its own process group, with stdout and stderr to `log`.
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
    let source_fd = file.as_raw_fd();

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
        .stderr(log.try_clone()?)
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and calls only dup2, which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(source_fd, CONFIG_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn();
    drop(file);
    child
}

/// Spawns `msb-supervisor --warm` (`exe`) in its own process group, with stdout and stderr to
/// `log` until it is handed a sandbox. Returns the child and msbd's end of its fd 3.
pub fn spawn_warm_supervisor(
    exe: &Path,
    log_level: &str,
    log: &File,
) -> std::io::Result<(Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .args(["--warm", "--log-level", log_level])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0);
    // SAFETY: as in `spawn_supervisor`: only dup2 between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(theirs_fd, CONFIG_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop(theirs);
    Ok((child, ours))
}

/// In msbd: hands a warm supervisor its sandbox (the whole configuration, then end-of-file).
pub fn hand_over(control: &mut UnixStream, config: &SupervisorConfig) -> std::io::Result<()> {
    control.write_all(&serde_json::to_vec(config).expect("config serialises"))?;
    control.shutdown(std::net::Shutdown::Write)
}

/// In the supervisor: reads the configuration from [`CONFIG_FD`] until end-of-file and closes
/// it. `None` when it ends without one (msbd let a warm supervisor go).
pub fn read_supervisor_config() -> std::io::Result<Option<SupervisorConfig>> {
    // SAFETY: fd 3 was set up by msbd for this process and nothing else in it uses fd 3.
    let mut file = unsafe { File::from_raw_fd(CONFIG_FD) };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
