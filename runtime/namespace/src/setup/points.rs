//! Mount points inside the new root, by handle: created and opened component by component
//! without following a symbolic link, then named to `mount(2)` through the handle.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

use crate::sys;

/// `target` (absolute) inside the new root `root`, created if missing (directories, and an
/// empty file as the last component when `!is_dir`), every component checked not to be a
/// symbolic link. Returns an `O_PATH` handle on the mount point.
pub(super) fn mount_point(root: &OwnedFd, target: &Path, is_dir: bool) -> Result<OwnedFd, String> {
    let components: Vec<&std::ffi::OsStr> = target
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut current = sys::openat2(root, c".", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("open the new root: {e}"))?;
    for (index, name) in components.iter().enumerate() {
        let last = index + 1 == components.len();
        let c_name = CString::new(name.as_bytes())
            .map_err(|_| format!("NUL byte in {}", target.display()))?;
        let make_dir = !last || is_dir;
        let created = if make_dir {
            nix::sys::stat::mkdirat(
                Some(current.as_raw_fd()),
                c_name.as_c_str(),
                Mode::from_bits_truncate(0o755),
            )
        } else {
            nix::sys::stat::mknodat(
                Some(current.as_raw_fd()),
                c_name.as_c_str(),
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o644),
                0,
            )
        };
        match created {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("create {}: {e}", target.display())),
        }
        let flags = if make_dir {
            libc::O_PATH | libc::O_DIRECTORY
        } else {
            libc::O_PATH
        };
        current = sys::openat2(
            &current,
            &c_name,
            flags | libc::O_NOFOLLOW,
            sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_BENEATH,
        )
        .map_err(|e| {
            let is_link = nix::sys::stat::fstatat(
                Some(current.as_raw_fd()),
                c_name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            });
            let name = name.to_string_lossy();
            if is_link {
                format!(
                    "mount point {}: {name} is a symbolic link (refused: it could lead out of \
                     the sandbox)",
                    target.display()
                )
            } else if e.raw_os_error() == Some(libc::ENOTDIR) {
                format!(
                    "mount point {}: {name} is not a directory",
                    target.display()
                )
            } else {
                format!("open mount point {}: {e}", target.display())
            }
        })?;
    }
    Ok(current)
}

/// A path naming what the `O_PATH` handle `fd` refers to, for `mount(2)`: the magic link in
/// the sandbox's `/proc` (mounted first), so nothing is resolved by name again.
pub(super) fn through_fd(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Runs `make` with the directory `dir` (an `O_PATH` handle) as the working directory, then
/// goes back to `/`.
pub(super) fn in_dir<T>(dir: &OwnedFd, make: impl FnOnce() -> nix::Result<T>) -> nix::Result<T> {
    nix::unistd::fchdir(dir.as_raw_fd())?;
    let made = make();
    nix::unistd::chdir("/")?;
    made
}
