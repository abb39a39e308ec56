//! An ext4 image mounted for as long as a sandbox runs: its writable root's disk
//! (`--root-disk`). The overlay's upper and work directories live on it, so what the workload
//! writes into its root is bounded by the image's size, and the image's `statfs` says how full
//! it is. Mounted in the caller's mount namespace (a root supervisor's own, see
//! `msb_runtime::mount_ns`), where the supervisor measures it; PID 1 mounts the same loop
//! device in the sandbox's.

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
    mount_image_with(image, target, true)
}

/// [`mount_image`], with the filesystem's cache flushes (`barrier`) on or off: off, nothing
/// it writes is forced to the host's disk (see [`PreparedDisk`]).
fn mount_image_with(image: &Path, target: &Path, barriers: bool) -> Result<String, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| format!("open the disk image {}: {e}", image.display()))?;
    let (_device, path) = sys::attach_loop(&file, false)
        .map_err(|e| format!("attach {} to a loop device: {e}", image.display()))?;
    let device = CString::new(path.clone()).map_err(|_| format!("NUL byte in {path}"))?;
    let tree = sys::mount_block_ext4(&device, false, barriers)
        .map_err(|e| format!("mount the ext4 image {} ({path}): {e}", image.display()))?;
    let point = open_dir(target).map_err(|e| format!("open the mount point {e}"))?;
    sys::move_mount(&tree, &point)
        .map_err(|e| format!("mount {} at {}: {e}", image.display(), target.display()))?;
    Ok(path)
}

/// Makes the filesystem mounted at `target` (a disk made by [`PreparedDisk::make`]) flush the
/// host's cache as a disk that outlives its run must: its journal's commits reach the host's
/// disk in order again.
pub fn make_durable(target: &Path) -> Result<(), String> {
    let mount = open_dir(target).map_err(|e| format!("open {e}"))?;
    sys::ext4_barriers(&mount, true)
        .map_err(|e| format!("turn on cache flushes for {}: {e}", target.display()))
}

