//! The resource instruments against ground truth read from the host: OOM kills and how a run
//! ended (metrics, inspect, Prometheus, history), CPU throttling under a quota, and processes,
//! threads and open descriptors.

use std::time::Duration;

use msb_e2e::{require_root, TestHome};
use serde_json::Value;

/// The value of the first exposition line that starts with `series` (name and labels up to
/// where the caller stops).
fn series_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Host pids of every process in the pid namespace of `init` (the sandbox's PID 1).
fn sandbox_pids(init: i64) -> Vec<String> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let target = ns(&init.to_string()).expect("sandbox init alive");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()) && ns(pid).as_ref() == Some(&target))
        .collect()
}

/// The cpu controller's `cpu.stat` of the cgroup `pid` is in, read on the host.
fn host_cpu_stat(pid: i64) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "cpu")
                .then(|| format!("/sys/fs/cgroup/{controllers}{path}"))
        })
        .or_else(|| {
            let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(format!("/sys/fs/cgroup{path}"))
        })
        .unwrap();
    std::fs::read_to_string(format!("{path}/cpu.stat")).unwrap()
}

fn stat_value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {text}"))
}

#[test]
fn an_oom_kill_shows_in_metrics_inspect_prometheus_and_history() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // The shell keeps the whole output of the substitution in its own memory: far past 48 MiB.
    home.ok(&[
        "run",
        "-n",
        "hog",
        "-d",
        "-m",
        "48M",
        "--",
        "sh",
        "-c",
        "sleep 2; x=$(yes | head -c 300000000); echo survived",
    ]);
    home.first_sample("hog");
    home.eventually(Duration::from_secs(60), "the run to end", || {
        home.status("hog") != "Running"
    });
    let run = &home.inspect("hog")["runs"][0];
    assert_eq!(run["end_cause"], "oom_kill", "{run}");
    assert!(run["oom_kills"].as_u64().unwrap() >= 1, "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("OOM killer"),
        "{run}"
    );
    assert!(!home.ok(&["logs", "hog"]).contains("survived"));

    // The run's final sample, taken before its cgroups went, holds the kill.
    let m = home.metrics("hog");
    assert_eq!(m["state"], "exited");
    assert!(m["memory_oom_kills"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["memory_limit_hits"].as_u64().unwrap() >= 1, "{m}");

    let body = home.scrape();
    assert_eq!(
        series_value(&body, "msb_sandbox_runs_ended_total{reason=\"oom_kill\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        series_value(&body, "msb_sandbox_runs_ended_total{reason=\"exit\"}"),
        Some(0.0)
    );

    let id = home.inspect("hog")["id"].as_str().unwrap().to_owned();
    let rows: Value = serde_json::from_str(&home.ok(&[
        "metrics",
        "--sql",
        &format!("SELECT max(memory_oom_kills) AS kills FROM samples WHERE sandbox_id = '{id}'"),
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(rows[0]["kills"].as_u64().unwrap() >= 1, "{rows}");
    let events: Value = serde_json::from_str(&home.ok(&[
        "metrics",
        "--sql",
        &format!("SELECT detail_json FROM events WHERE sandbox_id = '{id}' AND kind = 'run_ended'"),
        "--format",
        "json",
    ]))
    .unwrap();
    let detail: Value = serde_json::from_str(events[0]["detail_json"].as_str().unwrap()).unwrap();
    assert_eq!(detail["cause"], "oom_kill");
    // History shows the kill as a rate in the step that holds it.
    let history: Vec<Value> = serde_json::from_str(&home.ok(&[
        "metrics", "hog", "--since", "2m", "--step", "1s", "--format", "json",
    ]))
    .unwrap();
    assert!(
        history
            .iter()
            .any(|p| p["memory_oom_kills_per_sec"].as_f64().unwrap_or(0.0) > 0.0),
        "{history:?}"
    );
}

#[test]
fn a_busy_loop_under_half_a_cpu_is_throttled() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "hot",
        "-d",
        "-c",
        "0.5",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    home.first_sample("hot");
    let init = home.inspect("hot")["runs"][0]["init_pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let before = host_cpu_stat(init);
    let m = home.metrics("hot");
    let after = host_cpu_stat(init);
    let periods = m["cpu_periods"].as_u64().unwrap();
    let throttled = m["cpu_throttled_periods"].as_u64().unwrap();
    let throttled_ns = m["cpu_throttled_time_ns"].as_u64().unwrap();
    // The sample was taken at most an interval (1 s = 10 periods of 100 ms) before `before`.
    for (key, value, slack) in [
        ("nr_periods ", periods, 15),
        ("nr_throttled ", throttled, 15),
    ] {
        let (low, high) = (stat_value(&before, key), stat_value(&after, key));
        assert!(
            value <= high && value + slack >= low,
            "{key}: reported {value}, host {low}..{high}"
        );
    }
    // A loop that always wants the CPU exhausts half a CPU's quota in most periods.
    assert!(
        throttled * 2 >= periods && throttled > 0,
        "{throttled} of {periods}"
    );
    assert!(throttled_ns > 0);
    let body = home.scrape();
    let series = "microsandbox_cpu_throttled_periods_total{sandbox_name=\"hot\"";
    assert!(series_value(&body, series).unwrap_or(0.0) > 0.0, "{body}");
}

#[test]
fn processes_threads_and_descriptors_match_the_hosts_proc() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    // Four extra descriptors held by the shell, and a sleeping child.
    home.detached(
        "fds",
        "exec 3</dev/null 4</dev/null 5>/dev/null 6>/dev/null; sleep 1000 & wait",
    );
    home.first_sample("fds");
    let init = home.inspect("fds")["runs"][0]["init_pid"].as_i64().unwrap();
    let truth = || {
        let pids = sandbox_pids(init);
        let fds: usize = pids
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count()))
            .sum();
        let threads: usize = pids
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/task")).map_or(0, |d| d.count()))
            .sum();
        (pids.len() as u64, threads as u64, fds as u64)
    };
    // Nothing in the sandbox changes after start, so a sample and a reading agree exactly. The
    // kernel flushes a memory cgroup's `memory.stat` lazily (up to about 2 s behind since 6.x),
    // so its breakdown is awaited too rather than read from the first sample.
    home.eventually(Duration::from_secs(20), "the sample to match /proc", || {
        let m = home.metrics("fds");
        let (processes, threads, fds) = truth();
        m["processes"] == processes
            && m["threads"] == threads
            && m["open_fds"] == fds
            && m["memory_anon_bytes"].as_u64() > Some(0)
            && m["page_faults_minor"].as_u64() > Some(0)
    });
    let m = home.metrics("fds");
    assert!(
        m["processes"].as_u64().unwrap() >= 3,
        "agent, shell, sleep: {m}"
    );
    assert!(m["open_fds"].as_u64().unwrap() >= 4, "{m}");
    // A gauge, not a zero: the breakdown of memory is measured too.
    assert!(m["memory_anon_bytes"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(m["memory_working_set_bytes"], m["memory_bytes"]);
    assert!(m["page_faults_minor"].as_u64().unwrap() > 0, "{m}");
}

/// The kernel must never pick the agent (PID 1) while a workload is left in the sandbox: every
/// workload is the OOM killer's first choice (1000) and the agent's score is lower (-1000 where
/// the host grants `CAP_SYS_RESOURCE`, 0 where it does not, as on the CI machine).
#[test]
fn workloads_are_the_oom_killers_first_choice_not_the_agent() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let out = home.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "cat /proc/1/oom_score_adj /proc/self/oom_score_adj",
    ]);
    let scores: Vec<i32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(scores.len(), 2, "{out}");
    assert!(scores[0] <= 0, "agent {out}");
    assert_eq!(scores[1], 1000, "workload {out}");
}

