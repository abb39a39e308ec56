//! OTLP export to real receivers started by the test: a gRPC server built from the OTLP service
//! definitions (tonic) and an OTLP/HTTP endpoint decoding protobuf. Checks names, units, types,
//! temporality, attributes and resource; that a `TRACEPARENT` given to the CLI is the parent of
//! msbd's spans; and that a collector that is away costs bounded memory and counted drops, with
//! exports resuming when it is back.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msb_e2e::{require_root, TestHome};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, AggregationTemporality, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// Everything the receivers got.
#[derive(Default)]
struct Received {
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    /// Metadata / headers of the requests, for the header check.
    tenants: Mutex<HashSet<String>>,
    /// An OTLP/HTTP request came gzipped.
    gzipped: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Some(t) = request.metadata().get("x-tenant") {
            self.0
                .tenants
                .lock()
                .unwrap()
                .insert(t.to_str().unwrap().to_owned());
        }
        self.0.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Receivers on their own runtime thread; dropped with the test.
struct Receiver {
    received: Arc<Received>,
    grpc: SocketAddr,
    http: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Two free ports below the kernel's ephemeral range, for addresses left unbound for a while: a
/// port from that range (what `free_addr` gets) can meanwhile become the local port of any
/// outgoing connection, including one of the exporter's own attempts to reach it, which then
/// connects to itself (TCP simultaneous open) and holds the port.
fn two_free_addrs_outside_ephemeral_range() -> (SocketAddr, SocketAddr) {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let start = 10_000 + (std::process::id() as u16 % 1000) * 16;
    // Held until both are found, so that the two differ.
    let mut held: Vec<TcpListener> = (start..low)
        .chain(10_000..start)
        .filter_map(|port| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).ok())
        .take(2)
        .collect();
    assert_eq!(held.len(), 2, "two free ports below the ephemeral range");
    let second = held.pop().unwrap().local_addr().unwrap();
    let first = held.pop().unwrap().local_addr().unwrap();
    (first, second)
}

impl Receiver {
    fn start() -> Receiver {
        Self::start_on(free_addr(), free_addr())
    }

    fn start_on(grpc: SocketAddr, http: SocketAddr) -> Receiver {
        let received = Arc::new(Received::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let service = Grpc(received.clone());
        let grpc_listener = runtime
            .block_on(tokio::net::TcpListener::bind(grpc))
            .unwrap();
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(
                    MetricsServiceServer::new(service.clone())
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(
                    TraceServiceServer::new(service)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await
                .unwrap();
        });
        let state = received.clone();
        let app = axum::Router::new()
            .route(
                "/v1/metrics",
                axum::routing::post({
                    let state = state.clone();
                    move |headers: axum::http::HeaderMap, body: bytes::Bytes| async move {
                        assert_eq!(headers["content-type"], "application/x-protobuf");
                        if let Some(t) = headers.get("x-tenant") {
                            state
                                .tenants
                                .lock()
                                .unwrap()
                                .insert(t.to_str().unwrap().to_owned());
                        }
                        let request =
                            ExportMetricsServiceRequest::decode(unzip(&headers, body)).unwrap();
                        state.metrics.lock().unwrap().push(request);
                        ExportMetricsServiceResponse::default().encode_to_vec()
                    }
                }),
            )
            .route(
                "/v1/traces",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: bytes::Bytes| async move {
                        if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                            state
                                .gzipped
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        let request =
                            ExportTraceServiceRequest::decode(unzip(&headers, body)).unwrap();
                        state.traces.lock().unwrap().push(request);
                        ExportTraceServiceResponse::default().encode_to_vec()
                    },
                ),
            );
        let http_listener = runtime
            .block_on(tokio::net::TcpListener::bind(http))
            .unwrap();
        runtime.spawn(async move { axum::serve(http_listener, app).await.unwrap() });
        Receiver {
            received,
            grpc,
            http,
            _runtime: runtime,
        }
    }

    /// Every metric received so far, by name (the latest request wins).
    fn metrics(&self) -> Vec<(Vec<KeyValue>, Metric)> {
        let requests = self.received.metrics.lock().unwrap();
        let mut out = Vec::new();
        for request in requests.iter() {
            for rm in &request.resource_metrics {
                let resource = rm.resource.clone().unwrap_or_default().attributes;
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        out.push((resource.clone(), m.clone()));
                    }
                }
            }
        }
        out
    }

    fn spans(&self) -> Vec<Span> {
        let requests = self.received.traces.lock().unwrap();
        requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }
}

