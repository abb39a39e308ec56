//! The supervisor's own mount namespace.
//!
//! A root supervisor mounts its sandbox's root disk on the host side (to measure it and to write
//! the guest's network files into it). Unmounting it again waits for an RCU grace period
//! (`namespace_unlock` in the kernel: 5-20 ms on this kind of machine), which sat between PID 1's
//! exit and the run's end record. So the supervisor makes its mounts in a mount namespace of its
//! own, a copy of the host's that receives the host's later mounts (slave) but sends none back:
//! the host's mount table never shows a sandbox's disk, and for an ephemeral sandbox the
//! unmount can be left to the supervisor's exit, after the run's end is recorded. msbd and tests
//! see a running sandbox's disk at `/proc/<supervisor pid>/root/<mount point>`.

use std::sync::atomic::{AtomicBool, Ordering};

static OWN: AtomicBool = AtomicBool::new(false);

/// Moves this process into a mount namespace of its own (see the module). Must be called while
/// the process has one thread: `unshare(CLONE_NEWNS)` refuses a process whose threads share
/// their filesystem context.
pub fn make_own() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare the mount namespace: {e}"))?;
    // Without this the copy would stay a peer of the host's shared mounts, and the disk's mount
    // would propagate back to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make the mount namespace a slave of the host's: {e}"))?;
    OWN.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether [`make_own`] succeeded in this process: its mounts go with it when it exits.
pub fn is_own() -> bool {
    OWN.load(Ordering::SeqCst)
}

/// `path` as seen in the mount namespace of process `pid` (through its `/proc/<pid>/root`).
pub fn seen_by(pid: i32, path: &std::path::Path) -> std::path::PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    std::path::Path::new(&format!("/proc/{pid}/root")).join(relative)
}
