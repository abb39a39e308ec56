//! The user namespace of a sandbox started by root, made on the host side before the launch.
//!
//! A forked helper unshares a user namespace and waits; the caller, still host root in the
//! host's pid namespace, writes the helper's uid and gid maps (`0 <host id> <count>`), which
//! only a process privileged in the parent namespace may do for a range, and keeps a handle on
//! the namespace (`/proc/<helper>/ns/user`). The helper then exits; the handle keeps the
//! namespace alive. PID 1 uses it for the idmapped mounts of the root and binds and joins it
//! (`setns`) as its last step before dropping capabilities, so that everything it set up
//! belongs to the host and the workload is the mapped, unprivileged host user.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use crate::error::NamespaceError;
use crate::{sys, IdMap};

/// The uid and gid map lines of `map` (pure).
pub(crate) fn map_lines(map: &IdMap) -> (String, String) {
    (
        format!("0 {} {}", map.host_uid, map.count),
        format!("0 {} {}", map.host_gid, map.count),
    )
}

/// A handle on a new user namespace mapped as `map`. The caller must be root.
pub(crate) fn create(map: &IdMap) -> Result<OwnedFd, NamespaceError> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NamespaceError::sys("pipe2", e));
    let (ready_read, ready_write) = pipe()?;
    let (done_read, done_write) = pipe()?;
    match sys::fork().map_err(|e| NamespaceError::sys("fork", e))? {
        ForkResult::Child => {
            // Async-signal-safe calls only: the caller may have other threads.
            drop(ready_read);
            drop(done_write);
            let byte: &[u8] = if unshare(CloneFlags::CLONE_NEWUSER).is_ok() {
                b"1"
            } else {
                b"0"
            };
            let _ = nix::unistd::write(&ready_write, byte);
            let mut wait = [0u8; 1];
            let _ = nix::unistd::read(done_read.as_raw_fd(), &mut wait);
            sys::exit_now(0);
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(done_read);
            let result = (|| {
                let mut ready = [0u8; 1];
                let n = nix::unistd::read(ready_read.as_raw_fd(), &mut ready)
                    .map_err(|e| NamespaceError::sys("reading the user namespace helper", e))?;
                if n != 1 || ready[0] != b'1' {
                    return Err(NamespaceError::sys(
                        "unshare a user namespace",
                        std::io::Error::other("the helper could not (user namespaces disabled?)"),
                    ));
                }
                let (uid_map, gid_map) = map_lines(map);
                for (file, line) in [("uid_map", uid_map), ("gid_map", gid_map)] {
                    let path = format!("/proc/{child}/{file}");
                    std::fs::write(&path, &line)
                        .map_err(|e| NamespaceError::io("write the id map", path, e))?;
                }
                let path = format!("/proc/{child}/ns/user");
                File::open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| NamespaceError::io("open", path, e))
            })();
            drop(done_write);
            let _ = waitpid(child, None);
            result
        }
    }
}
