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
    /// `msb drain`: exec sessions were let finish (or timed out), then the sandbox stopped.
    DrainRequested,
}

impl TerminationReason {
    pub const ALL: [TerminationReason; 9] = [
        TerminationReason::Completed,
        TerminationReason::Failed,
        TerminationReason::MaxDurationExceeded,
        TerminationReason::IdleTimeout,
        TerminationReason::AgentUnresponsive,
        TerminationReason::ShutdownRequested,
        TerminationReason::Signal,
        TerminationReason::InternalError,
        TerminationReason::DrainRequested,
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
            TerminationReason::DrainRequested => "DrainRequested",
        }
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run ended, coarser than [`TerminationReason`] and told apart where operators need it
/// (an OOM kill is its own cause): the `reason` label of `msb.sandbox.runs.ended`, the
/// `run_ended` event and `end_cause` in `msb inspect`.
pub const END_CAUSES: [&str; 8] = [
    "exit",
    "signal",
    "oom_kill",
    "max_duration",
    "idle",
    "stop",
    "agent_unresponsive",
    "error",
];

/// The cause (one of [`END_CAUSES`]) of a run that ended with `reason`, the workload's
/// `signal` (if one ended it), and `oom_kills` OOM kills in the sandbox during the run. A run in
/// which the OOM killer struck and that did not complete (the killed process, or a shell that
/// reported its child's death as exit code 137) ended by an OOM kill.
pub fn end_cause(
    reason: Option<TerminationReason>,
    signal: Option<i32>,
    oom_kills: Option<u64>,
) -> &'static str {
    let oom = oom_kills.is_some_and(|n| n > 0);
    match reason {
        Some(TerminationReason::Completed) => "exit",
        Some(TerminationReason::Failed | TerminationReason::Signal) if oom => "oom_kill",
        Some(TerminationReason::Failed) if signal.is_some() => "signal",
        Some(TerminationReason::Failed) => "exit",
        Some(TerminationReason::Signal) => "signal",
        Some(TerminationReason::MaxDurationExceeded) => "max_duration",
        Some(TerminationReason::IdleTimeout) => "idle",
        Some(TerminationReason::ShutdownRequested | TerminationReason::DrainRequested) => "stop",
        Some(TerminationReason::AgentUnresponsive) => "agent_unresponsive",
        Some(TerminationReason::InternalError) | None => "error",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_a_declared_cause() {
        use TerminationReason as R;
        assert_eq!(end_cause(Some(R::Completed), None, Some(0)), "exit");
        assert_eq!(end_cause(Some(R::Failed), None, None), "exit");
        assert_eq!(end_cause(Some(R::Failed), None, Some(1)), "oom_kill");
        assert_eq!(end_cause(Some(R::Signal), Some(9), Some(2)), "oom_kill");
        assert_eq!(end_cause(Some(R::Signal), Some(15), Some(0)), "signal");
        assert_eq!(end_cause(Some(R::IdleTimeout), None, None), "idle");
        assert_eq!(end_cause(None, None, None), "error");
        for reason in TerminationReason::ALL {
            for oom in [None, Some(0), Some(1)] {
                let cause = end_cause(Some(reason), Some(9), oom);
                assert!(END_CAUSES.contains(&cause), "{reason}: {cause}");
            }
        }
    }
}
