//! msbd's configuration: the optional file `$MSB_HOME/msbd.toml`, under the environment.
//!
//! ```toml
//! [prometheus]
//! address = "127.0.0.1:9464"        # "off" disables; MSB_PROMETHEUS_ADDR wins
//! labels = ["user.id"]              # user labels exported as labels; MSB_PROMETHEUS_LABELS wins
//!
//! [otlp]                            # each key stands for a standard OTEL_* variable, which wins
//! endpoint = "http://127.0.0.1:4317"   # OTEL_EXPORTER_OTLP_ENDPOINT
//! protocol = "grpc"                 # OTEL_EXPORTER_OTLP_PROTOCOL: grpc | http/protobuf
//! headers = { x-tenant = "acme" }   # OTEL_EXPORTER_OTLP_HEADERS
//! timeout_ms = 10000                # OTEL_EXPORTER_OTLP_TIMEOUT
//! metric_interval_ms = 60000        # OTEL_METRIC_EXPORT_INTERVAL
//! service_name = "msbd"             # OTEL_SERVICE_NAME
//! resource = { "deployment.environment" = "prod" }   # OTEL_RESOURCE_ATTRIBUTES
//! metrics = true                    # false: OTEL_METRICS_EXPORTER=none
//! traces = true                     # false: OTEL_TRACES_EXPORTER=none
//! queue_bytes = 8388608             # MSB_OTLP_QUEUE_BYTES
//!
//! [sandboxes]
//! warm_supervisors = 2              # idle supervisors kept ready (0-16); MSB_WARM_SUPERVISORS wins
//! boot_ahead = true                 # each boots a sandbox ahead of time; MSB_BOOT_AHEAD (1/0) wins
//! output_log_max_bytes = 16777216   # each sandbox's output log is rotated once past this
//!                                   # (at least 65536); MSB_OUTPUT_LOG_MAX_BYTES wins
//! ```
//!
//! Unknown keys and wrong types are errors naming the file, line and key: a typo must not
//! silently turn export off.

use std::collections::BTreeMap;
use std::path::Path;

use msb_telemetry::otlp::OtlpConfig;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    prometheus: PrometheusSection,
    #[serde(default)]
    otlp: OtlpSection,
    #[serde(default)]
    sandboxes: SandboxesSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxesSection {
    warm_supervisors: Option<u64>,
    boot_ahead: Option<bool>,
    output_log_max_bytes: Option<u64>,
}

/// Default listen address; `MSB_PROMETHEUS_ADDR` or `msbd.toml` override (`off` disables, port 0
/// picks one).
pub const DEFAULT_PROMETHEUS_ADDR: &str = "127.0.0.1:9464";

/// Idle supervisors msbd keeps ready when nothing says otherwise. Two, so that back-to-back
/// starts find one whose sandbox booted while the start before ran (with one, each start waits
/// for the boot of the replacement spawned by the one before: 17 against 13 ms per
/// back-to-back `msb run` here). Each idle one with its booted sandbox holds about 5 MiB and a
/// loop device.
pub const DEFAULT_WARM_SUPERVISORS: usize = 2;
/// Most idle supervisors msbd keeps ready.
pub const MAX_WARM_SUPERVISORS: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusSection {
    address: Option<String>,
    labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpSection {
    endpoint: Option<String>,
    protocol: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    timeout_ms: Option<u64>,
    metric_interval_ms: Option<u64>,
    service_name: Option<String>,
    resource: Option<BTreeMap<String, String>>,
    metrics: Option<bool>,
    traces: Option<bool>,
    queue_bytes: Option<u64>,
}

/// What msbd runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub otlp: OtlpConfig,
    /// `host:port`, or `off`.
    pub prometheus_addr: String,
    /// User label keys exported as series labels and OTLP attributes.
    pub prometheus_labels: Vec<String>,
    /// Supervisors spawned ahead of time, each with its launcher already in placeholder
    /// cgroups, so that a start skips the supervisor's spawn and the cgroup migration.
    pub warm_supervisors: usize,
    /// Each warm supervisor also boots a sandbox of the configuration most starts ask for
    /// (`msb_runtime::backend::bootable`), which such a start takes as it is.
    pub boot_ahead: bool,
    /// Each sandbox's output log is rotated once past this; older output is dropped and
    /// counted.
    pub output_log_max_bytes: u64,
}

