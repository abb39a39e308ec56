//! `msb ls` and `msb inspect`.

use anyhow::Result;
use clap::Args;
use comfy_table::presets::NOTHING;
use comfy_table::Table;
use hyper::Method;

use super::Format;
use crate::api::SandboxInfo;
use crate::client::{segment, Client};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Include sandboxes that are not running.
    #[arg(short, long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Names only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub name: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn list(client: &Client, args: ListArgs) -> Result<i32> {
    let uri = if args.all {
        "/v1/sandboxes?all=true"
    } else {
        "/v1/sandboxes"
    };
    let sandboxes: Vec<SandboxInfo> = client.call::<(), _>(Method::GET, uri, None).await?;
    if args.quiet {
        for s in &sandboxes {
            println!("{}", s.name);
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&sandboxes)?);
        return Ok(0);
    }
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_header(["NAME", "STATUS", "CPUS", "MEMORY", "CREATED"]);
    for s in &sandboxes {
        table.add_row([
            s.name.clone(),
            s.status.to_string(),
            s.config.cpus.map_or("-".into(), |c| format!("{c}")),
            format!("{} MiB", s.config.memory_limit_mib()),
            s.created_at.clone(),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(0)
}

pub async fn inspect(client: &Client, args: InspectArgs) -> Result<i32> {
    let info: SandboxInfo = client
        .call::<(), _>(
            Method::GET,
            &format!("/v1/sandboxes/{}", segment(&args.name)),
            None,
        )
        .await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    let c = &info.config;
    println!("Name:        {}", info.name);
    println!("ID:          {}", info.id);
    println!("Status:      {}", info.status);
    println!("Ephemeral:   {}", info.ephemeral);
    println!("Created:     {}", info.created_at);
    println!("Command:     {}", c.effective_command().join(" "));
    println!(
        "CPUs:        {}",
        c.cpus.map_or("unlimited".into(), |v| v.to_string())
    );
    println!("Memory:      {} MiB", c.memory_limit_mib());
    println!("Rootfs:      {}", serde_json::to_string(&c.rootfs)?);
    for v in &c.volumes {
        println!(
            "Volume:      {} -> {}{}",
            v.host.display(),
            v.guest.display(),
            if v.readonly { " (ro)" } else { "" }
        );
    }
    for (k, v) in &info.labels {
        println!("Label:       {k}={v}");
    }
    // Environment values are not printed: they may hold secrets.
    if !c.env.is_empty() {
        let names: Vec<&str> = c.env.iter().map(|(k, _)| k.as_str()).collect();
        println!("Env:         {}", names.join(", "));
    }
    for run in &info.runs {
        println!(
            "Run {}:       started {} ended {} pid {} exit {} signal {} reason {}{}",
            run.run_number,
            run.started_at,
            run.ended_at.as_deref().unwrap_or("-"),
            run.init_pid.map_or("-".into(), |p| p.to_string()),
            run.exit_code.map_or("-".into(), |p| p.to_string()),
            run.signal.map_or("-".into(), |p| p.to_string()),
            run.termination_reason.map_or("-".into(), |r| r.to_string()),
            run.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
        );
    }
    Ok(0)
}
