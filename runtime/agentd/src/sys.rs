//! The few syscalls that neither std nor nix wraps safely: adopting an inherited fd, preparing
//! a child between fork and exec (signal mask, controlling terminal), terminal resizing and bringing `lo` up. This is the
//! only module of the agent that may use `unsafe`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// Prepares the child started by `command` just before it execs: unblocks every signal (the
/// agent blocks the ones it reads through its signalfd, a mask survives exec, and std leaves it
/// alone), gives every standard signal its default action (an ignored one stays ignored across
/// exec, and the agent may have been started with some ignored, as a background job of a
/// shell is: `SIGINT` and `SIGQUIT`) and, with `controlling_terminal`, makes the child a session leader whose controlling
/// terminal is its stdin (the PTY slave).
pub fn prepare_child(command: &mut Command, controlling_terminal: bool) {
    // SAFETY: the closure runs in the forked child before exec. It only calls
    // pthread_sigmask(3), signal(2), open(2), write(2), close(2), setsid(2) and ioctl(2), all
    // async-signal-safe, with a static path and buffer, and builds an
    // `io::Error` from an errno, which does not allocate; it touches no lock or other state
    // shared with the parent's threads.
    unsafe {
        command.pre_exec(move || {
            SigSet::empty().thread_set_mask()?;
            for signal in 1..32 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            prefer_for_oom_kill();
            if controlling_terminal {
                nix::unistd::setsid()?;
                // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is the PTY slave (std sets
                // up the child's stdio before running pre_exec closures).
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes the calling process the OOM killer's first choice (`oom_score_adj` 1000, as
/// Kubernetes gives best-effort pods). The agent itself keeps a lower score (-1000 where the
/// launcher could set it, else 0), so that within the sandbox's memory cgroup the kernel always
/// picks a workload before PID 1, and on a host short of memory untrusted code goes before the
/// host's own processes. Raising one's own score needs no privilege. Called between fork and
/// exec: only async-signal-safe calls, no allocation; a failure (no `/proc`) leaves the
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
    log!("brought lo up");
    Ok(())
}
