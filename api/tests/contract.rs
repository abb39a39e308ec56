//! The OpenAPI document tells the truth about validation: for values at and just past every
//! documented bound, the document allows a request exactly when msbd's checks (serde, then
//! `validate()`) accept it. The document is checked with a small JSON Schema checker for the
//! subset the document uses (below), so that no keyword it relies on goes unchecked: an
//! unknown keyword fails the test.

use msb_api::config::*;
use msb_api::operations::{LogsQuery, StreamQuery, WindowQuery};
use msb_api::requests::*;
use msb_api::{CreateSandboxRequest, ExportRequest, KillRequest, StopRequest};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Whether `value` is valid against `schema` (refs resolved in `doc`).
fn valid(doc: &Value, schema: &Value, value: &Value) -> bool {
    let schema = match schema {
        Value::Bool(b) => return *b,
        Value::Object(o) => o,
        _ => panic!("not a schema: {schema}"),
    };
    let mut ok = true;
    for (key, s) in schema {
        ok &= match key.as_str() {
            "$ref" => {
                let name = s
                    .as_str()
                    .unwrap()
                    .trim_start_matches("#/components/schemas/");
                valid(doc, &doc["components"]["schemas"][name], value)
            }
            "type" => {
                let types: Vec<&str> = match s {
                    Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
                    t => vec![t.as_str().unwrap()],
                };
                types.iter().any(|t| match *t {
                    "null" => value.is_null(),
                    "boolean" => value.is_boolean(),
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "array" => value.is_array(),
                    "object" => value.is_object(),
                    other => panic!("type {other}"),
                })
            }
            "enum" => s.as_array().unwrap().contains(value),
            "const" => s == value,
            "pattern" => value
                .as_str()
                .is_none_or(|v| regex::Regex::new(s.as_str().unwrap()).unwrap().is_match(v)),
            "minLength" => value
                .as_str()
                .is_none_or(|v| v.chars().count() as u64 >= s.as_u64().unwrap()),
            "maxLength" => value
                .as_str()
                .is_none_or(|v| v.chars().count() as u64 <= s.as_u64().unwrap()),
            "minimum" => value.as_f64().is_none_or(|v| v >= s.as_f64().unwrap()),
            "maximum" => value.as_f64().is_none_or(|v| v <= s.as_f64().unwrap()),
            "exclusiveMinimum" => value.as_f64().is_none_or(|v| v > s.as_f64().unwrap()),
            "anyOf" => s.as_array().unwrap().iter().any(|s| valid(doc, s, value)),
            "oneOf" => {
                s.as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| valid(doc, s, value))
                    .count()
                    == 1
            }
            "not" => !valid(doc, s, value),
            "if" => {
                let then = schema.get("then").unwrap_or(&Value::Bool(true));
                !valid(doc, s, value) || valid(doc, then, value)
            }
            "then" => true,
            "required" => value.as_object().is_none_or(|o| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .all(|k| o.contains_key(k.as_str().unwrap()))
            }),
            "properties" => value.as_object().is_none_or(|o| {
                o.iter()
                    .all(|(k, v)| s.get(k).is_none_or(|s| valid(doc, s, v)))
            }),
            "additionalProperties" => value.as_object().is_none_or(|o| {
                let known = schema.get("properties");
                o.iter()
                    .all(|(k, v)| known.is_some_and(|p| p.get(k).is_some()) || valid(doc, s, v))
            }),
            "propertyNames" => value
                .as_object()
                .is_none_or(|o| o.keys().all(|k| valid(doc, s, &json!(k)))),
            "prefixItems" => value.as_array().is_none_or(|a| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .zip(a)
                    .all(|(s, v)| valid(doc, s, v))
            }),
            "items" => value.as_array().is_none_or(|a| {
                let skip = schema
                    .get("prefixItems")
                    .map_or(0, |p| p.as_array().unwrap().len());
                a.iter().skip(skip).all(|v| valid(doc, s, v))
            }),
            "minItems" => value
                .as_array()
                .is_none_or(|a| a.len() as u64 >= s.as_u64().unwrap()),
            "maxItems" => value
                .as_array()
                .is_none_or(|a| a.len() as u64 <= s.as_u64().unwrap()),
            "description" | "format" | "title" | "example" | "examples" | "default" => true,
            other => panic!("the checker does not know keyword {other:?}"),
        };
    }
    ok
}

