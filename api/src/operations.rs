//! The API's operations, contract first: each is declared here, once, with its path, method,
//! parameters, bodies and answers, and the OpenAPI document is generated from these
//! declarations and the types they name. msbd's router (`msb-daemon`, `routes/mod.rs`) serves
//! exactly these operations (a test there compares its route table with this document); the
//! functions below are declarations only, never called.

use serde::Deserialize;
use utoipa::OpenApi;

#[allow(unused_imports)]
use crate::{
    CapacityReport, CreateSandboxRequest, DrainRequest, ErrorBody, ExecRequest, ExecResponse,
    ExportRequest, ExportResponse, HistoryResponse, KillRequest, LogEntry, MetricsReport,
    SandboxInfo, ServerStatus, SqlRequest, SqlResponse, StopRequest, StoreHealth, WaitResponse,
};

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Include sandboxes that are not running.
    #[serde(default)]
    pub all: bool,
}

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Kill the sandbox first if it is running.
    #[serde(default)]
    pub force: bool,
}

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N entries of what exists now.
    pub tail: Option<usize>,
    /// Keep the response open and send new entries until the sandbox stops.
    #[serde(default)]
    pub follow: bool,
}

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Include sandboxes whose run has ended (their terminal sample).
    #[serde(default)]
    pub all: bool,
}

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Milliseconds between reports (100 to 3600000; default 1000).
    pub interval_ms: Option<u64>,
    /// Only this sandbox.
    pub name: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Deserialize, Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Start, ms since the Unix epoch.
    pub since_ms: i64,
    /// End, ms since the Unix epoch; default now.
    pub until_ms: Option<i64>,
    /// Step in ms, at least 100; default: the round step that gives 100 to 300 points over
    /// the window, never finer than the sampling interval (so a short window returns the raw
    /// samples). A step that would give more than 100000 points is coarsened to fit (the
    /// answer's `step_ms` says which was used).
    pub step_ms: Option<i64>,
}

