//! The real `msb-agentd` binary, driven over its channel the way the supervisor drives it.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use msb_protocol::agent::{FromAgent, ToAgent, MAIN_SESSION};
use msb_protocol::{ExecErrorKind, ExecMode, MAX_CHUNK_BYTES};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{spec, TestAgent};

const PTY: ExecMode = ExecMode::Pty {
    rows: 33,
    cols: 101,
};

#[test]
fn buffered_exec_reports_start_output_and_exit() {
    let mut agent = TestAgent::start();
    agent.exec(1, spec(&["echo", "hello"], ExecMode::Buffered));
    assert!(agent.started(1) > 0);
    let outcome = agent.finish(1);
    assert_eq!(outcome.stdout, b"hello\n");
    assert!(outcome.stderr.is_empty());
    assert_eq!(
        (outcome.status.code, outcome.status.signal),
        (Some(0), None)
    );
    assert!(
        agent.stdout().is_empty(),
        "the agent must never write to its stdout"
    );
}

#[test]
fn large_output_arrives_whole_in_bounded_chunks() {
    let mut agent = TestAgent::start();
    let outcome = agent.run(
        1,
        spec(&["head", "-c", "3000000", "/dev/zero"], ExecMode::Buffered),
    );
    assert_eq!(outcome.status.code, Some(0));
    assert_eq!(outcome.stdout.len(), 3_000_000);
    assert!(outcome.stdout.iter().all(|&b| b == 0));
}

#[test]
fn exit_codes_and_stderr_propagate() {
    let mut agent = TestAgent::start();
    let outcome = agent.run(
        1,
        spec(&["sh", "-c", "echo oops >&2; exit 7"], ExecMode::Buffered),
    );
    assert_eq!(outcome.stderr, b"oops\n");
    assert_eq!(outcome.status.code, Some(7));
}

#[test]
fn signal_reaches_the_session() {
    let mut agent = TestAgent::start();
    agent.exec(4, spec(&["sleep", "100"], ExecMode::Buffered));
    agent.started(4);
    agent.send(&ToAgent::Signal {
        session: 4,
        signal: libc::SIGKILL,
    });
    let outcome = agent.finish(4);
    assert_eq!(
        (outcome.status.code, outcome.status.signal),
        (None, Some(libc::SIGKILL))
    );
}

#[test]
fn stream_mode_round_trips_binary_bytes() {
    let mut agent = TestAgent::start();
    // 1 MiB of xorshift noise: every byte value, no structure cat could care about.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let input: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    agent.exec(2, spec(&["cat"], ExecMode::Stream));
    agent.started(2);
    for chunk in input.chunks(MAX_CHUNK_BYTES) {
        agent.send(&ToAgent::Stdin {
            session: 2,
            data: chunk.to_vec(),
        });
    }
    agent.send(&ToAgent::StdinEof { session: 2 });
    let outcome = agent.finish(2);
    assert_eq!(outcome.status.code, Some(0));
    assert_eq!(outcome.stdout.len(), input.len());
    assert!(
        outcome.stdout == input,
        "cat's output differs from its input"
    );
}

#[test]
fn pty_session_has_a_terminal_of_the_requested_size_and_resizes() {
    let mut agent = TestAgent::start();
    let script = "stty size; tty; echo term=$TERM; read line; stty size";
    agent.exec(3, spec(&["sh", "-c", script], PTY));
    agent.started(3);
    let before = agent.read_until(3, "term=");
    assert!(before.contains("33 101"), "{before:?}");
    assert!(before.contains("/dev/pts/"), "{before:?}");
    agent.send(&ToAgent::Resize {
        session: 3,
        rows: 50,
        cols: 120,
    });
    agent.send(&ToAgent::Stdin {
        session: 3,
        data: b"go\n".to_vec(),
    });
    let outcome = agent.finish(3);
    let after = before + &outcome.stdout_text();
    assert!(after.contains("term=xterm"), "{after:?}");
    assert!(after.contains("50 120"), "{after:?}");
    assert!(outcome.stderr.is_empty(), "a PTY merges stderr into stdout");
    assert_eq!(outcome.status.code, Some(0));
}

#[test]
fn pty_stdin_eof_ends_input() {
    let mut agent = TestAgent::start();
    agent.exec(3, spec(&["cat"], PTY));
    agent.started(3);
    agent.send(&ToAgent::Stdin {
        session: 3,
        data: b"typed\n".to_vec(),
    });
    agent.read_until(3, "typed");
    agent.send(&ToAgent::StdinEof { session: 3 });
    assert_eq!(agent.finish(3).status.code, Some(0));
}

