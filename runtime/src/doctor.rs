//! `msb-supervisor --doctor`: the host checks of `msb doctor` that only the runtime can answer
//! (cgroup controllers as the namespace backend places them, the seccomp filter compiled by
//! libseccomp, the agent binary, the default root's busybox). The supervisor prints them as a
//! JSON [`DoctorReport`] and `msb doctor` shows them with its own, so the client links neither
//! the backend nor libseccomp.

use std::path::PathBuf;

use msb_api::doctor::{Check, DoctorReport, Level};

use crate::backend::{host_cgroups, CgroupMode, CgroupVersion};

/// Every check, in the order `msb doctor` shows them.
pub fn report() -> DoctorReport {
    DoctorReport {
        checks: vec![cgroups(), seccomp(), agent(), busybox()],
    }
}

/// Prints [`report`] as JSON; the exit code is 0 whatever the checks say (the client decides).
pub fn main() -> i32 {
    match serde_json::to_string(&report()) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("msb-supervisor --doctor: {e}");
            2
        }
    }
}

fn cgroups() -> Check {
    let report = host_cgroups();
    if let Some(error) = report.error {
        return Check::new(
            "cgroups",
            Level::Fail,
            error,
            Some("mount cgroup filesystems under /sys/fs/cgroup"),
        );
    }
    let mode = match report.mode {
        CgroupMode::V1 => "v1",
        CgroupMode::V2 => "v2",
        CgroupMode::Hybrid => "hybrid",
        CgroupMode::None => "none",
    };
    let mut missing = Vec::new();
    let placed: Vec<String> = report
        .controllers
        .iter()
        .map(|c| match &c.attachment {
            Some(a) if c.writable => {
                let version = if a.version == CgroupVersion::V1 {
                    "v1"
                } else {
                    "v2"
                };
                format!("{}:{version}", c.name)
            }
            Some(_) => {
                missing.push(c.name);
                format!("{}:read-only", c.name)
            }
            None => {
                missing.push(c.name);
                format!("{}:absent", c.name)
            }
        })
        .collect();
    let detail = format!("{mode}; {}", placed.join(" "));
    if missing
        .iter()
        .any(|m| matches!(*m, "cpu" | "memory" | "pids"))
    {
        return Check::new(
            "cgroups",
            Level::Warn,
            detail,
            Some(
                "limits for the missing controllers are not enforced; run as root or delegate them",
            ),
        );
    }
    Check::new("cgroups", Level::Ok, detail, None)
}

/// The filter every sandbox's PID 1 installs, compiled as a sandbox start compiles it.
fn seccomp() -> Check {
    match msb_namespace::seccomp::program() {
        Ok(program) => Check::new(
            "seccomp",
            Level::Ok,
            format!(
                "filter compiled: {} syscalls allowed (default EPERM), {} BPF instructions",
                msb_namespace::seccomp::ALLOWED_SYSCALLS.len(),
                program.len() / 8
            ),
            None,
        ),
        Err(e) => Check::new(
            "seccomp",
            Level::Fail,
            e,
            Some("sandboxes cannot start without their filter; rebuild with scripts/setup"),
        ),
    }
}

/// The agent msbd would put in sandboxes: `MSB_AGENTD`, else beside this binary (msbd's rule).
fn agent_path() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MSB_AGENTD").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(std::env::current_exe()?.with_file_name("msb-agentd"))
}

fn agent() -> Check {
    let path = match agent_path() {
        Ok(path) => path,
        Err(e) => {
            return Check::new(
                "agent",
                Level::Fail,
                format!("locating msb-supervisor's own executable: {e}"),
                Some("reinstall msb"),
            )
        }
    };
    match crate::rootfs::is_static_elf(&path) {
        Ok(true) => Check::new(
            "agent",
            Level::Ok,
            format!("{} (static)", path.display()),
            None,
        ),
        Ok(false) => Check::new(
            "agent",
            Level::Fail,
            format!("{} is not a static executable", path.display()),
            Some("rebuild with scripts/setup"),
        ),
        Err(e) => Check::new(
            "agent",
            Level::Fail,
            format!("{}: {e}", path.display()),
            Some("rebuild with scripts/setup"),
        ),
    }
}

fn busybox() -> Check {
    match crate::rootfs::find_busybox() {
        Ok(path) => Check::new(
            "default rootfs",
            Level::Ok,
            format!("built from {}", path.display()),
            None,
        ),
        Err(e) => Check::new(
            "default rootfs",
            Level::Fail,
            e.to_string(),
            Some("apt-get install busybox-static"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_runtime_checks_with_a_fix_for_each_that_is_not_ok() {
        let report = report();
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cgroups", "seccomp", "agent", "default rootfs"]);
        for check in &report.checks {
            assert!(
                check.status == Level::Ok || check.fix.is_some(),
                "{check:?}"
            );
        }
        // libseccomp is linked into the runtime: the filter compiles here.
        assert_eq!(report.checks[1].status, Level::Ok, "{:?}", report.checks[1]);
    }
}
