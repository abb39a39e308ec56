//! Secrets and files at rest: `MSB_HOME` is 0700 and everything msb writes under it 0600; only
//! the home's owner (and root) may use its msbd; environment values can stay off msb's argv.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use msb_e2e::{bin_dir, require_root, TestHome};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Every directory, file and socket under `dir` that msb made for itself (not the sandboxes'
/// root filesystems, which their users must be able to read), with its mode.
fn own_entries(dir: &Path, found: &mut Vec<(std::path::PathBuf, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        // A sandbox's directory, or one booted ahead of time under `warm/` (laid out alike).
        let sandbox_part = path.parent().and_then(Path::parent).is_some_and(|p| {
            p.file_name()
                .is_some_and(|n| n == "sandboxes" || n == "warm")
        });
        if name == "images"
            || (sandbox_part
                && ["upper", "work", "runtime", "backend"].contains(&name.to_str().unwrap()))
        {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            continue;
        }
        found.push((path.clone(), mode(&path)));
        if kind.is_dir() {
            own_entries(&path, found);
        }
    }
}

#[test]
fn the_home_is_0700_and_every_file_in_it_0600_after_a_run_with_env() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    std::fs::remove_dir(home.path()).unwrap(); // let msb create it
    let out = home.ok(&[
        "run",
        "-n",
        "job",
        "-e",
        "TOKEN=s3cret",
        "--",
        "sh",
        "-c",
        "echo $TOKEN",
    ]);
    assert_eq!(out.trim(), "s3cret");
    // The store writes behind (ADR 008): a second command makes sure the catalog is on disk.
    home.ok(&["ls", "-a"]);
    assert_eq!(mode(home.path()), 0o700);
    let mut entries = Vec::new();
    own_entries(home.path(), &mut entries);
    for (path, mode) in &entries {
        let meta = std::fs::symlink_metadata(path).unwrap();
        if meta.is_dir() {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        } else {
            assert_eq!(*mode, 0o600, "{} is {mode:o}", path.display());
        }
    }
    let id = home.inspect("job")["id"].as_str().unwrap().to_owned();
    let sandbox = home.path().join("sandboxes").join(&id);
    for expected in [
        home.path().join("msb.duckdb"),
        home.path().join("msb.catalog-journal"),
        home.path().join("msbd.log"),
        home.path().join("msbd.pid"),
        home.path().join("msbd.sock"),
        sandbox.join("output.jsonl"),
        sandbox.join("supervisor.log"),
        sandbox.join("run.json"),
    ] {
        assert!(
            entries.iter().any(|(path, _)| *path == expected),
            "{} was not found among {entries:?}",
            expected.display()
        );
    }
    assert!(std::fs::metadata(home.path().join("msbd.sock"))
        .unwrap()
        .file_type()
        .is_socket());
    // The sandbox still sees a root everyone can read, and /.msb.
    let listing = home.ok(&[
        "run",
        "--",
        "stat",
        "-c",
        "%a %n",
        "/",
        "/etc/passwd",
        "/bin/busybox",
        "/.msb",
    ]);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["755 /", "644 /etc/passwd", "755 /bin/busybox", "755 /.msb"],
        "{listing}"
    );
}

