//! The trash: directories of removed sandboxes (moved to `$MSB_HOME/trash/` by a rename, so
//! that a removal does not wait for the deletion) are deleted on one background thread.

/// Deletes a directory moved into the trash on msbd's one trash thread (started with the first
/// removal, at a low CPU priority: it is never waited for).
pub fn empty_trash_in_background(path: std::path::PathBuf) {
    static TRASH: std::sync::OnceLock<std::sync::mpsc::Sender<std::path::PathBuf>> =
        std::sync::OnceLock::new();
    let delete = |path: &std::path::Path| {
        if let Err(e) = delete_dir(path, 5, std::time::Duration::from_millis(100)) {
            tracing::warn!("could not delete {}: {e}", path.display());
        }
    };
    let trash = TRASH.get_or_init(|| {
        let (sender, paths) = std::sync::mpsc::channel::<std::path::PathBuf>();
        let spawned = std::thread::Builder::new()
            .name("msb-trash".into())
            .spawn(move || {
                msb_runtime::spawn::set_cpu_priority(0, msb_runtime::spawn::CpuPriority::Nice(10));
                for path in paths {
                    delete(&path);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no trash thread ({e}); the trash is emptied inline");
        }
        sender
    });
    // Without the thread the receiver is gone and the path comes back.
    if let Err(std::sync::mpsc::SendError(path)) = trash.send(path) {
        delete(&path);
    }
}

/// `remove_dir_all`, tried `attempts` times `pause` apart: a supervisor still finishing
/// (unmounting the root, removing entries) may get in the way for a moment. A directory that
/// is gone counts as deleted.
pub(crate) fn delete_dir(
    path: &std::path::Path,
    attempts: u32,
    pause: std::time::Duration,
) -> std::io::Result<()> {
    let mut attempt = 1;
    loop {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(_) if !path.exists() => return Ok(()),
            Err(e) if attempt >= attempts => return Err(e),
            Err(_) => std::thread::sleep(pause),
        }
        attempt += 1;
    }
}