/// Operations served by `routes/server.rs`.
pub mod server {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(get, operation_id = "server_status", path = "/v1/server", responses((status = 200, body = ServerStatus), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn status() {}

    #[utoipa::path(post, operation_id = "server_shutdown", path = "/v1/server/shutdown", responses((status = 202, description = "msbd stops; running sandboxes keep running")))]
    pub fn shutdown() {}

    #[utoipa::path(get, operation_id = "health", path = "/v1/health", responses((status = 200, body = StoreHealth), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn health() {}
}

/// Operations served by `routes/sandboxes.rs`.
pub mod sandboxes {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(get, operation_id = "list_sandboxes", path = "/v1/sandboxes", params(ListQuery), responses((status = 200, body = Vec<SandboxInfo>), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn list() {}

    #[utoipa::path(post, operation_id = "create_sandbox", path = "/v1/sandboxes", request_body = CreateSandboxRequest,
        responses(
            (status = 201, body = SandboxInfo, links(
                ("inspect" = (operation_id = "inspect_sandbox", parameters(("name" = "$response.body#/name")))),
                ("start" = (operation_id = "start_sandbox", parameters(("name" = "$response.body#/name")))),
                ("stop" = (operation_id = "stop_sandbox", parameters(("name" = "$response.body#/name")))),
                ("kill" = (operation_id = "kill_sandbox", parameters(("name" = "$response.body#/name")))),
                ("wait" = (operation_id = "wait_sandbox", parameters(("name" = "$response.body#/name")))),
                ("metrics" = (operation_id = "sandbox_metrics", parameters(("name" = "$response.body#/name")))),
                ("history" = (operation_id = "sandbox_history", parameters(("name" = "$response.body#/name")))),
                ("remove" = (operation_id = "remove_sandbox", parameters(("name" = "$response.body#/name")))),
            )),
            (status = 101, description = "With `Upgrade: msb-session` and `attach`: the started sandbox's session on this connection, as `GET /v1/sandboxes/{name}/session` gives it (one request instead of two); headers `x-msb-sandbox` (name) and `x-msb-ephemeral`"),
            (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody),
            (status = 422, description = "A host path (`rootfs.path`, `volumes[].host`) does not exist on msbd's host (`unprocessable`), or the workload could not start (`start_failed`, with `exit_code`)", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn create() {}

    #[utoipa::path(get, operation_id = "inspect_sandbox", path = "/v1/sandboxes/{name}", params(("name" = String, Path)),
        responses((status = 200, body = SandboxInfo), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn inspect() {}

    #[utoipa::path(delete, operation_id = "remove_sandbox", path = "/v1/sandboxes/{name}", params(("name" = String, Path), RemoveQuery),
        responses((status = 204, description = "Removed"), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is running and `force` is not set", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn remove() {}
}

/// Operations served by `routes/lifecycle.rs`.
pub mod lifecycle {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(post, operation_id = "start_sandbox", path = "/v1/sandboxes/{name}/start", params(("name" = String, Path)),
        responses((status = 200, body = SandboxInfo), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is already running", body = ErrorBody), (status = 422, description = "The workload could not start (`start_failed`, with `exit_code`)", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn start() {}

    #[utoipa::path(post, operation_id = "stop_sandbox", path = "/v1/sandboxes/{name}/stop", params(("name" = String, Path)), request_body = StopRequest,
        responses((status = 200, body = SandboxInfo), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn stop() {}

    #[utoipa::path(post, operation_id = "kill_sandbox", path = "/v1/sandboxes/{name}/kill", params(("name" = String, Path)), request_body = KillRequest,
        responses((status = 200, body = SandboxInfo), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is not running", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn kill() {}

    #[utoipa::path(post, operation_id = "wait_sandbox", path = "/v1/sandboxes/{name}/wait", params(("name" = String, Path)),
        responses((status = 200, body = WaitResponse), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn wait() {}
}

/// Operations served by `routes/logs.rs`.
pub mod logs {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(get, operation_id = "sandbox_logs", path = "/v1/sandboxes/{name}/logs", params(("name" = String, Path), LogsQuery),
        responses((status = 200, description = "JSON Lines, one LogEntry per line: the rotated log (`output.1.jsonl`) then the current one", body = LogEntry, content_type = "application/x-ndjson",
                   headers(("x-msb-log-dropped-bytes" = u64, description = "Bytes of older output the log's cap dropped (rotated out twice) before the oldest entry kept"))),
                  (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn logs() {}
}

/// Operations served by `routes/session.rs`.
pub mod session {
    #[allow(unused_imports)]
    use super::*;

    /// An exec or attach session on this connection, in one of two framings, chosen by the
    /// `Upgrade` header:
    ///
    /// - `msb-session-json` (for SDKs): newline-delimited JSON both ways, bytes in standard
    ///   base64. The client's first line opens the session: `{"exec": SessionExec}` runs a new
    ///   process, `{"attach": {}}` follows the main workload; then `{"stdin": "<b64>"}`,
    ///   `{"stdin_eof": true}`, `{"resize": {"rows": R, "cols": C}}`, `{"signal": N}`
    ///   (schema `SessionRequest`). msbd answers with `SessionEvent` lines: an exec's first is
    ///   `{"started": {"pid": P}}` or `{"exec_failed": {"kind", "message"}}`; then
    ///   `{"output": {"stream": "stdout"|"stderr", "data": "<b64>"}}` as the process writes, and
    ///   last `{"exited": {"code", "signal"}}`; `{"error": "..."}` ends a failed session. A
    ///   client that closes the connection before the process ends kills it (SIGKILL).
    /// - `msb-session` (the CLI): the supervisor's framed protocol (`msb_protocol::session`,
    ///   length-prefixed postcard), relayed as is.
    ///
    /// A draining sandbox accepts no new sessions (409).
    #[utoipa::path(get, operation_id = "sandbox_session", path = "/v1/sandboxes/{name}/session", params(("name" = String, Path)),
        responses((status = 101, description = "Switching to the framing the `Upgrade` header asked for (`msb-session-json`: SessionRequest lines in, SessionEvent lines out)"), (status = 400, description = "The request lacks `Upgrade: msb-session-json` or `Upgrade: msb-session`", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is not running, or is draining", body = ErrorBody)))]
    pub fn session() {}
}

/// Operations served by `routes/volumes.rs`.
pub mod volumes {
    #[allow(unused_imports)]
    use super::*;
    use crate::{CreateVolumeRequest, VolumeInfo};

    #[utoipa::path(get, operation_id = "list_volumes", path = "/v1/volumes", responses((status = 200, body = Vec<VolumeInfo>)))]
    pub fn list() {}

    #[utoipa::path(post, operation_id = "create_volume", path = "/v1/volumes", request_body = CreateVolumeRequest,
        responses((status = 201, body = VolumeInfo, links(
                ("inspect" = (operation_id = "inspect_volume", parameters(("name" = "$response.body#/name")))),
                ("remove" = (operation_id = "remove_volume", parameters(("name" = "$response.body#/name")))),
            )),
            (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody),
            (status = 409, description = "A volume of this name exists", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody),
            (status = 422, description = "The disk image does not fit on msbd's host, or mkfs.ext4 failed", body = ErrorBody), (status = 500, description = "msbd failed (the store, the host's disk)", body = ErrorBody)))]
    pub fn create() {}

    #[utoipa::path(get, operation_id = "inspect_volume", path = "/v1/volumes/{name}", params(("name" = String, Path)),
        responses((status = 200, body = VolumeInfo), (status = 404, description = "No volume has this name", body = ErrorBody)))]
    pub fn inspect() {}

    #[utoipa::path(delete, operation_id = "remove_volume", path = "/v1/volumes/{name}", params(("name" = String, Path)),
        responses((status = 204, description = "Removed with its content"), (status = 404, description = "No volume has this name", body = ErrorBody), (status = 409, description = "A sandbox mounts the volume", body = ErrorBody), (status = 500, description = "msbd failed (the store, the host's disk)", body = ErrorBody)))]
    pub fn remove() {}
}

/// Operations served by `routes/df.rs`.
pub mod df {
    #[allow(unused_imports)]
    use super::*;
    use crate::DiskUsageReport;

    /// What each sandbox and volume takes on msbd's host (`msb df`).
    #[utoipa::path(get, operation_id = "disk_usage", path = "/v1/df", responses((status = 200, body = DiskUsageReport)))]
    pub fn disk_usage() {}
}

/// Operations served by `routes/exec.rs`.
pub mod exec {
    #[allow(unused_imports)]
    use super::*;

    /// Runs a process in the sandbox and answers once it has ended, with its exit status and
    /// both outputs (base64; each cut at 16 MiB, flagged `stdout_truncated`/`stderr_truncated`).
    #[utoipa::path(post, operation_id = "exec", path = "/v1/sandboxes/{name}/exec", params(("name" = String, Path)), request_body = ExecRequest,
        responses((status = 200, body = ExecResponse), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is not running, or is draining", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 422, description = "The command could not start (`start_failed`, with `exit_code`: 127 not found, 126 not executable)", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn exec() {}

    /// Refuses new exec sessions at once (409 for `exec` and `session`; the sandbox is
    /// `Draining`), waits for the running ones to end (at most `timeout_secs`), then stops the
    /// sandbox as `stop` does (SIGTERM, SIGKILL after `stop_timeout_secs`). The run ends with
    /// `termination_reason` `DrainRequested`. Answers once the sandbox is down.
    #[utoipa::path(post, operation_id = "drain_sandbox", path = "/v1/sandboxes/{name}/drain", params(("name" = String, Path)), request_body = DrainRequest,
        responses((status = 200, body = SandboxInfo), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "The sandbox is not running", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn drain() {}
}

/// Operations served by `routes/metrics.rs`.
pub mod metrics {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(get, operation_id = "list_metrics", path = "/v1/metrics", params(MetricsQuery), responses((status = 200, body = Vec<MetricsReport>), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn list() {}

    #[utoipa::path(get, operation_id = "sandbox_metrics", path = "/v1/sandboxes/{name}/metrics", params(("name" = String, Path)),
        responses((status = 200, body = MetricsReport), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 409, description = "No sample yet, or metrics are off for the sandbox", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn one() {}

    #[utoipa::path(get, operation_id = "stream_metrics", path = "/v1/metrics/stream", params(StreamQuery),
        responses((status = 200, description = "JSON Lines: one MetricsReport per sandbox per interval", body = MetricsReport, content_type = "application/x-ndjson"),
                  (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn stream() {}

    #[utoipa::path(get, operation_id = "capacity", path = "/v1/capacity", responses((status = 200, body = CapacityReport), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn capacity() {}
}

/// Operations served by `routes/history.rs`.
pub mod history {
    #[allow(unused_imports)]
    use super::*;

    #[utoipa::path(get, operation_id = "sandbox_history", path = "/v1/sandboxes/{name}/history", params(("name" = String, Path), WindowQuery),
        responses((status = 200, body = HistoryResponse), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 422, description = "The window is empty: `until_ms` (default now) is not after `since_ms`", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn sandbox() {}

    #[utoipa::path(get, operation_id = "fleet_history", path = "/v1/history/fleet", params(WindowQuery),
        responses((status = 200, body = HistoryResponse), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 422, description = "The window is empty: `until_ms` (default now) is not after `since_ms`", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn fleet() {}

    #[utoipa::path(post, operation_id = "sql", path = "/v1/sql", request_body = SqlRequest,
        responses((status = 200, body = SqlResponse), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 422, description = "The statement does not parse, is not read-only, fails, or returns too many rows", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn sql() {}

    #[utoipa::path(post, operation_id = "export_history", path = "/v1/sandboxes/{name}/export", params(("name" = String, Path)), request_body = ExportRequest,
        responses((status = 200, body = ExportResponse), (status = 400, description = "The request breaks a constraint of this document (`kind`: `invalid`; the message names the field)", body = ErrorBody), (status = 404, description = "No sandbox has this name", body = ErrorBody), (status = 415, description = "The body is not `application/json`", body = ErrorBody), (status = 422, description = "The window is empty, or the file directory does not exist on msbd host", body = ErrorBody), (status = 500, description = "msbd failed (the store, a supervisor)", body = ErrorBody)))]
    pub fn export() {}
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "msbd API",
        description = "The msb daemon's API, served over $MSB_HOME/msbd.sock."
    ),
    paths(
        server::status,
        server::shutdown,
        server::health,
        sandboxes::list,
        sandboxes::create,
        sandboxes::inspect,
        sandboxes::remove,
        lifecycle::start,
        lifecycle::stop,
        lifecycle::kill,
        lifecycle::wait,
        logs::logs,
        session::session,
        exec::exec,
        exec::drain,
        metrics::list,
        metrics::one,
        metrics::stream,
        metrics::capacity,
        history::sandbox,
        history::fleet,
        history::sql,
        history::export,
        volumes::list,
        volumes::create,
        volumes::inspect,
        volumes::remove,
        df::disk_usage,
    ),
    components(schemas(
        crate::LogEntry,
        crate::config::VolumeMount,
        crate::config::RootfsSource,
        crate::exec::SessionRequest,
        crate::exec::SessionEvent,
    ))
)]
pub struct ApiDoc;

/// The document as committed in `docs/openapi.json`: the declarations above completed with
/// the constraints msbd enforces ([`crate::contract::document`]).
pub fn openapi_json() -> String {
    let mut json = serde_json::to_string_pretty(&crate::contract::document())
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// Every operation of the document as `(METHOD, path)`, in path order.
pub fn operations() -> Vec<(&'static str, String)> {
    let doc = ApiDoc::openapi();
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                out.push((method, path.clone()));
            }
        }
    }
    out
}
