//! Warm supervisors: `msb-supervisor --warm` processes spawned before anyone asks for a sandbox.
//!
//! Starting a sandbox cold costs msbd a spawn of the supervisor (exec, dynamic linking, runtime
//! set-up) and the supervisor a cgroup migration that, on cgroup v1, waits for an RCU grace
//! period (ADR 002, "Start latency"). A warm supervisor has done both: it runs, and its
//! launcher already sits in placeholder cgroups. `start` hands one its configuration over its
//! configuration socket and spawns a replacement in the background, at a low CPU priority so
//! that it does not slow the run it overlaps; with none ready, `start` spawns cold.
//!
//! Idle ones log to `$MSB_HOME/warm-supervisors.log`; once handed a sandbox a supervisor
//! logs to that sandbox's `supervisor.log`. When msbd goes away (stop or crash) their socket
//! reaches end-of-file and they exit, removing their placeholder cgroups.

use std::fs::{File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use msb_runtime::config::SupervisorConfig;

/// The CPU priority a warm supervisor is spawned and prepares at: its spawn usually overlaps the
/// run that used its predecessor, which should not wait for it. (`SCHED_IDLE` measured no
/// better, 9.66 vs 9.63 ms per run over 320 runs each, and could starve it on a busy host.)
const WARM_PRIORITY: msb_runtime::spawn::CpuPriority = msb_runtime::spawn::CpuPriority::Nice(10);

/// An idle supervisor and msbd's end of its configuration socket.
#[derive(Debug)]
struct Idle {
    child: Child,
    control: UnixStream,
    /// Where it bound its supervisor socket (under `$MSB_HOME/warm/`); moved into the
    /// sandbox's directory when it is handed one, so the socket is there at once.
    socket: PathBuf,
}

/// The pool of idle supervisors.
#[derive(Debug)]
pub struct WarmPool {
    exe: PathBuf,
    log_level: String,
    log_path: PathBuf,
    /// Where idle supervisors bind their sockets (`$MSB_HOME/warm/<msbd pid>-<n>.sock`). The
    /// pid keeps them apart from an earlier msbd's: one of its supervisors still on its way
    /// when it exited can bind its socket after this msbd started, and removes it when it
    /// exits; with a shared name this msbd took that socket for its own supervisor's.
    socket_dir: PathBuf,
    next_socket: AtomicUsize,
    /// How many idle supervisors to keep.
    target: usize,
    idle: Mutex<Vec<Idle>>,
    /// Spawns under way (counted against `target`).
    spawning: AtomicUsize,
    /// Starts served by a warm supervisor, and cold ones (for `msb server status` and tests).
    pub warm_starts: AtomicUsize,
    pub cold_starts: AtomicUsize,
}

impl WarmPool {
    pub fn new(
        exe: PathBuf,
        log_level: String,
        log_path: PathBuf,
        socket_dir: PathBuf,
        target: usize,
    ) -> WarmPool {
        // Sockets of idle supervisors of an earlier msbd: theirs went away with it.
        let _ = std::fs::remove_dir_all(&socket_dir);
        WarmPool {
            exe,
            log_level,
            log_path,
            socket_dir,
            next_socket: AtomicUsize::new(0),
            target,
            idle: Mutex::new(Vec::new()),
            spawning: AtomicUsize::new(0),
            warm_starts: AtomicUsize::new(0),
            cold_starts: AtomicUsize::new(0),
        }
    }

    /// Hands `config` to an idle supervisor and returns it as the sandbox's supervisor, or
    /// `None` when none is ready (or none took it); then tops the pool up in the background.
    pub fn hand_over(self: &Arc<Self>, config: &SupervisorConfig) -> Option<Child> {
        let child = loop {
            let Some(mut idle) = self.lock().pop() else {
                break None;
            };
            // One that died while idle (killed, or its launcher failed) is skipped.
            if !matches!(idle.child.try_wait(), Ok(None)) {
                let _ = idle.child.wait();
                continue;
            }
            // It may still be preparing at its low priority (its launcher, its runtime): the
            // start waits for it from now on.
            msb_runtime::spawn::set_cpu_priority(
                idle.child.id() as i32,
                msb_runtime::spawn::CpuPriority::Normal,
            );
            // The socket first, so that it is in place before the supervisor (and msbd's own
            // wait for it) could look.
            let target = msb_runtime::paths::SandboxDir::new(config.sandbox_dir.clone()).socket();
            let moved = std::fs::rename(&idle.socket, &target)
                .and_then(|()| msb_runtime::spawn::hand_over(&mut idle.control, config));
            match moved {
                Ok(()) => break Some(idle.child),
                Err(e) => {
                    tracing::warn!(
                        pid = idle.child.id(),
                        "warm supervisor refused its sandbox: {e}"
                    );
                    let _ = idle.child.kill();
                    let _ = idle.child.wait();
                }
            }
        };
        match &child {
            Some(_) => self.warm_starts.fetch_add(1, Ordering::Relaxed),
            None => self.cold_starts.fetch_add(1, Ordering::Relaxed),
        };
        self.refill();
        child
    }

    /// Spawns supervisors in the background until `target` are idle or on their way.
    pub fn refill(self: &Arc<Self>) {
        let missing = self
            .target
            .saturating_sub(self.lock().len() + self.spawning.load(Ordering::Relaxed));
        for _ in 0..missing {
            self.spawning.fetch_add(1, Ordering::Relaxed);
            let pool = self.clone();
            std::thread::spawn(move || {
                // Inherited by the supervisor spawned from this thread, and its launcher.
                msb_runtime::spawn::set_cpu_priority(0, WARM_PRIORITY);
                let spawned = pool.spawn_one();
                pool.spawning.fetch_sub(1, Ordering::Relaxed);
                match spawned {
                    Ok(idle) => pool.lock().push(idle),
                    Err(e) => tracing::warn!("spawning a warm supervisor: {e}"),
                }
            });
        }
    }

    /// How many are idle now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Lets every idle supervisor go (they exit on end-of-file) and reaps them.
    pub fn drain(&self) {
        let idle: Vec<Idle> = std::mem::take(&mut *self.lock());
        for Idle {
            mut child,
            control,
            socket,
        } in idle
        {
            drop(control);
            let _ = child.wait();
            let _ = std::fs::remove_file(socket);
        }
    }

    fn spawn_one(&self) -> std::io::Result<Idle> {
        if let Some(dir) = self.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        std::fs::create_dir_all(&self.socket_dir)?;
        let socket = self.socket_dir.join(format!(
            "{}-{}.sock",
            std::process::id(),
            self.next_socket.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let (mut child, control) =
            msb_runtime::spawn::spawn_warm_supervisor(&self.exe, &self.log_level, &log, &socket)?;
        // Idle once its socket is bound (it binds first thing; give it a few seconds).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !socket.exists() {
            if std::time::Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "the warm supervisor never bound {}",
                    socket.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(Idle {
            child,
            control,
            socket,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
