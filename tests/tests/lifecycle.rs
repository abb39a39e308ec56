//! stop, kill, wait, rm, logs, inspect, timers, and concurrent operations.

use std::time::{Duration, Instant};

use msb_e2e::{require_root, TestHome};

#[test]
fn stop_is_graceful_then_forceful_and_never_hangs() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // Handles SIGTERM: exits by itself with a marker.
    home.detached(
        "polite",
        "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done",
    );
    std::thread::sleep(Duration::from_millis(300));
    home.ok(&["stop", "polite"]);
    let info = home.inspect("polite");
    assert_eq!(info["status"], "Stopped");
    assert_eq!(info["runs"][0]["termination_reason"], "ShutdownRequested");
    assert!(home.ok(&["logs", "polite"]).contains("got-term"));

    // Ignores SIGTERM: killed after the timeout.
    home.detached("stubborn", "trap '' TERM; while :; do sleep 0.1; done");
    let started = Instant::now();
    home.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(home.status("stubborn"), "Stopped");

    home.detached("forced", "trap '' TERM; while :; do sleep 0.1; done");
    home.ok(&["stop", "-f", "forced"]);
    assert_eq!(home.status("forced"), "Stopped");
    // Stopping a stopped sandbox succeeds.
    home.ok(&["stop", "forced"]);
}

#[test]
fn concurrent_stops_both_succeed() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("twice", "while :; do sleep 0.1; done");
    let mut a = home.command(&["stop", "twice"]).spawn().unwrap();
    let mut b = home.command(&["stop", "twice"]).spawn().unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_eq!(home.status("twice"), "Stopped");
}

#[test]
fn kill_signals_the_workload_and_wait_reports_how_it_ended() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("k", "trap 'exit 9' USR1; while :; do sleep 0.1; done");
    std::thread::sleep(Duration::from_millis(300));
    home.ok(&["kill", "-s", "USR1", "k"]);
    let wait = home.msb(&["wait", "k"]);
    assert_eq!((wait.code, wait.stdout.trim()), (9, "9"));
    assert_eq!(home.inspect("k")["runs"][0]["termination_reason"], "Failed");

    home.detached("k9", "while :; do sleep 0.1; done");
    home.ok(&["kill", "k9"]);
    let info = home.inspect("k9");
    assert_eq!(info["status"], "Stopped");
    assert_eq!(info["runs"][0]["termination_reason"], "Signal");
    assert_eq!(info["runs"][0]["signal"], 9);
    assert_eq!(home.msb(&["wait", "k9"]).code, 137);
    let run = home.msb(&["kill", "k9"]);
    assert_ne!(run.code, 0, "nothing to kill in a stopped sandbox");
    let run = home.msb(&["kill", "-s", "NOSUCH", "k9"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("unknown signal"), "{run:?}");
}

#[test]
fn wait_on_an_ephemeral_sandbox_that_already_ended_reports_how_it_ended() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // Unnamed and detached: removed as soon as it ends, before anyone waits for it.
    let run = home.msb(&["run", "-d", "--", "sh", "-c", "exit 5"]);
    assert_eq!(run.code, 0, "{run:?}");
    let name = run.stdout.trim().to_owned();
    home.eventually(
        Duration::from_secs(10),
        "the ephemeral sandbox is removed",
        || home.names().is_empty(),
    );
    let wait = home.msb(&["wait", &name]);
    assert_eq!((wait.code, wait.stdout.trim()), (5, "5"), "{wait:?}");
    // A name that never existed is still unknown.
    let wait = home.msb(&["wait", "run-never-was"]);
    assert_ne!(wait.code, 0, "{wait:?}");
    assert!(wait.stderr.contains("run-never-was"), "{wait:?}");
}

