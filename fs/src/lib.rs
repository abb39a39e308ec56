//! `msb-fs`: PassthroughFs, the file server msb puts between a sandbox and the host
//! directories it is given (`/.msb`, `-v` binds, named directory volumes, `--rootfs DIR`).
//!
//! Where to start:
//!
//! - [`PassthroughFs`] (module [`passthrough`]) is the transport-independent core: the inode
//!   table of `O_PATH` descriptors, every operation, the rules for touching the host (never
//!   follow a symbolic link, never resolve a path string, `/` and `..` in names refused);
//! - [`quota`] is the write-quota ledger (microsandbox's semantics: only growth is charged,
//!   optimistic with a recount at the limit, a synthetic `statfs`);
//! - [`counters`] is what the server counts for msb's metrics ([`CountersSnapshot`]);
//! - [`fuse`] speaks the FUSE protocol on `/dev/fuse` to the core: [`mount`] for a mount in the
//!   caller's namespace, [`serve`] for a `/dev/fuse` descriptor the supervisor already mounted
//!   (for example inside a sandbox's mount namespace). virtio-fs can reuse the core later: it
//!   carries the same messages.
//!
//! `unsafe` is confined to the private `sys` module (one wrapper per syscall, each block with a
//! `SAFETY` comment); the FUSE messages are parsed and built from bytes without it.

pub mod counters;
pub mod fuse;
pub mod passthrough;
pub mod quota;
mod sys;

pub use counters::{CountersSnapshot, Op};
pub use fuse::{mount, mount_data, open_device, serve, MountError, MountOptions, Server, Session};
pub use passthrough::{
    Context, DirEntry, Entry, FsConfig, FsError, IdShift, PassthroughFs, SetAttr, SetTime, StatFs,
    OVERFLOW_ID, ROOT_INODE,
};
pub use quota::QuotaState;
