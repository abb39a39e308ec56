//! The writable root's disk (`--root-disk`): a sparse ext4 image under the overlay's upper
//! layer, so a workload cannot fill the host's disk through its root, `df /` shows its budget,
//! and `upper_used_bytes`/`upper_free_bytes` are its `statfs`.

use std::time::Duration;

use msb_e2e::{require_root, TestHome};

const MIB: u64 = 1 << 20;

/// `df -k /` inside: (total, used, available) in bytes.
fn df_root(home: &TestHome, name: &str) -> (u64, u64, u64) {
    let out = home.ok(&["exec", name, "--", "df", "-k", "/"]);
    let fields: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|f| f.parse::<u64>().unwrap() * 1024)
        .collect();
    (fields[0], fields[1], fields[2])
}

/// Root disks attached for this home, after checking that none is in the host's mount table
/// (supervisors mount theirs in mount namespaces of their own).
fn root_disk_mounts(home: &TestHome) -> usize {
    assert_eq!(
        home.root_disk_host_mounts(),
        0,
        "a root disk in the host's mounts"
    );
    home.root_disk_devices()
}

#[test]
fn a_root_disk_bounds_the_root_and_its_metrics_match_df() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-d",
        "-n",
        "rd",
        "--root-disk",
        "64M",
        "--metrics-interval",
        "100ms",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(home.inspect("rd")["config"]["root_disk_mib"], 64);
    let (total, _, _) = df_root(&home, "rd");
    // ext4's own tables and journal take a few MiB of the 64.
    assert!((40 * MIB..=64 * MIB).contains(&total), "df total {total}");

    // Past the disk: ENOSPC, the workload sees it, and nothing reaches the host's disk.
    let fill = home.msb(&[
        "exec",
        "rd",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/fill bs=1M count=100 && sync",
    ]);
    assert_ne!(fill.code, 0, "{fill:?}");
    assert!(fill.stderr.contains("No space left on device"), "{fill:?}");
    home.ok(&["exec", "rd", "--", "rm", "/fill"]);

    // 20 MiB written: df and the metrics agree within a MiB.
    home.ok(&[
        "exec",
        "rd",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/data bs=1M count=20 2>/dev/null && sync",
    ]);
    let (_, used, available) = df_root(&home, "rd");
    assert!(used >= 20 * MIB, "df used {used}");
    let mut last = serde_json::Value::Null;
    home.eventually(
        Duration::from_secs(10),
        "the metrics to see df's figures",
        || {
            last = home.metrics("rd");
            let (Some(m_used), Some(m_free)) = (
                last["upper_used_bytes"].as_u64(),
                last["upper_free_bytes"].as_u64(),
            ) else {
                return false;
            };
            m_used.abs_diff(used) <= MIB && m_free.abs_diff(available) <= MIB
        },
    );
    // The host allocates what was written (synced), and not the image's whole size.
    let allocated = last["upper_host_allocated_bytes"].as_u64().unwrap();
    assert!((20 * MIB..64 * MIB).contains(&allocated), "{last}");

    // The disk keeps the root's changes across a stop and a start, and is attached only while
    // the sandbox runs (a stopped sandbox's filesystem is unmounted by the time `stop` returns;
    // its loop device clears itself just after, on a kernel work queue).
    assert_eq!(root_disk_mounts(&home), 1);
    home.ok(&["stop", "rd"]);
    home.eventually(Duration::from_secs(10), "the loop device to go", || {
        root_disk_mounts(&home) == 0
    });
    home.ok(&["start", "rd"]);
    let size = home.ok(&["exec", "rd", "--", "stat", "-c", "%s", "/data"]);
    assert_eq!(size.trim(), (20 * MIB).to_string());
    home.ok(&["rm", "-f", "rd"]);
    home.eventually(Duration::from_secs(10), "the loop device to go", || {
        root_disk_mounts(&home) == 0
    });

    // An ephemeral sandbox's disk goes with its supervisor, just after `msb run` returns.
    home.ok(&["run", "--", "true"]);
    home.eventually(Duration::from_secs(10), "the ephemeral disk to go", || {
        root_disk_mounts(&home) == 0
    });
}

/// A supervisor killed with SIGKILL cannot detach its root disk: its mount namespace goes with
/// it, the sandbox's with its processes (msbd kills them when it sees the crash), and the
/// sandbox can be started again and removed.
#[test]
fn a_killed_supervisor_leaves_no_root_disk_mounted() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "-d", "-n", "crash", "--", "sleep", "600"]);
    assert_eq!(root_disk_mounts(&home), 1);
    let supervisor = home.inspect("crash")["runs"][0]["supervisor_pid"]
        .as_i64()
        .unwrap();
    // SAFETY: a plain kill(2) of the sandbox's supervisor.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(supervisor as i32, libc::SIGKILL)
    };
    home.eventually(Duration::from_secs(20), "the crash seen", || {
        home.status("crash") == "Crashed"
    });
    home.eventually(Duration::from_secs(10), "the disk to go", || {
        root_disk_mounts(&home) == 0
    });
    home.ok(&["start", "crash"]);
    assert_eq!(root_disk_mounts(&home), 1);
    home.ok(&["rm", "-f", "crash"]);
    home.eventually(Duration::from_secs(10), "the loop device to go", || {
        root_disk_mounts(&home) == 0
    });
}

