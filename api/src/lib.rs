//! `msb-api`: the msbd HTTP/JSON API contract: request and response types, the sandbox
//! configuration and lifecycle vocabulary they carry, and the OpenAPI document generated from
//! them (committed as `docs/openapi.json`, checked by a test).
//!
//! Everything the CLI and the SDKs know about msbd is here, and nothing of the runtime: the
//! runtime and msbd (crate `msb-daemon`) depend on this crate, never the other way.
//!
//! - [`config`]: what a sandbox is asked to be, and its validation.
//! - [`lifecycle`]: statuses, the one transition table, termination reasons, end causes.
//! - [`doctor`]: the checks `msb doctor` shows, some of which `msb-supervisor --doctor` answers.
//! - the request and response bodies, [`MetricsReport`] derived from the instrument declaration.

pub mod config;
pub mod contract;
pub mod df;
pub mod doctor;
pub mod exec;
mod history;
pub mod lifecycle;
mod metrics;
pub mod operations;
pub mod requests;
pub mod volumes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use config::SandboxConfig;
use lifecycle::{SandboxStatus, TerminationReason};

pub use df::{DiskUsageReport, DiskUsageTotals, SandboxDiskUsage, VolumeDiskUsage};
pub use exec::{
    DrainRequest, ExecRequest, ExecResponse, SessionEvent, SessionExec, SessionRequest,
};
pub use history::{ExportRequest, ExportResponse, HistoryResponse, SqlRequest, SqlResponse};
pub use metrics::{CapacityReport, MetricsReport, SandboxHeadroom};
pub use operations::{openapi_json, ApiDoc};
pub use volumes::{CreateVolumeRequest, VolumeInfo, VolumeKind};

/// One chunk of output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch when the supervisor received the chunk.
    pub ts_ms: u64,
    /// `main` for the workload, `exec-N` for exec session N.
    pub source: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub data: String,
}

/// The `Upgrade` token for exec and attach sessions (framed `msb_protocol::session` messages
/// flow both ways after the 101 response).
pub const SESSION_UPGRADE: &str = "msb-session";
/// Headers of the `101` answer to an attached create (`POST /v1/sandboxes` with
/// `Upgrade: msb-session`): the sandbox's name, and `true` when it is ephemeral.
pub const SANDBOX_NAME_HEADER: &str = "x-msb-sandbox";
pub const SANDBOX_EPHEMERAL_HEADER: &str = "x-msb-ephemeral";

/// How a started sandbox's workload is wired.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttachMode {
    /// Pipes; stdin forwarded from the attaching client.
    Stream,
    /// A pseudo-terminal of this size.
    Pty { rows: u16, cols: u16 },
}

