//! One FUSE request in, one reply out: parses the body for its opcode, calls the core and
//! encodes the answer.

use std::ffi::CStr;
use std::io;

use super::abi::{self, fattr, init_flags, opcode, InHeader, Reader};
use crate::passthrough::{Context, PassthroughFs, SetAttr, SetTime};

/// Largest write the server accepts in one request (and asks the kernel for), in bytes.
pub const MAX_WRITE_BYTES: u32 = 1 << 20;
/// `max_pages` matching [`MAX_WRITE_BYTES`] (4 KiB pages).
const MAX_PAGES: u16 = (MAX_WRITE_BYTES / 4096) as u16;

/// What to send back.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing (`FORGET`, `BATCH_FORGET`, `INTERRUPT`).
    NoReply,
    /// Success; the payload is in the worker's output buffer.
    Reply,
    /// Success; the payload is the first `n` bytes of the worker's read buffer.
    ReadData(usize),
    /// Failure with this errno.
    Error(i32),
}

/// Per-worker scratch space, reused across requests.
#[derive(Debug)]
pub struct Buffers {
    pub out: Vec<u8>,
    pub read: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            out: Vec::with_capacity(64 * 1024),
            read: vec![0u8; MAX_WRITE_BYTES as usize],
        }
    }
}

fn errno_of(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(seconds: u64, nanoseconds: u32) -> SetTime {
    SetTime::At {
        seconds: seconds as i64,
        nanoseconds,
    }
}

/// Handles one request and returns what to send back.
pub fn dispatch(
    fs: &PassthroughFs,
    header: &InHeader,
    body: &mut Reader<'_>,
    bufs: &mut Buffers,
) -> Outcome {
    bufs.out.clear();
    match handle(fs, header, body, bufs) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Error(errno_of(e)),
    }
}

