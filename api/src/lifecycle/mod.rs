//! Sandbox lifecycle: statuses, the transition table, termination reasons.

mod reason;
mod state;

pub use reason::{end_cause, TerminationReason, UnknownReason, END_CAUSES};
pub use state::{transition, InvalidTransition, Operation, SandboxStatus, UnknownStatus};
