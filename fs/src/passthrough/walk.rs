//! Directory listing (`getdents64` records) and the quota's tree walk, both fd-relative.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// One `struct linux_dirent64` record, borrowed from a `getdents64` buffer.
#[derive(Debug)]
pub(crate) struct RawDirent<'a> {
    /// Host inode number.
    pub ino: u64,
    /// Opaque position of the *next* record, for `lseek`.
    pub next_offset: u64,
    /// `DT_*` type.
    pub kind: u8,
    /// Name, without the NUL.
    pub name: &'a [u8],
}

/// The records in the first `len` bytes a `getdents64` call filled. Malformed records (which the
/// kernel does not produce) end the iteration.
pub(crate) fn dirents(buf: &[u8]) -> impl Iterator<Item = RawDirent<'_>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let header = buf.get(pos..pos + 19)?;
        let ino = u64::from_ne_bytes(header[0..8].try_into().ok()?);
        let next_offset = i64::from_ne_bytes(header[8..16].try_into().ok()?) as u64;
        let reclen = u16::from_ne_bytes(header[16..18].try_into().ok()?) as usize;
        let kind = header[18];
        let record = buf.get(pos..pos + reclen).filter(|_| reclen > 19)?;
        let name_bytes = &record[19..];
        let name_len = name_bytes.iter().position(|b| *b == 0)?;
        pos += reclen;
        Some(RawDirent {
            ino,
            next_offset,
            kind,
            name: &name_bytes[..name_len],
        })
    })
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Logical size of the tree under `root`: the sum of regular files' `st_size` (each host inode
/// once, so hard links count once), symbolic links not followed, other filesystems mounted
/// inside not entered. Entries that vanish while walking are skipped.
pub(crate) fn subtree_bytes(root: BorrowedFd<'_>) -> io::Result<u64> {
    let root_dev = sys::fstat(root)?.st_dev;
    let mut total = 0u64;
    let mut linked = HashSet::new();
    let mut buf = vec![0u8; 64 * 1024];
    let first = sys::openat(root, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // Each level: the open directory and the subdirectories of it still to visit.
    let mut stack: Vec<(OwnedFd, Vec<Vec<u8>>)> = Vec::new();
    let subdirs = list_one(first.as_fd(), root_dev, &mut buf, &mut total, &mut linked)?;
    stack.push((first, subdirs));
    while let Some((dir, pending)) = stack.last_mut() {
        let Some(name) = pending.pop() else {
            stack.pop();
            continue;
        };
        let Ok(name) = std::ffi::CString::new(name) else {
            continue;
        };
        let child = match sys::openat(
            dir.as_fd(),
            &name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let subdirs = list_one(child.as_fd(), root_dev, &mut buf, &mut total, &mut linked)?;
        stack.push((child, subdirs));
    }
    Ok(total)
}

/// Adds the regular files of `dir` to `total` and returns its subdirectories' names.
fn list_one(
    dir: BorrowedFd<'_>,
    root_dev: u64,
    buf: &mut [u8],
    total: &mut u64,
    linked: &mut HashSet<(u64, u64)>,
) -> io::Result<Vec<Vec<u8>>> {
    let mut subdirs = Vec::new();
    loop {
        let filled = sys::getdents(dir, buf)?;
        if filled == 0 {
            return Ok(subdirs);
        }
        for entry in dirents(&buf[..filled]) {
            if is_dot(entry.name) {
                continue;
            }
            let mut name = entry.name.to_vec();
            name.push(0);
            let Ok(c_name) = CStr::from_bytes_with_nul(&name) else {
                continue;
            };
            let st = match sys::statat(dir, c_name, 0) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => {
                    if st.st_nlink > 1 && !linked.insert((st.st_dev, st.st_ino)) {
                        continue;
                    }
                    *total = total.saturating_add(st.st_size.max(0) as u64);
                }
                libc::S_IFDIR if st.st_dev == root_dev => {
                    name.pop();
                    subdirs.push(name);
                }
                _ => {}
            }
        }
    }
}
