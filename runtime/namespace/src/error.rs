//! Errors of the namespace backend.

use std::path::PathBuf;

/// Everything [`crate::Sandbox`] operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("invalid sandbox spec for {id}: {reason}")]
    InvalidSpec { id: String, reason: String },
    #[error("cannot read the host cgroup layout")]
    HostCgroups(#[source] std::io::Error),
    #[error("cgroup {op} failed at {path}")]
    Cgroup {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} failed at {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} failed")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The launcher or PID 1's setup failed; `message` names the step and the error, as text
    /// because it crosses a process boundary.
    #[error("sandbox {id} failed to start: {message}")]
    Start { id: String, message: String },
    #[error("sandbox {id}: agent exited during start ({status})")]
    AgentExited {
        id: String,
        status: crate::ExitStatus,
    },
    #[error("destroying sandbox {id} left behind: {}", remaining.join("; "))]
    Destroy { id: String, remaining: Vec<String> },
}

impl NamespaceError {
    pub(crate) fn sys(op: &'static str, source: impl Into<std::io::Error>) -> Self {
        NamespaceError::Sys {
            op,
            source: source.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NamespaceError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
