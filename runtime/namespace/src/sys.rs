//! The few syscalls nix does not wrap safely. The only module of this crate allowed `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// `fork(2)` through glibc, so its atfork handlers leave malloc usable in the child even when
/// the parent has other threads.
///
/// The child must stay single-threaded, must not touch locks other threads of the parent may
/// have held (no logging through a mutex-guarded writer at enabled levels, no tokio), and must
/// leave with [`nix::unistd::_exit`].
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the only caller (`launch::start`) runs, in the child, code that allocates (made
    // safe by glibc's fork handlers) and performs syscalls, never returns into the caller's
    // stack frames' destructors or async runtime, and ends with `_exit`.
    unsafe { nix::unistd::fork() }
}

/// `pidfd_open(2)`: a handle on `pid` that cannot be confused with a later process reusing it.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the kernel returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly returned, owned file descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_send_signal(2)`.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: the fd is valid for the call; a null siginfo is allowed; flags 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `IFF_UP` on the loopback interface of the calling thread's network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `request`, which lives
    // for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds `ifru_flags`.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered `min` or above.
pub(crate) fn dup_cloexec_above(fd: &impl AsRawFd, min: i32) -> io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `_exit(2)`: leaves a forked child without running the parent's atexit handlers or
/// destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Drops `capability` from the calling thread's bounding set (`PR_CAPBSET_DROP`).
pub(crate) fn capbset_drop(capability: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability as libc::c_ulong, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the ambient capability set.
pub(crate) fn clear_ambient_capabilities() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `capset(2)` (version 3, 64-bit masks): sets the effective and permitted sets to `mask` and
/// the inheritable set to empty.
pub(crate) fn capset(mask: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| Data {
        effective: (mask >> shift) as u32,
        permitted: (mask >> shift) as u32,
        inheritable: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: header and two data structs of the v3 layout live for the call.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec (`close_range` with `CLOSE_RANGE_CLOEXEC`).
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall with integer arguments; it only changes fd flags.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a classic BPF seccomp filter (`program` is a `struct sock_filter` array) on the
/// calling thread. `no_new_privs` must already be set, or the caller must have
/// `CAP_SYS_ADMIN`.
pub(crate) fn install_seccomp(program: &[u8]) -> io::Result<()> {
    if program.is_empty() || program.len() % std::mem::size_of::<libc::sock_filter>() != 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Copy into properly aligned instructions.
    let filters: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `filters`, which outlive the call; the kernel copies the program.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives an exec'd program default signal dispositions and an empty signal mask. Rust's runtime
/// ignores `SIGPIPE`, and ignored signals survive `execve`.
pub(crate) fn reset_signals() -> io::Result<()> {
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )?;
    for signal in nix::sys::signal::Signal::iterator() {
        if matches!(
            signal,
            nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP
        ) {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code; this process is single-threaded.
        unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) }?;
    }
    Ok(())
}

/// Takes ownership of a raw fd that a syscall wrapper just returned.
pub(crate) fn own_fd(raw: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: callers pass an fd freshly returned by the kernel that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A thread's CPU priority. Linux keeps policy and nice value per thread, and threads and
/// processes inherit them from the thread that creates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPriority {
    /// `SCHED_OTHER` at nice 0: a sandbox and whatever serves it.
    Normal,
    /// `SCHED_OTHER` at this nice value: work done ahead of time or behind the answers.
    Nice(i32),
}

/// Sets the CPU priority of thread `tid` (0: the calling thread). Raising a priority needs root
/// (msbd and supervisors are root here); failures leave it as it was.
pub fn set_cpu_priority(tid: i32, priority: CpuPriority) {
    let (policy, nice) = match priority {
        CpuPriority::Normal => (libc::SCHED_OTHER, 0),
        CpuPriority::Nice(nice) => (libc::SCHED_OTHER, nice),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls; `param` is a valid sched_param that outlives the call.
    unsafe {
        let _ = libc::sched_setscheduler(tid, policy, &param);
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
}

/// `open_tree(2)` flag: a detached copy of the tree, not the mount itself.
pub(crate) const OPEN_TREE_CLONE: u32 = 1;
/// `AT_RECURSIVE`: the whole tree of mounts below too.
pub(crate) const AT_RECURSIVE: u32 = 0x8000;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `openat2(2)` resolve flags.
pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x2;
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x4;
pub(crate) const RESOLVE_BENEATH: u64 = 0x8;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn fd_result(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(own_fd(ret as i32))
}

/// A detached (`OPEN_TREE_CLONE`) copy of the mount tree at `fd` itself (`AT_EMPTY_PATH`),
/// with the mounts below it when `recursive`. Close-on-exec.
pub(crate) fn clone_tree(fd: &impl AsRawFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the path is a static NUL-terminated empty string; the kernel returns a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    fd_result(ret)
}

/// `mount_setattr(2)` on the detached tree `tree`: sets `set` (with `userns` for
/// `MOUNT_ATTR_IDMAP`) on its top mount, or on every mount of it when `recursive`.
pub(crate) fn mount_setattr(
    tree: &OwnedFd,
    recursive: bool,
    set: u64,
    userns: Option<&OwnedFd>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `attr` is a live `struct mount_attr` whose size is passed; the path is a static
    // empty string; `tree` is a valid fd for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `move_mount(2)`: attaches the detached tree `tree` on the mount point `target` (an `O_PATH`
/// fd), both given by fd, so no path is resolved again.
pub(crate) fn move_mount(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: both fds are valid for the call; both paths are static empty strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `openat2(2)` of `path` relative to `dir` with `O_CLOEXEC | flags` and `resolve` rules.
pub(crate) fn openat2(
    dir: &impl AsRawFd,
    path: &std::ffi::CStr,
    flags: i32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: `path` is NUL-terminated and `how` a live `struct open_how` whose size is
    // passed; the kernel returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    fd_result(ret)
}

const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSCONFIG_CMD_RECONFIGURE: u32 = 7;

/// `fsconfig(fs, cmd, key, value, 0)` on a filesystem context (from `fsopen` or `fspick`).
fn fs_config(
    fs: &OwnedFd,
    cmd: u32,
    key: Option<&std::ffi::CStr>,
    value: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    // SAFETY: `fs` is a valid fs context fd; key and value are NUL-terminated or null.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new, detached ext4 mount of the block device `device` (`fsopen`/`fsconfig`/`fsmount`),
/// `nosuid,nodev,noexec`-free but `nosuid,nodev` always and read-only when asked. Close-on-exec.
/// With `barriers` off, the filesystem asks its device for no cache flushes: for a loop device
/// each flush is an `fsync` of the image on the host (a dozen per mount and unmount), which a
/// disk that is thrown away afterwards does not need ([`ext4_barriers_on`] turns them back on).
pub(crate) fn mount_block_ext4(
    device: &std::ffi::CStr,
    readonly: bool,
    barriers: bool,
) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: u32 = 0x1;
    const FSMOUNT_CLOEXEC: u32 = 0x1;
    // SAFETY: a static NUL-terminated name; the kernel returns a new fd or -1.
    let fs =
        fd_result(unsafe { libc::syscall(libc::SYS_fsopen, c"ext4".as_ptr(), FSOPEN_CLOEXEC) })?;
    fs_config(&fs, FSCONFIG_SET_STRING, Some(c"source"), Some(device))?;
    if readonly {
        fs_config(&fs, FSCONFIG_SET_FLAG, Some(c"ro"), None)?;
    }
    if !barriers {
        fs_config(&fs, FSCONFIG_SET_FLAG, Some(c"nobarrier"), None)?;
    }
    fs_config(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if readonly {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    // SAFETY: `fs` is a created fs context; flags and attributes are plain integers.
    fd_result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// Turns cache flushes (`barrier`) on, or off, for the ext4 filesystem mounted at `mount`
/// (opened as an `O_PATH` directory): a reconfiguration of its superblock (`fspick`), which
/// leaves every mount's own flags as they are.
pub(crate) fn ext4_barriers(mount: &OwnedFd, on: bool) -> io::Result<()> {
    const FSPICK_CLOEXEC: u32 = 0x1;
    const FSPICK_EMPTY_PATH: u32 = 0x8;
    // SAFETY: `mount` is a valid fd, the path an empty NUL-terminated string.
    let fs = fd_result(unsafe {
        libc::syscall(
            libc::SYS_fspick,
            mount.as_raw_fd(),
            c"".as_ptr(),
            FSPICK_CLOEXEC | FSPICK_EMPTY_PATH,
        )
    })?;
    let flag = if on { c"barrier" } else { c"nobarrier" };
    fs_config(&fs, FSCONFIG_SET_FLAG, Some(flag), None)?;
    fs_config(&fs, FSCONFIG_CMD_RECONFIGURE, None, None)
}

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

impl LoopInfo64 {
    /// All zero but `flags`.
    const fn with_flags(flags: u32) -> LoopInfo64 {
        LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: 0,
            sizelimit: 0,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags,
            file_name: [0; 64],
            crypt_name: [0; 64],
            encrypt_key: [0; 32],
            init: [0; 2],
        }
    }
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attaches the image `file` to a free loop device with autoclear (the device goes when its
/// last user does: the returned fd, then the mounts made from it) and direct I/O off. Returns
/// the open device and its path.
pub(crate) fn attach_loop(file: &std::fs::File, readonly: bool) -> io::Result<(OwnedFd, String)> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    const LO_FLAGS_READ_ONLY: u32 = 1;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut last = io::Error::from_raw_os_error(libc::EBUSY);
    // Another process may take the free device between the two calls: try again.
    for _ in 0..16 {
        // SAFETY: an ioctl without argument on the loop control device.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if number < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = format!("/dev/loop{number}");
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        let mut flags = LO_FLAGS_AUTOCLEAR;
        if readonly {
            flags |= LO_FLAGS_READ_ONLY;
        }
        let config = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64::with_flags(flags),
            reserved: [0; 8],
        };
        // SAFETY: `config` is a live `struct loop_config` the kernel only reads.
        let ret = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                LOOP_CONFIGURE,
                &config as *const LoopConfig,
            )
        };
        if ret == 0 {
            return Ok((device.into(), path));
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
    }
    Err(last)
}

/// The backing file of the loop device at `path`: its (device, inode), as `stat` gives them
/// (`LOOP_GET_STATUS64`).
pub(crate) fn loop_backing(path: &str) -> io::Result<(u64, u64)> {
    const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
    let device = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    let mut info = LoopInfo64::with_flags(0);
    // SAFETY: `info` is a live `struct loop_info64` the kernel fills.
    let ret = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_GET_STATUS64,
            &mut info as *mut LoopInfo64,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info.device, info.inode))
}

/// `copy_file_range(2)` of up to `len` bytes from `from` at `*from_offset` to `to` at
/// `*to_offset` (both advanced by what was copied); returns the bytes copied (0 at the end of
/// `from`).
pub(crate) fn copy_file_range(
    from: &std::fs::File,
    from_offset: &mut i64,
    to: &std::fs::File,
    to_offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call; the offsets are live i64s the kernel
    // reads and advances.
    let copied = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            from_offset,
            to.as_raw_fd(),
            to_offset,
            len,
            0,
        )
    };
    if copied < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copied as usize)
}

/// Whether this kernel runs x32 system calls: `getpid` with the x32 bit is `ENOSYS` where it
/// does not.
pub(crate) fn kernel_runs_x32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        *RUNS.get_or_init(|| {
            // SAFETY: getpid takes no arguments and changes nothing.
            unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) >= 0 }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
