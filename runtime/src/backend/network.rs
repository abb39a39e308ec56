//! A namespace sandbox's network (issue #8): the msb-net stack configured from the sandbox's
//! `-p` and `--net-rule` values, its published ports bound before the sandbox starts, its TAP
//! opened inside the sandbox's network namespace once PID 1 exists, and the guest's
//! `/etc/resolv.conf` and `host.msb.internal` line written into the root without following a
//! link the sandbox could have planted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::BackendError;
use msb_api::config::SandboxConfig;

/// Builds the network: parses the rules and ports (validated at create, parsed again here)
/// and binds every published port, so a port in use fails the start before anything runs.
pub fn configure(config: &SandboxConfig) -> Result<Option<msb_net::Network>, BackendError> {
    if config.no_network {
        return Ok(None);
    }
    let policy = msb_net::EgressPolicy::from_rules(&config.net_rules)
        .map_err(|e| BackendError::Network(format!("network rules: {e}")))?;
    let published = config
        .published_ports
        .iter()
        .map(|value| {
            value
                .parse::<msb_net::PortSpec>()
                .map_err(|e| BackendError::Network(format!("published port {value:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let frames = config
        .net_ring_frames
        .unwrap_or(msb_api::config::DEFAULT_NET_RING_FRAMES) as usize;
    let net = msb_net::NetConfig {
        policy,
        published,
        tx_ring_frames: frames,
        rx_ring_frames: frames,
        ..msb_net::NetConfig::default()
    };
    msb_net::Network::new(net)
        .map(Some)
        .map_err(|e| match std::error::Error::source(&e) {
            Some(source) => BackendError::Network(format!("publishing ports: {e}: {source}")),
            None => BackendError::Network(format!("publishing ports: {e}")),
        })
}

/// `eth0`, being made on a thread in the network namespace a warm launcher made for PID 1
/// (see [`open_tap_early`]).
pub struct EarlyTap {
    /// The namespace's identity (device, inode), to check that PID 1 is in it.
    netns: (u64, u64),
    thread: std::thread::JoinHandle<std::io::Result<std::os::fd::OwnedFd>>,
}

/// Starts making `eth0` in `launcher`'s network namespace on a thread of its own, so that it is
/// ready when PID 1 is; `None` (logged) when the namespace cannot be had, and `eth0` is then
/// made after PID 1 starts.
pub fn open_tap_early(
    guest: &msb_net::GuestSetup,
    launcher: &mut msb_namespace::WarmLauncher,
) -> Option<EarlyTap> {
    use std::os::unix::fs::MetadataExt;
    let (file, identity) = launcher
        .network_namespace()
        .and_then(|file| {
            let meta = file.metadata().map_err(|e| e.to_string())?;
            Ok((file, (meta.dev(), meta.ino())))
        })
        .inspect_err(|e| tracing::debug!("eth0 made after PID 1 starts: {e}"))
        .ok()?;
    let setup = guest.clone();
    let thread = std::thread::Builder::new()
        .name("msb-eth0".into())
        .spawn(move || msb_net::tap::open_in(file, "eth0", Some(&setup)))
        .inspect_err(|e| tracing::debug!("eth0 made after PID 1 starts: {e}"))
        .ok()?;
    Some(EarlyTap {
        netns: identity,
        thread,
    })
}

impl EarlyTap {
    /// `eth0` once made, if PID 1 (`init_pid`) is in the namespace it was made in (a warm
    /// launcher that could not be used leaves PID 1 in another); `None` means make it again.
    pub fn finish(self, init_pid: i32) -> Option<std::os::fd::OwnedFd> {
        use std::os::unix::fs::MetadataExt;
        let made = self.thread.join();
        let pid1 = std::fs::metadata(format!("/proc/{init_pid}/ns/net")).ok()?;
        match made {
            Ok(Ok(tap)) if (pid1.dev(), pid1.ino()) == self.netns => Some(tap),
            Ok(Ok(_)) => {
                tracing::debug!("PID 1 is not in the warm launcher's network namespace");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!("eth0 made early: {e}; making it again");
                None
            }
            Err(_) => None,
        }
    }
}

/// Starts the stack on `tap`, PID 1's `eth0` when it was made ahead ([`EarlyTap::finish`]),
/// else on one made now in PID 1's network namespace.
pub fn start(
    network: msb_net::Network,
    init_pid: i32,
    tap: Option<std::os::fd::OwnedFd>,
) -> Result<msb_net::RunningNetwork, BackendError> {
    let tap = match tap {
        Some(tap) => tap,
        None => {
            let netns = format!("/proc/{init_pid}/ns/net");
            let setup = network.config().guest_setup();
            msb_net::tap::open_in_netns(Path::new(&netns), "eth0", Some(&setup))
                .map_err(|e| BackendError::Network(format!("creating eth0 in the sandbox: {e}")))?
        }
    };
    network
        .start(tap)
        .map_err(|e| BackendError::Network(format!("starting the network: {e}")))
}

/// Writes `/etc/resolv.conf` and the `host.msb.internal` line of `/etc/hosts` into the
/// directory that becomes the sandbox's root (the overlay's upper or a bind root), before
/// PID 1 starts. `etc` is opened with `O_NOFOLLOW` from a descriptor of `root` and the files in
/// it are reached through that descriptor (`/proc/self/fd/N/NAME`) and replaced by a rename,
/// never written through, so a link planted by an earlier run is removed, not followed.
/// `lower` supplies `/etc/hosts` when the root has none.
pub fn write_guest_files(
    root: &Path,
    lower: Option<&Path>,
    setup: &msb_net::GuestSetup,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let root_dir = open_dir(root)?;
    let etc_path = within(&root_dir, "etc");
    let etc = match open_dir(&etc_path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&etc_path)?;
            let dir = open_dir(&etc_path)?;
            chown(&dir, owner)?;
            dir
        }
        Err(e) => return Err(e),
    };
    replace(&etc, "resolv.conf", setup.resolv_conf.as_bytes(), owner)?;
    let mut hosts = read_regular(&etc, "hosts")?;
    if hosts.is_none() {
        if let Some(lower_etc) = lower.and_then(|lower| open_dir(&lower.join("etc")).ok()) {
            hosts = read_regular(&lower_etc, "hosts")?;
        }
    }
    let mut hosts = hosts.unwrap_or_else(|| "127.0.0.1\tlocalhost\n".to_owned());
    let line = setup.hosts_line.trim_end();
    if !hosts.lines().any(|l| l.trim_end() == line) {
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(line);
        hosts.push('\n');
    }
    replace(&etc, "hosts", hosts.as_bytes(), owner)
}

/// `name` inside the directory open as `dir`, whatever path led to it.
fn within(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Opens a directory, refusing a link as the last component.
fn open_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The content of `name` in `dir` when it is a regular file (a link or anything else reads as
/// absent).
fn read_regular(dir: &File, name: &str) -> std::io::Result<Option<String>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(within(dir, name));
    let Ok(file) = file else { return Ok(None) };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Replaces `name` in `dir` by a new regular file holding `content`: written to a temporary
/// name created exclusively, then renamed over whatever `name` was.
fn replace(
    dir: &File,
    name: &str,
    content: &[u8],
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let temporary = within(dir, &format!(".{name}.msb-new"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)?;
    chown(&file, owner)?;
    file.write_all(content)?;
    drop(file);
    std::fs::rename(&temporary, within(dir, name))
}

fn chown(file: &File, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
        None => Ok(()),
    }
}
