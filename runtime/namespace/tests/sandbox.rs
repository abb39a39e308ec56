//! End-to-end tests of the namespace backend on this host: real namespaces, cgroups, seccomp.
//! They run only as root with a static busybox, and print why they skip otherwise.

mod support;

use std::path::Path;

use msb_namespace::{capability_mask, BindMount, ExitStatus, Limits};
use support::{require_host, Options, TestSandbox};

/// Records what PID 1 sees into /.msb, signals through fd 3, then waits for "go" on fd 3.
const INSPECT: &str = r#"
cat /proc/1/cmdline | tr '\0' ' ' > /.msb/cmdline
echo $$ > /.msb/pid
hostname > /.msb/hostname
cat /proc/net/dev > /.msb/netdev
cat /sys/class/net/lo/flags > /.msb/lo_flags
grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd|CapAmb):' /proc/1/status > /.msb/status
ls /proc/1/fd | cat > /.msb/fds
echo "$MSB_AGENT_FD" > /.msb/agent_fd_env
ls /dev > /.msb/dev
touch /mnt/ro/new 2>/dev/null; echo $? > /.msb/ro_write
cat /mnt/ro/hello > /.msb/ro_read
unshare -U true 2>/.msb/unshare_err; echo $? > /.msb/unshare
touch /tmp/x && grep ' /tmp ' /proc/mounts > /.msb/tmp_mount
grep ' /sys ' /proc/mounts > /.msb/sys_mount
echo x > /host-null 2>/dev/null; echo $? > /.msb/root_node
echo x > /dev/null; echo $? > /.msb/dev_node
wc -c < /proc/timer_list > /.msb/timer_list
echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; echo $? > /.msb/proc_sys_write
cut -d ' ' -f 5 /proc/self/mountinfo | grep -c '^/$' > /.msb/old_root
printf x >&3
read line <&3
exit 7
"#;

