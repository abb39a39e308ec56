//! `PassthroughFs`: serves one host directory, transport-independent.
//!
//! # How it touches the host
//!
//! - The served directory is opened once, `O_PATH|O_DIRECTORY|O_NOFOLLOW`, with no symbolic
//!   link followed in any component ([`PassthroughFs::new`]).
//! - Every inode the guest knows is an entry of the inode table: an `O_PATH|O_NOFOLLOW`
//!   descriptor on the host object, keyed by host `(st_dev, st_ino)` so that hard links share
//!   one inode. A lookup is `openat(parent_fd, name, O_PATH|O_NOFOLLOW)` with a single-component
//!   name (`/` refused with `EACCES`, `.` and `..` with `ENOENT`): the server never resolves a
//!   path string and never follows a symbolic link on the host; symlinks are returned to the
//!   guest kernel (`readlink`), which resolves them on its side of the mount.
//! - An `O_PATH` handle becomes a real descriptor by re-opening `/proc/self/fd/N`
//!   ([`PassthroughFs::reopen`]); `*at` calls with `AT_EMPTY_PATH` are used where the kernel
//!   accepts an `O_PATH` descriptor.
//! - Each operation runs with the caller's uid and gid as the thread's filesystem ids
//!   (`setfsuid`/`setfsgid`), so the host kernel checks permissions and owns new files as it
//!   would for that user; the server adds no check of its own (mount without
//!   `default_permissions`). Supplementary groups are not carried over.
//!
//! # Where things are
//!
//! - this file: types, the inode and handle tables, `lookup`, `forget`, attributes, `statfs`;
//! - [`names`](self::names): operations on directory entries (mkdir, unlink, rename, ...);
//! - [`data`](self::data): open files and directories (open, read, write, readdir, ...);
//! - [`walk`](self::walk): directory records and the quota's tree walk.

mod data;
mod ids;
mod names;
mod walk;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use data::DirEntry;
pub use ids::{IdShift, OVERFLOW_ID};

use crate::counters::{Counters, CountersSnapshot, Op};
use crate::quota::{statfs_blocks, DirQuota, QuotaState, STATFS_BLOCK_BYTES};
use crate::sys;

/// The inode number of the served directory itself.
pub const ROOT_INODE: u64 = 1;

/// How a [`PassthroughFs`] behaves.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Bytes of growth the guest may add (`None`: unbounded, nothing counted).
    pub quota_bytes: Option<u64>,
    /// How long the guest kernel may cache a name → inode answer.
    pub entry_timeout: Duration,
    /// How long the guest kernel may cache attributes.
    pub attr_timeout: Duration,
    /// Callers whose ids are a user namespace's mapped host ids (a sandbox's, with the mount
    /// made in the host's namespace): the server acts with the ids the caller has inside, as
    /// an idmapped bind mount would, and shows on-disk owners as their mapped ids.
    pub ids: Option<IdShift>,
    /// Callers acting as themselves on disk (`ids` unset) whose ids are a user namespace's
    /// mapped host ids: the namespace's root (host uid `uid_base`) may give a file it can
    /// reach to any id of the range, as `CAP_CHOWN` in its namespace allows over files whose
    /// owners the namespace maps. The server makes that `chown` with its own privileges.
    pub owners: Option<IdShift>,
    /// Directories the server never resolves, by (device, inode): msb's own home, which a
    /// directory mount of one of its ancestors (`-v /:/host`) would otherwise put in the
    /// sandbox's reach (the catalog with `-e` values, every sandbox's root image, the kept
    /// seccomp filter). A lookup that reaches one fails with `EACCES`, so nothing below it is
    /// reachable either.
    pub hidden: Vec<(u64, u64)>,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            quota_bytes: None,
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            ids: None,
            owners: None,
            hidden: Vec::new(),
        }
    }
}

