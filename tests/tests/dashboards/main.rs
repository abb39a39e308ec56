//! The Grafana dashboards and Prometheus alert rules in `dashboards/`: their shape, that every
//! metric they name is one msbd can serve, and that every panel and rule expression returns data
//! from a real Prometheus scraping a real msbd with running sandboxes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use msb_e2e::{require_root, TestHome};
use msb_metrics::prometheus::{exported_names, sample_name, sample_name_of};
use msb_metrics::{DAEMON_INSTRUMENTS, INSTRUMENTS};
use serde_json::Value;

mod promql;
mod servers;

use promql::{metric_names, selectors, undeclared, without_threshold};
use servers::{unix_now, Collector, Prometheus};

const DASHBOARDS: &[&str] = &["fleet.json", "sandbox.json", "msb.json"];
const ALERTS: &[&str] = &[
    "MsbSandboxStalled",
    "MsbHeartbeatMissed",
    "MsbSandboxMemoryNearLimit",
    "MsbWritableRootNearlyFull",
    "MsbSandboxOomKills",
    "MsbRunsEndedByOomKill",
    "MsbOtlpExportFailing",
];
const SANDBOX_FILTER: &str = "sandbox_name=~\"$sandbox\"";

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("dashboards")
}

fn rules_path() -> PathBuf {
    dashboards_dir().join("alerts/msb.rules.yml")
}

/// One PromQL expression and where it comes from (for failure messages).
#[derive(Debug, Clone)]
struct Query {
    origin: String,
    expr: String,
}

fn load_dashboard(file: &str) -> Value {
    let path = dashboards_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// Panels, with those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn panel_queries(file: &str, dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!(
                    "dashboard {file}, panel {:?}",
                    panel["title"].as_str().unwrap_or_default()
                ),
                expr: target["expr"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out
}