#[test]
fn start_failures_are_classified() {
    let mut agent = TestAgent::start();
    agent.exec(1, spec(&["msb-test-no-such-command"], ExecMode::Buffered));
    assert_eq!(agent.exec_failed(1).0, ExecErrorKind::NotFound);

    agent.exec(2, spec(&[], ExecMode::Buffered));
    assert_eq!(agent.exec_failed(2).0, ExecErrorKind::InvalidRequest);

    let mut missing_dir = spec(&["true"], ExecMode::Buffered);
    missing_dir.workdir = Some("/msb-test-no-such-dir".into());
    agent.exec(3, missing_dir);
    assert_eq!(agent.exec_failed(3).0, ExecErrorKind::InvalidRequest);

    // PATH comes from the spec when it sets one.
    let mut no_path = spec(&["sh", "-c", "true"], ExecMode::Buffered);
    no_path.env = vec![("PATH".into(), "/msb-test-no-such-dir".into())];
    agent.exec(4, no_path);
    assert_eq!(agent.exec_failed(4).0, ExecErrorKind::NotFound);

    let script = std::env::temp_dir().join(format!("msb-agentd-noexec-{}", std::process::id()));
    let mut file = std::fs::File::create(&script).unwrap();
    file.write_all(b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    agent.exec(5, spec(&[script.to_str().unwrap()], ExecMode::Buffered));
    let (kind, message) = agent.exec_failed(5);
    std::fs::remove_file(&script).unwrap();
    assert_eq!(kind, ExecErrorKind::PermissionDenied, "{message}");

    // A failure in the child itself (its exec) comes back through its report pipe.
    agent.exec(7, spec(&["/msb-test-no-such-dir/prog"], ExecMode::Buffered));
    assert_eq!(agent.exec_failed(7).0, ExecErrorKind::NotFound);
    agent.exec(8, spec(&["echo", "a\0b"], ExecMode::Buffered));
    assert_eq!(agent.exec_failed(8).0, ExecErrorKind::InvalidRequest);
    let mut bad_name = spec(&["true"], ExecMode::Buffered);
    bad_name.env = vec![("A=B".into(), "c".into())];
    agent.exec(9, bad_name);
    assert_eq!(agent.exec_failed(9).0, ExecErrorKind::InvalidRequest);

    // A session that started fine afterwards still works.
    assert_eq!(
        agent
            .run(6, spec(&["true"], ExecMode::Buffered))
            .status
            .code,
        Some(0)
    );
}

#[test]
fn environment_and_workdir_apply() {
    let mut agent = TestAgent::start();
    let mut request = spec(
        &["sh", "-c", "pwd; echo \"$HOME $FOO ${TERM:-none}\""],
        ExecMode::Buffered,
    );
    request.env = vec![("FOO".into(), "bar".into())];
    request.workdir = Some("/tmp".into());
    assert_eq!(
        agent.run(1, request).stdout_text(),
        "/tmp\n/root bar none\n"
    );
}

#[test]
fn background_grandchild_does_not_hold_the_session_open() {
    let mut agent = TestAgent::start();
    // The background sleep keeps the output pipe open long after the shell exits.
    let outcome = agent.run(
        1,
        spec(&["sh", "-c", "sleep 120 & echo $!"], ExecMode::Buffered),
    );
    assert_eq!(outcome.status.code, Some(0));
    let grandchild: i32 = outcome
        .stdout_text()
        .trim()
        .parse()
        .expect("pid of the sleep");
    let _ = kill(Pid::from_raw(grandchild), Signal::SIGKILL);
}

#[test]
fn heartbeats_count_up_and_report_exec_sessions() {
    let mut agent = TestAgent::start();
    // The heartbeat starts with the host's first frame (a sandbox booted ahead of time waits
    // for its supervisor without filling the channel): any frame will do.
    agent.send(&ToAgent::StdinEof { session: 99 });
    let first = heartbeat(&mut agent);
    let second = heartbeat(&mut agent);
    assert!(second.seq > first.seq, "{first:?} then {second:?}");
    assert!(second.processes > 0, "/proc is mounted on the test host");

    agent.exec(7, spec(&["sleep", "100"], ExecMode::Buffered));
    agent.started(7);
    // The count is sampled once a second: give it a few beats to see the session.
    let beat = (0..30)
        .map(|_| heartbeat(&mut agent))
        .find(|beat| beat.active_sessions == 1)
        .expect("a heartbeat counting the running exec session");
    assert!(
        beat.activity_seq > first.activity_seq,
        "{first:?} then {beat:?}"
    );
    agent.send(&ToAgent::Signal {
        session: 7,
        signal: libc::SIGKILL,
    });
    agent.finish(7);
}

#[test]
fn main_session_is_not_counted_and_its_exit_does_not_end_the_agent() {
    let mut agent = TestAgent::start();
    assert_eq!(
        agent
            .run(MAIN_SESSION, spec(&["true"], ExecMode::Buffered))
            .status
            .code,
        Some(0)
    );
    assert!(agent.is_running());
    assert_eq!(
        agent
            .run(1, spec(&["echo", "still"], ExecMode::Buffered))
            .stdout,
        b"still\n"
    );
}

#[test]
fn signals_to_the_agent_are_forwarded_to_the_main_session() {
    let mut agent = TestAgent::start();
    agent.exec(MAIN_SESSION, spec(&["sleep", "1000"], ExecMode::Buffered));
    agent.started(MAIN_SESSION);
    kill(Pid::from_raw(agent.pid() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(
        agent.finish(MAIN_SESSION).status.signal,
        Some(libc::SIGTERM)
    );
    assert!(agent.is_running());
}

#[test]
fn shutdown_ends_sessions_and_exits_zero() {
    let mut agent = TestAgent::start();
    agent.exec(MAIN_SESSION, spec(&["sleep", "1000"], ExecMode::Buffered));
    agent.started(MAIN_SESSION);
    agent.send(&ToAgent::Shutdown { grace_ms: 10_000 });
    assert_eq!(
        agent.finish(MAIN_SESSION).status.signal,
        Some(libc::SIGTERM)
    );
    assert_eq!(agent.wait_exit().code(), Some(0));
}

#[test]
fn shutdown_kills_what_ignores_sigterm() {
    let mut agent = TestAgent::start();
    agent.exec(
        1,
        spec(
            &["sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"],
            ExecMode::Buffered,
        ),
    );
    agent.started(1);
    agent.read_until(1, "ready");
    agent.send(&ToAgent::Shutdown { grace_ms: 300 });
    // The ignored SIGTERM survives the exec; only SIGKILL ends the sleep.
    let status = agent.finish(1).status;
    assert_eq!(status.signal, Some(libc::SIGKILL), "{status:?}");
    assert_eq!(agent.wait_exit().code(), Some(0));
}

#[test]
fn end_of_channel_shuts_down() {
    let mut agent = TestAgent::start();
    agent.exec(1, spec(&["sleep", "1000"], ExecMode::Stream));
    agent.started(1);
    agent.close_channel();
    assert_eq!(agent.finish(1).status.signal, Some(libc::SIGTERM));
    assert_eq!(agent.wait_exit().code(), Some(0));
}

#[test]
fn channel_defaults_to_fd_3() {
    let mut agent = TestAgent::start_on_default_fd();
    assert_eq!(
        agent
            .run(1, spec(&["echo", "fd3"], ExecMode::Buffered))
            .stdout,
        b"fd3\n"
    );
}

fn heartbeat(agent: &mut TestAgent) -> msb_protocol::agent::Heartbeat {
    match agent.recv(|f| matches!(f, FromAgent::Heartbeat(_))) {
        FromAgent::Heartbeat(beat) => beat,
        _ => unreachable!(),
    }
}

#[test]
fn sessions_start_with_no_blocked_or_ignored_signals() {
    let mut agent = TestAgent::start();
    let outcome = agent.run(
        1,
        spec(
            &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
            ExecMode::Buffered,
        ),
    );
    let text = outcome.stdout_text();
    let mask = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .expect("field present");
        u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex mask")
    };
    assert_eq!(mask("SigBlk:"), 0, "{text}");
    // Signals 1..=31 only: glibc's internal real-time signals (32, 33) are not ours to reset.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{text}");
}

#[test]
fn serves_when_started_without_standard_fds() {
    // PID 1 may be started with 0, 1 and 2 closed (the agent then puts /dev/null there).
    let mut agent = TestAgent::start_wrapped(&["sh", "-c", "exec \"$0\" <&- >&- 2>&-"]);
    let outcome = agent.run(
        1,
        spec(&["sh", "-c", "echo out; echo err >&2"], ExecMode::Stream),
    );
    assert_eq!(
        (outcome.stdout, outcome.stderr),
        (b"out\n".to_vec(), b"err\n".to_vec())
    );
}
