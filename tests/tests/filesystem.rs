//! The sandbox's filesystems as the workload sees them: `/.msb` served by msb's file server
//! (PassthroughFs) with its fixed 16 MiB budget, charged for growth only.

use std::path::PathBuf;
use std::time::Duration;

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

/// A directory bind with `quota=16`: 17 MiB stops with ENOSPC after 16 MiB (± 4 KiB); 20 MiB
/// already in the host directory are not charged; `df` inside shows the budget; the host
/// directory holds exactly what the workload wrote; the final sample's volume figures agree.
#[test]
fn a_bind_mount_has_its_quota_and_shows_it() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(
        host.path().join("preexisting"),
        vec![7u8; (20 * MIB) as usize],
    )
    .unwrap();
    let volume = format!("{}:/data,quota=16", host.path().display());
    let run = home.msb(&[
        "run",
        "-n",
        "bindquota",
        "-v",
        &volume,
        "--",
        "sh",
        "-c",
        "cat /data/preexisting | wc -c; df -k /data | tail -1; \
         dd if=/dev/zero of=/data/fill bs=64k count=272 2>/tmp/dd; \
         echo dd=$?; cat /tmp/dd; df -k /data | tail -1",
    ]);
    let out = run.stdout.clone();
    assert!(out.contains("No space left on device"), "{run:?}");
    assert!(out.contains("dd=1"), "{run:?}");
    assert!(
        out.contains(&(20 * MIB).to_string()),
        "the old file reads whole: {run:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let fields =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    // What was there before counts as used, outside the budget: 20 MiB used, 16 MiB free.
    assert_eq!(fields(lines[1])[2], "20480", "{out}");
    assert_eq!(fields(lines[1])[3], "16384", "{out}");
    assert_eq!(fields(lines.last().unwrap())[3], "0", "{out}");
    let written = std::fs::metadata(host.path().join("fill")).unwrap().len();
    assert!(
        written.abs_diff(16 * MIB) <= 4096,
        "stopped after {written} bytes"
    );
    let m = home.metrics("bindquota");
    assert_eq!(m["volumes_fs_limit_bytes"], 16 * MIB, "{m}");
    let used = m["volumes_fs_used_bytes"].as_u64().unwrap();
    assert!(
        used.abs_diff(written) <= 4096,
        "charged {used}, on disk {written}"
    );
    assert!(
        m["volumes_fs_quota_rejections"].as_u64().unwrap() >= 1,
        "{m}"
    );
    assert!(
        m["volumes_fs_written_bytes"].as_u64().unwrap() >= written,
        "{m}"
    );
    assert!(
        m["volumes_fs_read_bytes"].as_u64().unwrap() >= 20 * MIB,
        "{m}"
    );
    // Each refusal is an event in the store too, with the mount's figures.
    let id = home.inspect("bindquota")["id"].as_str().unwrap().to_owned();
    let events: serde_json::Value = serde_json::from_str(&home.ok(&[
        "metrics",
        "--sql",
        &format!(
            "SELECT detail_json FROM events WHERE sandbox_id = '{id}' AND kind = 'quota_rejected'"
        ),
        "--format",
        "json",
    ]))
    .unwrap();
    let events = events.as_array().unwrap();
    assert!(!events.is_empty(), "no quota_rejected event");
    let total: u64 = events
        .iter()
        .map(|e| {
            let d: serde_json::Value =
                serde_json::from_str(e["detail_json"].as_str().unwrap()).unwrap();
            assert_eq!(d["mount"], "volumes", "{d}");
            assert_eq!(d["limit_bytes"], 16 * MIB, "{d}");
            d["rejections"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(total, m["volumes_fs_quota_rejections"].as_u64().unwrap());
}

/// Through the file server the sandbox's ids are the same ids on disk, as an idmapped bind
/// would have them: root's 0600 file is its root's to read and write, what its uid 1000 makes
/// is 1000's on the host, and a host owner outside the map shows as nobody. A read-only bind
/// refuses writes.
#[test]
fn a_bind_mount_keeps_host_owners_and_read_only_holds() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let home = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("roots");
    std::fs::write(&secret, b"root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let far = host.path().join("far");
    std::fs::write(&far, b"x").unwrap();
    std::os::unix::fs::chown(&far, Some(4_000_000), Some(4_000_000)).unwrap();
    let rw = format!("{}:/data", host.path().display());
    let ro = format!("{}:/ro:ro", host.path().display());
    let out = home.ok(&[
        "run",
        "-v",
        &rw,
        "-v",
        &ro,
        "--",
        "sh",
        "-c",
        "cat /data/roots && echo more >> /data/roots && stat -c %U:%u /data/roots /data/far && \
         echo u:x:1000:1000::/:/bin/sh >> /etc/passwd && echo u:x:1000: >> /etc/group && \
         su u -s /bin/sh -c 'cat /data/roots' 2>&1; \
         su u -s /bin/sh -c 'echo hi > /data/users' && \
         stat -c %u /data/users && (echo no > /ro/new) 2>&1; echo end",
    ]);
    assert!(out.contains("root only"), "{out}");
    assert!(
        out.contains("root:0"),
        "root's file is the sandbox root's: {out}"
    );
    assert!(
        out.contains("nobody:65534") || out.contains(":65534"),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        out.contains("Permission denied"),
        "uid 1000 may not read root's 0600 file: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root only\nmore\n"
    );
    let users = std::fs::metadata(host.path().join("users")).unwrap();
    assert_eq!((users.uid(), users.gid()), (1000, 1000), "{out}");
    assert!(!host.path().join("new").exists());
}

/// Bad volume input is refused with an error naming what was wrong, and nothing is created.
#[test]
fn bad_volume_quotas_and_paths_are_refused_and_nothing_is_created() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let d = dir.path().display();
    let cases = [
        (format!("{d}:/data,quota=0"), "quota=0"),
        (format!("{d}:/data,quota=12x"), "quota=\"12x\""),
        (format!("{d}:/data,size=1"), "unknown volume option"),
        (format!("{d}/missing:/data"), "missing"),
        (format!("{d}:/data,quota=1073741824"), "exceeds the"),
        (
            format!("{}:/f,quota=5", file.display()),
            "directory mounts only",
        ),
    ];
    for (volume, expected) in &cases {
        let run = home.msb(&["run", "-n", "bad", "-v", volume, "--", "true"]);
        assert_ne!(run.code, 0, "{volume}: {run:?}");
        assert!(run.stderr.contains(expected), "{volume}: {run:?}");
    }
    assert!(home.names().is_empty(), "nothing was created");
}

/// The operations a workload makes on a directory volume are counted by class, the latency
/// histogram counts the same operations, and both reach Prometheus.
#[test]
fn file_server_operations_are_counted_by_class_with_their_latency() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("before"), vec![1u8; 100_000]).unwrap();
    let volume = format!("{}:/data,quota=64", host.path().display());
    home.ok(&[
        "run", "-d", "-n", "fsops", "-v", &volume, "--", "sleep", "600",
    ]);
    let before = home.first_sample("fsops");
    let workload = "mkdir /data/d && for i in $(seq 40); do echo x > /data/d/f$i; done \
                    && for i in $(seq 10); do mv /data/d/f$i /data/d/g$i; done \
                    && cat /data/d/* > /dev/null && sync /data/d/g1 && rm /data/d/* && rmdir /data/d";
    home.ok(&["exec", "fsops", "--", "sh", "-c", workload]);
    // Two samples newer than the latest one when the workload ended: the second was taken
    // after it (one could have been on its way).
    let mut after = home.metrics("fsops");
    for _ in 0..2 {
        let seen = after["timestamp"].clone();
        home.eventually(Duration::from_secs(20), "a newer sample", || {
            after = home.metrics("fsops");
            after["timestamp"] != seen
        });
    }
    let delta = |field: &str| {
        let (b, a) = (before[field].as_u64(), after[field].as_u64());
        a.unwrap_or_else(|| panic!("{field} is null: {after}")) - b.unwrap_or(0)
    };
    // Exactly what the workload did: 40 files and a directory made, 40 files and a directory
    // removed, 10 renames, 40 writes, one fsync (nothing else writes to the sandbox's file
    // servers meanwhile: the agent's heartbeat goes over its channel, not /.msb).
    for (field, exactly) in [
        ("fs_ops_create", 41),
        ("fs_ops_remove", 41),
        ("fs_ops_rename", 10),
        ("fs_ops_write", 40),
        ("fs_ops_sync", 1),
    ] {
        assert_eq!(
            delta(field),
            exactly,
            "{field}\nbefore {before}\nafter {after}"
        );
    }
    // At least: reads of 40 files and the directory's listing, 40 opens and closes of the
    // new files, a lookup per name (the shell and the kernel add their own).
    for (field, at_least) in [
        ("fs_ops_read", 41),
        ("fs_ops_open", 80),
        ("fs_ops_metadata", 41),
    ] {
        assert!(
            delta(field) >= at_least,
            "{field}: {} < {at_least}\n{after}",
            delta(field)
        );
    }
    // Prometheus: the classes, and a histogram that counts as many operations as they do.
    let body = home.scrape();
    let id = after["sandbox_id"].as_str().unwrap().to_owned();
    let of_sandbox: Vec<&str> = body
        .lines()
        .filter(|l| l.contains(&format!("sandbox_id=\"{id}\"")))
        .collect();
    let value = |line: &&str| -> f64 { line.rsplit(' ').next().unwrap().parse().unwrap() };
    let ops: f64 = of_sandbox
        .iter()
        .filter(|l| l.starts_with("microsandbox_filesystem_operations_total{"))
        .map(value)
        .sum();
    let histogram_count = of_sandbox
        .iter()
        .find(|l| l.starts_with("msb_sandbox_filesystem_operation_duration_seconds_count{"))
        .map(value)
        .unwrap_or_else(|| panic!("no histogram for {id}:\n{}", of_sandbox.join("\n")));
    let inf_bucket = of_sandbox
        .iter()
        .find(|l| {
            l.starts_with("msb_sandbox_filesystem_operation_duration_seconds_bucket{")
                && l.contains("le=\"+Inf\"")
        })
        .map(value)
        .unwrap();
    assert!(ops >= 335.0, "{ops} operations exported");
    // Both come from one sample; operations still in flight when it was taken are counted
    // by class but not yet timed (a server has at most a few threads).
    assert!(
        ops - histogram_count >= 0.0 && ops - histogram_count <= 16.0,
        "{ops} operations, {histogram_count} timed"
    );
    assert_eq!(inf_bucket, histogram_count);
    let sum = of_sandbox
        .iter()
        .find(|l| l.starts_with("msb_sandbox_filesystem_operation_duration_seconds_sum{"))
        .map(value)
        .unwrap();
    assert!(
        sum > 0.0 && sum < histogram_count,
        "{sum} s over {histogram_count} operations"
    );

    // Each mount's quota ledger on its own: `/data` and `/.msb`, by their paths.
    home.ok(&[
        "exec",
        "fsops",
        "--",
        "sh",
        "-c",
        "head -c 1048576 /dev/zero > /data/keep",
    ]);
    let mount = |body: &str, name: &str, path: &str| -> Option<f64> {
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| l.contains(&format!("sandbox_id=\"{id}\"")))
            .find(|l| l.contains(&format!("msb_mount=\"{path}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let mut body = String::new();
    home.eventually(
        Duration::from_secs(20),
        "the 1 MiB charged to /data",
        || {
            body = home.scrape();
            mount(&body, "msb_sandbox_mount_quota_used_bytes", "/data").unwrap_or(0.0) >= MIB as f64
        },
    );
    let used = mount(&body, "msb_sandbox_mount_quota_used_bytes", "/data").unwrap();
    // The megabyte, the 2-byte files made and removed before, and the directories: no more.
    assert!(used <= (MIB + 64 * 1024) as f64, "{used}");
    assert_eq!(
        mount(&body, "msb_sandbox_mount_quota_limit_bytes", "/data"),
        Some((64 * MIB) as f64)
    );
    assert_eq!(
        mount(&body, "msb_sandbox_mount_quota_limit_bytes", "/.msb"),
        Some((16 * MIB) as f64)
    );
    // What was there before the first write: the 100,000-byte file (and its directory).
    let baseline = mount(&body, "msb_sandbox_mount_quota_baseline_bytes", "/data").unwrap();
    assert!(
        (100_000.0..100_000.0 + 8192.0).contains(&baseline),
        "{baseline}"
    );
    home.ok(&["rm", "-f", "fsops"]);
}
