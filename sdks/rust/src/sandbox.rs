//! The sandbox builder, live handles, buffered exec and the metrics stream.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use msb_api::config::{RootfsSource, SandboxConfig, VolumeMount};
use msb_api::{
    CreateSandboxRequest, DrainRequest, ExecRequest, ExecResponse, HistoryResponse, KillRequest,
    MetricsReport, SandboxInfo, StopRequest, WaitResponse,
};

use crate::error::{Error, Operation, Result};
use crate::process::{Process, StreamOptions};
use crate::{sandbox_path, window, Client};

/// What a sandbox started without a command runs: nothing, until it is stopped.
pub const IDLE_COMMAND: [&str; 3] = ["sh", "-c", "while :; do sleep 3600; done"];

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a new sandbox is to be; ends with [`create`](Self::create), [`start`](Self::start) or
/// [`run`](Self::run).
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    client: Client,
    config: SandboxConfig,
    ephemeral: Option<bool>,
}

impl SandboxBuilder {
    pub(crate) fn new(client: Client, name: &str) -> Self {
        Self {
            client,
            config: SandboxConfig::named(name),
            ephemeral: None,
        }
    }

    /// The workload (default for `start`: idle until stopped; required by `run`).
    pub fn command<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.command = argv.into_iter().map(Into::into).collect();
        self
    }
    /// A host directory as the root (read-write); `None`: msb's default root.
    pub fn root(mut self, host_directory: Option<impl Into<std::path::PathBuf>>) -> Self {
        self.config.rootfs = match host_directory {
            Some(path) => RootfsSource::Bind { path: path.into() },
            None => RootfsSource::Default,
        };
        self
    }
    pub fn cpus(mut self, cores: f64) -> Self {
        self.config.cpus = Some(cores);
        self
    }
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.config.memory_mib = Some(mib);
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.env.push((key.into(), value.into()));
        self
    }
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.config.workdir = Some(dir.into());
        self
    }
    /// A host directory at `guest` in the sandbox. (Volumes, quotas and ports: later.)
    pub fn mount(
        mut self,
        host: impl Into<std::path::PathBuf>,
        guest: impl Into<std::path::PathBuf>,
        readonly: bool,
    ) -> Self {
        self.config.volumes.push(VolumeMount {
            host: host.into(),
            volume: None,
            kind: None,
            guest: guest.into(),
            readonly,
            quota_mib: None,
        });
        self
    }
    /// Mounts the host directory `host` at `guest` with a write quota of `quota_mib` MiB
    /// (a host directory's default is 4096).
    pub fn mount_with_quota(
        mut self,
        host: impl Into<std::path::PathBuf>,
        guest: impl Into<std::path::PathBuf>,
        quota_mib: u64,
    ) -> Self {
        self = self.mount(host, guest, false);
        if let Some(last) = self.config.volumes.last_mut() {
            last.quota_mib = Some(quota_mib);
        }
        self
    }
    /// Mounts the named volume `name` (`msb volume create`) at `guest`.
    pub fn volume(
        mut self,
        name: impl Into<String>,
        guest: impl Into<std::path::PathBuf>,
        readonly: bool,
    ) -> Self {
        self.config.volumes.push(VolumeMount {
            host: std::path::PathBuf::new(),
            volume: Some(name.into()),
            kind: None,
            guest: guest.into(),
            readonly,
            quota_mib: None,
        });
        self
    }
    /// Publishes a port: `[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]`, as `msb run -p`
    /// takes it (the bind address defaults to 127.0.0.1).
    pub fn publish(mut self, spec: impl Into<String>) -> Self {
        self.config.published_ports.push(spec.into());
        self
    }
    /// Appends an egress rule, `allow|deny@CIDR[:tcp|udp[:PORTS]]` (first match wins), as
    /// `msb run --net-rule` takes it.
    pub fn net_rule(mut self, rule: impl Into<String>) -> Self {
        self.config.net_rules.push(rule.into());
        self
    }
    /// Size in MiB of the disk holding the writable root's changes (`msb run --root-disk`;
    /// default 4096, sparse): writes past it fail with ENOSPC.
    pub fn root_disk_mib(mut self, mib: u64) -> Self {
        self.config.root_disk_mib = Some(mib);
        self
    }
    /// Frames each of the network's two rings holds (`--net-ring-frames`; default 1024).
    pub fn net_ring_frames(mut self, frames: u32) -> Self {
        self.config.net_ring_frames = Some(frames);
        self
    }
    /// No network: the sandbox keeps only its loopback interface.
    pub fn no_network(mut self) -> Self {
        self.config.no_network = true;
        self
    }
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.config.idle_timeout_secs = Some(after.as_secs());
        self
    }
    pub fn max_duration(mut self, limit: Duration) -> Self {
        self.config.max_duration_secs = Some(limit.as_secs());
        self
    }
    /// Removed by the runtime when its run ends (the default for unnamed sandboxes).
    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.ephemeral = Some(ephemeral);
        self
    }
    /// Sampling interval (at least 100 ms); zero turns metrics off.
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.config.metrics_interval_ms = Some(interval.as_millis() as u64);
        self
    }

    /// The configuration as it will be sent.
    pub fn config(&self) -> SandboxConfig {
        let mut config = self.config.clone();
        config.ephemeral = self.ephemeral.unwrap_or(config.name.is_empty());
        config
    }

    async fn send(&self, config: SandboxConfig, start: bool) -> Result<Sandbox> {
        let request = CreateSandboxRequest {
            config,
            start,
            attach: None,
        };
        let info: SandboxInfo = self
            .client
            .transport()
            .call("POST", "/v1/sandboxes", Some(&request), Operation::Create)
            .await?;
        Ok(Sandbox::new(self.client.clone(), info))
    }

    /// Creates the sandbox without starting it.
    pub async fn create(&self) -> Result<Sandbox> {
        self.send(self.config(), false).await
    }

    /// Creates and starts the sandbox; returns once its workload runs.
    pub async fn start(&self) -> Result<Sandbox> {
        let mut config = self.config();
        if config.command.is_empty() {
            config.command = IDLE_COMMAND.iter().map(|s| s.to_string()).collect();
        }
        self.send(config, true).await
    }

    /// Starts the sandbox with its command and waits for it to end.
    pub async fn run(&self) -> Result<(Sandbox, WaitResponse)> {
        if self.config.command.is_empty() {
            return Err(Error::InvalidArgument(
                "run needs a command: .command([...])".into(),
            ));
        }
        let sandbox = self.start().await?;
        let result = sandbox.wait().await?;
        Ok((sandbox, result))
    }
}

