//! The few syscalls that neither std nor nix wraps safely: adopting an inherited fd, starting a
//! session's process (`clone` with `CLONE_VM | CLONE_VFORK`, set up between its start and its
//! exec), terminal resizing and bringing `lo` up. This is the only module of the agent that may
//! use `unsafe`.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::SigSet;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;

/// Makes sure fds 0, 1 and 2 are open (on `/dev/null`, or `/` without `/dev`). PID 1 may
/// start without them, and then the next pipe would become fd 2 and receive our log lines.
pub fn ensure_standard_fds() {
    for fd in 0..3 {
        if fcntl(fd, FcntlArg::F_GETFD) != Err(Errno::EBADF) {
            continue;
        }
        // open(2) returns the lowest free fd, which is `fd`; it stays open for good.
        let opened = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .or_else(|_| open("/", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()));
        if opened.is_err() {
            return;
        }
    }
}

/// Takes ownership of an fd inherited from the parent and marks it close-on-exec so that no
/// session process inherits it.
pub fn adopt_inherited_fd(fd: RawFd) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    // Fails with EBADF when `fd` is not open.
    fcntl(fd, FcntlArg::F_GETFD)?;
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: `fd` is open (checked above) and was inherited from our parent; nothing else in
    // this process refers to it, and this function is called once per fd at start-up, so the
    // returned `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A process for [`spawn`] to start, prepared in full by the caller: between its start and
/// its exec the child makes system calls only, with these values.
pub struct ChildPlan {
    /// The file to exec (already resolved on `PATH`).
    pub program: CString,
    pub argv: Vec<CString>,
    /// `KEY=VALUE` entries.
    pub env: Vec<CString>,
    pub workdir: Option<CString>,
    /// The child's fds 0, 1 and 2 (each above 2; the same fd may serve several).
    pub stdio: [RawFd; 3],
    /// Makes the child a session leader whose controlling terminal is its stdin (a PTY slave).
    pub controlling_terminal: bool,
}

/// What the child of [`spawn`] reads, by pointers into the parent's memory (which it shares
/// until its exec).
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    workdir: *const libc::c_char,
    stdio: [RawFd; 3],
    controlling_terminal: bool,
    /// Write end of the close-on-exec pipe a failed child reports its errno on.
    report: RawFd,
}

/// Stack of the child until its exec: it runs a few system call wrappers.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// Starts `plan`'s process and returns its pid once it has exec'd; a failure before or at its
/// exec comes back as the child's errno (the child is then reaped, unless the reaper was
/// first).
///
/// The child shares the agent's memory and the parent thread waits until the exec
/// (`CLONE_VM | CLONE_VFORK`, what `posix_spawn` does): no page table is copied, and no page of
/// the agent is made copy-on-write, as a `fork` would (a millisecond for a fresh sandbox's
/// first process on a nested-virtualisation host). The child sets every signal's action to the
/// default (an ignored signal stays ignored across exec, and the agent may have been started
/// with some ignored, as a background job of a shell is), raises its `oom_score_adj`, moves its
/// stdio into place, changes directory, makes the terminal its own when asked, unblocks every
/// signal (all of them are blocked from before the clone, so no handler of the agent runs on
/// the shared memory) and execs.
pub fn spawn(plan: &ChildPlan) -> io::Result<i32> {
    if plan.stdio.iter().any(|fd| *fd <= 2) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let argv = pointers(&plan.argv);
    let envp = pointers(&plan.env);
    let (report_read, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let args = ChildArgs {
        program: plan.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        workdir: plan
            .workdir
            .as_ref()
            .map_or(std::ptr::null(), |dir| dir.as_ptr()),
        stdio: plan.stdio,
        controlling_terminal: plan.controlling_terminal,
        report: report_write.as_raw_fd(),
    };
    let mut stack = vec![0u8; CHILD_STACK_BYTES];
    // SAFETY: the stack grows down from its end, rounded down to the 16 bytes the ABI wants;
    // the pointer stays inside the allocation.
    let stack_top = unsafe { stack.as_mut_ptr().add(CHILD_STACK_BYTES) as usize & !15 };
    let previous = SigSet::all().thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_SETMASK)?;
    // SAFETY: `child_main` only makes async-signal-safe calls on `args`, which (with `argv`,
    // `envp`, `plan` and `stack`) lives until `clone` returns: `CLONE_VFORK` suspends this
    // thread until the child has exec'd or exited, and the child never returns into this
    // frame (it execs or calls `_exit`). Every signal is blocked meanwhile.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack_top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &args as *const ChildArgs as *mut libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    let _ = previous.thread_set_mask();
    drop(report_write);
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let mut errno = [0u8; 4];
    let mut report = std::fs::File::from(report_read);
    match std::io::Read::read(&mut report, &mut errno) {
        Ok(4) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
        }
        _ => Ok(pid),
    }
}

/// The child of [`spawn`], on the agent's memory until its exec: system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of the suspended parent (see `spawn`); every pointer in
    // it is valid until the exec. The calls below are async-signal-safe and allocate nothing.
    unsafe {
        let args = &*(arg as *const ChildArgs);
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        prefer_for_oom_kill();
        for (target, fd) in (0..).zip(args.stdio) {
            // dup2 onto itself would keep close-on-exec; spawn refuses fds 0-2.
            if libc::dup2(fd, target) < 0 {
                fail(args.report);
            }
        }
        if !args.workdir.is_null() && libc::chdir(args.workdir) < 0 {
            fail(args.report);
        }
        if args.controlling_terminal
            && (libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0)
        {
            fail(args.report);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(args.program, args.argv, args.envp);
        fail(args.report)
    }
}

/// Ends the child of [`spawn`] after reporting its errno on `report`.
///
/// # Safety
/// Only in that child, before its exec.
unsafe fn fail(report: RawFd) -> ! {
    let errno = *libc::__errno_location();
    libc::write(report, (&errno as *const libc::c_int).cast(), 4);
    libc::_exit(127)
}

/// Makes the calling process the OOM killer's first choice (`oom_score_adj` 1000, as
/// Kubernetes gives best-effort pods). The agent itself keeps a lower score (-1000 where the
/// launcher could set it, else 0), so that within the sandbox's memory cgroup the kernel always
/// picks a workload before PID 1, and on a host short of memory untrusted code goes before the
/// host's own processes. Raising one's own score needs no privilege. Called in the child of
/// [`spawn`]: only async-signal-safe calls, no allocation; a failure (no `/proc`) leaves the
/// inherited score.
fn prefer_for_oom_kill() {
    const PATH: &[u8] = b"/proc/self/oom_score_adj\0";
    // SAFETY: PATH is NUL-terminated and static; the fd returned is closed below and used for
    // one write of a static buffer.
    unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            let _ = libc::write(fd, b"1000\n".as_ptr().cast(), 5);
            libc::close(fd);
        }
    }
}

/// Sets the window size of the terminal behind `fd` (a PTY master).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points at a live,
    // initialised value for the duration of the call; `fd` is a valid borrowed descriptor.
    let result = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &size as *const libc::winsize,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings the loopback interface up if it is down. Errors are logged and otherwise ignored:
/// a sandbox without a working `lo` is degraded, not broken.
pub fn bring_up_loopback() {
    if let Err(e) = try_bring_up_loopback() {
        log!("cannot bring up lo: {e}");
    }
}

fn try_bring_up_loopback() -> io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers, arrays and
    // pointers) for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS writes into the `ifreq` we pass, which lives across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel filled the `ifru_flags` member.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the `ifreq` we pass, which lives across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    note!("brought lo up");
    Ok(())
}
