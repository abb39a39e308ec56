//! The JSON session (`Upgrade: msb-session-json`): the exec/attach session of `session.rs` for
//! clients that speak JSON only. The client sends newline-delimited `SessionRequest`s and gets
//! `SessionEvent`s (`msb_api::exec`); msbd translates each line to and from the supervisor's
//! framed protocol (`msb_protocol::session`), decoding and encoding the base64 of stdin and
//! output on the way. One event per line, written as it comes: output is not held back.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use msb_api::exec::{
    ExecFailureKind, OutputStream, SessionEvent, SessionRequest, SESSION_JSON_UPGRADE,
};
use msb_protocol::session::{ClientEvent, ClientRequest};
use msb_protocol::{ExecErrorKind, ExecMode, ExecSpec, Stream, MAX_CHUNK_BYTES};
use msb_runtime::framing::{read_frame, write_frame};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::state::Daemon;

/// The longest line a client may send: a stdin chunk of a few MiB in base64, with room.
const MAX_LINE_BYTES: usize = 8 << 20;
/// Events queued for the client's writer: a client that reads slowly holds the relay (and so
/// the supervisor and the process) rather than memory here.
const QUEUE_EVENTS: usize = 64;

/// Standard base64, padded when encoding; decoding takes what the document's pattern takes
/// (unused trailing bits set, padding or not), as other decoders do.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Whether a request asks for `Upgrade: msb-session-json`.
pub(crate) fn wants_json_session(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SESSION_JSON_UPGRADE))
}

pub(crate) fn switching_protocols() -> axum::http::response::Builder {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, SESSION_JSON_UPGRADE)
}

pub(crate) fn spawn_relay(
    daemon: Arc<Daemon>,
    name: &str,
    upgrade: hyper::upgrade::OnUpgrade,
    supervisor: UnixStream,
) {
    let received = std::time::Instant::now();
    let span = tracing::info_span!(
        "exec.session",
        sandbox.name = %name,
        process.pid = tracing::field::Empty,
        msb.session.kind = tracing::field::Empty,
        msb.session.framing = "json",
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

/// One line from the client; `Ok(None)` at the end of its input.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Option<SessionRequest>, String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("reading the session: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("a line is longer than {MAX_LINE_BYTES} bytes"));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| format!("bad session line: {e}"));
    }
}

/// A request inside an open session, as the supervisor's frames (stdin in chunks).
fn frames_of(request: SessionRequest) -> Result<Vec<ClientRequest>, String> {
    Ok(match request {
        SessionRequest::Stdin(text) => {
            let data = BASE64
                .decode(text)
                .map_err(|e| format!("stdin: not base64: {e}"))?;
            data.chunks(MAX_CHUNK_BYTES)
                .map(|c| ClientRequest::Stdin(c.to_vec()))
                .collect()
        }
        SessionRequest::StdinEof(_) => vec![ClientRequest::StdinEof],
        SessionRequest::Resize(size) => vec![ClientRequest::Resize {
            rows: size.rows,
            cols: size.cols,
        }],
        SessionRequest::Signal(signal) if (1..=64).contains(&signal) => {
            vec![ClientRequest::Signal(signal)]
        }
        SessionRequest::Signal(signal) => {
            return Err(format!("signal: {signal} is out of range 1-64"))
        }
        SessionRequest::Exec(_) | SessionRequest::Attach(_) => {
            return Err("the session is already open".into())
        }
    })
}

/// The supervisor's event as the client's, if the client is told of it.
fn event_of(event: ClientEvent) -> Option<SessionEvent> {
    Some(match event {
        ClientEvent::Started { pid } => SessionEvent::Started { pid },
        ClientEvent::ExecFailed { kind, message } => SessionEvent::ExecFailed {
            kind: match kind {
                ExecErrorKind::NotFound => ExecFailureKind::NotFound,
                ExecErrorKind::PermissionDenied => ExecFailureKind::PermissionDenied,
                ExecErrorKind::InvalidRequest => ExecFailureKind::InvalidRequest,
                ExecErrorKind::Other => ExecFailureKind::Other,
            },
            message,
        },
        ClientEvent::Output { stream, data } => SessionEvent::Output {
            stream: match stream {
                Stream::Stdout => OutputStream::Stdout,
                Stream::Stderr => OutputStream::Stderr,
            },
            data: BASE64.encode(data),
        },
        ClientEvent::Exited(status) => SessionEvent::Exited {
            code: status.code,
            signal: status.signal,
        },
        ClientEvent::Error(message) => SessionEvent::Error(message),
        ClientEvent::Done
        | ClientEvent::RecordChanged
        | ClientEvent::Samples(_)
        | ClientEvent::SampleBatch { .. } => return None,
    })
}

