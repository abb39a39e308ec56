//! The agent channel: one task reads `FromAgent` frames and routes them, one writes `ToAgent`.

use std::sync::Arc;
use std::time::Instant;

use msb_protocol::agent::{FromAgent, ToAgent, MAIN_SESSION};
use msb_protocol::session::ClientEvent;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::state::{MainOutcome, Shared};
use crate::framing::{read_frame, write_frame};

/// Writes queued messages in order until the queue closes or the channel breaks.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<ToAgent>,
) {
    while let Some(message) = queue.recv().await {
        if let Err(e) = write_frame(&mut writer, &message).await {
            tracing::warn!("agent channel write failed: {e}");
            return;
        }
    }
}

/// Reads and routes agent messages until the channel ends.
pub async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut reader: R) {
    loop {
        match read_frame::<_, FromAgent>(&mut reader).await {
            // Waits while a client's queue is full: backpressure down to the workload.
            Ok(Some(message)) => route(&shared, message).await,
            Ok(None) => {
                tracing::info!("agent channel closed");
                return;
            }
            Err(e) => {
                tracing::warn!("agent channel broken: {e}");
                return;
            }
        }
    }
}

async fn route(shared: &Shared, message: FromAgent) {
    match message {
        FromAgent::Ready { version } => {
            tracing::info!("agent ready (protocol {version})");
            shared.agent_ready.notify_one();
        }
        FromAgent::Started {
            session: MAIN_SESSION,
            pid,
        } => {
            shared.main_started.send_replace(Some(Ok(pid)));
        }
        FromAgent::ExecFailed {
            session: MAIN_SESSION,
            kind,
            message,
        } => {
            let outcome = MainOutcome::Failed {
                exit_code: kind.shell_code(),
                message: message.clone(),
            };
            to_followers(shared, ClientEvent::ExecFailed { kind, message }).await;
            shared.main_started.send_replace(Some(Err(outcome.clone())));
            shared.main_outcome.send_replace(Some(outcome));
        }
        FromAgent::Output {
            session: MAIN_SESSION,
            stream,
            data,
        } => {
            shared.log_output(MAIN_SESSION, stream, &data);
            to_followers(shared, ClientEvent::Output { stream, data }).await;
        }
        FromAgent::Exited {
            session: MAIN_SESSION,
            status,
        } => {
            to_followers(shared, ClientEvent::Exited(status)).await;
            shared
                .main_outcome
                .send_replace(Some(MainOutcome::Exited(status)));
        }
        FromAgent::Started { session, pid } => {
            shared.touch_activity();
            to_session(shared, session, ClientEvent::Started { pid }, false).await;
        }
        FromAgent::ExecFailed {
            session,
            kind,
            message,
        } => {
            to_session(
                shared,
                session,
                ClientEvent::ExecFailed { kind, message },
                true,
            )
            .await;
        }
        FromAgent::Output {
            session,
            stream,
            data,
        } => {
            shared.touch_activity();
            shared.log_output(session, stream, &data);
            to_session(shared, session, ClientEvent::Output { stream, data }, false).await;
        }
        FromAgent::Exited { session, status } => {
            shared.touch_activity();
            to_session(shared, session, ClientEvent::Exited(status), true).await;
        }
        FromAgent::Heartbeat(beat) => {
            let mut last = shared.last_heartbeat.lock().unwrap();
            let active = beat.active_sessions > 0
                || last
                    .as_ref()
                    .is_none_or(|(previous, _)| previous.activity_seq != beat.activity_seq);
            *last = Some((beat, Instant::now()));
            drop(last);
            if active {
                shared.touch_activity();
            }
        }
    }
}

/// Sends `event` to every attached follower of the main workload, waiting for room in each
/// queue; a follower that went away is forgotten.
async fn to_followers(shared: &Shared, event: ClientEvent) {
    let followers: Vec<mpsc::Sender<ClientEvent>> = shared.main_followers.lock().unwrap().clone();
    for follower in followers {
        if follower.send(event.clone()).await.is_err() {
            shared
                .main_followers
                .lock()
                .unwrap()
                .retain(|f| !f.same_channel(&follower));
        }
    }
}

/// Sends `event` to an exec session's client, waiting for room in its queue; `last` forgets
/// the session afterwards.
async fn to_session(shared: &Shared, session: u32, event: ClientEvent, last: bool) {
    let client = shared.sessions.lock().unwrap().get(&session).cloned();
    if let Some(client) = client {
        // A client that went away just misses the rest.
        let _ = client.send(event).await;
    }
    if last {
        shared.sessions.lock().unwrap().remove(&session);
    }
}