#[test]
fn bad_root_disk_sizes_are_refused_and_a_host_directory_root_ignores_one() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for (size, expected) in [
        ("0", "--root-disk must be 64 to"),
        ("1M", "--root-disk must be 64 to"),
        ("1000T", "--root-disk must be 64 to"),
        ("12T", "more than the filesystem holding MSB_HOME"),
        ("lots", "size"),
    ] {
        let out = home.msb(&["create", "-n", "bad", "--root-disk", size]);
        assert_ne!(out.code, 0, "{size}: {out:?}");
        assert!(out.stderr.contains(expected), "{size}: {out:?}");
    }
    assert!(home.names().is_empty());
    assert_eq!(home.sandbox_dirs(), 0);

    // A copy of the default root (built by a first run) as a host directory root.
    home.ok(&["run", "--", "true"]);
    let root = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/images/busybox/rootfs/.", home.path().display()))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let run = home.msb(&[
        "run",
        "-n",
        "dir-root",
        "--rootfs",
        root.path().to_str().unwrap(),
        "--root-disk",
        "1G",
        "--",
        "true",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("--root-disk is ignored with --rootfs"),
        "{run:?}"
    );
    assert!(home.inspect("dir-root")["config"]["root_disk_mib"].is_null());
    home.ok(&["rm", "-f", "dir-root"]);
}

/// `msb df`: each sandbox's and volume's footprint, checked against `df` in the sandbox and
/// against the files on the host; totals are the sums; what is reclaimable follows use.
#[test]
fn msb_df_reports_sandboxes_and_volumes() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["volume", "create", "scratch", "--quota", "32"]);
    home.ok(&[
        "volume", "create", "blob", "--kind", "disk", "--size", "64M",
    ]);
    home.ok(&[
        "run",
        "-d",
        "-n",
        "big",
        "--root-disk",
        "128M",
        "--",
        "sleep",
        "600",
    ]);
    home.ok(&[
        "exec",
        "big",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/ten bs=1M count=10 2>/dev/null && sync",
    ]);
    let (_, used_inside, _) = df_root(&home, "big");
    let report = |home: &TestHome| -> serde_json::Value {
        serde_json::from_str(&home.ok(&["df", "--format", "json"])).unwrap()
    };
    let now = report(&home);
    let sandbox = &now["sandboxes"][0];
    assert_eq!(sandbox["name"], "big", "{now}");
    assert_eq!(sandbox["quota_bytes"], 128 * MIB, "{now}");
    let used = sandbox["used_bytes"].as_u64().unwrap();
    assert!(
        used.abs_diff(used_inside) <= MIB,
        "{used} vs df {used_inside}"
    );
    assert!(
        sandbox["allocated_bytes"].as_u64().unwrap() >= 10 * MIB,
        "{now}"
    );
    assert!(
        sandbox["logical_bytes"].as_u64().unwrap() >= 128 * MIB,
        "{now}"
    );
    assert_eq!(sandbox["reclaimable_bytes"], 0, "running: {now}");

    let volumes = now["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap().clone();
    let (blob, scratch) = (volume("blob"), volume("scratch"));
    assert_eq!(blob["quota_bytes"], 64 * MIB, "{blob}");
    assert!(blob["used_bytes"].as_u64().unwrap() > 0, "{blob}");
    assert_eq!(blob["reclaimable_bytes"], blob["allocated_bytes"], "{blob}");
    assert_eq!(scratch["quota_bytes"], 32 * MIB, "{scratch}");
    assert!(scratch["used_bytes"].is_null(), "{scratch}");

    let sum = |key: &str| -> u64 {
        now["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .chain(volumes)
            .map(|e| e[key].as_u64().unwrap())
            .sum()
    };
    for key in ["logical_bytes", "allocated_bytes", "reclaimable_bytes"] {
        assert_eq!(now["totals"][key], sum(key), "{key}: {now}");
    }

    // Stopped: all of it is reclaimable, and the used bytes come from the image's superblock
    // (ext4's metadata included, so at least what df counted).
    home.ok(&["stop", "big"]);
    let after = report(&home);
    let sandbox = &after["sandboxes"][0];
    assert_eq!(
        sandbox["reclaimable_bytes"], sandbox["allocated_bytes"],
        "{after}"
    );
    let used = sandbox["used_bytes"].as_u64().unwrap();
    assert!(
        (used_inside..used_inside + 16 * MIB).contains(&used),
        "{used} vs {used_inside}"
    );
    let table = home.ok(&["df"]);
    assert!(
        table.contains("big") && table.contains("blob") && table.contains("Total:"),
        "{table}"
    );
    home.ok(&["rm", "-f", "big"]);
}

/// The disk is the workload's only through its root: no loop device or block node reaches the
/// sandbox, a block node cannot be made, and the host mount is `nosuid,nodev` so what the
/// workload writes there (a setuid file, a device node) means nothing on the host either.
#[test]
fn the_root_disk_gives_the_workload_no_device_and_the_host_no_setuid() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["run", "-d", "-n", "dev", "--", "sleep", "600"]);
    let out = home.msb(&[
        "exec",
        "dev",
        "--",
        "sh",
        "-c",
        "ls /dev/loop* /dev/loop-control 2>&1; mknod /tmp/blk b 7 0 2>&1 && echo made-block; \
         cp /bin/busybox /suid && chmod 4755 /suid && echo suid-written",
    ]);
    assert!(!out.stdout.contains("made-block"), "{out:?}");
    assert!(
        out.stdout.matches("No such file or directory").count() >= 2,
        "{out:?}"
    );
    assert!(out.stdout.contains("suid-written"), "{out:?}");
    let root = home.path().to_string_lossy().into_owned();
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", home.supervisor_pid("dev"))).unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(&root) && l.contains("root-disk"))
        .expect("the root disk's mount in the supervisor's namespace");
    let options = line.split_whitespace().nth(5).unwrap();
    assert!(
        options.contains("nosuid") && options.contains("nodev"),
        "{line}"
    );
    home.ok(&["rm", "-f", "dev"]);
}