/// Percent-encodes what would break a `k=v,k=v` list.
fn encode(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(',', "%2C")
        .replace('=', "%3D")
}

fn pairs(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl DaemonConfig {
    /// From `path` (absent is fine) and the process environment.
    pub fn load(path: &Path) -> Result<DaemonConfig, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::load_with(path, env)
    }

    pub fn load_with(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DaemonConfig, String> {
        let file: File = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        // The file's [otlp] keys, as the variables they stand for.
        let o = &file.otlp;
        let mut from_file: BTreeMap<&str, (&str, String)> = BTreeMap::new();
        let mut put = |variable: &'static str, key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                from_file.insert(variable, (key, value));
            }
        };
        put(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "endpoint",
            o.endpoint.clone(),
        );
        put(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "protocol",
            o.protocol.clone(),
        );
        put(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "headers",
            o.headers.as_ref().map(pairs),
        );
        put(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "timeout_ms",
            o.timeout_ms.map(|v| v.to_string()),
        );
        put(
            "OTEL_METRIC_EXPORT_INTERVAL",
            "metric_interval_ms",
            o.metric_interval_ms.map(|v| v.to_string()),
        );
        put("OTEL_SERVICE_NAME", "service_name", o.service_name.clone());
        put(
            "OTEL_RESOURCE_ATTRIBUTES",
            "resource",
            o.resource.as_ref().map(pairs),
        );
        put(
            "OTEL_METRICS_EXPORTER",
            "metrics",
            o.metrics
                .map(|on| if on { "otlp" } else { "none" }.to_owned()),
        );
        put(
            "OTEL_TRACES_EXPORTER",
            "traces",
            o.traces
                .map(|on| if on { "otlp" } else { "none" }.to_owned()),
        );
        put(
            "MSB_OTLP_QUEUE_BYTES",
            "queue_bytes",
            o.queue_bytes.map(|v| v.to_string()),
        );
        let otlp = OtlpConfig::from_lookup(|name| {
            env(name).or_else(|| from_file.get(name).map(|(_, v)| v.clone()))
        })
        .map_err(|e| match from_file.get(e.variable.as_str()) {
            Some((key, _)) if env(&e.variable).is_none() => format!(
                "invalid OTLP configuration: {} [otlp] {key} = {:?}: {}",
                path.display(),
                e.value,
                e.problem
            ),
            _ => format!("invalid OTLP configuration: {e}"),
        })?;
        let prometheus_addr = match (env("MSB_PROMETHEUS_ADDR"), file.prometheus.address) {
            (Some(v), _) => (v, "MSB_PROMETHEUS_ADDR".to_owned()),
            (None, Some(v)) => (v, format!("{} [prometheus] address", path.display())),
            (None, None) => (DEFAULT_PROMETHEUS_ADDR.to_owned(), String::new()),
        };
        let (prometheus_addr, source) = prometheus_addr;
        if prometheus_addr != "off" {
            if let Err(e) = prometheus_addr.parse::<std::net::SocketAddr>() {
                return Err(format!(
                    "{source} = {prometheus_addr:?}: {e}; expected IP:PORT (port 0 picks one) or off"
                ));
            }
        }
        let prometheus_labels = match env("MSB_PROMETHEUS_LABELS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.prometheus.labels.unwrap_or_default(),
        };
        let prometheus_labels = distinct_label_names(prometheus_labels).map_err(|e| {
            let source = if env("MSB_PROMETHEUS_LABELS").is_some() {
                "MSB_PROMETHEUS_LABELS".to_owned()
            } else {
                format!("{} [prometheus] labels", path.display())
            };
            format!("{source}: {e}")
        })?;
        let warm_supervisors = match env("MSB_WARM_SUPERVISORS") {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                format!("MSB_WARM_SUPERVISORS = {text:?}: expected a whole number from 0 to {MAX_WARM_SUPERVISORS}")
            })?,
            None => file
                .sandboxes
                .warm_supervisors
                .unwrap_or(DEFAULT_WARM_SUPERVISORS as u64),
        };
        if warm_supervisors > MAX_WARM_SUPERVISORS as u64 {
            return Err(format!(
                "warm_supervisors = {warm_supervisors} ({}): at most {MAX_WARM_SUPERVISORS}",
                if env("MSB_WARM_SUPERVISORS").is_some() {
                    "MSB_WARM_SUPERVISORS".to_owned()
                } else {
                    format!("{} [sandboxes]", path.display())
                }
            ));
        }
        let boot_ahead = match env("MSB_BOOT_AHEAD") {
            Some(text) => match text.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(format!(
                        "MSB_BOOT_AHEAD = {text:?}: expected 1 or 0 (true or false)"
                    ))
                }
            },
            None => file.sandboxes.boot_ahead.unwrap_or(true),
        };
        let output_log_max_bytes = match env("MSB_OUTPUT_LOG_MAX_BYTES") {
            Some(text) => (
                text.trim().parse::<u64>().map_err(|_| {
                    format!("MSB_OUTPUT_LOG_MAX_BYTES = {text:?}: expected a number of bytes")
                })?,
                "MSB_OUTPUT_LOG_MAX_BYTES".to_owned(),
            ),
            None => (
                file.sandboxes
                    .output_log_max_bytes
                    .unwrap_or(msb_runtime::logs::DEFAULT_OUTPUT_LOG_MAX_BYTES),
                format!("{} [sandboxes] output_log_max_bytes", path.display()),
            ),
        };
        let (output_log_max_bytes, source) = output_log_max_bytes;
        let min = msb_runtime::logs::MIN_OUTPUT_LOG_MAX_BYTES;
        if output_log_max_bytes < min {
            return Err(format!(
                "{source} = {output_log_max_bytes}: at least {min} bytes"
            ));
        }
        Ok(DaemonConfig {
            otlp,
            prometheus_addr,
            prometheus_labels,
            warm_supervisors: warm_supervisors as usize,
            boot_ahead,
            output_log_max_bytes,
        })
    }
}