fn handle(
    fs: &PassthroughFs,
    header: &InHeader,
    body: &mut Reader<'_>,
    bufs: &mut Buffers,
) -> io::Result<Outcome> {
    let ctx = fs.caller(header.uid, header.gid, header.pid);
    let node = header.nodeid;
    let out = &mut bufs.out;
    match header.opcode {
        opcode::INIT => return init(body, out),
        opcode::DESTROY => {}
        opcode::LOOKUP => {
            let entry = fs.lookup(&ctx, node, body.cstr()?)?;
            abi::put_entry_out(out, &entry);
        }
        opcode::FORGET => {
            fs.forget(node, body.u64()?);
            return Ok(Outcome::NoReply);
        }
        opcode::BATCH_FORGET => {
            let count = body.u32()?;
            let _dummy = body.u32()?;
            for _ in 0..count {
                let inode = body.u64()?;
                fs.forget(inode, body.u64()?);
            }
            return Ok(Outcome::NoReply);
        }
        opcode::INTERRUPT => return Ok(Outcome::NoReply),
        opcode::GETATTR => {
            let (st, valid) = fs.getattr(&ctx, node)?;
            abi::put_attr_out(out, &st, valid);
        }
        opcode::SETATTR => {
            let changes = setattr_in(body)?;
            let (st, valid) = fs.setattr(&ctx, node, changes)?;
            abi::put_attr_out(out, &st, valid);
        }
        opcode::READLINK => {
            let target = fs.readlink(&ctx, node)?;
            out.extend_from_slice(&target);
        }
        opcode::SYMLINK => {
            let name = body.cstr()?;
            let target = body.cstr()?;
            let entry = fs.symlink(&ctx, target, node, name)?;
            abi::put_entry_out(out, &entry);
        }
        opcode::MKNOD => {
            let mode = body.u32()?;
            let rdev = body.u32()?;
            let _umask = body.u32()?;
            let _padding = body.u32()?;
            let entry = fs.mknod(&ctx, node, body.cstr()?, mode, rdev)?;
            abi::put_entry_out(out, &entry);
        }
        opcode::MKDIR => {
            let mode = body.u32()?;
            let _umask = body.u32()?;
            let entry = fs.mkdir(&ctx, node, body.cstr()?, mode)?;
            abi::put_entry_out(out, &entry);
        }
        opcode::UNLINK => fs.unlink(&ctx, node, body.cstr()?)?,
        opcode::RMDIR => fs.rmdir(&ctx, node, body.cstr()?)?,
        opcode::RENAME | opcode::RENAME2 => {
            let new_dir = body.u64()?;
            let flags = if header.opcode == opcode::RENAME2 {
                let flags = body.u32()?;
                let _padding = body.u32()?;
                flags
            } else {
                0
            };
            let old_name = body.cstr()?;
            let new_name = body.cstr()?;
            fs.rename(&ctx, node, old_name, new_dir, new_name, flags)?;
        }
        opcode::LINK => {
            let old_node = body.u64()?;
            let entry = fs.link(&ctx, old_node, node, body.cstr()?)?;
            abi::put_entry_out(out, &entry);
        }
        opcode::OPEN | opcode::OPENDIR => {
            let flags = body.u32()? as i32;
            let (handle, open_flags) = if header.opcode == opcode::OPEN {
                (fs.open(&ctx, node, flags)?, open_flags_for(flags))
            } else {
                (fs.opendir(&ctx, node, flags)?, 0)
            };
            abi::put_open_out(out, handle, open_flags);
        }
        opcode::CREATE => {
            let flags = body.u32()? as i32;
            let mode = body.u32()?;
            let _umask = body.u32()?;
            let _open_flags = body.u32()?;
            let name: &CStr = body.cstr()?;
            let (entry, handle) = fs.create(&ctx, node, name, mode, flags)?;
            abi::put_entry_out(out, &entry);
            abi::put_open_out(out, handle, open_flags_for(flags));
        }
        opcode::READ => {
            let handle = body.u64()?;
            let offset = body.u64()?;
            let size = (body.u32()? as usize).min(bufs.read.len());
            let n = fs.read(handle, offset, &mut bufs.read[..size])?;
            return Ok(Outcome::ReadData(n));
        }
        opcode::WRITE => {
            let handle = body.u64()?;
            let offset = body.u64()?;
            let size = body.u32()? as usize;
            let _write_flags = body.u32()?;
            let _lock_owner = body.u64()?;
            let _flags = body.u32()?;
            let _padding = body.u32()?;
            let data = body.bytes(size)?;
            let written = fs.write(handle, offset, data)?;
            abi::put_u32(out, written as u32);
            abi::put_u32(out, 0);
        }
        opcode::STATFS => abi::put_statfs(out, &fs.statfs(&ctx, node)?),
        opcode::RELEASE | opcode::RELEASEDIR => {
            let handle = body.u64()?;
            if header.opcode == opcode::RELEASE {
                fs.release(handle)?;
            } else {
                fs.releasedir(handle)?;
            }
        }
        opcode::FLUSH => fs.flush(body.u64()?)?,
        opcode::FSYNC | opcode::FSYNCDIR => {
            let handle = body.u64()?;
            let data_only = body.u32()? & abi::FSYNC_FDATASYNC != 0;
            if header.opcode == opcode::FSYNC {
                fs.fsync(handle, data_only)?;
            } else {
                fs.fsyncdir(handle, data_only)?;
            }
        }
        opcode::READDIR | opcode::READDIRPLUS => {
            let handle = body.u64()?;
            let offset = body.u64()?;
            let size = body.u32()? as usize;
            readdir(
                fs,
                &ctx,
                handle,
                offset,
                size,
                header.opcode == opcode::READDIRPLUS,
                out,
            )?;
        }
        opcode::ACCESS => fs.access(&ctx, node, body.u32()?)?,
        opcode::FALLOCATE => {
            let handle = body.u64()?;
            let offset = body.u64()?;
            let length = body.u64()?;
            let mode = body.u32()? as i32;
            fs.fallocate(handle, mode, offset, length)?;
        }
        // ENOSYS makes the kernel stop asking (and answer EOPNOTSUPP itself), which also
        // spares a `security.capability` lookup on every write.
        opcode::GETXATTR | opcode::SETXATTR | opcode::LISTXATTR | opcode::REMOVEXATTR => {
            fs.xattr().ok();
            return Ok(Outcome::Error(libc::ENOSYS));
        }
        _ => return Err(fs.unsupported()),
    }
    Ok(Outcome::Reply)
}

