//! The `msb` command line: one file per group of verbs, all talking to msbd through
//! [`crate::client`].

mod doctor;
mod env;
mod exec;
mod history;
mod lifecycle;
mod list;
mod logs;
mod metrics;
pub mod parse;
mod run;
mod server;
mod volume;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::client::Client;

#[derive(Parser, Debug)]
#[command(
    name = "msb",
    version,
    about = "Run untrusted code in sandboxes, and see everything they do."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start a sandbox, attached to its command (or detached with -d).
    Run(run::RunArgs),
    /// Create a sandbox without starting it.
    Create(run::CreateArgs),
    /// Start a stopped sandbox with its stored command.
    Start(lifecycle::NameArg),
    /// Stop a sandbox: SIGTERM to its workload, SIGKILL after the timeout.
    Stop(lifecycle::StopArgs),
    /// Refuse new exec sessions, wait for the running ones to end, then stop the sandbox.
    Drain(lifecycle::DrainArgs),
    /// Send a signal to a sandbox's workload (SIGKILL takes the whole sandbox down).
    Kill(lifecycle::KillArgs),
    /// Block until a sandbox's run ends; print and return its exit code (a run that ended without
    /// one, e.g. crashed, says why and fails).
    Wait(lifecycle::NameArg),
    /// Remove a sandbox and its files.
    #[command(alias = "remove")]
    Rm(lifecycle::RemoveArgs),
    /// List sandboxes.
    #[command(alias = "list")]
    Ls(list::ListArgs),
    /// Show a sandbox's configuration, status and runs.
    Inspect(list::InspectArgs),
    /// Run a command inside a running sandbox.
    Exec(exec::ExecArgs),
    /// Show a sandbox's output.
    Logs(logs::LogsArgs),
    /// Live metrics of sandboxes (one-shot, --watch, --follow).
    Metrics(metrics::MetricsArgs),
    /// What this host has, and what its sandboxes were given and use.
    Capacity(CapacityArgs),
    /// Check whether this host can run sandboxes.
    Doctor(doctor::DoctorArgs),
    /// Control the msbd daemon.
    Server(server::ServerArgs),
    /// Named volumes (`msb volume create|ls|inspect|rm`), mounted with `-v NAME:/path`.
    Volume(volume::VolumeArgs),
    /// What each sandbox and volume takes on this host, and what removing it would free.
    Df(DfArgs),
}

/// Output format of listing and inspecting commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Runs the command; returns the process exit code.
pub async fn dispatch(cli: Cli, client: Client) -> Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(&client, args).await,
        Command::Create(args) => run::create(&client, args).await,
        Command::Start(args) => lifecycle::start(&client, args).await,
        Command::Stop(args) => lifecycle::stop(&client, args).await,
        Command::Drain(args) => lifecycle::drain(&client, args).await,
        Command::Kill(args) => lifecycle::kill(&client, args).await,
        Command::Wait(args) => lifecycle::wait(&client, args).await,
        Command::Rm(args) => lifecycle::remove(&client, args).await,
        Command::Ls(args) => list::list(&client, args).await,
        Command::Inspect(args) => list::inspect(&client, args).await,
        Command::Exec(args) => exec::exec(&client, args).await,
        Command::Logs(args) => logs::logs(&client, args).await,
        Command::Doctor(args) => doctor::doctor(&client, args).await,
        Command::Metrics(args) => metrics::metrics(&client, args).await,
        Command::Capacity(args) => capacity(&client, args).await,
        Command::Server(args) => server::server(&client, args).await,
        Command::Volume(args) => volume::volume(&client, args).await,
        Command::Df(args) => df(&client, args).await,
    }
}

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

async fn df(client: &Client, args: DfArgs) -> Result<i32> {
    let report: crate::api::DiskUsageReport = client
        .call::<(), _>(hyper::Method::GET, "/v1/df", None)
        .await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let size = |b: u64| doctor::human_bytes(b);
    let maybe = |b: Option<u64>| b.map_or("-".to_owned(), size);
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "TYPE",
            "NAME",
            "STATUS",
            "LOGICAL",
            "ALLOCATED",
            "QUOTA",
            "USED",
            "RECLAIMABLE",
        ]);
    for s in &report.sandboxes {
        table.add_row([
            "sandbox".to_owned(),
            s.name.clone(),
            s.status.clone(),
            size(s.logical_bytes),
            size(s.allocated_bytes),
            maybe(s.quota_bytes),
            maybe(s.used_bytes),
            size(s.reclaimable_bytes),
        ]);
    }
    for v in &report.volumes {
        table.add_row([
            format!("volume ({})", v.kind.as_str()),
            v.name.clone(),
            match v.used_by.is_empty() {
                true => "unused".to_owned(),
                false => format!("used by {}", v.used_by.join(",")),
            },
            size(v.logical_bytes),
            size(v.allocated_bytes),
            maybe(v.quota_bytes),
            maybe(v.used_bytes),
            size(v.reclaimable_bytes),
        ]);
    }
    println!("{table}");
    println!(
        "Total: {} logical, {} allocated, {} reclaimable",
        size(report.totals.logical_bytes),
        size(report.totals.allocated_bytes),
        size(report.totals.reclaimable_bytes)
    );
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct CapacityArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

async fn capacity(client: &Client, args: CapacityArgs) -> Result<i32> {
    let report: crate::api::CapacityReport = client
        .call::<(), _>(hyper::Method::GET, "/v1/capacity", None)
        .await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    println!("CPUs:    {} on the host; {:.2} given to running sandboxes (+{} without a limit); {:.2} in use", report.host_cpus, report.cpus_committed, report.sandboxes_without_cpu_limit, report.cpu_percent_used / 100.0);
    println!(
        "Memory:  {} on the host ({} available); {} given to running sandboxes; {} in use",
        report.host_memory_bytes.map_or("?".into(), gib),
        report.host_memory_available_bytes.map_or("?".into(), gib),
        gib(report.memory_committed_bytes),
        gib(report.memory_used_bytes)
    );
    println!(
        "Disk:    {} free in MSB_HOME",
        report.msb_home_free_bytes.map_or("?".into(), gib)
    );
    for s in &report.sandboxes {
        println!(
            "  {:<20} cpus {:<6} cpu {:<8} memory headroom {}",
            s.name,
            s.cpus.map_or("-".into(), |c| c.to_string()),
            s.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
            s.memory_headroom_bytes.map_or("-".into(), gib)
        );
    }
    Ok(0)
}