/// The directory `path` as an `O_PATH` handle, reached without following any symbolic link.
/// An error names the path.
fn open_dir(path: &Path) -> Result<std::os::fd::OwnedFd, String> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL byte in the path", path.display()))?;
    sys::openat2(
        &AtCwd,
        &c_path,
        libc::O_PATH | libc::O_DIRECTORY,
        sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
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

/// A root disk made ahead of time by a warm supervisor: a fresh copy of the default size's
/// template, attached to a loop device and mounted (in the supervisor's own mount namespace)
/// with the overlay's `upper` and `work` directories made. Attaching a loop device freezes its
/// queue and mounting reads the image (2-15 ms together here): work a start no longer waits
/// for. msbd takes the image by renaming it to the sandbox's `root-disk.img`; the supervisor
/// then finds the same file there ([`PreparedDisk::adopt`]) and moves its mount into place.
///
/// It is mounted without cache flushes (`nobarrier`): most such disks serve one ephemeral run
/// and are deleted with it, so what their journal writes can stay in the host's page cache
/// and go with the file instead of being forced to the host's disk a dozen times per run. A
/// sandbox that keeps its disk turns them on when it takes it ([`make_durable`]).
#[derive(Debug)]
pub struct PreparedDisk {
    image: std::path::PathBuf,
    /// (device, inode) of the image, which a rename keeps.
    identity: (u64, u64),
    mount: std::path::PathBuf,
    device: String,
}

impl PreparedDisk {
    /// Copies `template` to `image` (under a temporary name until everything is ready, so that
    /// msbd never takes a half-made disk), attaches and mounts it at `mount` (made 0700), and
    /// makes `upper` (given to `owner`, the sandbox's root on the host) and `work` on it.
    pub fn make(
        template: &Path,
        image: &Path,
        mount: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<PreparedDisk, String> {
        use std::os::unix::fs::DirBuilderExt;
        let staging = image.with_extension("making");
        sparse_copy(template, &staging).map_err(|e| {
            let _ = std::fs::remove_file(&staging);
            format!("copy {} to {}: {e}", template.display(), staging.display())
        })?;
        let made = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(mount)
            .map_err(|e| format!("create {}: {e}", mount.display()))
            .and_then(|()| mount_image_with(&staging, mount, false));
        let device = made.inspect_err(|_| {
            let _ = std::fs::remove_file(&staging);
        })?;
        let made = DISK_DIRS
            .iter()
            .try_for_each(|name| std::fs::create_dir(mount.join(name)));
        Self::publish(made, &staging, image, mount, owner, device)
    }

    /// Finishes a disk mounted at `mount` with its image at `staging` (`ready`: its
    /// [`DISK_DIRS`] are there): `upper` given to `owner`, the image renamed to `image`, which
    /// publishes it. On error the disk is unmounted and its image deleted.
    fn publish(
        ready: std::io::Result<()>,
        staging: &Path,
        image: &Path,
        mount: &Path,
        owner: Option<(u32, u32)>,
        device: String,
    ) -> Result<PreparedDisk, String> {
        use std::os::unix::fs::MetadataExt;
        let published = ready
            .and_then(|()| match owner {
                Some((uid, gid)) => {
                    std::os::unix::fs::lchown(mount.join("upper"), Some(uid), Some(gid))
                }
                None => Ok(()),
            })
            // Its identity before the rename that publishes it: msbd may take it at once.
            .and_then(|()| std::fs::symlink_metadata(staging))
            .and_then(|meta| std::fs::rename(staging, image).map(|()| meta));
        match published {
            Ok(meta) => Ok(PreparedDisk {
                image: image.to_owned(),
                identity: (meta.dev(), meta.ino()),
                mount: mount.to_owned(),
                device,
            }),
            Err(e) => {
                let _ = unmount(mount);
                let _ = std::fs::remove_file(staging);
                Err(format!("prepare {}: {e}", mount.display()))
            }
        }
    }

    /// [`PreparedDisk::make`] from a disk an ephemeral run handed on instead of a copy of the
    /// template: its image moves to `image` (under the temporary name first), its filesystem is
    /// checked ([`HandedOnDisk`]: the loop device's, backed by that image, nothing in it but
    /// empty `upper` and `work`) and mounted at `mount` (made 0700) without cache flushes, as a
    /// fresh one, `upper` given to `owner`.
    /// On error nothing is left: the disk goes.
    pub fn from_handed_on(
        disk: HandedOnDisk,
        image: &Path,
        mount: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<PreparedDisk, String> {
        use std::os::unix::fs::DirBuilderExt;
        let staging = image.with_extension("making");
        std::fs::rename(&disk.image, &staging).map_err(|e| {
            let _ = std::fs::remove_file(&disk.image);
            format!(
                "rename {} to {}: {e}",
                disk.image.display(),
                staging.display()
            )
        })?;
        let mounted = disk
            .check(&staging)
            .and_then(|()| {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(mount)
                    .map_err(|e| format!("create {}: {e}", mount.display()))
            })
            .and_then(|()| {
                let point = open_dir(mount)?;
                sys::move_mount(&disk.tree, &point)
                    .map_err(|e| format!("mount it at {}: {e}", mount.display()))?;
                // Without cache flushes, as a fresh one (the run may have kept its disk's on).
                let point = open_dir(mount)?;
                sys::ext4_barriers(&point, false)
                    .map_err(|e| format!("turn off cache flushes for {}: {e}", mount.display()))
            });
        if let Err(e) = mounted {
            let _ = unmount(mount);
            let _ = std::fs::remove_file(&staging);
            let _ = std::fs::remove_dir(mount);
            return Err(e);
        }
        Self::publish(Ok(()), &staging, image, mount, owner, disk.device.clone()).inspect_err(
            |_| {
                let _ = std::fs::remove_dir(mount);
            },
        )
    }

    /// If `image` is this disk (msbd renamed it there), moves its mount to `target` (an
    /// existing directory) and returns the loop device's path; otherwise gives the disk back.
    pub fn adopt(self, image: &Path, target: &Path) -> Result<String, PreparedDisk> {
        if !self.is_at(image) {
            return Err(self);
        }
        match nix::mount::mount(
            Some(&self.mount),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_MOVE,
            None::<&str>,
        ) {
            Ok(()) => {
                // The emptied mount point goes on a thread: removing a directory a mount just
                // left waits for an RCU grace period (5 ms here), and this is a start's path.
                let mount = self.mount.clone();
                background("msb-disk-rmdir", move || {
                    let _ = std::fs::remove_dir(mount);
                });
                Ok(self.device.clone())
            }
            Err(e) => {
                tracing::warn!("moving the prepared root disk to {}: {e}", target.display());
                Err(self)
            }
        }
    }

    /// Lets an unused disk go: its image is deleted (unless msbd took it after all), its
    /// mount detached and its mount point removed. The detach waits for an RCU grace period:
    /// on a start's path, call this from a thread of its own ([`PreparedDisk::discard_later`]).
    pub fn discard(self) {
        if self.is_at(&self.image) {
            let _ = std::fs::remove_file(&self.image);
        }
        let _ = unmount(&self.mount);
        let _ = std::fs::remove_dir(&self.mount);
    }

    /// Whether the file at `path` (not followed) is this disk's image.
    fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity)
    }

    /// [`PreparedDisk::discard`] on a thread of its own ([`finish_background`] waits for it).
    pub fn discard_later(self) {
        background("msb-disk-discard", move || self.discard());
    }
}

/// ext4's `statfs` magic number.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;

/// The most inodes a run's root disk may hold and still be handed on (see [`HandedOnDisk`]):
/// emptying it then takes a fraction of a millisecond, not seconds.
const HAND_ON_MAX_INODES: u64 = 1024;

/// The most host disk space an image handed on may take: its journal's 64 MiB once written, and
/// some. What a run writes and deletes stays allocated in the image file (nothing punches
/// holes in it), so the disk of a run that wrote more goes, as before, rather than circulate.
const HAND_ON_MAX_ALLOCATED: u64 = 96 << 20;

/// The directories msb keeps at the root of a root disk: the overlay's upper and work
/// directories and its mount point in the sandbox's mount namespace ([`OVERLAY_MOUNT_POINT`]).
const DISK_DIRS: [&str; 3] = ["upper", "work", OVERLAY_MOUNT_POINT];

/// Where on a root disk the sandbox's overlay root is mounted (in its mount namespace only,
/// where the disk is mounted too): an empty directory of the disk rather than one of the host
/// under the sandbox's directory, which every run would make and delete (host inodes, whose
/// allocation scans past every inode deleted in the last seconds on an ext4 without a
/// journal).
pub const OVERLAY_MOUNT_POINT: &str = "rootfs";

/// The root disk of an ephemeral run that ended, handed on to the next sandbox instead of
/// being unmounted, detached from its loop device and deleted, while the next one's is
/// copied, attached and mounted (together 2-3 ms of CPU per run here): the filesystem, as a
/// detached mount kept alive by `tree`, on the loop device `device`, whose backing file is
/// `image` (moved out of the run's directory). The run's supervisor takes it
/// ([`HandedOnDisk::take`]) as its sandbox's PID 1 exits and empties it
/// ([`HandedOnDisk::empty`]) once the run's end is recorded; msbd keeps it for the next warm
/// supervisor, which mounts it in place of a fresh copy ([`PreparedDisk::from_handed_on`]),
/// checking it again. Dropping it lets the filesystem go (the loop device clears itself); its
/// image is then the dropper's to delete.
#[derive(Debug)]
pub struct HandedOnDisk {
    pub tree: std::os::fd::OwnedFd,
    pub device: String,
    pub image: std::path::PathBuf,
}

impl HandedOnDisk {
    /// Takes the disk mounted at `mount` (on `device`, its image at `image`) out of the run
    /// whose PID 1 just exited: a detached copy of its mount (the mount itself goes when its
    /// directory does, which msbd removes once the run's end is recorded), and its image
    /// renamed to `to`. `None` (and nothing changed) when its image takes too much of the
    /// host's disk or it cannot be taken.
    pub fn take(
        mount: &Path,
        device: &str,
        image: &Path,
        to: &Path,
    ) -> Result<HandedOnDisk, String> {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::symlink_metadata(image).map_err(|e| format!("{}: {e}", image.display()))?;
        let allocated = meta.blocks() * 512;
        if !meta.is_file() || allocated > HAND_ON_MAX_ALLOCATED {
            return Err(format!(
                "{} takes {allocated} bytes of the host's disk (at most {HAND_ON_MAX_ALLOCATED} are handed on)",
                image.display()
            ));
        }
        let root = open_dir(mount)?;
        let tree = sys::clone_tree(&root, false)
            .map_err(|e| format!("a detached copy of {}: {e}", mount.display()))?;
        std::fs::rename(image, to)
            .map_err(|e| format!("rename {} to {}: {e}", image.display(), to.display()))?;
        Ok(HandedOnDisk {
            tree,
            device: device.to_owned(),
            image: to.to_owned(),
        })
    }

    /// Empties the disk for another sandbox: the run's `upper` and `work` directories go (with
    /// the metadata of the root the run may have changed: its mode, owner, attributes) and
    /// fresh ones are made, `upper` given to `owner`. Refuses a disk that is not ext4, holds
    /// more than [`HAND_ON_MAX_INODES`] inodes, or has anything else at its root.
    pub fn empty(&self, owner: Option<(u32, u32)>) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        let stat = nix::sys::statfs::fstatfs(&self.tree).map_err(|e| format!("statfs: {e}"))?;
        if stat.filesystem_type().0 as i64 != EXT4_SUPER_MAGIC {
            return Err("not an ext4 filesystem".into());
        }
        let used = stat.files().saturating_sub(stat.files_free());
        if used > HAND_ON_MAX_INODES {
            return Err(format!(
                "{used} inodes in use (at most {HAND_ON_MAX_INODES} are emptied)"
            ));
        }
        let root = self.root_path();
        for name in DISK_DIRS {
            match std::fs::remove_dir_all(root.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("emptying {name}: {e}")),
            }
        }
        check_root_entries(&root, &[])?;
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o755);
        DISK_DIRS
            .iter()
            .try_for_each(|name| builder.create(root.join(name)))
            .and_then(|()| match owner {
                Some((uid, gid)) => {
                    std::os::unix::fs::lchown(root.join("upper"), Some(uid), Some(gid))
                }
                None => Ok(()),
            })
            .map_err(|e| format!("making {}: {e}", DISK_DIRS.join(", ")))
    }

    /// The disk's root, as a path through this process's handle on it.
    fn root_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.tree.as_raw_fd()))
    }

    /// Whether this is the filesystem on `device`, backed by the file at `image`, with nothing
    /// at its root but empty `upper`, `work` and `rootfs` directories (and `lost+found`).
    fn check(&self, image: &Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let stat = nix::sys::statfs::fstatfs(&self.tree).map_err(|e| format!("statfs: {e}"))?;
        if stat.filesystem_type().0 as i64 != EXT4_SUPER_MAGIC {
            return Err("not an ext4 filesystem".into());
        }
        let device_ok = self
            .device
            .strip_prefix("/dev/loop")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !device_ok {
            return Err(format!("{:?} is not a loop device", self.device));
        }
        let device =
            std::fs::metadata(&self.device).map_err(|e| format!("{}: {e}", self.device))?;
        let tree =
            nix::sys::stat::fstat(self.tree.as_raw_fd()).map_err(|e| format!("fstat: {e}"))?;
        if device.rdev() != tree.st_dev {
            return Err(format!("the filesystem is not the one on {}", self.device));
        }
        let image =
            std::fs::symlink_metadata(image).map_err(|e| format!("{}: {e}", image.display()))?;
        let backing = sys::loop_backing(&self.device)
            .map_err(|e| format!("the backing file of {}: {e}", self.device))?;
        if !image.is_file() || backing != (image.dev(), image.ino()) {
            return Err(format!("{} is not backed by the image", self.device));
        }
        let root = self.root_path();
        check_root_entries(&root, &DISK_DIRS)?;
        for name in DISK_DIRS {
            let mut entries =
                std::fs::read_dir(root.join(name)).map_err(|e| format!("reading {name}: {e}"))?;
            if entries.next().is_some() {
                return Err(format!("{name} is not empty"));
            }
        }
        Ok(())
    }
}

