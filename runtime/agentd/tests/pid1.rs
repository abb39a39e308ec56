//! The agent as PID 1 of fresh pid and network namespaces, as in a sandbox. These need root
//! and `unshare(1)`; without root they return early, saying so.

mod support;

use msb_protocol::agent::{FromAgent, Heartbeat, ToAgent};
use msb_protocol::ExecMode;
use support::{spec, TestAgent};

const NAMESPACES: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--net"];

fn have_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: the agent-as-PID-1 tests need root for unshare");
    }
    root
}

#[test]
fn pid1_brings_up_lo_reaps_orphans_and_shuts_everything_down() {
    if !have_root() {
        return;
    }
    let mut agent = TestAgent::start_wrapped(NAMESPACES);
    let lo = agent.run(
        1,
        spec(&["ip", "-o", "link", "show", "lo"], ExecMode::Buffered),
    );
    assert!(lo.stdout_text().contains(",UP"), "{}", lo.stdout_text());

    // The shell exits at once; its background sleep is reparented to the agent.
    let orphan = agent.run(
        2,
        spec(
            &["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
            ExecMode::Buffered,
        ),
    );
    assert_eq!(orphan.status.code, Some(0));
    // Agent + orphan: the shell has been reaped (a zombie would still be listed).
    let settled = (0..30).any(|_| heartbeat(&mut agent).processes == 2);
    assert!(settled, "the orphan's parent was never reaped");

    agent.exec(3, spec(&["sleep", "1000"], ExecMode::Buffered));
    agent.started(3);
    agent.send(&ToAgent::Shutdown { grace_ms: 20_000 });
    assert_eq!(agent.finish(3).status.signal, Some(libc::SIGTERM));
    assert_eq!(agent.wait_exit().code(), Some(0));
    // kill(-1, SIGTERM) ended the orphan too, well within the grace period.
    assert!(
        !agent.stderr_text().contains("grace period over"),
        "{}",
        agent.stderr_text()
    );
}

#[test]
fn pid1_without_proc_still_serves() {
    if !have_root() {
        return;
    }
    let wrapper = [
        "unshare",
        "--pid",
        "--fork",
        "--mount",
        "sh",
        "-c",
        "umount -l /proc && exec \"$0\"",
    ];
    let mut agent = TestAgent::start_wrapped(&wrapper);
    assert_eq!(
        agent
            .run(1, spec(&["echo", "ok"], ExecMode::Buffered))
            .stdout,
        b"ok\n"
    );
    // The heartbeat started with that first frame.
    assert_eq!(heartbeat(&mut agent).processes, 0);
    agent.send(&ToAgent::Shutdown { grace_ms: 5_000 });
    assert_eq!(agent.wait_exit().code(), Some(0));
}

fn heartbeat(agent: &mut TestAgent) -> Heartbeat {
    match agent.recv(|f| matches!(f, FromAgent::Heartbeat(_))) {
        FromAgent::Heartbeat(beat) => beat,
        _ => unreachable!(),
    }
}
