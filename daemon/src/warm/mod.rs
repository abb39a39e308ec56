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

use msb_runtime::backend::BootPlan;
use msb_runtime::config::SupervisorConfig;

mod handed_on;
mod recycled;
use handed_on::discard_handed_on;

/// The CPU priority a warm supervisor is spawned and prepares at: its spawn usually overlaps the
/// run that used its predecessor, which should not wait for it. (`SCHED_IDLE` measured no
/// better, 9.66 vs 9.63 ms per run over 320 runs each, and could starve it on a busy host.)
const WARM_PRIORITY: msb_runtime::spawn::CpuPriority = msb_runtime::spawn::CpuPriority::Nice(10);

/// The size of the root disk a warm supervisor prepares: the default one.
const DISK_BYTES: u64 = msb_api::config::DEFAULT_ROOT_DISK_MIB << 20;

/// An idle supervisor and msbd's end of its configuration socket.
#[derive(Debug)]
struct Idle {
    child: Child,
    control: UnixStream,
    /// Where it bound its supervisor socket (under `$MSB_HOME/warm/`); moved into the
    /// sandbox's directory when it is handed one, so the socket is there at once.
    socket: PathBuf,
    /// Where it makes its root disk's image when it was given a template: taken (renamed into
    /// the sandbox's directory) if it is there by the time the supervisor is handed a sandbox
    /// that needs a disk of the default size.
    disk_image: Option<PathBuf>,
    /// What it boots a sandbox ahead of time with, and the directory that sandbox is in once
    /// it runs (`msb_runtime::spawn::warm_boot_dirs`), which becomes the directory of a
    /// sandbox that can take it ([`msb_runtime::backend::bootable`]).
    boot: Option<(BootPlan, BootDirs)>,
    /// Spawned to boot nothing only because the home had no default root or id map yet (the
    /// first start makes both): replaced by one that boots once they are there.
    boot_pending: bool,
    /// The image of the disk it was handed at its spawn, until it moves it.
    handed_on_image: Option<PathBuf>,
}

/// Removes what an idle supervisor that died left under `warm/`: its socket, its disk's image
/// and mount point (the mount went with its mount namespace), its booted sandbox's directory,
/// and, on a thread, the placeholder cgroups once empty (a booted sandbox's agent, its channel
/// gone, ends within seconds; msbd's next start removes what is still left).
/// Why [`WarmPool::hand_over`] could not get a sandbox ready to start.
#[derive(Debug)]
pub enum HandOverError {
    /// Its directory could not be made.
    Directory(std::io::Error),
    /// Its root disk's image could not be made.
    RootDisk(String),
}

/// Makes the sandbox's directory with its `runtime` (the sandbox's `/.msb`, which every user
/// there reads: 0755 under msbd's umask 077), unless it is there. Made at the start, not at
/// the create: a sandbox booted ahead of time brings its own (renamed into place), and one
/// made and removed for nothing would cost an inode's creation and deletion per run.
fn make_sandbox_dir(dir: &msb_runtime::paths::SandboxDir) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.runtime())?;
    std::fs::set_permissions(dir.runtime(), std::fs::Permissions::from_mode(0o755))
}

/// Lets an idle supervisor go: it exits on end-of-file of its configuration socket, deleting
/// its own disk's image and booted sandbox; reaped here.
fn let_go(idle: Idle) {
    let Idle {
        mut child,
        control,
        socket,
        handed_on_image,
        ..
    } = idle;
    drop(control);
    let _ = child.wait();
    let _ = std::fs::remove_file(socket);
    if let Some(image) = handed_on_image {
        let _ = std::fs::remove_file(image);
    }
}

