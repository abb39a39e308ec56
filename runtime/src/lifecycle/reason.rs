//! Why a run ended.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
pub enum TerminationReason {
    /// The workload exited with code 0.
    Completed,
    /// The workload exited with a non-zero code, or could not be started.
    Failed,
    /// `--max-duration` elapsed.
    MaxDurationExceeded,
    /// `--idle-timeout` elapsed with no agent activity.
    IdleTimeout,
    /// The agent stopped answering (never became ready, or its channel died).
    AgentUnresponsive,
    /// `msb stop` (or a daemon-initiated stop).
    ShutdownRequested,
    /// The workload was ended by a signal (`msb kill`, the OOM killer, ...).
    Signal,
    /// The runtime failed: the supervisor died or hit an error.
    InternalError,
}

impl TerminationReason {
    pub const ALL: [TerminationReason; 8] = [
        TerminationReason::Completed,
        TerminationReason::Failed,
        TerminationReason::MaxDurationExceeded,
        TerminationReason::IdleTimeout,
        TerminationReason::AgentUnresponsive,
        TerminationReason::ShutdownRequested,
        TerminationReason::Signal,
        TerminationReason::InternalError,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TerminationReason::Completed => "Completed",
            TerminationReason::Failed => "Failed",
            TerminationReason::MaxDurationExceeded => "MaxDurationExceeded",
            TerminationReason::IdleTimeout => "IdleTimeout",
            TerminationReason::AgentUnresponsive => "AgentUnresponsive",
            TerminationReason::ShutdownRequested => "ShutdownRequested",
            TerminationReason::Signal => "Signal",
            TerminationReason::InternalError => "InternalError",
        }
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown termination reason {0:?}")]
pub struct UnknownReason(String);

impl FromStr for TerminationReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TerminationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}
