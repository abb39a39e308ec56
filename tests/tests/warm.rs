//! Warm supervisors: spawned ahead of time, used by starts, replaced, and gone with msbd.

use std::path::Path;
use std::time::Duration;

use msb_e2e::{require_root, TestHome};

/// Idle warm supervisors of this home's msbd: its children still running `--warm`.
fn warm_children(home: &TestHome) -> Vec<i32> {
    let Some(daemon) = home.daemon_pid() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let warm = cmdline.split(|b| *b == 0).any(|arg| arg == b"--warm");
        if ppid == Some(daemon) && warm && !stat.contains(") Z ") {
            found.push(pid);
        }
    }
    found
}

fn warm_status(home: &TestHome) -> serde_json::Value {
    let text = home.ok(&["server", "status", "--format", "json"]);
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["warm_supervisors"].clone()
}

/// The placeholder cgroups of these warm supervisors' launchers: the booting one's
/// (`warm-<pid>`, which the sandbox booted ahead of time is in) and the spare's.
fn placeholder_cgroups(pids: &[i32]) -> Vec<String> {
    let mut left = Vec::new();
    for controller in ["cpu", "memory", "pids"] {
        for pid in pids {
            for name in [format!("warm-{pid}"), format!("warm-{pid}-spare")] {
                let dir = format!("/sys/fs/cgroup/{controller}/msb/{name}");
                if Path::new(&dir).exists() {
                    left.push(dir);
                }
            }
        }
    }
    left
}

