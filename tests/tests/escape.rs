//! Attacks from inside a real sandbox that must fail, each with the host checked afterwards:
//! root in the sandbox is an unprivileged host user; denied syscalls (a static probe,
//! `tests/probe/escape.c`, calls each one); PID 1's channel and log; masked kernel files; bind
//! sources and mount points reached through symbolic links a sandbox planted; read-only and
//! device-free recursive binds; the limits a start claims a sandbox booted ahead of time with.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use msb_e2e::{require_root, TestHome};
use serde_json::Value;

/// Builds the static probe into `dir` (gcc and the static libc come with Rust's linker set-up).
fn build_probe(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("probe/escape.c");
    let binary = dir.join("escape-probe");
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "building {}", source.display());
    binary
}

/// Runs the probe in a fresh sandbox with `attempts` and returns each attempt's outcome.
fn probe(home: &TestHome, attempts: &[&str]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    build_probe(dir.path());
    let bind = format!("{}:/probe:ro", dir.path().display());
    let mut args = vec!["run", "-v", &bind, "--", "/probe/escape-probe"];
    args.extend_from_slice(attempts);
    let out = home.ok(&args);
    let outcomes: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (name, outcome) = l.split_once(' ').expect("attempt outcome");
            (name.to_owned(), outcome.to_owned())
        })
        .collect();
    assert_eq!(outcomes.len(), attempts.len(), "{out}");
    outcomes
}

#[test]
fn denied_syscalls_fail_and_ordinary_ones_work() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let denied = [
        "ptrace",
        "pidfd_getfd",
        "kcmp",
        "process_madvise",
        "process_vm_readv",
        "vsock",
        "vsock_pair",
        "unshare_user",
        "unshare_mount",
        "clone_newuser",
        "setns",
        "mount",
        "open_tree",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "keyctl",
        "personality",
        "open_by_handle_at",
        "init_module",
        "syslog",
        "settimeofday",
        "sethostname",
    ];
    let allowed = [
        "getpid",
        "socket_inet",
        "pidfd_open",
        "fork",
        "personality_query",
    ];
    let mut attempts: Vec<&str> = denied.to_vec();
    attempts.extend_from_slice(&allowed);
    attempts.push("clone3");
    // The i386 entry meets the same allow-list; an x32 call (a section of the filter only where
    // the kernel runs x32 at all) fails without killing the caller: the attempts after it
    // report too.
    let compat = ["i386_getpid", "i386_ptrace", "x32_getpid"];
    if cfg!(target_arch = "x86_64") {
        attempts.splice(0..0, compat);
    }
    let outcomes = probe(&home, &attempts);
    for (name, outcome) in &outcomes {
        if name == "i386_getpid" {
            assert_eq!(outcome, "ok", "{name} must work: {outcomes:?}");
        } else if name == "i386_ptrace" {
            assert_eq!(outcome, "EPERM", "{name} must fail: {outcomes:?}");
        } else if name == "x32_getpid" {
            assert!(
                outcome == "ENOSYS" || outcome == "ok",
                "{name}: as the kernel answers it (ENOSYS without x32): {outcomes:?}"
            );
        } else if denied.contains(&name.as_str()) {
            assert_eq!(
                outcome, "EPERM",
                "{name} must fail with EPERM: {outcomes:?}"
            );
        } else if allowed.contains(&name.as_str()) {
            assert_eq!(outcome, "ok", "{name} must work: {outcomes:?}");
        } else {
            assert_eq!(
                outcome, "ENOSYS",
                "{name}: libc must fall back: {outcomes:?}"
            );
        }
    }
}

#[test]
fn the_workload_cannot_reach_pid_1s_memory_channel_or_log() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let outcomes = probe(
        &home,
        &[
            "proc1_mem",
            "proc1_stdout",
            "proc1_channel",
            "proc1_environ",
        ],
    );
    for (name, outcome) in &outcomes {
        assert!(
            outcome == "EACCES" || outcome == "EPERM",
            "{name} must be refused: {outcomes:?}"
        );
    }
    // The agent still reports output and exit codes honestly afterwards.
    let run = home.msb(&["run", "--", "sh", "-c", "echo fine; exit 7"]);
    assert_eq!((run.code, run.stdout.as_str()), (7, "fine\n"), "{run:?}");
}

