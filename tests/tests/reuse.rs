//! What one run hands on to the next: an ephemeral run's root disk (emptied) and a removed
//! sandbox's directory (emptied), and the clean-up of what a killed supervisor left of either.

use std::path::Path;
use std::time::Duration;

use msb_e2e::{require_root, TestHome};

/// Whether process `pid` is gone (or a zombie).
fn gone(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.contains(") Z "))
        .unwrap_or(true)
}

/// The root disk an ephemeral run ends with is handed on to the next sandbox booted ahead of
/// time (the same image, so none is copied, attached, mounted, unmounted and deleted), and
/// nothing of the run reaches that sandbox: its files and directories, the mode, owner and
/// times it gave its root. A run that wrote more than the hand-on's bound leaves its disk to be
/// deleted as before.
#[test]
fn an_ephemeral_runs_root_disk_is_handed_on_emptied() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "1")]);
    let second = home.hand_on_after(
        "echo secret > /secret && mkdir -p /d/e && echo x > /d/e/f && echo changed >> /etc/passwd \
         && touch -d '2001-01-01 00:00:00' / && chown 1234:1234 / && chmod 700 /",
    );
    let seen = home.ok(&[
        "exec",
        &second,
        "--",
        "sh",
        "-c",
        "ls -A /secret /d 2>&1; stat -c '%a %u:%g %Y' /; grep -c changed /etc/passwd; df -k / | tail -1",
    ]);
    assert!(seen.contains("/secret: No such file"), "{seen}");
    assert!(seen.contains("/d: No such file"), "{seen}");
    let lines: Vec<&str> = seen.lines().collect();
    let root = lines
        .iter()
        .find(|l| l.contains(':') && !l.contains('/'))
        .unwrap();
    let mut fields = root.split_whitespace();
    assert_eq!(fields.next(), Some("755"), "{seen}");
    assert_eq!(fields.next(), Some("0:0"), "{seen}");
    let mtime: i64 = fields.next().unwrap().parse().unwrap();
    assert!(
        mtime > 1_000_000_000,
        "the root's times are the run's: {seen}"
    );
    assert!(
        lines.contains(&"0"),
        "/etc/passwd as the image has it: {seen}"
    );
    // Nothing of the first run's is on the disk: 100 KiB or so in use, as on a fresh one.
    let used_kib: u64 = lines
        .last()
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(used_kib < 1024, "{seen}");
    home.ok(&["stop", &second]);

    // A run that wrote more than the bound: its disk goes with it.
    let big = home
        .ok(&[
            "run",
            "-d",
            "--",
            "sh",
            "-c",
            "dd if=/dev/urandom of=/big bs=1M count=128 2>/dev/null; sync; rm /big; touch /done; sleep 600",
        ])
        .trim()
        .to_owned();
    let supervisor = home.inspect(&big)["runs"][0]["supervisor_pid"]
        .as_i64()
        .unwrap();
    home.eventually(
        Duration::from_secs(30),
        "the big file written and gone",
        || home.msb(&["exec", &big, "--", "test", "-e", "/done"]).code == 0,
    );
    home.ok(&["stop", &big]);
    home.eventually(
        Duration::from_secs(10),
        "the big run's supervisor gone",
        || gone(supervisor),
    );
    assert!(!home
        .path()
        .join(format!("warm/handed-on-{supervisor}.img"))
        .exists());

    // msbd's stop lets the disk it kept go, and its socket (a supervisor still ending then
    // deletes its disk's image itself).
    home.ok(&["run", "--", "true"]);
    home.ok(&["server", "stop"]);
    let left = || -> Vec<String> {
        std::fs::read_dir(home.path().join("warm"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("hand"))
                    .collect()
            })
            .unwrap_or_default()
    };
    home.eventually(Duration::from_secs(10), "no disk left handed on", || {
        left().is_empty()
    });
}

