//! The supervisor's lifecycle logic against a fake backend: no root, no namespaces.
//!
//! [`FakeBackend`] stands at the privilege boundary: instead of a sandbox it runs a scripted
//! agent on a thread, speaking the real protocol over the real socketpair. Everything above it
//! (agent routing, sessions, timers, shutdown, the run record) is the production code.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use msb_protocol::agent::{FromAgent, ToAgent};
use msb_protocol::session::{ClientEvent, ClientRequest, Control};
use msb_protocol::{read_frame, write_frame, ExecErrorKind, ExecMode, ExitStatus, Stream};

use super::run::supervise;
use crate::backend::Backend;
use crate::config::{SandboxConfig, SupervisorConfig};
use crate::lifecycle::TerminationReason;
use crate::paths::SandboxDir;
use crate::run_record::{RunPhase, RunRecord};

/// A sandbox that is a thread: it exits when its agent does, or when killed.
#[derive(Default)]
struct FakeBackend {
    exited: Mutex<bool>,
    changed: Condvar,
    killed: Mutex<bool>,
}

impl FakeBackend {
    fn exit(&self) {
        *self.exited.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl Backend for FakeBackend {
    fn init_pid(&self) -> i32 {
        1
    }
    fn wait_exit(&self) {
        let mut exited = self.exited.lock().unwrap();
        while !*exited {
            exited = self.changed.wait(exited).unwrap();
        }
    }
    fn kill(&self) {
        *self.killed.lock().unwrap() = true;
        self.exit();
    }
    fn destroy(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The scripted agent. Commands: `exit N` prints "hello" and exits N; `hang` runs until
/// signalled or shut down; `missing` is not found; `die` makes the whole agent vanish.
fn fake_agent(mut channel: UnixStream, backend: Arc<FakeBackend>, ready: bool) {
    let mut out = channel.try_clone().unwrap();
    if ready {
        write_frame(&mut out, &FromAgent::Ready { version: 1 }).unwrap();
    }
    let mut hanging = Vec::new();
    while let Ok(Some(message)) = read_frame::<_, ToAgent>(&mut channel) {
        let send = |out: &mut UnixStream, m: FromAgent| {
            let _ = write_frame(out, &m);
        };
        match message {
            ToAgent::Exec { session, spec } => match spec.argv[0].as_str() {
                "exit" => {
                    send(&mut out, FromAgent::Started { session, pid: 7 });
                    send(
                        &mut out,
                        FromAgent::Output {
                            session,
                            stream: Stream::Stdout,
                            data: b"hello\n".to_vec(),
                        },
                    );
                    let code = spec.argv[1].parse().unwrap();
                    send(
                        &mut out,
                        FromAgent::Exited {
                            session,
                            status: ExitStatus {
                                code: Some(code),
                                signal: None,
                            },
                        },
                    );
                }
                "hang" => {
                    send(&mut out, FromAgent::Started { session, pid: 8 });
                    hanging.push(session);
                }
                "missing" => send(
                    &mut out,
                    FromAgent::ExecFailed {
                        session,
                        kind: ExecErrorKind::NotFound,
                        message: "missing: not found".into(),
                    },
                ),
                _ => break, // "die"
            },
            ToAgent::Signal { session, signal } => {
                hanging.retain(|s| *s != session);
                send(
                    &mut out,
                    FromAgent::Exited {
                        session,
                        status: ExitStatus {
                            code: None,
                            signal: Some(signal),
                        },
                    },
                );
            }
            ToAgent::Shutdown { .. } => {
                for session in hanging.drain(..) {
                    send(
                        &mut out,
                        FromAgent::Exited {
                            session,
                            status: ExitStatus {
                                code: None,
                                signal: Some(15),
                            },
                        },
                    );
                }
                break;
            }
            ToAgent::Stdin { .. } | ToAgent::StdinEof { .. } | ToAgent::Resize { .. } => {}
        }
    }
    backend.exit();
}

struct Harness {
    _dir: tempfile::TempDir,
    sandbox: SandboxDir,
}

impl Harness {
    /// Runs a supervisor for `command` to its end, letting `during` act on its socket meanwhile.
    fn run(
        command: &[&str],
        tweak: impl FnOnce(&mut SandboxConfig),
        during: impl FnOnce(&SandboxDir) + Send + 'static,
    ) -> (Harness, RunRecord) {
        Self::run_with(command, true, tweak, during)
    }

    fn run_with(
        command: &[&str],
        ready: bool,
        tweak: impl FnOnce(&mut SandboxConfig),
        during: impl FnOnce(&SandboxDir) + Send + 'static,
    ) -> (Harness, RunRecord) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = SandboxDir::new(dir.path());
        let mut config = SandboxConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            metrics_interval_ms: Some(100),
            ..SandboxConfig::named("fake")
        };
        tweak(&mut config);
        let supervisor_config = SupervisorConfig {
            sandbox_id: "0123456789abcdef".into(),
            run_id: "run-1".into(),
            config,
            sandbox_dir: dir.path().to_owned(),
            default_rootfs: dir.path().join("lower"),
            agent_binary: dir.path().join("agent"),
            wait_for_attach: false,
            main_mode: ExecMode::Buffered,
            log_level: "debug".into(),
            id_map: None,
            output_log_max_bytes: crate::logs::DEFAULT_OUTPUT_LOG_MAX_BYTES,
            claim_booted: false,
        };
        let record = RunRecord {
            run_id: "run-1".into(),
            supervisor_pid: std::process::id() as i32,
            supervisor_start_ticks: None,
            init_pid: Some(1),
            workload_pid: None,
            phase: RunPhase::Starting,
            started_at_ms: 0,
            ended_at_ms: None,
            exit_code: None,
            signal: None,
            reason: None,
            error: None,
            oom_kills: None,
            boot: Default::default(),
        };
        let listener = UnixListener::bind(sandbox.socket()).unwrap();
        let (host_end, agent_end) = UnixStream::pair().unwrap();
        let backend = Arc::new(FakeBackend::default());
        let agent_backend = backend.clone();
        std::thread::spawn(move || fake_agent(agent_end, agent_backend, ready));
        let socket_dir = sandbox.clone();
        std::thread::spawn(move || during(&socket_dir));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let code = runtime.block_on(supervise(
            supervisor_config,
            record,
            listener,
            host_end,
            backend,
        ));
        assert_eq!(code, 0);
        let record = RunRecord::read(&sandbox.run_record()).unwrap();
        assert_eq!(record.phase, RunPhase::Exited);
        assert!(record.ended_at_ms.is_some());
        assert!(!sandbox.socket().exists(), "the socket is removed at exit");
        (Harness { _dir: dir, sandbox }, record)
    }
}

fn control(sandbox: &SandboxDir, control: Control) -> Option<ClientEvent> {
    // Act on a running workload: wait for the record to say so.
    for _ in 0..500 {
        if RunRecord::read(&sandbox.run_record()).is_ok_and(|r| r.phase == RunPhase::Running) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..200 {
        if let Ok(mut stream) = UnixStream::connect(sandbox.socket()) {
            write_frame(&mut stream, &ClientRequest::Control(control.clone())).unwrap();
            return read_frame(&mut stream).ok().flatten();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("supervisor socket never answered");
}

fn nothing(_: &SandboxDir) {}

#[test]
fn workload_exit_codes_become_completed_or_failed() {
    let (h, record) = Harness::run(&["exit", "0"], |_| {}, nothing);
    assert_eq!(
        (record.reason, record.exit_code),
        (Some(TerminationReason::Completed), Some(0))
    );
    assert_eq!(record.workload_pid, Some(7));
    let log = std::fs::read_to_string(h.sandbox.output_log()).unwrap();
    assert!(
        log.contains("\"source\":\"main\"") && log.contains("hello"),
        "{log}"
    );

    let (_, record) = Harness::run(&["exit", "3"], |_| {}, nothing);
    assert_eq!(
        (record.reason, record.exit_code),
        (Some(TerminationReason::Failed), Some(3))
    );
}

#[test]
fn a_workload_that_cannot_start_fails_with_the_shells_code() {
    let (_, record) = Harness::run(&["missing"], |_| {}, nothing);
    assert_eq!(record.reason, Some(TerminationReason::Failed));
    assert_eq!(record.exit_code, Some(127));
    assert_eq!(record.workload_pid, None);
    assert_eq!(record.error.as_deref(), Some("missing: not found"));
}

#[test]
fn stop_drains_and_records_shutdown_requested() {
    let (_, record) = Harness::run(
        &["hang"],
        |_| {},
        |dir| {
            assert_eq!(
                control(dir, Control::Stop { timeout_ms: 5_000 }),
                Some(ClientEvent::Done)
            );
        },
    );
    assert_eq!(record.reason, Some(TerminationReason::ShutdownRequested));
    assert_eq!(record.signal, Some(15));
}

#[test]
fn sigkill_takes_the_sandbox_down_through_the_backend() {
    let (_, record) = Harness::run(
        &["hang"],
        |_| {},
        |dir| {
            std::thread::sleep(Duration::from_millis(100));
            control(
                dir,
                Control::Kill {
                    signal: libc::SIGKILL,
                },
            );
        },
    );
    assert_eq!(
        (record.reason, record.signal),
        (Some(TerminationReason::Signal), Some(libc::SIGKILL))
    );
}

#[test]
fn max_duration_ends_the_run_with_its_reason() {
    let (_, record) = Harness::run(&["hang"], |c| c.max_duration_secs = Some(1), nothing);
    assert_eq!(record.reason, Some(TerminationReason::MaxDurationExceeded));
}

#[test]
fn an_agent_that_vanishes_is_an_internal_error() {
    let (_, record) = Harness::run(&["die"], |_| {}, nothing);
    assert_eq!(record.reason, Some(TerminationReason::InternalError));
    assert!(record.error.unwrap().contains("exited"));
}

/// Opens a watch connection once the workload runs.
fn watch(sandbox: &SandboxDir) -> UnixStream {
    control(sandbox, Control::Ping);
    let mut stream = UnixStream::connect(sandbox.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write_frame(&mut stream, &ClientRequest::Watch).unwrap();
    stream
}

/// `(number, time)` of the samples read on a watch connection until one numbered `through`.
fn samples_until(stream: &mut UnixStream, through: u64) -> Vec<(u64, u64)> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(seq, _)| *seq < through) {
        match read_frame::<_, ClientEvent>(stream) {
            Ok(Some(ClientEvent::SampleBatch { first_seq, samples })) => {
                seen.extend((first_seq..).zip(samples.iter().map(|s| s.timestamp_ms)))
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    seen
}

#[test]
fn samples_are_sent_again_until_acknowledged() {
    let (observed_tx, observed) = std::sync::mpsc::channel();
    Harness::run(
        &["hang"],
        |_| {},
        move |dir| {
            // A watcher that goes away without acknowledging anything.
            let first = samples_until(&mut watch(dir), 3);
            // The next one is sent everything again, and acknowledges through 4.
            let mut second_stream = watch(dir);
            let second = samples_until(&mut second_stream, 6);
            let ack = ClientRequest::SamplesStored { through_seq: 4 };
            write_frame(&mut second_stream, &ack).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(second_stream);
            let third = samples_until(&mut watch(dir), 7);
            observed_tx.send((first, second, third)).unwrap();
            control(dir, Control::Stop { timeout_ms: 1_000 });
        },
    );
    let (first, second, third) = observed.recv().unwrap();
    let numbers = |seen: &[(u64, u64)]| seen.iter().map(|(seq, _)| *seq).collect::<Vec<_>>();
    assert_eq!(numbers(&first), [1, 2, 3]);
    assert_eq!(numbers(&second), [1, 2, 3, 4, 5, 6]);
    assert_eq!(&second[..3], &first[..], "the same samples, sent again");
    assert!(second.windows(2).all(|w| w[0].1 < w[1].1), "{second:?}");
    assert_eq!(
        numbers(&third),
        [5, 6, 7],
        "acknowledged samples are not sent again"
    );
    assert_eq!(&third[..2], &second[4..]);
}
