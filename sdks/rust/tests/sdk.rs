//! The Rust SDK against the shared fixtures, and against a real msbd and real sandboxes (needs
//! root and the binaries in MSB_BIN_DIR; each test its own MSB_HOME).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use msb_sdk::{Client, Error, StreamOptions};

const MIB: u64 = 1 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixtures parse into the API's own types and write back unchanged: those types are the
/// document's source, so every field is there by construction; this checks the fixtures (and
/// the generator that made them from the document) agree.
#[test]
fn fixtures_parse_and_write_back_unchanged() {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str) {
        let path = repo().join(format!("sdks/fixtures/{name}.json"));
        let examples: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for (which, example) in examples {
            let parsed: T = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{name} {which}: {e}"));
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                example,
                "{name} {which}"
            );
        }
    }
    round_trip::<msb_sdk::SandboxInfo>("SandboxInfo");
    round_trip::<msb_sdk::WaitResponse>("WaitResponse");
    round_trip::<msb_sdk::MetricsReport>("MetricsReport");
    round_trip::<msb_sdk::CapacityReport>("CapacityReport");
    round_trip::<msb_sdk::HistoryResponse>("HistoryResponse");
    round_trip::<msb_api::ErrorBody>("ErrorBody");
    round_trip::<msb_api::ExecResponse>("ExecResponse");
}

struct Home {
    path: PathBuf,
    bin: PathBuf,
}

