//! Opening the guest's TAP device: the frame descriptor a namespace sandbox hands to
//! [`crate::Network::start`]. The device must be created inside the sandbox's network
//! namespace; [`open_in_netns`] does that from any thread of the supervisor.
//!
//! [`configure`] (or [`open_in_netns`] with a [`GuestSetup`]) also sets the interface's address,
//! MTU and default route with ioctls, so no `ip` binary is needed; writing the guest's
//! `/etc/resolv.conf` and `/etc/hosts` stays the caller's (see [`GuestSetup`]).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::config::GuestSetup;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

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
/// `/proc/PID/ns/net` or `/run/netns/NAME`), from a short-lived thread that enters it, and
/// configures it (and brings `lo` up) when `setup` is given.
pub fn open_in_netns(netns: &Path, name: &str, setup: Option<&GuestSetup>) -> io::Result<OwnedFd> {
    open_in(File::open(netns)?, name, setup)
}

/// [`open_in_netns`] for a namespace already open as `netns` (a descriptor of
/// `/proc/PID/ns/net`, say, opened while that process was known to be in it).
pub fn open_in(netns: File, name: &str, setup: Option<&GuestSetup>) -> io::Result<OwnedFd> {
    let name = name.to_owned();
    let setup = setup.cloned();
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we own; it changes only this (short-lived) thread's
        // network namespace.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let tap = open(&name)?;
        if let Some(setup) = setup {
            configure("lo", None)?;
            configure(&name, Some(&setup))?;
        }
        Ok(tap)
    })
    .join()
    .map_err(|_| io::Error::other("TAP thread panicked"))?
}

/// Brings interface `name` of the calling thread's namespace up; with `setup`, first gives it
/// the address, prefix and MTU, then adds the default route via the gateway.
pub fn configure(name: &str, setup: Option<&GuestSetup>) -> io::Result<()> {
    // SAFETY: socket takes no pointers; a non-negative result is a descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = |code: libc::c_ulong, fill: &dyn Fn(&mut [u8; 40])| -> io::Result<[u8; 40]> {
        let mut ifreq = [0u8; 40];
        ifreq[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
        fill(&mut ifreq);
        // SAFETY: the SIOC*IF* requests read and write one struct ifreq, 40 bytes on Linux;
        // ifreq is a live buffer of that size.
        if unsafe { libc::ioctl(socket.as_raw_fd(), code, ifreq.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ifreq)
    };
    if let Some(setup) = setup {
        let mask = Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(setup.prefix_len))
                .unwrap_or(0),
        );
        request(libc::SIOCSIFADDR, &|r| {
            put_sockaddr(&mut r[16..32], setup.address)
        })?;
        request(libc::SIOCSIFNETMASK, &|r| {
            put_sockaddr(&mut r[16..32], mask)
        })?;
        let mtu = setup.mtu as libc::c_int;
        request(libc::SIOCSIFMTU, &|r| {
            r[16..20].copy_from_slice(&mtu.to_ne_bytes())
        })?;
    }
    let flags = request(libc::SIOCGIFFLAGS, &|_| {})?;
    let up = i16::from_ne_bytes([flags[16], flags[17]]) | (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    request(libc::SIOCSIFFLAGS, &|r| {
        r[16..18].copy_from_slice(&up.to_ne_bytes())
    })?;
    if let Some(setup) = setup {
        add_default_route(&socket, setup.gateway)?;
    }
    Ok(())
}

/// Writes an IPv4 `struct sockaddr_in` (family, port 0, address) into `out` (16 bytes).
fn put_sockaddr(out: &mut [u8], addr: Ipv4Addr) {
    out.fill(0);
    out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    out[4..8].copy_from_slice(&addr.octets());
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let mut bytes = [0u8; 16];
    put_sockaddr(&mut bytes, addr);
    let mut data = [0 as libc::c_char; 14];
    for (d, b) in data.iter_mut().zip(&bytes[2..]) {
        *d = *b as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

fn add_default_route(socket: &OwnedFd, gateway: Ipv4Addr) -> io::Result<()> {
    // SAFETY: rtentry is a plain C struct for which all-zero bytes are a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr(gateway);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads one struct rtentry; route is live for the call and its rt_dev
    // is null (the kernel picks the interface from the gateway).
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &mut route) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EEXIST) {
            return Err(error);
        }
    }
    Ok(())
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
