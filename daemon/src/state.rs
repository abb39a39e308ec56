//! The daemon's shared state: the store, per-sandbox operation locks and status watchers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use msb_runtime::lifecycle::SandboxStatus;
use msb_runtime::paths::MsbHome;
use msb_store::{SandboxRow, Store};
use tokio::sync::{watch, Notify};

pub struct Daemon {
    pub home: MsbHome,
    store: Mutex<Store>,
    /// Serialises lifecycle operations per sandbox (by id).
    op_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Latest status per sandbox id, for `wait`.
    statuses: Mutex<HashMap<String, watch::Sender<SandboxStatus>>>,
    /// Sandbox ids with a monitor task attached to their supervisor.
    pub monitored: Mutex<std::collections::HashSet<String>>,
    pub started: Instant,
    /// The binary that runs supervisors (`msbd supervisor ...`).
    pub supervisor_exe: PathBuf,
    pub agent_binary: PathBuf,
    pub log_level: String,
    pub shutdown: Notify,
    /// The latest sample of every sandbox.
    pub live: super::live::LiveMetrics,
    /// Where every sample goes for history (one writer thread; never blocks the caller).
    pub series: Option<msb_store::SeriesWriter>,
    /// Which numbered samples were taken in already (a reattach sends unacknowledged ones again).
    pub intake: super::ingest::Intake,
    /// (device, inode) of the executable this msbd runs, as it was at start.
    pub executable: Option<(u64, u64)>,
    /// Where the Prometheus endpoint listens, once bound.
    pub prometheus_addr: std::sync::OnceLock<String>,
    /// msbd's own instruments and the OTLP exporters.
    pub telemetry: super::telemetry::Telemetry,
    pub config: super::config::DaemonConfig,
    /// Supervisors spawned ahead of time.
    pub warm: Arc<super::warm::WarmPool>,
    /// How recently removed ephemeral sandboxes ended, by name, for a `wait` that arrives
    /// after the removal (`msb run` asks while the run is still going, but a short run can
    /// end first). Kept for [`ENDING_KEPT`].
    endings: Mutex<HashMap<String, (Instant, msb_api::WaitResponse)>>,
    /// Held while a volume is removed or a sandbox naming volumes is recorded, so that no
    /// sandbox is recorded with a volume on its way out.
    pub volume_lock: tokio::sync::Mutex<()>,
    /// Supervisors this msbd spawned for runs, by pid: `None` until reaped, then how they
    /// ended, for a crash's record ([`Daemon::supervisor_exit`]); reaped ones at most
    /// [`SUPERVISOR_EXITS_KEPT`].
    supervisor_exits: Mutex<HashMap<i32, Option<std::process::ExitStatus>>>,
}

/// How many reaped supervisors' exit statuses [`Daemon`] keeps (most runs end recorded, and
/// nobody asks).
const SUPERVISOR_EXITS_KEPT: usize = 256;

/// How long [`Daemon::ending`] remembers a removed ephemeral sandbox.
pub const ENDING_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

impl Daemon {
    pub fn new(
        home: MsbHome,
        store: Store,
        supervisor_exe: PathBuf,
        agent_binary: PathBuf,
        log_level: String,
        telemetry: super::telemetry::Telemetry,
        config: super::config::DaemonConfig,
    ) -> Arc<Self> {
        let series =
            msb_store::SeriesWriter::start_with_options(&store, super::ingest::writer_options())
                .map_err(|e| {
                    tracing::error!(
                        "metrics history is off: {}",
                        crate::display::error_chain(&e)
                    )
                })
                .ok();
        let warm = Arc::new(super::warm::WarmPool::new(
            supervisor_exe.clone(),
            log_level.clone(),
            home.warm_supervisor_log(),
            home.warm_sockets(),
            home.disk_templates(),
            super::warm::BootSource {
                home: home.clone(),
                agent_binary: agent_binary.clone(),
                enabled: config.boot_ahead,
            },
            config.warm_supervisors,
        ));
        Arc::new(Daemon {
            warm,
            volume_lock: tokio::sync::Mutex::new(()),
            home,
            store: Mutex::new(store),
            op_locks: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
            endings: Mutex::new(HashMap::new()),
            supervisor_exits: Mutex::new(HashMap::new()),
            monitored: Mutex::new(Default::default()),
            started: Instant::now(),
            supervisor_exe,
            agent_binary,
            log_level,
            shutdown: Notify::new(),
            live: Default::default(),
            series,
            intake: Default::default(),
            prometheus_addr: Default::default(),
            telemetry,
            config,
            executable: msb_runtime::process::executable_identity(std::path::Path::new(
                "/proc/self/exe",
            )),
        })
    }

