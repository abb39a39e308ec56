//! Sessions on the supervisor's socket: attach, exec, control and watch.

use std::sync::Arc;

use msb_protocol::agent::{SessionId, ToAgent, MAIN_SESSION};
use msb_protocol::session::{ClientEvent, ClientRequest, Control};
use msb_protocol::{ExecSpec, FrameError};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::state::{Shared, StopRequest, CLIENT_QUEUE_FRAMES};
use crate::framing::{read_frame, write_frame};
use crate::lifecycle::TerminationReason;
use crate::run_record::RunPhase;

pub async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(shared.clone(), stream));
            }
            Err(e) => {
                tracing::warn!("accept on supervisor socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(shared: Arc<Shared>, stream: UnixStream) {
    let (mut reader, mut writer) = stream.into_split();
    let guard = shared.connection_guard();
    let first = match read_frame::<_, ClientRequest>(&mut reader).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            let _ = write_frame(
                &mut writer,
                &ClientEvent::Error(format!("bad request: {e}")),
            )
            .await;
            return;
        }
    };
    let (events_tx, mut events_rx) = mpsc::channel(CLIENT_QUEUE_FRAMES);
    let session = match first {
        ClientRequest::Attach => {
            shared.main_followers.lock().unwrap().push(events_tx);
            shared.first_attach.notify_one();
            MAIN_SESSION
        }
        ClientRequest::Exec(spec) => {
            if shared.draining.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = write_frame(
                    &mut writer,
                    &ClientEvent::Error(
                        "sandbox is draining: it accepts no new exec sessions".into(),
                    ),
                )
                .await;
                return;
            }
            if shared.phase() != RunPhase::Running {
                let _ = write_frame(
                    &mut writer,
                    &ClientEvent::Error("sandbox is not running".into()),
                )
                .await;
                return;
            }
            let id = shared.next_session_id();
            shared.sessions.lock().unwrap().insert(id, events_tx);
            let spec = with_sandbox_env(&shared, spec);
            let _ = shared.to_agent.send(ToAgent::Exec { session: id, spec });
            id
        }
        ClientRequest::Control(control) => {
            let reply = control_request(&shared, control).await;
            let _ = write_frame(&mut writer, &reply).await;
            return;
        }
        ClientRequest::Watch => {
            drop(guard);
            // msbd's watch is not bounded here: it takes in every frame as it comes (samples
            // once per interval, record changes), and the outbox bounds what it is resent.
            let (events_tx, mut events_rx) = mpsc::unbounded_channel();
            let _ = events_tx.send(ClientEvent::RecordChanged);
            shared.add_watcher(events_tx);
            // msbd acknowledges stored samples on the same connection. Its end of input does
            // not end the watch: a dead msbd shows as a failed write.
            let acknowledgements = tokio::spawn(read_acknowledgements(shared.clone(), reader));
            while let Some(event) = events_rx.recv().await {
                if write_frame(&mut writer, &event).await.is_err() {
                    break;
                }
            }
            acknowledgements.abort();
            return;
        }
        other => {
            let message =
                format!("a session must open with Attach, Exec, Control or Watch, not {other:?}");
            let _ = write_frame(&mut writer, &ClientEvent::Error(message)).await;
            return;
        }
    };

    // Client -> agent: input, resize and signals for this session only.
    let input_shared = shared.clone();
    let mut input = tokio::spawn(async move {
        if session == MAIN_SESSION {
            // Input for the workload waits until it runs; the client's frames queue meanwhile.
            let mut started = input_shared.main_started.subscribe();
            if started.wait_for(Option::is_some).await.is_err() {
                return;
            }
        }
        loop {
            let message = match read_frame::<_, ClientRequest>(&mut reader).await {
                Ok(Some(ClientRequest::Stdin(data))) => {
                    if session != MAIN_SESSION {
                        input_shared.touch_activity();
                    }
                    ToAgent::Stdin { session, data }
                }
                Ok(Some(ClientRequest::StdinEof)) => ToAgent::StdinEof { session },
                Ok(Some(ClientRequest::Resize { rows, cols })) => ToAgent::Resize {
                    session,
                    rows,
                    cols,
                },
                Ok(Some(ClientRequest::Signal(signal))) => ToAgent::Signal { session, signal },
                Ok(Some(other)) => {
                    tracing::warn!("ignoring {other:?} inside an open session");
                    continue;
                }
                Ok(None) | Err(_) => return,
            };
            if input_shared.to_agent.send(message).is_err() {
                return;
            }
        }
    });

    // Agent -> client, until the session's process has exited.
    let mut ended = false;
    loop {
        tokio::select! {
            event = events_rx.recv() => {
                let Some(event) = event else { break };
                let last = matches!(event, ClientEvent::Exited(_) | ClientEvent::ExecFailed { .. });
                if write_frame(&mut writer, &event).await.is_err() {
                    break;
                }
                if last {
                    ended = true;
                    break;
                }
            }
            _ = &mut input => {
                // The client hung up before its process ended.
                break;
            }
        }
    }
    input.abort();
    let _ = writer.shutdown().await;
    if !ended && session != MAIN_SESSION {
        forget_session(&shared, session);
    }
}

