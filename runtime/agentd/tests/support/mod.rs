//! `TestAgent`: the real `msb-agentd` binary (not as PID 1) on one end of a socketpair, with a
//! reader thread that decodes its frames, and helpers that read like the host's side of a
//! session.

#![allow(dead_code)] // Not every test binary uses every helper.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus as ProcessStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use msb_protocol::agent::{FromAgent, SessionId, ToAgent};
use msb_protocol::{ExecErrorKind, ExecMode, ExecSpec, ExitStatus, Stream, MAX_CHUNK_BYTES};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The binary under test: this package's, or `MSB_TEST_AGENTD` (e.g. the static release build).
pub fn agent_binary() -> String {
    std::env::var("MSB_TEST_AGENTD").unwrap_or_else(|_| env!("CARGO_BIN_EXE_msb-agentd").into())
}
/// Generous: this runs on a small, shared machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Serialises spawning: while it is held, the agent's end of the socketpair is inheritable, and
/// no other process may be started from this test binary meanwhile.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

pub struct TestAgent {
    child: Child,
    host: UnixStream,
    frames: Receiver<FromAgent>,
    /// Frames received while waiting for something else.
    stash: VecDeque<FromAgent>,
    /// Sessions between `Started` and `Exited`.
    running: HashSet<SessionId>,
    last_heartbeat: Option<u64>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// What a started session produced.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub fn spec(argv: &[&str], mode: ExecMode) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        workdir: None,
        mode,
    }
}

impl TestAgent {
    /// Starts the agent with `MSB_AGENT_FD` naming its end of the channel.
    pub fn start() -> Self {
        Self::spawn(false, &[])
    }

    /// Starts the agent as the last argument of `wrapper` (e.g. `unshare ...`), which must
    /// preserve the environment and the inherited fd.
    pub fn start_wrapped(wrapper: &[&str]) -> Self {
        Self::spawn(false, wrapper)
    }

    /// Starts the agent with its end of the channel on fd 3 and no `MSB_AGENT_FD`.
    pub fn start_on_default_fd() -> Self {
        Self::spawn(true, &[])
    }

