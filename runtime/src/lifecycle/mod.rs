//! Sandbox lifecycle: statuses, the transition table, termination reasons.

mod reason;
mod state;

pub use reason::{TerminationReason, UnknownReason};
pub use state::{transition, InvalidTransition, Operation, SandboxStatus, UnknownStatus};