/// `stop` and `kill` of an unnamed (ephemeral) sandbox, which the end of its run removes: they
/// succeed, and the API answers the sandbox as it ended.
#[test]
fn stop_and_kill_of_an_ephemeral_sandbox_answer_how_it_ended() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let removed = || {
        home.eventually(Duration::from_secs(10), "the sandbox removed", || {
            home.names().is_empty()
        });
        assert_eq!(home.sandbox_dirs(), 0);
    };
    let name = home
        .ok(&["run", "-d", "--", "sleep", "600"])
        .trim()
        .to_owned();
    assert_eq!(home.ok(&["stop", &name]).trim(), name);
    removed();
    for (verb, body, reason) in [
        ("stop", r#"{"force":false}"#, "ShutdownRequested"),
        ("kill", r#"{"signal":9}"#, "Signal"),
    ] {
        let name = home
            .ok(&["run", "-d", "--", "sleep", "600"])
            .trim()
            .to_owned();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(home.path().join("msbd.sock"))
            .args([
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ])
            .arg(format!("http://msbd/v1/sandboxes/{name}/{verb}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let info: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{verb}: {e}: {text}"));
        assert_eq!(info["name"], name.as_str(), "{verb}: {info}");
        assert_eq!(info["status"], "Stopped", "{verb}: {info}");
        let run = &info["runs"][0];
        assert!(run["ended_at"].is_string(), "{verb}: {info}");
        assert_eq!(run["termination_reason"], reason, "{verb}: {info}");
        removed();
    }
}

#[test]
fn rm_needs_a_stopped_sandbox_or_force_and_removes_everything() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("gone", "while :; do sleep 1; done");
    let run = home.msb(&["rm", "gone"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("stop it first"), "{run:?}");
    home.ok(&["rm", "-f", "gone"]);
    assert!(home.names().is_empty());
    assert_eq!(home.sandbox_dirs(), 0);
    let run = home.msb(&["rm", "gone"]);
    assert!(run.stderr.contains("no sandbox named"), "{run:?}");
    // An unnamed (ephemeral) one, which its run's end removes by itself: `rm -f` succeeds.
    let name = home.ok(&["run", "-d", "--", "sleep", "600"]);
    home.ok(&["rm", "-f", name.trim()]);
    assert!(home.names().is_empty(), "{:?}", home.names());
    assert_eq!(home.sandbox_dirs(), 0);
}

#[test]
fn logs_tail_timestamps_and_follow() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached(
        "talker",
        "for i in 1 2 3 4 5; do echo line $i; done; sleep 1; echo late; sleep 0.5",
    );
    let follow = home.msb(&["logs", "-f", "talker"]);
    assert_eq!(
        follow.stdout, "line 1\nline 2\nline 3\nline 4\nline 5\nlate\n",
        "follow ends when the sandbox stops"
    );
    let tail = home.ok(&["logs", "--tail", "1", "talker"]);
    assert_eq!(tail, "late\n");
    let stamped = home.ok(&["logs", "--timestamps", "talker"]);
    let first = stamped.lines().next().unwrap();
    assert!(
        first.len() > 25 && first[..4].parse::<u32>().is_ok() && first.ends_with("line 1"),
        "{first}"
    );
}

#[test]
fn max_duration_and_idle_timeout_stop_the_sandbox_with_their_reason() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "short",
        "-d",
        "--max-duration",
        "1s",
        "--",
        "sleep",
        "300",
    ]);
    home.eventually(Duration::from_secs(40), "max duration stop", || {
        home.status("short") == "Stopped"
    });
    assert_eq!(
        home.inspect("short")["runs"][0]["termination_reason"],
        "MaxDurationExceeded"
    );

    // Exec activity keeps an idle sandbox alive; the main workload's own output does not.
    home.ok(&[
        "run",
        "-n",
        "lazy",
        "-d",
        "--idle-timeout",
        "3s",
        "--",
        "sh",
        "-c",
        "while :; do echo busy; sleep 0.2; done",
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        home.ok(&["exec", "lazy", "--", "true"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        home.status("lazy"),
        "Running",
        "exec activity counts as activity"
    );
    home.eventually(Duration::from_secs(40), "idle stop", || {
        home.status("lazy") == "Stopped"
    });
    assert_eq!(
        home.inspect("lazy")["runs"][0]["termination_reason"],
        "IdleTimeout"
    );
}

#[test]
fn inspect_shows_config_and_runs() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "ins",
        "-c",
        "0.5",
        "-m",
        "64M",
        "--label",
        "team=core",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    let info = home.inspect("ins");
    assert_eq!(info["config"]["cpus"], 0.5);
    assert_eq!(info["config"]["memory_mib"], 64);
    assert_eq!(info["labels"]["team"], "core");
    let run = &info["runs"][0];
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["termination_reason"], "Completed");
    assert!(run["init_pid"].as_i64().unwrap() > 0);
    assert!(run["ended_at"].is_string());
    let text = home.ok(&["inspect", "ins"]);
    assert!(
        text.contains("Status:      Stopped") && text.contains("Completed"),
        "{text}"
    );
}