fn clean_up_after(idle: Idle) {
    tracing::warn!(
        pid = idle.child.id(),
        "an idle warm supervisor died; cleaning up after it"
    );
    let _ = std::fs::remove_file(&idle.socket);
    if let Some(image) = &idle.handed_on_image {
        let _ = std::fs::remove_file(image);
    }
    if let Some(image) = &idle.disk_image {
        let _ = std::fs::remove_file(image);
        let _ = std::fs::remove_file(image.with_extension("making"));
        let _ = std::fs::remove_dir(msb_runtime::spawn::warm_disk_paths(&idle.socket).1);
    }
    if let Some((_, dirs)) = &idle.boot {
        let _ = std::fs::remove_dir_all(&dirs.booting);
        let _ = std::fs::remove_dir_all(&dirs.booted);
    }
    std::thread::spawn(|| {
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _ = msb_runtime::backend::remove_stale_warm_cgroups();
        }
    });
}

/// How handing an idle supervisor's booted sandbox to a start went.
enum Booted {
    /// The supervisor took the sandbox (and the start).
    Taken(Child),
    /// The start cannot take it (or it is not booted): the supervisor, untouched.
    Declined(Box<Idle>),
    /// The supervisor refused after the sandbox's directory was taken: a fresh root disk image
    /// from the template is then in place (the booted sandbox may still have the old one
    /// mounted on its way out).
    Refused,
}

/// A warm supervisor's boot directory while its sandbox boots, and once it runs.
#[derive(Debug)]
struct BootDirs {
    booting: PathBuf,
    booted: PathBuf,
}

/// How long a start that can take the sandbox a warm supervisor is still booting waits for it
/// (at the normal priority from then on): it is then a few milliseconds from running, sooner
/// than a start of another.
const BOOT_WAIT: std::time::Duration = std::time::Duration::from_millis(40);

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
    /// Where the root disks' templates are kept (`$MSB_HOME/cache/disks`): each supervisor
    /// makes a root disk of the default size ahead of time from one.
    disk_templates: PathBuf,
    /// What sandboxes are booted ahead of time with: the home's default root (once it is
    /// built), msbd's agent, and the home's id map (once it is chosen).
    boot: BootSource,
    idle: Mutex<Vec<Idle>>,
    /// Spawns under way (counted against `target`).
    spawning: AtomicUsize,
    /// Starts served by a warm supervisor, and cold ones (for `msb server status` and tests).
    pub warm_starts: AtomicUsize,
    pub cold_starts: AtomicUsize,
    /// Warm starts that took a sandbox booted ahead of time.
    pub booted_starts: AtomicUsize,
    /// The root disk an ephemeral run handed on last (`msb_runtime::hand_on`), and when, for
    /// the next supervisor spawned: at most one is kept.
    handed_on: Mutex<Option<(msb_runtime::hand_on::HandedOnDisk, std::time::Instant)>>,
    /// Disks handed on that a spawned supervisor was given.
    pub disks_handed_on: AtomicUsize,
    /// Set (under `handed_on`'s lock) once msbd stops: disks arriving then go at once.
    closed: std::sync::atomic::AtomicBool,
    spares: SpareDemand,
    /// Directories of removed sandboxes, kept to become boot directories (`recycled.rs`).
    recycled: recycled::Recycled,
}

/// How many of the latest starts [`SpareDemand`] remembers.
const SPARE_WINDOW: u32 = 16;

/// Whether a supervisor spawned now should fork a spare launcher beside its booted sandbox
/// (`BootPlan::spare`): while any of the last [`SPARE_WINDOW`] starts that found a supervisor
/// with a booted sandbox could not take it. A run of starts that all take booted sandboxes
/// (back-to-back `msb run`) then pays for no spare it never uses; the first start that cannot
/// take one launches cold and brings spares back for the next ones.
#[derive(Debug)]
struct SpareDemand(std::sync::atomic::AtomicU32);

impl SpareDemand {
    /// Spares from the start, until [`SPARE_WINDOW`] starts in a row took booted sandboxes.
    fn new() -> SpareDemand {
        SpareDemand(std::sync::atomic::AtomicU32::new(1))
    }

