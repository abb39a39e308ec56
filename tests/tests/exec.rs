//! `msb exec`: buffered, `--stream` and `-t`.

use msb_e2e::{require_root, TestHome};

fn home_with_sandbox() -> TestHome {
    let home = TestHome::new();
    home.detached("box", "while :; do sleep 1; done");
    home
}

#[test]
fn agent_is_pid_one_and_exec_is_buffered_with_exit_codes() {
    if !require_root() {
        return;
    }
    let home = home_with_sandbox();
    let cmdline = home.ok(&["exec", "box", "--", "cat", "/proc/1/cmdline"]);
    assert!(cmdline.starts_with("msb-agentd\0"), "{cmdline:?}");
    let run = home.msb(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    ]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (42, "out\n", "err\n")
    );
    let run = home.msb(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/etc",
        "box",
        "--",
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    assert_eq!(run.stdout, "1\n/etc\n", "{run:?}");
    assert_eq!(home.ok(&["exec", "box", "--", "hostname"]).trim(), "box");
    let interfaces = home.ok(&["exec", "box", "--", "cat", "/proc/net/dev"]);
    let names: Vec<&str> = interfaces
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    // Loopback and the userspace network's TAP device (`--no-network` leaves only loopback:
    // tests/network.rs).
    assert_eq!(names, ["lo", "eth0"], "loopback and the sandbox's network");
}

#[test]
fn stream_mode_round_trips_json_lines_and_binary() {
    if !require_root() {
        return;
    }
    let home = home_with_sandbox();
    let lines: String = (0..2000)
        .map(|i| format!("{{\"n\":{i},\"s\":\"line {i}\"}}\n"))
        .collect();
    let run = home.msb_with_input(
        &["exec", "box", "--stream", "--", "cat"],
        Some(lines.as_bytes()),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, lines);
    for (i, line) in run.stdout.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["n"], i);
    }
    // Every byte value survives, in both directions, untranslated.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut child = home.command(&["exec", "box", "--stream", "--", "cat"]);
    child
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = child.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout == bytes,
        "binary stream differs ({} bytes back)",
        output.stdout.len()
    );
}

#[test]
fn pty_exec_has_a_terminal_ctrl_d_exits_and_codes_propagate() {
    if !require_root() {
        return;
    }
    let home = home_with_sandbox();
    let run = home.msb(&[
        "exec",
        "-t",
        "box",
        "--",
        "sh",
        "-c",
        "tty; stty size; exit 5",
    ]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stdout.contains("/dev/pts/"), "{run:?}");
    assert!(
        run.stdout.contains("24 80"),
        "default size without a local terminal: {run:?}"
    );
    // An interactive shell: once it shows its prompt we type a command, then our stdin ends,
    // which the PTY turns into ^D, and the shell exits. (Input sent before the shell sets up
    // its terminal may be flushed by it, as on a real terminal, so wait for the prompt.)
    let mut child = home.command(&["exec", "-t", "box", "--", "sh"]);
    child
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = child.spawn().unwrap();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stdout.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            seen.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&seen).contains("# ") {
                // Typed once; dropping the pipe closes our stdin.
                if let Some(mut pipe) = stdin.take() {
                    std::io::Write::write_all(&mut pipe, b"echo from-pty\n").unwrap();
                }
            }
        }
    });
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("from-pty\r\n"), "{text:?}");
}

#[test]
fn pty_takes_the_size_of_the_callers_terminal() {
    if !require_root() {
        return;
    }
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux script is not installed");
        return;
    }
    let home = home_with_sandbox();
    let msb = msb_e2e::bin_dir().join("msb");
    let inner = format!(
        "stty rows 33 cols 101; {} exec -t box -- stty size",
        msb.display()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("MSB_HOME", home.path())
        .env("MSB_AGENTD", msb_e2e::agent_binary())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("33 101"), "{text:?}");
}

#[test]
fn exec_on_a_stopped_or_unknown_sandbox_fails_clearly() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["create", "-n", "idle", "--", "true"]);
    let run = home.msb(&["exec", "idle", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("idle") && run.stderr.contains("Created"),
        "{run:?}"
    );
    let run = home.msb(&["exec", "ghost", "--", "true"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no sandbox named \"ghost\""), "{run:?}");
}
