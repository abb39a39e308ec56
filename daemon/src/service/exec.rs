//! Exec without a session: [`open_session`] (the checks every exec and attach session passes
//! before it reaches the supervisor) and [`run_buffered`], which runs one process to its end
//! and gathers its output, bounded, for `POST /v1/sandboxes/{name}/exec`.

use std::time::{Duration, Instant};

use msb_api::exec::MAX_EXEC_OUTPUT_BYTES;
use msb_api::ExecResponse;
use msb_protocol::session::{ClientEvent, ClientRequest};
use msb_protocol::{ExecMode, ExecSpec, FrameError, Stream, MAX_CHUNK_BYTES};
use msb_runtime::framing::{read_frame, write_frame};
use msb_runtime::lifecycle::SandboxStatus;
use tokio::net::UnixStream;

use super::{status_of_row, CatalogError};
use crate::state::Daemon;

/// How long a killed process (its timeout passed) may take to report its end.
const AFTER_KILL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("sandbox {name:?} is draining: it accepts no new exec sessions")]
    Draining { name: String },
    #[error("sandbox {name:?} is {status}, not running")]
    NotRunning { name: String, status: SandboxStatus },
    /// The supervisor's socket refused the connection, or the supervisor refused the session.
    #[error("sandbox {name:?} is not accepting sessions: {message}")]
    Refused { name: String, message: String },
    /// The command could not start in the sandbox.
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    #[error("the supervisor of sandbox {name:?} ended the session without an exit status")]
    Ended { name: String },
    #[error("talking to the supervisor")]
    Frame(#[from] FrameError),
}

/// Connects to the supervisor of a sandbox that accepts sessions (Starting or Running).
pub async fn open_session(daemon: &Daemon, name: &str) -> Result<UnixStream, ExecError> {
    let row = daemon.sandbox(name)?;
    match status_of_row(&row)? {
        SandboxStatus::Starting | SandboxStatus::Running => {}
        SandboxStatus::Draining => {
            return Err(ExecError::Draining {
                name: name.to_owned(),
            })
        }
        status => {
            return Err(ExecError::NotRunning {
                name: name.to_owned(),
                status,
            })
        }
    }
    let socket = daemon.home.sandbox(&row.id).socket();
    UnixStream::connect(&socket)
        .await
        .map_err(|e| ExecError::Refused {
            name: name.to_owned(),
            message: e.to_string(),
        })
}

/// Runs `spec`'s command in sandbox `name`, feeds it `stdin` (closed at once when `None`),
/// and answers once it has ended, SIGKILLing it after `timeout`.
pub async fn run_buffered(
    daemon: &Daemon,
    name: &str,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<ExecResponse, ExecError> {
    use base64::Engine as _;
    let received = Instant::now();
    let supervisor = open_session(daemon, name).await?;
    let (mut reader, mut writer) = supervisor.into_split();
    let mode = if stdin.is_some() {
        ExecMode::Stream
    } else {
        ExecMode::Buffered
    };
    let spec = ExecSpec {
        argv,
        env,
        workdir,
        mode,
    };
    write_frame(&mut writer, &ClientRequest::Exec(spec)).await?;
    match read_frame::<_, ClientEvent>(&mut reader).await? {
        Some(ClientEvent::Started { .. }) => {
            daemon.telemetry.exec_latency.observe(received.elapsed())
        }
        Some(ClientEvent::ExecFailed { kind, message }) => {
            return Err(ExecError::StartFailed {
                message,
                exit_code: kind.shell_code(),
            })
        }
        Some(ClientEvent::Error(message)) => {
            return Err(ExecError::Refused {
                name: name.to_owned(),
                message,
            })
        }
        _ => {
            return Err(ExecError::Ended {
                name: name.to_owned(),
            })
        }
    }
    // Input goes on its own task: a process that reads its stdin only after writing much output
    // must not stall this loop. The write half stays open to the end (closing it hangs up).
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<()>(1);
    let input = tokio::spawn(async move {
        if let Some(stdin) = stdin {
            for chunk in stdin.chunks(MAX_CHUNK_BYTES) {
                if write_frame(&mut writer, &ClientRequest::Stdin(chunk.to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = write_frame(&mut writer, &ClientRequest::StdinEof).await;
        }
        if kill_rx.recv().await.is_some() {
            let _ = write_frame(&mut writer, &ClientRequest::Signal(libc::SIGKILL)).await;
            // Keep the connection until the answer is read.
            std::future::pending::<()>().await;
        }
    });
    let mut outputs = [Output::default(), Output::default()];
    let mut deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut timed_out = false;
    let status = loop {
        let event = match deadline {
            Some(at) => match tokio::time::timeout_at(at, read_frame(&mut reader)).await {
                Ok(event) => event,
                Err(_) if !timed_out => {
                    timed_out = true;
                    let _ = kill_tx.send(()).await;
                    deadline = Some(tokio::time::Instant::now() + AFTER_KILL);
                    continue;
                }
                Err(_) => break None,
            },
            None => read_frame(&mut reader).await,
        };
        match event {
            Ok(Some(ClientEvent::Output { stream, data })) => {
                let index = usize::from(stream == Stream::Stderr);
                outputs[index].push(&data);
            }
            Ok(Some(ClientEvent::Exited(status))) => break Some(status),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    input.abort();
    let Some(status) = status else {
        return Err(ExecError::Ended {
            name: name.to_owned(),
        });
    };
    let [stdout, stderr] = outputs;
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(ExecResponse {
        exit_code: status.shell_code(),
        signal: status.signal,
        stdout: engine.encode(&stdout.bytes),
        stderr: engine.encode(&stderr.bytes),
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
        timed_out,
    })
}

/// One stream's output, kept up to [`MAX_EXEC_OUTPUT_BYTES`].
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_EXEC_OUTPUT_BYTES.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_bound_and_says_so() {
        let mut output = Output::default();
        output.push(&vec![b'a'; MAX_EXEC_OUTPUT_BYTES - 1]);
        assert!(!output.truncated);
        output.push(b"bc");
        assert!(output.truncated);
        assert_eq!(output.bytes.len(), MAX_EXEC_OUTPUT_BYTES);
        assert_eq!(output.bytes.last(), Some(&b'b'));
    }
}
