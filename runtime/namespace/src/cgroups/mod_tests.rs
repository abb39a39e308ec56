use super::discover::{parse_mountinfo, parse_proc_cgroup};
use super::*;

fn hybrid_host() -> HostCgroups {
    let mounts = parse_mountinfo(
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
         33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
         34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
         35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
         36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n\
         38 31 0:35 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n\
         39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
         40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
    );
    let memberships = parse_proc_cgroup(
        "9:name=systemd:/\n8:pids:/\n7:blkio:/\n5:devices:/\n4:memory:/job/7\n\
         3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n",
    );
    HostCgroups::from_parts(&mounts, &memberships, &["pids".to_owned()])
}

fn v2_host() -> HostCgroups {
    let mounts = parse_mountinfo("25 30 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    let memberships = parse_proc_cgroup("0::/msb.slice\n");
    let offered: Vec<String> = ["cpu", "memory", "pids", "io"].map(String::from).to_vec();
    HostCgroups::from_parts(&mounts, &memberships, &offered)
}

#[test]
fn hybrid_plan_uses_each_v1_hierarchy() {
    let paths = plan(&hybrid_host(), "web-1");
    let dir = |d: &Option<ControllerDir>| d.as_ref().unwrap().path.clone();
    assert_eq!(
        dir(&paths.memory),
        PathBuf::from("/sys/fs/cgroup/memory/msb/web-1")
    );
    assert_eq!(
        dir(&paths.cpu),
        PathBuf::from("/sys/fs/cgroup/cpu/msb/web-1")
    );
    assert_eq!(
        dir(&paths.cpuacct),
        PathBuf::from("/sys/fs/cgroup/cpuacct/msb/web-1")
    );
    assert_eq!(
        dir(&paths.io),
        PathBuf::from("/sys/fs/cgroup/blkio/msb/web-1")
    );
    assert_eq!(paths.pids.as_ref().unwrap().version, CgroupVersion::V1);
    // Every v1 hierarchy libcontainer drives (cpuset, devices too), not the named or v2 ones.
    assert_eq!(paths.dirs().len(), 7);
    assert!(paths
        .dirs()
        .contains(&PathBuf::from("/sys/fs/cgroup/cpuset/msb/web-1")));
    assert!(!paths
        .dirs()
        .iter()
        .any(|d| d.starts_with("/sys/fs/cgroup/unified")));
}

#[test]
fn v2_plan_is_one_directory() {
    let paths = plan(&v2_host(), "a");
    assert_eq!(paths.dirs(), [PathBuf::from("/sys/fs/cgroup/msb/a")]);
    assert_eq!(paths.cpuacct, paths.cpu);
    assert_eq!(paths.memory.as_ref().unwrap().version, CgroupVersion::V2);
}

#[test]
fn cgroups_path_is_below_msb() {
    assert_eq!(cgroups_path("web-1"), "/msb/web-1");
}

#[test]
fn cpu_quota_conversion() {
    assert_eq!(cpu_quota_us(1.0), 100_000);
    assert_eq!(cpu_quota_us(0.5), 50_000);
    assert_eq!(cpu_quota_us(2.25), 225_000);
    assert_eq!(cpu_quota_us(0.001), 1_000, "clamped to the kernel minimum");
}

#[test]
fn resources_from_limits() {
    let limits = Limits {
        cpus: Some(1.5),
        memory_bytes: Some(1 << 30),
        pids_max: Some(100),
    };
    assert_eq!(
        oci_resources(&limits),
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "cpu": {"quota": 150_000, "period": 100_000},
            "memory": {"limit": 1u64 << 30},
            "pids": {"limit": 100},
        })
    );
    let none = oci_resources(&Limits::default());
    assert_eq!(
        none,
        json!({"devices": [{"allow": false, "access": "rwm"}]})
    );
}

#[test]
fn limit_validation() {
    assert!(validate_limits(&Limits::default()).is_ok());
    let bad = [
        Limits {
            cpus: Some(0.0),
            ..Limits::default()
        },
        Limits {
            cpus: Some(f64::NAN),
            ..Limits::default()
        },
        Limits {
            memory_bytes: Some(1024),
            ..Limits::default()
        },
        Limits {
            pids_max: Some(1),
            ..Limits::default()
        },
    ];
    for limits in bad {
        assert!(validate_limits(&limits).is_err(), "{limits:?}");
    }
}

#[test]
fn removing_missing_directories_succeeds() {
    let paths = CgroupPaths {
        hierarchy_dirs: vec![PathBuf::from("/nonexistent/msb/x")],
        ..CgroupPaths::default()
    };
    assert!(remove(&paths, Duration::from_millis(10)).is_empty());
}