/// The label keys once each, refusing two keys that would be one Prometheus label (`user.id`
/// and `user_id` both become `user_id`): their series would carry the label twice.
fn distinct_label_names(keys: Vec<String>) -> Result<Vec<String>, String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut distinct = Vec::new();
    for key in keys {
        if distinct.contains(&key) {
            continue;
        }
        let name = msb_telemetry::exposition::prometheus::user_label_name(&key);
        if let Some(first) = names.insert(name.clone(), key.clone()) {
            return Err(format!(
                "label keys {first:?} and {key:?} are both exported as the Prometheus label {name:?}; keep one"
            ));
        }
        distinct.push(key);
    }
    Ok(distinct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<DaemonConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msbd.toml");
        std::fs::write(&path, text).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DaemonConfig::load_with(&path, |name| env.get(name).cloned())
    }

    #[test]
    fn warm_supervisors_from_file_or_environment() {
        assert_eq!(
            load("", &[]).unwrap().warm_supervisors,
            DEFAULT_WARM_SUPERVISORS
        );
        let text = "[sandboxes]\nwarm_supervisors = 3\n";
        assert_eq!(load(text, &[]).unwrap().warm_supervisors, 3);
        let env = [("MSB_WARM_SUPERVISORS", "0")];
        assert_eq!(load(text, &env).unwrap().warm_supervisors, 0);
        let e = load("", &[("MSB_WARM_SUPERVISORS", "two")]).unwrap_err();
        assert!(e.starts_with("MSB_WARM_SUPERVISORS"), "{e}");
        let e = load("[sandboxes]\nwarm_supervisors = 99\n", &[]).unwrap_err();
        assert!(e.contains("[sandboxes]") && e.contains("at most 16"), "{e}");
        let e = load("[sandboxes]\nwarm = 1\n", &[]).unwrap_err();
        assert!(e.contains("warm"), "{e}");
    }

    #[test]
    fn boot_ahead_from_file_or_environment() {
        assert!(load("", &[]).unwrap().boot_ahead);
        let text = "[sandboxes]\nboot_ahead = false\n";
        assert!(!load(text, &[]).unwrap().boot_ahead);
        assert!(load(text, &[("MSB_BOOT_AHEAD", "1")]).unwrap().boot_ahead);
        let e = load("", &[("MSB_BOOT_AHEAD", "yes")]).unwrap_err();
        assert!(e.starts_with("MSB_BOOT_AHEAD"), "{e}");
        let e = load("[sandboxes]\nboot_ahead = 1\n", &[]).unwrap_err();
        assert!(e.contains("boot_ahead"), "{e}");
    }

    #[test]
    fn output_log_cap_from_file_or_environment() {
        let default = msb_runtime::logs::DEFAULT_OUTPUT_LOG_MAX_BYTES;
        assert_eq!(load("", &[]).unwrap().output_log_max_bytes, default);
        let text = "[sandboxes]\noutput_log_max_bytes = 1048576\n";
        assert_eq!(load(text, &[]).unwrap().output_log_max_bytes, 1 << 20);
        let env = [("MSB_OUTPUT_LOG_MAX_BYTES", "70000")];
        assert_eq!(load(text, &env).unwrap().output_log_max_bytes, 70_000);
        let e = load("", &[("MSB_OUTPUT_LOG_MAX_BYTES", "16M")]).unwrap_err();
        assert!(e.starts_with("MSB_OUTPUT_LOG_MAX_BYTES"), "{e}");
        let e = load("[sandboxes]\noutput_log_max_bytes = 10\n", &[]).unwrap_err();
        assert!(
            e.contains("[sandboxes] output_log_max_bytes = 10: at least 65536"),
            "{e}"
        );
    }

    #[test]
    fn two_label_keys_that_make_one_prometheus_label_are_refused() {
        let e = load("", &[("MSB_PROMETHEUS_LABELS", "user.id,team,user_id")]).unwrap_err();
        assert!(e.starts_with("MSB_PROMETHEUS_LABELS: "), "{e}");
        assert!(e.contains(r#""user.id" and "user_id""#), "{e}");
        assert!(e.contains(r#"label "user_id""#), "{e}");
        let e = load("[prometheus]\nlabels = [\"a-b\", \"a.b\"]\n", &[]).unwrap_err();
        assert!(e.contains("[prometheus] labels"), "{e}");
        // A key listed twice is one label.
        let c = load("", &[("MSB_PROMETHEUS_LABELS", "team,user.id,team")]).unwrap();
        assert_eq!(c.prometheus_labels, ["team", "user.id"]);
    }

    #[test]
    fn the_file_configures_export_and_the_environment_wins() {
        let text = r#"
[prometheus]
address = "127.0.0.1:19464"
labels = ["user.id"]

[otlp]
endpoint = "http://collector:4317"
protocol = "grpc"
headers = { x-tenant = "a,b" }
metric_interval_ms = 5000
traces = false
resource = { "deployment.environment" = "prod" }
"#;
        let c = load(text, &[]).unwrap();
        assert_eq!(c.prometheus_addr, "127.0.0.1:19464");
        assert_eq!(c.prometheus_labels, vec!["user.id"]);
        let metrics = c.otlp.metrics.unwrap();
        assert_eq!(metrics.endpoint, "http://collector:4317");
        assert_eq!(metrics.headers, vec![("x-tenant".into(), "a,b".into())]);
        assert!(c.otlp.traces.is_none());
        assert_eq!(c.otlp.metric_interval.as_millis(), 5000);
        assert_eq!(c.otlp.resource["deployment.environment"], "prod");

        let c = load(
            text,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
                ("MSB_PROMETHEUS_ADDR", "off"),
            ],
        )
        .unwrap();
        assert_eq!(c.otlp.metrics.unwrap().endpoint, "http://other:4317");
        assert_eq!(c.prometheus_addr, "off");
    }

    #[test]
    fn mistakes_in_the_file_name_the_file_and_key() {
        let e = load("[otlp]\nendpont = \"http://c:4318\"\n", &[]).unwrap_err();
        assert!(e.contains("msbd.toml") && e.contains("endpont"), "{e}");
        let e = load("[otlp]\ntimeout_ms = \"soon\"\n", &[]).unwrap_err();
        assert!(e.contains("timeout_ms"), "{e}");
        let e = load("[otlp]\nendpoint = \"collector:4317\"\n", &[]).unwrap_err();
        assert!(
            e.contains("msbd.toml [otlp] endpoint") && e.contains("expected a URL"),
            "{e}"
        );
        // The same mistake from the environment names the variable.
        let e = load("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        let e = load("[prometheus]\naddress = \"localhost\"\n", &[]).unwrap_err();
        assert!(e.contains("[prometheus] address"), "{e}");
        let e = load("", &[("MSB_PROMETHEUS_ADDR", "9464")]).unwrap_err();
        assert!(e.starts_with("MSB_PROMETHEUS_ADDR"), "{e}");
    }

    #[test]
    fn no_file_is_the_defaults() {
        let c = DaemonConfig::load_with(Path::new("/nonexistent/msbd.toml"), |_| None).unwrap();
        assert_eq!(c.prometheus_addr, "127.0.0.1:9464");
        assert!(!c.otlp.is_enabled());
    }
}
