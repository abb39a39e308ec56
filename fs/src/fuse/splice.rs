//! Zero-copy receive: requests are spliced from `/dev/fuse` into a pipe, and the payload of a
//! `WRITE` is spliced from the pipe into the host file, so its bytes are never copied through
//! the server's memory (the kernel hands over page references). Everything else is read out
//! of the pipe into the request buffer and dispatched as usual.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::abi::{self, opcode, InHeader, Reader};
use super::dispatch::{Buffers, Outcome};
use crate::passthrough::PassthroughFs;
use crate::sys;

/// Header and `fuse_write_in` of a `WRITE` request, in bytes.
const WRITE_PREFIX_BYTES: usize = 80;

/// A worker's pipe. Its capacity must hold a whole request (a 1 MiB write spans 257 pages).
#[derive(Debug)]
pub struct Pipe {
    read: File,
    write: OwnedFd,
}

impl Pipe {
    /// A pipe of `bytes` capacity; growing past `/proc/sys/fs/pipe-max-size` needs
    /// `CAP_SYS_RESOURCE`, so this fails for an unprivileged server (which then reads).
    pub fn new(bytes: usize) -> io::Result<Pipe> {
        let (read, write) = sys::pipe_with_capacity(bytes)?;
        Ok(Pipe {
            read: File::from(read),
            write,
        })
    }

    /// Takes one request from `device`: its first bytes land in `request` (everything, or the
    /// 80-byte prefix of a `WRITE`), the rest stays in the pipe. Returns (bytes in `request`,
    /// bytes left in the pipe).
    pub fn receive(&mut self, device: &File, request: &mut [u8]) -> io::Result<(usize, usize)> {
        let total = sys::splice(device.as_fd(), self.write.as_fd(), None, request.len())?;
        let head = total.min(abi::IN_HEADER_BYTES);
        self.read.read_exact(&mut request[..head])?;
        let opcode = request
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes);
        if opcode == Some(opcode::WRITE) && total >= WRITE_PREFIX_BYTES {
            self.read
                .read_exact(&mut request[head..WRITE_PREFIX_BYTES])?;
            Ok((WRITE_PREFIX_BYTES, total - WRITE_PREFIX_BYTES))
        } else {
            self.read.read_exact(&mut request[head..total])?;
            Ok((total, 0))
        }
    }

    /// Serves a `WRITE` whose payload (`in_pipe` bytes) is still in the pipe; `body` is its
    /// `fuse_write_in`. Whatever the quota or an error left unwritten is drained.
    pub fn write(
        &mut self,
        fs: &PassthroughFs,
        body: &mut Reader<'_>,
        in_pipe: usize,
        scratch: &mut [u8],
        bufs: &mut Buffers,
    ) -> Outcome {
        bufs.out.clear();
        let mut left = in_pipe;
        let result = (|| {
            let handle = body.u64()?;
            let offset = body.u64()?;
            let size = body.u32()? as usize;
            if size != in_pipe {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let pipe = &self.read;
            fs.write_from(handle, offset, size, &mut |file, offset, len| {
                let mut done = 0;
                while done < len {
                    match sys::splice(
                        pipe.as_fd(),
                        file.as_fd(),
                        Some(offset + done as u64),
                        len - done,
                    ) {
                        Ok(0) => break,
                        Ok(n) => {
                            done += n;
                            left -= n;
                        }
                        // An O_APPEND file takes no offset: go through memory.
                        Err(e) if done == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                            let buf = &mut scratch[..len];
                            (&*pipe).read_exact(buf)?;
                            left -= len;
                            file.write_all_at(buf, offset)?;
                            return Ok(len);
                        }
                        Err(e) if done == 0 => return Err(e),
                        Err(_) => break,
                    }
                }
                Ok(done)
            })
        })();
        if let Err(e) = self.drain(left, scratch) {
            tracing::error!("msb-fs: could not drain a write's leftover from the pipe: {e}");
        }
        match result {
            Ok(written) => {
                abi::put_u32(&mut bufs.out, written as u32);
                abi::put_u32(&mut bufs.out, 0);
                Outcome::Reply
            }
            Err(e) => Outcome::Error(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn drain(&mut self, mut left: usize, scratch: &mut [u8]) -> io::Result<()> {
        while left > 0 {
            let n = left.min(scratch.len());
            self.read.read_exact(&mut scratch[..n])?;
            left -= n;
        }
        Ok(())
    }
}

/// Whether a request can be dispatched from the bytes in `request` alone.
pub fn is_spliced_write(header: &InHeader, in_pipe: usize) -> bool {
    header.opcode == opcode::WRITE && in_pipe > 0
}