fn doc() -> Value {
    msb_api::contract::document()
}

/// Whether msbd accepts `value` as a `T`: serde parses it and `check` passes.
fn accepts<T: DeserializeOwned, E>(value: &Value, check: impl Fn(&T) -> Result<(), E>) -> bool {
    serde_json::from_value::<T>(value.clone()).is_ok_and(|t| check(&t).is_ok())
}

fn base_config() -> Value {
    json!({
        "name": "web", "command": [], "env": [], "workdir": null, "cpus": null,
        "memory_mib": null, "volumes": [], "rootfs": {"kind": "default"}, "labels": {},
        "max_duration_secs": null, "idle_timeout_secs": null, "ephemeral": false,
    })
}

/// Create requests with one config field set to each value around its bounds.
fn config_cases() -> Vec<(&'static str, Value)> {
    let long = "a".repeat(MAX_NAME_BYTES);
    let too_long = "a".repeat(MAX_NAME_BYTES + 1);
    vec![
        ("name", json!("a")),
        ("name", json!("a-b.c_D9")),
        ("name", json!(long)),
        ("name", json!(too_long)),
        ("name", json!("-a")),
        ("name", json!(".a")),
        ("name", json!("a/b")),
        ("name", json!("é")),
        ("name", json!("a b")),
        ("cpus", json!(0)),
        ("cpus", json!(-1)),
        ("cpus", json!(1e-9)),
        ("cpus", json!(0.5)),
        ("cpus", json!(MAX_CPUS)),
        ("cpus", json!(MAX_CPUS + 0.001)),
        ("memory_mib", json!(MIN_MEMORY_MIB - 1)),
        ("memory_mib", json!(MIN_MEMORY_MIB)),
        ("memory_mib", json!(MAX_MEMORY_MIB)),
        ("memory_mib", json!(MAX_MEMORY_MIB + 1)),
        ("memory_mib", json!(-1)),
        ("max_duration_secs", json!(0)),
        ("max_duration_secs", json!(MIN_DURATION_SECS)),
        ("max_duration_secs", json!(MAX_DURATION_SECS)),
        ("max_duration_secs", json!(MAX_DURATION_SECS + 1)),
        ("idle_timeout_secs", json!(0)),
        ("idle_timeout_secs", json!(MIN_DURATION_SECS)),
        ("idle_timeout_secs", json!(MAX_DURATION_SECS)),
        ("idle_timeout_secs", json!(MAX_DURATION_SECS + 1)),
        ("metrics_interval_ms", json!(null)),
        ("metrics_interval_ms", json!(0)),
        ("metrics_interval_ms", json!(1)),
        ("metrics_interval_ms", json!(MIN_METRICS_INTERVAL_MS - 1)),
        ("metrics_interval_ms", json!(MIN_METRICS_INTERVAL_MS)),
        ("metrics_interval_ms", json!(MAX_METRICS_INTERVAL_MS)),
        ("metrics_interval_ms", json!(MAX_METRICS_INTERVAL_MS + 1)),
        ("workdir", json!("/")),
        ("workdir", json!("/srv/app")),
        ("workdir", json!("srv")),
        ("workdir", json!("")),
        ("workdir", json!("/a\0b")),
        ("command", json!(["ls", "-l"])),
        ("command", json!(["a\0"])),
        ("env", json!([["A", "b"]])),
        ("env", json!([["A", ""]])),
        ("env", json!([["", "b"]])),
        ("env", json!([["A=B", "c"]])),
        ("env", json!([["A\0", "c"]])),
        ("env", json!([["A", "b\0"]])),
        ("env", json!([["A"]])),
        ("env", json!([["A", "b", "c"]])),
        (
            "volumes",
            json!([{"host": "/", "guest": "/data", "readonly": true}]),
        ),
        (
            "volumes",
            json!([{"host": "/", "guest": "data", "readonly": true}]),
        ),
        (
            "volumes",
            json!([{"host": "/", "guest": "/", "readonly": true}]),
        ),
        (
            "volumes",
            json!([{"host": "/", "guest": "//", "readonly": true}]),
        ),
        (
            "volumes",
            json!([{"host": "/", "guest": "//a/", "readonly": true}]),
        ),
        (
            "volumes",
            json!([{"host": "tmp", "guest": "/data", "readonly": true}]),
        ),
        ("volumes", json!([{"host": "/", "guest": "/data"}])),
        (
            "volumes",
            json!([{"host": "/", "guest": "/d", "readonly": false, "x": 1}]),
        ),
        ("rootfs", json!({"kind": "bind", "path": "/"})),
        ("rootfs", json!({"kind": "bind", "path": "rel"})),
        ("rootfs", json!({"kind": "default", "path": "/"})),
        ("rootfs", json!({"kind": "other"})),
        ("labels", json!({"team": "a", "": ""})),
        ("bogus", json!(1)),
    ]
}

