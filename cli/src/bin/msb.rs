//! `msb`: the command line. A thin client of msbd, which it starts on demand.

use clap::Parser;
use msb_cli::client::{ApiFailure, Client};
use msb_cli::commands::{dispatch, Cli};
use msb_host::paths::MsbHome;

fn main() {
    // Errors are printed as one line, never with a backtrace; without this, RUST_BACKTRACE=1 in
    // the environment makes anyhow capture one for every error value, and the first capture in
    // a static executable sorts all its unwind tables (a millisecond or two).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    msb_logging::init("msb", "warn");
    // One thread: a client mostly waits on a socket or two, and handing wake-ups between a
    // worker and the main thread cost `msb run` a millisecond or more per request.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(dispatch(cli, Client::new(MsbHome::from_env())));
    let code = match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<ApiFailure>() {
            Some(failure) => {
                eprintln!("error: {}", failure.body.error);
                failure.body.exit_code.unwrap_or(1)
            }
            None => {
                eprintln!("error: {e:#}");
                1
            }
        },
    };
    // Exit without waiting for the stdin reader thread, which may be blocked in read().
    std::process::exit(code);
}
