//! `msb-supervisor`: one sandbox's supervisor, spawned by msbd.
//!
//! Its whole configuration arrives on fd 3 (see `msb_runtime::spawn`); the flags only label
//! the process for `ps` (name, id, cpus, memory, log level). A binary of its own, without the
//! store, so that starting one is cheap.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let log_level = flag("--log-level").unwrap_or_else(|| "info".to_owned());
    msb_telemetry::init("supervisor", &log_level);
    let config = match msb_runtime::spawn::read_supervisor_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!(
                "msb-supervisor {} ({}): reading the configuration from fd 3: {e}",
                flag("--name").unwrap_or_default(),
                flag("--id").unwrap_or_default()
            );
            std::process::exit(2);
        }
    };
    std::process::exit(msb_runtime::supervisor::run_supervisor(config));
}