#[test]
fn the_document_allows_exactly_the_sandbox_configurations_msbd_accepts() {
    let doc = doc();
    let schema = json!({"$ref": "#/components/schemas/CreateSandboxRequest"});
    for (field, value) in config_cases() {
        let mut config = base_config();
        config[field] = value.clone();
        let request = json!({"config": config, "start": false, "attach": null});
        let documented = valid(&doc, &schema, &request);
        let accepted = accepts(&request, CreateSandboxRequest::validate);
        assert_eq!(
            documented, accepted,
            "{field} = {value}: document {documented}, msbd {accepted}"
        );
    }
}

#[test]
fn the_document_allows_exactly_the_create_requests_msbd_accepts() {
    let doc = doc();
    let schema = json!({"$ref": "#/components/schemas/CreateSandboxRequest"});
    let config = base_config();
    for request in [
        json!({"config": config, "start": true, "attach": null}),
        json!({"config": config, "start": true}),
        json!({"config": config, "start": true, "attach": {"mode": "stream"}}),
        json!({"config": config, "start": false, "attach": {"mode": "stream"}}),
        json!({"config": config, "start": true, "attach": {"mode": "pty", "rows": 24, "cols": 80}}),
        json!({"config": config, "start": true, "attach": {"mode": "pty", "rows": 65535, "cols": 0}}),
        json!({"config": config, "start": true, "attach": {"mode": "pty", "rows": 65536, "cols": 1}}),
        json!({"config": config, "start": true, "attach": {"mode": "stream", "rows": 1}}),
        json!({"config": config, "start": true, "extra": 1}),
        json!({"config": config}),
        json!({"start": true}),
    ] {
        let documented = valid(&doc, &schema, &request);
        let accepted = accepts(&request, CreateSandboxRequest::validate);
        assert_eq!(
            documented, accepted,
            "{request}: document {documented}, msbd {accepted}"
        );
    }
}