/// Request bodies refuse unknown fields (a misspelt field is an error, not a silent default);
/// the document says so with `additionalProperties: false`.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    /// An empty `name` asks msbd to pick one and makes the sandbox ephemeral.
    pub config: SandboxConfig,
    /// Start it at once (`msb run`) rather than leave it Created (`msb create`).
    pub start: bool,
    /// Hold the workload until a client attaches, wired this way (foreground `msb run`).
    /// Absent: the workload starts at once with stdin closed (detached).
    pub attach: Option<AttachMode>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct RunInfo {
    pub id: String,
    pub run_number: i32,
    pub supervisor_pid: Option<i32>,
    /// Host pid of the sandbox's PID 1 (msb-agentd).
    pub init_pid: Option<i32>,
    /// Pid of the workload inside the sandbox.
    pub workload_pid: Option<i32>,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub termination_reason: Option<TerminationReason>,
    pub error: Option<String>,
    /// Processes the kernel's OOM killer ended during the run (`null`: unknown or running).
    #[serde(default)]
    pub oom_kills: Option<u64>,
    /// Why the run ended, as the `reason` label of `msb.sandbox.runs.ended`.
    /// One of `lifecycle::END_CAUSES` (the document lists them as an enum).
    #[serde(default)]
    pub end_cause: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct SandboxInfo {
    pub id: String,
    pub name: String,
    pub status: SandboxStatus,
    pub ephemeral: bool,
    /// RFC 3339.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub config: SandboxConfig,
    /// Oldest first.
    pub runs: Vec<RunInfo>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Seconds between SIGTERM and SIGKILL; default 10, at most 3600.
    pub timeout_secs: Option<u64>,
    /// SIGKILL at once.
    #[serde(default)]
    pub force: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// Signal number, 1 to 64.
    pub signal: i32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct WaitResponse {
    pub name: String,
    pub status: SandboxStatus,
    /// The workload's exit code (128 + signal when a signal ended it).
    pub exit_code: Option<i32>,
    pub termination_reason: Option<TerminationReason>,
    /// Why the run failed, when the runtime knows (e.g. the sandbox could not be built).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct ServerStatus {
    pub pid: u32,
    pub version: String,
    pub msb_home: String,
    pub socket: String,
    pub uptime_secs: f64,
    pub sandboxes_total: usize,
    pub sandboxes_active: usize,
    /// `host:port` of the Prometheus endpoint (`/metrics`), when it is listening.
    pub prometheus_address: Option<String>,
    /// Device and inode of the executable msbd was started from (clients restart an msbd
    /// whose binary has since been replaced).
    pub executable_dev: Option<u64>,
    pub executable_ino: Option<u64>,
    /// The OTLP exporters configured (none when no endpoint is set) and their health.
    #[serde(default)]
    pub otlp: Vec<OtlpExportStatus>,
    /// Supervisors kept ready ahead of time, and how starts were served.
    #[serde(default)]
    pub warm_supervisors: WarmStatus,
}

/// The warm supervisor pool.
#[derive(Serialize, Deserialize, Debug, Clone, Default, ToSchema)]
pub struct WarmStatus {
    /// How many msbd keeps ready (`MSB_WARM_SUPERVISORS`, `[sandboxes] warm_supervisors`).
    pub target: usize,
    /// How many are ready now.
    pub idle: usize,
    /// Starts since msbd started that a warm supervisor served.
    pub warm_starts: usize,
    /// Starts that found none ready and spawned a supervisor.
    pub cold_starts: usize,
    /// Warm starts that took the sandbox their supervisor booted ahead of time
    /// (`[sandboxes] boot_ahead`).
    #[serde(default)]
    pub booted_starts: usize,
    /// Root disks of ephemeral runs handed on to a supervisor spawned since (emptied, instead
    /// of a fresh copy of the template).
    #[serde(default)]
    pub disks_handed_on: usize,
}

/// One OTLP exporter's configuration and counters since msbd started.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct OtlpExportStatus {
    /// `metrics` or `traces`.
    pub signal: String,
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    pub protocol: String,
    pub succeeded: u64,
    pub failed: u64,
    /// Data points or spans that will never reach the collector.
    pub dropped: u64,
    /// RFC 3339 time of the last successful export.
    pub last_success: Option<String>,
    /// Bytes waiting in the queue for the collector.
    pub queued_bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct StoreHealth {
    pub path: String,
    pub schema_version: i64,
    pub sandboxes: u64,
    pub file_bytes: Option<u64>,
}

/// The values of [`ErrorBody::kind`].
pub const ERROR_KINDS: [&str; 7] = [
    "invalid",
    "forbidden",
    "not_found",
    "conflict",
    "unprocessable",
    "start_failed",
    "internal",
];

/// Every error response.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct ErrorBody {
    /// One line naming what was wrong.
    pub error: String,
    /// One of [`ERROR_KINDS`]: `invalid` (400: the request breaks a constraint of the
    /// document), `forbidden` (403: the caller is neither the home's owner nor root, answered
    /// before any operation), `not_found` (404), `conflict` (409: the sandbox's state or a taken name),
    /// `unprocessable` (422: the request is as the document says, but cannot be carried out
    /// here: a host path that does not exist, an empty window, SQL that does not run),
    /// `start_failed` (422: the workload could not start), `internal` (500).
    pub kind: String,
    /// For `start_failed`: the exit code a shell would give (127 command not found, 126 not
    /// executable).
    pub exit_code: Option<i32>,
}
