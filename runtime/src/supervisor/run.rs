//! One run, from building the sandbox to recording its end.

use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::sync::Arc;
use std::time::Duration;

use msb_protocol::agent::{ToAgent, MAIN_SESSION};
use msb_protocol::{ExecSpec, ExitStatus};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};

use super::state::{MainOutcome, Shared, StopRequest};
use super::{agent, clients, sampler};
use crate::backend::{self, Backend};
use crate::config::SupervisorConfig;
use crate::lifecycle::TerminationReason;
use crate::paths::SandboxDir;
use crate::process::own_start_ticks;
use crate::run_record::{now_ms, now_us, BootTimes, RunPhase, RunRecord};

/// How long the agent has to say `Ready` after the sandbox starts.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a foreground run waits for its client to attach before starting anyway.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace given to leftover processes once the workload has exited by itself.
const AFTER_EXIT_GRACE_MS: u64 = 1_000;
/// Grace for `--max-duration` and `--idle-timeout` stops.
const TIMER_STOP_GRACE_MS: u64 = 10_000;

/// The supervisor's async runtime. A warm supervisor builds it before it is handed a sandbox
/// (after its launcher is forked), so that a start does not wait for its threads; they run at
/// the normal priority even though a warm supervisor waits at a lower one.
pub fn supervisor_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| crate::spawn::set_cpu_priority(0, crate::spawn::CpuPriority::Normal))
        .build()
}

/// Runs the sandbox described by `config` until its run ends, using what a warm supervisor
/// `prepared`, the socket it `bound` (already at the sandbox's socket path) and the `runtime` it
/// built. Returns the process exit code.
pub fn run_supervisor(
    config: SupervisorConfig,
    prepared: backend::Prepared,
    bound: Option<StdUnixListener>,
    runtime: Option<tokio::runtime::Runtime>,
) -> i32 {
    // Own session: msbd's death or a signal to its process group must not reach us.
    let _ = nix::unistd::setsid();
    let dir = SandboxDir::new(config.sandbox_dir.clone());
    let mut record = RunRecord {
        run_id: config.run_id.clone(),
        supervisor_pid: std::process::id() as i32,
        supervisor_start_ticks: own_start_ticks(),
        init_pid: None,
        workload_pid: None,
        phase: RunPhase::Starting,
        started_at_ms: now_ms(),
        ended_at_ms: None,
        exit_code: None,
        signal: None,
        reason: None,
        error: None,
        oom_kills: None,
        boot: BootTimes {
            supervisor_us: Some(now_us()),
            ..BootTimes::default()
        },
    };
    // Set once this run's socket is at the path: only then is the path ours to remove.
    let own_socket = std::cell::Cell::new(None);
    let fail = |mut record: RunRecord, error: String| {
        tracing::error!("{error}");
        record.phase = RunPhase::Exited;
        record.ended_at_ms = Some(now_ms());
        record.reason = Some(TerminationReason::InternalError);
        record.error = Some(error);
        let _ = record.write(&dir.run_record());
        remove_socket_if_own(&dir.socket(), own_socket.get());
        1
    };
    // The `Starting` record. A warm supervisor writes it on a thread of its runtime while its
    // launcher builds the sandbox (a write and a rename: 0.3 ms off the start's path); a cold
    // one has no runtime yet and writes it first. Every later write waits for this one.
    let mut starting = match &runtime {
        Some(rt) => {
            let (record, path) = (record.clone(), dir.run_record());
            Some(rt.spawn(async move { record.write(&path) }))
        }
        None => {
            if let Err(e) = record.write(&dir.run_record()) {
                return fail(record, format!("writing the run record: {e}"));
            }
            None
        }
    };
    let mut written = |runtime: &Option<tokio::runtime::Runtime>| -> Result<(), String> {
        let (Some(write), Some(rt)) = (starting.take(), runtime) else {
            return Ok(());
        };
        let outcome = rt.block_on(write).map_err(|e| e.to_string());
        outcome
            .and_then(|write| write.map_err(|e| e.to_string()))
            .map_err(|e| format!("writing the run record: {e}"))
    };
    let listener = match bound {
        Some(listener) => listener,
        None => match bind_and_publish(&dir.socket()) {
            Ok(l) => l,
            Err(e) => {
                let _ = written(&runtime);
                return fail(record, format!("binding {}: {e}", dir.socket().display()));
            }
        },
    };
    own_socket.set(socket_identity(&dir.socket()));
    // The sandbox a warm supervisor booted ahead of time, when msbd handed it over; else (or
    // when it cannot be claimed) one started now.
    let mut prepared = prepared;
    let claimed = match config.claim_booted {
        true => backend::claim(&config, &mut prepared),
        false => None,
    };
    let (sandbox, host_end) = match claimed {
        Some(claimed) => {
            backend::release(prepared);
            claimed
        }
        None => {
            let (host_end, agent_end) = match StdUnixStream::pair() {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = written(&runtime);
                    return fail(record, format!("creating the agent channel: {e}"));
                }
            };
            match backend::start(&config, agent_end.into(), prepared) {
                Ok(sandbox) => (sandbox, host_end),
                Err(e) => {
                    let _ = written(&runtime);
                    return fail(record, format!("starting the sandbox: {e}"));
                }
            }
        }
    };
    if let Err(e) = written(&runtime) {
        sandbox.kill();
        sandbox.wait_exit();
        let _ = sandbox.destroy();
        return fail(record, e);
    }
    record.init_pid = Some(sandbox.init_pid());
    record.boot.sandbox_us = Some(now_us());
    // A cold supervisor builds its runtime only now: the launcher is forked inside
    // `backend::start`, and a fork is simplest from a process with one thread.
    let runtime = match runtime.map_or_else(supervisor_runtime, Ok) {
        Ok(rt) => rt,
        Err(e) => {
            sandbox.kill();
            sandbox.wait_exit();
            let _ = sandbox.destroy();
            return fail(record, format!("starting the async runtime: {e}"));
        }
    };
    runtime.block_on(supervise(
        config,
        record,
        listener,
        host_end,
        Arc::from(sandbox),
    ))
}

