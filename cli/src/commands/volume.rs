//! `msb volume create|ls|inspect|rm`: named volumes, mounted with `-v NAME:/path`.

use anyhow::Result;
use clap::{Args, Subcommand};
use comfy_table::presets::NOTHING;
use comfy_table::Table;
use hyper::Method;

use super::{parse, Format};
use crate::api::{CreateVolumeRequest, VolumeInfo, VolumeKind};
use crate::client::{segment, Client};

#[derive(Args, Debug)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a named volume: a directory (with an optional quota) or an ext4 disk image.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show one volume: kind, budget, place on the host, size, and the sandboxes using it.
    Inspect(InspectArgs),
    /// Remove a volume and its content (refused while a sandbox mounts it).
    #[command(alias = "remove")]
    Rm(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    #[arg(long, value_enum, default_value = "dir")]
    pub kind: KindArg,
    /// A dir volume's write quota in MiB (unbounded without one).
    #[arg(long, value_name = "MiB")]
    pub quota: Option<u64>,
    /// A disk volume's size (`512M`, `10G`, or MiB; default 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse::size_mib)]
    pub size: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    Dir,
    Disk,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub name: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn volume(client: &Client, args: VolumeArgs) -> Result<i32> {
    match args.command {
        VolumeCommand::Create(args) => create(client, args).await,
        VolumeCommand::Ls(args) => list(client, args).await,
        VolumeCommand::Inspect(args) => inspect(client, args).await,
        VolumeCommand::Rm(args) => remove(client, args).await,
    }
}

async fn create(client: &Client, args: CreateArgs) -> Result<i32> {
    let request = CreateVolumeRequest {
        name: args.name,
        kind: match args.kind {
            KindArg::Dir => VolumeKind::Dir,
            KindArg::Disk => VolumeKind::Disk,
        },
        quota_mib: args.quota,
        size_mib: args.size,
    };
    // The daemon checks too; checked here, a bad request never reaches it.
    request.validate()?;
    let info: VolumeInfo = client
        .call(Method::POST, "/v1/volumes", Some(&request))
        .await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Table => println!("{}", info.name),
    }
    Ok(0)
}

fn mib(v: Option<u64>) -> String {
    v.map_or("-".into(), |m| format!("{m} MiB"))
}

fn bytes(v: Option<u64>) -> String {
    v.map_or("-".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    })
}

async fn list(client: &Client, args: ListArgs) -> Result<i32> {
    let volumes: Vec<VolumeInfo> = client
        .call::<(), _>(Method::GET, "/v1/volumes", None)
        .await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&volumes)?);
        return Ok(0);
    }
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_header(["NAME", "KIND", "QUOTA", "SIZE", "USED", "IN USE BY"]);
    for v in &volumes {
        table.add_row([
            v.name.clone(),
            v.kind.as_str().to_owned(),
            mib(v.quota_mib),
            mib(v.size_mib),
            bytes(v.allocated_bytes),
            v.used_by.join(","),
        ]);
    }
    println!("{table}");
    Ok(0)
}

async fn inspect(client: &Client, args: InspectArgs) -> Result<i32> {
    let v: VolumeInfo = client
        .call::<(), _>(
            Method::GET,
            &format!("/v1/volumes/{}", segment(&args.name)),
            None,
        )
        .await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("Name:       {}", v.name);
    println!("Kind:       {}", v.kind.as_str());
    println!("Quota:      {}", mib(v.quota_mib));
    println!("Size:       {}", mib(v.size_mib));
    println!("Path:       {}", v.path);
    println!("Logical:    {}", bytes(v.logical_bytes));
    println!("Allocated:  {}", bytes(v.allocated_bytes));
    println!("Used by:    {}", v.used_by.join(", "));
    Ok(0)
}

async fn remove(client: &Client, args: RemoveArgs) -> Result<i32> {
    let mut code = 0;
    for name in &args.names {
        match client
            .call_empty(Method::DELETE, &format!("/v1/volumes/{}", segment(name)))
            .await
        {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("msb: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}
