//! What the supervisor's tasks share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use msb_protocol::agent::{Heartbeat, SessionId, ToAgent};
use msb_protocol::session::ClientEvent;
use msb_protocol::{ExitStatus, Stream};
use tokio::sync::{mpsc, watch, Notify};

use crate::config::SupervisorConfig;
use crate::lifecycle::TerminationReason;
use crate::logs::{LogEntry, LogWriter};
use crate::paths::SandboxDir;
use crate::run_record::{now_ms, RunPhase, RunRecord};

/// Frames queued for one attach or exec client. A client that reads slower than its workload
/// writes fills its queue; the agent channel's reader then waits for room, the agent's output
/// threads wait on the channel, and the workload waits on its full pipe: memory outside the
/// sandbox stays bounded (`msb run -- yes | sleep 1d` stops `yes`, not the host).
pub const CLIENT_QUEUE_FRAMES: usize = 64;

/// Why the supervisor is taking the sandbox down (first request wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    pub reason: TerminationReason,
    /// How long the workload gets between SIGTERM and SIGKILL; 0 kills at once.
    pub grace_ms: u64,
}

/// How the main workload's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainOutcome {
    Exited(ExitStatus),
    Failed { exit_code: i32, message: String },
}

pub struct Shared {
    pub config: SupervisorConfig,
    pub dir: SandboxDir,
    /// The (device, inode) of this run's socket file, read when the run is handed its
    /// listener: at exit the socket is removed only if the path still holds it.
    pub own_socket: Option<(u64, u64)>,
    pub record: Mutex<RunRecord>,
    pub to_agent: mpsc::UnboundedSender<ToAgent>,
    /// Exec sessions: where their events go (bounded: [`CLIENT_QUEUE_FRAMES`]).
    pub sessions: Mutex<HashMap<SessionId, mpsc::Sender<ClientEvent>>>,
    /// Attached followers of the main workload (bounded: [`CLIENT_QUEUE_FRAMES`]).
    pub main_followers: Mutex<Vec<mpsc::Sender<ClientEvent>>>,
    next_session: AtomicU32,
    /// Set by a drain: new exec sessions are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// Attach, exec and control connections still being served (watchers not counted).
    pub open_connections: AtomicU32,
    /// Opened by the first attach when the workload waits for one.
    pub first_attach: Notify,
    pub agent_ready: Notify,
    pub main_started: watch::Sender<Option<Result<u32, MainOutcome>>>,
    pub main_outcome: watch::Sender<Option<MainOutcome>>,
    pub stop: watch::Sender<Option<StopRequest>>,
    /// True once the run is recorded as exited.
    pub finished: watch::Sender<bool>,
    pub watchers: Mutex<Vec<mpsc::UnboundedSender<ClientEvent>>>,
    pub last_heartbeat: Mutex<Option<(Heartbeat, Instant)>>,
    /// When agent activity was last seen (exec starts, exec I/O, live exec sessions).
    pub last_activity: Mutex<Instant>,
    log: Mutex<Option<LogWriter>>,
    /// Samples msbd has not acknowledged as stored.
    pub outbox: Mutex<super::outbox::SampleOutbox>,
    /// Asks the sampler for the run's final sample (taken before the cgroups go) and waits for
    /// it: set when the sampler starts, taken once by the run's end.
    pub final_sample: Mutex<Option<super::sampler::FinalSampleRequest>>,
}

