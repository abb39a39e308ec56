//! A served directory mounted through /dev/fuse on a temporary mountpoint, unmounted on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use msb_fs::{FsConfig, MountOptions, Session};

pub const MIB: u64 = 1 << 20;

pub struct Mounted {
    pub served: PathBuf,
    pub mnt: PathBuf,
    pub outside: PathBuf,
    pub session: Option<Session>,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    pub fn session(&self) -> &Session {
        self.session.as_ref().expect("mounted")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.unmount().expect("unmount");
        }
    }
}

/// Why this host cannot run the FUSE tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to mount FUSE".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("/dev/fuse unusable: {e}"));
    }
    None
}

/// Mounts a fresh served directory (filled by `prepare` first) with `quota_bytes`; `None` when
/// the host cannot (the reason is printed).
pub fn mount(quota_bytes: Option<u64>, prepare: impl FnOnce(&Path, &Path)) -> Option<Mounted> {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let served = tmp.path().join("served");
    let mnt = tmp.path().join("mnt");
    let outside = tmp.path().join("outside");
    for dir in [&served, &mnt, &outside] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    prepare(&served, &outside);
    let options = MountOptions {
        fs: FsConfig {
            quota_bytes,
            ..FsConfig::default()
        },
        ..MountOptions::default()
    };
    let session = msb_fs::mount(&served, &mnt, &options).expect("mount");
    Some(Mounted {
        served,
        mnt,
        outside,
        session: Some(session),
        _tmp: tmp,
    })
}