/// Fails unless every entry of the disk's root directory `root` is `mkfs`'s own `lost+found`
/// or one of `allowed`.
fn check_root_entries(root: &Path, allowed: &[&str]) -> Result<(), String> {
    for entry in std::fs::read_dir(root).map_err(|e| format!("reading the disk's root: {e}"))? {
        let name = entry
            .map_err(|e| format!("reading the disk's root: {e}"))?
            .file_name();
        if name != "lost+found" && !allowed.iter().any(|a| name == std::ffi::OsStr::new(a)) {
            return Err(format!("the disk's root holds {name:?}"));
        }
    }
    Ok(())
}

/// Disk work left to threads of their own (a disk being made ahead of time, one let go), which
/// the process waits for before it exits ([`finish_background`]): otherwise an exit in the
/// middle leaves a half-made image or a mount point behind in the warm directory.
static BACKGROUND: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `work` on a thread named `name` that [`finish_background`] waits for (inline if no
/// thread can be made).
pub fn background(name: &str, work: impl FnOnce() + Send + 'static) {
    let work = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
    let for_thread = work.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let work = for_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(work) = work {
                work();
            }
        });
    match spawned {
        Ok(handle) => BACKGROUND
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle),
        Err(_) => {
            let work = work.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(work) = work {
                work();
            }
        }
    }
}

