//! msbd: on-demand start, socket permissions, server verbs, restart and reattach, crashes.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use msb_e2e::{require_root, TestHome};

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Alive until every thread has exited: a killed process's leader turns zombie first, while its
/// other threads (and its open sockets) can linger a moment longer.
fn alive(pid: i32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    match zombie {
        Ok(true) => threads > 1,
        Ok(false) => true,
        Err(_) => false,
    }
}

#[test]
fn server_verbs_and_socket_mode() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let run = home.msb(&["server", "status"]);
    assert_eq!(run.code, 3, "not running yet: {run:?}");
    home.ok(&["server", "start"]);
    let mode = std::fs::metadata(home.path().join("msbd.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status: serde_json::Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(
        status["pid"].as_i64().unwrap() as i32,
        home.daemon_pid().unwrap()
    );
    home.ok(&["server", "start"]);
    home.ok(&["server", "stop"]);
    assert_eq!(home.msb(&["server", "status"]).code, 3);
    // Any command starts it again.
    home.ok(&["ls"]);
    assert!(home.daemon_pid().is_some());
}

#[test]
fn sigterm_stops_msbd_cleanly_and_sandboxes_survive() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("survivor", "while :; do sleep 1; done");
    let pid = home.daemon_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    home.eventually(Duration::from_secs(10), "msbd exits", || !alive(pid));
    assert!(
        !home.path().join("msbd.sock").exists(),
        "socket removed on clean stop"
    );
    assert_eq!(home.status("survivor"), "Running");
}

#[test]
fn after_kill_9_of_msbd_the_next_command_reattaches_live_sandboxes() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached(
        "live",
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    );
    let old = home.daemon_pid().unwrap();
    kill9(old);
    home.eventually(Duration::from_secs(10), "msbd gone", || !alive(old));
    assert_eq!(
        home.status("live"),
        "Running",
        "the next command restarts msbd, which reattaches"
    );
    assert_ne!(home.daemon_pid().unwrap(), old);
    assert_eq!(
        home.ok(&["exec", "live", "--", "echo", "still-here"]),
        "still-here\n"
    );
    // Output keeps flowing into the log across the restart.
    home.eventually(Duration::from_secs(20), "later output in logs", || {
        home.ok(&["logs", "live"]).contains("tick 3")
    });
    home.ok(&["stop", "live"]);
    let info = home.inspect("live");
    assert_eq!(info["status"], "Stopped");
    assert_eq!(info["runs"][0]["termination_reason"], "ShutdownRequested");
}

#[test]
fn kill_9_of_msbd_during_a_foreground_run_says_so_and_the_run_is_settled_later() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["server", "start"]);
    let old = home.daemon_pid().unwrap();
    let client = home
        .command(&["run", "--", "sh", "-c", "sleep 2; echo done"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    home.eventually(Duration::from_secs(10), "the sandbox running", || {
        home.ok(&["ls", "--format", "json"]).contains("Running")
    });
    kill9(old);
    let out = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("msbd went away during the run"), "{stderr}");
    // The next msbd settles the run when it ends: the ephemeral sandbox goes.
    home.eventually(
        Duration::from_secs(20),
        "the ephemeral sandbox removed",
        || home.names().is_empty(),
    );
    assert_eq!(home.sandbox_dirs(), 0);
}

#[test]
fn a_killed_init_is_a_crash_that_says_how_init_ended() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("k", "sleep 300");
    let init = home.inspect("k")["runs"][0]["init_pid"].as_i64().unwrap() as i32;
    kill9(init);
    home.eventually(Duration::from_secs(10), "the run ended", || {
        home.status("k") == "Crashed"
    });
    let run = home.inspect("k")["runs"][0].clone();
    assert_eq!(run["termination_reason"], "InternalError", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("PID 1 (the agent) was killed by signal 9 (SIGKILL)"),
        "{run}"
    );
    // A start after the crash works.
    home.ok(&["start", "k"]);
    assert_eq!(home.ok(&["exec", "k", "--", "echo", "back"]), "back\n");
    home.ok(&["rm", "-f", "k"]);
}

