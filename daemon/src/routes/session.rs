//! `GET /v1/sandboxes/{name}/session` with `Upgrade: msb-session`: an exec or attach session.
//! (With `Upgrade: msb-session-json`, the same session in JSON lines: `session_json.rs`.)
//!
//! After the 101 response the connection carries `msb_protocol::session` frames. msbd checks
//! that the client's first frame opens an `Attach` or `Exec` session (lifecycle control goes
//! through the REST endpoints, under the sandbox's lock), then relays bytes both ways to the
//! supervisor.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use msb_protocol::session::{ClientEvent, ClientRequest};
use msb_runtime::framing::{read_frame, write_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::Daemon;
use msb_api::exec::SESSION_JSON_UPGRADE;
use msb_api::SESSION_UPGRADE;

pub async fn session(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let json = super::session_json::wants_json_session(request.headers());
    if !json && !wants_session(request.headers()) {
        return Err(ApiError::Invalid(format!(
            "this endpoint needs `Upgrade: {SESSION_JSON_UPGRADE}` or `Upgrade: {SESSION_UPGRADE}`"
        )));
    }
    let supervisor = crate::service::exec::open_session(&daemon, &name).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    if json {
        super::session_json::spawn_relay(daemon, &name, upgrade, supervisor);
        return Ok(super::session_json::switching_protocols()
            .body(Body::empty())
            .expect("static response parts"));
    }
    spawn_relay(daemon, &name, upgrade, supervisor);
    Ok(switching_protocols()
        .body(Body::empty())
        .expect("static response parts"))
}

/// Whether a request asks for `Upgrade: msb-session`.
pub(crate) fn wants_session(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SESSION_UPGRADE))
}

/// The 101 answer's parts, to which a caller may add headers.
pub(crate) fn switching_protocols() -> axum::http::response::Builder {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, SESSION_UPGRADE)
}

/// Once the connection is upgraded, relays the session between it and `supervisor` (a
/// connection to the sandbox's supervisor socket).
pub(crate) fn spawn_relay(
    daemon: Arc<Daemon>,
    name: &str,
    upgrade: hyper::upgrade::OnUpgrade,
    supervisor: UnixStream,
) {
    let received = std::time::Instant::now();
    // The session's span lasts until the session ends, past this request's.
    let span = tracing::info_span!(
        "exec.session",
        sandbox.name = %name,
        process.pid = tracing::field::Empty,
        msb.session.kind = tracing::field::Empty,
    );
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => relay(&daemon, TokioIo::new(upgraded), supervisor, received).await,
                Err(e) => tracing::debug!("session upgrade failed: {e}"),
            }
        }
        .instrument(span),
    );
}

async fn relay(
    daemon: &Daemon,
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    mut supervisor: UnixStream,
    received: std::time::Instant,
) {
    let first = match read_frame::<_, ClientRequest>(&mut client).await {
        Ok(Some(request @ (ClientRequest::Attach | ClientRequest::Exec(_)))) => request,
        Ok(Some(other)) => {
            let message = format!("a session opens with Attach or Exec, not {other:?}");
            let _ = write_frame(&mut client, &ClientEvent::Error(message)).await;
            return;
        }
        Ok(None) => return,
        Err(e) => {
            let _ = write_frame(&mut client, &ClientEvent::Error(format!("bad frame: {e}"))).await;
            return;
        }
    };
    if write_frame(&mut supervisor, &first).await.is_err() {
        let _ = write_frame(
            &mut client,
            &ClientEvent::Error("the supervisor went away".into()),
        )
        .await;
        return;
    }
    // The two directions are independent: the supervisor may close its end (the process
    // ended) while the client is still sending, and what the supervisor sent must still reach
    // the client in full. So no copy_bidirectional, which abandons both on the first error.
    let exec = matches!(first, ClientRequest::Exec(_));
    tracing::Span::current().record("msb.session.kind", if exec { "exec" } else { "attach" });
    // The supervisor's first answer says whether the process started: the exec latency.
    if exec {
        match read_frame::<_, ClientEvent>(&mut supervisor).await {
            Ok(Some(event)) => {
                if let ClientEvent::Started { pid } = &event {
                    daemon.telemetry.exec_latency.observe(received.elapsed());
                    tracing::Span::current().record("process.pid", pid);
                }
                if write_frame(&mut client, &event).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut supervisor_read, mut supervisor_write) = supervisor.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut supervisor_write).await;
        let _ = supervisor_write.shutdown().await;
    });
    let _ = tokio::io::copy(&mut supervisor_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    upstream.abort();
}
