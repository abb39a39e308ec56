use std::path::PathBuf;

use super::*;
use crate::{BindMount, Limits};

fn spec(root: Root) -> SandboxSpec {
    let (agent, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    SandboxSpec {
        id: "ok-1".into(),
        hostname: "h".into(),
        root,
        runtime_dir: PathBuf::from("/run/x"),
        runtime_fuse: None,
        root_fuse: None,
        served: Vec::new(),
        disks: Vec::new(),
        agent_binary: PathBuf::from("/bin/agent"),
        agent_argv: None,
        agent_fd: agent.into(),
        mounts: Vec::new(),
        limits: Limits::default(),
        state_dir: PathBuf::from("/state"),
        stdio_log: None,
        id_map: None,
    }
}

fn overlay() -> Root {
    Root::Overlay {
        disk: None,
        lower: PathBuf::from("/l"),
        upper: PathBuf::from("/u"),
        work: PathBuf::from("/w"),
    }
}

#[test]
fn valid_specs_pass() {
    assert_eq!(
        validate(&spec(Root::Bind(PathBuf::from("/r"))), false),
        Ok(())
    );
    assert_eq!(validate(&spec(overlay()), false), Ok(()));
}

#[test]
fn ids_are_restricted() {
    for id in ["", "Upper", "a_b", "a/b", &"x".repeat(65)] {
        let mut s = spec(overlay());
        s.id = id.to_owned();
        assert!(validate(&s, false).is_err(), "{id:?}");
    }
}

#[test]
fn relative_paths_and_bad_overlay_paths_are_rejected() {
    let mut s = spec(overlay());
    s.mounts.push(BindMount {
        host: PathBuf::from("data"),
        guest: PathBuf::from("/data"),
        readonly: false,
    });
    assert!(validate(&s, false).unwrap_err().contains("absolute"));
    let s = spec(Root::Overlay {
        disk: None,
        lower: PathBuf::from("/a,b"),
        upper: PathBuf::from("/u"),
        work: PathBuf::from("/w"),
    });
    assert!(validate(&s, false).is_err());
}

#[test]
fn overlay_needs_root() {
    assert!(validate(&spec(overlay()), true).is_err());
    assert!(validate(&spec(Root::Bind(PathBuf::from("/r"))), true).is_ok());
}

#[test]
fn empty_argv_and_bad_limits_are_rejected() {
    let mut s = spec(overlay());
    s.agent_argv = Some(Vec::new());
    assert!(validate(&s, false).is_err());
    let mut s = spec(overlay());
    s.limits.pids_max = Some(2);
    assert!(validate(&s, false).is_err());
}

#[test]
fn overlay_options_format() {
    assert_eq!(
        crate::setup::overlay_options(Path::new("/l"), Path::new("/u"), Path::new("/w")),
        "lowerdir=/l,upperdir=/u,workdir=/w"
    );
}

#[test]
fn exit_status_display() {
    assert_eq!(ExitStatus::Exited(3).to_string(), "exit code 3");
    assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9");
}
