//! Streaming exec over the JSON session (`Upgrade: msb-session-json`): the same contract the
//! other SDKs speak.

use base64::Engine as _;
use hyper_util::rt::TokioIo;
use msb_api::exec::{
    Empty, ExecFailureKind, OutputStream, SessionEvent, SessionExec, SessionRequest, TerminalSize,
    SESSION_JSON_UPGRADE,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use crate::error::{Error, Result};
use crate::sandbox::ExecOutput;
use crate::sandbox_path;
use crate::transport::Transport;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// How a streaming exec is wired.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// Close stdin at once.
    pub no_stdin: bool,
    /// Run under a pseudo-terminal of `(rows, cols)`.
    pub pty: Option<(u16, u16)>,
}

/// One chunk of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stderr: bool,
    pub data: Vec<u8>,
}

/// A process started by [`crate::Sandbox::exec_stream`] (or an attach): write its stdin,
/// [`recv`](Self::recv) its output, [`wait`](Self::wait) for its exit. Dropping it hangs up (a
/// process still running is killed).
#[derive(Debug)]
pub struct Process {
    reader: BufReader<ReadHalf<Upgraded>>,
    writer: WriteHalf<Upgraded>,
    pid: Option<u32>,
    ended: Option<(i32, Option<i32>)>,
}

impl Process {
    async fn open(transport: &Transport, name: &str, first: SessionRequest) -> Result<Process> {
        let io = transport
            .upgrade(&sandbox_path(name, Some("session")), SESSION_JSON_UPGRADE)
            .await?;
        let (reader, writer) = tokio::io::split(io);
        let mut process = Process {
            reader: BufReader::new(reader),
            writer,
            pid: None,
            ended: None,
        };
        process.send(&first).await?;
        Ok(process)
    }

    pub(crate) async fn exec(
        transport: &Transport,
        name: &str,
        argv: Vec<String>,
        options: StreamOptions,
    ) -> Result<Process> {
        let spec = SessionExec {
            argv,
            env: options.env,
            workdir: options.workdir,
            pty: options.pty.map(|(rows, cols)| TerminalSize { rows, cols }),
            stdin: !options.no_stdin,
        };
        let mut process = Self::open(transport, name, SessionRequest::Exec(spec)).await?;
        match process.next().await? {
            Some(SessionEvent::Started { pid }) => {
                process.pid = Some(pid);
                Ok(process)
            }
            Some(SessionEvent::ExecFailed { kind, message }) => Err(Error::StartFailed {
                message,
                exit_code: match kind {
                    ExecFailureKind::NotFound => 127,
                    ExecFailureKind::PermissionDenied => 126,
                    ExecFailureKind::InvalidRequest | ExecFailureKind::Other => 125,
                },
            }),
            Some(SessionEvent::Error(message)) => Err(Error::Conflict(message)),
            _ => Err(Error::Internal {
                status: None,
                message: "the session ended before the process started".into(),
            }),
        }
    }

    pub(crate) async fn attach(transport: &Transport, name: &str) -> Result<Process> {
        Self::open(transport, name, SessionRequest::Attach(Empty {})).await
    }

    /// The process's pid inside the sandbox (`None` for an attach).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn send(&mut self, request: &SessionRequest) -> Result<()> {
        let mut line = serde_json::to_vec(request).expect("requests serialise");
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| Error::DaemonUnreachable(format!("the session: {e}")))
    }

    async fn next(&mut self) -> Result<Option<SessionEvent>> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .map_err(|e| Error::DaemonUnreachable(format!("the session: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Error::Internal {
                status: None,
                message: format!("a session line: {e}"),
            })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.send(&SessionRequest::Stdin(BASE64.encode(data))).await
    }

    pub async fn close_stdin(&mut self) -> Result<()> {
        self.send(&SessionRequest::StdinEof(true)).await
    }

    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(&SessionRequest::Resize(TerminalSize { rows, cols }))
            .await
    }

    pub async fn signal(&mut self, signal: i32) -> Result<()> {
        self.send(&SessionRequest::Signal(signal)).await
    }

    /// The next chunk of output; `None` once the process has ended (then see
    /// [`exit_code`](Self::exit_code)).
    pub async fn recv(&mut self) -> Result<Option<OutputChunk>> {
        while self.ended.is_none() {
            match self.next().await? {
                Some(SessionEvent::Output { stream, data }) => {
                    let data = BASE64.decode(data).map_err(|e| Error::Internal {
                        status: None,
                        message: format!("output is not base64: {e}"),
                    })?;
                    return Ok(Some(OutputChunk {
                        stderr: stream == OutputStream::Stderr,
                        data,
                    }));
                }
                Some(SessionEvent::Exited { code, signal }) => {
                    let code = code.unwrap_or(128 + signal.unwrap_or(0));
                    self.ended = Some((code, signal));
                }
                Some(SessionEvent::Error(message)) => {
                    return Err(Error::Internal {
                        status: None,
                        message,
                    })
                }
                Some(_) => {}
                None => {
                    return Err(Error::Internal {
                        status: None,
                        message: "the session ended without an exit status".into(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// The exit code (128 + signal when a signal ended it), once the process has ended.
    pub fn exit_code(&self) -> Option<i32> {
        self.ended.map(|(code, _)| code)
    }

    /// Reads to the end: the exit code and the output not yet received.
    pub async fn wait(mut self) -> Result<ExecOutput> {
        let mut output = ExecOutput::default();
        while let Some(chunk) = self.recv().await? {
            if chunk.stderr {
                output.stderr.extend(chunk.data);
            } else {
                output.stdout.extend(chunk.data);
            }
        }
        let (code, signal) = self.ended.expect("ended");
        output.exit_code = code;
        output.signal = signal;
        Ok(output)
    }
}