/// Why a server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path to serve has a NUL byte or a `..` component.
    #[error("{path}: not a usable directory path (NUL byte or `..` component)")]
    BadPath { path: PathBuf },
    /// A component of the path is a symbolic link, which msb does not follow.
    #[error("{path}: a component is a symbolic link, which msb does not follow (give the resolved path)")]
    Symlink { path: PathBuf },
    /// The directory could not be opened.
    #[error("open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A quota of zero bytes was asked for.
    #[error("a quota must be at least 1 byte")]
    ZeroQuota,
}

/// Who asks: the caller's ids as the transport reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A name resolved to an inode, with its attributes and how long the guest may cache them.
#[derive(Clone, Copy)]
pub struct Entry {
    /// The server's inode number (stable for the life of the server; never reused).
    pub inode: u64,
    /// Always 0: inode numbers are never reused.
    pub generation: u64,
    /// Host attributes (`st_ino` is the host's).
    pub attr: libc::stat64,
    pub entry_timeout: Duration,
    pub attr_timeout: Duration,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("inode", &self.inode)
            .field("mode", &format_args!("{:o}", self.attr.st_mode))
            .field("size", &self.attr.st_size)
            .finish()
    }
}

/// A time to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// The host's current time.
    Now,
    /// Seconds and nanoseconds since the epoch.
    At { seconds: i64, nanoseconds: u32 },
}

/// The attribute changes of a `setattr`; `None` leaves one alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    /// An open handle on the file, when the guest changed it through one (`ftruncate`).
    pub handle: Option<u64>,
}

/// `statfs` of the served directory (synthetic on a quota'd mount).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Block size, in bytes (also the fragment size).
    pub block_bytes: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_available: u64,
    /// Total inodes (the host's).
    pub files: u64,
    /// Free inodes (the host's).
    pub files_free: u64,
    /// Longest name, in bytes.
    pub name_max: u64,
}

pub(crate) struct InodeData {
    pub(crate) fd: OwnedFd,
    key: (u64, u64),
    /// `S_IFMT` bits of the host object (a type never changes).
    pub(crate) kind: u32,
    /// Lookups the guest kernel holds; changed only under the table's write lock.
    lookups: AtomicU64,
}

#[derive(Default)]
struct InodeTable {
    by_id: HashMap<u64, Arc<InodeData>>,
    by_key: HashMap<(u64, u64), u64>,
}

pub(crate) struct Handle {
    pub(crate) inode: u64,
    pub(crate) file: File,
    /// Opened `O_APPEND`: writes go to the end whatever the offset.
    pub(crate) append: bool,
    /// Serialises `lseek` + `getdents64` on a directory handle.
    pub(crate) dir_position: Mutex<()>,
}

/// A FUSE-protocol-agnostic passthrough file server over one host directory, with a write
/// quota and counters. Every method takes `&self`; share it between worker threads with `Arc`.
pub struct PassthroughFs {
    root_path: PathBuf,
    proc_fd_dir: OwnedFd,
    inodes: RwLock<InodeTable>,
    next_inode: AtomicU64,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    next_handle: AtomicU64,
    config: FsConfig,
    /// The mount the served directory is on: the server never crosses into another one (a
    /// filesystem mounted below the directory is out of reach, as `find -xdev` would have it).
    root_mount: Option<u64>,
    pub(crate) quota: DirQuota,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for PassthroughFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassthroughFs")
            .field("root", &self.root_path)
            .field("quota", &self.quota.state())
            .finish()
    }
}

pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A name the guest sent must be one component: `/` is refused with `EACCES`, `.` and `..`
/// (never sent by a kernel for these operations) with `ENOENT`.
pub(crate) fn check_name(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return Err(errno(libc::EACCES));
    }
    if bytes == b"." || bytes == b".." {
        return Err(errno(libc::ENOENT));
    }
    Ok(())
}

/// While alive, the thread's filesystem ids are the caller's (root callers change nothing).
pub(crate) struct AsCaller {
    previous: Option<(u32, u32)>,
}