/// A warm supervisor makes a root disk of the default size ahead of time; a sandbox created
/// and started at once gets that very image (same inode), which works as any root disk: its
/// budget in `df`, the root owned by the sandbox's root (the mapped ids on the host), what is
/// written kept across a stop and a start. An unused one is cleaned up, and the warm directory
/// holds only the idle supervisor's files afterwards.
#[test]
fn a_disk_made_ahead_of_time_becomes_the_sandboxs() {
    use std::os::unix::fs::MetadataExt;
    if !require_root() {
        return;
    }
    // The bare disk a warm supervisor makes when it boots no sandbox ahead of time (a booted
    // sandbox's disk is `warm.rs`'s).
    let home = TestHome::with_env(&[("MSB_BOOT_AHEAD", "0"), ("MSB_WARM_SUPERVISORS", "1")]);
    home.ok(&["run", "--", "true"]); // starts msbd, builds the root and the disk template
    let warm = home.path().join("warm");
    let mut prepared = None;
    home.eventually(Duration::from_secs(20), "a disk made ahead of time", || {
        prepared = std::fs::read_dir(&warm)
            .unwrap()
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().ends_with(".disk.img"));
        prepared.is_some()
    });
    let inode = prepared.unwrap().metadata().unwrap().ino();
    home.ok(&["run", "-d", "-n", "w", "--", "sleep", "600"]);
    let id = home.inspect("w")["id"].as_str().unwrap().to_owned();
    let image = home.path().join(format!("sandboxes/{id}/root-disk.img"));
    assert_eq!(
        std::fs::metadata(&image).unwrap().ino(),
        inode,
        "not the prepared disk"
    );

    let (total, _, _) = df_root(&home, "w");
    assert!(
        (3900 * MIB..=4096 * MIB).contains(&total),
        "df total {total}"
    );
    let upper = home.seen_by_supervisor(
        "w",
        &home.path().join(format!("sandboxes/{id}/root-disk/upper")),
    );
    let (uid, gid) = {
        let meta = std::fs::metadata(&upper).unwrap();
        (meta.uid(), meta.gid())
    };
    let map = home.ok(&["exec", "w", "--", "cat", "/proc/self/uid_map"]);
    assert_eq!(
        map.split_whitespace().nth(1),
        Some(uid.to_string().as_str()),
        "{map}"
    );
    assert_eq!(uid, gid);
    home.ok(&["exec", "w", "--", "sh", "-c", "echo kept > /kept"]);
    home.ok(&["stop", "w"]);
    // Restarted: its own image again, not a prepared one (which is discarded).
    home.ok(&["start", "w"]);
    assert_eq!(std::fs::metadata(&image).unwrap().ino(), inode);
    assert_eq!(home.ok(&["exec", "w", "--", "cat", "/kept"]), "kept\n");
    home.ok(&["rm", "-f", "w"]);

    // Only the idle supervisor's socket, disk image and mount point remain in the warm
    // directory once the discarded disk is cleaned up (besides the pool's own: the socket
    // ephemeral runs hand their disks on through, and the one disk kept).
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(&warm)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "hand-on.sock" && !name.starts_with("handed-on-"))
            .collect()
    };
    home.eventually(
        Duration::from_secs(20),
        "the warm directory to settle",
        || {
            let names = leftovers();
            names.len() <= 3 && names.iter().filter(|n| n.ends_with(".sock")).count() == 1
        },
    );
    home.eventually(Duration::from_secs(10), "the loop devices to go", || {
        home.root_disk_devices() == 0
    });
}
