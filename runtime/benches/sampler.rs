//! Sampling cost: CPU time of one `Sampler::read` per sandbox, over the real cgroup files of
//! the sandboxes running now (start them first; `benches/sampling.sh` does).
//!
//! Prints the median over rounds of CPU µs per sandbox per sample, for the kept-open (`pread`)
//! sources msb uses, and for reopening the same files every time, as a reference.

use std::time::Duration;

use msb_metrics::Sample;
use msb_runtime::backend::sandbox_cgroups;
use msb_runtime::supervisor::sampler::Sampler;
use nix::time::{clock_gettime, ClockId};

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn sandbox_ids() -> Vec<String> {
    for parent in ["/sys/fs/cgroup/memory/msb", "/sys/fs/cgroup/msb"] {
        if let Ok(entries) = std::fs::read_dir(parent) {
            let ids: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().join("cgroup.procs").exists())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("cgroup.procs"))
                        .is_ok_and(|p| !p.trim().is_empty())
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !ids.is_empty() {
                return ids;
            }
        }
    }
    Vec::new()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let ids = sandbox_ids();
    if ids.is_empty() {
        eprintln!("no running sandboxes found under /sys/fs/cgroup/*/msb: start some first (benches/sampling.sh)");
        std::process::exit(1);
    }
    let paths: Vec<_> = ids
        .iter()
        .map(|id| sandbox_cgroups(id).expect("host cgroups"))
        .collect();
    let mut kept: Vec<Sampler> = paths
        .iter()
        .zip(&ids)
        .map(|(p, id)| Sampler::new(Some(p), Some(1.0), id))
        .collect();
    const ROUNDS: usize = 15;
    const TICKS: usize = 20;
    let mut kept_us = Vec::new();
    let mut reopen_us = Vec::new();
    for _ in 0..ROUNDS {
        let start = thread_cpu();
        for _ in 0..TICKS {
            for sampler in kept.iter_mut() {
                let mut sample = Sample::default();
                sampler.read(&mut sample);
                std::hint::black_box(&sample);
            }
        }
        kept_us.push((thread_cpu() - start).as_secs_f64() * 1e6 / (TICKS * ids.len()) as f64);

        let start = thread_cpu();
        for _ in 0..TICKS {
            for (p, id) in paths.iter().zip(&ids) {
                // What a sampler that opens its files every tick would pay.
                let mut fresh = Sampler::new(Some(p), Some(1.0), id);
                let mut sample = Sample::default();
                fresh.read(&mut sample);
                std::hint::black_box(&sample);
            }
        }
        reopen_us.push((thread_cpu() - start).as_secs_f64() * 1e6 / (TICKS * ids.len()) as f64);
    }
    println!("sandboxes: {}", ids.len());
    println!("sampler CPU per sandbox per sample, kept-open files (msb): {:.1} µs (median of {ROUNDS} rounds)", median(kept_us));
    println!(
        "same, reopening the files every sample (reference):       {:.1} µs",
        median(reopen_us)
    );
}
