//! Directories of removed sandboxes, recycled as the directories warm supervisors boot
//! sandboxes in.
//!
//! Every run would otherwise make a sandbox directory (the directory, `root-disk`, `runtime`,
//! `supervisor.log`, `output.jsonl`, `run.json` and its temporary twin) and delete it again:
//! seven inodes made and freed on the host per run. On an ext4 without a journal (the root
//! filesystem of this project's build machines is one) every inode made scans past every inode
//! freed in the last minute or more of that block group (`find_inode_bit` / `recently_deleted`),
//! so back-to-back runs paid for each other's deletions, more the longer they went on. A removed sandbox's directory is
//! instead kept (in the trash, where a crash of msbd leaves it to be deleted) until its
//! supervisor has exited, then emptied of everything of its run and renamed to the next boot's
//! directory.
//!
//! What is emptied: the host-side files (the supervisor's log, the workload's output, the run
//! record) are truncated, the record to "no record yet" (`RunRecord::read`); `runtime` (the
//! sandbox's `/.msb`, which its workload writes) is kept only as an empty directory with nothing
//! of the run on it (no entries, no extended attributes, a size that never grew), its mode and
//! times reset, and is otherwise deleted for the boot to make afresh; `root-disk` (a mount point
//! in the supervisor's mount namespace only) must be empty; anything else is deleted.
//!
//! Nothing of the old sandbox can write into the directory once its supervisor is gone: its
//! workload reaches `runtime` only through `/.msb`'s file server, a thread of the supervisor
//! (without `/dev/fuse`, `/.msb` is a plain bind of a directory owned by the host's root, which
//! the sandbox's mapped root cannot write; sandboxes are booted ahead only with a user
//! namespace), and everything else here only the supervisor and msbd write.

use std::collections::VecDeque;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most directories kept: a few runs' worth, so that a start finds one whose supervisor
/// has exited.
const KEPT: usize = 4;

/// The files of a sandbox's directory that are kept, truncated.
const KEPT_FILES: [&str; 4] = ["supervisor.log", "output.jsonl", "run.json", "run.json.tmp"];

/// The directories kept for recycling, oldest first.
#[derive(Debug, Default)]
pub(super) struct Recycled {
    kept: Mutex<VecDeque<PathBuf>>,
}

impl Recycled {
    /// Keeps `dir`, a removed sandbox's directory already moved out of `sandboxes/`, for a
    /// later boot. Returns what is to be deleted instead: `dir` itself when it is not a
    /// sandbox's directory with a run record (or still has its root disk's image), or the
    /// oldest one kept when there are too many.
    pub fn keep(&self, dir: PathBuf) -> Option<PathBuf> {
        // A root disk's image (a sandbox that kept its disk, or a run that did not hand it on)
        // is deleted at once, not held.
        if !dir.join("run.json").is_file() || dir.join("root-disk.img").exists() {
            return Some(dir);
        }
        let mut kept = self.lock();
        kept.push_back(dir);
        (kept.len() > KEPT).then(|| kept.pop_front()).flatten()
    }

    /// Moves the oldest kept directory whose supervisor has exited, emptied, to `target` (which
    /// must not exist). False when there is none; a directory that cannot be emptied or moved
    /// is handed to `discard`.
    pub fn take_into(&self, target: &Path, discard: impl Fn(PathBuf)) -> bool {
        let ready = {
            let mut kept = self.lock();
            let at = kept.iter().position(|dir| supervisor_gone(dir));
            at.and_then(|at| kept.remove(at))
        };
        let Some(dir) = ready else {
            return false;
        };
        match empty(&dir).and_then(|()| std::fs::rename(&dir, target).map_err(|e| e.to_string())) {
            Ok(()) => {
                tracing::debug!("{} recycled as {}", dir.display(), target.display());
                true
            }
            Err(e) => {
                tracing::debug!("not recycling {}: {e}", dir.display());
                discard(dir);
                false
            }
        }
    }