/// The host's value of a file in a sandbox's memory cgroup (cgroup v1 hosts) or of its v2
/// equivalent.
fn memory_limit(id: &str) -> Option<u64> {
    [
        format!("/sys/fs/cgroup/memory/msb/{id}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/msb/{id}/memory.max"),
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

/// `msb_sandbox_starts_total{path="PATH"}` on this home's scrape endpoint.
fn scraped_starts(home: &TestHome, path: &str) -> Option<u64> {
    let status: serde_json::Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let address = status["prometheus_address"].as_str()?.to_owned();
    let scrape = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{address}/metrics")])
        .output()
        .unwrap();
    let prefix = format!("msb_sandbox_starts_total{{path=\"{path}\"}} ");
    String::from_utf8_lossy(&scrape.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
}

/// The options of the running sandbox `name`'s root disk, as its supervisor mounted it.
fn root_disk_options(home: &TestHome, name: &str) -> String {
    let inspect = home.inspect(name);
    let supervisor = inspect["runs"][0]["supervisor_pid"]
        .as_i64()
        .expect("supervisor pid");
    let mounts = std::fs::read_to_string(format!("/proc/{supervisor}/mounts")).unwrap();
    let disk = format!("/{}/root-disk ", inspect["id"].as_str().unwrap());
    mounts
        .lines()
        .find(|line| line.contains(&disk) && line.contains(" ext4 "))
        .unwrap_or_else(|| panic!("no root disk {disk} in {mounts}"))
        .to_owned()
}

#[test]
fn a_start_takes_the_sandbox_booted_ahead_named_limited_and_mapped() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // The first run builds the default root and chooses the id map: the supervisors spawned
    // after it boot a sandbox ahead of time.
    assert_eq!(home.ok(&["run", "--", "echo", "first"]).trim(), "first");
    home.wait_for_booted_sandbox();
    let before = warm_status(&home);
    home.ok(&["run", "-d", "-n", "b1", "-m", "96M", "--", "sleep", "600"]);
    let status = warm_status(&home);
    assert_eq!(
        status["booted_starts"].as_u64().unwrap(),
        before["booted_starts"].as_u64().unwrap() + 1,
        "{status}"
    );
    // Its own name, its own cgroups with the limit asked for, its ids mapped off host root.
    assert_eq!(home.ok(&["exec", "b1", "--", "hostname"]).trim(), "b1");
    let id = home.inspect("b1")["id"].as_str().unwrap().to_owned();
    assert_eq!(memory_limit(&id), Some(96 << 20), "memory limit of {id}");
    let cgroups = home.ok(&["exec", "b1", "--", "cat", "/proc/self/cgroup"]);
    assert!(!cgroups.contains("warm-"), "{cgroups}");
    assert_eq!(home.ok(&["exec", "b1", "--", "id", "-u"]).trim(), "0");
    let pid = home.inspect("b1")["runs"][0]["init_pid"]
        .as_i64()
        .expect("init pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        uid.parse::<u32>().unwrap() >= 65536,
        "root in the sandbox is an unprivileged host user, not {uid}"
    );
    // Its root disk, booted without cache flushes, has them back: b1 keeps it.
    let options = root_disk_options(&home, "b1");
    assert!(!options.contains("nobarrier"), "{options}");
    // Its network, root disk and /.msb work as a sandbox started on demand's.
    let out = home.ok(&[
        "exec",
        "b1",
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; df -k / | tail -1; echo x > /.msb/x && cat /.msb/x",
    ]);
    assert!(out.contains("nameserver"), "{out}");
    assert!(out.trim_end().ends_with('x'), "{out}");
    // What it wrote is its own: a second booted sandbox does not see it.
    home.ok(&["exec", "b1", "--", "sh", "-c", "echo mine > /secret"]);
    home.eventually(
        Duration::from_secs(20),
        "the next sandbox booted ahead",
        || home.boot_dirs().iter().any(|d| d.ends_with(".boot")),
    );
    let run = home.msb(&["run", "-n", "b2", "--", "cat", "/secret"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        warm_status(&home)["booted_starts"],
        before["booted_starts"].as_u64().unwrap() + 2
    );

    // A configuration the booted sandbox cannot serve starts its own (the spare launcher).
    let out = home.ok(&["run", "--no-network", "--", "cat", "/proc/net/dev"]);
    assert!(!out.contains("eth0"), "{out}");
    let status = warm_status(&home);
    assert_eq!(
        status["booted_starts"],
        before["booted_starts"].as_u64().unwrap() + 2
    );
    assert_eq!(status["cold_starts"], 0, "{status}");
    // So does a named one, on the disk its warm supervisor made (without cache flushes, which
    // an ephemeral run's disk, deleted with it, goes without).
    home.ok(&[
        "run",
        "-d",
        "-n",
        "b3",
        "--no-network",
        "--",
        "sleep",
        "600",
    ]);
    let options = root_disk_options(&home, "b3");
    assert!(!options.contains("nobarrier"), "{options}");
    home.eventually(
        Duration::from_secs(20),
        "the next sandbox booted ahead",
        || home.boot_dirs().iter().any(|d| d.ends_with(".boot")),
    );
    let ephemeral = home.ok(&["run", "-d", "--", "sleep", "600"]);
    let options = root_disk_options(&home, ephemeral.trim());
    assert!(options.contains("nobarrier"), "{options}");
    let status = warm_status(&home);
    assert_eq!(
        status["booted_starts"],
        before["booted_starts"].as_u64().unwrap() + 3
    );
    // The scrape splits the starts the same way, booted ones apart from the other warm ones.
    let booted = status["booted_starts"].as_u64().unwrap();
    let warm = status["warm_starts"].as_u64().unwrap();
    assert_eq!(scraped_starts(&home, "booted"), Some(booted), "{status}");
    assert_eq!(
        scraped_starts(&home, "warm"),
        Some(warm - booted),
        "{status}"
    );
    assert_eq!(scraped_starts(&home, "cold"), Some(0), "{status}");
    home.ok(&["rm", "-f", "b3"]);
    home.ok(&["rm", "-f", ephemeral.trim()]);

    // Stopping msbd ends the sandboxes booted ahead with their supervisors: no process, cgroup
    // or directory is left.
    home.ok(&["rm", "-f", "b1"]);
    home.ok(&["rm", "-f", "b2"]);
    home.eventually(Duration::from_secs(20), "the warm supervisors idle", || {
        let status = warm_status(&home);
        status["idle"] == status["target"]
    });
    let idle = warm_children(&home);
    home.ok(&["server", "stop"]);
    home.eventually(Duration::from_secs(10), "idle supervisors gone", || {
        idle.iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    assert!(
        placeholder_cgroups(&idle).is_empty(),
        "{:?}",
        placeholder_cgroups(&idle)
    );
    assert!(home.boot_dirs().is_empty(), "{:?}", home.boot_dirs());
}

/// msbd keeps two supervisors with a booted sandbox by default, and a start takes a booted one
/// (else the oldest), not the newest: the one spawned for the start before is usually still
/// booting, and back-to-back starts would each wait for it.
#[test]
fn back_to_back_starts_take_the_sandboxes_booted_before_them() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    assert_eq!(home.ok(&["run", "--", "echo", "first"]).trim(), "first");
    let mut idle = Vec::new();
    home.eventually(
        Duration::from_secs(30),
        "two sandboxes booted ahead",
        || {
            let status = warm_status(&home);
            idle = warm_children(&home);
            status["target"] == 2
                && status["idle"] == 2
                && idle.len() == 2
                && home
                    .boot_dirs()
                    .iter()
                    .filter(|d| d.ends_with(".boot"))
                    .count()
                    == 2
        },
    );
    let before = warm_status(&home)["booted_starts"].as_u64().unwrap();
    home.ok(&["run", "-d", "-n", "a", "--", "sleep", "600"]);
    home.ok(&["run", "-d", "-n", "b", "--", "sleep", "600"]);
    let mut serving: Vec<i32> = ["a", "b"]
        .iter()
        .map(|name| {
            home.inspect(name)["runs"][0]["supervisor_pid"]
                .as_i64()
                .unwrap() as i32
        })
        .collect();
    serving.sort_unstable();
    idle.sort_unstable();
    assert_eq!(
        serving, idle,
        "served by the two supervisors idle before them"
    );
    let status = warm_status(&home);
    assert_eq!(
        status["booted_starts"].as_u64().unwrap(),
        before + 2,
        "{status}"
    );
    home.ok(&["rm", "-f", "a"]);
    home.ok(&["rm", "-f", "b"]);
}

/// The one idle warm supervisor, once the supervisors of runs that ended (still warm ones
/// by their command line) have exited; `serving`: one that serves a sandbox still running.
fn the_idle_supervisor(home: &TestHome, serving: Option<i64>) -> i32 {
    let mut idle = Vec::new();
    home.eventually(Duration::from_secs(20), "one idle supervisor", || {
        idle = warm_children(home);
        idle.retain(|pid| Some(i64::from(*pid)) != serving);
        idle.len() == 1
    });
    idle[0]
}

/// Whether warm supervisor `pid`'s spare launcher has its placeholder cgroups.
fn has_spare(pid: i32) -> bool {
    placeholder_cgroups(&[pid])
        .iter()
        .any(|dir| dir.ends_with("-spare"))
}

#[test]
fn booted_starts_in_a_row_drop_the_spare_launcher_and_a_start_that_cannot_boot_brings_it_back() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_one_booted_supervisor();
    let idle = the_idle_supervisor(&home, None);
    assert!(has_spare(idle), "{:?}", placeholder_cgroups(&[idle]));
    // Sixteen starts in a row that take the booted sandbox: the supervisors spawned from then
    // on boot one without a spare.
    let before = warm_status(&home)["booted_starts"].as_u64().unwrap();
    for i in 0..16 {
        assert_eq!(
            home.ok(&["run", "--", "echo", &i.to_string()]).trim(),
            i.to_string()
        );
        home.wait_for_booted_sandbox();
    }
    let status = warm_status(&home);
    assert!(
        status["booted_starts"].as_u64().unwrap() >= before + 16,
        "{status}"
    );
    let idle = the_idle_supervisor(&home, None);
    let placeholders = placeholder_cgroups(&[idle]);
    assert!(!placeholders.is_empty(), "the booted sandbox's cgroups");
    assert!(!has_spare(idle), "{placeholders:?}");

    // A start the booted sandbox cannot serve launches as a cold one in that supervisor: its
    // own cgroups with its limit, no network, and still a warm start (not a supervisor
    // spawned for it).
    home.ok(&[
        "run",
        "-d",
        "-n",
        "nb",
        "--no-network",
        "-m",
        "96M",
        "--",
        "sleep",
        "600",
    ]);
    let id = home.inspect("nb")["id"].as_str().unwrap().to_owned();
    assert_eq!(memory_limit(&id), Some(96 << 20), "memory limit of {id}");
    let init = home.inspect("nb")["runs"][0]["init_pid"]
        .as_i64()
        .expect("init pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&format!("/msb/{id}")) && !cgroups.contains("warm-"),
        "{cgroups}"
    );
    let devices = home.ok(&["exec", "nb", "--", "cat", "/proc/net/dev"]);
    assert!(!devices.contains("eth0"), "{devices}");
    assert_eq!(warm_status(&home)["cold_starts"], 0);
    // The next supervisor has a spare again.
    home.wait_for_booted_sandbox();
    let serving = home.inspect("nb")["runs"][0]["supervisor_pid"].as_i64();
    let idle = the_idle_supervisor(&home, serving);
    assert!(has_spare(idle), "{:?}", placeholder_cgroups(&[idle]));
    home.ok(&["rm", "-f", "nb"]);
}

#[test]
fn boot_ahead_off_boots_nothing() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_BOOT_AHEAD", "0")]);
    assert_eq!(home.ok(&["run", "--", "echo", "one"]).trim(), "one");
    home.eventually(Duration::from_secs(10), "the warm supervisors idle", || {
        let status = warm_status(&home);
        status["idle"] == status["target"]
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(home.boot_dirs().is_empty(), "{:?}", home.boot_dirs());
    // The disk made ahead of time has no cache flushes while it serves an ephemeral run, and
    // has them once a named sandbox, which keeps it, takes it.
    let ephemeral = home.ok(&["run", "-d", "--", "sleep", "600"]);
    let options = root_disk_options(&home, ephemeral.trim());
    assert!(options.contains("nobarrier"), "{options}");
    home.eventually(Duration::from_secs(10), "the warm supervisors idle", || {
        let status = warm_status(&home);
        status["idle"] == status["target"]
    });
    home.ok(&["run", "-d", "-n", "kept", "--", "sleep", "600"]);
    let options = root_disk_options(&home, "kept");
    assert!(!options.contains("nobarrier"), "{options}");
    let status = warm_status(&home);
    assert_eq!(status["booted_starts"], 0, "{status}");
    assert_eq!(status["warm_starts"], 3, "{status}");
    home.ok(&["rm", "-f", "kept"]);
    home.ok(&["rm", "-f", ephemeral.trim()]);
}

#[test]
fn starts_use_a_warm_supervisor_and_msbd_replaces_it() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "1")]);
    home.ok(&["server", "start"]);
    home.eventually(Duration::from_secs(10), "one warm supervisor idle", || {
        warm_status(&home)["idle"] == 1
    });
    let first = warm_children(&home);
    assert_eq!(first.len(), 1, "{first:?}");
    // Its launcher sits in placeholder cgroups once prepared (the supervisor announces itself
    // first, and prepares at a low CPU priority).
    home.eventually(Duration::from_secs(10), "placeholder cgroups", || {
        !placeholder_cgroups(&first).is_empty()
    });

    let out = home.ok(&["run", "-n", "w1", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        !out.contains("warm-"),
        "the sandbox's cgroups are its own: {out}"
    );
    let status = warm_status(&home);
    assert_eq!(status["warm_starts"], 1, "{status}");
    assert_eq!(status["cold_starts"], 0, "{status}");
    // The supervisor that served w1 was the warm one: its placeholder is gone (renamed).
    assert!(placeholder_cgroups(&first).is_empty());
    let inspect = home.inspect("w1");
    assert_eq!(inspect["runs"][0]["exit_code"], 0, "{inspect}");
    // The same counts on the scrape endpoint.
    assert_eq!(
        scraped_starts(&home, "warm"),
        Some(1),
        "warm starts exported"
    );
    assert_eq!(scraped_starts(&home, "cold"), Some(0));

    // A replacement is spawned; the next start uses it too.
    home.eventually(Duration::from_secs(10), "a replacement idle", || {
        warm_status(&home)["idle"] == 1
    });
    let second = warm_children(&home);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert_eq!(home.ok(&["run", "--", "echo", "again"]).trim(), "again");
    assert_eq!(warm_status(&home)["warm_starts"], 2);

    // Stopping msbd lets the idle ones go, with their cgroups.
    home.eventually(Duration::from_secs(10), "a replacement idle", || {
        warm_status(&home)["idle"] == 1
    });
    let idle = warm_children(&home);
    home.ok(&["rm", "-f", "w1"]);
    home.ok(&["server", "stop"]);
    home.eventually(Duration::from_secs(10), "idle supervisors gone", || {
        idle.iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    assert!(placeholder_cgroups(&idle).is_empty());
}

#[test]
fn idle_supervisors_leave_with_a_killed_msbd() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "2")]);
    home.ok(&["server", "start"]);
    home.eventually(Duration::from_secs(10), "two warm supervisors idle", || {
        warm_status(&home)["idle"] == 2
    });
    let idle = warm_children(&home);
    assert_eq!(idle.len(), 2);
    let daemon = home.daemon_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &daemon.to_string()])
        .status()
        .unwrap();
    home.eventually(
        Duration::from_secs(10),
        "orphaned idle supervisors exit",
        || {
            idle.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
            })
        },
    );
    assert!(
        placeholder_cgroups(&idle).is_empty(),
        "they removed their cgroups"
    );
    // The next command starts a new msbd, which warms up again and runs sandboxes.
    assert_eq!(home.ok(&["run", "--", "echo", "ok"]).trim(), "ok");
}

