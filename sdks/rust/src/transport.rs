//! Talking to msbd: HTTP/1.1 over the unix socket of an MSB_HOME, starting msbd when nobody
//! answers, as the `msb` CLI does.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::error::{from_answer, unreachable, Error, Operation, Result};

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn default_home() -> PathBuf {
    match std::env::var_os("MSB_HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".msb")
        }
    }
}

/// `$MSB_BIN_DIR/msbd`, else `msbd` on the PATH, else msb's install prefix.
fn find_msbd() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("MSB_BIN_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("msbd"));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|p| p.join("msbd")));
    }
    candidates.push(PathBuf::from("/usr/local/lib/msb/msbd"));
    candidates.into_iter().find(|p| p.is_file())
}

#[derive(Debug, Clone)]
pub(crate) struct Transport {
    home: Option<PathBuf>,
    socket: PathBuf,
    pub(crate) msbd: Option<PathBuf>,
    started: Arc<tokio::sync::OnceCell<()>>,
}

impl Transport {
    pub(crate) fn new(home: Option<PathBuf>, socket: PathBuf, msbd: Option<PathBuf>) -> Self {
        Self {
            home,
            socket,
            msbd,
            started: Default::default(),
        }
    }

    async fn ensure_running(&self) -> Result<()> {
        self.started
            .get_or_try_init(|| async {
                match UnixStream::connect(&self.socket).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        Err(unreachable(format!(
                            "{}: {e}: MSB_HOME belongs to another user",
                            self.socket.display()
                        )))
                    }
                    Err(e) if self.home.is_none() => Err(unreachable(format!(
                        "msbd is not answering on {}: {e}",
                        self.socket.display()
                    ))),
                    Err(_) => self.start_daemon().await,
                }
            })
            .await
            .map(|_| ())
    }

    async fn start_daemon(&self) -> Result<()> {
        let home = self.home.as_ref().expect("a home to start msbd for");
        let msbd = self.msbd.clone().or_else(find_msbd).ok_or_else(|| {
            unreachable(
                "msbd is not running and was not found (set MSB_BIN_DIR or put msbd on the PATH)",
            )
        })?;
        std::fs::create_dir_all(home)
            .map_err(|e| unreachable(format!("{}: {e}", home.display())))?;
        if let Ok(meta) = std::fs::metadata(home) {
            if meta.permissions().mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700));
            }
        }
        let log_path = home.join("msbd.log");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log_path)
                .map_err(|e| unreachable(format!("{}: {e}", log_path.display())))?;
            let stderr = log
                .try_clone()
                .map_err(|e| unreachable(format!("{}: {e}", log_path.display())))?;
            let mut child = Command::new(&msbd)
                .env("MSB_HOME", home)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .map_err(|e| unreachable(format!("starting {}: {e}", msbd.display())))?;
            loop {
                if UnixStream::connect(&self.socket).await.is_ok() {
                    std::thread::spawn(move || child.wait());
                    return Ok(());
                }
                if let Ok(Some(status)) = child.try_wait() {
                    if !status.success() {
                        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(5).collect();
                        return Err(unreachable(format!(
                            "msbd exited ({status}) before it was ready; last lines of {}:\n{}",
                            log_path.display(),
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )));
                    }
                    // Exit 0: another msbd holds the home's lock and is starting or leaving.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
                if Instant::now() > deadline {
                    return Err(unreachable(format!(
                        "msbd did not answer on {} within {START_TIMEOUT:?}",
                        self.socket.display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        upgrade: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.ensure_running().await?;
        let lost = |e: &dyn std::fmt::Display| {
            unreachable(format!("talking to msbd on {}: {e}", self.socket.display()))
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| lost(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| lost(&e))?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "msbd");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = upgrade {
            request = request
                .header(hyper::header::CONNECTION, "upgrade")
                .header(hyper::header::UPGRADE, token);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| lost(&e))?;
        sender.send_request(request).await.map_err(|e| lost(&e))
    }

    async fn answer(&self, response: Response<Incoming>, operation: Operation) -> Result<Bytes> {
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading msbd's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(from_answer(status.as_u16(), &bytes, operation));
        }
        Ok(bytes)
    }

    /// One JSON request whose answer is JSON.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        operation: Operation,
    ) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).expect("requests serialise"));
        let response = self.send(method, path, body, None).await?;
        let bytes = self.answer(response, operation).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Internal {
            status: None,
            message: format!("decoding msbd's answer to {path}: {e}"),
        })
    }

    /// A request whose answer has no body.
    pub(crate) async fn call_empty(
        &self,
        method: &str,
        path: &str,
        operation: Operation,
    ) -> Result<()> {
        let response = self.send(method, path, None, None).await?;
        self.answer(response, operation).await.map(|_| ())
    }

    /// A GET whose answer is a stream (JSON Lines).
    pub(crate) async fn stream(&self, path: &str, operation: Operation) -> Result<Incoming> {
        let response = self.send("GET", path, None, None).await?;
        if !response.status().is_success() {
            return Err(match self.answer(response, operation).await {
                Err(e) => e,
                Ok(_) => unreachable("msbd's stream ended at once"),
            });
        }
        Ok(response.into_body())
    }

    /// Opens `path` with `Upgrade: token`: the connection after the 101 answer.
    pub(crate) async fn upgrade(
        &self,
        path: &str,
        token: &str,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut response = self.send("GET", path, None, Some(token)).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(match self.answer(response, Operation::Other).await {
                Err(e) => e,
                Ok(_) => Error::Internal {
                    status: None,
                    message: "msbd did not switch protocols".into(),
                },
            });
        }
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(|e| unreachable(format!("upgrading the session: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }
}
