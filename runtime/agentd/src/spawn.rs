//! Starting a session's process: checking the request, resolving `argv[0]` on `PATH`, building
//! the environment, wiring stdio for the mode, registering the session and starting its output
//! pump and stdin writer.
//!
//! Processes are started by [`sys::spawn`] (a `CLONE_VM | CLONE_VFORK` child set up with system
//! calls only, which reports a failure before or at its `exec` through a close-on-exec pipe as
//! its errno); that errno becomes the `ExecFailed` kind.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread;

use msb_protocol::agent::{FromAgent, SessionId};
use msb_protocol::{ExecErrorKind, ExecMode, ExecSpec, Stream};
use nix::unistd::{access, AccessFlags, Pid};

use crate::agent::Agent;
use crate::pty;
use crate::pump::{self, Pump};
use crate::session::{exit_channel, Entry};
use crate::sys;

/// `PATH` for processes whose spec does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_HOME: &str = "/root";
const PTY_TERM: &str = "xterm";
/// Stack of the per-session helper threads; they only shuffle bytes.
pub const HELPER_STACK_BYTES: usize = 256 * 1024;

/// Why a session could not start.
struct ExecError {
    kind: ExecErrorKind,
    message: String,
}

impl ExecError {
    fn new(kind: ExecErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Maps an errno from `exec` (or from a step before it) to the protocol's kinds.
    fn from_io(program: &str, error: &io::Error) -> Self {
        let kind = match error.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => ExecErrorKind::NotFound,
            Some(libc::EACCES | libc::EPERM) => ExecErrorKind::PermissionDenied,
            // std's own check: a NUL byte in an argument or variable.
            None if error.kind() == io::ErrorKind::InvalidInput => ExecErrorKind::InvalidRequest,
            _ => ExecErrorKind::Other,
        };
        Self::new(kind, format!("{program}: {error}"))
    }
}

/// Handles `Exec`: answers with exactly one `Started` or `ExecFailed`.
pub fn exec(agent: &Arc<Agent>, session: SessionId, spec: ExecSpec) {
    if let Err(error) = start(agent, session, spec) {
        log!("session {session}: exec failed: {}", error.message);
        agent.writer.send(&FromAgent::ExecFailed {
            session,
            kind: error.kind,
            message: error.message,
        });
    }
}

/// The agent's ends of a session's standard streams.
enum Wiring {
    /// Pipes: stdin's write end (stream mode; buffered mode gives the child `/dev/null`), and
    /// the read ends of stdout and stderr.
    Pipes {
        stdin: Option<File>,
        stdout: File,
        stderr: File,
    },
    /// A PTY: the master, plus one duplicate to read output from and one to write input to.
    Terminal {
        master: OwnedFd,
        reader: File,
        writer: File,
    },
}

/// A session's process, ready to start: what the child execs, and its ends of the streams
/// (closed in the agent once it has started).
struct Prepared {
    plan: sys::ChildPlan,
    child_ends: Vec<OwnedFd>,
}

fn start(agent: &Arc<Agent>, session: SessionId, spec: ExecSpec) -> Result<(), ExecError> {
    let program = validate(&spec)?;
    let (prepared, wiring) = prepare(&spec, program)?;
    let (notifier, waiter) = exit_channel().map_err(|e| opening("a pipe", &e.into()))?;

    // Hold the table from fork to registration: see `session`.
    let mut table = agent.sessions.lock();
    if table.contains(session) {
        return Err(ExecError::new(
            ExecErrorKind::InvalidRequest,
            format!("session {session} already exists"),
        ));
    }
    let Prepared { plan, child_ends } = prepared;
    let pid = sys::spawn(&plan).map_err(|e| ExecError::from_io(program, &e))?;
    // Closes the agent's copies of the child's ends (pipes, PTY slave).
    drop(child_ends);
    let pid = Pid::from_raw(pid);
    let (stdin, outputs, terminal) = match wiring {
        Wiring::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            stdin,
            vec![(Stream::Stdout, stdout), (Stream::Stderr, stderr)],
            None,
        ),
        Wiring::Terminal {
            master,
            reader,
            writer,
        } => (
            Some(writer),
            vec![(Stream::Stdout, reader)],
            Some(Arc::new(master)),
        ),
    };
    // The reaper owns the child from now on.
    let stdin = stdin.map(|file| start_stdin_writer(session, file));
    table.insert(
        session,
        Entry::new(pid, terminal.is_some(), stdin, terminal, notifier),
    );
    drop(table);

    let pid = pid.as_raw().unsigned_abs();
    agent.writer.send(&FromAgent::Started { session, pid });
    pump::start(Pump::new(agent.clone(), session, outputs, waiter));
    agent.note_activity(session);
    note!("session {session}: started {program} as pid {pid}");
    Ok(())
}

