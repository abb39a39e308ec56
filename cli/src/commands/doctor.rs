//! `msb doctor`: can this host run sandboxes, and is this msb installation healthy?
//!
//! Each check is ok, warn or fail, with a one-line fix when it is not ok. Any fail makes the
//! exit code 1.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hyper::Method;
use msb_runtime::backend::{host_cgroups, CgroupMode, CgroupVersion};
use serde::Serialize;

use crate::api::StoreHealth;
use crate::client::{msbd_path, Client};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: super::Format,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize, Debug)]
pub struct Check {
    pub name: &'static str,
    pub status: Level,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(name: &'static str, status: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

pub async fn doctor(client: &Client, args: DoctorArgs) -> Result<i32> {
    let mut checks = vec![platform(), kvm(), user_namespaces(), cgroups()];
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
    checks.push(agent());
    checks.push(busybox());

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

fn cgroups() -> Check {
    let report = host_cgroups();
    if let Some(error) = report.error {
        return check(
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
                format!(
                    "{}:{}",
                    c.name,
                    if a.version == CgroupVersion::V1 {
                        "v1"
                    } else {
                        "v2"
                    }
                )
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
        return check(
            "cgroups",
            Level::Warn,
            detail,
            Some(
                "limits for the missing controllers are not enforced; run as root or delegate them",
            ),
        );
    }
    check("cgroups", Level::Ok, detail, None)
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

fn agent() -> Check {
    let path = match std::env::var_os("MSB_AGENTD").filter(|p| !p.is_empty()) {
        Some(p) => std::path::PathBuf::from(p),
        None => match msbd_path() {
            Ok(msbd) => msbd.with_file_name("msb-agentd"),
            Err(e) => return check("agent", Level::Fail, e.to_string(), Some("reinstall msb")),
        },
    };
    match msb_runtime::rootfs::is_static_elf(&path) {
        Ok(true) => check(
            "agent",
            Level::Ok,
            format!("{} (static)", path.display()),
            None,
        ),
        Ok(false) => check(
            "agent",
            Level::Fail,
            format!("{} is not a static executable", path.display()),
            Some("rebuild with scripts/setup"),
        ),
        Err(e) => check(
            "agent",
            Level::Fail,
            format!("{}: {e}", path.display()),
            Some("rebuild with scripts/setup"),
        ),
    }
}

fn busybox() -> Check {
    match msb_runtime::rootfs::find_busybox() {
        Ok(path) => check(
            "default rootfs",
            Level::Ok,
            format!("built from {}", path.display()),
            None,
        ),
        Err(e) => check(
            "default rootfs",
            Level::Fail,
            e.to_string(),
            Some("apt-get install busybox-static"),
        ),
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
