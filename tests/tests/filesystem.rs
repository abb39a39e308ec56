//! The sandbox's filesystems as the workload sees them: `/.msb` served by msb's file server
//! (PassthroughFs) with its fixed 16 MiB budget, charged for growth only.

use std::path::PathBuf;

use msb_e2e::{require_root, TestHome};

const MIB: u64 = 1 << 20;

fn runtime_dir(home: &TestHome, name: &str) -> PathBuf {
    let id = home.inspect(name)["id"].as_str().unwrap().to_owned();
    home.path().join("sandboxes").join(id).join("runtime")
}

/// 17 MiB into `/.msb` stops with ENOSPC after 16 MiB (± 4 KiB), `df` there shows the budget,
/// and the host directory holds exactly what the workload wrote.
#[test]
fn the_runtime_directory_has_a_16_mib_budget() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let run = home.msb(&[
        "run",
        "-n",
        "quota",
        "--",
        "sh",
        "-c",
        "df -k /.msb | tail -1; dd if=/dev/zero of=/.msb/fill bs=64k count=272 2>/tmp/dd; \
         echo dd=$?; cat /tmp/dd; df -k /.msb | tail -1",
    ]);
    let out = run.stdout.clone();
    assert!(out.contains("No space left on device"), "{run:?}");
    assert!(out.contains("dd=1"), "{run:?}");
    let lines: Vec<&str> = out.lines().collect();
    // Before: a 16 MiB file system with nothing used; after: all of it used.
    let fields =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    let before = fields(lines[0]);
    assert_eq!(before[1], "16384", "{out}");
    assert_eq!(before[2], "0", "{out}");
    let after = fields(lines.last().unwrap());
    assert_eq!(after[1], "16384", "{out}");
    assert_eq!(after[3], "0", "{out}");
    let written = std::fs::metadata(runtime_dir(&home, "quota").join("fill"))
        .unwrap()
        .len();
    assert!(
        written.abs_diff(16 * MIB) <= 4096,
        "stopped after {written} bytes"
    );
    // The run's final sample agrees with what the workload saw.
    let m = home.metrics("quota");
    assert_eq!(m["runtime_fs_limit_bytes"], 16 * MIB, "{m}");
    let used = m["runtime_fs_used_bytes"].as_u64().unwrap();
    assert!(
        used.abs_diff(written) <= 4096,
        "charged {used}, on disk {written}"
    );
    assert!(
        m["runtime_fs_quota_rejections"].as_u64().unwrap() >= 1,
        "{m}"
    );
    let through = m["runtime_fs_written_bytes"].as_u64().unwrap();
    assert!(
        through >= written,
        "{through} bytes through the server, {written} on disk"
    );
}

/// What was there before the first write is not charged, and rewriting a file in place costs
/// nothing: after 20 MiB put there on the host and a 10 MiB file rewritten three times, 6 MiB
/// more still fit and 7 MiB do not.
#[test]
fn only_growth_is_charged() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["create", "-n", "growth", "--", "sh", "-c", "sleep 300"]);
    let dir = runtime_dir(&home, "growth");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("preexisting"), vec![7u8; (20 * MIB) as usize]).unwrap();
    home.ok(&["start", "growth"]);
    let script = "dd if=/dev/zero of=/.msb/ten bs=1M count=10 2>/dev/null || exit 1; \
         for i in 1 2 3; do dd if=/dev/urandom of=/.msb/ten bs=1M count=10 conv=notrunc 2>/dev/null || exit 2; done; \
         dd if=/dev/zero of=/.msb/six bs=1M count=6 2>/dev/null || exit 3; \
         dd if=/dev/zero of=/.msb/seven bs=1M count=1 2>/dev/null && exit 4; exit 0";
    let run = home.msb(&["exec", "growth", "--", "sh", "-c", script]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        std::fs::metadata(dir.join("preexisting")).unwrap().len(),
        20 * MIB
    );
    home.ok(&["rm", "-f", "growth"]);
}

/// A link the workload leaves in `/.msb` under msb's reserved mount name, pointing at the
/// host's root, is removed at the next start, never followed: the sandbox starts, and the host
/// path it pointed at is untouched.
#[test]
fn a_link_left_in_the_runtime_directory_is_not_followed_at_the_next_start() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let target = tempfile::tempdir().unwrap();
    let target_arg = target.path().to_str().unwrap().to_owned();
    home.ok(&[
        "run",
        "-n",
        "planter",
        "--",
        "sh",
        "-c",
        &format!("ln -sfn {target_arg} /.msb/.oldroot && ln -sfn {target_arg} /.msb/escape"),
    ]);
    let dir = runtime_dir(&home, "planter");
    assert!(dir.join(".oldroot").is_symlink() || dir.join("escape").is_symlink());
    home.ok(&["start", "planter"]);
    home.ok(&["wait", "planter"]);
    let run = &home.inspect("planter")["runs"][1];
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        0,
        "nothing was mounted or made in the link's target"
    );
}