fn all_panel_queries() -> Vec<Query> {
    DASHBOARDS
        .iter()
        .flat_map(|file| panel_queries(file, &load_dashboard(file)))
        .collect()
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> Option<&'a Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

/// The `sandbox` variable's query (Grafana stores it as a string or as an object).
fn variable_query(variable: &Value) -> String {
    let query = &variable["query"];
    query
        .as_str()
        .or_else(|| query["query"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// An alert rule, read from the rule file without a YAML parser: the file keeps each `expr`
/// on one line, and the e2e test checks the result against the rules Prometheus loaded.
#[derive(Debug)]
struct Rule {
    name: String,
    expr: String,
    block: String,
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    text.split("- alert:")
        .skip(1)
        .map(|block| {
            let name = block.lines().next().unwrap().trim().to_owned();
            let expr = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("expr:"))
                .unwrap_or_else(|| panic!("rule {name} has no expr"))
                .trim()
                .to_owned();
            assert!(
                !expr.is_empty() && !expr.starts_with(['|', '>', '"', '\'']),
                "rule {name}: keep `expr` a plain one-line string"
            );
            Rule {
                name,
                expr,
                block: block.to_owned(),
            }
        })
        .collect()
}

/// Per-sandbox sample names: the sandbox instruments and msbd's instruments with a sandbox.
fn per_sandbox_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = INSTRUMENTS.iter().map(sample_name).collect();
    for i in DAEMON_INSTRUMENTS {
        if i.attributes.contains(&"sandbox.name") {
            names.insert(sample_name_of(i.name, i.unit, i.kind));
        }
    }
    names
}

// ---- shape and names ----------------------------------------------------------------------

fn run_promtool(args: &[&str]) -> Option<(bool, String)> {
    let output = Command::new("promtool").args(args).output().ok()?;
    Some((
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

#[test]
fn dashboards_and_rules_are_well_formed() {
    let rules_file = rules_path();
    let rules_test = dashboards_dir().join("alerts/msb.rules.test.yml");
    match run_promtool(&["check", "rules", rules_file.to_str().unwrap()]) {
        Some((ok, output)) => assert!(ok, "promtool check rules: {output}"),
        None => eprintln!("skipped promtool: Debian's prometheus package is not installed"),
    }
    if let Some((ok, output)) = run_promtool(&["test", "rules", rules_test.to_str().unwrap()]) {
        assert!(ok, "promtool test rules: {output}");
    }

    let expected_datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let per_sandbox = per_sandbox_names();
    let mut uids = BTreeSet::new();
    for file in DASHBOARDS {
        let dashboard = load_dashboard(file);
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{file}: a stable uid");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} is taken");
        assert!(
            dashboard.get("__inputs").is_none() && dashboard.get("__requires").is_none(),
            "{file}: provisioning-native JSON, not an import wrapper"
        );
        assert!(
            dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{file}: schemaVersion"
        );

        let datasource = variable(&dashboard, "datasource")
            .unwrap_or_else(|| panic!("{file}: no `datasource` variable"));
        assert_eq!(datasource["type"], "datasource", "{file}");
        assert_eq!(datasource["query"], "prometheus", "{file}");
        let sandbox = variable(&dashboard, "sandbox")
            .unwrap_or_else(|| panic!("{file}: no `sandbox` variable"));
        assert_eq!(sandbox["type"], "query", "{file}");
        assert_eq!(sandbox["datasource"], expected_datasource, "{file}");
        assert_eq!(
            variable_query(sandbox),
            "label_values(microsandbox_uptime_seconds, sandbox_name)",
            "{file}"
        );
        assert!(
            sandbox["multi"] == true && sandbox["includeAll"] == true,
            "{file}: `sandbox` is multi-value with All"
        );

        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title");
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{file}: panel {title:?}: duplicate id"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"], expected_datasource,
                "{file}: panel {title:?}"
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: panel {title:?} has no query");
            for target in &targets {
                assert_eq!(
                    target["datasource"], expected_datasource,
                    "{file}: panel {title:?}"
                );
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.is_empty(), "{file}: panel {title:?}: empty expr");
                // The detail dashboard follows the `sandbox` variable everywhere.
                if *file == "sandbox.json" {
                    for (name, labels) in selectors(expr) {
                        assert!(
                            !per_sandbox.contains(&name) || labels.contains(SANDBOX_FILTER),
                            "{file}: panel {title:?}: {name} without {SANDBOX_FILTER}: {expr}"
                        );
                    }
                }
            }
        }
        if *file != "msb.json" {
            assert!(
                panel_queries(file, &dashboard)
                    .iter()
                    .any(|q| q.expr.contains(SANDBOX_FILTER)),
                "{file}: no panel uses the sandbox variable"
            );
        }
    }

    let rules = rules();
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ALERTS, "the alert rules");
    for rule in &rules {
        for key in ["for:", "severity:", "summary:", "description:"] {
            assert!(rule.block.contains(key), "rule {}: no {key}", rule.name);
        }
        assert!(
            without_threshold(&rule.expr).is_some(),
            "rule {}: the expression ends in a threshold comparison: {}",
            rule.name,
            rule.expr
        );
        if metric_names(&rule.expr)
            .iter()
            .any(|n| per_sandbox.contains(n))
        {
            assert!(
                rule.block.contains("$labels.sandbox_name"),
                "rule {}: its annotations name the sandbox",
                rule.name
            );
        }
    }
}

