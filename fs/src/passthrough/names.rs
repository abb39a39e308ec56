//! Operations on directory entries: create, remove, rename and link names, read links.
//!
//! Every name is checked to be a single component ([`check_name`]) and used relative to its
//! parent's `O_PATH` descriptor; new objects belong to the caller (fs ids switched) and get the
//! mode the guest kernel sent (already masked by the guest's umask; the worker's own umask is 0).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::{check_name, errno, zero_umask, AsCaller, Context, Entry, PassthroughFs};
use crate::counters::Op;
use crate::sys;

impl PassthroughFs {
    /// Creates a FIFO or an empty regular file (other node types are refused with `EPERM`).
    pub fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
    ) -> io::Result<Entry> {
        let timer = self.counters.start(Op::Mknod);
        let result = (|| {
            check_name(name)?;
            let kind = mode & libc::S_IFMT;
            if kind != libc::S_IFIFO && kind != libc::S_IFREG {
                return Err(errno(libc::EPERM));
            }
            let parent = self.inode(parent)?;
            zero_umask();
            let _as = AsCaller::new(ctx);
            sys::mknodat(parent.fd.as_fd(), name, mode, u64::from(rdev))?;
            self.lookup_in(&parent, name)
        })();
        timer.done(result)
    }

    /// Creates a directory.
    pub fn mkdir(&self, ctx: &Context, parent: u64, name: &CStr, mode: u32) -> io::Result<Entry> {
        let timer = self.counters.start(Op::Mkdir);
        let result = (|| {
            check_name(name)?;
            let parent = self.inode(parent)?;
            zero_umask();
            let _as = AsCaller::new(ctx);
            sys::mkdirat(parent.fd.as_fd(), name, mode & 0o7777)?;
            self.lookup_in(&parent, name)
        })();
        timer.done(result)
    }

    /// Removes a non-directory name.
    pub fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let timer = self.counters.start(Op::Unlink);
        let result = (|| {
            check_name(name)?;
            let parent = self.inode(parent)?;
            let _as = AsCaller::new(ctx);
            sys::unlinkat(parent.fd.as_fd(), name, 0)
        })();
        timer.done(result)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let timer = self.counters.start(Op::Rmdir);
        let result = (|| {
            check_name(name)?;
            let parent = self.inode(parent)?;
            let _as = AsCaller::new(ctx);
            sys::unlinkat(parent.fd.as_fd(), name, libc::AT_REMOVEDIR)
        })();
        timer.done(result)
    }

    /// Creates a symbolic link `name` → `target`. The target is stored as given and never
    /// followed by the server.
    pub fn symlink(
        &self,
        ctx: &Context,
        target: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let timer = self.counters.start(Op::Symlink);
        let result = (|| {
            check_name(name)?;
            let parent = self.inode(parent)?;
            let _as = AsCaller::new(ctx);
            sys::symlinkat(target, parent.fd.as_fd(), name)?;
            self.lookup_in(&parent, name)
        })();
        timer.done(result)
    }

    /// Renames `old_parent/old_name` to `new_parent/new_name`; `flags` are `renameat2`'s
    /// (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`, `RENAME_WHITEOUT`).
    pub fn rename(
        &self,
        ctx: &Context,
        old_parent: u64,
        old_name: &CStr,
        new_parent: u64,
        new_name: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let timer = self.counters.start(Op::Rename);
        let result = (|| {
            check_name(old_name)?;
            check_name(new_name)?;
            let old_dir = self.inode(old_parent)?;
            let new_dir = self.inode(new_parent)?;
            let _as = AsCaller::new(ctx);
            sys::renameat2(
                old_dir.fd.as_fd(),
                old_name,
                new_dir.fd.as_fd(),
                new_name,
                flags,
            )
        })();
        timer.done(result)
    }

    /// Adds the hard link `new_parent/new_name` to `inode`.
    pub fn link(
        &self,
        ctx: &Context,
        inode: u64,
        new_parent: u64,
        new_name: &CStr,
    ) -> io::Result<Entry> {
        let timer = self.counters.start(Op::Link);
        let result = (|| {
            check_name(new_name)?;
            let data = self.inode(inode)?;
            let dir = self.inode(new_parent)?;
            if data.kind == libc::S_IFDIR {
                return Err(errno(libc::EPERM));
            }
            let _as = AsCaller::new(ctx);
            let source = sys::fd_name(data.fd.as_raw_fd());
            sys::linkat(
                self.proc_dir(),
                &source,
                dir.fd.as_fd(),
                new_name,
                libc::AT_SYMLINK_FOLLOW,
            )?;
            self.lookup_in(&dir, new_name)
        })();
        timer.done(result)
    }

    /// The target of the symbolic link `inode`, as stored.
    pub fn readlink(&self, _ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        let timer = self.counters.start(Op::Readlink);
        let result = (|| {
            let data = self.inode(inode)?;
            if data.kind != libc::S_IFLNK {
                return Err(errno(libc::EINVAL));
            }
            sys::readlink(data.fd.as_fd())
        })();
        timer.done(result)
    }
}