/// The (device, inode) of the socket file at `path`, if there is one.
pub(super) fn socket_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Removes the supervisor socket at `path` if it is still the one this run bound (`own`).
/// A stopped sandbox can be started again while its old supervisor is still winding down
/// (waiting for its clients to read their last replies): by then the path holds the new run's
/// socket, which must stay. (A new socket renamed over the path between the check and the
/// removal would still be lost: a window of microseconds, against the whole wind-down before.)
fn remove_socket_if_own(path: &std::path::Path, own: Option<(u64, u64)>) {
    if own.is_some() && socket_identity(path) == own {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds a listening socket at `path` such that the path appears only once the socket listens:
/// bound and listening under a temporary name, then renamed. msbd takes the file's existence as
/// "the supervisor is up", and a connect between `bind` and `listen` would be refused.
fn bind_and_publish(path: &std::path::Path) -> std::io::Result<StdUnixListener> {
    // Shorter than the final name, so that it fits wherever the final path does (108 bytes).
    let staging = path.with_file_name(format!(".s{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = StdUnixListener::bind(&staging)?;
    // Files under MSB_HOME are 0600 (msb_host::private); this process's umask is 022.
    std::fs::set_permissions(
        &staging,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    std::fs::rename(&staging, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })?;
    Ok(listener)
}

/// Which event ended the running phase.
enum Ending {
    WorkloadDone,
    Stop(StopRequest),
    InitGone(&'static str),
}

pub(super) async fn supervise(
    config: SupervisorConfig,
    record: RunRecord,
    listener: StdUnixListener,
    host_end: StdUnixStream,
    sandbox: Arc<dyn Backend>,
) -> i32 {
    let (to_agent_tx, to_agent_rx) = mpsc::unbounded_channel();
    // The record gets PID 1's pid and the boot times with its next write (`Running`): one write
    // and one catalog update less before the workload starts.
    let shared = Arc::new(Shared::new(config, record.clone(), to_agent_tx));

    let (reader, writer) = match host_end
        .set_nonblocking(true)
        .and_then(|_| UnixStream::from_std(host_end))
    {
        Ok(stream) => stream.into_split(),
        Err(e) => return abort(&shared, &sandbox, format!("agent channel: {e}")).await,
    };
    tokio::spawn(agent::write_loop(writer, to_agent_rx));
    let mut agent_reader = tokio::spawn(agent::read_loop(shared.clone(), reader));
    match listener
        .set_nonblocking(true)
        .and_then(|_| UnixListener::from_std(listener))
    {
        Ok(listener) => {
            tokio::spawn(clients::accept_loop(shared.clone(), listener));
        }
        Err(e) => return abort(&shared, &sandbox, format!("supervisor socket: {e}")).await,
    }
    let (init_exit_tx, mut init_exit) = watch::channel(false);
    let waiter = sandbox.clone();
    tokio::task::spawn_blocking(move || {
        waiter.wait_exit();
        let _ = init_exit_tx.send(true);
    });
    let mut stop = shared.stop.subscribe();

    // 1. The agent comes up. Meanwhile a foreground run's client attaches and the workload's
    //    `Exec` is queued at once: the agent reads it right after saying `Ready`, without a
    //    round trip through this process.
    let mut exec = std::pin::pin!(queue_main_exec(&shared));
    let mut exec_queued = false;
    let ready_deadline = sleep(AGENT_READY_TIMEOUT);
    tokio::pin!(ready_deadline);
    let ending = loop {
        tokio::select! {
            _ = &mut exec, if !exec_queued => exec_queued = true,
            _ = shared.agent_ready.notified() => break None,
            _ = &mut ready_deadline => {
                shared.request_stop(StopRequest { reason: TerminationReason::AgentUnresponsive, grace_ms: 0 });
                break Some(Ending::Stop(StopRequest { reason: TerminationReason::AgentUnresponsive, grace_ms: 0 }));
            }
            _ = init_exit.wait_for(|gone| *gone) => break Some(Ending::InitGone("the sandbox's init exited before the agent was ready")),
            request = stop.wait_for(Option::is_some) => break Some(Ending::Stop(request.map(|r| r.unwrap()).unwrap_or(StopRequest { reason: TerminationReason::ShutdownRequested, grace_ms: 0 }))),
        }
    };

    if ending.is_none() {
        // Written with the Running record (one write less on the start path).
        shared.record.lock().unwrap().boot.agent_us = Some(now_us());
        if let Some(interval_ms) = shared.config.config.metrics_interval() {
            let sampler = sampler::Sampler::new(
                sandbox.cgroups().as_ref(),
                shared.config.config.cpus,
                &shared.config.config.name,
            )
            .with_runtime_fs(sandbox.runtime_fs())
            .with_mount_fs(sandbox.mount_fs())
            .with_net(sandbox.net_counters())
            .with_root_disk(sandbox.root_disk());
            let started = std::time::Instant::now()
                - Duration::from_millis(
                    now_ms().saturating_sub(shared.record.lock().unwrap().started_at_ms),
                );
            let (request, requested) = tokio::sync::oneshot::channel();
            *shared.final_sample.lock().unwrap() = Some(request);
            tokio::spawn(sampler::run(
                shared.clone(),
                sampler,
                (interval_ms, requested),
                started,
            ));
        }
    }
    let ending = match ending {
        Some(ending) => ending,
        None => {
            if !exec_queued {
                exec.await;
            }
            start_and_run(&shared, &mut init_exit, &mut agent_reader).await
        }
    };
    let init_ended_itself = shut_down(&shared, &sandbox, &mut init_exit, &ending).await;
    // The agent's last frames (the workload's exit) may still be in flight: read to the end of
    // the channel before deciding how the run ended.
    if !agent_reader.is_finished() {
        let _ = timeout(Duration::from_secs(2), &mut agent_reader).await;
    }
    let init_end = sandbox
        .init_status()
        .filter(|_| init_ended_itself)
        .map(|status| format!("the sandbox's PID 1 (the agent) {status}"));
    finish(&shared, &sandbox, ending, init_end).await
}

async fn start_and_run(
    shared: &Arc<Shared>,
    init_exit: &mut watch::Receiver<bool>,
    agent_reader: &mut tokio::task::JoinHandle<()>,
) -> Ending {
    let mut stop = shared.stop.subscribe();
    // 2. The workload starts (its `Exec` is queued by now).
    let mut started = shared.main_started.subscribe();
    let start = tokio::select! {
        result = started.wait_for(Option::is_some) => result.ok().and_then(|r| r.clone()),
        _ = init_exit.wait_for(|gone| *gone) => return Ending::InitGone("the sandbox's init exited while starting the workload"),
        request = stop.wait_for(Option::is_some) => return Ending::Stop(request.ok().and_then(|r| *r).expect("stop set")),
    };
    match start {
        Some(Ok(pid)) => shared.update_record(|r| {
            r.phase = RunPhase::Running;
            r.workload_pid = Some(pid);
            r.boot.workload_us = Some(now_us());
        }),
        _ => return Ending::WorkloadDone,
    }
    spawn_timers(shared.clone());

    // 3. Running, until one of these.
    let mut outcome = shared.main_outcome.subscribe();
    tokio::select! {
        _ = outcome.wait_for(Option::is_some) => Ending::WorkloadDone,
        request = stop.wait_for(Option::is_some) => Ending::Stop(request.ok().and_then(|r| *r).expect("stop set")),
        _ = init_exit.wait_for(|gone| *gone) => Ending::InitGone("the sandbox's init exited unexpectedly"),
        _ = agent_reader => Ending::InitGone("the agent channel closed unexpectedly"),
    }
}

/// Waits for a foreground run's client (so that not a byte of output is lost), then queues the
/// workload's `Exec` for the agent.
async fn queue_main_exec(shared: &Shared) {
    if shared.config.wait_for_attach {
        tokio::select! {
            _ = shared.first_attach.notified() => {}
            _ = sleep(ATTACH_TIMEOUT) => tracing::warn!("no client attached within {ATTACH_TIMEOUT:?}; starting anyway"),
        }
    }
    let config = &shared.config.config;
    let spec = ExecSpec {
        argv: config.effective_command(),
        env: config.env.clone(),
        workdir: config.workdir.clone(),
        mode: shared.config.main_mode,
    };
    let _ = shared.to_agent.send(ToAgent::Exec {
        session: MAIN_SESSION,
        spec,
    });
}

fn spawn_timers(shared: Arc<Shared>) {
    if let Some(secs) = shared.config.config.max_duration_secs {
        let shared = shared.clone();
        tokio::spawn(async move {
            sleep(Duration::from_secs(secs)).await;
            tracing::info!("max duration of {secs} s reached");
            shared.request_stop(StopRequest {
                reason: TerminationReason::MaxDurationExceeded,
                grace_ms: TIMER_STOP_GRACE_MS,
            });
        });
    }
    if let Some(secs) = shared.config.config.idle_timeout_secs {
        tokio::spawn(async move {
            shared.touch_activity();
            let limit = Duration::from_secs(secs);
            loop {
                sleep(Duration::from_millis(250)).await;
                if !shared.sessions.lock().unwrap().is_empty() {
                    shared.touch_activity();
                }
                if shared.last_activity.lock().unwrap().elapsed() >= limit {
                    tracing::info!("no agent activity for {secs} s");
                    shared.request_stop(StopRequest {
                        reason: TerminationReason::IdleTimeout,
                        grace_ms: TIMER_STOP_GRACE_MS,
                    });
                    return;
                }
            }
        });
    }
}

/// Takes the sandbox down: graceful through the agent when there is time, by SIGKILL otherwise.
/// Returns whether PID 1 ended by itself (not by this SIGKILL).
async fn shut_down(
    shared: &Shared,
    sandbox: &Arc<dyn Backend>,
    init_exit: &mut watch::Receiver<bool>,
    ending: &Ending,
) -> bool {
    if let Ending::InitGone(_) = ending {
        // Its channel closes as PID 1 dies, a moment before the wait sees it: give the wait
        // that moment, so that how PID 1 ended is its own doing and not this SIGKILL's.
        if timeout(Duration::from_millis(200), init_exit.wait_for(|gone| *gone))
            .await
            .is_ok()
        {
            return true;
        }
    }
    let grace_ms = match ending {
        Ending::Stop(request) => {
            shared.update_record(|r| r.phase = RunPhase::Draining);
            request.grace_ms
        }
        Ending::WorkloadDone => AFTER_EXIT_GRACE_MS,
        Ending::InitGone(_) => 0,
    };
    if grace_ms > 0 && !*init_exit.borrow() {
        let _ = shared.to_agent.send(ToAgent::Shutdown { grace_ms });
        let limit = Duration::from_millis(grace_ms) + Duration::from_secs(2);
        if timeout(limit, init_exit.wait_for(|gone| *gone))
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!("sandbox still up {limit:?} after shutdown was requested; killing it");
    }
    sandbox.kill();
    if timeout(Duration::from_secs(10), init_exit.wait_for(|gone| *gone))
        .await
        .is_err()
    {
        tracing::error!("sandbox init did not exit after SIGKILL");
    }
    false
}

/// Records how the run ended (`init_end`: how PID 1 ended, when it ended by itself).
async fn finish(
    shared: &Shared,
    sandbox: &Arc<dyn Backend>,
    ending: Ending,
    init_end: Option<String>,
) -> i32 {
    let outcome = shared.main_outcome.borrow().clone();
    let (mut exit_code, mut signal, mut error): (Option<i32>, Option<i32>, Option<String>) =
        (None, None, None);
    match &outcome {
        Some(MainOutcome::Exited(ExitStatus { code, signal: sig })) => {
            exit_code = *code;
            signal = *sig;
        }
        Some(MainOutcome::Failed {
            exit_code: code,
            message,
        }) => {
            exit_code = Some(*code);
            error = Some(message.clone());
        }
        None => {}
    }
    let reason = match (&ending, &outcome) {
        (Ending::Stop(request), _) => {
            if request.reason == TerminationReason::Signal && outcome.is_none() {
                signal = Some(libc::SIGKILL);
            }
            request.reason
        }
        (_, Some(MainOutcome::Exited(status))) => match (status.code, status.signal) {
            (Some(0), _) => TerminationReason::Completed,
            (Some(_), _) => TerminationReason::Failed,
            _ => TerminationReason::Signal,
        },
        (_, Some(MainOutcome::Failed { .. })) => TerminationReason::Failed,
        (Ending::InitGone(why), None) => {
            error = Some(match &init_end {
                Some(end) => format!("{why}: {end}"),
                None => (*why).to_owned(),
            });
            TerminationReason::InternalError
        }
        (Ending::WorkloadDone, None) => TerminationReason::InternalError,
    };
    // Before the cgroups go: the run's final sample (its counters as they ended: CPU, OOM kills,
    // faults), so history keeps how the run ended and not only its last tick.
    let final_request = shared.final_sample.lock().unwrap().take();
    if let Some(request) = final_request {
        let (taken, done) = tokio::sync::oneshot::channel();
        if request.send(taken).is_ok() {
            let _ = timeout(Duration::from_millis(500), done).await;
        }
    }
    // Did the kernel's OOM killer end anything?
    let oom_kills = sampler::oom_kills(sandbox.cgroups().as_ref());
    if oom_kills.is_some_and(|n| n > 0) && signal == Some(libc::SIGKILL) {
        let limit = shared.config.config.memory_limit_mib();
        error.get_or_insert_with(|| {
            format!(
                "the workload was killed by the kernel's OOM killer (memory above its {limit} MiB limit)"
            )
        });
    }
    let record_end = || {
        shared.update_record(|r| {
            r.oom_kills = oom_kills;
            r.phase = RunPhase::Exited;
            r.ended_at_ms = Some(now_ms());
            r.exit_code = exit_code;
            r.signal = signal;
            r.reason = Some(reason);
            r.error = error.clone();
        })
    };
    // PID 1 is gone, so the run has ended. An ephemeral sandbox is recorded as ended before
    // its cgroups are removed, so that msbd can remove it (and `msb run` return) meanwhile; a
    // named one only after, because its next start reuses the cgroup names.
    let ephemeral = shared.config.config.ephemeral;
    if ephemeral {
        record_end();
    }
    if let Err(e) = sandbox.destroy() {
        tracing::error!("cleaning up the sandbox: {e}");
    }
    if !ephemeral {
        record_end();
    }
    shared.finished.send_replace(true);
    // Sessions whose process never reported an end get none now: closing their queues ends
    // them once what is queued is written. Wait (bounded) until every reply has gone out.
    shared.sessions.lock().unwrap().clear();
    shared.main_followers.lock().unwrap().clear();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while shared
        .open_connections
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
        && tokio::time::Instant::now() < deadline
    {
        sleep(Duration::from_millis(1)).await;
    }
    remove_socket_if_own(&shared.dir.socket(), shared.own_socket);
    0
}

async fn abort(shared: &Shared, sandbox: &Arc<dyn Backend>, error: String) -> i32 {
    tracing::error!("{error}");
    sandbox.kill();
    sandbox.wait_exit();
    let _ = sandbox.destroy();
    shared.update_record(|r| {
        r.phase = RunPhase::Exited;
        r.ended_at_ms = Some(now_ms());
        r.reason = Some(TerminationReason::InternalError);
        r.error = Some(error);
    });
    remove_socket_if_own(&shared.dir.socket(), shared.own_socket);
    1
}
