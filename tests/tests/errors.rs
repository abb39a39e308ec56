//! Bad input: one clear line on stderr naming what was wrong, a non-zero exit, and nothing
//! left behind (no catalog row, directory, cgroup or mount).

use msb_e2e::{require_root, TestHome};

/// Mounts on the host under `home` (a running sandbox's root disk; other tests' sandboxes,
/// running alongside, have theirs under their own homes).
fn mounts(home: &TestHome) -> usize {
    let root = home.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .count()
}

fn sandbox_cgroups() -> Vec<String> {
    let mut found = Vec::new();
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup",
    ] {
        let Ok(walk) = std::process::Command::new("find")
            .args([root, "-maxdepth", "4", "-type", "d", "-name", "msb-*"])
            .output()
        else {
            continue;
        };
        found.extend(
            String::from_utf8_lossy(&walk.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    found
}

fn assert_clean(home: &TestHome, what: &str, mounts_before: usize) {
    assert!(
        home.names().is_empty(),
        "{what}: catalog row left: {:?}",
        home.names()
    );
    assert_eq!(home.sandbox_dirs(), 0, "{what}: sandbox directory left");
    assert_eq!(
        mounts(home),
        mounts_before,
        "{what}: mount left on the host"
    );
    // Nor a root disk in a supervisor's own mount namespace (it goes with the supervisor).
    home.eventually(
        std::time::Duration::from_secs(10),
        &format!("{what}: the root disk's loop device to go"),
        || home.root_disk_devices() == 0,
    );
}

#[test]
fn bad_flag_values_are_rejected_before_anything_exists() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for (args, needle) in [
        (
            vec!["run", "-m", "lots", "--", "true"],
            "invalid memory size",
        ),
        (vec!["run", "-c", "0", "--", "true"], "CPU"),
        (vec!["run", "-e", "=x", "--", "true"], "KEY=VALUE"),
        // `-e KEY` takes the value from msb's environment, where this one is not set.
        (
            vec!["run", "-e", "MSB_TEST_NOT_SET", "--", "true"],
            "MSB_TEST_NOT_SET is not set in msb's environment",
        ),
        (
            vec!["run", "--max-duration", "soon", "--", "true"],
            "invalid duration",
        ),
        (
            vec!["run", "-v", "/nonexistent-msb-dir:/x", "--", "true"],
            "/nonexistent-msb-dir",
        ),
        (vec!["stop", "-t", "abc", "x"], "invalid value"),
        // Once shifted into bytes this wrapped to a 16 MiB limit.
        (
            vec!["run", "-m", "17592186044432", "--", "true"],
            "is too large",
        ),
        (vec!["run", "-m", "8M", "--", "true"], "is too small"),
    ] {
        let run = home.msb(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{args:?}: {run:?}");
    }
    let run = home.msb(&["run", "-n", "bad/name", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("bad/name"), "{run:?}");
    assert!(home.names().is_empty());
}

#[test]
fn more_memory_than_the_host_has_is_refused_and_nothing_is_created() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let before = mounts(&home);
    // A thousand GiB: within what the API takes, beyond what this host has.
    let run = home.msb(&["run", "-m", "1000G", "--", "true"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("1024000 MiB is more than this host's memory"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert_clean(&home, "after a refused limit", before);
}

#[test]
fn missing_rootfs_taken_name_and_unknown_sandbox() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let before = mounts(&home);
    let run = home.msb(&["run", "--rootfs", "/nonexistent-msb-root", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("/nonexistent-msb-root"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");

    home.detached("taken", "sleep 300");
    let run = home.msb(&["run", "-n", "taken", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("\"taken\" is already taken"), "{run:?}");
    assert_eq!(home.names(), ["taken"]);
    home.ok(&["rm", "-f", "taken"]);

    for verb in ["stop", "kill", "wait", "start", "rm", "inspect", "logs"] {
        let run = home.msb(&[verb, "ghost"]);
        assert_ne!(run.code, 0, "{verb}");
        assert_eq!(
            run.stderr.trim(),
            "error: no sandbox named \"ghost\"",
            "{verb}: {run:?}"
        );
    }
    assert_clean(&home, "after errors", before);
}

#[test]
fn command_not_found_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "--", "true"]); // builds the default root and starts msbd
    let before_mounts = mounts(&home);
    let before_cgroups = sandbox_cgroups();
    for args in [
        vec!["run", "--", "no-such-command"],
        vec!["run", "-n", "named", "--", "no-such-command"],
        vec!["run", "-n", "detached", "-d", "--", "no-such-command"],
    ] {
        let run = home.msb(&args);
        assert_eq!(run.code, 127, "{args:?}: {run:?}");
        assert!(run.stderr.contains("no-such-command"), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
        assert_clean(&home, &format!("{args:?}"), before_mounts);
        assert_eq!(sandbox_cgroups(), before_cgroups, "{args:?}: cgroup left");
    }
}
