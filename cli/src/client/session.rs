//! Client side of exec and attach sessions: the upgraded connection, stdin forwarding, output,
//! signals, terminal raw mode and window resizes.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use msb_protocol::framing::{read_frame, write_frame};
use msb_protocol::session::{ClientEvent, ClientRequest};
use msb_protocol::{Stream, MAX_CHUNK_BYTES};
use tokio::sync::mpsc;

use super::{failure, segment, Client};
use crate::api::{SANDBOX_EPHEMERAL_HEADER, SANDBOX_NAME_HEADER, SESSION_UPGRADE};

/// How the local terminal and streams take part in a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Send our stdin to the process (then EOF when ours ends).
    pub forward_stdin: bool,
    /// The remote side is a PTY: put our terminal in raw mode and follow its size.
    pub pty: bool,
    /// Hold output until the process ends, then print stdout and stderr (buffered exec).
    pub buffer_output: bool,
}

/// Sends one request asking for `Upgrade: msb-session` and returns the 101 answer's headers
/// and the upgraded connection; any other answer is msbd's error.
async fn upgrade(
    client: &Client,
    method: Method,
    uri: &str,
    json: Option<Vec<u8>>,
) -> Result<(hyper::HeaderMap, TokioIo<hyper::upgrade::Upgraded>)> {
    let stream = client.connect().await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection.with_upgrades());
    let mut request = super::with_trace_context(Request::builder())
        .method(method)
        .uri(uri)
        .header("host", "msbd")
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, SESSION_UPGRADE);
    if json.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(json.unwrap_or_default())))?;
    let response = sender
        .send_request(request)
        .await
        .context("talking to msbd")?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        return Err(failure(status, &bytes).into());
    }
    let headers = response.headers().clone();
    let upgraded = hyper::upgrade::on(response)
        .await
        .context("upgrading the session")?;
    Ok((headers, TokioIo::new(upgraded)))
}

/// Opens an upgraded session connection to sandbox `name`.
pub async fn open(client: &Client, name: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
    let uri = format!("/v1/sandboxes/{}/session", segment(name));
    Ok(upgrade(client, Method::GET, &uri, None).await?.1)
}

/// What an attached create answers with besides the session: the sandbox's name and whether
/// it is ephemeral.
#[derive(Debug, Clone)]
pub struct Created {
    pub name: String,
    pub ephemeral: bool,
}

/// Creates and starts a sandbox and opens its session in one request (`POST /v1/sandboxes`
/// with `Upgrade: msb-session`; `request.attach` must be set).
pub async fn create_attached(
    client: &Client,
    request: &crate::api::CreateSandboxRequest,
) -> Result<(Created, TokioIo<hyper::upgrade::Upgraded>)> {
    let body = serde_json::to_vec(request).expect("request serialises");
    let (headers, io) = upgrade(client, Method::POST, "/v1/sandboxes", Some(body)).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let created = Created {
        name: header(SANDBOX_NAME_HEADER)
            .context("msbd named no sandbox in its answer")?
            .to_owned(),
        ephemeral: header(SANDBOX_EPHEMERAL_HEADER) == Some("true"),
    };
    Ok((created, io))
}

/// Restores the terminal's settings when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = nix::sys::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// The local terminal's size as (rows, cols), if stdout or stdin is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    terminal_size::terminal_size_of(std::io::stdout())
        .or_else(|| terminal_size::terminal_size_of(std::io::stdin()))
        .map(|(terminal_size::Width(cols), terminal_size::Height(rows))| (rows, cols))
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEnd {
    /// The exit code to give the user (the process's, or the shell's for a failed start).
    pub code: i32,
    /// The process never started (command not found, not executable, bad workdir).
    pub start_failed: bool,
}

/// Runs one session to its end.
pub async fn run(
    io: TokioIo<hyper::upgrade::Upgraded>,
    first: ClientRequest,
    options: SessionOptions,
) -> Result<SessionEnd> {
    let (mut reader, mut writer) = tokio::io::split(io);
    let (outgoing_tx, mut outgoing) = mpsc::unbounded_channel::<ClientRequest>();
    write_frame(&mut writer, &first).await?;
    tokio::spawn(async move {
        while let Some(request) = outgoing.recv().await {
            if write_frame(&mut writer, &request).await.is_err() {
                return;
            }
        }
    });

    let _raw = if options.pty { RawMode::enter() } else { None };
    if options.forward_stdin {
        let tx = outgoing_tx.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; MAX_CHUNK_BYTES];
            loop {
                match stdin.read(&mut buffer) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ClientRequest::StdinEof);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(ClientRequest::Stdin(buffer[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        let _ = outgoing_tx.send(ClientRequest::StdinEof);
    }
    spawn_signal_forwarding(outgoing_tx.clone(), options.pty)?;

    let (mut stdout_buffer, mut stderr_buffer) = (Vec::new(), Vec::new());
    loop {
        let event = match read_frame::<_, ClientEvent>(&mut reader).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("the session ended before the process exited (the sandbox stopped?)"),
            Err(e) => return Err(e).context("reading the session"),
        };
        match event {
            ClientEvent::Started { .. }
            | ClientEvent::Done
            | ClientEvent::RecordChanged
            | ClientEvent::Samples(_)
            | ClientEvent::SampleBatch { .. } => {}
            ClientEvent::Output { stream, data } => {
                if options.buffer_output {
                    match stream {
                        Stream::Stdout => stdout_buffer.extend_from_slice(&data),
                        Stream::Stderr => stderr_buffer.extend_from_slice(&data),
                    }
                } else {
                    write_out(stream, &data);
                }
            }
            ClientEvent::Exited(status) => {
                write_out(Stream::Stdout, &stdout_buffer);
                write_out(Stream::Stderr, &stderr_buffer);
                return Ok(SessionEnd {
                    code: status.shell_code(),
                    start_failed: false,
                });
            }
            ClientEvent::ExecFailed { kind, message } => {
                drop(_raw);
                eprintln!("error: {message}");
                return Ok(SessionEnd {
                    code: kind.shell_code(),
                    start_failed: true,
                });
            }
            ClientEvent::Error(message) => bail!("{message}"),
        }
    }
}

fn write_out(stream: Stream, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data).and_then(|_| out.flush())
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data).and_then(|_| err.flush())
        }
    };
}

/// Without a PTY, Ctrl-C and friends go to the remote process; with one, the terminal sends
/// them as bytes. Window size changes follow the PTY.
fn spawn_signal_forwarding(tx: mpsc::UnboundedSender<ClientRequest>, pty: bool) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    if pty {
        let mut winch = signal(SignalKind::window_change())?;
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = terminal_size() {
                    if tx.send(ClientRequest::Resize { rows, cols }).is_err() {
                        return;
                    }
                }
            }
        });
        return Ok(());
    }
    for (kind, number) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ] {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(ClientRequest::Signal(number)).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}
