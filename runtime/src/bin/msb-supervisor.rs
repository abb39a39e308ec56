//! `msb-supervisor`: one sandbox's supervisor, spawned by msbd.
//!
//! Its whole configuration arrives on an inherited fd (see `msb_runtime::spawn`); the flags only label
//! the process for `ps` (name, id, cpus, memory, log level). A binary of its own, without the
//! store, so that starting one is cheap.
//!
//! With `--warm` it is spawned before anyone asks for a sandbox: it forks its launcher into
//! placeholder cgroups (`msb_namespace::WarmLauncher`) and waits for the configuration, which
//! msbd writes when it hands it a sandbox; end-of-file without one means msbd let it go.
//!
//! With `--doctor` it prints the host checks only the runtime can answer, as JSON, for
//! `msb doctor` (see `msb_runtime::doctor`), and exits.

use std::os::fd::AsRawFd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--doctor") {
        std::process::exit(msb_runtime::doctor::main());
    }
    // msbd runs under umask 077; what this process builds for the sandbox (its writable root,
    // mount points) must stay readable there, so the usual 022, and this process's own files
    // under MSB_HOME get 0600 explicitly (msb_host::private).
    msb_host::private::set_umask(0o022);
    // First, while this process has one thread: its mounts (the root disk's) stay out of the
    // host's mount table. Without it they are made in the host's, and unmounted before the
    // run's end is recorded.
    let own_mounts = nix::unistd::geteuid()
        .is_root()
        .then(msb_runtime::mount_ns::make_own);
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let log_level = flag("--log-level").unwrap_or_else(|| "info".to_owned());
    msb_logging::init("supervisor", &log_level);
    if let Some(Err(e)) = own_mounts {
        tracing::warn!("mounts in the host's namespace: {e}");
    }
    let warm = args.iter().any(|a| a == "--warm");
    if warm {
        // A session of its own before it forks anything: msbd reaps orphans outside its own
        // session (`msb_daemon::orphans`), which is what this process's launchers and booted
        // sandbox become if it is killed.
        let _ = nix::unistd::setsid();
    }
    // A warm supervisor binds its socket now, where msbd said; msbd moves the file into the
    // sandbox's directory when it hands this supervisor a sandbox.
    let listener = match flag("--socket") {
        Some(path) if warm => match std::os::unix::net::UnixListener::bind(&path).and_then(|l| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map(|()| l)
        }) {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("msb-supervisor: binding {path}: {e}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    let prepared = if warm {
        // The socket is `$MSB_HOME/warm/<msbd pid>-<n>.sock`: the home's id map is the one its sandboxes
        // will ask for, so its user namespace is made now too.
        let home = flag("--socket")
            .and_then(|socket| Some(std::path::Path::new(&socket).parent()?.parent()?.to_owned()));
        if let Some(home) = &home {
            msb_runtime::spawn::set_seccomp_cache(home);
        }
        let id_map = home.as_deref().and_then(msb_runtime::idmap::read);
        // With a root and an agent to boot (and the home's user namespace), a sandbox is
        // booted ahead of time on the disk.
        let boot_plan = match (flag("--boot-rootfs"), flag("--boot-agent")) {
            (Some(rootfs), Some(agent)) if msb_runtime::mount_ns::is_own() && id_map.is_some() => {
                Some(msb_runtime::backend::BootPlan {
                    default_rootfs: rootfs.into(),
                    agent_binary: agent.into(),
                    id_map,
                    spare: !args.iter().any(|a| a == "--no-spare"),
                })
            }
            _ => None,
        };
        let prepared = match &boot_plan {
            Some(plan) => msb_runtime::backend::Prepared::with_boot(id_map, plan.spare),
            None => msb_runtime::backend::Prepared::new(id_map),
        };
        match (flag("--disk-template"), flag("--socket")) {
            (Some(template), Some(socket)) => {
                let socket = std::path::Path::new(&socket);
                let (image, mount) = msb_runtime::spawn::warm_disk_paths(socket);
                let disk = msb_runtime::backend::WarmDisk {
                    template: template.into(),
                    image,
                    mount,
                    handed_on: msb_runtime::hand_on::from_spawn(
                        flag("--handed-on-image"),
                        flag("--handed-on-device"),
                    ),
                };
                let (booting, booted) = msb_runtime::spawn::warm_boot_dirs(socket);
                let boot = boot_plan.map(|plan| msb_runtime::backend::WarmBoot {
                    plan,
                    booting,
                    booted,
                });
                prepared.with_disk(disk, id_map, boot)
            }
            _ => prepared,
        }
    } else {
        msb_runtime::backend::Prepared::none()
    };
    // After the launcher's fork (above): a warm supervisor has its runtime ready when it is
    // handed a sandbox. A failure is retried, and reported, by `run_supervisor`.
    let runtime = if warm {
        msb_runtime::supervisor::supervisor_runtime().ok()
    } else {
        None
    };
    let config = match msb_runtime::spawn::read_supervisor_config() {
        Ok(Some(config)) => config,
        Ok(None) if warm => {
            // msbd let it go: `exit` runs no destructors, so release the launcher and its
            // cgroups first.
            drop(prepared);
            msb_runtime::disk::finish_background();
            if let Some(path) = flag("--socket") {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(0);
        }
        Ok(None) => {
            eprintln!("msb-supervisor: the configuration fd held nothing");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!(
                "msb-supervisor {} ({}): reading the configuration: {e}",
                flag("--name").unwrap_or_default(),
                flag("--id").unwrap_or_default()
            );
            std::process::exit(2);
        }
    };
    // `$MSB_HOME/sandboxes/<id>`: a cold supervisor compiles the seccomp filter at its start.
    if let Some(home) = config
        .sandbox_dir
        .parent()
        .and_then(std::path::Path::parent)
    {
        msb_runtime::spawn::set_seccomp_cache(home);
    }
    if warm {
        // Spawned at a low CPU priority so as not to slow the run being served meanwhile;
        // from now on it serves its own (the runtime's threads reset their own priority).
        msb_runtime::spawn::set_cpu_priority(0, msb_runtime::spawn::CpuPriority::Normal);
        // From now on this process belongs to one sandbox: log where its supervisor log is.
        let dir = msb_runtime::paths::SandboxDir::new(config.sandbox_dir.clone());
        match msb_host::private::create_options()
            .append(true)
            .open(dir.supervisor_log())
        {
            Ok(log) => {
                let _ = nix::unistd::dup2(log.as_raw_fd(), 1);
                let _ = nix::unistd::dup2(log.as_raw_fd(), 2);
            }
            Err(e) => tracing::warn!("opening {}: {e}", dir.supervisor_log().display()),
        }
    }
    let code = msb_runtime::supervisor::run_supervisor(config, prepared, listener, runtime);
    // A disk made ahead of time and not used is cleaned up before this process goes.
    msb_runtime::disk::finish_background();
    std::process::exit(code);
}
