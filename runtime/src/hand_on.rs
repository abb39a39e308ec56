//! Handing an ephemeral run's root disk on to the next sandbox (see
//! [`msb_namespace::disk::HandedOnDisk`]): the run's supervisor sends it to msbd over
//! `$MSB_HOME/warm/hand-on.sock` (its filesystem as a detached mount's fd, `SCM_RIGHTS`), msbd
//! keeps one for the next warm supervisor it spawns, which inherits the fd (named in
//! [`FD_ENV`]) and gets the image and loop device as flags. Nothing in the message is trusted:
//! msbd checks the peer and the paths, the warm supervisor the filesystem itself.
#![allow(unsafe_code)]

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub use msb_namespace::disk::HandedOnDisk;

/// The environment variable naming the fd of the disk a warm supervisor is handed at its spawn.
pub const FD_ENV: &str = "MSB_HANDED_ON_DISK_FD";

/// Where msbd takes disks handed on: `$MSB_HOME/warm/hand-on.sock` (bound only while it keeps
/// warm supervisors).
pub fn socket(home: &Path) -> PathBuf {
    home.join("warm").join("hand-on.sock")
}

/// Where the supervisor `pid` moves its run's image when it hands the disk on.
pub fn image_path(home: &Path, pid: u32) -> PathBuf {
    home.join("warm").join(format!("handed-on-{pid}.img"))
}

/// Whether `path` is a name [`image_path`] gives in the directory `warm`.
pub fn is_image_path(warm: &Path, path: &Path) -> bool {
    image_pid(warm, path).is_some()
}

/// The supervisor's pid in `path`, when it is a name [`image_path`] gives in `warm`.
pub fn image_pid(warm: &Path, path: &Path) -> Option<i32> {
    if path.parent() != Some(warm) {
        return None;
    }
    let pid = path
        .file_name()?
        .to_str()?
        .strip_prefix("handed-on-")?
        .strip_suffix(".img")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Message {
    image: PathBuf,
    device: String,
}

/// In the supervisor: sends `disk` to msbd at `socket` (one message, within a second).
pub fn send(socket: &Path, disk: &HandedOnDisk) -> Result<(), String> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let bytes = serde_json::to_vec(&Message {
        image: disk.image.clone(),
        device: disk.device.clone(),
    })
    .expect("serialises");
    let fds = [disk.tree.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send to {}: {e}", socket.display()))?;
    if sent != bytes.len() {
        return Err(format!(
            "send to {}: {sent} of {} bytes",
            socket.display(),
            bytes.len()
        ));
    }
    Ok(())
}

/// In msbd: reads one disk from a supervisor's connection (the fd, then the rest of the message
/// to end-of-file). The caller checks the peer and the paths.
pub fn receive(stream: &mut UnixStream) -> Result<HandedOnDisk, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::Read as _;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut buffer = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (read, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receive: {e}"))?;
        let mut fd = None;
        for cmsg in message.cmsgs().map_err(|e| format!("receive: {e}"))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this fd in this process for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        (message.bytes, fd)
    };
    let tree = fd.ok_or("no filesystem fd in the message")?;
    buffer.truncate(read);
    let mut rest = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut rest)
        .map_err(|e| format!("receive: {e}"))?;
    buffer.extend(rest);
    let message: Message =
        serde_json::from_slice(&buffer).map_err(|e| format!("a malformed message: {e}"))?;
    Ok(HandedOnDisk {
        tree,
        device: message.device,
        image: message.image,
    })
}

