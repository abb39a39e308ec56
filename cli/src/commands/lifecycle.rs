//! `msb start|stop|drain|kill|wait|rm`.

use anyhow::Result;
use clap::Args;
use hyper::Method;

use super::parse;
use crate::api::{DrainRequest, KillRequest, SandboxInfo, StopRequest, WaitResponse};
use crate::client::{segment, Client};

#[derive(Args, Debug)]
pub struct NameArg {
    /// Sandbox name.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub timeout_secs: u64,
    /// SIGKILL at once.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    pub name: String,
    /// Stop anyway after this many seconds of waiting for exec sessions (default: wait).
    #[arg(long = "timeout", value_name = "SECS")]
    pub timeout_secs: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL for the workload once the sessions are done.
    #[arg(
        short = 't',
        long = "stop-timeout",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub stop_timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    pub name: String,
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL", value_parser = parse::signal)]
    pub signal: i32,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    pub name: String,
    /// Kill the sandbox first if it is running.
    #[arg(short, long)]
    pub force: bool,
}

fn path(name: &str, verb: &str) -> String {
    format!("/v1/sandboxes/{}/{verb}", segment(name))
}

pub async fn start(client: &Client, args: NameArg) -> Result<i32> {
    let info: SandboxInfo = client
        .call::<(), _>(Method::POST, &path(&args.name, "start"), None)
        .await?;
    println!("{}", info.name);
    Ok(0)
}

pub async fn stop(client: &Client, args: StopArgs) -> Result<i32> {
    let request = StopRequest {
        timeout_secs: Some(args.timeout_secs),
        force: args.force,
    };
    let info: SandboxInfo = client
        .call(Method::POST, &path(&args.name, "stop"), Some(&request))
        .await?;
    println!("{}", info.name);
    Ok(0)
}

pub async fn drain(client: &Client, args: DrainArgs) -> Result<i32> {
    let request = DrainRequest {
        timeout_secs: args.timeout_secs,
        stop_timeout_secs: Some(args.stop_timeout_secs),
    };
    let info: SandboxInfo = client
        .call(Method::POST, &path(&args.name, "drain"), Some(&request))
        .await?;
    println!("{}", info.name);
    Ok(0)
}

pub async fn kill(client: &Client, args: KillArgs) -> Result<i32> {
    let request = KillRequest {
        signal: args.signal,
    };
    let info: SandboxInfo = client
        .call(Method::POST, &path(&args.name, "kill"), Some(&request))
        .await?;
    println!("{}", info.name);
    Ok(0)
}

pub async fn wait(client: &Client, args: NameArg) -> Result<i32> {
    let response: WaitResponse = client
        .call::<(), _>(Method::POST, &path(&args.name, "wait"), None)
        .await?;
    match response.exit_code {
        Some(code) => {
            println!("{code}");
            Ok(code)
        }
        // A run that ended without its workload's exit (the sandbox crashed, or the workload
        // never started) has no code to print: 0 would say it succeeded. Say why instead.
        None => {
            let why = response.error.as_deref().unwrap_or("the run recorded none");
            eprintln!(
                "error: sandbox {} is {} without an exit code: {why}",
                response.name, response.status
            );
            Ok(1)
        }
    }
}

pub async fn remove(client: &Client, args: RemoveArgs) -> Result<i32> {
    let mut uri = format!("/v1/sandboxes/{}", segment(&args.name));
    if args.force {
        uri.push_str("?force=true");
    }
    client.call_empty(Method::DELETE, &uri).await?;
    println!("{}", args.name);
    Ok(0)
}
