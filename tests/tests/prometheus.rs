//! The Prometheus scrape endpoint: names, types, labels, values that match `msb metrics`,
//! content negotiation, and series that go with their sandbox.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use msb_e2e::{require_root, TestHome};
use serde_json::Value;

fn scrape(address: &str, accept: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .unwrap()
        .to_owned();
    // The body may be chunked: keep only the exposition lines.
    let body = body
        .lines()
        .filter(|l| l.starts_with('#') || l.starts_with("microsandbox_") || l.starts_with("msb_"))
        .collect::<Vec<_>>()
        .join("\n");
    (content_type, body)
}

fn value(body: &str, name: &str, sandbox: &str) -> Option<f64> {
    body.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains(&format!("sandbox_name=\"{sandbox}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn scrape_matches_msb_metrics_and_follows_the_sandbox() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run",
        "-n",
        "web",
        "-d",
        "-m",
        "256M",
        "--no-network",
        "--",
        "sleep",
        "1000",
    ]);
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let address = status["prometheus_address"]
        .as_str()
        .expect("endpoint listening")
        .to_owned();
    home.eventually(Duration::from_secs(20), "a sample", || {
        home.msb(&["metrics", "web", "--format", "json"]).code == 0
    });

    let (content_type, body) = scrape(&address, None);
    assert!(
        content_type.contains("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.contains("# TYPE microsandbox_cpu_time_seconds_total counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE microsandbox_memory_usage_bytes gauge"));
    assert_eq!(
        value(&body, "microsandbox_memory_limit_bytes", "web"),
        Some((256u64 << 20) as f64)
    );
    let json: Value =
        serde_json::from_str(&home.ok(&["metrics", "web", "--format", "json"])).unwrap();
    // The first sample may come before the workload started (the agent alone): wait for both.
    home.eventually(
        Duration::from_secs(10),
        "agent and workload counted",
        || value(&scrape(&address, None).1, "microsandbox_processes", "web").unwrap_or(0.0) >= 2.0,
    );
    assert!(json["memory_bytes"].as_u64().is_some());
    // No network (`--no-network`): the series is absent, not zero.
    assert!(value(
        &body,
        "microsandbox_network_bytes_received_bytes_total",
        "web"
    )
    .is_none());
    assert!(
        body.contains("msb_sandboxes{status=\"Running\"} 1"),
        "{body}"
    );
    assert!(body.contains(&format!(
        "sandbox_id=\"{}\"",
        json["sandbox_id"].as_str().unwrap()
    )));

    let (content_type, open) = scrape(&address, Some("application/openmetrics-text;version=1.0.0"));
    assert!(
        content_type.contains("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.contains("# TYPE microsandbox_cpu_time_seconds counter"));
    assert!(open.contains("microsandbox_cpu_time_seconds_created{"));
    assert!(open.trim_end().ends_with("# EOF"));

    home.ok(&["rm", "-f", "web"]);
    let (_, after) = scrape(&address, None);
    assert!(
        value(&after, "microsandbox_memory_limit_bytes", "web").is_none(),
        "series of a removed sandbox disappear"
    );
}

#[test]
fn a_taken_port_leaves_msbd_running_without_the_endpoint() {
    if !require_root() {
        return;
    }
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().to_string();
    let home = TestHome::new();
    let mut command = home.command(&["server", "start"]);
    command.env("MSB_PROMETHEUS_ADDR", &port);
    assert!(command.status().unwrap().success());
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    assert!(status["prometheus_address"].is_null());
    let log = std::fs::read_to_string(home.path().join("msbd.log")).unwrap();
    assert_eq!(
        log.matches("cannot listen").count(),
        1,
        "one warning: {log}"
    );
}

/// A free loopback port for a helper process.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn a_real_prometheus_scrapes_msbd_and_promtool_accepts_the_exposition() {
    if !require_root() {
        return;
    }
    if !msb_e2e::require_prometheus() {
        return;
    }
    let home = TestHome::new();
    home.ok(&[
        "run", "-n", "scraped", "-d", "-m", "128M", "--", "sleep", "1000",
    ]);
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let target = status["prometheus_address"].as_str().unwrap().to_owned();
    home.eventually(Duration::from_secs(20), "a sample", || {
        home.msb(&["metrics", "scraped", "--format", "json"]).code == 0
    });

    // promtool's linter over what msbd serves.
    let (_, body) = scrape(&target, None);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{body}\n").as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scraping every second.
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: msbd\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let query =
        "/api/v1/query?query=microsandbox_memory_limit_bytes%7Bsandbox_name%3D%22scraped%22%7D";
    let mut answer = String::new();
    for _ in 0..120 {
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(&web).is_err() {
            continue;
        }
        answer = http_get(&web, query);
        if answer.contains("\"value\"") {
            break;
        }
    }
    let rate = http_get(&web, "/api/v1/query?query=up%7Bjob%3D%22msbd%22%7D");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        answer.contains(&format!("\"{}\"", 128u64 << 20)),
        "Prometheus' answer: {answer}"
    );
    assert!(rate.contains("\"1\""), "the scrape target is up: {rate}");
}

#[test]
fn only_allow_listed_user_labels_become_series_labels() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let mut start = home.command(&["server", "start"]);
    start.env("MSB_PROMETHEUS_LABELS", "team,user.id");
    assert!(start.status().unwrap().success());
    home.ok(&[
        "run",
        "-n",
        "labelled",
        "-d",
        "--label",
        "team=core",
        "--label",
        "user.id=alice",
        "--label",
        "secret=x",
        "--",
        "sleep",
        "1000",
    ]);
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let address = status["prometheus_address"].as_str().unwrap().to_owned();
    home.eventually(Duration::from_secs(20), "a sample", || {
        home.msb(&["metrics", "labelled", "--format", "json"]).code == 0
    });
    let (_, body) = scrape(&address, None);
    let line = body
        .lines()
        .find(|l| l.starts_with("microsandbox_processes{"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("team=\"core\"") && line.contains("user_id=\"alice\""),
        "{line}"
    );
    assert!(
        !line.contains("secret"),
        "labels not allow-listed stay out: {line}"
    );
}

/// One raw request to `address` with `Host: host`; the status code and the body.
fn get_with_host(address: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_request_for_another_host_name_is_refused_dns_rebinding() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.ok(&["ls"]);
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let address = status["prometheus_address"].as_str().unwrap().to_owned();
    let port = address.rsplit(':').next().unwrap();
    for refused in [
        "evil.example",
        &format!("evil.example:{port}"),
        "127.0.0.1.evil.example",
    ] {
        let (code, body) = get_with_host(&address, refused);
        assert_eq!(code, 421, "Host: {refused}: {body}");
        assert!(body.contains("DNS rebinding"), "{body}");
        assert!(body.contains(&address), "{body}");
    }
    for accepted in [
        address.clone(),
        format!("localhost:{port}"),
        "[::1]".to_owned(),
    ] {
        let (code, body) = get_with_host(&address, &accepted);
        assert_eq!(code, 200, "Host: {accepted}: {body}");
        assert!(body.contains("# TYPE"), "{body}");
    }
}