/// Checks what can be checked before forking; returns `argv[0]`.
fn validate(spec: &ExecSpec) -> Result<&str, ExecError> {
    let program = spec
        .argv
        .first()
        .filter(|arg| !arg.is_empty())
        .ok_or_else(|| ExecError::new(ExecErrorKind::InvalidRequest, "argv is empty"))?;
    if let Some(dir) = &spec.workdir {
        if !Path::new(dir).is_dir() {
            return Err(ExecError::new(
                ExecErrorKind::InvalidRequest,
                format!("workdir {dir} is not a directory"),
            ));
        }
    }
    Ok(program)
}

/// The process for `spec`: its program, arguments, environment and working directory, and its
/// stdio for the mode.
fn prepare(spec: &ExecSpec, program: &str) -> Result<(Prepared, Wiring), ExecError> {
    let env = environment(spec);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v);
    let resolved = resolve(program, path_var)?;
    let c_string = |what: &str, bytes: Vec<u8>| {
        CString::new(bytes).map_err(|_| {
            ExecError::new(
                ExecErrorKind::InvalidRequest,
                format!("{what} contains a NUL byte"),
            )
        })
    };
    let argv = std::iter::once(program)
        .chain(spec.argv[1..].iter().map(String::as_str))
        .map(|arg| c_string("an argument", arg.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = env
        .iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('=') {
                return Err(ExecError::new(
                    ExecErrorKind::InvalidRequest,
                    format!("environment variable name {key:?} is empty or contains '='"),
                ));
            }
            c_string(
                "an environment variable",
                format!("{key}={value}").into_bytes(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workdir = spec
        .workdir
        .as_ref()
        .map(|dir| c_string("the working directory", dir.as_bytes().to_vec()))
        .transpose()?;
    let program = c_string(
        "the program's path",
        resolved.into_os_string().into_encoded_bytes(),
    )?;
    let (child_ends, wiring, controlling_terminal) = match spec.mode {
        ExecMode::Buffered | ExecMode::Stream => {
            let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
            let (stdin_child, stdin) = match spec.mode {
                ExecMode::Stream => {
                    let (read, write) = pipe().map_err(|e| opening("a pipe", &e.into()))?;
                    (read, Some(File::from(write)))
                }
                _ => {
                    let null = File::open("/dev/null").map_err(|e| opening("/dev/null", &e))?;
                    (OwnedFd::from(null), None)
                }
            };
            let (stdout, stdout_child) = pipe().map_err(|e| opening("a pipe", &e.into()))?;
            let (stderr, stderr_child) = pipe().map_err(|e| opening("a pipe", &e.into()))?;
            let wiring = Wiring::Pipes {
                stdin,
                stdout: File::from(stdout),
                stderr: File::from(stderr),
            };
            (vec![stdin_child, stdout_child, stderr_child], wiring, false)
        }
        ExecMode::Pty { rows, cols } => {
            let pair = pty::open(rows, cols).map_err(|e| opening("a terminal", &e))?;
            let clone = |fd: &OwnedFd| fd.try_clone().map_err(|e| opening("a terminal", &e));
            let wiring = Wiring::Terminal {
                reader: File::from(clone(&pair.master)?),
                writer: File::from(clone(&pair.master)?),
                master: pair.master,
            };
            (vec![pair.slave], wiring, true)
        }
    };
    let fd = |index: usize| child_ends[index.min(child_ends.len() - 1)].as_raw_fd();
    let plan = sys::ChildPlan {
        program,
        argv,
        env,
        workdir,
        stdio: [fd(0), fd(1), fd(2)],
        controlling_terminal,
    };
    Ok((Prepared { plan, child_ends }, wiring))
}

fn opening(what: &str, error: &io::Error) -> ExecError {
    ExecError::new(ExecErrorKind::Other, format!("opening {what}: {error}"))
}

/// The defaults (`PATH`, `HOME`, and `TERM` for a PTY) overridden and extended by the spec's.
fn environment(spec: &ExecSpec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), DEFAULT_HOME.into()),
    ];
    if matches!(spec.mode, ExecMode::Pty { .. }) {
        env.push(("TERM".into(), PTY_TERM.into()));
    }
    for (key, value) in &spec.env {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    env
}

/// Finds `program` the way `execvp` does: as given when it contains a `/`, otherwise in the
/// first `PATH` directory holding an executable file of that name.
fn resolve(program: &str, path_var: &str) -> Result<PathBuf, ExecError> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let mut found_unexecutable = false;
    for dir in path_var.split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(program);
        if !candidate.is_file() {
            continue;
        }
        if access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        found_unexecutable = true;
    }
    if found_unexecutable {
        Err(ExecError::new(
            ExecErrorKind::PermissionDenied,
            format!("{program}: permission denied"),
        ))
    } else {
        Err(ExecError::new(
            ExecErrorKind::NotFound,
            format!("{program}: not found in PATH"),
        ))
    }
}