    fn record(&self, took_booted: bool) {
        let mask = (1u32 << SPARE_WINDOW) - 1;
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seen| {
                Some(((seen << 1) | u32::from(!took_booted)) & mask)
            });
    }

    fn wanted(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

/// Where [`WarmPool`] finds what a sandbox booted ahead of time runs.
#[derive(Debug, Clone)]
pub struct BootSource {
    pub home: msb_runtime::paths::MsbHome,
    pub agent_binary: PathBuf,
    /// `boot_ahead` of msbd's configuration: false boots nothing ahead.
    pub enabled: bool,
}

impl BootSource {
    /// The plan, once the default root is built and the id map chosen (the first start does
    /// both); a sandbox is never booted without a user namespace.
    fn plan(&self) -> Option<BootPlan> {
        if !self.enabled {
            return None;
        }
        let default_rootfs = self.home.default_rootfs();
        if !msb_runtime::rootfs::default_rootfs_ready(&default_rootfs) {
            return None;
        }
        let id_map = msb_runtime::idmap::read(self.home.root())?;
        Some(BootPlan {
            default_rootfs,
            agent_binary: self.agent_binary.clone(),
            id_map: Some(id_map),
            spare: true,
        })
    }
}

impl WarmPool {
    pub fn new(
        exe: PathBuf,
        log_level: String,
        log_path: PathBuf,
        socket_dir: PathBuf,
        disk_templates: PathBuf,
        boot: BootSource,
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
            disk_templates,
            boot,
            idle: Mutex::new(Vec::new()),
            spawning: AtomicUsize::new(0),
            warm_starts: AtomicUsize::new(0),
            cold_starts: AtomicUsize::new(0),
            booted_starts: AtomicUsize::new(0),
            handed_on: Mutex::new(None),
            disks_handed_on: AtomicUsize::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            spares: SpareDemand::new(),
            recycled: recycled::Recycled::default(),
        }
    }

    /// Hands `config` to an idle supervisor and returns it as the sandbox's supervisor, or
    /// `None` when none is ready (or none took it); then tops the pool up in the background.
    ///
    /// When the sandbox's root disk is still to be made (`config.config.root_disk_mib` and no
    /// image yet), the supervisor's prepared disk becomes the sandbox's image if it is ready
    /// and of that size; otherwise the image is a fresh copy of the template, made here before
    /// anything is handed over. An error is a disk that could not be made.
    ///
    /// A supervisor that booted a sandbox ahead of time which `config` can take gets it: the
    /// booted sandbox's directory becomes the sandbox's (not made yet), root disk included,
    /// and `config.claim_booted` set. Otherwise the sandbox's directory is made here.
    pub fn hand_over(
        self: &Arc<Self>,
        config: &mut SupervisorConfig,
    ) -> Result<Option<Child>, HandOverError> {
        config.claim_booted = false;
        let dir = msb_runtime::paths::SandboxDir::new(config.sandbox_dir.clone());
        let image = dir.root_disk_image();
        let disk_bytes = config
            .config
            .root_disk_mib
            .filter(|_| !image.exists())
            .map(|mib| mib << 20);
        let mut idle = self.take_idle();
        if let Some(taken) = idle.take() {
            let booting = taken.boot.is_some();
            match self.give_booted(taken, config) {
                Booted::Taken(child) => {
                    self.spares.record(true);
                    self.warm_starts.fetch_add(1, Ordering::Relaxed);
                    self.booted_starts.fetch_add(1, Ordering::Relaxed);
                    self.refill();
                    return Ok(Some(child));
                }
                Booted::Declined(back) => {
                    if booting {
                        self.spares.record(false);
                    }
                    idle = Some(*back);
                }
                Booted::Refused => self.spares.record(false),
            }
        }
        if let Err(e) = make_sandbox_dir(&dir) {
            if let Some(idle) = idle {
                self.lock().push(idle);
            }
            return Err(HandOverError::Directory(e));
        }
        if let Some(bytes) = disk_bytes.filter(|_| !image.exists()) {
            let prepared = idle
                .as_ref()
                .and_then(|idle| idle.disk_image.as_ref())
                .filter(|_| bytes == DISK_BYTES);
            // Only a finished disk has its final name: one still being made is not taken.
            let taken = prepared.is_some_and(|disk| std::fs::rename(disk, &image).is_ok());
            if !taken {
                if let Err(e) =
                    msb_runtime::disk::make_image_from_template(&self.disk_templates, &image, bytes)
                {
                    if let Some(idle) = idle {
                        self.lock().push(idle);
                    }
                    return Err(HandOverError::RootDisk(e));
                }
            }
        }
        let child = idle.and_then(|idle| self.give(idle, config)).or_else(|| {
            // The one taken refused; any other (its disk is not the sandbox's, which it then
            // mounts itself).
            std::iter::from_fn(|| self.take_idle()).find_map(|idle| self.give(idle, config))
        });
        match &child {
            Some(_) => self.warm_starts.fetch_add(1, Ordering::Relaxed),
            None => self.cold_starts.fetch_add(1, Ordering::Relaxed),
        };
        self.refill();
        Ok(child)
    }

    /// Hands `idle` its sandbox booted ahead of time when `config` can take it (which needs
    /// the sandbox's directory not made yet: see [`make_sandbox_dir`]).
    fn give_booted(&self, idle: Idle, config: &mut SupervisorConfig) -> Booted {
        let Some((plan, dirs)) = &idle.boot else {
            return Booted::Declined(Box::new(idle));
        };
        let dir = msb_runtime::paths::SandboxDir::new(config.sandbox_dir.clone());
        if !msb_runtime::backend::bootable(config, plan) || dir.root_disk_image().exists() {
            return Booted::Declined(Box::new(idle));
        }
        let booted = &dirs.booted;
        let deadline = std::time::Instant::now() + BOOT_WAIT;
        while !booted.is_dir() && dirs.booting.is_dir() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        if !booted.is_dir() {
            return Booted::Declined(Box::new(idle));
        }
        // The sandbox's directory is not made yet (a fresh sandbox's first start): the booted
        // sandbox's becomes it (a rename that refuses a directory with anything in it).
        if let Err(e) = std::fs::rename(booted, dir.root()) {
            tracing::debug!("not taking the booted sandbox: {e}");
            return Booted::Declined(Box::new(idle));
        }
        config.claim_booted = true;
        match self.give(idle, config) {
            Some(child) => Booted::Taken(child),
            None => {
                config.claim_booted = false;
                let _ = std::fs::remove_file(dir.root_disk_image());
                let bytes = msb_api::config::DEFAULT_ROOT_DISK_MIB << 20;
                if let Err(e) = msb_runtime::disk::make_image_from_template(
                    &self.disk_templates,
                    &dir.root_disk_image(),
                    bytes,
                ) {
                    tracing::warn!("a fresh root disk after a refused hand-over: {e}");
                }
                Booted::Refused
            }
        }
    }

    /// An idle supervisor that is still alive, raised to the normal priority (it may still be
    /// preparing at its low one: the start waits for it from now on).
    fn take_idle(&self) -> Option<Idle> {
        loop {
            let mut idle = {
                let mut pool = self.lock();
                // One whose sandbox is booted, else the oldest: it is the furthest along. (The
                // newest, spawned for the start before, is usually still booting.)
                let booted =
                    |idle: &Idle| idle.boot.as_ref().is_some_and(|(_, d)| d.booted.is_dir());
                let at = pool.iter().position(booted).unwrap_or(0);
                if pool.is_empty() {
                    return None;
                }
                pool.remove(at)
            };
            // One that died while idle (killed, or its launcher failed) is skipped, and what
            // it left is cleaned up.
            if !matches!(idle.child.try_wait(), Ok(None)) {
                let _ = idle.child.wait();
                clean_up_after(idle);
                continue;
            }
            msb_runtime::spawn::set_process_cpu_priority(
                idle.child.id() as i32,
                msb_runtime::spawn::CpuPriority::Normal,
            );
            return Some(idle);
        }
    }

    /// Moves `idle`'s socket into the sandbox's directory and writes it `config`; `None` (and
    /// the supervisor killed and reaped) if it refused.
    fn give(&self, mut idle: Idle, config: &SupervisorConfig) -> Option<Child> {
        // The socket first, so that it is in place before the supervisor (and msbd's own wait
        // for it) could look.
        let target = msb_runtime::paths::SandboxDir::new(config.sandbox_dir.clone()).socket();
        if let Err(e) = std::fs::rename(&idle.socket, &target) {
            tracing::warn!(
                pid = idle.child.id(),
                "moving a warm supervisor's socket: {e}"
            );
            let _ = idle.child.kill();
            let _ = idle.child.wait();
            clean_up_after(idle);
            return None;
        }
        match msb_runtime::spawn::hand_over(&mut idle.control, config) {
            Ok(()) => Some(idle.child),
            Err(e) => {
                // It died (or is dying) since it was found alive: its socket, now at the
                // sandbox's path, must not be taken for the next supervisor's.
                tracing::warn!(
                    pid = idle.child.id(),
                    "warm supervisor refused its sandbox: {e}"
                );
                let _ = std::fs::remove_file(&target);
                let _ = idle.child.kill();
                let _ = idle.child.wait();
                clean_up_after(idle);
                None
            }
        }
    }

    /// Spawns supervisors in the background until `target` are idle or on their way.
    pub fn refill(self: &Arc<Self>) {
        self.retire_pending_boots();
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

    /// Lets every idle supervisor go (they exit on end-of-file) and reaps them, and the disk
    /// handed on.
    pub fn drain(&self) {
        // No more disks are taken: a supervisor that ends from now on deletes its own.
        if self.target > 0 {
            let _ = std::fs::remove_file(msb_runtime::hand_on::socket(self.boot.home.root()));
        }
        let kept = {
            let mut kept = self.handed_on.lock().unwrap_or_else(|p| p.into_inner());
            self.closed.store(true, Ordering::Relaxed);
            kept.take()
        };
        if let Some((disk, _)) = kept {
            discard_handed_on(disk);
        }
        let idle: Vec<Idle> = std::mem::take(&mut *self.lock());
        idle.into_iter().for_each(let_go);
        for dir in self.recycled.drain() {
            crate::trash::empty_trash_in_background(dir);
        }
    }

    /// Takes the directory of a removed sandbox (already moved into the trash) to recycle as a
    /// boot directory (`recycled.rs`); returns it when it is to be deleted instead (nothing is
    /// booted ahead here, or it is not recyclable), or an older one it replaces.
    pub fn recycle(&self, dir: PathBuf) -> Option<PathBuf> {
        if self.target == 0 || !self.boot.enabled || self.closed.load(Ordering::Relaxed) {
            return Some(dir);
        }
        self.recycled.keep(dir)
    }

    /// Lets the idle supervisors that boot nothing only because the home had no default root
    /// or id map when they were spawned go (on a thread) once it has both: with them kept, the
    /// starts that can take a booted sandbox would have fewer to take.
    fn retire_pending_boots(&self) {
        let pending = |idle: &Idle| idle.boot_pending;
        if !self.lock().iter().any(pending) || self.boot.plan().is_none() {
            return;
        }
        let retired: Vec<Idle> = {
            let mut pool = self.lock();
            let (retired, kept) = std::mem::take(&mut *pool).into_iter().partition(pending);
            *pool = kept;
            retired
        };
        tracing::debug!(
            count = retired.len(),
            "replacing idle supervisors that boot nothing"
        );
        std::thread::spawn(move || retired.into_iter().for_each(let_go));
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
        self.sweep_handed_on();
        let socket = self.socket_dir.join(format!(
            "{}-{}.sock",
            std::process::id(),
            self.next_socket.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        // The template is made (mkfs) by the first spawn that needs it, in the background.
        let template = msb_runtime::disk::template(&self.disk_templates, DISK_BYTES)
            .inspect_err(|e| tracing::warn!("no root disk ahead of time: {e}"))
            .ok();
        // A sandbox is booted on the disk ahead of time once there is a root to boot.
        let plan = self.boot.plan();
        let boot_pending = self.boot.enabled && plan.is_none();
        let boot = template.as_ref().and(plan).map(|plan| BootPlan {
            spare: self.spares.wanted(),
            ..plan
        });
        // Its disk is the one handed on last, if any (it has its own copy of the fd).
        let handed_on = template.as_ref().and_then(|_| self.take_handed_on());
        let dirs = boot.as_ref().map(|_| {
            let (booting, booted) = msb_runtime::spawn::warm_boot_dirs(&socket);
            BootDirs { booting, booted }
        });
        // Its boot directory is a removed sandbox's, emptied, when one is ready: in place
        // before it starts, which makes the directory only if it is not there.
        let recycled = dirs.as_ref().map(|dirs| &dirs.booting).filter(|booting| {
            self.recycled
                .take_into(booting, crate::trash::empty_trash_in_background)
        });
        let spawned = msb_runtime::spawn::spawn_warm_supervisor(
            &self.exe,
            &self.log_level,
            &log,
            &socket,
            template.as_deref(),
            boot.as_ref(),
            handed_on.as_ref(),
        );
        let handed_on_image = handed_on.map(|disk| disk.image.clone());
        let (mut child, control) = spawned.inspect_err(|_| {
            if let Some(image) = &handed_on_image {
                let _ = std::fs::remove_file(image);
            }
            if let Some(dir) = recycled {
                let _ = std::fs::remove_dir_all(dir);
            }
        })?;
        if handed_on_image.is_some() {
            self.disks_handed_on.fetch_add(1, Ordering::Relaxed);
        }
        let disk_image = template.map(|_| msb_runtime::spawn::warm_disk_paths(&socket).0);
        let boot = boot.zip(dirs);
        // Idle once its socket is bound (it binds first thing; give it a few seconds).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !socket.exists() {
            if std::time::Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(image) = &handed_on_image {
                    let _ = std::fs::remove_file(image);
                }
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
            disk_image,
            boot,
            boot_pending,
            handed_on_image,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn pool(home: &std::path::Path) -> WarmPool {
        WarmPool::new(
            "/nonexistent/msb-supervisor".into(),
            "info".into(),
            home.join("warm-supervisors.log"),
            home.join("warm"),
            home.join("cache/disks"),
            BootSource {
                home: msb_runtime::paths::MsbHome::new(home),
                agent_binary: "/nonexistent/msb-agentd".into(),
                enabled: false,
            },
            1,
        )
    }

    #[test]
    fn spares_stop_after_a_window_of_booted_starts_and_come_back_with_one_that_was_not() {
        let spares = SpareDemand::new();
        assert!(spares.wanted(), "a new pool spawns with spares");
        for _ in 0..SPARE_WINDOW - 1 {
            spares.record(true);
            assert!(spares.wanted());
        }
        spares.record(true);
        assert!(!spares.wanted(), "{SPARE_WINDOW} booted starts in a row");
        spares.record(false);
        for _ in 0..SPARE_WINDOW - 1 {
            assert!(spares.wanted());
            spares.record(true);
        }
        assert!(
            spares.wanted(),
            "the start that could not take one is still in the window"
        );
        spares.record(true);
        assert!(!spares.wanted());
    }
}