    fn spawn(on_fd_3: bool, wrapper: &[&str]) -> Self {
        let (host, agent_end) = UnixStream::pair().expect("socketpair");
        let fd = agent_end.as_raw_fd();
        let guard = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear FD_CLOEXEC");
        let mut command = if on_fd_3 && fd != 3 {
            // The shell moves the inherited fd to 3 and then becomes the agent. bash, not sh:
            // dash rejects fd numbers above 9, and with tests running in parallel `fd` can be.
            let mut command = Command::new("/bin/bash");
            command.args([
                "-c",
                &format!("exec \"$0\" 3<&{fd} {fd}<&-"),
                &agent_binary(),
            ]);
            command.env_remove("MSB_AGENT_FD");
            command
        } else if let Some((program, args)) = wrapper.split_first() {
            let mut command = Command::new(program);
            command
                .args(args)
                .arg(agent_binary())
                .env("MSB_AGENT_FD", fd.to_string());
            command
        } else {
            let mut command = Command::new(agent_binary());
            command.env("MSB_AGENT_FD", fd.to_string());
            command
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn msb-agentd");
        drop(agent_end);
        drop(guard);

        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let (sender, frames) = mpsc::channel();
        let mut reader = host.try_clone().expect("clone host end");
        thread::spawn(move || {
            while let Ok(Some(frame)) = msb_protocol::read_frame::<_, FromAgent>(&mut reader) {
                if sender.send(frame).is_err() {
                    break;
                }
            }
        });
        let mut agent = Self {
            child,
            host,
            frames,
            stash: VecDeque::new(),
            running: HashSet::new(),
            last_heartbeat: None,
            stdout,
            stderr,
        };
        match agent.recv(|_| true) {
            FromAgent::Ready { version } => assert_eq!(version, msb_protocol::PROTOCOL_VERSION),
            other => panic!("expected Ready first, got {other:?}"),
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, message: &ToAgent) {
        msb_protocol::write_frame(&mut self.host, message).expect("write to the agent");
    }

    /// Closes the host's sending side: the agent sees end of stream.
    pub fn close_channel(&mut self) {
        self.host
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }

    /// The next frame matching `wanted`; others are kept for later calls.
    pub fn recv(&mut self, wanted: impl Fn(&FromAgent) -> bool) -> FromAgent {
        if let Some(index) = self.stash.iter().position(&wanted) {
            return self.stash.remove(index).expect("index is valid");
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self.frames.recv_timeout(left);
            if let Ok(frame) = &received {
                self.check(frame);
            }
            match received {
                Ok(frame) if wanted(&frame) => return frame,
                Ok(frame) => self.stash.push_back(frame),
                Err(RecvTimeoutError::Timeout) => panic!("no matching frame within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the agent closed the channel"),
            }
        }
    }

    /// Protocol rules every frame must follow, checked as frames arrive.
    fn check(&mut self, frame: &FromAgent) {
        match frame {
            FromAgent::Ready { .. } => assert!(self.last_heartbeat.is_none(), "second Ready"),
            FromAgent::Started { session, .. } => {
                assert!(
                    self.running.insert(*session),
                    "session {session} started twice"
                );
            }
            FromAgent::ExecFailed { session, .. } => {
                assert!(
                    !self.running.contains(session),
                    "session {session} is running"
                );
            }
            FromAgent::Output { session, data, .. } => {
                assert!(
                    self.running.contains(session),
                    "output of a session not started"
                );
                assert!(
                    !data.is_empty() && data.len() <= MAX_CHUNK_BYTES,
                    "{} bytes",
                    data.len()
                );
            }
            FromAgent::Exited { session, .. } => {
                assert!(
                    self.running.remove(session),
                    "Exited of a session not running"
                );
            }
            FromAgent::Heartbeat(beat) => {
                let expected = self.last_heartbeat.map_or(1, |seq| seq + 1);
                assert_eq!(beat.seq, expected, "heartbeat sequence");
                self.last_heartbeat = Some(beat.seq);
            }
        }
    }

    pub fn exec(&mut self, session: SessionId, spec: ExecSpec) {
        self.send(&ToAgent::Exec { session, spec });
    }

    /// Waits for the session's `Started` and returns its pid.
    pub fn started(&mut self, session: SessionId) -> u32 {
        match self.recv(|f| is_start_reply(f, session)) {
            FromAgent::Started { pid, .. } => pid,
            other => panic!("session {session} did not start: {other:?}"),
        }
    }

    /// Waits for the session's `ExecFailed`.
    pub fn exec_failed(&mut self, session: SessionId) -> (ExecErrorKind, String) {
        match self.recv(|f| is_start_reply(f, session)) {
            FromAgent::ExecFailed { kind, message, .. } => (kind, message),
            other => panic!("session {session} did not fail: {other:?}"),
        }
    }

    /// Collects the session's output up to and including its `Exited`.
    pub fn finish(&mut self, session: SessionId) -> Outcome {
        let mut outcome = Outcome {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: ExitStatus {
                code: None,
                signal: None,
            },
        };
        loop {
            match self.recv(|f| is_session_io(f, session)) {
                FromAgent::Output {
                    stream: Stream::Stdout,
                    data,
                    ..
                } => outcome.stdout.extend(data),
                FromAgent::Output {
                    stream: Stream::Stderr,
                    data,
                    ..
                } => outcome.stderr.extend(data),
                FromAgent::Exited { status, .. } => {
                    outcome.status = status;
                    return outcome;
                }
                other => unreachable!("filtered: {other:?}"),
            }
        }
    }

    /// Reads the session's stdout until it contains `needle`; returns what was read.
    pub fn read_until(&mut self, session: SessionId, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            match self.recv(|f| is_session_io(f, session)) {
                FromAgent::Output { data, .. } => text.push_str(&String::from_utf8_lossy(&data)),
                other => panic!(
                    "session {session} ended before printing {needle:?}: {other:?}; got {text:?}"
                ),
            }
        }
        text
    }

    /// Starts `spec` and collects everything up to its exit.
    pub fn run(&mut self, session: SessionId, spec: ExecSpec) -> Outcome {
        self.exec(session, spec);
        self.started(session);
        self.finish(session)
    }

    /// Waits for the agent process to exit.
    pub fn wait_exit(&mut self) -> ProcessStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Everything the agent wrote to stdout so far (it must write nothing).
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- agent stderr ---\n{}", String::from_utf8_lossy(&stderr));
        }
    }
}

fn is_start_reply(frame: &FromAgent, session: SessionId) -> bool {
    matches!(frame, FromAgent::Started { session: s, .. } | FromAgent::ExecFailed { session: s, .. } if *s == session)
}

fn is_session_io(frame: &FromAgent, session: SessionId) -> bool {
    matches!(frame, FromAgent::Output { session: s, .. } | FromAgent::Exited { session: s, .. } if *s == session)
}

/// Drains a child's pipe into a buffer on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}
