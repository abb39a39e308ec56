//! `msbd`: the daemon (no subcommand), or the OpenAPI document (`msbd openapi`).

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
    /// Print the API's OpenAPI document.
    Openapi,
}

fn main() {
    // Before any thread: everything msbd creates under MSB_HOME (DuckDB's files, the catalog
    // journal, the socket, sandbox directories) is private to the owner. Supervisors set their
    // own (see msb_host::private).
    msb_host::private::set_private_umask();
    let args = Args::parse();
    match args.command {
        None => {
            let home = MsbHome::from_env();
            let config = match msb_daemon::config::DaemonConfig::load(&home.daemon_config()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("msbd: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = msb_daemon::run_daemon(home, args.log_level, config) {
                tracing::error!("{e:#}");
                eprintln!("msbd: {e:#}");
                std::process::exit(1);
            }
        }
        Some(Command::Openapi) => print!("{}", msb_api::openapi_json()),
    }
}