#[test]
fn a_dead_supervisor_is_a_crash_and_verbs_return_promptly() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for name in ["c1", "c2", "c3"] {
        home.detached(name, "sleep 300");
    }
    for (name, verb) in [("c1", "stop"), ("c2", "kill"), ("c3", "wait")] {
        let info = home.inspect(name);
        let supervisor = info["runs"][0]["supervisor_pid"].as_i64().unwrap() as i32;
        let init = info["runs"][0]["init_pid"].as_i64().unwrap() as i32;
        let id = info["id"].as_str().unwrap().to_owned();
        kill9(supervisor);
        let started = Instant::now();
        let run = home.msb(&[verb, name]);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{verb} took {:?}",
            started.elapsed()
        );
        assert!(run.stderr.is_empty() || verb != "stop", "{verb}: {run:?}");
        if verb == "wait" {
            // No exit code to print for a run that crashed: it says so, and fails.
            assert_eq!(run.code, 1, "{run:?}");
            assert!(run.stdout.is_empty(), "{run:?}");
            assert!(
                run.stderr
                    .contains("is Crashed without an exit code: the supervisor was killed"),
                "{run:?}"
            );
        }
        assert_eq!(home.status(name), "Crashed", "{verb}");
        // msbd spawned (and reaped) that supervisor: the record says how it died.
        let run = home.inspect(name)["runs"][0].clone();
        assert!(
            run["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("the supervisor was killed by signal 9 (SIGKILL)"),
            "{verb}: {run}"
        );
        // What the dead supervisor held is released: the sandbox's processes and cgroups.
        home.eventually(
            Duration::from_secs(10),
            "orphaned sandbox init killed",
            || !alive(init),
        );
        // The orphaned init is reaped by msbd's clean-up, which then removes the cgroups (a
        // zombie keeps its pids cgroup busy until then): give it the same few seconds.
        let cgroups_left = || {
            let found = std::process::Command::new("find")
                .args([
                    "/sys/fs/cgroup",
                    "-maxdepth",
                    "4",
                    "-type",
                    "d",
                    "-name",
                    &id,
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&found.stdout).into_owned()
        };
        home.eventually(
            Duration::from_secs(10),
            "the sandbox's cgroups removed",
            || cgroups_left().is_empty(),
        );
    }
}

#[test]
fn ephemeral_leftovers_are_swept_when_msbd_restarts() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // A foreground, unnamed run whose msbd dies under it.
    let mut child = home
        .command(&["run", "--", "sleep", "300"])
        .spawn()
        .unwrap();
    home.eventually(
        Duration::from_secs(30),
        "the ephemeral sandbox runs",
        || home.msb(&["ls", "-q"]).stdout.lines().count() == 1,
    );
    let name = home.ok(&["ls", "-q"]).trim().to_owned();
    let supervisor = home.inspect(&name)["runs"][0]["supervisor_pid"]
        .as_i64()
        .unwrap() as i32;
    kill9(home.daemon_pid().unwrap());
    kill9(supervisor);
    let _ = child.kill();
    let _ = child.wait();
    home.eventually(Duration::from_secs(10), "supervisor gone", || {
        !alive(supervisor)
    });
    // The next msbd reconciles the crash and sweeps the ephemeral sandbox.
    home.eventually(Duration::from_secs(30), "sweep", || home.names().is_empty());
    assert_eq!(home.sandbox_dirs(), 0);
}

#[test]
fn doctor_reports_every_check() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let run = home.msb(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "platform",
        "kvm",
        "user namespaces",
        "cgroups",
        "seccomp",
        "fuse",
        "tun",
        "loop",
        "MSB_HOME space",
        "store",
        "agent",
        "default rootfs",
    ] {
        assert!(names.contains(&expected), "missing {expected}: {names:?}");
    }
    for check in report["checks"].as_array().unwrap() {
        assert!(matches!(
            check["status"].as_str().unwrap(),
            "ok" | "warn" | "fail"
        ));
        if check["status"] != "ok" {
            assert!(
                check["fix"].is_string(),
                "a non-ok check has a fix: {check}"
            );
        }
    }
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(run.code, i32::from(failed));
    assert_eq!(report["ok"], !failed);
    let store = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap();
    assert_eq!(store["status"], "ok", "{store}");
    let text = home.ok(&["doctor"]);
    assert!(text.contains("cgroups"));
    // The runtime's checks come from the supervisor binary: without one, doctor says so and fails.
    let mut command = home.command(&["doctor", "--format", "json"]);
    command.env("MSB_SUPERVISOR", "/nonexistent/msb-supervisor");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let supervisor = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "supervisor")
        .expect("a supervisor check");
    assert_eq!(supervisor["status"], "fail", "{supervisor}");
    assert!(
        supervisor["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/msb-supervisor"),
        "{supervisor}"
    );
}

#[test]
fn an_upgraded_msb_replaces_the_older_msbd_and_sandboxes_survive() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // An installation of our own, so that its msbd can be "upgraded" under a running daemon.
    let install = tempfile::tempdir().unwrap();
    for binary in ["msb", "msbd", "msb-supervisor"] {
        std::fs::copy(msb_e2e::bin_dir().join(binary), install.path().join(binary)).unwrap();
    }
    let msb = |args: &[&str]| {
        let mut command = home.command(args);
        command.env_remove("MSB_SUPERVISOR");
        let output = std::process::Command::new(install.path().join("msb"))
            .args(args)
            .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    msb(&["run", "-n", "kept", "-d", "--", "sleep", "1000"]);
    let old = home.daemon_pid().unwrap();
    // The upgrade: a new file (new inode) where msbd was.
    std::fs::remove_file(install.path().join("msbd")).unwrap();
    std::fs::copy(msb_e2e::bin_dir().join("msbd"), install.path().join("msbd")).unwrap();
    let (_, stderr) = msb(&["ls"]);
    assert!(stderr.contains("older build; restarting it"), "{stderr}");
    assert_ne!(home.daemon_pid().unwrap(), old);
    assert!(!alive(old));
    let (out, _) = msb(&["exec", "kept", "--", "echo", "still-here"]);
    assert_eq!(out, "still-here\n");
    msb(&["rm", "-f", "kept"]);
}
