//! `msb-fs-mount DIR MOUNTPOINT [--quota-mib N] [--threads N] [--ro]`: serves DIR on
//! MOUNTPOINT with PassthroughFs until SIGINT or SIGTERM, then unmounts and prints the
//! counters. For benchmarks and manual testing; needs root.

use std::path::PathBuf;
use std::process::ExitCode;

use msb_fs::{FsConfig, MountOptions};
use nix::sys::signal::{SigSet, Signal};

const USAGE: &str = "usage: msb-fs-mount DIR MOUNTPOINT [--quota-mib N] [--threads N] [--ro]";

fn parse() -> Result<(PathBuf, PathBuf, MountOptions), String> {
    let mut args = std::env::args_os().skip(1);
    let mut positional = Vec::new();
    let mut options = MountOptions {
        fs: FsConfig::default(),
        ..MountOptions::default()
    };
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.to_str().and_then(|v| v.parse().ok()))
                .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
        };
        match arg.to_str() {
            Some("--quota-mib") => options.fs.quota_bytes = Some(number("--quota-mib")? << 20),
            Some("--threads") => options.threads = number("--threads")? as usize,
            Some("--ro") => options.read_only = true,
            Some("-h" | "--help") => return Err(USAGE.to_string()),
            Some(flag) if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"))
            }
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([dir, mountpoint]) => Ok((dir, mountpoint, options)),
        Err(_) => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let (dir, mountpoint, options) = match parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Block the signals before any worker thread starts, so that they all inherit the mask
    // and only the wait below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("msb-fs-mount: block signals: {e}");
        return ExitCode::FAILURE;
    }
    let session = match msb_fs::mount(&dir, &mountpoint, &options) {
        Ok(session) => session,
        Err(e) => {
            let mut message = format!("msb-fs-mount: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "serving {} on {} ({} threads); SIGINT or SIGTERM to stop",
        dir.display(),
        mountpoint.display(),
        options.threads
    );
    let _ = signals.wait();
    let counters = session.fs().counters();
    if let Err(e) = session.unmount() {
        eprintln!("msb-fs-mount: {e}");
    }
    println!("{counters:#?}");
    ExitCode::SUCCESS
}
