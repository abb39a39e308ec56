//! The one sandbox lifecycle state machine.
//!
//! Every status change in msb goes through [`transition`]: msbd applies it before writing a
//! status to the catalog, so no code path can invent a transition the table does not allow.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a sandbox is in its life. Stored in the catalog by [`SandboxStatus::as_str`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
pub enum SandboxStatus {
    /// Configured, never started (or `msb create`).
    Created,
    /// A supervisor is bringing the sandbox up.
    Starting,
    /// The agent is up and the workload runs.
    Running,
    /// A stop was requested; the workload is being terminated.
    Draining,
    /// Frozen (reserved: no verb pauses yet).
    Paused,
    /// The run ended: the workload exited, or a stop or kill completed.
    Stopped,
    /// The run ended without the runtime's consent: its supervisor died.
    Crashed,
}

/// What is done to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Begin a run.
    Start,
    /// The agent reported ready and the workload started.
    Ready,
    /// Graceful stop requested.
    Stop,
    /// A signal for the workload.
    Kill,
    /// The run ended under the supervisor's control.
    Exit,
    /// The supervisor vanished without recording an end.
    Crash,
    Pause,
    Resume,
    /// Delete the sandbox and its files.
    Remove,
}

/// The operation is not allowed in the sandbox's current status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} a sandbox that is {from}")]
pub struct InvalidTransition {
    pub from: SandboxStatus,
    pub op: Operation,
}

/// The status after `op` is applied in `from`, or why it cannot be.
///
/// `Stop` on a sandbox that is not running succeeds without change, so that two concurrent
/// stops both succeed; `Remove` returns the status the sandbox had when it was removed.
pub fn transition(from: SandboxStatus, op: Operation) -> Result<SandboxStatus, InvalidTransition> {
    use Operation as O;
    use SandboxStatus as S;
    let to = match (from, op) {
        (S::Created, O::Start) => S::Starting,
        (S::Created, O::Stop) => S::Created,
        (S::Created, O::Remove) => S::Created,
        (S::Created, O::Ready | O::Kill | O::Exit | O::Crash | O::Pause | O::Resume) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Starting, O::Ready) => S::Running,
        (S::Starting, O::Stop) => S::Draining,
        (S::Starting, O::Kill) => S::Starting,
        (S::Starting, O::Exit) => S::Stopped,
        (S::Starting, O::Crash) => S::Crashed,
        (S::Starting, O::Start | O::Pause | O::Resume | O::Remove) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Running, O::Stop) => S::Draining,
        (S::Running, O::Kill) => S::Running,
        (S::Running, O::Exit) => S::Stopped,
        (S::Running, O::Crash) => S::Crashed,
        (S::Running, O::Pause) => S::Paused,
        (S::Running, O::Ready) => S::Running,
        (S::Running, O::Start | O::Resume | O::Remove) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Draining, O::Stop) => S::Draining,
        (S::Draining, O::Kill) => S::Draining,
        (S::Draining, O::Exit) => S::Stopped,
        // A supervisor that dies while draining was going to stop anyway.
        (S::Draining, O::Crash) => S::Stopped,
        (S::Draining, O::Start | O::Ready | O::Pause | O::Resume | O::Remove) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Paused, O::Resume) => S::Running,
        (S::Paused, O::Stop) => S::Draining,
        (S::Paused, O::Kill) => S::Paused,
        (S::Paused, O::Exit) => S::Stopped,
        (S::Paused, O::Crash) => S::Crashed,
        (S::Paused, O::Start | O::Ready | O::Pause | O::Remove) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Stopped, O::Start) => S::Starting,
        (S::Stopped, O::Stop) => S::Stopped,
        (S::Stopped, O::Remove) => S::Stopped,
        (S::Stopped, O::Ready | O::Kill | O::Exit | O::Crash | O::Pause | O::Resume) => {
            return Err(InvalidTransition { from, op })
        }

        (S::Crashed, O::Start) => S::Starting,
        (S::Crashed, O::Stop) => S::Crashed,
        (S::Crashed, O::Remove) => S::Crashed,
        (S::Crashed, O::Ready | O::Kill | O::Exit | O::Crash | O::Pause | O::Resume) => {
            return Err(InvalidTransition { from, op })
        }
    };
    Ok(to)
}