    /// Notes that the supervisor `pid` of a run is this msbd's child, to be reaped by it.
    pub fn supervisor_spawned(&self, pid: i32) {
        self.exits().insert(pid, None);
    }

    /// Remembers how the supervisor `pid`, which this msbd spawned and just reaped, ended.
    pub fn supervisor_reaped(&self, pid: i32, status: std::process::ExitStatus) {
        let mut exits = self.exits();
        exits.insert(pid, Some(status));
        if exits.len() > SUPERVISOR_EXITS_KEPT {
            exits.retain(|_, status| status.is_none());
        }
    }

    /// How the supervisor `pid` ended, if it was this msbd's child. A death is seen (its
    /// sockets close, it turns zombie) a moment before its reaper has its status: wait for
    /// that moment, up to 100 ms.
    pub fn supervisor_exit(&self, pid: i32) -> Option<std::process::ExitStatus> {
        for _ in 0..100 {
            let exits = self.exits();
            match exits.get(&pid) {
                // Left in place: concurrent records of the same crash read the same end.
                Some(Some(status)) => return Some(*status),
                Some(None) => {
                    drop(exits);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                None => return None,
            }
        }
        None
    }

    fn exits(&self) -> MutexGuard<'_, HashMap<i32, Option<std::process::ExitStatus>>> {
        self.supervisor_exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in samples from a supervisor: live state now, history through the store.
    pub fn ingest(&self, samples: &[msb_metrics::Sample], interval_ms: u64) {
        if let Some(first) = samples.first() {
            let previous = self.live.get(&first.sandbox_id);
            self.telemetry
                .count_samples(previous.as_ref().map(|l| &l.sample), samples);
        }
        self.live.record(samples, interval_ms);
        if let Some(series) = &self.series {
            series.append(samples.to_vec());
        }
    }

    /// The store. Hold the guard only for the few statements of one step, never across an await.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn sandbox(&self, name: &str) -> Result<SandboxRow, crate::catalog::CatalogError> {
        self.store()
            .sandbox_by_name(name)?
            .ok_or_else(|| crate::catalog::CatalogError::NotFound(name.to_owned()))
    }

    /// The lock that serialises lifecycle operations on one sandbox.
    pub fn op_lock(&self, sandbox_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.op_locks
            .lock()
            .unwrap()
            .entry(sandbox_id.to_owned())
            .or_default()
            .clone()
    }

    pub fn forget(&self, sandbox_id: &str) {
        self.op_locks.lock().unwrap().remove(sandbox_id);
        self.intake.forget(sandbox_id);
        if let Some(tx) = self.statuses.lock().unwrap().remove(sandbox_id) {
            // Waiters see the sender go away and re-read the catalog.
            drop(tx);
        }
    }

    /// Remembers how an ephemeral sandbox ended, before it is removed.
    pub fn record_ending(&self, ending: msb_api::WaitResponse) {
        let mut endings = self.endings.lock().unwrap();
        endings.retain(|_, (at, _)| at.elapsed() < ENDING_KEPT);
        endings.insert(ending.name.clone(), (Instant::now(), ending));
    }

    /// How a removed ephemeral sandbox ended, if it was removed within [`ENDING_KEPT`].
    pub fn ending(&self, name: &str) -> Option<msb_api::WaitResponse> {
        let endings = self.endings.lock().unwrap();
        let (at, ending) = endings.get(name)?;
        (at.elapsed() < ENDING_KEPT).then(|| ending.clone())
    }

    /// Publishes a status change to waiters.
    pub fn publish_status(&self, sandbox_id: &str, status: SandboxStatus) {
        let mut statuses = self.statuses.lock().unwrap();
        match statuses.get(sandbox_id) {
            Some(tx) => {
                tx.send_replace(status);
            }
            None => {
                statuses.insert(sandbox_id.to_owned(), watch::channel(status).0);
            }
        }
    }

    pub fn subscribe_status(
        &self,
        sandbox_id: &str,
        current: SandboxStatus,
    ) -> watch::Receiver<SandboxStatus> {
        self.statuses
            .lock()
            .unwrap()
            .entry(sandbox_id.to_owned())
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }
}