#[test]
fn host_interrupt_counts_and_energy_counters_are_masked() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let out = home.ok(&["run", "--", "sh", "-c", "wc -c < /proc/interrupts"]);
    assert_eq!(out.trim(), "0", "{out}");
    assert!(!std::fs::read_to_string("/proc/interrupts")
        .unwrap()
        .is_empty());
    // RAPL counters exist only on some hosts (not on a paravirtualised one).
    if Path::new("/sys/devices/virtual/powercap").is_dir() {
        let out = home.ok(&["run", "--", "ls", "/sys/devices/virtual/powercap"]);
        assert_eq!(out, "", "powercap visible: {out}");
    }
}

/// The home's id map (written by msbd at its first start).
fn id_map(home: &TestHome) -> (u32, u32) {
    let text = std::fs::read_to_string(home.path().join("idmap.json")).expect("idmap.json");
    let map: Value = serde_json::from_str(&text).unwrap();
    (
        map["host_uid"].as_u64().unwrap() as u32,
        map["host_gid"].as_u64().unwrap() as u32,
    )
}

/// `Uid:` and `Gid:` lines of a host process (real, effective, saved, fs).
fn host_ids(pid: i64) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    (line("Uid:"), line("Gid:"))
}

#[test]
fn root_in_a_sandbox_is_an_unprivileged_host_user() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "create",
        "-n",
        "u",
        "--",
        "sh",
        "-c",
        "id -u; id -g; echo made > /made; sleep 30",
    ]);
    home.ok(&["start", "u"]);
    let (uid, gid) = id_map(&home);
    assert!(uid >= 65536 && gid >= 65536, "{uid} {gid}");
    let info = home.inspect("u");
    let init = info["runs"][0]["init_pid"].as_i64().expect("init pid");
    // PID 1 and every workload run as the mapped ids on the host.
    let expected = (
        format!("{uid} {uid} {uid} {uid}"),
        format!("{gid} {gid} {gid} {gid}"),
    );
    assert_eq!(host_ids(init), expected, "PID 1");
    home.eventually(Duration::from_secs(5), "workload started", || {
        home.ok(&["logs", "u"]).contains("0\n0\n")
    });
    let sandbox = info["id"].as_str().unwrap().to_owned();
    // The upper layer is on the root disk, mounted (in the supervisor's mount namespace)
    // while the sandbox runs.
    let upper = home.seen_by_supervisor(
        "u",
        &home
            .path()
            .join(format!("sandboxes/{sandbox}/root-disk/upper/made")),
    );
    let metadata = std::fs::metadata(&upper).expect("written into the upper layer");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((metadata.uid(), metadata.gid()), (uid, gid));
    // Inside, the host's root-owned files are not root's: /proc/sys is not writable. The
    // runtime directory is the sandbox's own (its file server acts with the mapped ids): a link
    // made there belongs to the mapped user on the host.
    let out = home.ok(&[
        "exec",
        "u",
        "--",
        "sh",
        "-c",
        "cat /proc/self/uid_map; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sys-refused; \
         ln -s / /.msb/bin2 && echo msb-linked",
    ]);
    let map: Vec<&str> = out.split_whitespace().take(3).collect();
    assert_eq!(map, ["0", uid.to_string().as_str(), "65536"], "{out}");
    assert!(
        out.contains("sys-refused") && out.contains("msb-linked"),
        "{out}"
    );
    let link = home
        .path()
        .join(format!("sandboxes/{sandbox}/runtime/bin2"));
    let metadata = std::fs::symlink_metadata(&link).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (uid, gid));
    home.ok(&["stop", "u"]);
}

#[test]
fn a_bind_source_replaced_by_a_symbolic_link_is_refused_at_the_next_start() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let app = tempfile::tempdir().unwrap();
    std::fs::create_dir(app.path().join("cache")).unwrap();
    let whole = format!("{}:/app", app.path().display());
    let cache = format!("{}/cache:/cache", app.path().display());
    // The first run replaces the second bind's source with a link to the host's root.
    home.ok(&[
        "create", "-n", "b", "-v", &whole, "-v", &cache, "--", "sh", "-c",
        "ls /cache/etc/hostname 2>/dev/null && echo HOST-ROOT; rm -rf /app/cache && ln -s / /app/cache",
    ]);
    home.ok(&["start", "b"]);
    home.ok(&["wait", "b"]);
    assert!(!home.ok(&["logs", "b"]).contains("HOST-ROOT"));
    assert!(
        app.path().join("cache").is_symlink(),
        "the link was planted"
    );
    let again = home.msb(&["start", "b"]);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("symbolic link"), "{again:?}");
    assert!(!home.ok(&["logs", "b"]).contains("HOST-ROOT"));
}

/// A copy of the default root in a fresh directory, for `--rootfs`.
fn root_copy(home: &TestHome) -> tempfile::TempDir {
    home.ok(&["run", "--", "true"]);
    let root = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args([
            "-a",
            &format!("{}/images/busybox/rootfs/.", home.path().display()),
        ])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(copy.success());
    root
}

