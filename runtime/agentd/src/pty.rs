//! Pseudo-terminals for PTY sessions: opening a pair of the requested size (the child gets the
//! slave as its stdio and controlling terminal: `sys::spawn`) and resizing through the master.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};

use crate::sys;

/// A freshly opened terminal pair; both ends are close-on-exec.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a PTY of `rows` × `cols`.
pub fn open(rows: u16, cols: u16) -> io::Result<Pty> {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pair = openpty(&size, None)?;
    // Only the main thread forks, so nothing can inherit these before they are marked.
    for fd in [&pair.master, &pair.slave] {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok(Pty {
        master: pair.master,
        slave: pair.slave,
    })
}

/// Sets the terminal size; the foreground process group gets SIGWINCH from the kernel.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    sys::set_window_size(master.as_fd(), rows, cols)
}
