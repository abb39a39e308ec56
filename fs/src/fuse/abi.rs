//! The FUSE kernel ABI (`linux/fuse.h`, protocol 7.31) as byte-level readers and writers.
//!
//! Requests are parsed with a bounds-checked [`Reader`] and replies built by appending
//! little-endian fields to a `Vec<u8>`: no `unsafe` and no struct transmutes. Field order and
//! sizes follow the kernel header; each writer names the struct it produces.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use crate::passthrough::{Entry, StatFs};

/// The protocol version this server speaks (the kernel adapts to an older minor).
pub const KERNEL_VERSION: u32 = 7;
pub const KERNEL_MINOR_VERSION: u32 = 31;

/// Size of `struct fuse_out_header`.
pub const OUT_HEADER_BYTES: usize = 16;

pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
}

/// `FUSE_INIT` capability flags this server uses.
pub mod init_flags {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const AUTO_INVAL_DATA: u32 = 1 << 12;
    pub const DO_READDIRPLUS: u32 = 1 << 13;
    pub const READDIRPLUS_AUTO: u32 = 1 << 14;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const ABORT_ERROR: u32 = 1 << 21;
    pub const MAX_PAGES: u32 = 1 << 22;
    pub const CACHE_SYMLINKS: u32 = 1 << 23;
}

/// `FATTR_*` bits of `fuse_setattr_in.valid`.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
}

/// `FOPEN_DIRECT_IO`: bypass the page cache for this open file.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;

/// `FUSE_FSYNC_FDATASYNC`.
pub const FSYNC_FDATASYNC: u32 = 1;

/// `struct fuse_in_header`.
#[derive(Clone, Copy, Debug)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// A bounds-checked cursor over a request body; every read past the end is `EINVAL`.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn bytes(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(invalid());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_ne_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_ne_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_ne_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        self.bytes(N)?.try_into().map_err(|_| invalid())
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self) -> io::Result<&'a CStr> {
        let end = self.buf.iter().position(|b| *b == 0).ok_or_else(invalid)?;
        let (head, rest) = self.buf.split_at(end + 1);
        self.buf = rest;
        CStr::from_bytes_with_nul(head).map_err(|_| invalid())
    }
}

/// Parses `struct fuse_in_header` from the start of a request.
pub fn in_header(reader: &mut Reader<'_>) -> io::Result<InHeader> {
    let header = InHeader {
        len: reader.u32()?,
        opcode: reader.u32()?,
        unique: reader.u64()?,
        nodeid: reader.u64()?,
        uid: reader.u32()?,
        gid: reader.u32()?,
        pid: reader.u32()?,
    };
    let _total_extlen = reader.u16()?;
    let _padding = reader.u16()?;
    Ok(header)
}

/// `struct fuse_out_header`; `error` is 0 or a negated errno.
pub fn out_header(len: usize, error: i32, unique: u64) -> [u8; OUT_HEADER_BYTES] {
    let mut out = [0u8; OUT_HEADER_BYTES];
    out[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&error.to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    out
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_ne_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_ne_bytes());
}

/// The kernel's `new_encode_dev` of a host `dev_t`.
fn encode_dev(rdev: u64) -> u32 {
    let major = libc::major(rdev);
    let minor = libc::minor(rdev);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// `struct fuse_attr` (88 bytes).
pub fn put_attr(out: &mut Vec<u8>, st: &libc::stat64) {
    put_u64(out, st.st_ino);
    put_u64(out, st.st_size as u64);
    put_u64(out, st.st_blocks as u64);
    put_u64(out, st.st_atime as u64);
    put_u64(out, st.st_mtime as u64);
    put_u64(out, st.st_ctime as u64);
    put_u32(out, st.st_atime_nsec as u32);
    put_u32(out, st.st_mtime_nsec as u32);
    put_u32(out, st.st_ctime_nsec as u32);
    put_u32(out, st.st_mode);
    put_u32(out, st.st_nlink as u32);
    put_u32(out, st.st_uid);
    put_u32(out, st.st_gid);
    put_u32(out, encode_dev(st.st_rdev));
    put_u32(out, st.st_blksize as u32);
    put_u32(out, 0);
}

/// `struct fuse_attr_out` (104 bytes).
pub fn put_attr_out(out: &mut Vec<u8>, st: &libc::stat64, valid: Duration) {
    put_u64(out, valid.as_secs());
    put_u32(out, valid.subsec_nanos());
    put_u32(out, 0);
    put_attr(out, st);
}

/// `struct fuse_entry_out` (128 bytes).
pub fn put_entry_out(out: &mut Vec<u8>, entry: &Entry) {
    put_u64(out, entry.inode);
    put_u64(out, entry.generation);
    put_u64(out, entry.entry_timeout.as_secs());
    put_u64(out, entry.attr_timeout.as_secs());
    put_u32(out, entry.entry_timeout.subsec_nanos());
    put_u32(out, entry.attr_timeout.subsec_nanos());
    put_attr(out, &entry.attr);
}

/// An all-zero `struct fuse_entry_out`: "no entry" in a `READDIRPLUS` record.
pub fn put_no_entry_out(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 128]);
}

/// `struct fuse_open_out`.
pub fn put_open_out(out: &mut Vec<u8>, handle: u64, open_flags: u32) {
    put_u64(out, handle);
    put_u32(out, open_flags);
    put_u32(out, 0);
}

/// `struct fuse_kstatfs` (80 bytes).
pub fn put_statfs(out: &mut Vec<u8>, st: &StatFs) {
    put_u64(out, st.blocks);
    put_u64(out, st.blocks_free);
    put_u64(out, st.blocks_available);
    put_u64(out, st.files);
    put_u64(out, st.files_free);
    put_u32(out, st.block_bytes as u32);
    put_u32(out, st.name_max as u32);
    put_u32(out, st.block_bytes as u32);
    put_u32(out, 0);
    out.extend_from_slice(&[0u8; 24]);
}

/// Size of a `struct fuse_dirent` record with a name of `name_len` bytes, 8-byte aligned.
pub fn dirent_size(name_len: usize) -> usize {
    (24 + name_len + 7) & !7
}

/// `struct fuse_dirent` with its name and padding.
pub fn put_dirent(out: &mut Vec<u8>, ino: u64, next_offset: u64, kind: u32, name: &[u8]) {
    let start = out.len();
    put_u64(out, ino);
    put_u64(out, next_offset);
    put_u32(out, name.len() as u32);
    put_u32(out, kind);
    out.extend_from_slice(name);
    out.resize(start + dirent_size(name.len()), 0);
}