#[test]
fn pid_1_runs_isolated_with_its_fd_limits_and_filter() {
    require_host!();
    let shared = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(shared.path().join("hello"), "from host\n").unwrap();
    let mut t = TestSandbox::start(Options {
        limits: Limits {
            cpus: Some(0.5),
            memory_bytes: Some(256 << 20),
            pids_max: Some(64),
        },
        mounts: vec![BindMount {
            host: shared.path().to_path_buf(),
            guest: "/mnt/ro".into(),
            readonly: true,
        }],
        script: INSPECT.into(),
        ..Options::default()
    });

    // The agent fd works: PID 1 wrote one byte to fd 3.
    assert_eq!(t.read_agent_byte(), b'x', "stdio: {}", t.stdio());

    // PID 1 is our child (subreaper), so `wait` can reap it.
    let pid = t.sandbox().pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, std::process::id());

    // Limits landed in the cgroup files, in this host's v1 hierarchies.
    let cgroup = t.sandbox().cgroup().clone();
    let read = |dir: &Option<msb_namespace::ControllerDir>, file: &str| {
        std::fs::read_to_string(dir.as_ref().unwrap().path.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    let memory = cgroup.memory.as_ref().unwrap();
    if memory.version == msb_namespace::CgroupVersion::V1 {
        assert_eq!(
            read(&cgroup.memory, "memory.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(read(&cgroup.cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cgroup.cpu, "cpu.cfs_period_us"), "100000");
    } else {
        assert_eq!(
            read(&cgroup.memory, "memory.max"),
            (256u64 << 20).to_string()
        );
        assert_eq!(read(&cgroup.cpu, "cpu.max"), "50000 100000");
    }
    assert_eq!(read(&cgroup.pids, "pids.max"), "64");
    let procs = read(&cgroup.memory, "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "PID 1 in its memory cgroup: {procs}"
    );

    t.release();
    assert_eq!(t.sandbox().wait().unwrap(), ExitStatus::Exited(7));
    assert_eq!(
        t.sandbox().wait().unwrap(),
        ExitStatus::Exited(7),
        "wait is repeatable"
    );

    assert_eq!(t.output("pid").trim(), "1");
    assert!(
        t.output("cmdline").starts_with("busybox sh -c "),
        "PID 1 is the agent"
    );
    assert_eq!(t.output("hostname").trim(), "box");
    let interfaces: Vec<String> = t
        .output("netdev")
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(interfaces, ["lo"]);
    let lo_flags =
        u32::from_str_radix(t.output("lo_flags").trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(lo_flags & 1, 1, "lo is up");

    let status = t.output("status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let cap_eff = format!("CapEff:\t{:016x}", capability_mask());
    assert!(status.contains(&cap_eff), "{status} wants {cap_eff}");
    assert!(status.contains("CapAmb:\t0000000000000000"), "{status}");

    let fds: Vec<String> = t
        .output("fds")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "only stdio and the agent fd reach PID 1"
    );
    assert_eq!(t.output("agent_fd_env").trim(), "3");

    let mut dev: Vec<String> = t
        .output("dev")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    dev.sort();
    for node in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero",
    ] {
        assert!(dev.iter().any(|d| d == node), "/dev/{node} in {dev:?}");
    }

    assert_ne!(
        t.output("ro_write").trim(),
        "0",
        "read-only bind is read-only"
    );
    assert_eq!(t.output("ro_read"), "from host\n");
    assert!(!shared.path().join("new").exists());
    assert_ne!(
        t.output("unshare").trim(),
        "0",
        "no new user namespaces: {}",
        t.output("unshare_err")
    );
    assert!(t.output("tmp_mount").contains("tmpfs"));
    assert!(
        t.output("sys_mount").contains(" ro,"),
        "{}",
        t.output("sys_mount")
    );
    assert_ne!(
        t.output("root_node").trim(),
        "0",
        "device nodes in the root are inert"
    );
    assert_eq!(t.output("dev_node").trim(), "0", "/dev/null works");
    assert_eq!(
        t.output("timer_list").trim(),
        "0",
        "/proc/timer_list is masked"
    );
    assert_ne!(
        t.output("proc_sys_write").trim(),
        "0",
        "/proc/sys is read-only"
    );
    assert_eq!(
        t.output("old_root").trim(),
        "1",
        "one mount at /, the sandbox's root: the host's is detached"
    );
}

#[test]
fn overlay_root_writes_land_in_upper_and_destroy_leaves_nothing() {
    require_host!();
    let mounts_before = support::host_mounts();
    let mut t = TestSandbox::start(Options {
        overlay: true,
        limits: Limits {
            memory_bytes: Some(64 << 20),
            ..Limits::default()
        },
        // The sleep keeps PID 1 alive until `start` has confirmed it (a PID 1 that has already
        // exited is a start failure, and under load this short script can win that race).
        script: "echo hi > /new-file && rm /etc/group && printf x >&3 && sleep 2".into(),
        ..Options::default()
    });
    assert_eq!(t.read_agent_byte(), b'x', "stdio: {}", t.stdio());
    assert_eq!(
        t.sandbox().wait().unwrap(),
        ExitStatus::Exited(0),
        "stdio: {}",
        t.stdio()
    );

    assert_eq!(
        std::fs::read_to_string(t.path("upper/new-file")).unwrap(),
        "hi\n"
    );
    assert!(!t.path("lower/new-file").exists(), "lower untouched");
    assert!(
        t.path("lower/etc/group").exists(),
        "deletion is a whiteout in upper"
    );
    assert!(t.path("upper/etc/group").exists());

    let dirs: Vec<_> = t.sandbox().cgroup().dirs().to_vec();
    assert!(dirs.len() >= 5, "{dirs:?}");
    assert!(dirs.iter().all(|d| d.exists()));
    t.sandbox().destroy().unwrap();
    for dir in &dirs {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    t.sandbox().destroy().expect("destroy is idempotent");
    assert!(!t.path("state/containers").join(&t.id).exists());
    assert_eq!(
        support::host_mounts(),
        mounts_before,
        "no mounts left on the host"
    );
}

#[test]
fn kill_ends_the_whole_sandbox() {
    require_host!();
    let mut t = TestSandbox::start(Options {
        script: "sleep 1000 & printf x >&3; wait".into(),
        ..Options::default()
    });
    assert_eq!(t.read_agent_byte(), b'x');
    let pids_dir = t.sandbox().cgroup().pids.clone().unwrap().path;
    let tasks = std::fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap();
    assert_eq!(tasks.lines().count(), 2, "sh and sleep: {tasks}");
    t.sandbox().kill().unwrap();
    assert_eq!(t.sandbox().wait().unwrap(), ExitStatus::Signaled(9));
    t.sandbox().kill().expect("killing a dead sandbox is fine");
    t.sandbox().destroy().unwrap();
    assert!(!pids_dir.exists());
}

#[test]
fn failed_start_leaves_nothing_behind() {
    require_host!();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let (agent, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let id = format!("fail-{}", std::process::id());
    let spec = msb_namespace::SandboxSpec {
        id: id.clone(),
        hostname: "box".into(),
        root: msb_namespace::Root::Bind(dir.path().join("no-such-root")),
        runtime_dir: dir.path().to_path_buf(),
        runtime_fuse: None,
        root_fuse: None,
        served: Vec::new(),
        disks: Vec::new(),
        agent_binary: support::BUSYBOX.into(),
        agent_argv: None,
        agent_fd: agent.into(),
        mounts: Vec::new(),
        limits: Limits::default(),
        state_dir: dir.path().join("state"),
        stdio_log: None,
        id_map: None,
    };
    let error = msb_namespace::Sandbox::start(spec).unwrap_err();
    eprintln!("expected failure: {error}");
    let host = msb_namespace::host_cgroups();
    for controller in &host.controllers {
        if let Some(attachment) = &controller.attachment {
            assert!(!attachment.own_dir.join(format!("msb-{id}")).exists());
        }
    }
    assert!(!Path::new(&dir.path().join("state/bundle")).exists());
}

#[test]
fn host_report_finds_every_controller() {
    require_host!();
    let report = msb_namespace::host_cgroups();
    eprintln!("{report:#?}");
    assert!(report.error.is_none());
    for name in ["cpu", "cpuacct", "memory", "pids"] {
        let controller = report.controllers.iter().find(|c| c.name == name).unwrap();
        assert!(controller.attachment.is_some(), "{name} attached");
        assert!(controller.writable, "{name} writable as root");
    }
}

#[test]
fn warm_launcher_starts_a_sandbox_in_its_renamed_cgroups() {
    require_host!();
    let name = format!("{}", std::process::id());
    let warm = msb_namespace::WarmLauncher::prepare(&name).expect("warm launcher");
    let launcher = warm.pid();
    let placeholder = format!("{}{name}", msb_namespace::WARM_PREFIX);
    let memory_root = Path::new("/sys/fs/cgroup/memory/msb");
    // The launcher joins its placeholder cgroups in the background: every one but memory's,
    // which PID 1 joins after its mounts.
    let procs = Path::new("/sys/fs/cgroup/pids/msb")
        .join(&placeholder)
        .join("cgroup.procs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&procs)
        .unwrap_or_default()
        .contains(&launcher.to_string())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "launcher never joined {procs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    let mut t = TestSandbox::start(Options {
        warm: Some(warm),
        limits: Limits {
            memory_bytes: Some(128 << 20),
            pids_max: Some(32),
            ..Limits::default()
        },
        script: "hostname > /.msb/hostname; cat /proc/self/cgroup > /.msb/cgroup; printf x >&3; read line <&3".into(),
        ..Options::default()
    });
    assert_eq!(t.read_agent_byte(), b'x', "stdio: {}", t.stdio());
    assert_eq!(t.output("hostname").trim(), "box");
    let memory = t.sandbox().cgroup().memory.clone().unwrap().path;
    assert_eq!(
        std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (128u64 << 20).to_string()
    );
    let members = std::fs::read_to_string(memory.join("cgroup.procs")).unwrap();
    assert!(
        members.lines().any(|l| l == t.sandbox().pid().to_string()),
        "PID 1 joined the sandbox's memory cgroup: {members}"
    );

    assert!(
        !memory_root.join(&placeholder).exists(),
        "placeholder renamed away"
    );
    // The cgroup namespace's root is the sandbox's cgroup.
    assert!(
        t.output("cgroup").lines().any(|l| l.ends_with(":memory:/")),
        "{}",
        t.output("cgroup")
    );
    t.release();
    assert_eq!(t.sandbox().wait().unwrap(), ExitStatus::Exited(0));
    t.sandbox().destroy().unwrap();
    assert!(!memory.exists());
}

#[test]
fn unclaimed_warm_launcher_leaves_nothing() {
    require_host!();
    let name = format!("{}-drop", std::process::id());
    let warm = msb_namespace::WarmLauncher::prepare(&name).expect("warm launcher");
    let pid = warm.pid();
    let dir =
        Path::new("/sys/fs/cgroup/pids/msb").join(format!("{}{name}", msb_namespace::WARM_PREFIX));
    assert!(dir.exists());
    drop(warm);
    assert!(!dir.exists(), "placeholder removed");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "launcher reaped"
    );
}

/// A claim right after `prepare` (while the launcher may still be migrating into its cgroups)
/// waits for the launcher instead of moving the directories under it.
#[test]
fn warm_launcher_claimed_at_once_still_starts() {
    require_host!();
    for round in 0..5 {
        let name = format!("{}-now{round}", std::process::id());
        let warm = msb_namespace::WarmLauncher::prepare(&name).expect("warm launcher");
        let mut t = TestSandbox::start(Options {
            warm: Some(warm),
            // Alive until released, so that the start sees PID 1 running.
            script: "printf x >&3; read line <&3".into(),
            ..Options::default()
        });
        assert_eq!(t.read_agent_byte(), b'x', "round {round}: {}", t.stdio());
        t.release();
        assert_eq!(t.sandbox().wait().unwrap(), ExitStatus::Exited(0));
        t.sandbox().destroy().unwrap();
    }
}
