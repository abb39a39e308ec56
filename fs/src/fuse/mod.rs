//! The `/dev/fuse` transport: worker threads that read FUSE requests from the device, hand
//! them to [`PassthroughFs`] and write the replies back.
//!
//! Two ways in:
//!
//! - [`mount`] opens `/dev/fuse`, mounts it (as root, `mount(2)` directly; no `fusermount`) on
//!   a mountpoint of the caller's mount namespace and serves it: the [`Session`] unmounts on
//!   drop. Tests, the benchmark and `msb-fs-mount` use it.
//! - [`serve`] serves a `/dev/fuse` descriptor that someone else mounted: msb's supervisor
//!   opens `/dev/fuse`, mounts it inside the sandbox's mount namespace with [`mount_data`] as
//!   the option string, and passes the descriptor here. The returned [`Server`] runs until
//!   the mount goes away (the device then answers `ENODEV`).
//!
//! Every worker reads from the same descriptor (the kernel hands each request to one reader),
//! with a buffer big enough for 1 MiB writes ([`dispatch::MAX_WRITE_BYTES`]). The mount has no
//! `default_permissions`: the kernel leaves permission checks to the server, which leaves them
//! to the host kernel on its own syscalls (made with the caller's fs ids).

mod abi;
mod dispatch;

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::mount::{MntFlags, MsFlags};

pub use dispatch::MAX_WRITE_BYTES;

/// How long [`Session::unmount`] waits for the workers to stop.
pub const UNMOUNT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

use crate::passthrough::{FsConfig, FsError, PassthroughFs};
use abi::Reader;
use dispatch::{Buffers, Outcome};

/// How [`mount`] mounts and serves.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// The file server's own settings (quota, cache timeouts).
    pub fs: FsConfig,
    /// Worker threads reading `/dev/fuse`.
    pub threads: usize,
    /// Mount read-only (`MS_RDONLY`).
    pub read_only: bool,
    /// Source name shown in `/proc/mounts` (type is `fuse.msb-fs`).
    pub source: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fs: FsConfig::default(),
            threads: default_threads(),
            read_only: false,
            source: "msb-fs".to_string(),
        }
    }
}

/// Worker threads by default: the CPUs available, between 2 and 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("serve the directory")]
    Fs(#[from] FsError),
    #[error("open /dev/fuse")]
    OpenDevice(#[source] io::Error),
    #[error("mount FUSE on {mountpoint}")]
    Mount {
        mountpoint: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmount {mountpoint}")]
    Unmount {
        mountpoint: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("start a FUSE worker thread")]
    Spawn(#[source] io::Error),
}

/// The `mount(2)` data string for a FUSE mount of `/dev/fuse` descriptor `fd`: root directory
/// mode, owner ids, `allow_other`, and no `default_permissions`.
pub fn mount_data(fd: i32, owner_uid: u32, owner_gid: u32) -> String {
    format!("fd={fd},rootmode=40000,user_id={owner_uid},group_id={owner_gid},allow_other")
}

/// Opens `/dev/fuse` (close-on-exec).
pub fn open_device() -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
        .map(OwnedFd::from)
}

/// Serves `fs` over `mountpoint`, a directory of the caller's mount namespace. Needs root
/// (`CAP_SYS_ADMIN`).
pub fn mount(dir: &Path, mountpoint: &Path, options: &MountOptions) -> Result<Session, MountError> {
    let fs = Arc::new(PassthroughFs::new(dir, options.fs.clone())?);
    let device = open_device().map_err(MountError::OpenDevice)?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if options.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let data = mount_data(
        device.as_raw_fd(),
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    nix::mount::mount(
        Some(options.source.as_str()),
        mountpoint,
        Some("fuse.msb-fs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|source| MountError::Mount {
        mountpoint: mountpoint.to_path_buf(),
        source,
    })?;
    let server = match serve(device, fs, options.threads) {
        Ok(server) => server,
        Err(e) => {
            let _ = nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH);
            return Err(MountError::Spawn(e));
        }
    };
    Ok(Session {
        mountpoint: mountpoint.to_path_buf(),
        server: Some(server),
    })
}

/// Serves `fs` on a `/dev/fuse` descriptor with `threads` workers (at least one), mounted
/// already or by another process within [`MOUNT_WAIT`] (until then the workers retry). Returns
/// at once; the workers stop when the mount goes away.
pub fn serve(fuse_fd: OwnedFd, fs: Arc<PassthroughFs>, threads: usize) -> io::Result<Server> {
    let device = Arc::new(File::from(fuse_fd));
    let gate = Arc::new(MountGate::default());
    let mut workers = Vec::new();
    for index in 0..threads.max(1) {
        let device = Arc::clone(&device);
        let fs = Arc::clone(&fs);
        let gate = Arc::clone(&gate);
        let worker = std::thread::Builder::new()
            .name(format!("msb-fs-{index}"))
            .spawn(move || {
                if index == 0 {
                    let _settled = Settle(&gate);
                    work(&device, &fs, Some(&gate));
                } else if gate.wait() {
                    work(&device, &fs, None);
                }
            })?;
        workers.push(worker);
    }
    Ok(Server { fs, workers })
}

/// Until the connection is mounted (a sandbox's PID 1 mounts it after [`serve`]), reading it
/// fails and a worker polls; only the first worker does, the others wait here until it has
/// read a first request (then they serve too) or given up (then they stop): a poll every
/// 200 µs per worker took CPU from the PID 1 being waited for.
#[derive(Default)]
struct MountGate {
    /// `Some(true)`: mounted; `Some(false)`: the first worker stopped before it was.
    state: std::sync::Mutex<Option<bool>>,
    changed: std::sync::Condvar,
}

impl MountGate {
    fn settle(&self, mounted: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(mounted);
            self.changed.notify_all();
        }
    }

    /// Whether the connection got mounted (waits at most [`MOUNT_WAIT`] for the first worker).
    fn wait(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = self
            .changed
            .wait_timeout_while(state, MOUNT_WAIT, |state| state.is_none())
            .unwrap_or_else(|p| p.into_inner());
        state.unwrap_or(false)
    }
}

/// Settles the gate as not mounted when the first worker stops, however it stops (a no-op if
/// it was mounted by then).
struct Settle<'a>(&'a MountGate);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.0.settle(false);
    }
}