#[test]
fn zero_warm_supervisors_starts_cold_and_bad_values_are_refused() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "0")]);
    assert_eq!(home.ok(&["run", "--", "echo", "cold"]).trim(), "cold");
    let status = warm_status(&home);
    assert_eq!(status["target"], 0);
    assert_eq!(status["cold_starts"], 1, "{status}");
    assert!(warm_children(&home).is_empty());

    let bad = TestHome::with_env(&[("MSB_WARM_SUPERVISORS", "lots")]);
    let run = bad.msb(&["ls"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("MSB_WARM_SUPERVISORS"),
        "names the variable: {}",
        run.stderr
    );
}

#[test]
fn a_killed_idle_supervisor_leaves_no_booted_sandbox_behind() {
    if !require_root() {
        return;
    }
    let home = TestHome::with_one_booted_supervisor();
    // The supervisor that served the first run may still be winding down.
    home.eventually(Duration::from_secs(10), "one warm supervisor left", || {
        warm_children(&home).len() == 1
    });
    let idle = warm_children(&home);
    let devices_before = loop_devices_under(&home.path().join("warm"));
    assert_eq!(devices_before, 1, "the booted sandbox's disk");
    std::process::Command::new("kill")
        .args(["-9", &idle[0].to_string()])
        .status()
        .unwrap();
    // Dead, all its threads too (a thread in the kernel outlives the leader for a moment: a
    // start handed to it then fails as the supervisor's death, an error of its own).
    home.eventually(Duration::from_secs(10), "the supervisor dead", || {
        std::fs::read_to_string(format!("/proc/{}/status", idle[0]))
            .map(|s| s.contains("State:\tZ") && s.contains("Threads:\t1\n"))
            .unwrap_or(true)
    });
    // The next start passes over it, and its booted sandbox, disk, directory and placeholder
    // cgroups go (the agent ends once its channel is gone).
    assert_eq!(home.ok(&["run", "--", "echo", "next"]).trim(), "next");
    home.eventually(
        Duration::from_secs(15),
        "the dead one's cgroups gone",
        || placeholder_cgroups(&idle).is_empty(),
    );
    let warm_dir = home.path().join("warm");
    home.eventually(
        Duration::from_secs(15),
        "one booted disk, the new one's",
        || loop_devices_under(&warm_dir) <= 1 && home.boot_dirs().len() <= 1,
    );
    // Its launcher and booted agent, orphaned to msbd (a subreaper), are reaped, not left as
    // zombies.
    let daemon = home.daemon_pid().unwrap();
    home.eventually(
        Duration::from_secs(10),
        "no zombie children of msbd",
        || zombie_children(daemon).is_empty(),
    );
}

