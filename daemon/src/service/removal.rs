//! Removing a sandbox's catalog rows and directory (for `msb rm`, in `lifecycle.rs`, and for
//! the runtime's removal of ended ephemeral sandboxes), and the trash directories go through.

use std::path::PathBuf;

use super::info::ending;
use super::CatalogError;
use crate::state::Daemon;
use crate::trash::{delete_dir, empty_trash_in_background};

/// What removing a sandbox's rows and directory can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("removing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<msb_store::StoreError> for RemovalError {
    fn from(e: msb_store::StoreError) -> Self {
        RemovalError::Catalog(CatalogError::Store(e))
    }
}

/// Removes an ended ephemeral sandbox, remembering how it ended for a late `wait`. False when
/// the sandbox is not ephemeral (or already gone).
pub fn remove_if_ephemeral(daemon: &Daemon, sandbox_id: &str) -> bool {
    let row = daemon.store().sandbox_by_id(sandbox_id).ok().flatten();
    let Some(row) = row.filter(|row| row.ephemeral) else {
        return false;
    };
    if let Some(ending) = row
        .status
        .parse()
        .ok()
        .and_then(|status| ending(daemon, &row, status).ok())
    {
        daemon.record_ending(ending);
    }
    if let Err(e) = remove_sandbox(daemon, sandbox_id) {
        tracing::warn!("removing ephemeral sandbox {sandbox_id}: {e}");
    }
    true
}

/// Deletes a sandbox's catalog rows and its directory.
pub fn remove_sandbox(daemon: &Daemon, sandbox_id: &str) -> Result<(), RemovalError> {
    let dir = daemon.home.sandbox(sandbox_id);
    // A root disk still mounted (its supervisor was killed) is detached, not deleted into.
    if let Err(e) = msb_runtime::disk::unmount(&dir.root_disk_mount()) {
        tracing::warn!("{e}");
    }
    if dir.root().exists() {
        // Out of `sandboxes/` at once (a rename), deleted in the background: deleting takes a
        // few milliseconds that `msb run` would otherwise wait for. What a crash leaves in the
        // trash is deleted at the next start.
        let trash = daemon.home.trash().join(sandbox_id);
        let moved = std::fs::create_dir_all(daemon.home.trash())
            .and_then(|()| std::fs::rename(dir.root(), &trash));
        match moved {
            // Kept to be a boot directory, or deleted.
            Ok(()) => {
                if let Some(deleted) = daemon.warm.recycle(trash) {
                    empty_trash_in_background(deleted);
                }
            }
            Err(_) => delete_dir(dir.root(), 2, std::time::Duration::ZERO).map_err(|source| {
                RemovalError::Io {
                    path: dir.root().to_owned(),
                    source,
                }
            })?,
        }
    }
    daemon.store().delete_sandbox(sandbox_id)?;
    daemon.forget(sandbox_id);
    daemon.live.forget(sandbox_id);
    Ok(())
}