#[test]
fn every_name_in_a_dashboard_or_rule_is_declared() {
    let declared: BTreeSet<String> = exported_names().into_iter().collect();
    // The checker itself: a misspelt name fails, labels and keywords are not names.
    let bad = "sum by (sandbox_name) (rate(microsandbox_cpu_seconds_totl{sandbox_name=~\"$sandbox\"}[$__rate_interval])) > bool 0.5";
    assert_eq!(
        undeclared(bad, &declared),
        ["microsandbox_cpu_seconds_totl"]
    );
    let good = "histogram_quantile(0.95, sum without (instance) (rate(msb_exec_latency_seconds_bucket[5m]))) / on () group_left msb_host_cpus offset 1m";
    assert_eq!(undeclared(good, &declared), Vec::<String>::new());
    assert_eq!(
        without_threshold("a{x=\"y>1\"} / (b + c) > 0.9"),
        Some("a{x=\"y>1\"} / (b + c)")
    );
    assert_eq!(without_threshold("a == 1"), Some("a"));
    assert_eq!(without_threshold("rate(a[5m])"), None);

    let mut queries = all_panel_queries();
    for file in DASHBOARDS {
        let query = variable(&load_dashboard(file), "sandbox").map(variable_query);
        let metric = query
            .as_deref()
            .and_then(|q| q.strip_prefix("label_values("))
            .and_then(|q| q.split(',').next())
            .unwrap_or_default();
        queries.push(Query {
            origin: format!("dashboard {file}, variable sandbox"),
            expr: metric.to_owned(),
        });
    }
    queries.extend(rules().into_iter().map(|r| Query {
        origin: format!("rule {}", r.name),
        expr: r.expr,
    }));
    let mut failures = Vec::new();
    for query in &queries {
        if metric_names(&query.expr).is_empty() {
            failures.push(format!("{}: names no metric: {}", query.origin, query.expr));
        }
        for name in undeclared(&query.expr, &declared) {
            failures.push(format!(
                "{}: {name} is not a name msbd serves: {}",
                query.origin, query.expr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- end to end ---------------------------------------------------------------------------

/// A panel expression with Grafana's variables replaced as a dashboard on "All" would.
fn concrete(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "1s")
        .replace("$__range", "5m")
        .replace("${sandbox}", ".*")
        .replace("$sandbox", ".*");
    assert!(
        !expr.contains('$'),
        "a variable the test does not know: {expr}"
    );
    expr
}

#[test]
fn every_panel_and_rule_returns_data_from_a_real_prometheus() {
    if !require_root() {
        return;
    }
    if !msb_e2e::require_prometheus() {
        return;
    }
    let began = Instant::now();
    // An OTLP collector that takes the first exports and then goes away: successes, then
    // failures (and drops once the bounded queue is full).
    let collector = Collector::start();
    let home = TestHome::new();
    let mut start = home.command(&["server", "start"]);
    start
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", collector.port),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000");
    assert!(start.status().unwrap().success(), "msbd starts");
    let status: Value =
        serde_json::from_str(&home.ok(&["server", "status", "--format", "json"])).unwrap();
    let target = status["prometheus_address"]
        .as_str()
        .expect("endpoint")
        .to_owned();

    let prometheus = Prometheus::start(&target, &rules_path());
    home.eventually(Duration::from_secs(20), "Prometheus scrapes msbd", || {
        prometheus
            .api("/api/v1/query?query=up")
            .is_some_and(|a| a["data"]["result"][0]["value"][1] == "1")
    });
    // Boots and execs happen while Prometheus watches, a scrape or more apart, so their
    // counters and histograms move between samples.
    let from = unix_now() - 1.0;
    home.ok(&[
        "run",
        "-n",
        "hog",
        "-d",
        "-m",
        "64M",
        // A CPU quota, so that enforcement periods elapse (the throttling panel's denominator).
        "-c",
        "1",
        "--",
        "sh",
        "-c",
        "head -c 40m /dev/zero > /tmp/x; sleep 1000",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    home.detached("idle", "sleep 1000");
    for name in ["hog", "idle"] {
        home.eventually(Duration::from_secs(20), "a sample", || {
            home.msb(&["metrics", name, "--format", "json"]).code == 0
        });
    }
    // Let the boot spans and a few metric exports through, then take the collector down.
    std::thread::sleep(Duration::from_millis(1500));
    collector.stop();
    for _ in 0..3 {
        // An exec, and operations on /.msb's file server (the latency histogram's panel).
        home.ok(&["exec", "hog", "--", "ls", "-la", "/.msb"]);
        std::thread::sleep(Duration::from_millis(1200));
    }

    // What has no source on this host: null for every running sandbox in `msb metrics`.
    let samples: Vec<Value> = ["hog", "idle"]
        .iter()
        .map(|name| serde_json::from_str(&home.ok(&["metrics", name, "--format", "json"])).unwrap())
        .collect();
    let null: BTreeMap<String, String> = INSTRUMENTS
        .iter()
        .filter(|i| samples.iter().all(|s| s[i.field].is_null()))
        .map(|i| {
            let why = format!(
                "`msb metrics` reports {} as null (needs {})",
                i.field,
                i.requires.unwrap_or("?")
            );
            (sample_name(i), why)
        })
        .collect();

    let rules = rules();
    let mut queries = all_panel_queries();
    for rule in &rules {
        queries.push(Query {
            origin: format!("rule {}", rule.name),
            expr: without_threshold(&rule.expr).unwrap().to_owned(),
        });
    }
    let exempt = |query: &Query| {
        let names = metric_names(&query.expr);
        let all_null = !names.is_empty() && names.iter().all(|n| null.contains_key(n));
        all_null.then(|| {
            names
                .iter()
                .map(|n| format!("{n}: {}", null[n]))
                .collect::<Vec<_>>()
                .join("; ")
        })
    };

    // Poll until every expression has data (rate windows need a few scrapes) or time is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures;
    loop {
        failures = Vec::new();
        for query in &queries {
            match prometheus.has_data(&concrete(&query.expr), from) {
                Ok(true) => {}
                Ok(false) if exempt(query).is_some() => {}
                Ok(false) => failures.push(format!("{}: no data for {}", query.origin, query.expr)),
                Err(e) => failures.push(format!("{}: {e}: {}", query.origin, query.expr)),
            }
        }
        // The export panels show both sides: exports that went through, and failures.
        for result in ["success", "failure"] {
            let expr = format!("sum(msb_otlp_exports_total{{result=\"{result}\"}})");
            if !prometheus.value(&expr).is_some_and(|v| v > 0.0) {
                failures.push(format!("no OTLP export with result {result}: {expr}"));
            }
        }
        if failures.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut passed = 0;
    for query in &queries {
        if let Some(why) = exempt(query) {
            eprintln!(
                "exempted: {}: {}\n    because {why}",
                query.origin, query.expr
            );
        } else {
            passed += 1;
        }
    }
    eprintln!(
        "{} of {passed} expressions (non-exempted) returned data after {:.1} s",
        passed - failures.len().min(passed),
        began.elapsed().as_secs_f64()
    );

    // Prometheus loaded the same rules and evaluates them without error; a healthy fleet fires
    // nothing (the export alert may: the collector is down on purpose).
    let loaded = prometheus.api("/api/v1/rules").expect("rules");
    let loaded: Vec<&Value> = loaded["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let loaded_names: BTreeSet<&str> = loaded.iter().filter_map(|r| r["name"].as_str()).collect();
    let read_names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    if loaded_names != read_names {
        failures.push(format!(
            "Prometheus loaded the rules {loaded_names:?}, the test read {read_names:?}"
        ));
    }
    for rule in &loaded {
        let read = rules.iter().find(|r| rule["name"] == r.name.as_str());
        let query = rule["query"].as_str().unwrap_or_default();
        if read.is_some_and(|r| metric_names(&r.expr) != metric_names(query)) {
            failures.push(format!(
                "rule {}: Prometheus loaded {query}, the test read another expression",
                rule["name"]
            ));
        }
        if rule["health"] == "err" {
            failures.push(format!("rule {}: {}", rule["name"], rule["lastError"]));
        }
        for alert in rule["alerts"].as_array().into_iter().flatten() {
            if rule["name"] != "MsbOtlpExportFailing" {
                failures.push(format!(
                    "rule {}: {} on a healthy fleet: {}",
                    rule["name"], alert["state"], alert["labels"]
                ));
            }
        }
    }
    drop(prometheus);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
