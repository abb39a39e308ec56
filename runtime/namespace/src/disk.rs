//! An ext4 image mounted on the host for as long as a sandbox runs: its writable root's disk
//! (`--root-disk`). The overlay's upper and work directories live on it, so what the workload
//! writes into its root is bounded by the image's size, and the image's `statfs` says how full
//! it is. Mounted in the caller's (the supervisor's, the host's) mount namespace because the
//! sandbox's own is copied from it at launch, and because the supervisor measures it there.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::sys;

/// Attaches `image` (opened without following a symbolic link) to a loop device and mounts it
/// at the existing directory `target` (`nosuid,nodev`). The loop device goes by itself when
/// the mount does (autoclear). Returns the loop device's path.
pub fn mount_image(image: &Path, target: &Path) -> Result<String, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| format!("open the disk image {}: {e}", image.display()))?;
    let (_device, path) = sys::attach_loop(&file, false)
        .map_err(|e| format!("attach {} to a loop device: {e}", image.display()))?;
    let device = CString::new(path.clone()).map_err(|_| format!("NUL byte in {path}"))?;
    let tree = sys::mount_block_ext4(&device, false)
        .map_err(|e| format!("mount the ext4 image {} ({path}): {e}", image.display()))?;
    let target_path = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| format!("NUL byte in {}", target.display()))?;
    let point = sys::openat2(
        &AtCwd,
        &target_path,
        libc::O_PATH | libc::O_DIRECTORY,
        sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| format!("open the mount point {}: {e}", target.display()))?;
    sys::move_mount(&tree, &point)
        .map_err(|e| format!("mount {} at {}: {e}", image.display(), target.display()))?;
    Ok(path)
}

/// Detaches whatever is mounted at `target` (lazily: a process still inside keeps it until it
/// leaves). Nothing mounted there is not an error.
pub fn unmount(target: &Path) -> Result<(), String> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("unmount {}: {e}", target.display())),
    }
}

/// Whether something is mounted at `target` (its device differs from its parent's).
pub fn is_mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (
        std::fs::symlink_metadata(target),
        target.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    here.is_dir() && here.dev() != parent.dev()
}

struct AtCwd;

impl AsRawFd for AtCwd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        libc::AT_FDCWD
    }
}

/// Makes `path` a sparse ext4 image of `size_bytes` whose root directory belongs to 0:0
/// (`mkfs.ext4` from e2fsprogs; its inode tables are initialised lazily, so this takes
/// milliseconds and the host allocates a few MiB). A file already there is replaced.
pub fn make_image(path: &Path, size_bytes: u64) -> Result<(), String> {
    let file =
        std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    file.set_len(size_bytes)
        .map_err(|e| format!("size {}: {e}", path.display()))?;
    drop(file);
    let output = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "root_owner=0:0,lazy_itable_init=1",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("mkfs.ext4: {e} (install e2fsprogs)"))?;
    if !output.status.success() {
        return Err(format!(
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}
