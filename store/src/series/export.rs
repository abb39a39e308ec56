//! Parquet export of one sandbox's raw samples to a file a request names
//! (`POST /v1/sandboxes/{name}/export`, `msb metrics export`).
//!
//! msbd runs as root and the path comes from the request, so the file is written the careful
//! way. The path must be absolute, without `.` or `..` components, and name a `.parquet` file.
//! DuckDB, which may write nowhere but the store's exports directory (`msb.exports/`, see
//! [`super::sql`]), writes the file there; the store then opens the target's directory one
//! component at a time from `/` without following a symbolic link (`O_NOFOLLOW` on each), creates
//! a new temporary file in it (`O_CREAT | O_EXCL | O_NOFOLLOW`), copies the export into it and
//! renames it over the target name. A symbolic link at the target is replaced, never written
//! through; a directory there is an error.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};

use super::query::check_window;
use super::SeriesError;
use crate::Store;

/// Numbers the temporary files of this process's exports.
static EXPORTS: AtomicU64 = AtomicU64::new(0);

fn export_error(path: &Path, reason: impl std::fmt::Display) -> SeriesError {
    SeriesError::Export {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The directories from `/` to the file, and the file's name.
fn split(path: &Path) -> Result<(Vec<&OsStr>, &OsStr), &'static str> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err("not an absolute path");
    }
    let mut names = Vec::new();
    for component in components {
        match component {
            Component::Normal(name) => names.push(name),
            _ => return Err("a path with . or .. components"),
        }
    }
    let name = names.pop().ok_or("no file name")?;
    if !name.as_bytes().ends_with(b".parquet") {
        return Err("not a .parquet file");
    }
    Ok((names, name))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn fd_result(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open/openat, is valid, and nothing else owns it.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `names` (from `/`), refusing a symbolic link anywhere on the way.
#[allow(unsafe_code)]
fn open_directory(names: &[&OsStr]) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated literal path; the result is checked.
    let mut dir = fd_result(unsafe { libc::open(c"/".as_ptr(), flags) })?;
    for name in names {
        let name = c_name(name)?;
        // SAFETY: `dir` is an open directory fd and `name` a NUL-terminated string, both alive
        // for the call; the result is checked.
        dir = fd_result(unsafe {
            libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_NOFOLLOW)
        })?;
    }
    Ok(dir)
}

/// Creates the new file `name` in `dir` (never an existing file, never through a link).
#[allow(unsafe_code)]
fn create_new(dir: &OwnedFd, name: &CString) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as in `open_directory`; the mode is a plain integer.
    let fd = fd_result(unsafe {
        libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o644 as libc::c_uint)
    })?;
    Ok(File::from(fd))
}

#[allow(unsafe_code)]
fn rename_within(dir: &OwnedFd, from: &CString, to: &CString) -> io::Result<()> {
    // SAFETY: an open directory fd and two NUL-terminated names, alive for the call.
    let done =
        unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[allow(unsafe_code)]
fn unlink_within(dir: &OwnedFd, name: &CString) {
    // SAFETY: as in `rename_within`. A failure leaves a temporary file behind, nothing worse.
    let _ = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
}

/// Copies `staged` into a new temporary file in `dir` and renames it to `name`.
fn place(staged: &Path, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let target = c_name(name)?;
    let mut temporary = b".".to_vec();
    temporary.extend_from_slice(name.as_bytes());
    temporary.extend_from_slice(
        format!(
            ".msb-export-{}-{}.tmp",
            std::process::id(),
            EXPORTS.fetch_add(1, Ordering::Relaxed)
        )
        .as_bytes(),
    );
    let temporary =
        CString::new(temporary).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut file = create_new(dir, &temporary)?;
    let copied = io::copy(&mut File::open(staged)?, &mut file)
        .and_then(|_| file.sync_all())
        .and_then(|()| rename_within(dir, &temporary, &target));
    if copied.is_err() {
        unlink_within(dir, &temporary);
    }
    copied
}

impl Store {
    /// Writes one sandbox's raw samples in `[since_ms, until_ms)` to a Parquet file (zstd) at
    /// `path`, ordered by time, with the `samples` view's columns, replacing a file there (see
    /// the module documentation for what `path` may be). Returns the number of rows written.
    pub fn export_parquet(
        &self,
        sandbox_id: &str,
        since_ms: i64,
        until_ms: i64,
        path: &Path,
    ) -> Result<u64, SeriesError> {
        check_window(since_ms, until_ms, 1)?;
        let (directories, name) = split(path).map_err(|reason| export_error(path, reason))?;
        let exports = self
            .exports()
            .ok_or_else(|| export_error(path, "a store in memory has no exports directory"))?;
        let directory = open_directory(&directories)
            .map_err(|e| export_error(path, format!("its directory: {e}")))?;
        match std::fs::DirBuilder::new().mode(0o700).create(exports) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(export_error(path, format!("{}: {e}", exports.display())))
            }
            _ => {}
        }
        if !std::fs::symlink_metadata(exports).is_ok_and(|m| m.is_dir()) {
            return Err(export_error(
                path,
                format!("{} is not a directory", exports.display()),
            ));
        }
        let staged = exports.join(format!(
            "export-{}-{}.parquet",
            std::process::id(),
            EXPORTS.fetch_add(1, Ordering::Relaxed)
        ));
        let staged_text = staged
            .to_str()
            .ok_or_else(|| export_error(path, "the exports directory is not a UTF-8 path"))?;
        let quote = |s: &str| s.replace('\'', "''");
        let rows = self.conn().execute(
            &format!(
                "COPY (SELECT * FROM samples WHERE sandbox_id = '{}'
                         AND ts_ms >= {since_ms} AND ts_ms < {until_ms} ORDER BY ts_ms)
                 TO '{}' (FORMAT parquet, COMPRESSION zstd)",
                quote(sandbox_id),
                quote(staged_text)
            ),
            [],
        );
        let placed = rows.map_err(SeriesError::from).and_then(|rows| {
            place(&staged, &directory, name)
                .map(|()| rows as u64)
                .map_err(|e| export_error(path, e))
        });
        let _ = std::fs::remove_file(&staged);
        placed
    }
}