/// `FOPEN_*` answer to an open with `flags`. A file opened write-only gets direct I/O: its
/// writes go from the writer's pages straight to the server (one copy fewer than through the
/// guest page cache), each `write(2)` still answered synchronously, so that a quota refusal
/// reaches the writer as `ENOSPC`. Files opened for reading keep the page cache.
fn open_flags_for(flags: i32) -> u32 {
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        abi::FOPEN_DIRECT_IO
    } else {
        0
    }
}

fn setattr_in(body: &mut Reader<'_>) -> io::Result<SetAttr> {
    let valid = body.u32()?;
    let _padding = body.u32()?;
    let fh = body.u64()?;
    let size = body.u64()?;
    let _lock_owner = body.u64()?;
    let atime = body.u64()?;
    let mtime = body.u64()?;
    let _ctime = body.u64()?;
    let atime_ns = body.u32()?;
    let mtime_ns = body.u32()?;
    let _ctime_ns = body.u32()?;
    let mode = body.u32()?;
    let _unused4 = body.u32()?;
    let uid = body.u32()?;
    let gid = body.u32()?;
    let set = |bit: u32| valid & bit != 0;
    Ok(SetAttr {
        mode: set(fattr::MODE).then_some(mode),
        uid: set(fattr::UID).then_some(uid),
        gid: set(fattr::GID).then_some(gid),
        size: set(fattr::SIZE).then_some(size),
        atime: if set(fattr::ATIME_NOW) {
            Some(SetTime::Now)
        } else {
            set(fattr::ATIME).then(|| time(atime, atime_ns))
        },
        mtime: if set(fattr::MTIME_NOW) {
            Some(SetTime::Now)
        } else {
            set(fattr::MTIME).then(|| time(mtime, mtime_ns))
        },
        handle: set(fattr::FH).then_some(fh),
    })
}

fn readdir(
    fs: &PassthroughFs,
    ctx: &Context,
    handle: u64,
    offset: u64,
    size: usize,
    plus: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    fs.readdir(ctx, handle, offset, plus, &mut |entry| {
        let record = abi::dirent_size(entry.name.len()) + if plus { 128 } else { 0 };
        if out.len() + record > size {
            return false;
        }
        if plus {
            match &entry.entry {
                Some(e) => abi::put_entry_out(out, e),
                None => abi::put_no_entry_out(out),
            }
        }
        abi::put_dirent(out, entry.ino, entry.next_offset, entry.kind, entry.name);
        true
    })
}

/// `FUSE_INIT`: agrees on the protocol and asks for big writes, parallel directory operations
/// and `READDIRPLUS`, taking only what the kernel offers.
fn init(body: &mut Reader<'_>, out: &mut Vec<u8>) -> io::Result<Outcome> {
    let major = body.u32()?;
    let minor = body.u32()?;
    let max_readahead = body.u32()?;
    let offered = body.u32()?;
    if major != abi::KERNEL_VERSION {
        tracing::error!("msb-fs: kernel speaks FUSE {major}.{minor}, this server needs 7.x");
        return Ok(Outcome::Error(libc::EPROTO));
    }
    let wanted = init_flags::ASYNC_READ
        | init_flags::BIG_WRITES
        | init_flags::AUTO_INVAL_DATA
        | init_flags::DO_READDIRPLUS
        | init_flags::READDIRPLUS_AUTO
        | init_flags::PARALLEL_DIROPS
        | init_flags::ABORT_ERROR
        | init_flags::MAX_PAGES
        | init_flags::CACHE_SYMLINKS;
    // struct fuse_init_out (64 bytes)
    abi::put_u32(out, abi::KERNEL_VERSION);
    abi::put_u32(out, abi::KERNEL_MINOR_VERSION.min(minor));
    abi::put_u32(out, max_readahead);
    abi::put_u32(out, offered & wanted);
    abi::put_u16(out, 64); // max_background
    abi::put_u16(out, 48); // congestion_threshold
    abi::put_u32(out, MAX_WRITE_BYTES);
    abi::put_u32(out, 1); // time_gran, ns
    abi::put_u16(out, MAX_PAGES);
    abi::put_u16(out, 0); // map_alignment
    abi::put_u32(out, 0); // flags2
    out.extend_from_slice(&[0u8; 28]);
    Ok(Outcome::Reply)
}