/// Reads msbd's `SamplesStored` on a watch connection until it hangs up. Frames this supervisor
/// cannot decode (from a newer msbd) are skipped.
async fn read_acknowledgements(shared: Arc<Shared>, mut reader: OwnedReadHalf) {
    loop {
        match read_frame::<_, ClientRequest>(&mut reader).await {
            Ok(Some(ClientRequest::SamplesStored { through_seq })) => {
                shared.samples_stored(through_seq)
            }
            Ok(Some(other)) => tracing::warn!("ignoring {other:?} on a watch connection"),
            Err(FrameError::Malformed(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// Exec sessions see the sandbox's environment (`-e` at creation), overridden by their own,
/// and start in the sandbox's working directory unless they name one.
fn with_sandbox_env(shared: &Shared, mut spec: ExecSpec) -> ExecSpec {
    if spec.workdir.is_none() {
        spec.workdir.clone_from(&shared.config.config.workdir);
    }
    let own: Vec<(String, String)> = std::mem::take(&mut spec.env);
    let mut env: Vec<(String, String)> = shared
        .config
        .config
        .env
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    env.extend(own);
    spec.env = env;
    spec
}

/// An exec client that disconnects takes its process with it.
fn forget_session(shared: &Shared, session: SessionId) {
    if shared.sessions.lock().unwrap().remove(&session).is_some() {
        let _ = shared.to_agent.send(ToAgent::Signal {
            session,
            signal: libc::SIGKILL,
        });
    }
}

async fn control_request(shared: &Shared, control: Control) -> ClientEvent {
    match control {
        Control::Ping => ClientEvent::Done,
        Control::Stop { timeout_ms } => {
            shared.request_stop(StopRequest {
                reason: TerminationReason::ShutdownRequested,
                grace_ms: timeout_ms,
            });
            let mut finished = shared.finished.subscribe();
            let _ = finished.wait_for(|done| *done).await;
            ClientEvent::Done
        }
        Control::Kill { signal } if signal == libc::SIGKILL => {
            shared.request_stop(StopRequest {
                reason: TerminationReason::Signal,
                grace_ms: 0,
            });
            ClientEvent::Done
        }
        Control::Drain {
            timeout_ms,
            grace_ms,
        } => {
            drain(shared, timeout_ms, grace_ms).await;
            ClientEvent::Done
        }
        Control::Kill { signal } => {
            if shared.main_outcome.borrow().is_some() {
                return ClientEvent::Error("the workload has already exited".into());
            }
            match shared.to_agent.send(ToAgent::Signal {
                session: MAIN_SESSION,
                signal,
            }) {
                Ok(()) => ClientEvent::Done,
                Err(_) => ClientEvent::Error("the agent channel is closed".into()),
            }
        }
    }
}

/// Refuses new exec sessions (the run record says `Draining`, so msbd refuses them too), waits
/// for the running ones to end or `timeout_ms`, then stops the sandbox with `grace_ms`.
async fn drain(shared: &Shared, timeout_ms: Option<u64>, grace_ms: u64) {
    use std::time::{Duration, Instant};
    shared
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if shared.phase() == RunPhase::Running {
        shared.update_record(|r| r.phase = RunPhase::Draining);
    }
    let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut stop = shared.stop.subscribe();
    let mut finished = shared.finished.subscribe();
    loop {
        let idle = shared.sessions.lock().unwrap().is_empty();
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        // Another stop, or the workload's own end, came first.
        let ending = stop.borrow().is_some() || *finished.borrow();
        if idle || late || ending {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => {}
            _ = finished.changed() => {}
        }
    }
    shared.request_stop(StopRequest {
        reason: TerminationReason::DrainRequested,
        grace_ms,
    });
    let _ = finished.wait_for(|done| *done).await;
}