/// The memory cgroup directory of a process on the host (v1 `memory` hierarchy or v2 tree).
fn memory_cgroup_dir(pid: i64) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == "memory") {
            return format!("/sys/fs/cgroup/memory{path}").into();
        }
    }
    let unified = text.lines().find(|l| l.starts_with("0::")).unwrap();
    format!("/sys/fs/cgroup{}", &unified[3..]).into()
}

/// A sandbox created without `-m` runs under the documented default (512 MiB), stated in
/// `inspect`, enforced by its cgroup and reported by its metrics; swap is limited with memory
/// (v2 `memory.swap.max` 0; v1 `memsw` equal to the limit when the host has swap) wherever the
/// kernel accounts it.
#[test]
fn a_sandbox_without_a_memory_flag_gets_the_default_limit_and_no_swap() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for (name, flag, mib) in [("plain", None, 512u64), ("small", Some("64M"), 64)] {
        let mut args = vec!["run", "-n", name, "-d"];
        if let Some(flag) = flag {
            args.extend(["-m", flag]);
        }
        args.extend(["--", "sleep", "300"]);
        home.ok(&args);
        assert_eq!(home.inspect(name)["config"]["memory_mib"], mib);
        let m = home.first_sample(name);
        assert_eq!(m["memory_limit_bytes"], mib << 20, "{m}");
        let init = home.inspect(name)["runs"][0]["init_pid"].as_i64().unwrap();
        let dir = memory_cgroup_dir(init);
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let bytes = (mib << 20).to_string();
        match read("memory.limit_in_bytes") {
            Some(limit) => {
                assert_eq!(limit, bytes, "{}", dir.display());
                let host_swap = std::fs::read_to_string("/proc/meminfo")
                    .unwrap()
                    .lines()
                    .any(|l| l.starts_with("SwapTotal:") && !l.ends_with(" 0 kB"));
                if let (true, Some(memsw)) = (host_swap, read("memory.memsw.limit_in_bytes")) {
                    assert_eq!(memsw, bytes, "swap and memory together");
                }
            }
            None => {
                assert_eq!(read("memory.max").unwrap(), bytes);
                if let Some(swap) = read("memory.swap.max") {
                    assert_eq!(swap, "0");
                }
            }
        }
        home.ok(&["rm", "-f", name]);
    }
}
