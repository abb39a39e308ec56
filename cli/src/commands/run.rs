//! `msb run` and `msb create`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hyper::Method;
use msb_api::config::{RootfsSource, SandboxConfig, VolumeMount};
use msb_protocol::session::ClientRequest;

use super::{env, parse};
use crate::api::{AttachMode, CreateSandboxRequest, SandboxInfo};
use crate::client::session::{self, SessionOptions};
use crate::client::{segment, Client};

/// What a sandbox is, shared by `run` and `create`.
#[derive(Args, Debug)]
pub struct SandboxFlags {
    /// Name (unnamed sandboxes are ephemeral: removed when their run ends).
    #[arg(short, long)]
    pub name: Option<String>,
    /// CPU quota in cores (e.g. 1, 0.5).
    #[arg(short, long, value_parser = parse::cpus)]
    pub cpus: Option<f64>,
    /// Memory limit: 512M, 1G, or a number of MiB.
    #[arg(short, long, value_parser = parse::memory_mib)]
    pub memory: Option<u64>,
    /// Environment variable for the workload (repeatable); `-e KEY` takes the value from msb's
    /// own environment, so that it need not be on the command line.
    #[arg(short, long = "env", value_name = "KEY[=VAL]", value_parser = env::env_flag)]
    pub env: Vec<(String, String)>,
    /// Environment variables from a file of KEY=VALUE lines (`#` comments, blank lines;
    /// repeatable; `-e` wins over a file).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Working directory of the workload (absolute path in the sandbox).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Bind mount HOST:GUEST[:ro] (repeatable).
    #[arg(short, long = "volume", value_name = "HOST:GUEST[:ro][,quota=MiB]", value_parser = parse::volume)]
    pub volumes: Vec<VolumeMount>,
    /// Use a host directory as the root filesystem (read-write).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Label K=V (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,
    /// Stop the sandbox after this long (e.g. 30s, 10m).
    #[arg(long, value_parser = parse::duration_secs)]
    pub max_duration: Option<u64>,
    /// Stop the sandbox after this long without agent activity (exec sessions and their I/O).
    #[arg(long, value_parser = parse::duration_secs)]
    pub idle_timeout: Option<u64>,
    /// Metrics sampling interval (e.g. 500ms, 2s; at least 100ms; 0 disables metrics).
    #[arg(long, value_parser = parse::metrics_interval_ms)]
    pub metrics_interval: Option<u64>,
    /// Publish a guest port on the host (repeatable): `[BIND_ADDR:]HOST_PORT:GUEST_PORT[/udp]`,
    /// ranges as `8000-8009:80-89`; binds 127.0.0.1 unless an address is given.
    #[arg(short = 'p', long = "publish", value_name = "[ADDR:]HOST:GUEST[/udp]", value_parser = parse::published_port)]
    pub publish: Vec<msb_net::PortSpec>,
    /// Egress rule (repeatable, first match wins): `allow|deny@CIDR|any|host[:tcp|udp[:PORTS]]`.
    #[arg(long = "net-rule", value_name = "allow|deny@TARGET[:PROTO[:PORTS]]", value_parser = parse::net_rule)]
    pub net_rules: Vec<String>,
    /// No network: only `lo` in the sandbox.
    #[arg(long, conflicts_with_all = ["publish", "net_rules"])]
    pub no_network: bool,
    /// Frames each of the network's two rings holds (guest to stack, stack to guest; default
    /// 1024, 8 to 65536): a full ring drops frames and counts them.
    #[arg(long, value_name = "FRAMES", conflicts_with = "no_network")]
    pub net_ring_frames: Option<u32>,
    /// Size of the disk holding the writable root's changes (e.g. 512M, 10G; default 4G,
    /// sparse): writes past it fail with ENOSPC. Ignored, with a warning, with --rootfs.
    #[arg(long, value_name = "SIZE", value_parser = parse::size_mib)]
    pub root_disk: Option<u64>,
    /// The command and its arguments (default: /bin/sh).
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl SandboxFlags {
    fn into_config(self) -> Result<SandboxConfig> {
        for spec in self.publish.iter().filter(|spec| spec.is_exposed()) {
            eprintln!(
                "warning: -p {spec} listens on {}, reachable beyond this host",
                spec.bind
            );
        }
        let mut root_disk_mib = self.root_disk;
        if self.rootfs.is_some() && root_disk_mib.is_some() {
            eprintln!(
                "warning: --root-disk is ignored with --rootfs: a host directory root is \
                 written in place"
            );
            root_disk_mib = None;
        }
        let rootfs = match self.rootfs {
            Some(path) => {
                let canonical = std::fs::canonicalize(&path)
                    .map_err(|e| anyhow::anyhow!("rootfs directory {}: {e}", path.display()))?;
                RootfsSource::Bind { path: canonical }
            }
            None => RootfsSource::Default,
        };
        Ok(SandboxConfig {
            ephemeral: self.name.is_none(),
            name: self.name.unwrap_or_default(),
            command: self.command,
            env: env::environment(&self.env_files, self.env)?,
            workdir: self.workdir,
            cpus: self.cpus,
            memory_mib: self.memory,
            volumes: self.volumes,
            rootfs,
            labels: self.labels.into_iter().collect::<BTreeMap<_, _>>(),
            max_duration_secs: self.max_duration,
            idle_timeout_secs: self.idle_timeout,
            metrics_interval_ms: self.metrics_interval,
            published_ports: self.publish.iter().map(ToString::to_string).collect(),
            net_rules: self.net_rules,
            no_network: self.no_network,
            root_disk_mib,
            net_ring_frames: self.net_ring_frames,
        })
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Start and return at once, printing the sandbox's name.
    #[arg(short, long)]
    pub detach: bool,
    /// Give the command a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Do not forward stdin.
    #[arg(long)]
    pub no_stdin: bool,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub sandbox: SandboxFlags,
}

pub async fn run(client: &Client, args: RunArgs) -> Result<i32> {
    if args.detach && args.tty {
        anyhow::bail!("--tty and --detach cannot be combined");
    }
    let config = args.sandbox.into_config()?;
    let attach = if args.detach {
        None
    } else if args.tty {
        let (rows, cols) = session::terminal_size().unwrap_or((24, 80));
        Some(AttachMode::Pty { rows, cols })
    } else {
        Some(AttachMode::Stream)
    };
    let request = CreateSandboxRequest {
        config,
        start: true,
        attach,
    };
    if args.detach {
        let info: SandboxInfo = client
            .call(Method::POST, "/v1/sandboxes", Some(&request))
            .await?;
        println!("{}", info.name);
        return Ok(0);
    }
    let options = SessionOptions {
        forward_stdin: !args.no_stdin,
        pty: args.tty && std::io::stdin().is_terminal(),
        buffer_output: false,
    };
    // One request creates, starts and opens the session.
    let (info, io) = session::create_attached(client, &request).await?;
    let path = format!("/v1/sandboxes/{}", segment(&info.name));
    // The run must settle before msb returns (an ephemeral sandbox is removed first): ask msbd
    // to wait for that now, alongside the session, so that the answer comes as soon as the
    // sandbox is gone rather than one more request after the session ends.
    let settled = {
        let client = client.clone();
        let wait = format!("{path}/wait");
        tokio::spawn(async move {
            client
                .call::<(), crate::api::WaitResponse>(Method::POST, &wait, None)
                .await
        })
    };
    let end = match session::run(io, ClientRequest::Attach, options).await {
        Ok(end) => end,
        Err(e) => {
            let settled = settled.await.ok();
            // msbd's answer to the wait broke off too (no answer at all, not an error it
            // sent): msbd itself went away. The run goes on under its supervisor.
            if let Some(Err(wait)) = &settled {
                if wait.downcast_ref::<crate::client::ApiFailure>().is_none() {
                    return Err(anyhow::anyhow!(
                        "msbd went away during the run ({e}); sandbox {} may still be running: \
                         `msb ls` starts msbd again and shows it",
                        info.name
                    ));
                }
            }
            // The settled state says why, even for an ephemeral sandbox that is gone by now.
            let settled = settled.and_then(Result::ok);
            return Err(explain_failed_run(client, &info.name, e, settled).await);
        }
    };
    let _ = settled.await;
    if end.start_failed && !info.ephemeral {
        // The sandbox never ran its command: do not leave it behind.
        let _ = client
            .call_empty(Method::DELETE, &format!("{path}?force=true"))
            .await;
    }
    Ok(end.code)
}

pub async fn create(client: &Client, args: CreateArgs) -> Result<i32> {
    let mut config = args.sandbox.into_config()?;
    if config.ephemeral {
        anyhow::bail!("msb create needs a name (-n NAME): an unnamed sandbox would be removed as soon as it stops");
    }
    config.ephemeral = false;
    let request = CreateSandboxRequest {
        config,
        start: false,
        attach: None,
    };
    let info: SandboxInfo = client
        .call(Method::POST, "/v1/sandboxes", Some(&request))
        .await?;
    println!("{}", info.name);
    Ok(0)
}

/// When an attached session breaks, the run's record usually says why (the runtime's error
/// rather than "the connection closed").
async fn explain_failed_run(
    client: &Client,
    name: &str,
    error: anyhow::Error,
    settled: Option<crate::api::WaitResponse>,
) -> anyhow::Error {
    if let Some(reason) = settled.and_then(|s| s.error) {
        return anyhow::anyhow!("sandbox {name} failed: {reason}");
    }
    let path = format!("/v1/sandboxes/{}", segment(name));
    let _ = client
        .call::<(), crate::api::WaitResponse>(Method::POST, &format!("{path}/wait"), None)
        .await;
    match client
        .call::<(), SandboxInfo>(Method::GET, &path, None)
        .await
    {
        Ok(info) => match info.runs.last().and_then(|run| run.error.clone()) {
            Some(reason) => anyhow::anyhow!("sandbox {name} failed: {reason}"),
            None => error,
        },
        // An ephemeral sandbox is gone by now; its supervisor log went with it.
        Err(_) => error,
    }
}
