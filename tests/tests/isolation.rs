//! What the namespace backend promises, seen from inside and outside a sandbox.

use msb_e2e::{require_root, TestHome};

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_workload_is_confined() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run", "-n", "iso", "-d", "-c", "0.5", "-m", "128M", "--", "sleep", "300",
    ]);
    let status = home.ok(&["exec", "iso", "--", "cat", "/proc/self/status"]);
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    assert_eq!(status_field(&status, "Seccomp:"), "2");
    let caps = u64::from_str_radix(&status_field(&status, "CapEff:"), 16).unwrap();
    let sys_admin = 1u64 << 21;
    let sys_module = 1u64 << 16;
    assert_eq!(
        caps & (sys_admin | sys_module),
        0,
        "CapEff {caps:x} keeps a dangerous capability"
    );
    // Own pid namespace: few processes, the agent as 1.
    let ps = home.ok(&["exec", "iso", "--", "ps"]);
    assert!(ps.lines().count() < 10, "{ps}");
    // A blocked syscall fails with EPERM rather than killing the process.
    let run = home.msb(&["exec", "iso", "--", "swapoff", "-a"]);
    assert_ne!(run.code, 0);

    // Limits land in the cgroup the sandbox's init lives in, wherever the host attaches them.
    let init = home.inspect("iso")["runs"][0]["init_pid"].as_i64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let mut checked = 0;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let v1 = |c: &str| controllers.split(',').any(|x| x == c);
        if v1("memory") {
            let limit = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            ))
            .unwrap();
            assert_eq!(limit.trim(), (128u64 << 20).to_string());
            checked += 1;
        }
        if v1("cpu") {
            let dir = std::fs::read_dir("/sys/fs/cgroup")
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .split(',')
                        .any(|x| x == "cpu")
                })
                .unwrap();
            let quota = std::fs::read_to_string(
                dir.join(path.trim_start_matches('/'))
                    .join("cpu.cfs_quota_us"),
            )
            .unwrap();
            let period = std::fs::read_to_string(
                dir.join(path.trim_start_matches('/'))
                    .join("cpu.cfs_period_us"),
            )
            .unwrap();
            let ratio =
                quota.trim().parse::<f64>().unwrap() / period.trim().parse::<f64>().unwrap();
            assert!((ratio - 0.5).abs() < 0.01, "cpu quota ratio {ratio}");
            checked += 1;
        }
        if v1("pids") {
            let max =
                std::fs::read_to_string(format!("/sys/fs/cgroup/pids{path}/pids.max")).unwrap();
            assert_ne!(max.trim(), "max", "a pids limit is set");
            checked += 1;
        }
        if controllers.is_empty()
            && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            // Pure v2 host.
            let base = format!("/sys/fs/cgroup{path}");
            assert_eq!(
                std::fs::read_to_string(format!("{base}/memory.max"))
                    .unwrap()
                    .trim(),
                (128u64 << 20).to_string()
            );
            assert!(std::fs::read_to_string(format!("{base}/cpu.max"))
                .unwrap()
                .starts_with("50000 100000"));
            checked += 2;
        }
    }
    assert!(
        checked >= 2,
        "no cgroup limit found for init {init}: {cgroups}"
    );
    // PID 1 joins the memory cgroup after its mounts and makes the cgroup namespace then: the
    // workload sees its own cgroups (every one, memory included) as the root, and no host path.
    let inside = home.ok(&["exec", "iso", "--", "cat", "/proc/self/cgroup"]);
    for line in inside.lines() {
        assert!(line.ends_with(":/"), "{inside}");
    }
    assert!(
        cgroups
            .lines()
            .any(|l| (l.contains(":memory:") || l.starts_with("0::")) && l.contains(":/msb/")),
        "init in the sandbox's memory cgroup: {cgroups}"
    );
}
