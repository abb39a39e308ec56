//! OTLP exporter configuration from the standard `OTEL_*` environment variables.
//!
//! Read once when msbd starts; anything malformed is one error naming the variable, and msbd
//! refuses to start rather than run without the export its operator asked for. Supported:
//! `OTEL_SDK_DISABLED`, `OTEL_{METRICS,TRACES}_EXPORTER` (`otlp` or `none`),
//! `OTEL_EXPORTER_OTLP[_{METRICS,TRACES}]_{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,COMPRESSION,
//! INSECURE}`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; and msb's
//! own `MSB_OTLP_QUEUE_BYTES` (how much each signal may hold while the collector is away);
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
//! Protocols: `grpc` and `http/protobuf` (the default, as the specification says).

use std::collections::BTreeMap;
use std::time::Duration;

/// The two signals msbd exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Metrics,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Signal::Metrics => "METRICS",
            Signal::Traces => "TRACES",
        }
    }

    /// The path OTLP/HTTP appends to a base endpoint.
    fn http_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Traces => "/v1/traces",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how one signal is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalConfig {
    pub signal: Signal,
    pub protocol: Protocol,
    /// The full URL: for HTTP including `/v1/<signal>`, for gRPC the server's origin.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP[_SIGNAL]_COMPRESSION=gzip`.
    pub gzip: bool,
}

/// Everything the exporters need.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    pub metrics: Option<SignalConfig>,
    pub traces: Option<SignalConfig>,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s).
    pub metric_interval: Duration,
    /// `service.name` and the rest of the resource (from `OTEL_RESOURCE_ATTRIBUTES`).
    pub service_name: String,
    pub resource: BTreeMap<String, String>,
    /// Byte budget of each signal's export queue (`MSB_OTLP_QUEUE_BYTES`, default 8 MiB).
    pub queue_bytes: usize,
    /// Span batching: `OTEL_BSP_SCHEDULE_DELAY` (ms, default 1000 here: msbd's spans are few
    /// and a trace should show up while one looks at it), `OTEL_BSP_MAX_QUEUE_SIZE` (4096),
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512).
    pub span_delay: Duration,
    pub span_queue: usize,
    pub span_batch: usize,
}

/// A configuration error: the variable and what is wrong with its value.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub problem: String,
}

impl OtlpConfig {
    /// From the process environment.
    pub fn from_env() -> Result<OtlpConfig, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// From any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<OtlpConfig, ConfigError> {
        let error = |variable: &str, value: &str, problem: &str| ConfigError {
            variable: variable.to_owned(),
            value: value.to_owned(),
            problem: problem.to_owned(),
        };
        let disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(error("OTEL_SDK_DISABLED", &v, "expected true or false")),
            },
        };
        let metric_interval = match get("OTEL_METRIC_EXPORT_INTERVAL") {
            None => Duration::from_secs(60),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms >= 100 => Duration::from_millis(ms),
                _ => {
                    return Err(error(
                        "OTEL_METRIC_EXPORT_INTERVAL",
                        &v,
                        "expected milliseconds, at least 100",
                    ))
                }
            },
        };
        let mut resource = BTreeMap::new();
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(error(
                        "OTEL_RESOURCE_ATTRIBUTES",
                        &v,
                        &format!("{pair:?} is not key=value"),
                    ));
                };
                let value = percent_decode(value.trim()).ok_or_else(|| {
                    error(
                        "OTEL_RESOURCE_ATTRIBUTES",
                        &v,
                        &format!("bad percent-encoding in {pair:?}"),
                    )
                })?;
                resource.insert(key.trim().to_owned(), value);
            }
        }
        let service_name = get("OTEL_SERVICE_NAME")
            .or_else(|| resource.get("service.name").cloned())
            .unwrap_or_else(|| "msbd".to_owned());
        let queue_bytes = match get("MSB_OTLP_QUEUE_BYTES") {
            None => super::DEFAULT_QUEUE_BYTES,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(bytes) if bytes >= 1024 => bytes,
                _ => {
                    return Err(error(
                        "MSB_OTLP_QUEUE_BYTES",
                        &v,
                        "expected a number of bytes, at least 1024",
                    ))
                }
            },
        };
        let number = |variable: &str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(error(
                        variable,
                        &v,
                        &format!("expected a whole number, at least {min}"),
                    )),
                },
            }
        };
        let span_delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 1000, 1)?);
        let span_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 4096, 1)? as usize;
        let span_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)? as usize;
        if span_batch > span_queue {
            return Err(error(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &span_batch.to_string(),
                "must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
            ));
        }
        let mut config = OtlpConfig {
            metrics: None,
            traces: None,
            metric_interval,
            service_name,
            resource,
            queue_bytes,
            span_delay,
            span_queue,
            span_batch,
        };
        if disabled {
            return Ok(config);
        }
        config.metrics = signal_config(Signal::Metrics, &get)?;
        config.traces = signal_config(Signal::Traces, &get)?;
        Ok(config)
    }

    pub fn is_enabled(&self) -> bool {
        self.metrics.is_some() || self.traces.is_some()
    }
}

