//! Memory and disk outside a sandbox's limits stay bounded whatever the workload writes: a
//! client that stops reading stops the workload (not the supervisor's memory), the output log is
//! capped and rotated with what it drops counted, and `msb logs --tail` reads from the end.

use std::process::Stdio;
use std::time::Duration;

use msb_e2e::{require_root, TestHome};

fn rss_kib(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Total CPU time (user + system, in ticks) of every process in the sandbox's pid namespace
/// whose command is `yes`, found through the host's /proc.
fn yes_ticks(init: i64) -> u64 {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if !stat.contains("(yes)") {
            continue;
        }
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    ticks
}

/// `msb run -- yes | (a reader that never reads)`: the supervisor's queue to the client is
/// bounded, so its memory stays flat and `yes` is held on its full pipe instead of burning CPU.
#[test]
fn a_client_that_stops_reading_stops_the_workload_not_the_supervisors_memory() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let mut client = home
        .command(&["run", "-n", "flood", "--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The client's stdout is a pipe nobody reads: it fills at 64 KiB.
    home.eventually(Duration::from_secs(30), "the workload to run", || {
        home.msb(&["inspect", "flood", "--format", "json"]).code == 0
            && home.inspect("flood")["runs"][0]["workload_pid"].is_u64()
    });
    let run = home.inspect("flood")["runs"][0].clone();
    let supervisor = run["supervisor_pid"].as_i64().unwrap();
    let init = run["init_pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (rss_before, ticks_before) = (rss_kib(supervisor), yes_ticks(init));
    std::thread::sleep(Duration::from_secs(4));
    let (rss_after, ticks_after) = (rss_kib(supervisor), yes_ticks(init));
    // Unbounded, the supervisor grew by hundreds of MiB a second here.
    assert!(
        rss_after < 64 * 1024 && rss_after < rss_before + 8 * 1024,
        "supervisor RSS {rss_before} -> {rss_after} KiB"
    );
    // Held on its pipe: a few ticks at most in four seconds (a free `yes` burns ~400).
    assert!(
        ticks_after - ticks_before < 40,
        "yes ran for {} ticks while its client read nothing",
        ticks_after - ticks_before
    );
    // The sandbox still answers, and a stop ends it even with the client stuck.
    home.ok(&["stop", "-t", "1", "flood"]);
    let _ = client.kill();
    let _ = client.wait();
    home.ok(&["rm", "-f", "flood"]);
}

/// A detached workload writing without pause: the log stays within twice its cap (here 1 MiB),
/// the bytes it dropped are counted and announced, and a tail of one line is the last line.
#[test]
fn the_output_log_is_capped_rotated_and_tailed_from_the_end() {
    if !require_root() {
        return;
    }
    let cap: u64 = 1 << 20;
    let home = TestHome::with_env(&[("MSB_OUTPUT_LOG_MAX_BYTES", &cap.to_string())]);
    home.ok(&[
        "run",
        "-n",
        "chatty",
        "-d",
        "--",
        "sh",
        "-c",
        // About 4 MB of output: the log is rotated about four times.
        "seq 0 599999; echo last; sleep 300",
    ]);
    let id = home.inspect("chatty")["id"].as_str().unwrap().to_owned();
    let dir = home.path().join("sandboxes").join(&id);
    home.eventually(Duration::from_secs(60), "the last line", || {
        home.ok(&["logs", "chatty", "--tail", "1"])
            .ends_with("last\n")
    });
    // One chunk: what one read of the workload's pipe got (a few lines at most).
    assert!(home.ok(&["logs", "chatty", "--tail", "1"]).len() < 64 << 10);
    let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap();
    assert!(size("output.jsonl") <= cap, "{}", size("output.jsonl"));
    assert!(size("output.1.jsonl") <= cap, "{}", size("output.1.jsonl"));
    let dropped: u64 = std::fs::read_to_string(dir.join("output.dropped"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(dropped > 0);

    // The whole log: the kept lines in order, ending with the last, and a note of the drop.
    let all = home.msb(&["logs", "chatty"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(
        all.stderr
            .contains(&format!("{dropped} bytes of earlier output were dropped")),
        "{}",
        all.stderr
    );
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"last"));
    assert!(!lines.contains(&"0"), "the oldest output was dropped");
    // The first line kept may be the end of a line whose start was dropped.
    let numbers: Vec<u64> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap"
    );
    assert_eq!(*numbers.last().unwrap(), 599_999);

    let three = home.ok(&["logs", "chatty", "--tail", "3"]);
    assert!(three.ends_with("last\n"), "{three}");
    home.ok(&["rm", "-f", "chatty"]);
}

/// A cap below what msbd accepts is refused at msbd's start with the variable named.
#[test]
fn a_too_small_log_cap_is_refused() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_OUTPUT_LOG_MAX_BYTES", "100")]);
    let run = home.msb(&["ls"]);
    assert_ne!(run.code, 0, "{run:?}");
    let log = std::fs::read_to_string(home.path().join("msbd.log")).unwrap_or_default();
    assert!(
        format!("{}{log}", run.stderr).contains("MSB_OUTPUT_LOG_MAX_BYTES = 100: at least 65536"),
        "{run:?}\n{log}"
    );
}
