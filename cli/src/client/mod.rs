//! The Rust client of the msbd API, used by the CLI: requests over the unix socket, starting
//! msbd on demand, and upgraded exec/attach sessions ([`session`]).

pub mod session;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use msb_host::paths::MsbHome;
use msb_host::private::DirState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::ErrorBody;

/// An error msbd answered with; the CLI prints `error` and exits with `exit_code` if any.
#[derive(Debug, thiserror::Error)]
#[error("{}", body.error)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: ErrorBody,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub home: MsbHome,
    /// Set once this process has checked that the running msbd is the installed one.
    checked: std::sync::Arc<tokio::sync::OnceCell<()>>,
    /// Set when that check restarted msbd (connections made before are dead).
    restarted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Adds the caller's W3C trace context, taken from the `TRACEPARENT` and `TRACESTATE`
/// environment variables (OTel's environment carrier), so msbd's spans join the caller's trace.
/// A malformed value is not sent (msbd would ignore it anyway); `msb` warns once.
pub fn with_trace_context(
    mut request: hyper::http::request::Builder,
) -> hyper::http::request::Builder {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let Some(traceparent) = std::env::var("TRACEPARENT").ok().filter(|v| !v.is_empty()) else {
        return request;
    };
    let tracestate = std::env::var("TRACESTATE").ok().filter(|v| !v.is_empty());
    if !msb_logging::traceparent_is_valid(&traceparent) {
        WARNED.call_once(|| {
            eprintln!("msb: warning: TRACEPARENT={traceparent:?} is not a W3C traceparent; ignored")
        });
        return request;
    }
    request = request.header("traceparent", traceparent.trim());
    if let Some(state) = tracestate {
        request = request.header("tracestate", state);
    }
    request
}

pub use msb_host::process::executable_identity;

impl Client {
    pub fn new(home: MsbHome) -> Self {
        Self {
            home,
            checked: Default::default(),
            restarted: Default::default(),
        }
    }