impl SandboxStatus {
    pub const ALL: [SandboxStatus; 7] = [
        SandboxStatus::Created,
        SandboxStatus::Starting,
        SandboxStatus::Running,
        SandboxStatus::Draining,
        SandboxStatus::Paused,
        SandboxStatus::Stopped,
        SandboxStatus::Crashed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SandboxStatus::Created => "Created",
            SandboxStatus::Starting => "Starting",
            SandboxStatus::Running => "Running",
            SandboxStatus::Draining => "Draining",
            SandboxStatus::Paused => "Paused",
            SandboxStatus::Stopped => "Stopped",
            SandboxStatus::Crashed => "Crashed",
        }
    }

    /// A supervisor process exists (or should) for a sandbox in this status.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            SandboxStatus::Starting
                | SandboxStatus::Running
                | SandboxStatus::Draining
                | SandboxStatus::Paused
        )
    }

    /// No run is in progress and none will start by itself.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SandboxStatus::Created | SandboxStatus::Stopped | SandboxStatus::Crashed
        )
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown sandbox status {0:?}")]
pub struct UnknownStatus(String);

impl FromStr for SandboxStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SandboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Start,
        Operation::Ready,
        Operation::Stop,
        Operation::Kill,
        Operation::Exit,
        Operation::Crash,
        Operation::Pause,
        Operation::Resume,
        Operation::Remove,
    ];
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            Operation::Start => "start",
            Operation::Ready => "mark ready",
            Operation::Stop => "stop",
            Operation::Kill => "kill",
            Operation::Exit => "record the exit of",
            Operation::Crash => "record a crash of",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Remove => "remove",
        };
        f.write_str(verb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation as O;
    use SandboxStatus as S;

    /// The whole table, written out: (from, op) -> Some(to) or None for "invalid".
    fn expected(from: S, op: O) -> Option<S> {
        let row: [Option<S>; 9] = match from {
            //            Start              Ready             Stop               Kill               Exit              Crash             Pause            Resume           Remove
            S::Created => [
                Some(S::Starting),
                None,
                Some(S::Created),
                None,
                None,
                None,
                None,
                None,
                Some(S::Created),
            ],
            S::Starting => [
                None,
                Some(S::Running),
                Some(S::Draining),
                Some(S::Starting),
                Some(S::Stopped),
                Some(S::Crashed),
                None,
                None,
                None,
            ],
            S::Running => [
                None,
                Some(S::Running),
                Some(S::Draining),
                Some(S::Running),
                Some(S::Stopped),
                Some(S::Crashed),
                Some(S::Paused),
                None,
                None,
            ],
            S::Draining => [
                None,
                None,
                Some(S::Draining),
                Some(S::Draining),
                Some(S::Stopped),
                Some(S::Stopped),
                None,
                None,
                None,
            ],
            S::Paused => [
                None,
                None,
                Some(S::Draining),
                Some(S::Paused),
                Some(S::Stopped),
                Some(S::Crashed),
                None,
                Some(S::Running),
                None,
            ],
            S::Stopped => [
                Some(S::Starting),
                None,
                Some(S::Stopped),
                None,
                None,
                None,
                None,
                None,
                Some(S::Stopped),
            ],
            S::Crashed => [
                Some(S::Starting),
                None,
                Some(S::Crashed),
                None,
                None,
                None,
                None,
                None,
                Some(S::Crashed),
            ],
        };
        let index = O::ALL.iter().position(|o| *o == op).unwrap();
        row[index]
    }

    #[test]
    fn every_state_operation_pair_matches_the_table() {
        for from in S::ALL {
            for op in O::ALL {
                let got = transition(from, op).ok();
                assert_eq!(got, expected(from, op), "{from} --{op:?}-->");
                if got.is_none() {
                    let err = transition(from, op).unwrap_err();
                    assert_eq!((err.from, err.op), (from, op));
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in S::ALL {
            assert_eq!(status.as_str().parse::<S>().unwrap(), status);
        }
        assert!("running".parse::<S>().is_err());
    }

    #[test]
    fn stop_is_idempotent_once_terminal() {
        for status in S::ALL.into_iter().filter(S::is_terminal) {
            assert_eq!(transition(status, O::Stop).unwrap(), status);
        }
    }
}
