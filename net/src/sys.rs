//! The few syscalls the data path makes: an eventfd-based wake-up, `poll(2)`, and frame-sized
//! `read`/`write` on a non-blocking device descriptor. The only module with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Wakes one sleeping thread. A waker calls [`Notifier::notify`] after publishing work; the
/// sleeper calls [`Notifier::arm`], then checks [`Notifier::take_pending`] and its queues, then
/// [`Notifier::wait`]s. The eventfd is written only when the sleeper is armed, so a busy
/// pipeline makes no syscalls for wake-ups, and no wake-up is lost between check and sleep.
#[derive(Debug)]
pub(crate) struct Notifier {
    fd: OwnedFd,
    armed: AtomicBool,
    pending: AtomicBool,
}

impl Notifier {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Notifier {
            fd,
            armed: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        })
    }

    /// Records that there is work and wakes the sleeper if it is armed.
    pub(crate) fn notify(&self) {
        self.pending.store(true, SeqCst);
        if self.armed.swap(false, SeqCst) {
            self.signal();
        }
    }

    /// Wakes the sleeper whatever its state (used to stop it).
    pub(crate) fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live stack buffer to our eventfd. A full counter
        // (EAGAIN) already means "wake up", so the result is ignored.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Announces that the caller is about to sleep; it must re-check for work afterwards.
    pub(crate) fn arm(&self) {
        self.armed.store(true, SeqCst);
    }

    /// Whether [`Notifier::notify`] was called since the last call; clears the mark.
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.swap(false, SeqCst)
    }

    pub(crate) fn disarm(&self) {
        self.armed.store(false, SeqCst);
    }

    /// Sleeps until notified, one of `extra` (descriptors and poll events) is ready, or
    /// `timeout_ms` passes (-1: no timeout).
    pub(crate) fn wait(&self, extra: &[(RawFd, i16)], timeout_ms: i32) {
        let mut fds = Vec::with_capacity(1 + extra.len());
        fds.push(libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        fds.extend(extra.iter().map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        }));
        // SAFETY: fds is a live vector of fds.len() pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        self.armed.store(false, SeqCst);
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            let mut count = [0u8; 8];
            // SAFETY: reads 8 bytes into a live stack buffer from our non-blocking eventfd.
            unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
    }
}

/// Puts `fd` in non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one frame (one `read` on a TAP or one datagram of a socketpair) into `buf`.
pub(crate) fn read_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, writable slice of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes one frame.
pub(crate) fn write_frame(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: frame is a live slice of frame.len() readable bytes.
    let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// An unprivileged ICMP echo socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), non-blocking. Fails with
/// `EACCES` unless the caller's group is in `net.ipv4.ping_group_range`.
pub(crate) fn ping_socket() -> io::Result<std::net::UdpSocket> {
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(std::net::UdpSocket::from(unsafe {
        OwnedFd::from_raw_fd(fd)
    }))
}
