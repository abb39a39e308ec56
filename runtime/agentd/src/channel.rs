//! The byte channel to the host: an inherited fd (a `SOCK_STREAM` socket in a namespace
//! sandbox; any stream-like fd works, e.g. a virtio-console port) read by the main thread and
//! written by every thread through one [`Writer`], so frames never interleave.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use msb_protocol::agent::FromAgent;
use nix::errno::Errno;

use crate::sys;

/// Environment variable naming the channel's fd number.
pub const AGENT_FD_ENV: &str = "MSB_AGENT_FD";
/// The channel's fd number when [`AGENT_FD_ENV`] is unset.
pub const DEFAULT_AGENT_FD: RawFd = 3;
/// Read-side buffering: one read syscall can carry several small frames.
const READ_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub enum ChannelError {
    /// `MSB_AGENT_FD` is not a number.
    BadFdVariable(String),
    /// The fd is not open or cannot be configured.
    Fd { fd: RawFd, errno: Errno },
    /// The fd could not be duplicated for the writer.
    Clone(std::io::Error),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::BadFdVariable(value) => {
                write!(f, "{AGENT_FD_ENV}={value:?} is not an fd number")
            }
            ChannelError::Fd { fd, errno } => write!(f, "channel fd {fd}: {errno}"),
            ChannelError::Clone(e) => write!(f, "duplicating the channel fd: {e}"),
        }
    }
}

/// Opens the channel named by `MSB_AGENT_FD` (default 3): a reader for the main thread and the
/// shared writer.
pub fn open_from_env() -> Result<(BufReader<File>, Arc<Writer>), ChannelError> {
    let fd = match std::env::var(AGENT_FD_ENV) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| ChannelError::BadFdVariable(value))?,
        Err(_) => DEFAULT_AGENT_FD,
    };
    let owned = sys::adopt_inherited_fd(fd).map_err(|errno| ChannelError::Fd { fd, errno })?;
    let reader = File::from(owned);
    let writer = reader.try_clone().map_err(ChannelError::Clone)?;
    Ok((
        BufReader::with_capacity(READ_BUFFER_BYTES, reader),
        Arc::new(Writer::new(writer)),
    ))
}

/// The one way frames reach the host.
pub struct Writer {
    stream: Mutex<File>,
    broken: AtomicBool,
}

impl Writer {
    pub fn new(stream: File) -> Self {
        Self {
            stream: Mutex::new(stream),
            broken: AtomicBool::new(false),
        }
    }

    /// Writes one whole frame. A failed write marks the channel broken (logged once); later
    /// messages are dropped, and the reader's end of stream starts the shutdown.
    pub fn send(&self, message: &FromAgent) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let frame = msb_protocol::encode(message);
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = stream.write_all(&frame) {
            if !self.broken.swap(true, Ordering::Relaxed) {
                log!("writing to the channel failed ({e}); dropping further messages");
            }
        }
    }
}