    /// The pid msbd wrote in its pid file.
    fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.pid_file())
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// An msbd that was just killed keeps its socket open until its last thread is gone, and a
    /// connection made in that window is reset: wait that window out (bounded) so the socket
    /// refuses and a new msbd is started.
    async fn wait_out_a_dying_daemon(&self) {
        let Some(pid) = self.daemon_pid().map(|pid| pid as i32) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !msb_host::process::is_alive(pid, None)
            && !msb_host::process::has_exited_fully(pid)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Makes `MSB_HOME` private (0700), creating it if need be; an existing home that group or
    /// others could read is tightened, with a note on stderr (it holds `-e` values).
    pub fn secure_home(&self) -> Result<()> {
        let root = self.home.root();
        match msb_host::private::ensure_private_dir(root)
            .with_context(|| format!("creating {}", root.display()))?
        {
            DirState::Tightened { was } => eprintln!(
                "msb: {} was mode {was:o}, readable by other users; made it 0700",
                root.display()
            ),
            DirState::Foreign { mode, owner } => eprintln!(
                "msb: warning: {} is mode {mode:o} and belongs to uid {owner}; other users may read it",
                root.display()
            ),
            DirState::Created | DirState::Private => {}
        }
        Ok(())
    }

    /// Connects to the socket; a socket this user may not use is an error at once (starting
    /// another msbd for someone else's home would not help).
    async fn connect_socket(&self) -> Result<Option<UnixStream>> {
        match UnixStream::connect(self.home.socket()).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(anyhow!(
                "{}: {e}: MSB_HOME belongs to another user (set MSB_HOME to a home of your own)",
                self.home.socket().display()
            )),
            Err(_) => Ok(None),
        }
    }

    /// Connects to msbd, starting it first if it is not running. The first connection of this
    /// process also makes the home private, waits out a dying msbd and replaces a stale one;
    /// later ones just connect.
    pub async fn connect(&self) -> Result<UnixStream> {
        if self.checked.initialized() {
            if let Ok(stream) = UnixStream::connect(self.home.socket()).await {
                return Ok(stream);
            }
        } else {
            self.secure_home()?;
            self.wait_out_a_dying_daemon().await;
            if let Some(stream) = self.connect_socket().await? {
                self.checked
                    .get_or_try_init(|| self.replace_stale_daemon())
                    .await?;
                if !self.restarted.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(stream);
                }
                return UnixStream::connect(self.home.socket())
                    .await
                    .with_context(|| format!("connecting to {}", self.home.socket().display()));
            }
        }
        self.start_daemon().await?;
        let _ = self.checked.set(());
        UnixStream::connect(self.home.socket())
            .await
            .with_context(|| format!("connecting to {}", self.home.socket().display()))
    }

    /// msb was upgraded while an older msbd kept running: that msbd would start supervisors from
    /// the new binaries it does not match. Restart it (sandboxes survive; it reattaches).
    async fn replace_stale_daemon(&self) -> Result<()> {
        let Ok(installed) = msbd_path() else {
            return Ok(());
        };
        let Some(installed) = executable_identity(&installed) else {
            return Ok(());
        };
        // Cheapest first: the running msbd's executable as the kernel sees it (no request);
        // msbd's own answer when /proc does not tell (another user's process).
        let from_proc = self.daemon_pid().and_then(|pid| {
            executable_identity(std::path::Path::new(&format!("/proc/{pid}/exe")))
                .map(|identity| (pid, Some(identity)))
        });
        let (pid, running) = match from_proc {
            Some(found) => found,
            None => {
                let status: crate::api::ServerStatus =
                    self.call_raw(Method::GET, "/v1/server").await?;
                (status.pid, status.executable_dev.zip(status.executable_ino))
            }
        };
        if running.is_none() || running == Some(installed) {
            return Ok(());
        }
        eprintln!("msb: msbd (pid {pid}) runs an older build; restarting it");
        self.restarted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.send_raw(Method::POST, "/v1/server/shutdown").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !msb_host::process::has_exited_fully(pid as i32) {
            if Instant::now() > deadline {
                bail!("the old msbd (pid {pid}) did not stop within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.start_daemon().await
    }

    async fn send_raw(&self, method: Method, path: &str) -> Result<Response<Incoming>> {
        let stream = UnixStream::connect(self.home.socket()).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "msbd")
            .body(Full::new(Bytes::new()))?;
        Ok(sender.send_request(request).await?)
    }

    async fn call_raw<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let response = self.send_raw(method, path).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            // Such as msbd refusing another user (403).
            return Err(failure(status, &bytes).into());
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Connects only if msbd is already running.
    pub async fn connect_existing(&self) -> Option<UnixStream> {
        UnixStream::connect(self.home.socket()).await.ok()
    }

    /// Starts msbd for this home and waits until its socket answers.
    pub async fn start_daemon(&self) -> Result<()> {
        let msbd = msbd_path()?;
        self.secure_home()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut child = self.spawn_daemon(&msbd)?;
        loop {
            if UnixStream::connect(self.home.socket()).await.is_ok() {
                // Reap it in the background if it ever exits while we live.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    let log = std::fs::read_to_string(self.home.daemon_log()).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    bail!(
                        "msbd exited ({status}) before it was ready; last lines of {}:\n{}",
                        self.home.daemon_log().display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                // Exit 0: another msbd holds the lock. It is either starting (and will answer
                // soon) or on its way out (and will release the lock): try again.
                tokio::time::sleep(Duration::from_millis(50)).await;
                child = self.spawn_daemon(&msbd)?;
            }
            if Instant::now() > deadline {
                bail!(
                    "msbd did not answer on {} within 20 s",
                    self.home.socket().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn spawn_daemon(&self, msbd: &std::path::Path) -> Result<std::process::Child> {
        let log = msb_host::private::create_options()
            .append(true)
            .open(self.home.daemon_log())
            .with_context(|| format!("opening {}", self.home.daemon_log().display()))?;
        Command::new(msbd)
            .env("MSB_HOME", self.home.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", msbd.display()))
    }

    /// Sends one request and returns the raw response (body not yet read). A `GET` whose
    /// connection is lost before the answer (msbd killed or restarting under it, the connection
    /// reset) is sent once more on a new connection, which starts msbd again if need be.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        if method != Method::GET {
            return self.send_once(method, path, body).await;
        }
        match self.send_once(method.clone(), path, body.clone()).await {
            Err(e) if connection_lost(&e) => {
                self.wait_out_a_dying_daemon().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.send_once(method, path, body).await
            }
            answer => answer,
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talking to msbd")?;
        tokio::spawn(connection.with_upgrades());
        let mut request = with_trace_context(
            Request::builder()
                .method(method)
                .uri(path)
                .header("host", "msbd"),
        );
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        sender
            .send_request(request)
            .await
            .context("talking to msbd")
    }

    /// A JSON request whose success answer is JSON.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request serialises"));
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading msbd's answer")?
            .to_bytes();
        if !status.is_success() {
            return Err(failure(status, &bytes).into());
        }
        serde_json::from_slice(&bytes).with_context(|| format!("decoding msbd's answer to {path}"))
    }

    /// A GET whose success answer is a stream (JSON Lines); returns the body to read from.
    pub async fn stream(&self, path: &str) -> Result<Incoming> {
        Ok(self.stream_with_headers(path).await?.1)
    }

    /// [`Client::stream`], with the answer's headers.
    pub async fn stream_with_headers(&self, path: &str) -> Result<(hyper::HeaderMap, Incoming)> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(failure(status, &bytes).into());
        }
        Ok((parts.headers, body))
    }

    /// A request whose success answer has no body.
    pub async fn call_empty(&self, method: Method, path: &str) -> Result<()> {
        let response = self.send(method, path, None).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(failure(status, &bytes).into());
        }
        Ok(())
    }
}

pub fn failure(status: StatusCode, bytes: &[u8]) -> ApiFailure {
    let body = serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error: format!(
            "msbd answered {status}: {}",
            String::from_utf8_lossy(bytes).trim()
        ),
        kind: "internal".into(),
        exit_code: None,
    });
    ApiFailure { status, body }
}

/// Whether a request failed because its connection went away before the answer.
fn connection_lost(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_closed() || e.is_incomplete_message() || e.is_canceled())
            || cause.downcast_ref::<std::io::Error>().is_some_and(|e| {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                )
            })
    })
}

/// `msbd` beside the running `msb`, else on the PATH.
pub fn msbd_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating msb's own executable")?;
    let sibling = exe.with_file_name("msbd");
    if sibling.is_file() {
        return Ok(sibling);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("msbd"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| anyhow!("msbd not found beside {} or on the PATH", exe.display()))
}

/// Percent-encodes a path segment (sandbox names are restricted, but be safe).
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_connection_counts_as_lost() {
        let reset = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            .context("talking to msbd");
        assert!(connection_lost(&reset));
        let refused =
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!connection_lost(&refused), "refused: nothing was sent");
        let answered = anyhow::Error::new(failure(StatusCode::NOT_FOUND, b"{}"));
        assert!(!connection_lost(&answered));
    }
}