impl Shared {
    pub fn new(
        config: SupervisorConfig,
        record: RunRecord,
        to_agent: mpsc::UnboundedSender<ToAgent>,
    ) -> Self {
        let dir = SandboxDir::new(config.sandbox_dir.clone());
        let log = LogWriter::open(&dir.output_log(), config.output_log_max_bytes)
            .map_err(|e| tracing::warn!("output log unavailable: {e}"))
            .ok();
        let sample_capacity = super::outbox::capacity(
            config
                .config
                .metrics_interval()
                .unwrap_or(crate::config::DEFAULT_METRICS_INTERVAL_MS),
        );
        let own_socket = super::run::socket_identity(&dir.socket());
        Self {
            config,
            dir,
            own_socket,
            record: Mutex::new(record),
            to_agent,
            sessions: Mutex::new(HashMap::new()),
            main_followers: Mutex::new(Vec::new()),
            next_session: AtomicU32::new(1),
            draining: Default::default(),
            open_connections: AtomicU32::new(0),
            first_attach: Notify::new(),
            agent_ready: Notify::new(),
            main_started: watch::channel(None).0,
            main_outcome: watch::channel(None).0,
            stop: watch::channel(None).0,
            finished: watch::channel(false).0,
            watchers: Mutex::new(Vec::new()),
            last_heartbeat: Mutex::new(None),
            last_activity: Mutex::new(Instant::now()),
            outbox: Mutex::new(super::outbox::SampleOutbox::new(sample_capacity)),
            final_sample: Mutex::new(None),
            log: Mutex::new(log),
        }
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies `change` to the run record, persists it and rings every watcher. The write is
    /// made under the record's lock: two at once would share the temporary file
    /// ([`RunRecord::write`]), and the later change must be the one left.
    pub fn update_record(&self, change: impl FnOnce(&mut RunRecord)) {
        {
            let mut record = self.record.lock().unwrap();
            change(&mut record);
            if let Err(e) = record.write(&self.dir.run_record()) {
                tracing::error!("writing run record: {e}");
            }
        }
        self.watchers
            .lock()
            .unwrap()
            .retain(|w| w.send(ClientEvent::RecordChanged).is_ok());
    }

    pub fn phase(&self) -> RunPhase {
        self.record.lock().unwrap().phase
    }

    /// Asks for the sandbox to come down; the first request decides the reason.
    pub fn request_stop(&self, request: StopRequest) {
        self.stop.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(request);
                true
            } else {
                false
            }
        });
    }

    pub fn log_output(&self, session: SessionId, stream: Stream, data: &[u8]) {
        let entry = LogEntry {
            ts_ms: now_ms(),
            source: if session == 0 {
                "main".to_owned()
            } else {
                format!("exec-{session}")
            },
            stream: match stream {
                Stream::Stdout => "stdout".to_owned(),
                Stream::Stderr => "stderr".to_owned(),
            },
            data: String::from_utf8_lossy(data).into_owned(),
        };
        if let Some(log) = self.log.lock().unwrap().as_mut() {
            if let Err(e) = log.append(&entry) {
                tracing::warn!("appending to output log: {e}");
            }
        }
    }

    /// Counts a connection as open until the guard drops.
    pub fn connection_guard(self: &std::sync::Arc<Self>) -> ConnectionGuard {
        self.open_connections.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }

    /// Numbers a sample, keeps it until msbd acknowledges it as stored, and sends it to the
    /// watchers (msbd).
    pub fn deliver_sample(&self, sample: msb_metrics::Sample) {
        let mut watchers = self.watchers.lock().unwrap();
        let mut outbox = self.outbox.lock().unwrap();
        let frame = (!watchers.is_empty()).then(|| sample.clone());
        let seq = outbox.push(sample);
        drop(outbox);
        if let Some(sample) = frame {
            let event = ClientEvent::SampleBatch {
                first_seq: seq,
                samples: vec![sample],
            };
            watchers.retain(|w| w.send(event.clone()).is_ok());
        }
    }

    /// Registers a watcher and sends it every sample not yet acknowledged.
    pub fn add_watcher(&self, watcher: mpsc::UnboundedSender<ClientEvent>) {
        let mut watchers = self.watchers.lock().unwrap();
        for frame in self.outbox.lock().unwrap().backlog() {
            let _ = watcher.send(frame);
        }
        watchers.push(watcher);
    }

    /// msbd stored every sample numbered up to `through_seq`.
    pub fn samples_stored(&self, through_seq: u64) {
        self.outbox.lock().unwrap().acknowledge(through_seq);
    }

    pub fn touch_activity(&self) {
        *self.last_activity.lock().unwrap() = Instant::now();
    }
}

pub struct ConnectionGuard(std::sync::Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}
