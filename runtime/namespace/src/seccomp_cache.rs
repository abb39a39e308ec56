//! Keeping the compiled seccomp program on disk for the next process of the same build: a
//! supervisor per run compiled it again (20-30 ms of CPU with libseccomp).

/// The program from `dir` when this executable compiled it before, else compiled and kept
/// there (a failure to keep it is not an error). The file's name is a hash of what decides the
/// program: this executable (its size, modification time and inode: a rebuild is a new key),
/// the sources of the rules and of msb's compiler, libseccomp's version, the architecture and
/// whether the kernel runs x32 calls.
pub(crate) fn cached(
    dir: &std::path::Path,
    compile: fn() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let path = dir.join(format!("seccomp-{:016x}.bpf", cache_key()));
    if let Ok(program) = std::fs::read(&path) {
        if is_program(&program) {
            return Ok(program);
        }
    }
    let program = compile()?;
    if let Err(e) = keep(dir, &path, &program) {
        tracing::debug!("keeping the seccomp program in {}: {e}", path.display());
    }
    Ok(program)
}

/// A plausible `struct sock_filter` array: whole instructions, at most the kernel's limit.
fn is_program(bytes: &[u8]) -> bool {
    const BPF_MAXINSNS: usize = 4096;
    !bytes.is_empty() && bytes.len() % 8 == 0 && bytes.len() / 8 <= BPF_MAXINSNS
}

fn cache_key() -> u64 {
    use std::os::unix::fs::MetadataExt;
    // FNV-1a: a cache key, not a defence (the directory is private).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    if let Some(meta) = std::env::current_exe()
        .ok()
        .and_then(|exe| std::fs::metadata(exe).ok())
    {
        for n in [
            meta.len(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ino(),
        ] {
            add(&n.to_le_bytes());
        }
    }
    add(include_str!("seccomp.rs").as_bytes());
    add(include_str!("seccomp_bpf.rs").as_bytes());
    if let Ok(version) = libseccomp::ScmpVersion::current() {
        add(format!("{}.{}.{}", version.major, version.minor, version.micro).as_bytes());
    }
    add(std::env::consts::ARCH.as_bytes());
    add(&[u8::from(crate::sys::kernel_runs_x32())]);
    hash
}

/// Writes `program` to `path` in `dir` (made 0700) through a temporary file (0600) and a
/// rename, so a concurrent reader sees all of it or nothing.
fn keep(dir: &std::path::Path, path: &std::path::Path, program: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let staging = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&staging)?;
    file.write_all(program)?;
    drop(file);
    std::fs::rename(&staging, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })
}