/// A finished process: exit code (128 + signal when a signal ended it) and its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// What a buffered exec may add to its command.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// Fed to stdin (`None`: closed at once).
    pub stdin: Option<Vec<u8>>,
    /// The process is killed after this long.
    pub timeout: Option<Duration>,
}

/// A live handle on a sandbox: every call asks msbd.
#[derive(Debug, Clone)]
pub struct Sandbox {
    client: Client,
    name: String,
    last_info: SandboxInfo,
}

impl Sandbox {
    pub(crate) fn new(client: Client, info: SandboxInfo) -> Self {
        Self {
            client,
            name: info.name.clone(),
            last_info: info,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What msbd said of the sandbox on the last call that told (no request).
    pub fn last_info(&self) -> &SandboxInfo {
        &self.last_info
    }

    async fn post<B: serde::Serialize>(&mut self, verb: &str, body: Option<&B>) -> Result<()> {
        self.last_info = self
            .client
            .transport()
            .call(
                "POST",
                &sandbox_path(&self.name, Some(verb)),
                body,
                Operation::Other,
            )
            .await?;
        Ok(())
    }

    pub async fn inspect(&mut self) -> Result<SandboxInfo> {
        self.last_info = self
            .client
            .transport()
            .call(
                "GET",
                &sandbox_path(&self.name, None),
                None::<&()>,
                Operation::Other,
            )
            .await?;
        Ok(self.last_info.clone())
    }

    /// A new run of the stored command.
    pub async fn start(&mut self) -> Result<()> {
        self.post::<()>("start", None).await
    }

    /// SIGTERM, then SIGKILL after `timeout` (default 10 s; zero kills at once).
    pub async fn stop(&mut self, timeout: Option<Duration>) -> Result<()> {
        let request = StopRequest {
            timeout_secs: timeout.map(|t| t.as_secs()),
            force: timeout == Some(Duration::ZERO),
        };
        self.post("stop", Some(&request)).await
    }

    /// Sends `signal` to the workload (SIGKILL takes the whole sandbox down).
    pub async fn kill(&mut self, signal: i32) -> Result<()> {
        self.post("kill", Some(&KillRequest { signal })).await
    }

    /// No new exec sessions; waits for the running ones (at most `timeout`), then stops with
    /// `stop_timeout` of grace (default 10 s).
    pub async fn drain(
        &mut self,
        timeout: Option<Duration>,
        stop_timeout: Option<Duration>,
    ) -> Result<()> {
        let request = DrainRequest {
            timeout_secs: timeout.map(|t| t.as_secs()),
            stop_timeout_secs: stop_timeout.map(|t| t.as_secs()),
        };
        self.post("drain", Some(&request)).await
    }

    /// Until the run ends; how it ended.
    pub async fn wait(&self) -> Result<WaitResponse> {
        self.client
            .transport()
            .call(
                "POST",
                &sandbox_path(&self.name, Some("wait")),
                None::<&()>,
                Operation::Other,
            )
            .await
    }

    pub async fn remove(&self, force: bool) -> Result<()> {
        self.client.remove(&self.name, force).await
    }

    /// Runs `argv` to its end: its exit code and output (each cut at 16 MiB, flagged).
    pub async fn exec<S: Into<String>>(
        &self,
        argv: impl IntoIterator<Item = S>,
    ) -> Result<ExecOutput> {
        self.exec_with(argv, ExecOptions::default()).await
    }

    pub async fn exec_with<S: Into<String>>(
        &self,
        argv: impl IntoIterator<Item = S>,
        options: ExecOptions,
    ) -> Result<ExecOutput> {
        let request = ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            env: options.env,
            workdir: options.workdir,
            stdin: options.stdin.map(|bytes| BASE64.encode(bytes)),
            timeout_ms: options.timeout.map(|t| (t.as_millis() as u64).max(1)),
        };
        let answer: ExecResponse = self
            .client
            .transport()
            .call(
                "POST",
                &sandbox_path(&self.name, Some("exec")),
                Some(&request),
                Operation::Other,
            )
            .await?;
        let decode = |text: &str| {
            BASE64.decode(text).map_err(|e| Error::Internal {
                status: None,
                message: format!("msbd's output is not base64: {e}"),
            })
        };
        Ok(ExecOutput {
            exit_code: answer.exit_code,
            signal: answer.signal,
            stdout: decode(&answer.stdout)?,
            stderr: decode(&answer.stderr)?,
            stdout_truncated: answer.stdout_truncated,
            stderr_truncated: answer.stderr_truncated,
            timed_out: answer.timed_out,
        })
    }

    /// Starts `argv` with stdin open; its output arrives as it is written.
    pub async fn exec_stream<S: Into<String>>(
        &self,
        argv: impl IntoIterator<Item = S>,
        options: StreamOptions,
    ) -> Result<Process> {
        Process::exec(
            self.client.transport(),
            &self.name,
            argv.into_iter().map(Into::into).collect(),
            options,
        )
        .await
    }

    /// Follows the main workload: its output from now on, its exit; stdin goes to it.
    pub async fn attach(&self) -> Result<Process> {
        Process::attach(self.client.transport(), &self.name).await
    }

    /// The latest sample ([`Error::MetricsDisabled`]; [`Error::MetricsUnavailable`] before the
    /// first).
    pub async fn metrics(&self) -> Result<MetricsReport> {
        self.client
            .transport()
            .call(
                "GET",
                &sandbox_path(&self.name, Some("metrics")),
                None::<&()>,
                Operation::Metrics,
            )
            .await
    }

    /// This sandbox's report every `interval` while it runs.
    pub async fn metrics_stream(&self, interval: Duration) -> Result<MetricsStream> {
        self.client.metrics_stream(interval, Some(&self.name)).await
    }

    /// Stored samples from `since` to `until` (default now), `step` apart (default: msbd's).
    pub async fn metrics_history(
        &self,
        since: SystemTime,
        until: Option<SystemTime>,
        step: Option<Duration>,
    ) -> Result<HistoryResponse> {
        let path = format!(
            "{}?{}",
            sandbox_path(&self.name, Some("history")),
            window(since, until, step)
        );
        self.client
            .transport()
            .call("GET", &path, None::<&()>, Operation::Other)
            .await
    }
}

/// Reports as msbd sends them; [`recv`](Self::recv) is `None` at the end.
#[derive(Debug)]
pub struct MetricsStream {
    body: Incoming,
    pending: Vec<u8>,
}

impl MetricsStream {
    pub(crate) fn new(body: Incoming) -> Self {
        Self {
            body,
            pending: Vec::new(),
        }
    }

    pub async fn recv(&mut self) -> Result<Option<MetricsReport>> {
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| Error::Internal {
                        status: None,
                        message: format!("a metrics line: {e}"),
                    });
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(Error::DaemonUnreachable(format!("the metrics stream: {e}")))
                }
                None => return Ok(None),
            }
        }
    }
}