/// Waits for the work given to [`background`]; call before the process exits.
pub fn finish_background() {
    let handles = std::mem::take(&mut *BACKGROUND.lock().unwrap_or_else(|p| p.into_inner()));
    for handle in handles {
        let _ = handle.join();
    }
}

/// The template of ext4 images of `size_bytes` in `templates`, made (by `mkfs.ext4`) if there
/// is none yet.
pub fn template(templates: &Path, size_bytes: u64) -> Result<std::path::PathBuf, String> {
    // `v2`: made without the reserved blocks of online resizing (earlier templates, named
    // `ext4-<size>.img`, had them, 2 MiB of the 2.2 copied per disk).
    let template = templates.join(format!("ext4-v2-{size_bytes}.img"));
    if !template.exists() {
        let _ = std::fs::remove_file(templates.join(format!("ext4-{size_bytes}.img")));
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(templates)
            .map_err(|e| format!("create {}: {e}", templates.display()))?;
        // Made under a name of its own and renamed: two creates racing both make one, and
        // neither ever copies a half-made template.
        let staging = templates.join(format!(
            ".ext4-{size_bytes}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        make_image(&staging, size_bytes)
            .and_then(|()| {
                std::fs::rename(&staging, &template)
                    .map_err(|e| format!("rename {}: {e}", staging.display()))
            })
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&staging);
            })?;
    }
    Ok(template)
}

