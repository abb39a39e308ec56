use std::path::PathBuf;

use super::*;
use crate::{BindMount, Limits, Root};

fn sandbox_spec() -> SandboxSpec {
    let (agent, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    SandboxSpec {
        id: "web-1".into(),
        hostname: "web".into(),
        root: Root::Bind(PathBuf::from("/srv/root")),
        runtime_dir: PathBuf::from("/run/msb/web-1"),
        runtime_fuse: None,
        root_fuse: None,
        served: Vec::new(),
        disks: Vec::new(),
        agent_binary: PathBuf::from("/usr/lib/msb/msb-agentd"),
        agent_argv: None,
        agent_fd: agent.into(),
        mounts: vec![BindMount {
            host: PathBuf::from("/data"),
            guest: PathBuf::from("/mnt/data"),
            readonly: true,
        }],
        limits: Limits::default(),
        state_dir: PathBuf::from("/var/lib/msb/web-1"),
        stdio_log: None,
        id_map: None,
    }
}

fn fs_mount<'a>(mounts: &'a [GuestMount], target: &str) -> (&'a str, MsFlags, &'a str) {
    mounts
        .iter()
        .find_map(|m| match m {
            GuestMount::Fs {
                fs_type,
                target: t,
                flags,
                data,
            } if t == target => Some((fs_type.as_str(), *flags, data.as_str())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{target} mounted"))
}

#[test]
fn kernel_filesystems_are_hardened() {
    let mounts = guest_mounts(&sandbox_spec(), false, None);
    let (fs, flags, _) = fs_mount(&mounts, "/proc");
    assert_eq!(fs, "proc");
    assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV));
    let (fs, flags, _) = fs_mount(&mounts, "/sys");
    assert_eq!(fs, "sysfs");
    assert!(flags.contains(MsFlags::MS_RDONLY));
    let (fs, flags, _) = fs_mount(&mounts, "/dev");
    assert_eq!(fs, "tmpfs");
    assert!(
        !flags.contains(MsFlags::MS_NODEV),
        "/dev holds the sandbox's only usable nodes"
    );
    let (fs, _, data) = fs_mount(&mounts, "/dev/pts");
    assert_eq!(fs, "devpts");
    assert!(data.contains("newinstance") && data.contains("gid=5"));
    assert_eq!(fs_mount(&mounts, "/tmp").0, "tmpfs");
    assert_eq!(fs_mount(&mounts, "/dev/shm").0, "tmpfs");
    // /dev before what lives in it.
    let position = |target: &str| {
        mounts
            .iter()
            .position(|m| matches!(m, GuestMount::Fs { target: t, .. } if t == target))
    };
    assert!(position("/dev") < position("/dev/pts"));
    assert!(position("/dev") < position("/dev/shm"));
}

#[test]
fn user_namespace_devpts_has_no_tty_group() {
    let mounts = guest_mounts(&sandbox_spec(), true, None);
    assert!(!fs_mount(&mounts, "/dev/pts").2.contains("gid="));
}

#[test]
fn a_mapped_sandbox_owns_its_tmpfs_roots_and_tty_group() {
    let map = crate::IdMap {
        host_uid: 1_000_000,
        host_gid: 2_000_000,
        count: 65536,
    };
    let mounts = guest_mounts(&sandbox_spec(), false, Some(&map));
    for target in ["/dev", "/dev/shm", "/tmp"] {
        assert!(
            fs_mount(&mounts, target)
                .2
                .ends_with(",uid=1000000,gid=2000000"),
            "{target}"
        );
    }
    assert!(fs_mount(&mounts, "/dev/pts").2.ends_with(",gid=2000005"));
    // A non-root caller cannot map ranges: the map is not used.
    let mounts = guest_mounts(&sandbox_spec(), true, Some(&map));
    assert!(!fs_mount(&mounts, "/tmp").2.contains("uid="));
}

#[test]
fn agent_and_user_binds_follow_the_kernel_filesystems() {
    let mounts = guest_mounts(&sandbox_spec(), false, None);
    let binds: Vec<(&PathBuf, &PathBuf, bool)> = mounts
        .iter()
        .filter_map(|m| match m {
            GuestMount::Bind {
                source,
                target,
                readonly,
            } => Some((source, target, *readonly)),
            _ => None,
        })
        .collect();
    assert_eq!(
        binds,
        [(&PathBuf::from("/data"), &PathBuf::from("/mnt/data"), true),]
    );
    assert!(matches!(mounts.last(), Some(GuestMount::Bind { .. })));
}

#[test]
fn agent_is_pid_1_with_its_fd_and_a_clean_environment() {
    assert_eq!(agent_argv(&sandbox_spec()), [AGENT_ARGV0]);
    let env = agent_env();
    assert!(env.contains(&"MSB_AGENT_FD=3".to_owned()));
    assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")));
    assert_eq!(env.len(), 3, "nothing of the caller's: {env:?}");
}

#[test]
fn capability_mask_matches_the_kernel_numbers() {
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT
    assert_eq!(capability_mask(), 0x405fb);
    assert_eq!(capability_mask() & (1 << 21), 0, "no CAP_SYS_ADMIN");
}

#[test]
fn agent_argv_can_be_overridden_for_tests() {
    let mut spec = sandbox_spec();
    spec.agent_argv = Some(vec!["busybox".into(), "sh".into()]);
    assert_eq!(agent_argv(&spec), ["busybox", "sh"]);
}

#[test]
fn masked_and_readonly_paths_are_kernel_paths() {
    for path in MASKED_PATHS.iter().chain(READONLY_PATHS.iter()) {
        assert!(
            path.starts_with("/proc/") || path.starts_with("/sys/"),
            "{path}"
        );
    }
    assert!(READONLY_PATHS.contains(&"/proc/sys"));
    assert!(MASKED_PATHS.contains(&"/proc/kcore"));
}
