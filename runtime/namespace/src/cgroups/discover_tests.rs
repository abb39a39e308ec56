use super::*;

/// The Debian 12 hybrid host msb is developed on: every controller on its own v1 hierarchy, an
/// empty cgroup2 tree at `/sys/fs/cgroup/unified`, the caller in a nested memory cgroup.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
5:devices:/
4:memory:/process_api/b78a
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

const UNIFIED_MOUNTINFO: &str =
    "25 30 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

#[test]
fn hybrid_host_places_every_controller_on_its_v1_hierarchy() {
    let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
    let memberships = parse_proc_cgroup(HYBRID_PROC_CGROUP);
    let host = HostCgroups::from_parts(&mounts, &memberships, &[]);
    assert_eq!(host.mode, CgroupMode::Hybrid);
    let memory = host.attachment(Controller::Memory).unwrap();
    assert_eq!(memory.version, CgroupVersion::V1);
    assert_eq!(
        memory.own_dir,
        PathBuf::from("/sys/fs/cgroup/memory/process_api/b78a")
    );
    let cpuacct = host.attachment(Controller::CpuAcct).unwrap();
    assert_eq!(cpuacct.own_dir, PathBuf::from("/sys/fs/cgroup/cpuacct"));
    let io = host.attachment(Controller::Io).unwrap();
    assert_eq!(io.mount_point, PathBuf::from("/sys/fs/cgroup/blkio"));
}

#[test]
fn comounted_cpu_and_cpuacct_share_a_directory() {
    let mounts = parse_mountinfo(
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    );
    let memberships = parse_proc_cgroup("2:cpu,cpuacct:/user.slice\n");
    let cpu = locate(Controller::Cpu, &mounts, &memberships, &[]).unwrap();
    let cpuacct = locate(Controller::CpuAcct, &mounts, &memberships, &[]).unwrap();
    assert_eq!(cpu.own_dir, cpuacct.own_dir);
    assert_eq!(
        cpu.own_dir,
        PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice")
    );
    assert_eq!(mode_of(&mounts), CgroupMode::V1);
}

#[test]
fn unified_host_uses_v2_for_offered_controllers_only() {
    let mounts = parse_mountinfo(UNIFIED_MOUNTINFO);
    let memberships = parse_proc_cgroup("0::/system.slice/msbd.service\n");
    let offered: Vec<String> = ["cpu", "memory", "pids"].map(String::from).to_vec();
    let host = HostCgroups::from_parts(&mounts, &memberships, &offered);
    assert_eq!(host.mode, CgroupMode::V2);
    let cpuacct = host.attachment(Controller::CpuAcct).unwrap();
    assert_eq!(cpuacct.version, CgroupVersion::V2);
    assert_eq!(
        cpuacct.own_dir,
        PathBuf::from("/sys/fs/cgroup/system.slice/msbd.service")
    );
    assert!(host.attachment(Controller::Io).is_none(), "io not offered");
    assert_eq!(host.hierarchies.len(), 1);
}

#[test]
fn named_hierarchy_alone_is_not_v1() {
    let mounts = parse_mountinfo(
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
    );
    assert_eq!(mode_of(&mounts), CgroupMode::V2);
    assert_eq!(mode_of(&[]), CgroupMode::None);
}

#[test]
fn mount_root_is_stripped_from_the_process_path() {
    // Inside a container whose memory hierarchy is mounted from /docker/abc.
    let mounts = parse_mountinfo(
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
    );
    let memberships = parse_proc_cgroup("4:memory:/docker/abc/inner\n");
    let memory = locate(Controller::Memory, &mounts, &memberships, &[]).unwrap();
    assert_eq!(memory.own_dir, PathBuf::from("/sys/fs/cgroup/memory/inner"));
    let outside = parse_proc_cgroup("4:memory:/other\n");
    assert!(locate(Controller::Memory, &mounts, &outside, &[]).is_none());
}

#[test]
fn mountinfo_escapes_are_decoded() {
    let mounts = parse_mountinfo("35 31 0:32 / /mnt/with\\040space rw - cgroup cgroup rw,memory\n");
    assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/with space"));
}

#[test]
fn hierarchies_skip_named_ones_and_keep_every_driven_v1_controller() {
    let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
    let found: Vec<String> = hierarchies(&mounts)
        .iter()
        .map(|h| h.mount_point.display().to_string())
        .collect();
    assert!(found.contains(&"/sys/fs/cgroup/cpuset".to_owned()));
    assert!(!found.contains(&"/sys/fs/cgroup/systemd".to_owned()));
    assert!(found.contains(&"/sys/fs/cgroup/unified".to_owned()));
    assert_eq!(found.len(), 8);
}