/// msbd's children that are zombies.
fn zombie_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat.rsplit(") ").next().unwrap_or("").split(' ');
        let (state, ppid) = (fields.next(), fields.next());
        if state == Some("Z") && ppid == Some(&parent.to_string()) {
            found.push(pid);
        }
    }
    found
}

/// Loop devices whose backing file is under `dir`, but for the disk an ephemeral run handed on
/// that msbd keeps for the next supervisor (`handed-on-<pid>.img`).
fn loop_devices_under(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/sys/block")
        .map(|devices| {
            devices
                .flatten()
                .filter_map(|d| std::fs::read_to_string(d.path().join("loop/backing_file")).ok())
                .filter(|backing| backing.starts_with(&dir) && !backing.contains("/handed-on-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn placeholder_cgroups_of_a_supervisor_left_a_zombie_are_removed_at_start() {
    if !require_root() {
        return;
    }
    // A supervisor killed with its msbd is a zombie of the host's init until that reaps it:
    // the next msbd must not take it for alive and keep its placeholder cgroups forever.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let pid = zombie.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .contains(") Z ")
    {
        assert!(std::time::Instant::now() < deadline, "{pid} never exited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let parent = ["/sys/fs/cgroup/memory/msb", "/sys/fs/cgroup/msb"]
        .into_iter()
        .find(|dir| {
            Path::new(dir)
                .parent()
                .unwrap()
                .join("cgroup.procs")
                .exists()
        })
        .unwrap();
    let placeholder = format!("{parent}/warm-{pid}");
    std::fs::create_dir_all(&placeholder).unwrap();
    let home = TestHome::new();
    home.ok(&["server", "start"]);
    let left = Path::new(&placeholder).exists();
    if left {
        let _ = std::fs::remove_dir(&placeholder);
    }
    let _ = zombie.wait();
    assert!(!left, "{placeholder} was kept for a zombie");
}
