//! `msb run` and `msb create`/`start`: the main job, end to end.

use std::time::Duration;

use msb_e2e::{require_root, TestHome};

#[test]
fn run_echo_prints_and_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let run = home.msb(&["run", "--", "echo", "hello"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "hello\n"), "{run:?}");
    assert!(home.names().is_empty(), "an unnamed run is ephemeral");
    assert_eq!(home.sandbox_dirs(), 0, "its directory is removed too");
}

#[test]
fn exit_codes_and_signals_become_msbs_exit_code() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    assert_eq!(home.msb(&["run", "--", "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(
        home.msb(&["run", "--", "sh", "-c", "kill -TERM $$"]).code,
        128 + 15
    );
    let run = home.msb(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (3, "out\n", "err\n")
    );
}

#[test]
fn env_workdir_and_stdin_reach_the_workload() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let run = home.msb(&[
        "run",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd",
    ]);
    assert_eq!(run.stdout, "hi there\n/tmp\n", "{run:?}");
    let run = home.msb_with_input(&["run", "--", "sh", "-c", "tr a-z A-Z"], Some(b"shout\n"));
    assert_eq!(run.stdout, "SHOUT\n", "{run:?}");
}

#[test]
fn env_values_never_appear_in_host_process_arguments_or_environments() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let secret = "s3cr3t-value-7f2d9a";
    home.ok(&[
        "run",
        "-n",
        "sec",
        "-d",
        "-e",
        &format!("TOKEN={secret}"),
        "--",
        "sleep",
        "300",
    ]);
    let inside = home.ok(&["exec", "sec", "--", "sh", "-c", "echo $TOKEN"]);
    assert_eq!(inside.trim(), secret, "the workload does get the value");
    let init_pid = home.inspect("sec")["runs"][0]["init_pid"].as_i64().unwrap();
    let in_sandbox = |pid: &str| -> bool {
        let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
        ns(pid).is_some() && ns(pid) == ns(&init_pid.to_string()) && pid != init_pid.to_string()
    };
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || in_sandbox(&pid) {
            continue;
        }
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "the -e value shows in /proc/{pid}/{file}: {}",
                String::from_utf8_lossy(&bytes).replace('\0', " ")
            );
        }
    }
}

#[test]
fn detached_run_returns_at_once_and_keeps_running() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let started = std::time::Instant::now();
    let out = home.ok(&[
        "run",
        "-n",
        "web",
        "-d",
        "--",
        "sh",
        "-c",
        "while :; do sleep 1; done",
    ]);
    assert_eq!(out.trim(), "web");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(home.status("web"), "Running");
    let listing = home.ok(&["ls"]);
    assert!(
        listing.contains("NAME") && listing.contains("STATUS") && listing.contains("CREATED"),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start().starts_with("web") && l.contains("Running")),
        "{listing}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["ls", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "web");
    assert_eq!(
        json[0]["config"]["command"][0], "sh",
        "the command is stored as the startup intent"
    );
}

#[test]
fn create_then_start_runs_the_stored_command_and_start_restarts_it() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["create", "-n", "job", "--", "sh", "-c", "echo ran; exit 4"]);
    assert_eq!(home.status("job"), "Created");
    assert!(
        home.ok(&["ls"]).lines().count() <= 1,
        "a created sandbox is not running"
    );
    home.ok(&["start", "job"]);
    let wait = home.msb(&["wait", "job"]);
    assert_eq!((wait.code, wait.stdout.trim()), (4, "4"));
    home.ok(&["start", "job"]);
    assert_eq!(home.msb(&["wait", "job"]).code, 4);
    let info = home.inspect("job");
    let runs = info["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "each start is a new run");
    assert_eq!(runs[1]["termination_reason"], "Failed");
    assert_eq!(runs[1]["exit_code"], 4);
    let logs = home.ok(&["logs", "job"]);
    assert_eq!(logs, "ran\nran\n");
}

#[test]
fn rootfs_bind_and_volumes() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // A host directory as the root: a copy of the default busybox root.
    home.ok(&["run", "--", "true"]);
    let root = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .args([
            "-a",
            &format!("{}/images/busybox/rootfs/.", home.path().display()),
            &root.path().display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(copy.success());
    let run = home.msb(&[
        "run",
        "--rootfs",
        root.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo made > /created-inside",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("created-inside")).unwrap(),
        "made\n"
    );
    // The root is served by msb's file server (a FUSE mount), with a bind mount's default
    // 4 GiB budget as `df` shows it; what the sandbox's root writes is root's on the host.
    let run = home.msb(&[
        "run",
        "--rootfs",
        root.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "grep ' / ' /proc/mounts | cut -d' ' -f3; df -k / | tail -1; touch /owned",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"fuse.msb-fs"), "{run:?}");
    let df: Vec<&str> = lines[1].split_whitespace().collect();
    // Free: the budget less the little this run has written so far (what the root held
    // before counts as used, outside the budget).
    let free: u64 = df[3].parse().unwrap();
    assert!(((4 << 20) - 1024..=4 << 20).contains(&free), "{run:?}");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.path().join("owned")).unwrap());
    assert_eq!(owner, 0);

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "from host").unwrap();
    let spec_ro = format!("{}:/data:ro", data.path().display());
    let run = home.msb(&[
        "run",
        "-v",
        &spec_ro,
        "--",
        "sh",
        "-c",
        "cat /data/in.txt; echo x > /data/new 2>/dev/null || echo read-only",
    ]);
    assert_eq!(run.stdout, "from hostread-only\n", "{run:?}");
    let spec_rw = format!("{}:/data", data.path().display());
    home.ok(&[
        "run",
        "-v",
        &spec_rw,
        "--",
        "sh",
        "-c",
        "echo written > /data/out.txt",
    ]);
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "written\n"
    );
}

#[test]
fn default_root_writes_stay_in_the_sandbox() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "a",
        "--",
        "sh",
        "-c",
        "echo mine > /etc/marker",
    ]);
    let run = home.msb(&[
        "run",
        "--",
        "sh",
        "-c",
        "cat /etc/marker 2>/dev/null || echo absent",
    ]);
    assert_eq!(
        run.stdout, "absent\n",
        "another sandbox does not see a's writes"
    );
    assert!(
        !home
            .path()
            .join("images/busybox/rootfs/etc/marker")
            .exists(),
        "the shared lower is untouched"
    );
}
