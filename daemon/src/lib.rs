//! msbd: the one daemon per `MSB_HOME`.
//!
//! It alone opens the DuckDB store, spawns and reattaches supervisors, and serves the HTTP/JSON
//! API on `$MSB_HOME/msbd.sock` (mode 0600, in a 0700 home, under umask 077; and only the home's
//! owner and root are served: [`peer`]). Start-up order: take the lock (a second daemon
//! for the same home exits), write the pid file, open and migrate the store, reconcile every
//! sandbox (see [`reconcile`]), then bind the socket. SIGTERM, SIGINT or
//! `POST /v1/server/shutdown` stop it cleanly; running sandboxes keep running.

pub mod catalog;
pub mod config;
pub mod display;
pub mod error;
pub mod exposition;
pub mod extract;
pub mod ingest;
pub mod live;
pub mod orphans;
pub mod otlp;
pub mod peer;
pub mod prometheus;
pub mod reconcile;
pub mod routes;
pub mod service;
pub mod state;
pub mod supervisors;
pub mod telemetry;
pub mod trash;
pub mod warm;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use msb_host::private::DirState;
use msb_runtime::paths::MsbHome;
use msb_telemetry::otlp::OtlpConfig;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use state::Daemon;

/// A binary msbd runs: from `variable` if set, else beside msbd's own executable.
pub fn sibling_binary(variable: &str, name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating msbd's own executable")?;
    Ok(exe.with_file_name(name))
}

/// Where msbd finds the agent binary: `MSB_AGENTD`, else beside its own executable.
pub fn agent_binary_path() -> Result<PathBuf> {
    sibling_binary("MSB_AGENTD", "msb-agentd")
}

/// Takes the per-home lock; `Ok(None)` when another daemon holds it.
fn take_lock(home: &MsbHome) -> Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock_file())
        .with_context(|| format!("opening {}", home.lock_file().display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).context("locking msbd.lock"),
    }
}

/// Installs logging, and the trace pipeline when traces are exported; needs a Tokio runtime.
fn start_telemetry(home: &MsbHome, log_level: &str, otlp: OtlpConfig) -> telemetry::Telemetry {
    let mut telemetry = telemetry::Telemetry::new(otlp, home.root());
    telemetry.start_exporters();
    match &telemetry.traces_exporter {
        Some(exporter) => {
            let resource = opentelemetry_sdk::Resource::builder_empty()
                .with_attributes(
                    telemetry
                        .resource_attributes()
                        .into_iter()
                        .map(|(k, v)| opentelemetry::KeyValue::new(k, v)),
                )
                .build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_resource(resource)
                .with_span_processor(msb_telemetry::otlp::traces::QueueingSpanProcessor::start(
                    exporter.clone(),
                    &telemetry.otlp,
                ))
                .build();
            msb_telemetry::init_with_traces("msbd", log_level, &provider);
            opentelemetry::global::set_tracer_provider(provider);
        }
        None => msb_telemetry::init("msbd", log_level),
    }
    telemetry
}

/// Runs msbd until it is told to stop. `config` was read by the caller, so a malformed
/// `OTEL_*` variable or `msbd.toml` fails before anything starts.
pub fn run_daemon(home: MsbHome, log_level: String, config: config::DaemonConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let telemetry = {
        let _entered = runtime.enter();
        start_telemetry(&home, &log_level, config.otlp.clone())
    };
    // Our own session: the shell that started `msb` may go away.
    let _ = nix::unistd::setsid();
    // A sandbox whose supervisor dies is orphaned to us rather than to init, so that the
    // crash clean-up can kill what is left (see `service::record::apply_record`), and the
    // orphan reaper reaps it (`orphans`).
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("cannot become a child subreaper: {e}");
    }
    orphans::start();
    match msb_host::private::ensure_private_dir(home.root())
        .with_context(|| format!("creating {}", home.root().display()))?
    {
        DirState::Tightened { was } => tracing::warn!(
            "{} was mode {was:o}: made it 0700 (it holds sandboxes' environment values)",
            home.root().display()
        ),
        DirState::Foreign { mode, owner } => tracing::warn!(
            "{} is mode {mode:o} and belongs to uid {owner}: other users may read it",
            home.root().display()
        ),
        DirState::Created | DirState::Private => {}
    }
    fs::create_dir_all(home.sandboxes())?;
    let Some(_lock) = take_lock(&home)? else {
        // Not an error: two clients may race to start the daemon; the other one won.
        tracing::info!(
            "another msbd is already running for {}",
            home.root().display()
        );
        return Ok(());
    };
    let mut pid_file = File::create(home.pid_file())?;
    writeln!(pid_file, "{}", std::process::id())?;

    let store = msb_store::Store::open(&home.database())
        .map_err(|e| anyhow::anyhow!(error::error_chain(&e)))
        .context("opening the store")?;
    // Every sandbox's user namespace maps to this range: a bad file stops msbd here, not at the
    // first start.
    msb_runtime::idmap::for_home(&home).context("the home's id map")?;
    let supervisor_exe = sibling_binary("MSB_SUPERVISOR", "msb-supervisor")?;
    let daemon = Daemon::new(
        home.clone(),
        store,
        supervisor_exe,
        agent_binary_path()?,
        log_level,
        telemetry,
        config,
    );
    let result = runtime.block_on(serve(daemon.clone()));
    let _ = fs::remove_file(home.socket());
    let _ = fs::remove_file(home.pid_file());
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(daemon: Arc<Daemon>) -> Result<()> {
    reconcile::startup(&daemon)
        .map_err(|e| anyhow::anyhow!("reconciling sandboxes at start: {e}"))?;
    match msb_runtime::backend::remove_stale_warm_cgroups() {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(
                ?removed,
                "removed cgroups of warm supervisors that are gone"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("looking for stale warm cgroups: {e}"),
    }
    daemon.warm.take_handed_on_disks();
    daemon.warm.refill();
    let socket = daemon.home.socket();
    let _ = fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))?;
    let owner = fs::metadata(daemon.home.root())?.uid();
    let listener = peer::PeerCheckedListener::new(listener, owner);
    if let Some(addr) = prometheus::start(daemon.clone()).await {
        let _ = daemon.prometheus_addr.set(addr.to_string());
    }
    otlp::spawn(daemon.clone());
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "msbd listening");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let stopping = daemon.clone();
    let stopping_pool = daemon.warm.clone();
    let flushing = daemon.clone();
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = stopping.shutdown.notified() => tracing::info!("shutdown requested over the API"),
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, routes::router(daemon)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    let _ = stopped_rx.await;
    // Followers of logs and long waits would hold a graceful shutdown open: give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let _ = tokio::task::spawn_blocking(move || stopping_pool.drain()).await;
    if let Err(e) = flushing.store().flush_catalog() {
        tracing::error!("persisting the catalog at shutdown: {e}");
    }
    Ok(())
}