/// The body as sent, gunzipped when the request says `Content-Encoding: gzip`.
fn unzip(headers: &axum::http::HeaderMap, body: bytes::Bytes) -> bytes::Bytes {
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).unwrap();
        out.into()
    } else {
        body
    }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a sandbox and an exec under a caller's trace, then checks what the receiver got.
fn exports_reach(receiver: &Receiver, env: &[(&str, &str)]) {
    let home = TestHome::with_env(env);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN}-01");
    let mut run = home.command(&[
        "run", "-n", "traced", "-d", "-m", "128M", "--", "sleep", "1000",
    ]);
    run.env("TRACEPARENT", &traceparent);
    let output = run.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut exec = home.command(&["exec", "traced", "--", "true"]);
    exec.env("TRACEPARENT", &traceparent);
    assert!(exec.output().unwrap().status.success());

    wait_for(
        Duration::from_secs(30),
        "per-sandbox metrics and an exec latency",
        || {
            let metrics = receiver.metrics();
            let has = |name: &str| metrics.iter().any(|(_, m)| m.name == name);
            has("microsandbox.memory.usage")
            && has("microsandbox.cpu.time")
            && has("microsandbox.cpu.utilization")
            && metrics.iter().any(|(_, m)| {
                m.name == "msb.exec.latency"
                    && matches!(&m.data, Some(metric::Data::Histogram(h)) if h.data_points.iter().any(|p| p.count >= 1))
            })
        },
    );
    // `msb server status` reports both exporters and their health.
    let status: serde_json::Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let exports = status["otlp"].as_array().expect("otlp in server status");
    assert_eq!(exports.len(), 2, "{exports:?}");
    let metrics_export = exports.iter().find(|e| e["signal"] == "metrics").unwrap();
    assert!(
        metrics_export["succeeded"].as_u64().unwrap() >= 1,
        "{metrics_export}"
    );
    assert!(
        metrics_export["last_success"].is_string(),
        "{metrics_export}"
    );
    assert!(home
        .ok(&["server", "status"])
        .contains("otlp:      metrics to http://"));

    let metrics = receiver.metrics();
    let (resource, _) = &metrics[0];
    assert_eq!(text(resource, "service.name").as_deref(), Some("msbd"));
    assert!(text(resource, "service.instance.id").is_some());
    assert!(text(resource, "host.name").is_some());
    assert_eq!(
        text(resource, "deployment.environment").as_deref(),
        Some("test")
    );

    let latest = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("{name} not received"))
    };
    // A gauge, in bytes, with the sandbox's attributes and the configured limit.
    let limit = latest("microsandbox.memory.limit");
    assert_eq!(limit.unit, "By");
    let Some(metric::Data::Gauge(gauge)) = &limit.data else {
        panic!("memory.limit is a gauge: {limit:?}")
    };
    let point = gauge
        .data_points
        .iter()
        .find(|p| text(&p.attributes, "sandbox.name").as_deref() == Some("traced"))
        .expect("a point of the sandbox");
    assert!(text(&point.attributes, "sandbox.id").is_some());
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    assert_eq!(point.value, Some(Value::AsInt(128 << 20)));
    // A cumulative monotonic sum in seconds, starting at the run's start.
    let cpu = latest("microsandbox.cpu.time");
    assert_eq!(cpu.unit, "s");
    let Some(metric::Data::Sum(sum)) = &cpu.data else {
        panic!("cpu.time is a sum: {cpu:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let point = &sum.data_points[0];
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano <= point.time_unix_nano);
    // Utilization is a ratio gauge as microsandbox sends it.
    assert_eq!(latest("microsandbox.cpu.utilization").unit, "1");
    // Boot phases as a histogram with a phase attribute.
    let boot = latest("msb.sandbox.boot.duration");
    let Some(metric::Data::Histogram(histogram)) = &boot.data else {
        panic!("boot.duration is a histogram")
    };
    let phases: HashSet<String> = histogram
        .data_points
        .iter()
        .filter(|p| p.count >= 1)
        .filter_map(|p| text(&p.attributes, "phase"))
        .collect();
    for phase in ["spawn", "sandbox", "agent", "workload", "total"] {
        assert!(phases.contains(phase), "phase {phase} observed: {phases:?}");
    }
    // The file servers' latency as a histogram per sandbox, over its own buckets.
    let fs = latest("msb.sandbox.filesystem.operation.duration");
    let Some(metric::Data::Histogram(histogram)) = &fs.data else {
        panic!("filesystem.operation.duration is a histogram")
    };
    let point = histogram
        .data_points
        .iter()
        .find(|p| text(&p.attributes, "sandbox.name").is_some())
        .expect("a sandbox's point");
    assert_eq!(point.explicit_bounds, msb_metrics::FS_LATENCY_BUCKETS);
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano < point.time_unix_nano);
    // The registry's names and nothing else.
    let declared: HashSet<&str> = msb_metrics::INSTRUMENTS
        .iter()
        .map(|i| i.name)
        .chain(msb_metrics::DAEMON_INSTRUMENTS.iter().map(|i| i.name))
        .collect();
    for (_, m) in &metrics {
        assert!(
            declared.contains(m.name.as_str()),
            "{} is not declared",
            m.name
        );
    }

    // Spans: the API requests of both commands and the boot phases are in the caller's trace,
    // the requests being children of the caller's span.
    wait_for(Duration::from_secs(20), "msbd's spans", || {
        let spans = receiver.spans();
        spans.iter().any(|s| s.name == "boot.workload")
            && spans.iter().any(|s| s.name == "exec.session")
    });
    let spans = receiver.spans();
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let names: HashSet<&str> = ours.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "POST /v1/sandboxes",
        "sandbox.create",
        "sandbox.start",
        "boot.spawn",
        "boot.sandbox",
        "boot.agent",
        "boot.workload",
        "GET /v1/sandboxes/{name}/session",
        "exec.session",
    ] {
        assert!(
            names.contains(name),
            "span {name:?} in the caller's trace: {names:?}"
        );
    }
    let ready = ours.iter().find(|s| s.name == "boot.workload").unwrap();
    assert!(
        ready.events.iter().any(|e| e.name == "sandbox.ready"),
        "the boot ends with a sandbox.ready event"
    );
    let requests: Vec<&&Span> = ours
        .iter()
        .filter(|s| s.name.starts_with("POST ") || s.name.starts_with("GET "))
        .collect();
    assert!(requests
        .iter()
        .all(|s| hex(&s.parent_span_id) == PARENT_SPAN));
    home.ok(&["rm", "-f", "traced"]);
}

