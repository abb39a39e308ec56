//! Open files and directories: open/create, read/write (charged to the quota), sync,
//! `fallocate`, and directory listing.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use super::walk::dirents;
use super::{check_name, errno, zero_umask, AsCaller, Context, Entry, Handle, PassthroughFs};
use crate::counters::Op;
use crate::sys;

/// One directory entry handed to a `readdir` sink.
#[derive(Debug)]
pub struct DirEntry<'a> {
    /// Host inode number.
    pub ino: u64,
    /// Position to resume after this entry (pass it back as `offset`).
    pub next_offset: u64,
    /// `DT_*` type.
    pub kind: u32,
    pub name: &'a [u8],
    /// With `plus`: the looked-up entry (one lookup taken, given back if the sink refuses);
    /// `None` for `.` and `..`.
    pub entry: Option<Entry>,
}

fn write_intent(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl PassthroughFs {
    /// Opens the regular file `inode` with `flags` (`open(2)` flags) and returns a handle.
    /// The first open for writing measures the quota's baseline.
    pub fn open(&self, ctx: &Context, inode: u64, flags: i32) -> io::Result<u64> {
        let timer = self.counters.start(Op::Open);
        let result = (|| {
            let data = self.inode(inode)?;
            match data.kind {
                libc::S_IFREG => {}
                libc::S_IFDIR => return Err(errno(libc::EISDIR)),
                libc::S_IFLNK => return Err(errno(libc::ELOOP)),
                _ => return Err(errno(libc::ENXIO)),
            }
            if write_intent(flags) {
                self.ensure_baseline()?;
            }
            let file = {
                let _as = AsCaller::new(ctx);
                self.reopen(&data.fd, flags & !libc::O_TRUNC)?
            };
            Ok(self.add_handle(Handle {
                inode,
                file,
                append: flags & libc::O_APPEND != 0,
                dir_position: Mutex::new(()),
            }))
        })();
        timer.done(result)
    }

    /// Creates (or opens, without `O_EXCL`) the regular file `parent/name` and returns its entry
    /// (one lookup taken) and an open handle.
    pub fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        flags: i32,
    ) -> io::Result<(Entry, u64)> {
        let timer = self.counters.start(Op::Create);
        let result = (|| {
            check_name(name)?;
            let parent = self.inode(parent)?;
            self.ensure_baseline()?;
            zero_umask();
            let _as = AsCaller::new(ctx);
            let fd = sys::openat(
                parent.fd.as_fd(),
                name,
                flags | libc::O_CREAT | libc::O_NOFOLLOW,
                mode & 0o7777,
            )?;
            let path_fd = sys::openat(self.proc_dir(), &sys::fd_name(raw(&fd)), libc::O_PATH, 0)?;
            let entry = self.register(path_fd)?;
            let handle = self.add_handle(Handle {
                inode: entry.inode,
                file: fd.into(),
                append: flags & libc::O_APPEND != 0,
                dir_position: Mutex::new(()),
            });
            Ok((entry, handle))
        })();
        timer.done(result)
    }

    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    pub fn read(&self, handle: u64, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let timer = self.counters.start(Op::Read);
        let result = (|| {
            let handle = self.handle(handle)?;
            let mut filled = 0;
            while filled < buf.len() {
                match handle
                    .file
                    .read_at(&mut buf[filled..], offset + filled as u64)
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if filled > 0 => {
                        tracing::debug!("msb-fs: short read after {filled} bytes: {e}");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.counters.add_read(filled as u64);
            Ok(filled)
        })();
        timer.done(result)
    }

    /// Writes `data` at `offset` (at the end for an `O_APPEND` handle). Growth of the file is
    /// charged to the quota; when only part of it fits the write is short, when none does it
    /// fails with `ENOSPC`.
    pub fn write(&self, handle: u64, offset: u64, data: &[u8]) -> io::Result<usize> {
        self.write_from(handle, offset, data.len(), &mut |file, offset, len| loop {
            match file.write_at(&data[..len], offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        })
    }

    /// [`write`](Self::write) for a transport that holds the bytes elsewhere (a pipe spliced
    /// from `/dev/fuse`, guest memory): after the quota decided how many of the `len` bytes
    /// may go, `copy(file, offset, n)` writes `n` bytes into the host file and returns how many
    /// it wrote. Bytes it was not asked to write are the transport's to discard.
    pub fn write_from(
        &self,
        handle: u64,
        offset: u64,
        len: usize,
        copy: &mut dyn FnMut(&std::fs::File, u64, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let timer = self.counters.start(Op::Write);
        let result = self.do_write(handle, offset, len, copy);
        timer.done(result)
    }

    fn do_write(
        &self,
        handle: u64,
        offset: u64,
        len: usize,
        copy: &mut dyn FnMut(&std::fs::File, u64, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let handle = self.handle(handle)?;
        let mut len = len as u64;
        if self.quota.is_limited() && len > 0 {
            let size = handle.file.metadata()?.len();
            let start = if handle.append { size } else { offset };
            let end = start.checked_add(len).ok_or_else(|| errno(libc::EFBIG))?;
            let growth = end.saturating_sub(size);
            let granted = self
                .quota
                .charge_up_to(growth, || self.count_tree())
                .map_err(|e| self.rejected(e))?;
            if granted < growth {
                let allowed_end = size + granted;
                if allowed_end <= start {
                    return Err(self.rejected(errno(libc::ENOSPC)));
                }
                len = allowed_end - start;
            }
        }
        let written = copy(&handle.file, offset, len as usize)?;
        self.counters.add_written(written as u64);
        Ok(written)
    }

    /// Called at every `close` of a descriptor on the handle; nothing to do on the host.
    pub fn flush(&self, handle: u64) -> io::Result<()> {
        let timer = self.counters.start(Op::Flush);
        timer.done(self.handle(handle).map(drop))
    }

    /// The last descriptor on the handle was closed: closes the host file.
    pub fn release(&self, handle: u64) -> io::Result<()> {
        let timer = self.counters.start(Op::Release);
        timer.done(self.remove_handle(handle))
    }

    /// `fsync` (or `fdatasync` when `data_only`) of the handle's host file.
    pub fn fsync(&self, handle: u64, data_only: bool) -> io::Result<()> {
        let timer = self.counters.start(Op::Fsync);
        let result = self.handle(handle).and_then(|h| {
            if data_only {
                h.file.sync_data()
            } else {
                h.file.sync_all()
            }
        });
        timer.done(result)
    }

    /// `fallocate(2)` on the handle. On a quota'd mount, mode 0 charges the growth (all or
    /// nothing) and only `PUNCH_HOLE|KEEP_SIZE` is accepted besides it: other modes could take
    /// disk space without moving the file's end, which the quota could not see (`EOPNOTSUPP`).
    pub fn fallocate(&self, handle: u64, mode: i32, offset: u64, length: u64) -> io::Result<()> {
        let timer = self.counters.start(Op::Fallocate);
        let result = (|| {
            let handle = self.handle(handle)?;
            if self.quota.is_limited() {
                let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                if mode == 0 {
                    let size = handle.file.metadata()?.len();
                    let end = offset
                        .checked_add(length)
                        .ok_or_else(|| errno(libc::EFBIG))?;
                    self.quota
                        .charge_all(end.saturating_sub(size), || self.count_tree())
                        .map_err(|e| self.rejected(e))?;
                } else if mode != punch {
                    return Err(errno(libc::EOPNOTSUPP));
                }
            }
            sys::fallocate(handle.file.as_fd(), mode, offset, length)
        })();
        timer.done(result)
    }

    /// Opens the directory `inode` for listing.
    pub fn opendir(&self, ctx: &Context, inode: u64, flags: i32) -> io::Result<u64> {
        let timer = self.counters.start(Op::Opendir);
        let result = (|| {
            let data = self.inode(inode)?;
            if data.kind != libc::S_IFDIR {
                return Err(errno(libc::ENOTDIR));
            }
            let file = {
                let _as = AsCaller::new(ctx);
                let flags = (flags & (libc::O_NONBLOCK | libc::O_NOATIME)) | libc::O_DIRECTORY;
                self.reopen(&data.fd, flags | libc::O_RDONLY)?
            };
            Ok(self.add_handle(Handle {
                inode,
                file,
                append: false,
                dir_position: Mutex::new(()),
            }))
        })();
        timer.done(result)
    }

    /// Lists the directory from `offset` (0, or a `next_offset` given before), calling `sink`
    /// for each entry until it returns `false` (full) or the directory ends. With `plus`, each
    /// entry but `.` and `..` is also looked up (and the lookup given back if refused).
    pub fn readdir(
        &self,
        ctx: &Context,
        handle: u64,
        offset: u64,
        plus: bool,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> io::Result<()> {
        let timer = self.counters.start(Op::Readdir);
        let result = (|| {
            let handle = self.handle(handle)?;
            let parent = if plus {
                Some(self.inode(handle.inode)?)
            } else {
                None
            };
            let _position = handle
                .dir_position
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            sys::lseek_set(handle.file.as_fd(), offset)?;
            let _as = AsCaller::new(ctx);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let filled = sys::getdents(handle.file.as_fd(), &mut buf)?;
                if filled == 0 {
                    return Ok(());
                }
                for raw in dirents(&buf[..filled]) {
                    let dot = raw.name == b"." || raw.name == b"..";
                    let entry = match &parent {
                        Some(parent) if !dot => {
                            let mut name = raw.name.to_vec();
                            name.push(0);
                            let Ok(c_name) = CStr::from_bytes_with_nul(&name) else {
                                continue;
                            };
                            match self.lookup_in(parent, c_name) {
                                Ok(entry) => Some(entry),
                                // Gone since it was listed.
                                Err(_) => continue,
                            }
                        }
                        _ => None,
                    };
                    let accepted = sink(DirEntry {
                        ino: raw.ino,
                        next_offset: raw.next_offset,
                        kind: u32::from(raw.kind),
                        name: raw.name,
                        entry,
                    });
                    if !accepted {
                        if let Some(entry) = entry {
                            self.forget_one(entry.inode, 1);
                        }
                        return Ok(());
                    }
                }
            }
        })();
        timer.done(result)
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, handle: u64) -> io::Result<()> {
        let timer = self.counters.start(Op::Releasedir);
        timer.done(self.remove_handle(handle))
    }

    /// `fsync` of a directory handle.
    pub fn fsyncdir(&self, handle: u64, data_only: bool) -> io::Result<()> {
        let timer = self.counters.start(Op::Fsyncdir);
        let result = self.handle(handle).and_then(|h| {
            if data_only {
                h.file.sync_data()
            } else {
                h.file.sync_all()
            }
        });
        timer.done(result)
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}
