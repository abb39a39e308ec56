//! `msb doctor`: can this host run sandboxes, and is this msb installation healthy?
//!
//! Each check is ok, warn or fail, with a one-line fix when it is not ok. Any fail makes the
//! exit code 1. The client checks what it sees itself and asks msbd about the store; the checks
//! that need the runtime (cgroups, seccomp, the agent, the default root) it asks of the
//! installed supervisor binary, `msb-supervisor --doctor` (`msb_api::doctor`), so that `msb`
//! links no isolation backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;
use clap::Args;
use hyper::Method;

use crate::api::doctor::{Check, DoctorReport, Level};
use crate::api::StoreHealth;
use crate::client::{msbd_path, Client};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: super::Format,
}

fn check(name: &str, status: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check::new(name, status, detail, fix)
}

pub async fn doctor(client: &Client, args: DoctorArgs) -> Result<i32> {
    let mut checks = vec![platform(), kvm(), user_namespaces()];
    checks.push(device(
        "fuse",
        "/dev/fuse",
        "needed for filesystem write quotas",
        "modprobe fuse",
    ));
    checks.push(device(
        "tun",
        "/dev/net/tun",
        "needed for the userspace network",
        "modprobe tun",
    ));
    checks.push(device(
        "loop",
        "/dev/loop-control",
        "needed for disk volumes",
        "modprobe loop",
    ));
    checks.push(free_space(client.home.root()));
    checks.push(store(client).await);
    checks.extend(runtime_checks());

    let failed = checks.iter().any(|c| c.status == Level::Fail);
    if args.format == super::Format::Json {
        let report = serde_json::json!({ "ok": !failed, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &checks {
            let tag = match c.status {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("[{tag}] {:<16} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("       {:<16} fix: {fix}", "");
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn platform() -> Check {
    let uts = nix::sys::utsname::uname();
    let (system, release, machine) = match &uts {
        Ok(u) => (
            u.sysname().to_string_lossy().into_owned(),
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(e) => return check("platform", Level::Fail, format!("uname failed: {e}"), None),
    };
    let detail = format!("{system} {release} {machine}");
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    if system != "Linux" || machine != "x86_64" {
        return check(
            "platform",
            Level::Fail,
            detail,
            Some("msb runs on x86_64 Linux"),
        );
    }
    if version.as_slice() < [5, 4].as_slice() {
        return check(
            "platform",
            Level::Warn,
            detail,
            Some("use a kernel of 5.4 or newer"),
        );
    }
    check("platform", Level::Ok, detail, None)
}

fn kvm() -> Check {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => check(
            "kvm",
            Level::Warn,
            "/dev/kvm is accessible, but the microvm backend is not built into this msb; sandboxes use the namespace backend",
            Some("none needed for namespace sandboxes"),
        ),
        Err(e) => check(
            "kvm",
            Level::Warn,
            format!("/dev/kvm: {e}; microVMs are unavailable (the microvm backend is not built yet)"),
            Some("enable virtualisation and add your user to the kvm group"),
        ),
    }
}

fn user_namespaces() -> Check {
    if nix::unistd::geteuid().is_root() {
        return check(
            "user namespaces",
            Level::Ok,
            "running as root: sandboxes need no user namespace",
            None,
        );
    }
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let unprivileged = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    match max {
        Some(n) if n > 0 && unprivileged => check(
            "user namespaces",
            Level::Ok,
            format!("available (max {n})"),
            None,
        ),
        _ => check(
            "user namespaces",
            Level::Fail,
            "unprivileged user namespaces are disabled",
            Some("sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000"),
        ),
    }
}

fn device(name: &'static str, path: &str, why: &str, fix: &str) -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => check(name, Level::Ok, format!("{path} is accessible"), None),
        Err(e) => check(name, Level::Warn, format!("{path}: {e} ({why})"), Some(fix)),
    }
}

fn free_space(home: &Path) -> Check {
    let probe = home
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(probe) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            let detail = format!("{} free at {}", human_bytes(free), home.display());
            if free < 100 << 20 {
                check(
                    "MSB_HOME space",
                    Level::Fail,
                    detail,
                    Some("free some disk space or point MSB_HOME elsewhere"),
                )
            } else if free < 1 << 30 {
                check(
                    "MSB_HOME space",
                    Level::Warn,
                    detail,
                    Some("sandboxes' writable layers need room; free some space"),
                )
            } else {
                check("MSB_HOME space", Level::Ok, detail, None)
            }
        }
        Err(e) => check(
            "MSB_HOME space",
            Level::Fail,
            format!("statvfs {}: {e}", probe.display()),
            None,
        ),
    }
}

async fn store(client: &Client) -> Check {
    match client
        .call::<(), StoreHealth>(Method::GET, "/v1/health", None)
        .await
    {
        Ok(h) => check(
            "store",
            Level::Ok,
            format!(
                "{} schema {} with {} sandboxes ({})",
                h.path,
                h.schema_version,
                h.sandboxes,
                h.file_bytes.map_or("size unknown".into(), human_bytes)
            ),
            None,
        ),
        Err(e) => check(
            "store",
            Level::Fail,
            format!("{e:#}"),
            Some("see $MSB_HOME/msbd.log"),
        ),
    }
}

/// The supervisor msbd starts: `MSB_SUPERVISOR`, else beside msbd (msbd's own rule).
fn supervisor_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MSB_SUPERVISOR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(msbd_path()?.with_file_name("msb-supervisor"))
}

/// The checks only the runtime can answer, from `msb-supervisor --doctor`; one failed check
/// named `supervisor` when it cannot be asked.
fn runtime_checks() -> Vec<Check> {
    let fix = Some("reinstall msb (scripts/setup)");
    let supervisor = match supervisor_path() {
        Ok(path) => path,
        Err(e) => return vec![check("supervisor", Level::Fail, format!("{e:#}"), fix)],
    };
    let output = match Command::new(&supervisor)
        .arg("--doctor")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            let detail = format!("running {} --doctor: {e}", supervisor.display());
            return vec![check("supervisor", Level::Fail, detail, fix)];
        }
    };
    match serde_json::from_slice::<DoctorReport>(&output.stdout) {
        Ok(report) if output.status.success() => report.checks,
        Ok(_) | Err(_) => {
            let detail = format!(
                "{} --doctor answered {} with {:?}",
                supervisor.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            );
            vec![check("supervisor", Level::Fail, detail, fix)]
        }
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