#[test]
fn grpc_metrics_and_http_traces_reach_real_receivers() {
    if !require_root() {
        return;
    }
    let receiver = Receiver::start();
    let grpc = format!("http://{}", receiver.grpc);
    let http = format!("http://{}/v1/traces", receiver.http);
    exports_reach(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &grpc),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &http),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    assert!(receiver.received.tenants.lock().unwrap().contains("acme"));
    assert!(
        receiver
            .received
            .gzipped
            .load(std::sync::atomic::Ordering::Relaxed),
        "OTEL_EXPORTER_OTLP_COMPRESSION=gzip compresses the HTTP traces"
    );
}

#[test]
fn http_metrics_and_grpc_traces_reach_real_receivers() {
    if !require_root() {
        return;
    }
    let receiver = Receiver::start();
    let base = format!("http://{}", receiver.http);
    let grpc = format!("http://{}", receiver.grpc);
    exports_reach(
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &grpc),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=globex"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    assert!(receiver.received.tenants.lock().unwrap().contains("globex"));
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn prometheus_value(home: &TestHome, series: &str) -> f64 {
    let status: serde_json::Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let address = status["prometheus_address"].as_str().unwrap().to_owned();
    let output = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{address}/metrics")])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&output.stdout);
    body.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_collector_away_for_a_minute_costs_bounded_memory_and_counted_drops() {
    if !require_root() {
        return;
    }
    // The receiver's addresses, unused for now: nothing listens for the first minute.
    let (grpc, http) = two_free_addrs_outside_ephemeral_range();
    let metrics = format!("http://{http}/v1/metrics");
    let traces = format!("http://{grpc}");
    let home = TestHome::with_env(&[
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &metrics),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("MSB_OTLP_QUEUE_BYTES", "65536"),
    ]);
    for name in ["a", "b", "c"] {
        home.ok(&["run", "-n", name, "-d", "--", "sleep", "1000"]);
    }
    let pid = home.daemon_pid().expect("msbd running");
    std::thread::sleep(Duration::from_secs(5));
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        // Keep spans coming too.
        home.ok(&["exec", "a", "--", "true"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_after = rss_kib(pid);
    let dropped = prometheus_value(&home, "msb_otlp_dropped_total{signal=\"metrics\"}");
    let failed = prometheus_value(
        &home,
        "msb_otlp_exports_total{signal=\"metrics\",result=\"failure\"}",
    );
    eprintln!(
        "collector away 60 s: msbd RSS {rss_before} -> {rss_after} KiB, {failed} failed exports, {dropped} points dropped"
    );
    assert!(failed >= 5.0, "failed exports counted: {failed}");
    assert!(dropped > 0.0, "dropped data points counted: {dropped}");
    // 64 KiB of queue per signal: msbd must not grow with the outage.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "msbd's RSS grew from {rss_before} KiB to {rss_after} KiB while the collector was away"
    );

    // The collector comes back: exports resume (the back-off is at most 10 s).
    let receiver = Receiver::start_on(grpc, http);
    wait_for(Duration::from_secs(30), "exports to resume", || {
        !receiver.received.metrics.lock().unwrap().is_empty()
            && !receiver.received.traces.lock().unwrap().is_empty()
    });
    let succeeded = prometheus_value(
        &home,
        "msb_otlp_exports_total{signal=\"metrics\",result=\"success\"}",
    );
    assert!(succeeded >= 1.0);
    for name in ["a", "b", "c"] {
        home.ok(&["rm", "-f", name]);
    }
}

#[test]
fn an_invalid_otlp_variable_is_one_clear_error_at_start() {
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization"),
    ] {
        let mut env = vec![(variable, value)];
        if variable != "OTEL_EXPORTER_OTLP_ENDPOINT" {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"));
        }
        let home = TestHome::with_env(&env);
        let run = home.msb(&["ls"]);
        assert_ne!(run.code, 0, "{variable}={value} accepted");
        assert!(
            run.stderr.contains(variable) && run.stderr.contains("invalid OTLP configuration"),
            "the error names {variable}: {}",
            run.stderr
        );
        assert!(home.daemon_pid().is_none(), "no msbd left running");
    }
}

#[test]
fn msbd_toml_configures_export_and_its_mistakes_are_named() {
    if !require_root() {
        return;
    }
    let receiver = Receiver::start();
    let home = TestHome::new();
    std::fs::write(
        home.path().join("msbd.toml"),
        format!(
            "[otlp]\nendpoint = \"http://{}\"\nprotocol = \"grpc\"\nmetric_interval_ms = 300\ntraces = false\n",
            receiver.grpc
        ),
    )
    .unwrap();
    home.ok(&["run", "-n", "configured", "-d", "--", "sleep", "1000"]);
    wait_for(
        Duration::from_secs(20),
        "metrics configured by msbd.toml",
        || {
            receiver
                .metrics()
                .iter()
                .any(|(_, m)| m.name == "microsandbox.memory.usage")
        },
    );
    home.ok(&["rm", "-f", "configured"]);
    home.ok(&["server", "stop"]);

    for (text, named) in [
        ("[otlp]\nendpont = \"http://127.0.0.1:4318\"\n", "endpont"),
        ("[otlp]\nendpoint = \"127.0.0.1:4318\"\n", "[otlp] endpoint"),
        (
            "[prometheus]\naddress = \"everywhere\"\n",
            "[prometheus] address",
        ),
    ] {
        let home = TestHome::new();
        std::fs::write(home.path().join("msbd.toml"), text).unwrap();
        // The test fixture sets MSB_PROMETHEUS_ADDR, which would win over the file.
        let output = home
            .command(&["ls"])
            .env_remove("MSB_PROMETHEUS_ADDR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?} accepted");
        assert!(
            stderr.contains("msbd.toml") && stderr.contains(named),
            "the error names the file and {named}: {stderr}"
        );
    }
}