/// Makes `path` a fresh ext4 image of `size_bytes`, as [`make_image`] does, by copying the
/// allocated blocks of a template of that size kept in `templates` (made by `mkfs.ext4` the
/// first time a size is asked for). A sandbox's create makes one on the path of `msb run`, where
/// a copy of the template's 200 KiB takes a fraction of a millisecond against mkfs's 10-20.
///
/// The copies share the template's filesystem UUID; the kernel does not care (ext4 mounts of
/// loop devices are not matched by UUID) and nothing in msb looks them up by it.
pub fn make_image_from_template(
    templates: &Path,
    path: &Path,
    size_bytes: u64,
) -> Result<(), String> {
    let template = template(templates, size_bytes)?;
    sparse_copy(&template, path).map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("copy {} to {}: {e}", template.display(), path.display())
    })
}

/// Copies `from` to `to` (created 0600, or truncated) block for block where `from` has data,
/// leaving holes where it has holes.
fn sparse_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(from)?;
    let length = source.metadata()?.len() as i64;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(to)?;
    target.set_len(length as u64)?;
    let seek = |offset: i64, whence: nix::unistd::Whence| -> std::io::Result<Option<i64>> {
        match nix::unistd::lseek(source.as_raw_fd(), offset, whence) {
            Ok(at) => Ok(Some(at)),
            // No data at or after `offset`.
            Err(nix::errno::Errno::ENXIO) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < length {
        let Some(data) = seek(offset, nix::unistd::Whence::SeekData)? else {
            break;
        };
        let hole = seek(data, nix::unistd::Whence::SeekHole)?.unwrap_or(length);
        let mut at = data;
        while at < hole {
            use std::os::unix::fs::FileExt;
            let want = ((hole - at) as usize).min(buffer.len());
            // In the kernel when it can (no copy through this process); by hand when the file
            // systems cannot (another device on an old kernel, a file system without it).
            let (mut from, mut to) = (at, at);
            match sys::copy_file_range(&source, &mut from, &target, &mut to, want) {
                Ok(copied) if copied > 0 => {
                    at += copied as i64;
                    continue;
                }
                Ok(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the template shrank while being copied",
                    ))
                }
                Err(_) => {}
            }
            let read = source.read_at(&mut buffer[..want], at as u64)?;
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the template shrank while being copied",
                ));
            }
            target.write_all_at(&buffer[..read], at as u64)?;
            at += read as i64;
        }
        offset = hole;
    }
    Ok(())
}

