//! `MSB_HOME` is private to its owner: the directory is 0700 and every file msb writes under it
//! is 0600, since the store and the catalog journal hold sandboxes' environment values, and the
//! output logs what the workloads printed.
//!
//! msbd runs under umask 077 (so DuckDB's files, the journal and the sockets are created
//! private); the client and the supervisors, whose umask is the user's, create their files
//! here with an explicit mode ([`create_options`]). The mode of a created file is also limited
//! by the umask, never widened by it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::Mode;

/// Mode of `MSB_HOME` and every directory msb creates for itself under it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file msb creates under `MSB_HOME`.
pub const FILE_MODE: u32 = 0o600;
/// The umask msbd runs under.
pub const UMASK: u32 = 0o077;

/// Options that create a file 0600 (callers add `append`, `write`, `truncate`).
pub fn create_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true).mode(FILE_MODE);
    options
}

/// What [`ensure_private_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Created now, 0700.
    Created,
    /// Already there and private.
    Private,
    /// Was open to group or others (its mode then) and is 0700 now.
    Tightened { was: u32 },
    /// Open to group or others, but another user's, so left alone (its mode and owner).
    Foreign { mode: u32, owner: u32 },
}

/// Creates `dir` (and missing parents) 0700, or makes an existing one 0700 if group or others
/// had any access to it and it is ours (or we are root).
pub fn ensure_private_dir(dir: &Path) -> io::Result<DirState> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // Under a umask that keeps the owner's bits (as any sane one does) this is 0700
            // already; say so explicitly in case the umask was odd.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            Ok(DirState::Created)
        }
        Err(e) => Err(e),
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 == 0 {
                return Ok(DirState::Private);
            }
            let me = nix::unistd::geteuid().as_raw();
            if meta.uid() != me && me != 0 {
                return Ok(DirState::Foreign {
                    mode,
                    owner: meta.uid(),
                });
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            Ok(DirState::Tightened { was: mode })
        }
    }
}

/// Sets this process's umask to [`UMASK`]; returns the previous one.
pub fn set_private_umask() -> u32 {
    nix::sys::stat::umask(Mode::from_bits_truncate(UMASK)).bits()
}

/// Sets the umask to `mask` (as [`set_private_umask`] returned it, or 022 for a process whose
/// children build what others read, such as a sandbox's root).
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(Mode::from_bits_truncate(mask));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_private_tightens_open_and_leaves_private_alone() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a/home");
        assert_eq!(ensure_private_dir(&home).unwrap(), DirState::Created);
        assert_eq!(mode(&home), 0o700);
        assert_eq!(ensure_private_dir(&home).unwrap(), DirState::Private);
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            ensure_private_dir(&home).unwrap(),
            DirState::Tightened { was: 0o755 }
        );
        assert_eq!(mode(&home), 0o700);
    }

    #[test]
    fn files_are_created_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = create_options().append(true).open(&path).unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