#[test]
fn a_mount_point_planted_as_a_symbolic_link_is_refused() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let root = root_copy(&home);
    let root_arg = root.path().to_str().unwrap();
    // One sandbox plants `/data` as a link into the old root's place (the host's /tmp during
    // the next sandbox's setup); another, sharing the root, mounts a bind below `/data`.
    home.ok(&[
        "run",
        "--rootfs",
        root_arg,
        "--",
        "ln",
        "-s",
        "/.msb/.oldroot/tmp",
        "/data",
    ]);
    assert!(root.path().join("data").is_symlink());
    let source = tempfile::tempdir().unwrap();
    // A name of this run's own, so that nothing already on the host can pass for the escape.
    let point = format!("msb-escape-point-{}", std::process::id());
    let bind = format!("{}:/data/{point}", source.path().display());
    let marker = format!("msb-escape-{}", std::process::id());
    let run = home.msb(&[
        "run",
        "--rootfs",
        root_arg,
        "-v",
        &bind,
        "--",
        "touch",
        &format!("/data/{point}/{marker}"),
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("symbolic link"), "{run:?}");
    assert!(
        !Path::new("/tmp").join(&point).exists(),
        "a mount point was made on the host"
    );
}

/// `-v /:/host:ro` is read-only, and the filesystems mounted below the host's root (its
/// `/dev`, `/proc`, `/sys`, `/run`) are out of reach: the file server does not cross mounts, so
/// neither a device nor a kernel knob is reachable through it. A writable `-v /:/host` cannot
/// reach them either, nor msb's own home below it (its directory is refused by the server).
#[test]
fn a_bind_of_the_host_root_reaches_no_device_and_no_kernel_knob() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let marker = format!("/msb-escape-ro-{}", std::process::id());
    // msb's own home is below `/` too: its catalog (with `-e` values), the images every
    // sandbox runs from and the kept seccomp filter must stay out of reach.
    let msb_home = home.path().display().to_string();
    let parent = home.path().parent().unwrap().display().to_string();
    let probe = format!(
        "echo x > /host/dev/null 2>/dev/null && echo DEV-WRITABLE; \
         head -c1 /host/dev/zero >/dev/null 2>&1 && echo DEV-READABLE; \
         ls /host/dev/ >/dev/null 2>&1 && echo DEV-LISTED; \
         echo 1 > /host/proc/sys/kernel/domainname 2>/dev/null && echo SYS-WRITABLE; \
         cat /host/proc/self/status >/dev/null 2>&1 && echo PROC-READABLE; \
         ls /host/etc/hostname >/dev/null && echo ETC-SEEN; \
         ls /host{parent} >/dev/null && echo PARENT-SEEN; \
         ls /host{msb_home} >/dev/null 2>&1 && echo HOME-LISTED; \
         head -c1 /host{msb_home}/msb.duckdb >/dev/null 2>&1 && echo CATALOG-READ; \
         touch /host{msb_home}/cache/planted 2>/dev/null && echo CACHE-WRITABLE; \
         grep -c ' /host' /proc/self/mountinfo; true"
    );
    let probe = probe.as_str();
    let ro = home.ok(&[
        "run",
        "-v",
        "/:/host:ro",
        "--",
        "sh",
        "-c",
        &format!("{probe}; touch /host{marker} 2>/dev/null && echo ROOT-WRITABLE; true"),
    ]);
    let rw = home.ok(&["run", "-v", "/:/host", "--", "sh", "-c", probe]);
    for out in [&ro, &rw] {
        for leak in [
            "DEV-WRITABLE",
            "DEV-READABLE",
            "DEV-LISTED",
            "SYS-WRITABLE",
            "PROC-READABLE",
            "ROOT-WRITABLE",
            "HOME-LISTED",
            "CATALOG-READ",
            "CACHE-WRITABLE",
        ] {
            assert!(!out.contains(leak), "{leak}: {out}");
        }
        assert!(
            out.contains("ETC-SEEN") && out.contains("PARENT-SEEN"),
            "the root's own files are there: {out}"
        );
        let mounts: u32 = out.lines().last().unwrap().trim().parse().unwrap();
        assert_eq!(mounts, 1, "one mount, nothing below it: {out}");
    }
    assert!(!Path::new(&marker).exists());
    assert!(!home.path().join("cache/planted").exists());
}

