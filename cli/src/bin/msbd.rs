//! `msbd`: the daemon (no subcommand), a sandbox's supervisor (`msbd supervisor`, spawned by
//! the daemon), or the OpenAPI document (`msbd openapi`).

use clap::{Parser, Subcommand};
use msb_runtime::paths::MsbHome;

#[derive(Parser, Debug)]
#[command(name = "msbd", version, about = "The msb daemon: one per MSB_HOME.")]
struct Args {
    /// Log level (an EnvFilter directive; MSB_LOG overrides).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one sandbox's supervisor; its configuration arrives on fd 3. The other flags only
    /// label the process for `ps`.
    #[command(hide = true)]
    Supervisor {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        cpus: String,
        #[arg(long)]
        memory_mib: String,
    },
    /// Print the API's OpenAPI document.
    Openapi,
}

fn main() {
    let args = Args::parse();
    match args.command {
        None => {
            msb_telemetry::init("msbd", &args.log_level);
            if let Err(e) = msb_cli::daemon::run_daemon(MsbHome::from_env(), args.log_level) {
                tracing::error!("{e:#}");
                eprintln!("msbd: {e:#}");
                std::process::exit(1);
            }
        }
        Some(Command::Supervisor { name, id, .. }) => {
            msb_telemetry::init("supervisor", &args.log_level);
            let config = match msb_runtime::spawn::read_supervisor_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!(
                        "msbd supervisor {name} ({id}): reading configuration from fd 3: {e}"
                    );
                    std::process::exit(2);
                }
            };
            std::process::exit(msb_runtime::supervisor::run_supervisor(config));
        }
        Some(Command::Openapi) => print!("{}", msb_cli::api::openapi_json()),
    }
}
