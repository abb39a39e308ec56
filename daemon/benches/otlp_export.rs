//! msbd's CPU per OTLP metrics export: gathering (catalog, live samples, capacity, msbd's own
//! instruments), building the request and encoding it, for SANDBOXES running sandboxes (default
//! 100 and 1,000), measured as this thread's CPU time. The transport's syscalls are not
//! included (one small write per export). Prints the median over rounds, per export and per
//! sandbox per minute at the default 60 s interval and at a 1 s interval.

use std::time::Duration;

use msb_daemon::config::DaemonConfig;
use msb_daemon::state::Daemon;
use msb_daemon::telemetry::Telemetry;
use msb_metrics::Sample;
use msb_runtime::config::SandboxConfig;
use msb_runtime::paths::MsbHome;
use msb_store::{SandboxRow, Store};
use nix::time::{clock_gettime, ClockId};
use prost::Message;

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn daemon_with(count: usize, dir: &std::path::Path) -> std::sync::Arc<Daemon> {
    let home = MsbHome::new(dir);
    std::fs::create_dir_all(home.sandboxes()).unwrap();
    let store = Store::open(&home.database()).unwrap();
    let now = msb_store::catalog::now_ms();
    let mut samples = Vec::new();
    for i in 0..count {
        let id = format!("sb{i:05}");
        let config = SandboxConfig {
            command: vec!["sleep".into(), "1000".into()],
            cpus: Some(1.0),
            memory_mib: Some(256),
            ..SandboxConfig::named(format!("s{i}"))
        };
        store
            .insert_sandbox(&SandboxRow {
                id: id.clone(),
                name: config.name.clone(),
                status: "Running".into(),
                config_json: serde_json::to_string(&config).unwrap(),
                ephemeral: false,
                created_at_ms: now,
                updated_at_ms: now,
                labels: Default::default(),
            })
            .unwrap();
        samples.push(Sample {
            sandbox_id: id,
            run_id: format!("run{i}"),
            timestamp_ms: now as u64,
            uptime_secs: 60.0,
            cpu_percent: Some(12.5),
            vcpu_time_ns: Some(7_500_000_000 + i as u64),
            memory_bytes: Some(50 << 20),
            memory_available_bytes: Some(206 << 20),
            memory_limit_bytes: Some(256 << 20),
            memory_host_resident_bytes: Some(48 << 20),
            upper_host_allocated_bytes: Some(4096),
            processes: Some(3),
            heartbeat_seq: Some(60),
            heartbeat_age_ms: Some(400),
            active_sessions: Some(0),
            sampler_cpu_ns: Some(400_000),
            ..Sample::default()
        });
    }
    let config = DaemonConfig::load_with(&home.daemon_config(), |_| None).unwrap();
    let telemetry = Telemetry::new(config.otlp.clone(), home.root());
    let daemon = Daemon::new(
        home,
        store,
        "/bin/false".into(),
        "/bin/false".into(),
        "warn".into(),
        telemetry,
        config,
    );
    for sample in &samples {
        daemon.live.record(std::slice::from_ref(sample), 1000);
    }
    daemon
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let counts: Vec<usize> = std::env::var("SANDBOXES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000]);
    for count in counts {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon_with(count, dir.path());
        let mut per_export = Vec::new();
        let mut size = 0;
        let mut points = 0;
        for _round in 0..15 {
            let iterations = 10;
            let start = thread_cpu();
            for _ in 0..iterations {
                let (request, n) = msb_daemon::otlp::build_request(&daemon).unwrap();
                let bytes = request.encode_to_vec();
                size = bytes.len();
                points = n;
            }
            per_export.push((thread_cpu() - start).as_secs_f64() / iterations as f64);
        }
        let cpu = median(per_export);
        println!(
            "{count} sandboxes: {points} data points, {} KiB per export; {:.2} ms CPU per export; \
             per sandbox per minute {:.1} us at the default 60 s interval, {:.0} us at 1 s",
            size / 1024,
            cpu * 1e3,
            cpu / count as f64 * 1e6,
            cpu * 60.0 / count as f64 * 1e6,
        );
    }
}
