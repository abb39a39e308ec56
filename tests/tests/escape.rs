//! Attacks from inside a real sandbox that must fail, each with the host checked afterwards:
//! denied syscalls (a static probe, `tests/probe/escape.c`, calls each one), PID 1's channel and
//! log, masked kernel files.

use std::path::{Path, PathBuf};
use std::process::Command;

use msb_e2e::{require_root, TestHome};

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
    let outcomes = probe(&home, &attempts);
    for (name, outcome) in &outcomes {
        if denied.contains(&name.as_str()) {
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