/// The directory of a removed ephemeral sandbox becomes a later boot's directory (the same
/// inode: no directory, log, output or record file is made and deleted per run), emptied of
/// everything of its run: its output and log, its record, and what its workload wrote in
/// `/.msb`.
#[test]
fn a_removed_sandboxs_directory_is_recycled_with_nothing_of_its_run() {
    use std::os::unix::fs::MetadataExt;
    if !require_root() {
        return;
    }
    let home = TestHome::with_one_booted_supervisor();
    let first = home
        .ok(&[
            "run",
            "-d",
            "--",
            "sh",
            "-c",
            "echo secret-output; echo left > /.msb/planted; sleep 600",
        ])
        .trim()
        .to_owned();
    let inspect = home.inspect(&first);
    let id = inspect["id"].as_str().unwrap().to_owned();
    let supervisor = inspect["runs"][0]["supervisor_pid"].as_i64().unwrap();
    let dir = home.path().join(format!("sandboxes/{id}"));
    let inode = std::fs::metadata(&dir).unwrap().ino();
    home.eventually(Duration::from_secs(10), "the output written", || {
        home.ok(&["logs", &first]).contains("secret-output")
    });
    home.ok(&["stop", &first]);
    home.eventually(Duration::from_secs(10), "its supervisor gone", || {
        gone(supervisor)
    });
    // Each start spawns a supervisor that boots in the oldest directory kept whose
    // supervisor has exited (the runs' before this one's are older): within a few starts, this
    // one's.
    let warm = home.path().join("warm");
    let boot_inode = || -> Option<u64> {
        std::fs::read_dir(&warm)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".boot"))
            .and_then(|e| e.metadata().ok())
            .map(|m| m.ino())
    };
    let mut booted_in = Vec::new();
    for _ in 0..6 {
        home.ok(&["run", "--", "true"]);
        home.eventually(Duration::from_secs(20), "a sandbox booted ahead", || {
            boot_inode().is_some()
        });
        booted_in.extend(boot_inode());
        if booted_in.last() == Some(&inode) {
            break;
        }
    }
    assert_eq!(
        booted_in.last(),
        Some(&inode),
        "booted in the removed sandbox's directory ({booted_in:?})"
    );
    home.ok(&["run", "-d", "-n", "next", "--", "sleep", "600"]);
    let next = home.inspect("next")["id"].as_str().unwrap().to_owned();
    let next_dir = home.path().join(format!("sandboxes/{next}"));
    assert_eq!(std::fs::metadata(&next_dir).unwrap().ino(), inode);
    let inside = home.ok(&["exec", "next", "--", "sh", "-c", "ls -A /.msb; echo end"]);
    assert_eq!(inside, "end\n", "nothing of the run in /.msb");
    let logs = home.ok(&["logs", "next"]);
    assert!(!logs.contains("secret-output"), "{logs}");
    for file in ["output.jsonl", "supervisor.log", "run.json", "run.json.tmp"] {
        let text = std::fs::read_to_string(next_dir.join(file)).unwrap_or_default();
        assert!(
            !text.contains("secret-output") && !text.contains(&id),
            "{file}: {text}"
        );
    }
    assert!(!next_dir.join("runtime/planted").exists());
    assert_eq!(home.inspect("next")["status"], "Running");
    home.ok(&["rm", "-f", "next"]);
}

/// The image of a disk whose supervisor was killed between taking its run's disk and sending
/// it to msbd is deleted by a later spawn once it has not been written for ten seconds; one of a
/// live supervisor, or written just now, stays.
#[test]
fn an_abandoned_handed_on_image_is_deleted() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "--", "true"]);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let warm = home.path().join("warm");
    let image = |pid: u32| warm.join(format!("handed-on-{pid}.img"));
    let make = |path: &Path, age: &str| {
        std::fs::write(path, b"").unwrap();
        let status = std::process::Command::new("touch")
            .args(["-m", "-d", age])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    };
    make(&image(dead), "1 minute ago");
    let live = std::process::id();
    make(&image(live), "1 minute ago");
    let recent = warm.join("handed-on-1999999999.img");
    make(&recent, "now");
    home.ok(&["run", "--", "true"]);
    home.eventually(
        Duration::from_secs(10),
        "the abandoned image deleted",
        || !image(dead).exists(),
    );
    assert!(image(live).exists(), "a live supervisor's");
    assert!(recent.exists(), "one written just now");
    std::fs::remove_file(image(live)).unwrap();
    std::fs::remove_file(recent).unwrap();
}