#[test]
fn the_document_allows_exactly_the_bodies_msbd_accepts() {
    let doc = doc();
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    for body in [
        json!({"signal": 0}),
        json!({"signal": MIN_SIGNAL}),
        json!({"signal": 15}),
        json!({"signal": MAX_SIGNAL}),
        json!({"signal": MAX_SIGNAL + 1}),
        json!({"signal": -9}),
        json!({"signal": 9, "x": 1}),
        json!({}),
    ] {
        let (documented, accepted) = (
            valid(&doc, &schema("KillRequest"), &body),
            accepts(&body, KillRequest::validate),
        );
        assert_eq!(documented, accepted, "kill {body}");
    }
    for body in [
        json!({}),
        json!({"timeout_secs": 0}),
        json!({"timeout_secs": MAX_STOP_TIMEOUT_SECS}),
        json!({"timeout_secs": MAX_STOP_TIMEOUT_SECS + 1}),
        json!({"timeout_secs": null, "force": true}),
        json!({"force": 1}),
        json!({"wait": true}),
    ] {
        let (documented, accepted) = (
            valid(&doc, &schema("StopRequest"), &body),
            accepts(&body, StopRequest::validate),
        );
        assert_eq!(documented, accepted, "stop {body}");
    }
    let export = |since: Value, until: Value, path: &str| json!({"since_ms": since, "until_ms": until, "path": path});
    for body in [
        export(json!(0), json!(1), "/tmp/a.parquet"),
        export(json!(-1), json!(1), "/tmp/a.parquet"),
        export(json!(0), json!(MAX_EPOCH_MS), "/tmp/a.parquet"),
        export(json!(0), json!(MAX_EPOCH_MS + 1), "/tmp/a.parquet"),
        export(json!(0), json!(1), "tmp/a.parquet"),
        export(json!(0), json!(1), "/tmp/a.csv"),
        export(json!(0), json!(1), "/tmp/a\0.parquet"),
    ] {
        let (documented, accepted) = (
            valid(&doc, &schema("ExportRequest"), &body),
            accepts(&body, ExportRequest::validate),
        );
        assert_eq!(documented, accepted, "export {body}");
    }
}

/// The schema of query (or path) parameter `name` of the operation at `path`.
fn parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    let item = &doc["paths"][path];
    let op = item.get("get").or_else(|| item.get("post")).unwrap();
    let p = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"));
    &p["schema"]
}

/// A query struct from the parameters given (as a query string would give them).
fn query<T: DeserializeOwned>(fields: Value) -> T {
    serde_json::from_value(fields).unwrap()
}

#[test]
fn the_document_allows_exactly_the_parameters_msbd_accepts() {
    let doc = doc();
    let name = parameter(&doc, "/v1/sandboxes/{name}", "name");
    for value in [
        "a",
        &"a".repeat(MAX_NAME_BYTES),
        &"a".repeat(MAX_NAME_BYTES + 1),
        "",
        "-a",
        "a.b",
    ] {
        assert_eq!(
            valid(&doc, name, &json!(value)),
            validate_name(value).is_ok(),
            "name {value:?}"
        );
    }
    let since = parameter(&doc, "/v1/history/fleet", "since_ms");
    let step = parameter(&doc, "/v1/history/fleet", "step_ms");
    for (since_ms, step_ms) in [
        (0, None),
        (-1, None),
        (MAX_EPOCH_MS, None),
        (MAX_EPOCH_MS + 1, None),
        (0, Some(MIN_STEP_MS - 1)),
        (0, Some(MIN_STEP_MS)),
        (0, Some(MAX_EPOCH_MS)),
        (0, Some(MAX_EPOCH_MS + 1)),
    ] {
        let documented = valid(&doc, since, &json!(since_ms))
            && step_ms.is_none_or(|s| valid(&doc, step, &json!(s)));
        let q: WindowQuery = query(json!({"since_ms": since_ms, "step_ms": step_ms}));
        assert_eq!(
            documented,
            q.validate().is_ok(),
            "since {since_ms} step {step_ms:?}"
        );
    }
    let interval = parameter(&doc, "/v1/metrics/stream", "interval_ms");
    let stream_name = parameter(&doc, "/v1/metrics/stream", "name");
    for ms in [
        0,
        MIN_STREAM_INTERVAL_MS - 1,
        MIN_STREAM_INTERVAL_MS,
        MAX_STREAM_INTERVAL_MS,
        MAX_STREAM_INTERVAL_MS + 1,
    ] {
        let q: StreamQuery = query(json!({"interval_ms": ms}));
        assert_eq!(
            valid(&doc, interval, &json!(ms)),
            q.validate().is_ok(),
            "interval {ms}"
        );
    }
    for n in ["web", "-web"] {
        let q: StreamQuery = query(json!({"name": n}));
        assert_eq!(
            valid(&doc, stream_name, &json!(n)),
            q.validate().is_ok(),
            "name {n}"
        );
    }
    let tail = parameter(&doc, "/v1/sandboxes/{name}/logs", "tail");
    for n in [0, MAX_TAIL, MAX_TAIL + 1] {
        let q: LogsQuery = query(json!({"tail": n}));
        assert_eq!(
            valid(&doc, tail, &json!(n)),
            q.validate().is_ok(),
            "tail {n}"
        );
    }
}

