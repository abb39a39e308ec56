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
    // One directory per hierarchy of a controller msb uses; none in cpuset, devices or the
    // named and v2 hierarchies.
    assert_eq!(paths.dirs().len(), 5, "{:?}", paths.dirs());
    assert!(!paths
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
fn leftovers_are_looked_for_in_every_hierarchy() {
    let dirs = every_hierarchy_dir(&hybrid_host(), "web-1");
    assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/cpuset/msb/web-1")));
    assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/devices/msb/web-1")));
}

#[test]
fn cpu_quota_conversion() {
    assert_eq!(cpu_quota_us(1.0), 100_000);
    assert_eq!(cpu_quota_us(0.5), 50_000);
    assert_eq!(cpu_quota_us(2.25), 225_000);
    assert_eq!(cpu_quota_us(0.001), 1_000, "clamped to the kernel minimum");
}

/// `create` on plain directories standing in for the hierarchies: it makes the sandbox's
/// directories and writes each limit in the file of the controller's version.
#[test]
fn create_writes_limits_where_each_controller_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |version, name: &str| {
        Some(ControllerDir {
            version,
            path: tmp.path().join(name).join("msb/box"),
        })
    };
    let v1 = CgroupPaths {
        cpu: dir(CgroupVersion::V1, "cpu"),
        memory: dir(CgroupVersion::V1, "memory"),
        pids: dir(CgroupVersion::V1, "pids"),
        hierarchy_dirs: ["cpu", "memory", "pids"]
            .iter()
            .map(|n| tmp.path().join(n).join("msb/box"))
            .collect(),
        ..CgroupPaths::default()
    };
    let limits = Limits {
        cpus: Some(1.5),
        memory_bytes: Some(1 << 30),
        pids_max: Some(100),
    };
    create(&v1, &limits).unwrap();
    let read = |path: &str| std::fs::read_to_string(tmp.path().join(path)).unwrap();
    assert_eq!(read("cpu/msb/box/cpu.cfs_quota_us"), "150000");
    assert_eq!(read("cpu/msb/box/cpu.cfs_period_us"), "100000");
    assert_eq!(read("memory/msb/box/memory.limit_in_bytes"), "1073741824");
    assert_eq!(read("pids/msb/box/pids.max"), "100");

    let unified = tmp.path().join("unified");
    std::fs::create_dir_all(&unified).unwrap();
    std::fs::write(unified.join("cgroup.subtree_control"), "memory").unwrap();
    let one = Some(ControllerDir {
        version: CgroupVersion::V2,
        path: unified.join("msb/box"),
    });
    let v2 = CgroupPaths {
        cpu: one.clone(),
        cpuacct: one.clone(),
        memory: one.clone(),
        pids: one,
        hierarchy_dirs: vec![unified.join("msb/box")],
        ..CgroupPaths::default()
    };
    create(&v2, &limits).unwrap();
    assert_eq!(read("unified/msb/box/cpu.max"), "150000 100000");
    assert_eq!(read("unified/msb/box/memory.max"), "1073741824");
    // The root already enabled memory; cpu and pids are added, at both levels.
    assert_eq!(read("unified/cgroup.subtree_control"), "+cpu +pids");
    assert_eq!(
        read("unified/msb/cgroup.subtree_control"),
        "+cpu +memory +pids"
    );

    // Nothing requested, nothing written; a failure removes what was created.
    let bad = CgroupPaths {
        memory: Some(ControllerDir {
            version: CgroupVersion::V1,
            path: PathBuf::from("/proc/version/msb/box"),
        }),
        hierarchy_dirs: vec![PathBuf::from("/proc/version/msb/box")],
        ..CgroupPaths::default()
    };
    assert!(create(&bad, &Limits::default()).is_err());
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

#[test]
fn processes_join_v1_through_tasks_and_v2_through_cgroup_procs() {
    let v1 = join_files(&plan(&hybrid_host(), "a"));
    assert_eq!(v1.len(), 5);
    assert!(v1.iter().all(|f| f.ends_with("tasks")), "{v1:?}");
    assert_eq!(
        join_files(&plan(&v2_host(), "a")),
        [PathBuf::from("/sys/fs/cgroup/msb/a/cgroup.procs")]
    );
}

#[test]
fn pid_1_joins_a_v1_memory_hierarchy_itself_and_nothing_late_on_v2() {
    let hybrid = plan(&hybrid_host(), "a");
    let (early, late) = join_files_split(&hybrid, true);
    let memory = hybrid.memory.as_ref().unwrap().path.join("tasks");
    assert_eq!(late, std::slice::from_ref(&memory));
    assert_eq!(early.len(), 4);
    assert!(!early.contains(&memory));
    // An unprivileged caller's PID 1 cannot write the host's cgroup files: all early.
    assert_eq!(
        join_files_split(&hybrid, false),
        (join_files(&hybrid), vec![])
    );
    let v2 = plan(&v2_host(), "a");
    assert_eq!(join_files_split(&v2, true), (join_files(&v2), vec![]));
}
