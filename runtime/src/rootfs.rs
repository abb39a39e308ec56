//! The default root filesystem: built on first use from Debian's `busybox-static`.
//!
//! The tree is built in a temporary directory beside its final place and renamed into place,
//! so a crash half-way never leaves a half-built root that later sandboxes would use.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("no static busybox found (looked in {looked}); install Debian's busybox-static")]
    NoBusybox { looked: String },
    #[error("{path} is not statically linked; install Debian's busybox-static")]
    NotStatic { path: PathBuf },
    #[error("listing busybox applets with {path} --list")]
    List { path: PathBuf, source: io::Error },
    #[error("building the default root in {path}")]
    Build { path: PathBuf, source: io::Error },
}

/// Finds a statically linked busybox on the host.
pub fn find_busybox() -> Result<PathBuf, RootfsError> {
    let found = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let path = found.ok_or_else(|| RootfsError::NoBusybox {
        looked: BUSYBOX_CANDIDATES.join(", "),
    })?;
    if !is_static_elf(&path).unwrap_or(false) {
        return Err(RootfsError::NotStatic { path });
    }
    Ok(path)
}

/// An ELF with no `PT_INTERP` program header needs no dynamic loader.
pub fn is_static_elf(path: &Path) -> io::Result<bool> {
    let bytes = fs::read(path)?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let entry = phoff + i * phentsize;
        if entry + 4 > bytes.len() {
            return Ok(false);
        }
        let p_type = u32::from_le_bytes(bytes[entry..entry + 4].try_into().unwrap());
        if p_type == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// Makes sure the default root exists at `target`, building it if needed.
/// Whether the default root at `target` is built (one `stat`).
pub fn default_rootfs_ready(target: &Path) -> bool {
    target.join("bin").join("busybox").is_file()
}

pub fn ensure_default_rootfs(target: &Path) -> Result<(), RootfsError> {
    if default_rootfs_ready(target) {
        return Ok(());
    }
    let busybox = find_busybox()?;
    let parent = target.parent().unwrap_or(Path::new("/"));
    let build = |e| RootfsError::Build {
        path: target.to_owned(),
        source: e,
    };
    fs::create_dir_all(parent).map_err(build)?;
    let staging = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(parent)
        .map_err(build)?;
    let applets = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| RootfsError::List {
            path: busybox.clone(),
            source: e,
        })?;
    populate(
        staging.path(),
        &busybox,
        &String::from_utf8_lossy(&applets.stdout),
    )
    .map_err(build)?;
    let staged = staging.keep();
    match fs::rename(&staged, target) {
        Ok(()) => Ok(()),
        // Another process built it first: theirs is as good as ours.
        Err(_) if target.join("bin").join("busybox").is_file() => {
            let _ = fs::remove_dir_all(&staged);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            Err(build(e))
        }
    }
}

fn populate(root: &Path, busybox: &Path, applets: &str) -> io::Result<()> {
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "home",
        "var/tmp", "run", ".msb",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        if applet.contains('/') {
            continue;
        }
        let link = root.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", link)?;
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    fs::write(
        root.join("etc/os-release"),
        "NAME=\"msb busybox\"\nID=msb-busybox\n",
    )?;
    // Explicit modes: msbd builds this under umask 077, and every user in a sandbox reads it.
    open_to_all(root)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// Directories 0755, the busybox binary 0755, other files 0644, under `dir` (links untouched).
fn open_to_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            open_to_all(&entry.path())?;
        } else if kind.is_file() {
            let mode = if entry.file_name() == "busybox" {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_static_and_dynamic_binaries() {
        // /bin/sh on Debian is dynamically linked.
        assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
        assert!(!is_static_elf(Path::new("/etc/hostname")).unwrap_or(false));
    }

    #[test]
    fn builds_a_root_once() {
        let Ok(_) = find_busybox() else {
            eprintln!("skipped: busybox-static is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("images/busybox/rootfs");
        ensure_default_rootfs(&target).unwrap();
        assert!(target.join("bin/sh").exists());
        assert!(is_static_elf(&target.join("bin/busybox")).unwrap());
        ensure_default_rootfs(&target).unwrap();
        let leftovers: Vec<_> = fs::read_dir(target.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no staging directory left behind");
    }
}