/// A `--rootfs DIR` root is served by msb's file server, which never follows a link on the host
/// side: a link planted in the directory (by the host or an earlier run) is resolved by the
/// sandbox's own kernel, inside the sandbox, and `..` from the root stays at the root.
#[test]
fn a_served_root_does_not_lead_to_the_host() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let root = root_copy(&home);
    let secret_dir = tempfile::tempdir().unwrap();
    let marker = format!("msb-served-root-secret-{}", std::process::id());
    std::fs::write(secret_dir.path().join(&marker), "HOST-SECRET").unwrap();
    std::os::unix::fs::symlink(secret_dir.path(), root.path().join("hostlink")).unwrap();
    let run = home.msb(&[
        "run",
        "--rootfs",
        root.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &format!(
            "grep ' / ' /proc/mounts | cut -d' ' -f3; cat /hostlink/{marker}; \
             cat /../../..{}/{marker}; ls /../.. | grep -c msb-served-root || true",
            secret_dir.path().display()
        ),
    ]);
    assert_eq!(run.stdout.lines().next(), Some("fuse.msb-fs"), "{run:?}");
    assert!(!run.stdout.contains("HOST-SECRET"), "{run:?}");
    assert!(!run.stderr.contains("HOST-SECRET"), "{run:?}");
}

/// PID 1 executes the agent from an fd opened on the host before the pivot: the binary is not
/// in the sandbox (no file under `/.msb`, no mount of it), and the workload cannot reach it
/// through PID 1's `/proc/1/exe` either (the agent is not dumpable).
#[test]
fn the_agent_binary_is_out_of_the_sandboxs_reach() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let out = home.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo msb:$(ls -A /.msb | tr '\\n' ' '); grep -c msb-agentd /proc/self/mountinfo; \
         cut -d ' ' -f 5 /proc/self/mountinfo | grep -c '^/$'; \
         readlink /proc/1/exe >/dev/null 2>&1 || echo no-exe-link; \
         head -c 4 /proc/1/exe >/dev/null 2>&1 || echo no-exe-read; \
         find / -xdev -name 'msb-agentd*' 2>/dev/null | head -3",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["msb:", "0", "1", "no-exe-link", "no-exe-read"],
        "nothing of the agent binary inside, and one mount at / (the host's detached): {out}"
    );
}

/// A sandbox booted ahead of time runs unlimited in placeholder cgroups until a start claims
/// it: the workload of that start must still be held to the start's limits (written before the
/// workload runs), and be in the claimed cgroups, not the placeholders.
#[test]
fn a_workload_in_a_sandbox_booted_ahead_cannot_outgrow_the_limit_it_was_claimed_with() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    assert_eq!(home.ok(&["run", "--", "echo", "first"]).trim(), "first");
    home.wait_for_booted_sandbox();
    let booted = |home: &TestHome| {
        let status: serde_json::Value =
            serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
        status["warm_supervisors"]["booted_starts"]
            .as_u64()
            .unwrap()
    };
    let before = booted(&home);
    // The shell keeps the whole substitution in its own memory: far past 48 MiB.
    let run = home.msb(&[
        "run",
        "-n",
        "hog",
        "-m",
        "48M",
        "--",
        "sh",
        "-c",
        "grep -c warm- /proc/self/cgroup; x=$(yes | head -c 300000000); echo survived",
    ]);
    assert_eq!(
        booted(&home),
        before + 1,
        "the start took the booted sandbox"
    );
    assert!(!run.stdout.contains("survived"), "{run:?}");
    assert_eq!(
        run.stdout.lines().next(),
        Some("0"),
        "in placeholder cgroups: {run:?}"
    );
    let inspect = home.inspect("hog");
    assert_eq!(inspect["runs"][0]["end_cause"], "oom_kill", "{inspect}");
}

/// A hostile run on a root disk that is handed on to the next sandbox (`runtime/src/hand_on.rs`)
/// tries to leave it something: a set-uid copy of the shell, a FIFO, a symbolic link over a file
/// of the image, and whiteouts (files of the image it deleted). The next sandbox booted on that
/// very disk sees the image as it is.
#[test]
fn a_run_leaves_nothing_on_the_root_disk_it_hands_on() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "1")]);
    let second = home.hand_on_after(
        "cp /bin/busybox /suid && chmod 4755 /suid && mkfifo /fifo \
         && rm /etc/os-release && ln -sf /fifo /etc/group && rm -rf /root; true",
    );
    let seen = home.ok(&[
        "exec",
        &second,
        "--",
        "sh",
        "-c",
        "ls -A /suid /fifo 2>&1; test -f /etc/os-release && echo os-release; \
         test -L /etc/group || echo group-file; ls -ld /root 2>&1 | head -c 1",
    ]);
    assert!(seen.contains("/suid: No such file"), "{seen}");
    assert!(seen.contains("/fifo: No such file"), "{seen}");
    assert!(seen.contains("os-release"), "{seen}");
    assert!(seen.contains("group-file"), "{seen}");
    assert!(
        seen.trim_end().ends_with('d'),
        "/root as the image has it: {seen}"
    );
    home.ok(&["stop", &second]);
}