struct AtCwd;

impl AsRawFd for AtCwd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        libc::AT_FDCWD
    }
}

/// Makes `path` a sparse ext4 image of `size_bytes` whose root directory belongs to 0:0
/// (`mkfs.ext4` from e2fsprogs; its inode tables are initialised lazily, so this takes
/// 10-20 ms and the host allocates about 200 KiB). A file already there is replaced.
pub fn make_image(path: &Path, size_bytes: u64) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    file.set_len(size_bytes)
        .map_err(|e| format!("size {}: {e}", path.display()))?;
    drop(file);
    let output = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            // No blocks reserved for growing the filesystem online (nothing grows a root
            // disk): for 4 GiB they are 2 of its 2.2 allocated MiB, which every copy of the
            // template would copy, and the loop device's attach flush to the host's disk.
            "-O",
            "^resize_inode",
            "-E",
            // Inode tables and the journal are left unwritten: the file is sparse, so what was
            // never written reads as zeros anyway; the host allocates 200 KiB, not the journal's 64.
            "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_a_template_are_the_image_mkfs_makes() {
        let dir = tempfile::tempdir().unwrap();
        let templates = dir.path().join("templates");
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        if make_image_from_template(&templates, &a, 64 << 20).is_err() {
            eprintln!("skipped: no mkfs.ext4");
            return;
        }
        make_image_from_template(&templates, &b, 64 << 20).unwrap();
        let template = std::fs::read(templates.join(format!("ext4-v2-{}.img", 64 << 20))).unwrap();
        for copy in [&a, &b] {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(copy).unwrap();
            assert_eq!(meta.len(), 64 << 20);
            assert_eq!(meta.mode() & 0o777, 0o600);
            // Sparse: no more blocks than the template's data (well under a MiB without the
            // blocks reserved for resizing), not its length.
            assert!(
                meta.blocks() * 512 < 1 << 20,
                "{} bytes",
                meta.blocks() * 512
            );
            assert!(std::fs::read(copy).unwrap() == template, "{copy:?} differs");
        }
        // The ext4 magic, where a superblock has it.
        assert_eq!(&template[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
    }
}