/// Each bound the validators use appears in the document, where a client reads it.
#[test]
fn every_bound_the_validators_use_is_in_the_document() {
    let doc = doc();
    let config = &doc["components"]["schemas"]["SandboxConfig"]["properties"];
    assert_eq!(config["name"]["maxLength"], json!(MAX_NAME_BYTES));
    assert!(config["name"]["pattern"]
        .as_str()
        .unwrap()
        .contains(NAME_PATTERN.trim_start_matches('^').trim_end_matches('$')));
    assert_eq!(
        config["cpus"]["exclusiveMinimum"],
        json!(MIN_CPUS_EXCLUSIVE)
    );
    assert_eq!(config["cpus"]["maximum"], json!(MAX_CPUS));
    assert_eq!(config["memory_mib"]["minimum"], json!(MIN_MEMORY_MIB));
    assert_eq!(config["memory_mib"]["maximum"], json!(MAX_MEMORY_MIB));
    for field in ["max_duration_secs", "idle_timeout_secs"] {
        assert_eq!(config[field]["minimum"], json!(MIN_DURATION_SECS));
        assert_eq!(config[field]["maximum"], json!(MAX_DURATION_SECS));
    }
    let interval = &config["metrics_interval_ms"]["anyOf"];
    assert_eq!(interval[1]["const"], json!(0));
    assert_eq!(interval[2]["minimum"], json!(MIN_METRICS_INTERVAL_MS));
    assert_eq!(interval[2]["maximum"], json!(MAX_METRICS_INTERVAL_MS));
    assert_eq!(config["workdir"]["pattern"], json!(ABSOLUTE_PATH_PATTERN));
    assert_eq!(
        config["env"]["items"]["prefixItems"][0]["pattern"],
        json!(ENV_NAME_PATTERN)
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["KillRequest"]["properties"]["signal"]["minimum"],
        json!(MIN_SIGNAL)
    );
    assert_eq!(
        schemas["KillRequest"]["properties"]["signal"]["maximum"],
        json!(MAX_SIGNAL)
    );
    assert_eq!(
        schemas["StopRequest"]["properties"]["timeout_secs"]["maximum"],
        json!(MAX_STOP_TIMEOUT_SECS)
    );
    assert_eq!(
        schemas["ExportRequest"]["properties"]["path"]["pattern"],
        json!(PARQUET_PATH_PATTERN)
    );
    for name in msb_api::contract::CLOSED_SCHEMAS {
        let schema = &schemas[name];
        let closed = |s: &Value| s["additionalProperties"] == json!(false);
        match schema.get("oneOf") {
            Some(variants) => assert!(variants.as_array().unwrap().iter().any(closed), "{name}"),
            None => assert!(closed(schema), "{name}"),
        }
    }
    // Vocabulary: statuses, reasons, end causes, error kinds, metrics states.
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let statuses: Vec<String> = msb_api::lifecycle::SandboxStatus::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(strings(&schemas["SandboxStatus"]["enum"]), statuses);
    let reasons: Vec<String> = msb_api::lifecycle::TerminationReason::ALL
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(strings(&schemas["TerminationReason"]["enum"]), reasons);
    assert_eq!(
        strings(&schemas["RunInfo"]["properties"]["end_cause"]["enum"]),
        msb_api::lifecycle::END_CAUSES
    );
    assert_eq!(
        strings(&schemas["ErrorBody"]["properties"]["kind"]["enum"]),
        msb_api::ERROR_KINDS
    );
    assert_eq!(
        strings(&schemas["MetricsReport"]["properties"]["state"]["enum"]),
        ["running", "stalled", "exited"]
    );
    // Every path parameter `name` is a sandbox name.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "name" {
                    assert_eq!(p["schema"], msb_api::contract::name_schema(), "{path}");
                }
                assert_eq!(
                    p["in"] == "path",
                    path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())),
                    "{path}"
                );
            }
        }
    }
}