/// One signal's settings; `None` when no endpoint is configured for it or its exporter is `none`.
fn signal_config(
    signal: Signal,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SignalConfig>, ConfigError> {
    let error = |variable: &str, value: &str, problem: String| ConfigError {
        variable: variable.to_owned(),
        value: value.to_owned(),
        problem,
    };
    let upper = signal.upper();
    let exporter_var = format!("OTEL_{upper}_EXPORTER");
    if let Some(v) = get(&exporter_var) {
        match v.trim() {
            "none" => return Ok(None),
            "otlp" => {}
            _ => {
                return Err(error(
                    &exporter_var,
                    &v,
                    "msbd exports with otlp or none".to_owned(),
                ))
            }
        }
    }
    // The signal-specific variable wins over the general one.
    let pick = |suffix: &str| -> Option<(String, String)> {
        let specific = format!("OTEL_EXPORTER_OTLP_{upper}_{suffix}");
        if let Some(v) = get(&specific) {
            return Some((specific, v));
        }
        let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
        get(&general).map(|v| (general, v))
    };
    let specific_endpoint = format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT");
    let Some((endpoint_var, endpoint_value)) = pick("ENDPOINT") else {
        return Ok(None);
    };
    let protocol = match pick("PROTOCOL") {
        None => Protocol::HttpProtobuf,
        Some((var, v)) => match v.trim() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            "http/json" => {
                return Err(error(
                    &var,
                    &v,
                    "http/json is not supported; use http/protobuf or grpc".to_owned(),
                ))
            }
            _ => return Err(error(&var, &v, "expected grpc or http/protobuf".to_owned())),
        },
    };
    let insecure = match pick("INSECURE") {
        None => false,
        Some((var, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(error(&var, &v, "expected true or false".to_owned())),
        },
    };
    let url = endpoint_value.trim();
    // A gRPC endpoint may omit the scheme; it then means plaintext only when declared insecure.
    let schemeless;
    let url = if !url.contains("://") && protocol == Protocol::Grpc && insecure {
        schemeless = format!("http://{url}");
        schemeless.as_str()
    } else {
        url
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        error(
            &endpoint_var,
            url,
            "expected a URL such as http://127.0.0.1:4318 (a gRPC endpoint without a scheme \
             needs OTEL_EXPORTER_OTLP_INSECURE=true)"
                .to_owned(),
        )
    })?;
    match scheme {
        "http" => {}
        "https" => return Err(error(
            &endpoint_var,
            url,
            "https is not supported by this build (no TLS); send to a local collector over http"
                .to_owned(),
        )),
        _ => {
            return Err(error(
                &endpoint_var,
                url,
                format!("unsupported scheme {scheme:?}; expected http"),
            ))
        }
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host_ok = !authority.is_empty()
        && authority
            .rsplit_once(':')
            .is_none_or(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !host_ok || rest.contains(char::is_whitespace) {
        return Err(error(
            &endpoint_var,
            url,
            "expected http://HOST[:PORT][/PATH]".to_owned(),
        ));
    }
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://{authority}"),
        // The signal-specific URL is used as given; the general one is a base for /v1/<signal>.
        Protocol::HttpProtobuf if endpoint_var == specific_endpoint => url.to_owned(),
        Protocol::HttpProtobuf => format!("{}{}", url.trim_end_matches('/'), signal.http_path()),
    };
    let headers = match pick("HEADERS") {
        None => Vec::new(),
        Some((var, v)) => parse_headers(&v).map_err(|problem| error(&var, &v, problem))?,
    };
    let gzip = match pick("COMPRESSION") {
        None => false,
        Some((var, v)) => match v.trim() {
            "gzip" => true,
            "none" | "" => false,
            _ => return Err(error(&var, &v, "expected gzip or none".to_owned())),
        },
    };
    let timeout = match pick("TIMEOUT") {
        None => Duration::from_secs(10),
        Some((var, v)) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => return Err(error(&var, &v, "expected milliseconds, above 0".to_owned())),
        },
    };
    Ok(Some(SignalConfig {
        signal,
        protocol,
        endpoint,
        headers,
        timeout,
        gzip,
    }))
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C Baggage format, as OTel specifies).
fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let key = key.trim().to_ascii_lowercase();
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_key {
            return Err(format!("{key:?} is not a valid header name"));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("bad percent-encoding in the value of {key:?}"))?;
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!("the value of {key:?} has control characters"));
        }
        headers.push((key, value));
    }
    Ok(headers)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<OtlpConfig, ConfigError> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set_means_no_export() {
        let c = config(&[]).unwrap();
        assert!(!c.is_enabled());
        assert_eq!(c.service_name, "msbd");
        assert_eq!(c.metric_interval, Duration::from_secs(60));
    }

    #[test]
    fn the_general_endpoint_is_a_base_for_http_and_an_origin_for_grpc() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(
            c.metrics.unwrap().endpoint,
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(
            c.traces.unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        let metrics = c.metrics.unwrap();
        assert_eq!(metrics.protocol, Protocol::Grpc);
        assert_eq!(metrics.endpoint, "http://collector:4317");
        assert_eq!(c.traces.unwrap().protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn signal_specific_settings_win_and_none_turns_a_signal_off() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://b:9000/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=acme,authorization=Bearer%20t",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .unwrap();
        let metrics = c.metrics.unwrap();
        assert_eq!(metrics.endpoint, "http://b:9000/custom");
        assert_eq!(metrics.timeout, Duration::from_millis(2500));
        assert_eq!(
            metrics.headers,
            vec![
                ("x-tenant".to_owned(), "acme".to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned())
            ]
        );
        assert!(c.traces.is_none());
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ])
        .unwrap();
        let metrics = c.metrics.unwrap();
        assert_eq!(metrics.endpoint, "http://collector:4317");
        assert!(metrics.gzip);
        assert!(!config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ])
        .unwrap()
        .is_enabled());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, variable) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:notaport")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz"),
                ],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![("OTEL_METRIC_EXPORT_INTERVAL", "5")],
                "OTEL_METRIC_EXPORT_INTERVAL",
            ),
            (vec![("OTEL_SDK_DISABLED", "maybe")], "OTEL_SDK_DISABLED"),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
                ],
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ),
            (vec![("MSB_OTLP_QUEUE_BYTES", "12")], "MSB_OTLP_QUEUE_BYTES"),
            (
                vec![("OTEL_BSP_SCHEDULE_DELAY", "-1")],
                "OTEL_BSP_SCHEDULE_DELAY",
            ),
            (
                vec![
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
                ],
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            ),
        ] {
            let e = config(&vars).unwrap_err();
            assert_eq!(e.variable, variable, "{vars:?}: {e}");
            assert!(e.to_string().starts_with(variable), "{e}");
        }
    }

    #[test]
    fn resource_attributes_and_service_name() {
        let c = config(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=a%2Cb",
            ),
            ("OTEL_SERVICE_NAME", "msbd-eu"),
        ])
        .unwrap();
        assert_eq!(c.service_name, "msbd-eu");
        assert_eq!(c.resource["team"], "a,b");
    }
}