/// The workers serving one `/dev/fuse` descriptor.
#[derive(Debug)]
pub struct Server {
    fs: Arc<PassthroughFs>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// The file server (for its counters).
    pub fn fs(&self) -> &Arc<PassthroughFs> {
        &self.fs
    }

    /// Whether every worker has stopped.
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.is_finished())
    }

    /// Waits for every worker to stop (the mount is gone or the connection was aborted).
    pub fn join(self) {
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// A mounted, served directory. Dropping it detaches the mount (`MNT_DETACH`); the workers
/// stop once nothing uses it any more.
#[derive(Debug)]
pub struct Session {
    mountpoint: PathBuf,
    server: Option<Server>,
}

impl Session {
    /// The file server (for its counters).
    pub fn fs(&self) -> &Arc<PassthroughFs> {
        match &self.server {
            Some(server) => server.fs(),
            None => unreachable!("the server is only taken by unmount"),
        }
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts (lazily) and waits up to [`UNMOUNT_GRACE`] for the workers to stop. They stop
    /// when the kernel ends the connection, which it does only once no mount namespace holds
    /// the mount any more: a namespace created while it was mounted (another sandbox, an
    /// `unshare -m`) keeps a copy alive. The workers are then left running; the connection
    /// ends when this process closes `/dev/fuse` (at its exit).
    pub fn unmount(mut self) -> Result<(), MountError> {
        let result =
            nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH).map_err(|source| {
                MountError::Unmount {
                    mountpoint: self.mountpoint.clone(),
                    source,
                }
            });
        if let Some(server) = self.server.take() {
            if result.is_ok() {
                let deadline = std::time::Instant::now() + UNMOUNT_GRACE;
                while !server.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                if server.is_finished() {
                    server.join();
                } else {
                    tracing::warn!(
                        mountpoint = %self.mountpoint.display(),
                        "msb-fs: unmounted here but the connection lives on (another mount \
                         namespace holds a copy of the mount); workers left running"
                    );
                }
            }
        }
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH);
        }
    }
}

/// How long a worker of [`serve`] waits for its connection to be mounted (by another process,
/// maybe after this call) before it gives up.
const MOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One worker: read a request, dispatch, reply, until the device says the mount is gone.
fn work(device: &File, fs: &PassthroughFs, gate: Option<&MountGate>) {
    let mut request = vec![0u8; MAX_WRITE_BYTES as usize + 4096];
    let mut bufs = Buffers::new();
    let started = std::time::Instant::now();
    let mut connected = false;
    loop {
        let len = match (&*device).read(&mut request) {
            Ok(len) => {
                if !connected {
                    connected = true;
                    if let Some(gate) = gate {
                        gate.settle(true);
                    }
                }
                len
            }
            Err(e) => match e.raw_os_error() {
                // The request was interrupted before we read it, or a signal woke us.
                Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                // Not mounted yet: [`serve`] may start before the mount (a sandbox's PID 1
                // mounts the connection and uses it at once, so it must be served by then).
                Some(libc::EPERM) if !connected && started.elapsed() < MOUNT_WAIT => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    continue;
                }
                // Unmounted or aborted: the normal end.
                Some(libc::ENODEV) => return,
                _ => {
                    tracing::error!("msb-fs: reading /dev/fuse failed, worker stops: {e}");
                    return;
                }
            },
        };
        let mut reader = Reader::new(&request[..len]);
        let header = match abi::in_header(&mut reader) {
            Ok(header) if header.len as usize == len => header,
            _ => {
                tracing::warn!("msb-fs: dropped a malformed {len}-byte request");
                continue;
            }
        };
        let outcome = dispatch::dispatch(fs, &header, &mut reader, &mut bufs);
        let (error, payload): (i32, &[u8]) = match outcome {
            Outcome::NoReply => continue,
            Outcome::Reply => (0, &bufs.out),
            Outcome::ReadData(n) => (0, &bufs.read[..n]),
            Outcome::Error(errno) => (-errno, &[]),
        };
        let out_header =
            abi::out_header(abi::OUT_HEADER_BYTES + payload.len(), error, header.unique);
        let reply = [IoSlice::new(&out_header), IoSlice::new(payload)];
        if let Err(e) = (&*device).write_vectored(&reply) {
            match e.raw_os_error() {
                // The request was interrupted meanwhile: the kernel no longer wants the answer.
                Some(libc::ENOENT) => {}
                Some(libc::ENODEV) => return,
                _ => tracing::warn!("msb-fs: reply to opcode {} failed: {e}", header.opcode),
            }
        }
    }
}