impl AsCaller {
    pub(crate) fn new(ctx: &Context) -> Self {
        if ctx.uid == 0 && ctx.gid == 0 {
            return AsCaller { previous: None };
        }
        AsCaller {
            previous: Some(sys::set_fs_ids(ctx.uid, ctx.gid)),
        }
    }

    fn root() -> Self {
        AsCaller {
            previous: Some(sys::set_fs_ids(0, 0)),
        }
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.previous {
            let _ = sys::set_fs_ids(uid, gid);
        }
    }
}

thread_local! {
    static ZERO_UMASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the calling thread a private zero umask once (creation modes arrive already masked
/// by the guest kernel).
pub(crate) fn zero_umask() {
    ZERO_UMASK.with(|done| {
        if !done.get() {
            if let Err(e) = sys::private_zero_umask() {
                tracing::warn!("msb-fs: cannot give a worker thread its own umask: {e}");
            }
            done.set(true);
        }
    })
}

impl PassthroughFs {
    /// Serves `root`, which must be an existing directory reachable without following a
    /// symbolic link and without `..`.
    pub fn new(root: &Path, config: FsConfig) -> Result<Self, FsError> {
        if config.quota_bytes == Some(0) {
            return Err(FsError::ZeroQuota);
        }
        let bad = || FsError::BadPath {
            path: root.to_path_buf(),
        };
        if root
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(bad());
        }
        let c_root = CString::new(root.as_os_str().as_encoded_bytes()).map_err(|_| bad())?;
        let fd = sys::open_root(&c_root).map_err(|source| {
            // A symlink as the last component fails O_DIRECTORY|O_NOFOLLOW with ENOTDIR.
            let last_is_link = std::fs::symlink_metadata(root).is_ok_and(|m| m.is_symlink());
            match source.raw_os_error() {
                Some(libc::ELOOP) => FsError::Symlink {
                    path: root.to_path_buf(),
                },
                Some(libc::ENOTDIR) if last_is_link => FsError::Symlink {
                    path: root.to_path_buf(),
                },
                _ => FsError::Open {
                    path: root.to_path_buf(),
                    source,
                },
            }
        })?;
        let open_err = |source| FsError::Open {
            path: root.to_path_buf(),
            source,
        };
        let st = sys::fstat(fd.as_fd()).map_err(open_err)?;
        let proc_fd_dir = File::open("/proc/self/fd")
            .map(OwnedFd::from)
            .map_err(|source| FsError::Open {
                path: PathBuf::from("/proc/self/fd"),
                source,
            })?;
        let key = (st.st_dev, st.st_ino);
        let root_mount = sys::mount_id(fd.as_fd()).map_err(open_err)?;
        let root_data = Arc::new(InodeData {
            fd,
            key,
            kind: libc::S_IFDIR,
            // The root is never forgotten.
            lookups: AtomicU64::new(u64::MAX / 2),
        });
        let mut table = InodeTable::default();
        table.by_id.insert(ROOT_INODE, root_data);
        table.by_key.insert(key, ROOT_INODE);
        Ok(PassthroughFs {
            root_path: root.to_path_buf(),
            proc_fd_dir,
            inodes: RwLock::new(table),
            next_inode: AtomicU64::new(ROOT_INODE + 1),
            handles: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            root_mount,
            quota: DirQuota::new(config.quota_bytes),
            counters: Counters::default(),
            config,
        })
    }

    /// The host directory served.
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Every counter and the quota ledger, now.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot(self.quota.state())
    }

    /// The quota ledger's state (to save with a snapshot, or for metrics).
    pub fn quota_state(&self) -> QuotaState {
        self.quota.state()
    }

    /// How many inodes the guest holds (the root included).
    pub fn inode_count(&self) -> usize {
        self.inodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .len()
    }

    pub(crate) fn inode(&self, inode: u64) -> io::Result<Arc<InodeData>> {
        self.inodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(&inode)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    pub(crate) fn handle(&self, handle: u64) -> io::Result<Arc<Handle>> {
        self.handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&handle)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    pub(crate) fn add_handle(&self, handle: Handle) -> u64 {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(handle));
        id
    }

    pub(crate) fn remove_handle(&self, handle: u64) -> io::Result<()> {
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle)
            .map(drop)
            .ok_or_else(|| errno(libc::EBADF))
    }

    /// A real descriptor on what the `O_PATH` descriptor `fd` refers to, through
    /// `/proc/self/fd/N` (creation and symlink-following flags stripped).
    pub(crate) fn reopen(&self, fd: &OwnedFd, flags: i32) -> io::Result<File> {
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW);
        let name = sys::fd_name(fd.as_raw_fd());
        sys::openat(self.proc_fd_dir.as_fd(), &name, flags, 0).map(File::from)
    }

    pub(crate) fn proc_dir(&self) -> std::os::fd::BorrowedFd<'_> {
        self.proc_fd_dir.as_fd()
    }

    /// Registers (or finds) the host object `fd` with one more lookup and returns its entry.
    /// An object on another mount than the served directory (a mount point below it) is
    /// refused with `EACCES`: the server would otherwise act there with its own privileges
    /// (the host's `/proc` under `-v /:/host`, for one).
    pub(crate) fn register(&self, fd: OwnedFd) -> io::Result<Entry> {
        let st = sys::fstat(fd.as_fd())?;
        if self.root_mount.is_some() && sys::mount_id(fd.as_fd())? != self.root_mount {
            return Err(errno(libc::EACCES));
        }
        let key = (st.st_dev, st.st_ino);
        if self.config.hidden.contains(&key) {
            return Err(errno(libc::EACCES));
        }
        let mut table = self.inodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = table.by_key.get(&key).copied() {
            if let Some(data) = table.by_id.get(&id) {
                data.lookups.fetch_add(1, Ordering::Relaxed);
                return Ok(self.entry(id, st));
            }
        }
        let id = self.next_inode.fetch_add(1, Ordering::Relaxed);
        table.by_id.insert(
            id,
            Arc::new(InodeData {
                fd,
                key,
                kind: st.st_mode & libc::S_IFMT,
                lookups: AtomicU64::new(1),
            }),
        );
        table.by_key.insert(key, id);
        Ok(self.entry(id, st))
    }

    /// The caller as the server acts for it: its ids inside the sandbox when the server has an
    /// [`IdShift`], else as reported.
    pub fn caller(&self, uid: u32, gid: u32, pid: u32) -> Context {
        match self.config.ids {
            // The host's root: msb's own set-up (PID 1 making mount points in a served root
            // before it joins the sandbox's user namespace). No sandbox process has host id
            // 0, so the workload never acts as it.
            Some(_) if uid == 0 && gid == 0 => Context { uid, gid, pid },
            Some(ids) => Context {
                uid: ids.uid_to_disk(uid),
                gid: ids.gid_to_disk(gid),
                pid,
            },
            None => Context { uid, gid, pid },
        }
    }

    /// Host attributes as the caller's kernel is to see them (owners through the id shift).
    pub(crate) fn shown(&self, mut st: libc::stat64) -> libc::stat64 {
        if let Some(ids) = self.config.ids {
            st.st_uid = ids.uid_to_host(st.st_uid);
            st.st_gid = ids.gid_to_host(st.st_gid);
        }
        st
    }

    pub(crate) fn entry(&self, inode: u64, attr: libc::stat64) -> Entry {
        Entry {
            inode,
            generation: 0,
            attr: self.shown(attr),
            entry_timeout: self.config.entry_timeout,
            attr_timeout: self.config.attr_timeout,
        }
    }

    /// `name` in directory `parent`, opened `O_PATH|O_NOFOLLOW` and registered.
    pub(crate) fn lookup_in(&self, parent: &InodeData, name: &CStr) -> io::Result<Entry> {
        check_name(name)?;
        let fd = sys::openat(parent.fd.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        self.register(fd)
    }

    /// The tree walk the quota uses, as root whoever the caller is.
    pub(crate) fn count_tree(&self) -> io::Result<u64> {
        let _root = AsCaller::root();
        let root = self.inode(ROOT_INODE)?;
        walk::subtree_bytes(root.fd.as_fd())
    }

    /// Measures the quota's baseline if this is the first write-intent operation.
    pub(crate) fn ensure_baseline(&self) -> io::Result<()> {
        if self.quota.is_limited() {
            self.quota.ensure_baseline(|| self.count_tree())?;
        }
        Ok(())
    }

    /// Counts an `ENOSPC` from the quota and passes the error on.
    pub(crate) fn rejected(&self, e: io::Error) -> io::Error {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            self.counters.add_enospc();
            tracing::debug!(root = %self.root_path.display(), "msb-fs: quota refused a write");
        }
        e
    }

    /// Resolves `name` in `parent`: one more lookup on the inode returned.
    pub fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let timer = self.counters.start(Op::Lookup);
        let result = (|| {
            let parent = self.inode(parent)?;
            let _as = AsCaller::new(ctx);
            self.lookup_in(&parent, name)
        })();
        timer.done(result)
    }

    /// The guest kernel dropped `count` lookups of `inode`; at zero its host descriptor closes.
    pub fn forget(&self, inode: u64, count: u64) {
        let timer = self.counters.start(Op::Forget);
        self.forget_one(inode, count);
        let _ = timer.done(Ok(()));
    }

    pub(crate) fn forget_one(&self, inode: u64, count: u64) {
        if inode == ROOT_INODE {
            return;
        }
        let mut table = self.inodes.write().unwrap_or_else(|p| p.into_inner());
        let Some(data) = table.by_id.get(&inode) else {
            return;
        };
        let left = data.lookups.load(Ordering::Relaxed).saturating_sub(count);
        data.lookups.store(left, Ordering::Relaxed);
        if left == 0 {
            let key = data.key;
            table.by_id.remove(&inode);
            if table.by_key.get(&key) == Some(&inode) {
                table.by_key.remove(&key);
            }
        }
    }

    /// Attributes of `inode`.
    pub fn getattr(&self, _ctx: &Context, inode: u64) -> io::Result<(libc::stat64, Duration)> {
        let timer = self.counters.start(Op::Getattr);
        let result = (|| {
            let data = self.inode(inode)?;
            Ok((
                self.shown(sys::fstat(data.fd.as_fd())?),
                self.config.attr_timeout,
            ))
        })();
        timer.done(result)
    }

    /// Changes attributes of `inode`; growing the size is charged to the quota.
    pub fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        changes: SetAttr,
    ) -> io::Result<(libc::stat64, Duration)> {
        let timer = self.counters.start(Op::Setattr);
        let result = self.do_setattr(ctx, inode, changes);
        timer.done(result)
    }

    fn do_setattr(
        &self,
        ctx: &Context,
        inode: u64,
        changes: SetAttr,
    ) -> io::Result<(libc::stat64, Duration)> {
        let data = self.inode(inode)?;
        let _as = AsCaller::new(ctx);
        if let Some(mode) = changes.mode {
            if data.kind == libc::S_IFLNK {
                return Err(errno(libc::EOPNOTSUPP));
            }
            let name = sys::fd_name(data.fd.as_raw_fd());
            sys::chmodat(self.proc_dir(), &name, mode & 0o7777)?;
        }
        if changes.uid.is_some() || changes.gid.is_some() {
            let (uid, gid) = match self.config.ids {
                None => (changes.uid, changes.gid),
                Some(ids) => (
                    changes.uid.map(|id| ids.uid_to_disk(id)),
                    changes.gid.map(|id| ids.gid_to_disk(id)),
                ),
            };
            // The namespace's root, giving a file of its namespace to another id of it.
            let _as_namespace_root = match self.config.owners {
                Some(range) if self.config.ids.is_none() && ctx.uid == range.uid_base => {
                    let owner = sys::fstat(data.fd.as_fd())?;
                    (range.maps_uid(owner.st_uid)
                        && range.maps_gid(owner.st_gid)
                        && uid.is_none_or(|id| range.maps_uid(id))
                        && gid.is_none_or(|id| range.maps_gid(id)))
                    .then(AsCaller::root)
                }
                _ => None,
            };
            sys::chown(
                data.fd.as_fd(),
                uid.unwrap_or(u32::MAX),
                gid.unwrap_or(u32::MAX),
            )?;
        }
        if let Some(size) = changes.size {
            if data.kind != libc::S_IFREG {
                return Err(errno(if data.kind == libc::S_IFDIR {
                    libc::EISDIR
                } else {
                    libc::EINVAL
                }));
            }
            let handle = changes.handle.map(|h| self.handle(h)).transpose()?;
            let reopened;
            let file = match &handle {
                Some(handle) => &handle.file,
                None => {
                    reopened = self.reopen(&data.fd, libc::O_WRONLY)?;
                    &reopened
                }
            };
            if self.quota.is_limited() {
                self.ensure_baseline()?;
                let current = file.metadata()?.len();
                self.quota
                    .charge_all(size.saturating_sub(current), || self.count_tree())
                    .map_err(|e| self.rejected(e))?;
            }
            file.set_len(size)?;
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            let time = |t: Option<SetTime>| match t {
                None => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                Some(SetTime::Now) => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_NOW,
                },
                Some(SetTime::At {
                    seconds,
                    nanoseconds,
                }) => libc::timespec {
                    tv_sec: seconds,
                    tv_nsec: i64::from(nanoseconds.min(999_999_999)),
                },
            };
            sys::utimens(data.fd.as_fd(), &[time(changes.atime), time(changes.mtime)])?;
        }
        Ok((
            self.shown(sys::fstat(data.fd.as_fd())?),
            self.config.attr_timeout,
        ))
    }

    /// Checks `mask` (`R_OK`/`W_OK`/`X_OK`/`F_OK`) against `inode` as the caller, host rules.
    pub fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        let timer = self.counters.start(Op::Access);
        let result = (|| {
            let data = self.inode(inode)?;
            let _as = AsCaller::new(ctx);
            let name = sys::fd_name(data.fd.as_raw_fd());
            sys::accessat(self.proc_dir(), &name, mask as i32)
        })();
        timer.done(result)
    }

    /// Filesystem statistics: on a quota'd mount the budget (4 KiB blocks, total = baseline +
    /// limit, free = available = limit − used; measuring the baseline if not done yet), else
    /// the host's.
    pub fn statfs(&self, _ctx: &Context, inode: u64) -> io::Result<StatFs> {
        let timer = self.counters.start(Op::Statfs);
        let result = (|| {
            let data = self.inode(inode)?;
            let host = sys::fstatvfs(data.fd.as_fd())?;
            let mut out = StatFs {
                block_bytes: host.f_frsize,
                blocks: host.f_blocks,
                blocks_free: host.f_bfree,
                blocks_available: host.f_bavail,
                files: host.f_files,
                files_free: host.f_ffree,
                name_max: host.f_namemax,
            };
            if let Some(limit) = self.config.quota_bytes {
                self.ensure_baseline()?;
                let state = self.quota.state();
                let (total, free) =
                    statfs_blocks(limit, state.baseline_bytes.unwrap_or(0), state.used_bytes);
                out.block_bytes = STATFS_BLOCK_BYTES;
                out.blocks = total;
                out.blocks_free = free;
                out.blocks_available = free;
            }
            Ok(out)
        })();
        timer.done(result)
    }

    /// Extended attributes are not supported: always `ENOTSUP`.
    pub fn xattr(&self) -> io::Result<()> {
        let timer = self.counters.start(Op::Xattr);
        timer.done(Err(errno(libc::ENOTSUP)))
    }

    /// Counts an operation the server does not implement and answers `ENOSYS`.
    pub fn unsupported(&self) -> io::Error {
        self.counters.record(Op::Other, true, Duration::ZERO);
        errno(libc::ENOSYS)
    }
}

#[cfg(test)]
mod tests;
