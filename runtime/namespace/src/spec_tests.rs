use std::path::PathBuf;

use super::*;
use crate::{BindMount, Limits, Root};

fn sandbox_spec() -> SandboxSpec {
    let (agent, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    SandboxSpec {
        id: "web-1".into(),
        hostname: "web".into(),
        root: Root::Bind(PathBuf::from("/srv/root")),
        runtime_dir: PathBuf::from("/run/msb/web-1"),
        agent_binary: PathBuf::from("/usr/lib/msb/msb-agentd"),
        agent_argv: None,
        agent_fd: agent.into(),
        mounts: vec![BindMount {
            host: PathBuf::from("/data"),
            guest: PathBuf::from("/mnt/data"),
            readonly: true,
        }],
        limits: Limits::default(),
        state_dir: PathBuf::from("/var/lib/msb/web-1"),
        stdio_log: None,
    }
}

fn host(unprivileged: Option<(u32, u32)>) -> Host<'static> {
    Host {
        rootfs: Path::new("/srv/root"),
        cgroups_path: "/msb/web-1".into(),
        unprivileged,
    }
}

fn parse(config: Value) -> oci_spec::runtime::Spec {
    serde_json::from_value(config).expect("config.json is a valid OCI spec")
}

#[test]
fn root_runs_without_a_user_namespace() {
    let spec = parse(oci_config(&sandbox_spec(), &host(None)));
    let linux = spec.linux().as_ref().unwrap();
    let types: Vec<String> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ().to_string())
        .collect();
    assert_eq!(types, ["pid", "net", "ipc", "uts", "mnt", "cgroup"]);
    assert!(linux.uid_mappings().is_none());
    assert_eq!(spec.hostname().as_deref(), Some("web"));
}

#[test]
fn unprivileged_caller_gets_a_user_namespace_mapping_root_to_itself() {
    let spec = parse(oci_config(&sandbox_spec(), &host(Some((1000, 100)))));
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User));
    let uid = &linux.uid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (uid.container_id(), uid.host_id(), uid.size()),
        (0, 1000, 1)
    );
    let gid = &linux.gid_mappings().as_ref().unwrap()[0];
    assert_eq!(gid.host_id(), 100);
}

#[test]
fn agent_is_pid_1_with_its_fd_and_reduced_privileges() {
    let spec = parse(oci_config(&sandbox_spec(), &host(None)));
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.args().as_ref().unwrap(),
        &vec![AGENT_GUEST_PATH.to_owned()]
    );
    let env = process.env().as_ref().unwrap();
    assert!(env.contains(&"MSB_AGENT_FD=3".to_owned()));
    assert_eq!(process.no_new_privileges(), Some(true));
    let caps = process.capabilities().as_ref().unwrap();
    assert_eq!(caps.effective().as_ref().unwrap().len(), CAPABILITIES.len());
    assert!(caps.ambient().as_ref().unwrap().is_empty());
    assert!(!caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&oci_spec::runtime::Capability::SysAdmin));
}

#[test]
fn capability_mask_matches_the_kernel_numbers() {
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT
    assert_eq!(capability_mask(), 0x405fb);
}

#[test]
fn mounts_cover_the_runtime_dir_agent_and_user_binds() {
    let config = oci_config(&sandbox_spec(), &host(None));
    let mounts = config["mounts"].as_array().unwrap();
    let find = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["destination"] == dest)
            .unwrap_or_else(|| panic!("{dest} mounted"))
    };
    assert_eq!(find("/sys")["options"][3], "ro");
    assert_eq!(find("/tmp")["type"], "tmpfs");
    assert!(find("/dev/pts")["options"]
        .as_array()
        .unwrap()
        .contains(&json!("newinstance")));
    assert_eq!(find("/.msb")["source"], "/run/msb/web-1");
    assert_eq!(find("/.msb")["options"][3], "rw");
    assert_eq!(find(AGENT_GUEST_PATH)["options"][3], "ro");
    assert_eq!(find("/mnt/data")["options"][3], "ro");
    // /.msb must be mounted before the agent binary inside it.
    let position = |dest: &str| mounts.iter().position(|m| m["destination"] == dest);
    assert!(position("/.msb") < position(AGENT_GUEST_PATH));
}

#[test]
fn agent_argv_can_be_overridden_for_tests() {
    let mut spec = sandbox_spec();
    spec.agent_argv = Some(vec!["busybox".into(), "sh".into()]);
    assert_eq!(agent_argv(&spec), ["busybox", "sh"]);
}

#[test]
fn limits_become_oci_resources_under_msb_cgroups() {
    let mut sandbox = sandbox_spec();
    sandbox.limits = Limits {
        cpus: Some(0.5),
        memory_bytes: Some(64 << 20),
        pids_max: Some(10),
    };
    let spec = parse(oci_config(&sandbox, &host(None)));
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/msb/web-1"))
    );
    let resources = linux.resources().as_ref().unwrap();
    assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
    assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(resources.pids().unwrap().limit(), 10);
}