#[test]
fn an_existing_home_open_to_others_is_tightened_with_a_note() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = home.msb(&["ls"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("was mode 755"), "{}", run.stderr);
    assert!(run.stderr.contains("made it 0700"), "{}", run.stderr);
    assert_eq!(mode(home.path()), 0o700);
    // Once private, nothing more is said.
    let run = home.msb(&["ls"]);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// `msb ARGS` as uid/gid 65534 (nobody), against `home`.
fn msb_as_nobody(home: &TestHome, args: &[&str]) -> msb_e2e::Run {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin_dir().join("msb"))
        .args(args)
        .env("MSB_HOME", home.path())
        .env("MSB_PROMETHEUS_ADDR", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

#[test]
fn another_user_is_refused_by_the_home_and_by_the_socket_itself() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["ls"]);
    // The home's mode keeps another user away from the socket...
    let run = msb_as_nobody(&home, &["ls"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("msbd.sock"), "{}", run.stderr);
    assert!(run.stderr.contains("Permission denied"), "{}", run.stderr);
    // ...and where modes were relaxed, msbd checks the peer's uid (SO_PEERCRED) itself.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        home.path().join("msbd.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let run = msb_as_nobody(&home, &["ls"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("msbd refused uid 65534") && run.stderr.contains("belongs to uid 0"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // The owner (root) still is served.
    home.ok(&["ls"]);
}

#[test]
fn env_values_come_from_a_file_or_msbs_environment_instead_of_argv() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(
        &file,
        "# credentials\nUSER_NAME=alice\n\nPASSWORD=p=ss word\nOVERRIDDEN=file\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let out = home.ok(&[
        "run",
        "--env-file",
        file_arg,
        "-e",
        "OVERRIDDEN=flag",
        "--",
        "sh",
        "-c",
        "echo \"$USER_NAME|$PASSWORD|$OVERRIDDEN\"",
    ]);
    assert_eq!(out.trim(), "alice|p=ss word|flag");

    // `-e KEY`: the value from msb's own environment, never on its command line.
    let output = home
        .command(&[
            "run",
            "-e",
            "API_TOKEN",
            "--",
            "sh",
            "-c",
            "echo $API_TOKEN",
        ])
        .env("API_TOKEN", "t0ken")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t0ken");
    let run = home.msb(&["run", "-e", "MSB_TEST_UNSET_VARIABLE", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("MSB_TEST_UNSET_VARIABLE is not set in msb's environment"),
        "{}",
        run.stderr
    );

    // A bad line names the file and the line, and nothing is created.
    std::fs::write(&file, "A=1\n# fine\nexport B=2\n").unwrap();
    let run = home.msb(&["run", "-n", "bad", "--env-file", file_arg, "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains(&format!("{file_arg}:3: expected KEY=VALUE")),
        "{}",
        run.stderr
    );
    assert!(!home.names().contains(&"bad".to_owned()));
}

/// Runs `script` with `sh` as uid/gid 65534 (nobody); returns (exit code, stdout + stderr).
fn sh_as_nobody(script: &str) -> (i32, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The local variant of the attacks on a sandbox: another host user goes for the workload's
/// secrets, memory and root through /proc, signals it, and reads its output log or dials its
/// supervisor directly. Each attempt fails; the same reads as root succeed, so the attempts are
/// aimed right.
#[test]
fn another_host_user_cannot_reach_a_sandboxs_processes_secrets_or_channel() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "target",
        "-d",
        "-e",
        "API_TOKEN=s3cr3t-token",
        "--",
        "sh",
        "-c",
        "echo printed-secret; sleep 300",
    ]);
    home.eventually(Duration::from_secs(20), "the workload", || {
        home.inspect("target")["runs"][0]["workload_pid"].is_u64()
    });
    let info = home.inspect("target");
    let init = info["runs"][0]["init_pid"].as_i64().unwrap();
    // `workload_pid` is the pid inside the sandbox; the host's is the agent's child.
    let workload: i64 = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the workload runs")
        .parse()
        .unwrap();
    let dir = home
        .path()
        .join("sandboxes")
        .join(info["id"].as_str().unwrap());
    home.eventually(Duration::from_secs(20), "the output", || {
        home.ok(&["logs", "target"]).contains("printed-secret")
    });
    let attempts = [
        format!("cat /proc/{workload}/environ"),
        format!("ls /proc/{workload}/root/"),
        format!("ls /proc/{init}/root/.msb/"),
        format!("dd if=/proc/{init}/mem bs=1 count=1 skip=4194304"),
        format!("kill -STOP {workload}"),
        format!("cat {}/output.jsonl", dir.display()),
        format!(
            "python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{}')\"",
            dir.join("supervisor.sock").display()
        ),
    ];
    for attempt in &attempts {
        let (code, output) = sh_as_nobody(attempt);
        assert_ne!(code, 0, "{attempt} worked as nobody: {output}");
        assert!(
            !output.contains("s3cr3t-token") && !output.contains("printed-secret"),
            "{attempt}: {output}"
        );
    }
    // Aimed right: root reads the secret and the log where nobody could not.
    let environ = std::fs::read(format!("/proc/{workload}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("API_TOKEN=s3cr3t-token"));
    assert!(std::fs::read_to_string(dir.join("output.jsonl"))
        .unwrap()
        .contains("printed-secret"));
    assert!(dir.join("supervisor.sock").exists());
    // The workload was not stopped by the attempt above.
    assert_eq!(home.status("target"), "Running");
    home.ok(&["rm", "-f", "target"]);
}
