//! Named volumes: `msb volume create|ls|inspect|rm` and `-v NAME:/path`, dir and disk kinds.

use std::time::Duration;

use msb_e2e::{require_root, TestHome};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn volume_json(home: &TestHome, name: &str) -> Value {
    serde_json::from_str(&home.ok(&["volume", "inspect", name, "--format", "json"])).unwrap()
}

/// A dir volume keeps its quota and its data from one sandbox to the next and across an msbd
/// restart; it cannot be removed while a sandbox mounts it; removed, its content goes.
#[test]
fn a_dir_volume_keeps_its_quota_and_data_and_cannot_go_while_used() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["volume", "create", "cache", "--quota", "8"]);
    let run = home.msb(&[
        "run",
        "-n",
        "writer",
        "-v",
        "cache:/cache",
        "--",
        "sh",
        "-c",
        "echo kept > /cache/note; dd if=/dev/zero of=/cache/fill bs=64k count=160 2>&1; \
         df -k /cache | tail -1",
    ]);
    assert!(run.stdout.contains("No space left on device"), "{run:?}");
    let listed = home.ok(&["volume", "ls"]);
    assert!(
        listed.contains("cache") && listed.contains("8 MiB"),
        "{listed}"
    );
    let info = volume_json(&home, "cache");
    assert_eq!(info["kind"], "dir");
    assert_eq!(info["quota_mib"], 8);
    assert_eq!(info["used_by"], serde_json::json!(["writer"]));
    let path = std::path::PathBuf::from(info["path"].as_str().unwrap());
    let filled = std::fs::metadata(path.join("fill")).unwrap().len();
    assert!(
        filled.abs_diff(8 * MIB) <= 4096 + 5,
        "stopped after {filled} bytes"
    );

    let refused = home.msb(&["volume", "rm", "cache"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("used by sandbox writer"),
        "{refused:?}"
    );
    assert!(path.join("note").exists(), "nothing removed");

    // After a restart of msbd, the volume is still a dir volume with its quota and data.
    home.ok(&["server", "stop"]);
    let info = volume_json(&home, "cache");
    assert_eq!(
        (info["kind"].clone(), info["quota_mib"].clone()),
        ("dir".into(), 8.into())
    );
    let out = home.ok(&["run", "-v", "cache:/c:ro", "--", "cat", "/c/note"]);
    assert_eq!(out.trim(), "kept");

    home.ok(&["rm", "writer"]);
    home.ok(&["volume", "rm", "cache"]);
    assert!(!path.exists(), "its content went with it");
    let gone = home.msb(&["volume", "inspect", "cache"]);
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr.contains("no volume named \"cache\""),
        "{gone:?}"
    );
}

/// A disk volume is an ext4 image: its size is the budget (`df` shows it, a write past it gets
/// ENOSPC), its data outlives the sandbox, and after an msbd restart it is still a disk volume.
#[test]
fn a_disk_volume_is_an_ext4_image_that_survives_a_restart() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["volume", "create", "db", "--kind", "disk", "--size", "64M"]);
    let info = volume_json(&home, "db");
    assert_eq!(info["kind"], "disk");
    assert_eq!(info["size_mib"], 64);
    assert_eq!(info["logical_bytes"], 64 * MIB);
    assert!(
        info["allocated_bytes"].as_u64().unwrap() < 64 * MIB,
        "sparse: {info}"
    );
    let run = home.msb(&[
        "run",
        "-v",
        "db:/db",
        "--",
        "sh",
        "-c",
        "grep ' /db ' /proc/mounts; df -k /db | tail -1; echo row > /db/table; \
         stat -c %u /db/table; ls /dev | grep -q loop || echo NO-LOOP-DEVICE; \
         dd if=/dev/zero of=/db/big bs=1M count=100 2>&1",
    ]);
    assert!(run.stdout.contains(" /db ext4 "), "{run:?}");
    assert!(run.stdout.contains("nosuid,nodev"), "{run:?}");
    assert!(
        run.stdout.contains("NO-LOOP-DEVICE"),
        "the block device stays out of reach: {run:?}"
    );
    assert!(run.stdout.contains("No space left on device"), "{run:?}");
    let df: Vec<&str> = run
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with(" /db"))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let total_kib: u64 = df.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(
        (50 * 1024..=64 * 1024).contains(&total_kib),
        "df shows the image's size: {run:?}"
    );
    home.ok(&["server", "stop"]);
    assert_eq!(volume_json(&home, "db")["kind"], "disk");
    let out = home.ok(&["run", "-v", "db:/db", "--", "cat", "/db/table"]);
    assert_eq!(out.trim(), "row");
    // No loop device is left attached to the image once the sandboxes are gone.
    let image = volume_json(&home, "db")["path"]
        .as_str()
        .unwrap()
        .to_owned();
    home.eventually(Duration::from_secs(10), "the loop device detached", || {
        let list = std::process::Command::new("losetup")
            .args(["-j", &image])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        list.trim().is_empty()
    });
    home.ok(&["volume", "rm", "db"]);
}

/// Bad names, quotas and sizes are refused with a clear error and nothing is created; of two
/// concurrent creates of one name, one wins and the other is told the name exists.
#[test]
fn bad_volume_requests_are_refused_and_concurrent_creates_make_one() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for (args, expected) in [
        (vec!["a/b"], "volume name"),
        (vec!["ok", "--quota", "0"], "quota_mib"),
        (vec!["ok", "--kind", "disk", "--size", "1M"], "size_mib"),
        (
            vec!["ok", "--size", "64M"],
            "size_mib applies to disk volumes",
        ),
        (
            vec!["ok", "--kind", "disk", "--quota", "5"],
            "quota_mib applies to dir",
        ),
        (vec!["ok", "--kind", "disk", "--size", "900T"], "size_mib"),
    ] {
        let mut full = vec!["volume", "create"];
        full.extend(args.iter().copied());
        let run = home.msb(&full);
        assert_ne!(run.code, 0, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {run:?}");
    }
    let missing = home.msb(&["run", "-v", "nosuch:/x", "--", "true"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no volume named \"nosuch\""),
        "{missing:?}"
    );
    let listed: Value =
        serde_json::from_str(&home.ok(&["volume", "ls", "--format", "json"])).unwrap();
    assert_eq!(listed, serde_json::json!([]), "nothing was created");
    assert!(home.names().is_empty());

    let racers: Vec<_> = (0..2)
        .map(|_| {
            home.command(&[
                "volume", "create", "race", "--kind", "disk", "--size", "32M",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = racers
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let won = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    let lost = outcomes.iter().find(|o| !o.status.success()).unwrap();
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("already exists"),
        "{lost:?}"
    );
    assert_eq!(volume_json(&home, "race")["kind"], "disk");
}