impl Drop for Home {
    fn drop(&mut self) {
        // Sandboxes outlive msbd by design: remove them, or they would outlive the test run.
        let msb = |args: &[&str]| {
            std::process::Command::new(self.bin.join("msb"))
                .args(args)
                .env("MSB_HOME", &self.path)
                .output()
        };
        if let Ok(out) = msb(&["ls", "-a", "-q"]) {
            for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = msb(&["rm", "-f", name]);
            }
        }
        let _ = std::process::Command::new(self.bin.join("msb"))
            .args(["server", "stop"])
            .env("MSB_HOME", &self.path)
            .output();
        if std::thread::panicking() {
            // Kept for the failure's diagnosis, and the supervisors' logs shown.
            eprintln!("kept {}", self.path.display());
            let sandboxes = std::fs::read_dir(self.path.join("sandboxes"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("supervisor.log"));
            for log in sandboxes.chain([self.path.join("warm-supervisors.log")]) {
                if let Ok(bytes) = std::fs::read(&log) {
                    let tail = &bytes[bytes.len().saturating_sub(3000)..];
                    eprintln!("--- {}:\n{}", log.display(), String::from_utf8_lossy(tail));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A client of a fresh home, or `None` (skipped) without root or binaries.
fn home() -> Option<(Home, Client)> {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let bin = PathBuf::from(
        std::env::var("MSB_BIN_DIR").unwrap_or_else(|_| "/var/tmp/msb-target/msb-bin".into()),
    );
    if !root || !bin.join("msbd").is_file() {
        eprintln!("skipped: needs root and msbd in MSB_BIN_DIR");
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "msb-rs-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // The msbd this client starts inherits the environment.
    std::env::set_var("MSB_PROMETHEUS_ADDR", "127.0.0.1:0");
    if std::env::var_os("MSB_AGENTD").is_none() {
        std::env::set_var("MSB_AGENTD", bin.join("msb-agentd"));
    }
    let client = Client::with_home(&dir).msbd(bin.join("msbd"));
    Some((Home { path: dir, bin }, client))
}

async fn first_sample(sandbox: &msb_sdk::Sandbox) -> msb_sdk::MetricsReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sandbox.metrics().await {
            Ok(report) => return report,
            Err(Error::MetricsUnavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn builder_exec_and_errors() {
    let Some((home, client)) = home() else { return };
    let data = home.path.join("data");
    std::fs::create_dir(&data).unwrap();
    let mut sandbox = client
        .sandbox("rs-options")
        .cpus(0.5)
        .memory_mib(256)
        .env("GREETING", "hi")
        .workdir("/tmp")
        .mount(&data, "/data", true)
        .label("team", "sdk")
        .idle_timeout(Duration::from_secs(600))
        .max_duration(Duration::from_secs(900))
        .metrics_interval(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let config = sandbox.inspect().await.unwrap().config;
    assert_eq!(
        (config.cpus, config.memory_mib, config.workdir.as_deref()),
        (Some(0.5), Some(256), Some("/tmp"))
    );
    assert_eq!(config.env, vec![("GREETING".into(), "hi".into())]);
    assert_eq!(config.labels.get("team").map(String::as_str), Some("sdk"));
    assert_eq!(
        (
            config.idle_timeout_secs,
            config.max_duration_secs,
            config.metrics_interval_ms
        ),
        (Some(600), Some(900), Some(500))
    );
    assert_eq!(config.volumes.len(), 1);
    assert!(config.volumes[0].readonly && !config.ephemeral);

    let output = sandbox
        .exec(["sh", "-c", "echo $GREETING; pwd; echo err >&2; exit 3"])
        .await
        .unwrap();
    assert_eq!(
        (
            output.stdout_text().as_str(),
            output.stderr.as_slice(),
            output.exit_code
        ),
        ("hi\n/tmp\n", &b"err\n"[..], 3)
    );
    let slow = sandbox
        .exec_with(
            ["sleep", "30"],
            msb_sdk::ExecOptions {
                timeout: Some(Duration::from_millis(300)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(slow.timed_out && slow.exit_code == 137);
    assert!(matches!(
        sandbox.exec(["no-such-command"]).await,
        Err(Error::StartFailed { exit_code: 127, .. })
    ));

    let mut cat = sandbox
        .exec_stream(["cat"], StreamOptions::default())
        .await
        .unwrap();
    assert!(cat.pid().unwrap() > 1);
    cat.write(b"ping\n").await.unwrap();
    let chunk = cat.recv().await.unwrap().unwrap();
    assert_eq!(
        (chunk.stderr, chunk.data.as_slice()),
        (false, &b"ping\n"[..])
    );
    cat.close_stdin().await.unwrap();
    assert_eq!(cat.wait().await.unwrap().exit_code, 0);

    let taken = client.sandbox("rs-options").create().await;
    assert!(matches!(taken, Err(Error::AlreadyExists(m)) if m.contains("rs-options")));
    let invalid = client.sandbox("rs-bad").memory_mib(1).create().await;
    assert!(matches!(invalid, Err(Error::InvalidArgument(m)) if m.contains("memory")));
    let nowhere = Client::with_socket(home.path.join("none.sock"))
        .list(true)
        .await;
    assert!(matches!(nowhere, Err(Error::DaemonUnreachable(_))));
    sandbox.remove(true).await.unwrap();
    assert!(matches!(
        client.get("rs-options").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn published_port_rules_and_no_network() {
    let Some((_home, client)) = home() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut web = client
        .sandbox("rs-web")
        .command([
            "sh",
            "-c",
            "while true; do echo sdk-published | nc -l -p 8080; done",
        ])
        .publish(format!("{port}:8080"))
        .net_rule("deny@10.0.0.0/8")
        .net_ring_frames(256)
        .root_disk_mib(256)
        .start()
        .await
        .unwrap();
    let config = web.inspect().await.unwrap().config;
    assert_eq!(
        (config.net_ring_frames, config.root_disk_mib),
        (Some(256), Some(256))
    );
    assert_eq!(config.published_ports, vec![format!("{port}:8080")]);
    assert_eq!(config.net_rules, vec!["deny@10.0.0.0/8".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|mut stream| async move {
                let mut text = String::new();
                let read = tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text);
                let _ = tokio::time::timeout(Duration::from_secs(3), read).await;
                text
            });
        if let Some(answer) = answer {
            if answer.await.contains("sdk-published") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the published port never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    web.stop(Some(Duration::from_secs(1))).await.unwrap();

    let offline = client
        .sandbox("rs-offline")
        .no_network()
        .start()
        .await
        .unwrap();
    let links = offline.exec(["ls", "/sys/class/net"]).await.unwrap();
    assert_eq!(
        links.stdout_text().split_whitespace().collect::<Vec<_>>(),
        ["lo"]
    );
    let bad = client
        .sandbox("rs-badport")
        .publish("99999:80")
        .create()
        .await;
    assert!(matches!(bad, Err(Error::InvalidArgument(m)) if m.contains("published")));
    assert!(matches!(
        client.get("rs-badport").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn lifecycle_on_handles_from_list_and_a_dead_supervisor() {
    let Some((_home, client)) = home() else {
        return;
    };
    for name in ["rs-stop", "rs-kill", "rs-drain", "rs-crash"] {
        client.sandbox(name).start().await.unwrap();
    }
    let mut handles: std::collections::BTreeMap<String, msb_sdk::Sandbox> = client
        .list(false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name().to_owned(), s))
        .collect();
    let stop = handles.get_mut("rs-stop").unwrap();
    stop.stop(Some(Duration::from_secs(1))).await.unwrap();
    assert_eq!(stop.last_info().status.as_str(), "Stopped");
    let kill = handles.get_mut("rs-kill").unwrap();
    kill.kill(9).await.unwrap();
    assert_eq!(kill.inspect().await.unwrap().status.as_str(), "Stopped");

    let mut drained = handles.remove("rs-drain").unwrap();
    let process = drained
        .exec_stream(
            ["sh", "-c", "sleep 2; echo done"],
            StreamOptions {
                no_stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut draining = drained.clone();
    let drain = tokio::spawn(async move { draining.drain(None, None).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while drained.inspect().await.unwrap().status.as_str() != "Draining" {
        assert!(Instant::now() < deadline, "Draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(drained.exec(["true"]).await, Err(Error::Conflict(m)) if m.contains("draining"))
    );
    assert_eq!(process.wait().await.unwrap().stdout, b"done\n");
    drain.await.unwrap().unwrap();
    let run = drained.inspect().await.unwrap().runs.pop().unwrap();
    assert_eq!(
        run.termination_reason.map(|r| r.to_string()).as_deref(),
        Some("DrainRequested")
    );

    let mut crashed = handles.remove("rs-crash").unwrap();
    let supervisor = crashed.inspect().await.unwrap().runs[0]
        .supervisor_pid
        .unwrap();
    let waiter = crashed.clone();
    let wait = tokio::spawn(async move { waiter.wait().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: a plain kill(2) of the sandbox's supervisor.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(supervisor, libc::SIGKILL)
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("wait returned")
        .unwrap()
        .unwrap();
    assert!(matches!(ended.status.as_str(), "Crashed" | "Stopped"));
}

#[tokio::test]
async fn metrics_history_and_capacity() {
    let Some((home, client)) = home() else { return };
    let sandbox = client
        .sandbox("rs-metrics")
        .memory_mib(256)
        .metrics_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let report = first_sample(&sandbox).await;
    assert_eq!(report.sample.memory_limit_bytes, Some(256 * MIB));
    let mut stream = sandbox
        .metrics_stream(Duration::from_millis(200))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(stream.recv().await.unwrap().unwrap().name, "rs-metrics");
    }
    assert!(client
        .all_sandbox_metrics(false)
        .await
        .unwrap()
        .contains_key("rs-metrics"));
    let off = client
        .sandbox("rs-nometrics")
        .metrics_interval(Duration::ZERO)
        .start()
        .await
        .unwrap();
    assert!(matches!(
        off.metrics().await,
        Err(Error::MetricsDisabled(_))
    ));

    let capacity = client.capacity().await.unwrap();
    let headroom = capacity
        .sandboxes
        .iter()
        .find(|h| h.name == "rs-metrics")
        .unwrap();
    assert_eq!(headroom.memory_limit_bytes, Some(256 * MIB));
    assert!(capacity.memory_committed_bytes >= 256 * MIB + 512 * MIB);

    // History: what the CLI prints for the same window.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (since, until) = (now - 60, now + 1);
    let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    // A sample of the window's last seconds may still be on its way to the store on a busy
    // host (the writer commits in batches): the two must agree once it is stored.
    let mut attempt = 0;
    loop {
        let history = sandbox
            .metrics_history(at(since), Some(at(until)), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert!(!history.points.is_empty());
        let printed = std::process::Command::new(home.bin.join("msb"))
            .args([
                "metrics",
                "rs-metrics",
                "--format",
                "json",
                "--step",
                "1s",
                "--since",
            ])
            .arg(rfc3339(since))
            .arg("--until")
            .arg(rfc3339(until))
            .env("MSB_HOME", &home.path)
            .output()
            .unwrap();
        let text = String::from_utf8(printed.stdout).unwrap();
        let points: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|_| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        });
        attempt += 1;
        let same = same_points(&points, &history.points);
        if same || attempt == 10 {
            assert!(same, "{points:?}\n{:?}", history.points);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Equal point lists, numbers equal to 1e-9 relative (msbd's rates are float sums whose last
/// bit can differ between two reads of the same samples).
fn same_points<T: serde::Serialize>(a: &[serde_json::Value], b: &[T]) -> bool {
    let b: Vec<serde_json::Value> = b.iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else {
                return x == y;
            };
            x.len() == y.len()
                && x.iter().all(|(key, u)| match (u.as_f64(), y.get(key)) {
                    (Some(u), Some(v)) => v
                        .as_f64()
                        .is_some_and(|v| (u - v).abs() <= 1e-9 * u.abs().max(v.abs()).max(1.0)),
                    (None, Some(v)) => u == v,
                    (_, None) => false,
                })
        })
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
