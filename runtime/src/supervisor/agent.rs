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
            Ok(Some(message)) => route(&shared, message),
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

fn route(shared: &Shared, message: FromAgent) {
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
            let event = ClientEvent::ExecFailed { kind, message };
            shared
                .main_followers
                .lock()
                .unwrap()
                .retain(|f| f.send(event.clone()).is_ok());
            shared.main_started.send_replace(Some(Err(outcome.clone())));
            shared.main_outcome.send_replace(Some(outcome));
        }
        FromAgent::Output {
            session: MAIN_SESSION,
            stream,
            data,
        } => {
            shared.log_output(MAIN_SESSION, stream, &data);
            let event = ClientEvent::Output { stream, data };
            shared
                .main_followers
                .lock()
                .unwrap()
                .retain(|f| f.send(event.clone()).is_ok());
        }
        FromAgent::Exited {
            session: MAIN_SESSION,
            status,
        } => {
            shared
                .main_followers
                .lock()
                .unwrap()
                .retain(|f| f.send(ClientEvent::Exited(status)).is_ok());
            shared
                .main_outcome
                .send_replace(Some(MainOutcome::Exited(status)));
        }
        FromAgent::Started { session, pid } => {
            shared.touch_activity();
            to_session(shared, session, ClientEvent::Started { pid }, false);
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
            );
        }
        FromAgent::Output {
            session,
            stream,
            data,
        } => {
            shared.touch_activity();
            shared.log_output(session, stream, &data);
            to_session(shared, session, ClientEvent::Output { stream, data }, false);
        }
        FromAgent::Exited { session, status } => {
            shared.touch_activity();
            to_session(shared, session, ClientEvent::Exited(status), true);
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

fn to_session(shared: &Shared, session: u32, event: ClientEvent, last: bool) {
    let mut sessions = shared.sessions.lock().unwrap();
    if let Some(client) = sessions.get(&session) {
        // A client that went away just misses the rest.
        let _ = client.send(event);
    }
    if last {
        sessions.remove(&session);
    }
}
