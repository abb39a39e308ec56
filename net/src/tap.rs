//! Opening the guest's TAP device: the frame descriptor a namespace sandbox hands to
//! [`crate::Network::start`]. The device must be created inside the sandbox's network
//! namespace; [`open_in_netns`] does that from any thread of the supervisor.
//!
//! Configuring the guest side (address, MTU, default route, `/etc/resolv.conf`) is left to the
//! caller, with the values of [`crate::NetConfig::guest_setup`].
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Creates (or attaches to) TAP device `name` in the calling thread's network namespace and
/// returns its descriptor, one Ethernet frame per read/write, without packet information.
pub fn open(name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', '\0', ' ']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: a 16-byte name, then the flags (a short) at the start of a 24-byte union.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; ifreq is a live 40-byte buffer (the
    // size of struct ifreq on Linux) that outlives the call.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(tun))
}

/// Opens TAP device `name` inside the network namespace at `netns` (for example
/// `/proc/PID/ns/net` or `/run/netns/NAME`), from a short-lived thread that enters it.
pub fn open_in_netns(netns: &Path, name: &str) -> io::Result<OwnedFd> {
    let ns = File::open(netns)?;
    let name = name.to_owned();
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we own; it changes only this (short-lived) thread's
        // network namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        open(&name)
    })
    .join()
    .map_err(|_| io::Error::other("TAP thread panicked"))?
}

/// A connected `SOCK_SEQPACKET` pair: one end for [`crate::Network::start`], the other playing
/// the guest's NIC (one Ethernet frame per message). Used by tests and by microVM backends.
pub fn frame_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into a live two-element array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
