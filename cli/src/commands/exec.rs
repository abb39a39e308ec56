//! `msb exec`: buffered, `--stream`, or `-t` (PTY).

use std::io::IsTerminal;

use anyhow::{bail, Result};
use clap::Args;
use msb_protocol::session::ClientRequest;
use msb_protocol::{ExecMode, ExecSpec};

use super::env;
use crate::client::session::{self, SessionOptions};
use crate::client::Client;

#[derive(Args, Debug)]
pub struct ExecArgs {
    pub name: String,
    /// Give the command a pseudo-terminal (stdin forwarded, window size followed).
    #[arg(short, long, conflicts_with = "stream")]
    pub tty: bool,
    /// Forward stdin and stream stdout/stderr as they come, byte for byte (no PTY).
    #[arg(long)]
    pub stream: bool,
    /// Environment variable (repeatable); `-e KEY` takes the value from msb's own environment.
    #[arg(short, long = "env", value_name = "KEY[=VAL]", value_parser = env::env_flag)]
    pub env: Vec<(String, String)>,
    /// Environment variables from a file of KEY=VALUE lines (repeatable; `-e` wins).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<std::path::PathBuf>,
    /// Working directory in the sandbox.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn exec(client: &Client, args: ExecArgs) -> Result<i32> {
    if args.command.is_empty() {
        bail!("no command given (msb exec NAME -- CMD ...)");
    }
    let mode = if args.tty {
        let (rows, cols) = session::terminal_size().unwrap_or((24, 80));
        ExecMode::Pty { rows, cols }
    } else if args.stream {
        ExecMode::Stream
    } else {
        ExecMode::Buffered
    };
    let spec = ExecSpec {
        argv: args.command,
        env: env::environment(&args.env_files, args.env)?,
        workdir: args.workdir,
        mode,
    };
    let options = SessionOptions {
        forward_stdin: args.tty || args.stream,
        pty: args.tty && std::io::stdin().is_terminal(),
        buffer_output: mode == ExecMode::Buffered,
    };
    let io = session::open(client, &args.name).await?;
    Ok(session::run(io, ClientRequest::Exec(spec), options)
        .await?
        .code)
}
