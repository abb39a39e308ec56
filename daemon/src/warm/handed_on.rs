//! Root disks handed on (`msb_runtime::hand_on`): msbd takes the disk an ephemeral run's
//! supervisor sends, keeps one for the next warm supervisor it spawns, and lets it go when it
//! waits too long, is replaced or msbd stops; images whose supervisor died on the way go too.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::WarmPool;

/// How long a disk handed on waits for a supervisor to be spawned before it goes.
const HANDED_ON_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the image of a disk whose supervisor died before handing it on stays.
const HANDED_ON_ABANDONED: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets a disk handed on go: its filesystem with the fd, its image deleted.
pub(super) fn discard_handed_on(disk: msb_runtime::hand_on::HandedOnDisk) {
    let _ = std::fs::remove_file(&disk.image);
}

impl WarmPool {
    /// Takes the root disks ephemeral runs hand on (`msb_runtime::hand_on`), on a thread of its
    /// own, while this pool keeps supervisors: from supervisors of msbd's own user only, with
    /// an image named as one in the pool's directory. A failure to listen is logged (disks
    /// are then deleted with their runs, as without).
    pub fn take_handed_on_disks(self: &Arc<Self>) {
        if self.target == 0 {
            return;
        }
        let path = msb_runtime::hand_on::socket(self.boot.home.root());
        let listener = std::fs::create_dir_all(&self.socket_dir)
            .and_then(|()| {
                let _ = std::fs::remove_file(&path);
                std::os::unix::net::UnixListener::bind(&path)
            })
            .and_then(|listener| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map(|()| listener)
            });
        let listener = match listener {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("not taking root disks handed on ({}): {e}", path.display());
                return;
            }
        };
        let pool = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("msb-disk-hand-on".into())
            .spawn(move || loop {
                use std::os::fd::AsFd;
                // Woken every few seconds to let a disk kept too long go.
                let mut fds = [nix::poll::PollFd::new(
                    listener.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5_000u16));
                let Some(pool) = pool.upgrade() else { break };
                pool.expire_handed_on();
                if ready.is_ok_and(|n| n > 0) {
                    match listener.accept() {
                        Ok((mut stream, _)) => pool.receive_disk(&mut stream),
                        Err(e) => tracing::debug!("accepting a disk handed on: {e}"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("not taking root disks handed on: {e}");
        }
    }

    /// Keeps the disk a supervisor sends on `stream`, in place of the one kept before.
    fn receive_disk(&self, stream: &mut UnixStream) {
        let peer =
            nix::sys::socket::getsockopt(&*stream, nix::sys::socket::sockopt::PeerCredentials);
        if !peer.is_ok_and(|cred| cred.uid() == nix::unistd::geteuid().as_raw()) {
            tracing::warn!("refused a disk handed on by another user");
            return;
        }
        let disk = match msb_runtime::hand_on::receive(stream) {
            Ok(disk) => disk,
            Err(e) => {
                tracing::warn!("a disk handed on: {e}");
                return;
            }
        };
        if !msb_runtime::hand_on::is_image_path(&self.socket_dir, &disk.image) {
            tracing::warn!(
                "refused a disk handed on with its image at {}",
                disk.image.display()
            );
            return;
        }
        if !std::fs::symlink_metadata(&disk.image).is_ok_and(|meta| meta.is_file()) {
            tracing::warn!("refused a disk handed on without its image");
            return discard_handed_on(disk);
        }
        let mut kept = self.handed_on.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Relaxed) {
            drop(kept);
            return discard_handed_on(disk);
        }
        let before = kept.replace((disk, std::time::Instant::now()));
        drop(kept);
        if let Some((old, _)) = before {
            discard_handed_on(old);
        }
    }

    /// Deletes the images of disks whose supervisor died between taking its run's disk and
    /// sending it (killed then): named for a process that is gone, not written for
    /// [`HANDED_ON_ABANDONED`], and neither the disk kept nor one given to an idle supervisor.
    /// (The filesystem went with the dead supervisor's fd.)
    pub(super) fn sweep_handed_on(&self) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(&self.socket_dir) else {
            return;
        };
        let kept = self
            .handed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(disk, _)| disk.image.clone());
        let given: Vec<PathBuf> = self
            .lock()
            .iter()
            .filter_map(|idle| idle.handed_on_image.clone())
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pid) = msb_runtime::hand_on::image_pid(&self.socket_dir, &path) else {
                continue;
            };
            let idle_for = entry
                .metadata()
                .map_or(0, |meta| now.saturating_sub(meta.mtime()));
            if idle_for < HANDED_ON_ABANDONED.as_secs() as i64
                || msb_host::process::is_alive(pid, None)
                || kept.as_ref() == Some(&path)
                || given.contains(&path)
            {
                continue;
            }
            tracing::info!(
                "removing {}: its supervisor died handing it on",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Lets the disk kept go once it has waited [`HANDED_ON_KEPT`] for a spawn.
    fn expire_handed_on(&self) {
        let mut kept = self.handed_on.lock().unwrap_or_else(|p| p.into_inner());
        if kept
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > HANDED_ON_KEPT)
        {
            if let Some((disk, _)) = kept.take() {
                drop(kept);
                discard_handed_on(disk);
            }
        }
    }

    /// The disk handed on, unless it waited too long (then it goes).
    pub(super) fn take_handed_on(&self) -> Option<msb_runtime::hand_on::HandedOnDisk> {
        let (disk, at) = self
            .handed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        if at.elapsed() > HANDED_ON_KEPT {
            discard_handed_on(disk);
            return None;
        }
        Some(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::tests::pool;

    /// A disk as a supervisor would hand it on: its image in the warm directory.
    fn disk(home: &std::path::Path, pid: u32) -> msb_runtime::hand_on::HandedOnDisk {
        let image = msb_runtime::hand_on::image_path(home, pid);
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::write(&image, b"").unwrap();
        msb_runtime::hand_on::HandedOnDisk {
            tree: std::fs::File::open(home).unwrap().into(),
            device: "/dev/loop0".into(),
            image,
        }
    }

    #[test]
    fn one_disk_is_kept_and_goes_when_replaced_or_kept_too_long() {
        let home = tempfile::tempdir().unwrap();
        let pool = pool(home.path());
        let first = disk(home.path(), 1);
        let first_image = first.image.clone();
        *pool.handed_on.lock().unwrap() = Some((first, std::time::Instant::now()));
        // Fresh: kept.
        pool.expire_handed_on();
        assert!(first_image.exists());
        // Too old: it goes, image and all.
        let old = std::time::Instant::now()
            .checked_sub(HANDED_ON_KEPT + std::time::Duration::from_secs(1));
        let Some(old) = old else { return };
        pool.handed_on.lock().unwrap().as_mut().unwrap().1 = old;
        pool.expire_handed_on();
        assert!(pool.handed_on.lock().unwrap().is_none());
        assert!(!first_image.exists());
        // Taken by a spawn only while fresh.
        let second = disk(home.path(), 2);
        let second_image = second.image.clone();
        *pool.handed_on.lock().unwrap() = Some((second, old));
        assert!(pool.take_handed_on().is_none());
        assert!(!second_image.exists());
        let third = disk(home.path(), 3);
        *pool.handed_on.lock().unwrap() = Some((third, std::time::Instant::now()));
        assert!(pool.take_handed_on().is_some());
        // Drained with msbd.
        let fourth = disk(home.path(), 4);
        let fourth_image = fourth.image.clone();
        *pool.handed_on.lock().unwrap() = Some((fourth, std::time::Instant::now()));
        pool.drain();
        assert!(!fourth_image.exists());
    }
}