/// In a warm supervisor: the disk msbd handed it at its spawn (`--handed-on-image`,
/// `--handed-on-device` and the fd in [`FD_ENV`]), if any.
pub fn from_spawn(image: Option<String>, device: Option<String>) -> Option<HandedOnDisk> {
    let fd: i32 = std::env::var(FD_ENV)
        .ok()?
        .parse()
        .ok()
        .filter(|fd| *fd > 2)?;
    std::env::remove_var(FD_ENV);
    // SAFETY: msbd passed this fd to this process for this purpose; nothing else in it uses it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not inherited any further (the sandbox's processes are forked from this one).
    let _ = nix::fcntl::fcntl(
        tree.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(HandedOnDisk {
        tree,
        device: device?,
        image: image?.into(),
    })
}

/// What an ephemeral run on a root disk of the default size does with the disk as its PID 1
/// exits: hands it on, through msbd, to the next sandbox instead of
/// leaving it to be unmounted and deleted.
pub(crate) struct HandOn {
    home: PathBuf,
    /// The run's image, which goes to `$MSB_HOME/warm/handed-on-<pid>.img`.
    image: PathBuf,
    /// The sandbox's root on the host, who gets the fresh `upper`.
    owner: Option<(u32, u32)>,
    taken: std::sync::Mutex<Option<HandedOnDisk>>,
}

impl HandOn {
    /// The plan for a run of `config`, when it can hand its disk on: ephemeral, the default
    /// root on a disk of the default size, mounted in this process's own mount namespace, in a
    /// sandbox directory of a home (`$MSB_HOME/sandboxes/<id>`).
    pub(crate) fn plan(config: &crate::config::SupervisorConfig) -> Option<HandOn> {
        let sandbox = &config.config;
        let fits = sandbox.ephemeral
            && sandbox.rootfs == crate::config::RootfsSource::Default
            && sandbox.root_disk_mib == Some(msb_api::config::DEFAULT_ROOT_DISK_MIB)
            && crate::mount_ns::is_own();
        let sandboxes = config.sandbox_dir.parent()?;
        if !fits || sandboxes.file_name()? != "sandboxes" {
            return None;
        }
        Some(HandOn {
            home: sandboxes.parent()?.to_owned(),
            image: crate::paths::SandboxDir::new(config.sandbox_dir.clone()).root_disk_image(),
            owner: config.id_map.map(|map| (map.host_uid, map.host_gid)),
            taken: std::sync::Mutex::new(None),
        })
    }

    /// As PID 1 exits (before the run's end is recorded, after which msbd removes the
    /// sandbox's directory): takes the disk mounted at `mount` (on `device`) out of the run,
    /// when msbd takes disks.
    pub(crate) fn take(&self, mount: &Path, device: &str) {
        if !socket(&self.home).exists() {
            return;
        }
        let to = image_path(&self.home, std::process::id());
        match HandedOnDisk::take(mount, device, &self.image, &to) {
            Ok(taken) => *self.taken.lock().unwrap_or_else(|p| p.into_inner()) = Some(taken),
            Err(e) => tracing::debug!("the root disk is not handed on: {e}"),
        }
    }

    /// Once the run's end is recorded: empties the disk taken and sends it to msbd; a disk
    /// that cannot be goes, and its image with it.
    pub(crate) fn finish(&self) {
        let Some(disk) = self.taken.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let sent = disk
            .empty(self.owner)
            .and_then(|()| send(&socket(&self.home), &disk));
        if let Err(e) = sent {
            tracing::debug!("the root disk is not handed on: {e}");
            let _ = std::fs::remove_file(&disk.image);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_a_supervisor_gives_are_images_handed_on() {
        let warm = Path::new("/home/warm");
        assert!(is_image_path(warm, &image_path(Path::new("/home"), 42)));
        assert_eq!(
            image_pid(warm, &image_path(Path::new("/home"), 42)),
            Some(42)
        );
        for path in [
            "/home/warm/handed-on-.img",
            "/home/warm/handed-on-4x.img",
            "/home/warm/handed-on-42.img/x",
            "/home/warm/x/handed-on-42.img",
            "/home/warm/../warm/handed-on-42.img",
            "/etc/handed-on-42.img",
            "/home/warm/handed-on-42.imgx",
        ] {
            assert!(!is_image_path(warm, Path::new(path)), "{path}");
        }
    }

    #[test]
    fn a_disk_goes_over_the_socket_with_its_fd() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("marker")).unwrap();
        let disk = HandedOnDisk {
            tree: OwnedFd::from(file),
            device: "/dev/loop7".into(),
            image: dir.path().join("handed-on-1.img"),
        };
        let socket = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let sender = std::thread::spawn({
            let socket = socket.clone();
            move || send(&socket, &disk).map(|()| disk.image.clone())
        });
        let (mut stream, _) = listener.accept().unwrap();
        let got = receive(&mut stream).unwrap();
        let image = sender.join().unwrap().unwrap();
        assert_eq!(got.image, image);
        assert_eq!(got.device, "/dev/loop7");
        let meta = nix::sys::stat::fstat(got.tree.as_raw_fd()).unwrap();
        let marker = nix::sys::stat::stat(&dir.path().join("marker")).unwrap();
        assert_eq!((meta.st_dev, meta.st_ino), (marker.st_dev, marker.st_ino));
        // A connection that sends no fd is refused.
        let plain = std::thread::spawn({
            let socket = socket.clone();
            move || {
                use std::io::Write as _;
                let mut s = UnixStream::connect(&socket).unwrap();
                s.write_all(b"{\"image\":\"/x\",\"device\":\"/dev/loop1\"}")
                    .unwrap();
            }
        });
        let (mut stream, _) = listener.accept().unwrap();
        plain.join().unwrap();
        assert!(receive(&mut stream).is_err());
    }
}