async fn write_event<W: AsyncWrite + Unpin>(writer: &mut W, event: &SessionEvent) -> bool {
    let mut line = serde_json::to_vec(event).expect("events serialise");
    line.push(b'\n');
    writer.write_all(&line).await.is_ok() && writer.flush().await.is_ok()
}

/// The session's first line as the supervisor's first frame.
fn opening(request: SessionRequest) -> Result<(ClientRequest, Option<bool>), String> {
    match request {
        SessionRequest::Exec(exec) => {
            exec.validate().map_err(|e| e.to_string())?;
            let mode = match (exec.pty, exec.stdin) {
                (Some(size), _) => ExecMode::Pty {
                    rows: size.rows,
                    cols: size.cols,
                },
                (None, true) => ExecMode::Stream,
                (None, false) => ExecMode::Buffered,
            };
            let close_stdin = exec.pty.is_some() && !exec.stdin;
            let spec = ExecSpec {
                argv: exec.argv,
                env: exec.env,
                workdir: exec.workdir,
                mode,
            };
            Ok((ClientRequest::Exec(spec), Some(close_stdin)))
        }
        SessionRequest::Attach(_) => Ok((ClientRequest::Attach, None)),
        other => Err(format!(
            "a session opens with `exec` or `attach`, not {other:?}"
        )),
    }
}

async fn relay(
    daemon: &Daemon,
    client: TokioIo<hyper::upgrade::Upgraded>,
    mut supervisor: UnixStream,
    received: std::time::Instant,
) {
    let (client_read, mut client_write) = tokio::io::split(client);
    let mut client_read = BufReader::new(client_read);
    let first = match read_request(&mut client_read).await {
        Ok(Some(first)) => opening(first),
        Ok(None) => return,
        Err(e) => Err(e),
    };
    let (first, close_stdin) = match first {
        Ok(first) => first,
        Err(message) => {
            write_event(&mut client_write, &SessionEvent::Error(message)).await;
            return;
        }
    };
    let exec = close_stdin.is_some();
    tracing::Span::current().record("msb.session.kind", if exec { "exec" } else { "attach" });
    if write_frame(&mut supervisor, &first).await.is_err() {
        let gone = SessionEvent::Error("the supervisor went away".into());
        write_event(&mut client_write, &gone).await;
        return;
    }
    if close_stdin == Some(true) {
        // A pty session without stdin: its terminal gets end of input at once.
        let _ = write_frame(&mut supervisor, &ClientRequest::StdinEof).await;
    }
    let (mut supervisor_read, mut supervisor_write) = supervisor.into_split();
    let (events, mut queued) = mpsc::channel::<SessionEvent>(QUEUE_EVENTS);
    // Client -> supervisor. A malformed line ends the session (the process with it).
    let errors = events.clone();
    let upstream = tokio::spawn(async move {
        loop {
            let request = match read_request(&mut client_read).await {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(message) => {
                    let _ = errors.send(SessionEvent::Error(message)).await;
                    break;
                }
            };
            let frames = match frames_of(request) {
                Ok(frames) => frames,
                Err(message) => {
                    let _ = errors.send(SessionEvent::Error(message)).await;
                    break;
                }
            };
            for frame in frames {
                if write_frame(&mut supervisor_write, &frame).await.is_err() {
                    return;
                }
            }
        }
        let _ = supervisor_write.shutdown().await;
    });
    // Supervisor -> client, through the queue the upstream's errors share.
    let downstream = tokio::spawn(async move {
        let mut first = exec;
        loop {
            let event = match read_frame::<_, ClientEvent>(&mut supervisor_read).await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    let ended = "the supervisor ended the session without an exit status";
                    let _ = events.send(SessionEvent::Error(ended.into())).await;
                    break;
                }
                Err(e) => {
                    let _ = events
                        .send(SessionEvent::Error(format!("the supervisor's frame: {e}")))
                        .await;
                    break;
                }
            };
            let Some(event) = event_of(event) else {
                continue;
            };
            if std::mem::take(&mut first) {
                if let SessionEvent::Started { pid } = &event {
                    tracing::Span::current().record("process.pid", pid);
                }
            }
            let last = matches!(
                event,
                SessionEvent::Exited { .. } | SessionEvent::ExecFailed { .. }
            );
            if events.send(event).await.is_err() || last {
                break;
            }
        }
    });
    let mut started = false;
    while let Some(event) = queued.recv().await {
        if !started && exec {
            started = true;
            if matches!(event, SessionEvent::Started { .. }) {
                daemon.telemetry.exec_latency.observe(received.elapsed());
            }
        }
        let last = matches!(
            event,
            SessionEvent::Exited { .. } | SessionEvent::ExecFailed { .. } | SessionEvent::Error(_)
        );
        if !write_event(&mut client_write, &event).await || last {
            break;
        }
    }
    let _ = client_write.shutdown().await;
    upstream.abort();
    downstream.abort();
}