    /// Every directory kept, for deletion (msbd is stopping).
    pub fn drain(&self) -> Vec<PathBuf> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<PathBuf>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the supervisor named by `dir`'s run record has exited entirely (it holds the log and
/// output files open until then). A record that cannot be read counts as not exited: the
/// directory stays kept until it is the oldest of too many, then deleted.
fn supervisor_gone(dir: &Path) -> bool {
    let Ok(record) = msb_runtime::run_record::RunRecord::read(&dir.join("run.json")) else {
        return false;
    };
    let pid = record.supervisor_pid;
    let same_process = msb_runtime::process::stat(pid).is_some_and(|stat| {
        record
            .supervisor_start_ticks
            .is_none_or(|t| t == stat.start_ticks)
    });
    !same_process || msb_runtime::process::has_exited_fully(pid)
}

/// Empties `dir` for another sandbox (see the module's comment).
fn empty(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err("not a directory of msbd's".into());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or_default();
        let emptied = match name {
            "root-disk" if meta.is_dir() => {
                let mut inside = std::fs::read_dir(&path).map_err(|e| e.to_string())?;
                match inside.next() {
                    None => Ok(()),
                    Some(_) => return Err("root-disk is not empty".into()),
                }
            }
            "runtime" if meta.is_dir() => empty_runtime(&path, &meta),
            _ if KEPT_FILES.contains(&name) && meta.is_file() => std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .and_then(|file| file.set_len(0)),
            _ if meta.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        emptied.map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Keeps the sandbox's `/.msb` directory if nothing of the run is on it (entries, extended
/// attributes, a size grown by entries made and deleted), with its mode and times reset;
/// deletes it otherwise.
fn empty_runtime(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let untouched =
        std::fs::read_dir(path)?.next().is_none() && meta.len() <= 4096 && !has_xattrs(path)?;
    if !untouched {
        return std::fs::remove_dir_all(path);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    let now = std::time::SystemTime::now();
    std::fs::File::open(path)?.set_times(
        std::fs::FileTimes::new()
            .set_accessed(now)
            .set_modified(now),
    )
}

/// Whether `path` (not followed if a link) carries extended attributes, ACLs included. (`/.msb`'s
/// file server refuses them, but a sandbox without `/dev/fuse` has a plain bind there.)
#[allow(unsafe_code)]
fn has_xattrs(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path and no buffer: the call only returns the list's size.
    let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    match size {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(false),
            e => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_dir(root: &Path, name: &str, supervisor_pid: i32) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("root-disk")).unwrap();
        std::fs::create_dir_all(dir.join("runtime")).unwrap();
        std::fs::write(dir.join("supervisor.log"), "log of the run\n").unwrap();
        std::fs::write(dir.join("output.jsonl"), "{\"out\":\"secret\"}\n").unwrap();
        let record = msb_runtime::run_record::RunRecord {
            run_id: "r".into(),
            supervisor_pid,
            supervisor_start_ticks: None,
            init_pid: None,
            workload_pid: None,
            phase: msb_runtime::run_record::RunPhase::Exited,
            started_at_ms: 1,
            ended_at_ms: Some(2),
            exit_code: Some(0),
            signal: None,
            reason: None,
            error: None,
            oom_kills: None,
            boot: Default::default(),
        };
        // Written twice: both the record and its temporary twin exist, as after a run.
        record.write(&dir.join("run.json")).unwrap();
        record.write(&dir.join("run.json")).unwrap();
        dir
    }

    #[test]
    fn a_directory_is_recycled_emptied_once_its_supervisor_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let recycled = Recycled::default();
        // Its supervisor (this process) is alive: not taken.
        let alive = sandbox_dir(root.path(), "alive", std::process::id() as i32);
        assert_eq!(recycled.keep(alive.clone()), None);
        let target = root.path().join("boot");
        assert!(!recycled.take_into(&target, |_| panic!("nothing to discard")));
        // One whose supervisor exited (a child reaped), with what a workload leaves in /.msb.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let gone = sandbox_dir(root.path(), "gone", pid);
        std::fs::write(gone.join("runtime/planted"), "for the next sandbox").unwrap();
        std::fs::write(gone.join("output.jsonl.1"), "rotated").unwrap();
        let log_inode = std::fs::metadata(gone.join("supervisor.log"))
            .unwrap()
            .ino();
        assert_eq!(recycled.keep(gone.clone()), None);
        assert!(recycled.take_into(&target, |_| panic!("nothing to discard")));
        assert!(!gone.exists());
        let mut names: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // `/.msb` held a file: not kept (the boot makes it afresh); the rotated output goes.
        assert_eq!(
            names,
            [
                "output.jsonl",
                "root-disk",
                "run.json",
                "run.json.tmp",
                "supervisor.log"
            ]
        );
        for file in KEPT_FILES {
            assert_eq!(
                std::fs::metadata(target.join(file)).unwrap().len(),
                0,
                "{file}"
            );
        }
        assert_eq!(
            std::fs::metadata(target.join("supervisor.log"))
                .unwrap()
                .ino(),
            log_inode,
            "the same file, emptied"
        );
        // The one still running stays kept.
        assert_eq!(recycled.drain(), [alive]);
    }

    #[test]
    fn an_untouched_runtime_directory_is_kept_with_its_mode_and_times_reset() {
        let root = tempfile::tempdir().unwrap();
        let runtime = root.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345);
        std::fs::File::open(&runtime)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        let inode = std::fs::metadata(&runtime).unwrap().ino();
        empty_runtime(&runtime, &std::fs::metadata(&runtime).unwrap()).unwrap();
        let meta = std::fs::metadata(&runtime).unwrap();
        assert_eq!(meta.ino(), inode, "kept");
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert!(meta.modified().unwrap() > old);
    }

    #[test]
    fn a_directory_without_a_record_or_of_too_many_is_deleted() {
        let root = tempfile::tempdir().unwrap();
        let recycled = Recycled::default();
        let bare = root.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        assert_eq!(recycled.keep(bare.clone()), Some(bare));
        let dirs: Vec<PathBuf> = (0..=KEPT)
            .map(|n| sandbox_dir(root.path(), &format!("d{n}"), std::process::id() as i32))
            .collect();
        for dir in &dirs[..KEPT] {
            assert_eq!(recycled.keep(dir.clone()), None);
        }
        assert_eq!(recycled.keep(dirs[KEPT].clone()), Some(dirs[0].clone()));
    }
}
