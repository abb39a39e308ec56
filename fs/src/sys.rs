//! Thin wrappers over the Linux syscalls the file server makes on the host.
//!
//! This is the only module of the core allowed to use `unsafe`: every function takes borrowed
//! file descriptors and `CStr` names, makes one syscall and turns `-1` into the `errno` as an
//! [`io::Error`]. Everything is fd-relative (`*at` calls); nothing here resolves a path string
//! from `/`, except the served directory itself, opened once by [`open_root`].
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// Opens the served directory `O_PATH|O_DIRECTORY|O_NOFOLLOW` with no symbolic link (and no
/// `/proc` magic link) followed in any component.
pub(crate) fn open_root(path: &CStr) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is NUL-terminated, `how` a live `struct open_how` whose size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(ret as libc::c_int)
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; `dir` is a live descriptor for the call's duration.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW | extra)`; with `name == ""` and `AT_EMPTY_PATH` in
/// `extra` it stats `dir` itself (which may be an `O_PATH` descriptor).
pub(crate) fn statat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    extra: libc::c_int,
) -> io::Result<libc::stat64> {
    let mut st = MaybeUninit::<libc::stat64>::zeroed();
    // SAFETY: `st` is writable memory of the right size; `name` is NUL-terminated.
    check(unsafe {
        libc::fstatat64(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | extra,
        )
    })?;
    // SAFETY: fstatat64 succeeded, so it filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// Stat of the object an (`O_PATH` or real) descriptor refers to, never following a symlink.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat64> {
    statat(fd, c"", libc::AT_EMPTY_PATH)
}

/// The id of the mount an (`O_PATH` or real) descriptor's object is on; `None` where `statx`
/// does not report one (kernels before 5.8).
pub(crate) fn mount_id(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: a valid fd, a NUL-terminated empty path with AT_EMPTY_PATH, and a buffer the
    // size of `struct statx` the kernel writes into.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded (and the buffer started zeroed).
    let stx = unsafe { stx.assume_init() };
    Ok((stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id))
}

pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

pub(crate) fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) })
}

pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

pub(crate) fn renameat2(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; the descriptors are live.
    check(unsafe {
        libc::renameat2(
            old_dir.as_raw_fd(),
            old_name.as_ptr(),
            new_dir.as_raw_fd(),
            new_name.as_ptr(),
            flags,
        )
    })
}

pub(crate) fn linkat(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
    flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; the descriptors are live.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            old_name.as_ptr(),
            new_dir.as_raw_fd(),
            new_name.as_ptr(),
            flags,
        )
    })
}

/// The target of the symbolic link `fd` (an `O_PATH|O_NOFOLLOW` descriptor on it).
pub(crate) fn readlink(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW)`: `u32::MAX` leaves one alone.
pub(crate) fn chown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the empty name is NUL-terminated.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `fchmodat(dir, name, mode, 0)` (follows a final symlink: used on `/proc/self/fd/N`).
pub(crate) fn chmodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) })
}

/// Sets the times of the object `fd` refers to (`O_PATH` allowed), symlinks included.
pub(crate) fn utimens(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: `times` points at two timespecs; the empty name is NUL-terminated.
    check(unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `faccessat(dir, name, mask, AT_EACCESS)`: checked with the thread's fs credentials.
pub(crate) fn accessat(dir: BorrowedFd<'_>, name: &CStr, mask: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::faccessat(dir.as_raw_fd(), name.as_ptr(), mask, libc::AT_EACCESS) })
}

pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs64> {
    let mut st = MaybeUninit::<libc::statvfs64>::zeroed();
    // SAFETY: `st` is writable memory of the right size.
    check(unsafe { libc::fstatvfs64(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs64 succeeded, so it filled the struct.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, length: u64) -> io::Result<()> {
    let offset = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let length = i64::try_from(length).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain integer arguments on a live descriptor.
    check(unsafe { libc::fallocate64(fd.as_raw_fd(), mode, offset, length) })
}

pub(crate) fn lseek_set(fd: BorrowedFd<'_>, offset: u64) -> io::Result<()> {
    // SAFETY: plain integer arguments on a live descriptor.
    let ret = unsafe { libc::lseek64(fd.as_raw_fd(), offset as i64, libc::SEEK_SET) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `getdents64` call into `buf`; returns the number of bytes filled (0 at the end).
pub(crate) fn getdents(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// Sets this thread's filesystem uid and gid; returns the previous pair. `setfsuid` and
/// `setfsgid` are per thread (the C library does not broadcast them like `setuid`).
pub(crate) fn set_fs_ids(uid: u32, gid: u32) -> (u32, u32) {
    // SAFETY: plain integer syscalls with no memory arguments.
    unsafe {
        let old_gid = libc::setfsgid(gid) as u32;
        let old_uid = libc::setfsuid(uid) as u32;
        (old_uid, old_gid)
    }
}

/// Gives this thread its own `fs_struct` (umask, cwd) and a zero umask, so that the modes the
/// guest asks for reach the host unchanged (its kernel already applied the guest's umask).
pub(crate) fn private_zero_umask() -> io::Result<()> {
    // SAFETY: plain integer syscalls; CLONE_FS only affects the calling thread.
    unsafe {
        check(libc::unshare(libc::CLONE_FS))?;
        libc::umask(0);
    }
    Ok(())
}

/// Name of `fd` inside `/proc/self/fd`, as a C string.
pub(crate) fn fd_name(fd: RawFd) -> std::ffi::CString {
    std::ffi::CString::new(fd.to_string()).unwrap_or_default()
}