/// The overlay root is mounted on the root disk's `rootfs` directory (in PID 1's mount namespace
/// only). Inside, nothing of the disk is mounted but that root: no path leads to the disk's
/// `upper`, `work` or `rootfs` (or the sandbox's directory on the host), and root in the
/// sandbox cannot mount the disk again.
#[test]
fn the_root_disks_own_directories_are_out_of_reach() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "--", "true"]);
    home.wait_for_booted_sandbox();
    // A booted sandbox and a named one started on its own disk.
    let booted = home
        .ok(&["run", "-d", "--", "sleep", "600"])
        .trim()
        .to_owned();
    home.ok(&["create", "-n", "own", "--", "sleep", "600"]);
    home.ok(&["start", "own"]);
    for name in [booted.as_str(), "own"] {
        let id = home.inspect(name)["id"].as_str().unwrap().to_owned();
        let out = home.ok(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "cat /proc/self/mountinfo; echo ---; ls -a / /.msb; echo ---; \
             ls -d /rootfs /upper /work /lost+found /.msb/.oldroot 2>&1; echo ---; \
             for d in /dev/loop*; do mount -t ext4 \"$d\" /mnt 2>&1; done; \
             ls /dev | grep -c loop; true",
        ]);
        let parts: Vec<&str> = out.split("---\n").collect();
        assert_eq!(parts.len(), 4, "{out}");
        let (mountinfo, listing, missing, mounting) = (parts[0], parts[1], parts[2], parts[3]);
        // The root is the overlay; no ext4 (the disk) and nothing of the host's directory.
        let root = mountinfo
            .lines()
            .find(|line| line.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no root in {mountinfo}"));
        assert!(root.contains(" - overlay "), "{root}");
        // (The disk is on a loop device.)
        assert!(!mountinfo.contains(" - ext4 /dev/loop"), "{mountinfo}");
        // (The overlay's options name its host directories, as Docker's do; no mount point is
        // one of them.)
        for line in mountinfo.lines() {
            let point = line.split(' ').nth(4).unwrap_or_default();
            assert!(
                !point.contains(&id) && !point.contains("root-disk") && !point.contains("rootfs"),
                "{line}"
            );
        }
        for entry in ["rootfs", "upper", "work", "lost+found", ".oldroot"] {
            assert!(
                !listing.lines().any(|line| line == entry),
                "{entry} in {listing}"
            );
        }
        assert_eq!(missing.matches("No such file").count(), 5, "{missing}");
        // No loop device node, and no mount of one.
        assert_eq!(mounting.lines().last(), Some("0"), "{mounting}");
        let after = home.ok(&["exec", name, "--", "cat", "/proc/self/mountinfo"]);
        assert!(!after.contains(" - ext4 /dev/loop"), "{after}");
    }
    home.ok(&["rm", "-f", &booted]);
    home.ok(&["rm", "-f", "own"]);
}

/// A root disk whose `rootfs` is not a directory of its own (here a link to the host's `/etc`,
/// planted on the image from the host, as nothing inside a sandbox can reach it) is refused
/// at the start: the overlay root is never mounted through a link.
#[test]
fn a_root_disks_mount_point_replaced_by_a_link_is_refused() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "-n", "linked", "--", "true"]);
    let id = home.inspect("linked")["id"].as_str().unwrap().to_owned();
    let image = home
        .path()
        .join("sandboxes")
        .join(&id)
        .join("root-disk.img");
    let mount = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let status = std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    let point = mount.path().to_str().unwrap();
    ok(&["mount", "-o", "loop", image.to_str().unwrap(), point]);
    let planted = std::fs::remove_dir(mount.path().join("rootfs"))
        .and_then(|()| std::os::unix::fs::symlink("/etc", mount.path().join("rootfs")));
    ok(&["umount", point]);
    planted.unwrap();
    let before = std::fs::read_dir("/etc").unwrap().count();
    let start = home.msb(&["start", "linked"]);
    assert_ne!(start.code, 0, "{start:?}");
    assert!(
        start.stderr.contains("mount point") && start.stderr.contains("not a directory"),
        "{start:?}"
    );
    assert_eq!(std::fs::read_dir("/etc").unwrap().count(), before);
    home.ok(&["rm", "-f", "linked"]);
}
