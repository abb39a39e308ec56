//! Starting a supervisor process with its configuration on an inherited fd.
//!
//! The configuration (which holds `-e` values) travels in a sealed-off memfd that the child
//! finds at fd 3; argv carries only what `ps` may show (name, id, cpus, memory, log level).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
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

/// In the supervisor: reads the configuration from [`CONFIG_FD`] and closes it.
pub fn read_supervisor_config() -> std::io::Result<SupervisorConfig> {
    let bytes = std::fs::read(format!("/proc/self/fd/{CONFIG_FD}"))?;
    let _ = nix::unistd::close(CONFIG_FD);
    serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