/// Starts a thread that feeds queued chunks to the process's stdin and closes it once the
/// returned sender is dropped (`StdinEof`, or the process was reaped). The queue keeps a slow
/// reader from stalling the main thread.
fn start_stdin_writer(session: SessionId, mut file: File) -> Sender<Vec<u8>> {
    let (sender, chunks) = mpsc::channel::<Vec<u8>>();
    let spawned = thread::Builder::new()
        .name(format!("stdin-{session}"))
        .stack_size(HELPER_STACK_BYTES)
        .spawn(move || {
            for chunk in chunks {
                if file.write_all(&chunk).is_err() {
                    // The reader is gone (EPIPE); later chunks are dropped with the queue.
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        log!("session {session}: no stdin writer thread ({e}); its stdin is closed");
    }
    sender
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &[(&str, &str)], mode: ExecMode) -> ExecSpec {
        ExecSpec {
            argv: vec!["sh".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workdir: None,
            mode,
        }
    }

    #[test]
    fn environment_has_defaults_that_the_spec_overrides_and_extends() {
        let env = environment(&spec(
            &[("HOME", "/home/x"), ("A", "1")],
            ExecMode::Buffered,
        ));
        let expected = [("PATH", DEFAULT_PATH), ("HOME", "/home/x"), ("A", "1")];
        assert_eq!(env, expected.map(|(k, v)| (k.to_string(), v.to_string())));

        let env = environment(&spec(&[], ExecMode::Pty { rows: 1, cols: 1 }));
        assert!(env.contains(&("TERM".into(), PTY_TERM.into())));
        assert!(!environment(&spec(&[], ExecMode::Stream))
            .iter()
            .any(|(k, _)| k == "TERM"));
    }

    #[test]
    fn resolve_searches_path_like_execvp() {
        assert_eq!(
            resolve("sh", "/msb-no-such-dir:/bin").ok(),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(resolve("./x", "").ok(), Some(PathBuf::from("./x")));
        let missing = resolve("msb-no-such-program", DEFAULT_PATH)
            .err()
            .map(|e| e.kind);
        assert_eq!(missing, Some(ExecErrorKind::NotFound));
        // A directory of that name is not a candidate.
        assert_eq!(
            resolve("bin", "/").err().map(|e| e.kind),
            Some(ExecErrorKind::NotFound)
        );
    }

    #[test]
    fn validate_rejects_empty_argv_and_missing_workdir() {
        let mut request = spec(&[], ExecMode::Buffered);
        assert_eq!(validate(&request).ok(), Some("sh"));
        request.workdir = Some("/msb-no-such-dir".into());
        assert_eq!(
            validate(&request).err().map(|e| e.kind),
            Some(ExecErrorKind::InvalidRequest)
        );
        request.argv = vec![String::new()];
        assert_eq!(
            validate(&request).err().map(|e| e.kind),
            Some(ExecErrorKind::InvalidRequest)
        );
    }
}
