//! The supervisor: one process per running sandbox.
//!
//! msbd spawns it (`msbd supervisor ...`) with its whole [`SupervisorConfig`] on an inherited
//! fd. It builds the sandbox through the backend, talks to `msb-agentd` over the agent
//! channel, serves exec/attach/control/watch sessions on `<sandbox>/supervisor.sock`, enforces
//! `--max-duration` and `--idle-timeout`, and records the run in `<sandbox>/run.json`. It is
//! started in its own session so it outlives msbd; msbd reattaches through the socket.
//!
//! Files: [`state`] holds what the tasks share, [`agent`] the agent channel, [`clients`] the
//! socket sessions, [`run`] the run from start to exit, [`sampler`] the measurements and
//! [`outbox`] the samples msbd has not yet stored.

mod agent;
mod clients;
pub mod outbox;
mod run;
pub mod sampler;
mod state;
#[cfg(test)]
mod tests;

pub use run::{run_supervisor, supervisor_runtime};
