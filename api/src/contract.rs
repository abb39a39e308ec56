//! The constraints the API enforces, written into the OpenAPI document from the same constants
//! the validation uses (`config`, `requests`), so that the document and msbd cannot drift apart.
//!
//! utoipa's `#[schema(...)]` attributes take literals only, so the generated document is
//! completed here: [`document`] takes what `ApiDoc` generates and adds the bounds, patterns,
//! enums and `additionalProperties: false` of the request bodies, and the constraints of the
//! path and query parameters. Links between operations are declared in `operations.rs`.
//! `tests/contract.rs` checks, value by value at each bound, that a request the document allows
//! is one `validate()` accepts.

use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::config::{
    ABSOLUTE_PATH_PATTERN, ENV_NAME_PATTERN, GUEST_PATH_PATTERN, MAX_CPUS, MAX_DURATION_SECS,
    MAX_MEMORY_MIB, MAX_METRICS_INTERVAL_MS, MAX_NAME_BYTES, MAX_NET_RING_FRAMES,
    MAX_ROOT_DISK_MIB, MIN_CPUS_EXCLUSIVE, MIN_DURATION_SECS, MIN_MEMORY_MIB,
    MIN_METRICS_INTERVAL_MS, MIN_NET_RING_FRAMES, MIN_ROOT_DISK_MIB, NAME_PATTERN, NO_NUL_PATTERN,
};
use crate::exec::{
    BASE64_PATTERN, MAX_DRAIN_TIMEOUT_SECS, MAX_EXEC_STDIN_BASE64_CHARS, MAX_EXEC_TIMEOUT_MS,
};
use crate::lifecycle::END_CAUSES;
use crate::operations::ApiDoc;
use crate::requests::{
    MAX_EPOCH_MS, MAX_SIGNAL, MAX_STOP_TIMEOUT_SECS, MAX_STREAM_INTERVAL_MS, MAX_TAIL,
    MIN_EPOCH_MS, MIN_SIGNAL, MIN_STEP_MS, MIN_STREAM_INTERVAL_MS, PARQUET_PATH_PATTERN,
};
use crate::ERROR_KINDS;

/// The request bodies (and the schemas inside them) whose unknown fields msbd refuses
/// (`#[serde(deny_unknown_fields)]` on each type).
pub const CLOSED_SCHEMAS: [&str; 12] = [
    "CreateSandboxRequest",
    "SandboxConfig",
    "VolumeMount",
    "RootfsSource",
    "AttachMode",
    "StopRequest",
    "KillRequest",
    "SqlRequest",
    "ExecRequest",
    "DrainRequest",
    "SessionExec",
    "CreateVolumeRequest",
];

/// A sandbox name as a path or query parameter.
pub fn name_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_BYTES,
        "pattern": NAME_PATTERN,
    })
}

/// An environment variable as a `[name, value]` pair.
fn config_env_pair() -> Value {
    json!({
        "type": "array",
        "prefixItems": [
            {"type": "string", "pattern": ENV_NAME_PATTERN},
            {"type": "string", "pattern": NO_NUL_PATTERN},
        ],
        "items": false,
        "minItems": 2,
        "maxItems": 2,
    })
}

/// An instant in ms since the Unix epoch.
fn instant_schema(nullable: bool) -> Value {
    json!({
        "type": if nullable { json!(["integer", "null"]) } else { json!("integer") },
        "format": "int64",
        "minimum": MIN_EPOCH_MS,
        "maximum": MAX_EPOCH_MS,
    })
}

/// The OpenAPI document: what `ApiDoc` generates, with every constraint msbd enforces.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    constrain_schemas(&mut doc["components"]["schemas"]);
    constrain_parameters(&mut doc["paths"]);
    camel_case_links(&mut doc["paths"]);
    doc
}

/// utoipa 5.5 writes a link's fields as Rust names (`operation_id`, `operation_ref`,
/// `request_body`); OpenAPI spells them `operationId`, `operationRef`, `requestBody`.
fn camel_case_links(paths: &mut Value) {
    let operations = paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        for response in responses.values_mut() {
            let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
                continue;
            };
            for link in links.values_mut().filter_map(Value::as_object_mut) {
                for (from, to) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(from) {
                        link.insert(to.to_owned(), value);
                    }
                }
            }
        }
    }
}

/// Merges `patch`'s keys into the object at `value` (which must exist).
fn merge(value: &mut Value, patch: Value) {
    let target = value.as_object_mut().expect("patching an object schema");
    for (key, v) in patch.as_object().expect("a patch is an object") {
        target.insert(key.clone(), v.clone());
    }
}

fn constrain_schemas(schemas: &mut Value) {
    let config = &mut schemas["SandboxConfig"]["properties"];
    // Empty: msbd picks a name and the sandbox is ephemeral.
    let inner = NAME_PATTERN.trim_start_matches('^').trim_end_matches('$');
    merge(
        &mut config["name"],
        json!({"maxLength": MAX_NAME_BYTES, "pattern": format!("^({inner})?$")}),
    );
    merge(
        &mut config["command"]["items"],
        json!({"pattern": NO_NUL_PATTERN}),
    );
    config["env"]["items"] = config_env_pair();
    merge(
        &mut config["workdir"],
        json!({"pattern": ABSOLUTE_PATH_PATTERN}),
    );
    merge(
        &mut config["cpus"],
        json!({"exclusiveMinimum": MIN_CPUS_EXCLUSIVE, "maximum": MAX_CPUS}),
    );
    merge(
        &mut config["memory_mib"],
        json!({"minimum": MIN_MEMORY_MIB, "maximum": MAX_MEMORY_MIB}),
    );
    merge(
        &mut config["root_disk_mib"],
        json!({"minimum": MIN_ROOT_DISK_MIB, "maximum": MAX_ROOT_DISK_MIB}),
    );
    merge(
        &mut config["net_ring_frames"],
        json!({"minimum": MIN_NET_RING_FRAMES, "maximum": MAX_NET_RING_FRAMES}),
    );
    for field in ["max_duration_secs", "idle_timeout_secs"] {
        merge(
            &mut config[field],
            json!({"minimum": MIN_DURATION_SECS, "maximum": MAX_DURATION_SECS}),
        );
    }
    // 0 turns metrics off; otherwise a range: one range cannot say it.
    let description = config["metrics_interval_ms"]["description"].clone();
    config["metrics_interval_ms"] = json!({
        "description": description,
        "anyOf": [
            {"type": "null"},
            {"type": "integer", "format": "int64", "const": 0},
            {"type": "integer", "format": "int64",
             "minimum": MIN_METRICS_INTERVAL_MS, "maximum": MAX_METRICS_INTERVAL_MS},
        ],
    });
    // `attach` only with `start`.
    merge(
        &mut schemas["CreateSandboxRequest"],
        json!({
            "if": {"required": ["attach"], "properties": {"attach": {"not": {"type": "null"}}}},
            "then": {"properties": {"start": {"const": true}}},
        }),
    );
    let volume = &mut schemas["VolumeMount"]["properties"];
    merge(
        &mut volume["host"],
        json!({"pattern": ABSOLUTE_PATH_PATTERN}),
    );
    merge(&mut volume["guest"], json!({"pattern": GUEST_PATH_PATTERN}));
    merge(
        &mut volume["volume"],
        json!({"maxLength": MAX_NAME_BYTES, "pattern": NAME_PATTERN}),
    );
    // A host path or a named volume (when both are given, the volume's place wins).
    merge(
        &mut schemas["VolumeMount"],
        json!({"anyOf": [
            {"required": ["host"]},
            {"required": ["volume"], "properties": {"volume": {"type": "string"}}},
        ]}),
    );
    for variant in variants(&mut schemas["RootfsSource"]) {
        if let Some(path) = variant["properties"].get_mut("path") {
            merge(path, json!({"pattern": ABSOLUTE_PATH_PATTERN}));
        }
    }
    for variant in variants(&mut schemas["AttachMode"]) {
        for field in ["rows", "cols"] {
            if let Some(size) = variant["properties"].get_mut(field) {
                merge(size, json!({"minimum": 0, "maximum": u16::MAX}));
            }
        }
    }
    merge(
        &mut schemas["StopRequest"]["properties"]["timeout_secs"],
        json!({"minimum": 0, "maximum": MAX_STOP_TIMEOUT_SECS}),
    );
    merge(
        &mut schemas["KillRequest"]["properties"]["signal"],
        json!({"minimum": MIN_SIGNAL, "maximum": MAX_SIGNAL}),
    );
    for name in ["ExecRequest", "SessionExec"] {
        let command = &mut schemas[name]["properties"];
        merge(&mut command["argv"], json!({"minItems": 1}));
        merge(
            &mut command["argv"]["items"],
            json!({"pattern": NO_NUL_PATTERN}),
        );
        command["env"]["items"] = config_env_pair();
        merge(
            &mut command["workdir"],
            json!({"pattern": ABSOLUTE_PATH_PATTERN}),
        );
    }
    for field in ["rows", "cols"] {
        merge(
            &mut schemas["TerminalSize"]["properties"][field],
            json!({"maximum": u16::MAX}),
        );
    }
    merge(
        &mut schemas["CreateVolumeRequest"]["properties"]["name"],
        json!({"minLength": 1, "maxLength": MAX_NAME_BYTES, "pattern": NAME_PATTERN}),
    );
    // A dir volume's budget is a quota, a disk volume's its size: never the other.
    merge(
        &mut schemas["CreateVolumeRequest"],
        json!({
            "if": {"required": ["kind"], "properties": {"kind": {"const": "disk"}}},
            "then": {"properties": {"quota_mib": {"type": "null"}}},
            "else": {"properties": {"size_mib": {"type": "null"}}},
        }),
    );
    let exec = &mut schemas["ExecRequest"]["properties"];
    merge(
        &mut exec["stdin"],
        json!({"pattern": BASE64_PATTERN, "maxLength": MAX_EXEC_STDIN_BASE64_CHARS}),
    );
    merge(
        &mut exec["timeout_ms"],
        json!({"minimum": 1, "maximum": MAX_EXEC_TIMEOUT_MS}),
    );
    let drain = &mut schemas["DrainRequest"]["properties"];
    merge(
        &mut drain["timeout_secs"],
        json!({"minimum": 0, "maximum": MAX_DRAIN_TIMEOUT_SECS}),
    );
    merge(
        &mut drain["stop_timeout_secs"],
        json!({"minimum": 0, "maximum": MAX_STOP_TIMEOUT_SECS}),
    );
    let export = &mut schemas["ExportRequest"]["properties"];
    export["since_ms"] = instant_schema(false);
    export["until_ms"] = instant_schema(false);
    merge(
        &mut export["path"],
        json!({"pattern": PARQUET_PATH_PATTERN}),
    );
    merge(
        &mut schemas["RunInfo"]["properties"]["end_cause"],
        json!({"enum": END_CAUSES.iter().map(|c| json!(c)).chain([Value::Null]).collect::<Vec<_>>()}),
    );
    merge(
        &mut schemas["ErrorBody"]["properties"]["kind"],
        json!({"enum": ERROR_KINDS}),
    );
    for name in CLOSED_SCHEMAS.into_iter().chain(["ExportRequest"]) {
        let schema = &mut schemas[name];
        if schema.get("oneOf").is_some() {
            // serde's `deny_unknown_fields` does not reach the unit variants of an internally
            // tagged enum (`{"kind": "default", "x": 1}` parses), so only the variants with
            // fields besides the tag are closed.
            for variant in variants(schema) {
                let fields = variant["properties"].as_object().map_or(0, |p| p.len());
                if fields > 1 {
                    merge(variant, json!({"additionalProperties": false}));
                }
            }
        } else {
            merge(schema, json!({"additionalProperties": false}));
        }
    }
}

/// The variants of a `oneOf` schema.
fn variants(schema: &mut Value) -> impl Iterator<Item = &mut Value> {
    schema["oneOf"]
        .as_array_mut()
        .expect("a oneOf schema")
        .iter_mut()
}

/// The constraints of path and query parameters, by name.
fn constrain_parameters(paths: &mut Value) {
    for (_, item) in paths.as_object_mut().expect("paths").iter_mut() {
        for (_, operation) in item.as_object_mut().expect("a path item").iter_mut() {
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters {
                let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                let schema = &mut parameter["schema"];
                // An optional parameter is absent, never null.
                if let Some(types) = schema["type"].as_array() {
                    let types: Vec<Value> =
                        types.iter().filter(|t| *t != "null").cloned().collect();
                    schema["type"] = types[0].clone();
                }
                match name.as_str() {
                    "name" => *schema = name_schema(),
                    "since_ms" | "until_ms" => *schema = instant_schema(false),
                    "step_ms" => merge(
                        schema,
                        json!({"minimum": MIN_STEP_MS, "maximum": MAX_EPOCH_MS}),
                    ),
                    "interval_ms" => merge(
                        schema,
                        json!({"minimum": MIN_STREAM_INTERVAL_MS, "maximum": MAX_STREAM_INTERVAL_MS}),
                    ),
                    "tail" => merge(schema, json!({"minimum": 0, "maximum": MAX_TAIL})),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_spelt_as_openapi_spells_them() {
        let mut paths = json!({"/x": {"post": {"responses": {"201": {"links": {
            "get": {"operation_id": "get_x", "parameters": {"name": "$response.body#/name"}}
        }}}}}});
        camel_case_links(&mut paths);
        let link = &paths["/x"]["post"]["responses"]["201"]["links"]["get"];
        assert_eq!(link["operationId"], "get_x");
        assert!(link.get("operation_id").is_none());
        assert_eq!(link["parameters"]["name"], "$response.body#/name");
    }

    /// The create answer links to every operation that takes the created sandbox's name, and
    /// each link names an operation of the document.
    #[test]
    fn create_links_to_the_operations_on_its_sandbox() {
        let doc = document();
        let links = doc["paths"]["/v1/sandboxes"]["post"]["responses"]["201"]["links"]
            .as_object()
            .expect("links");
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap_or_default().to_owned());
            }
        }
        for id in [
            "inspect_sandbox",
            "start_sandbox",
            "stop_sandbox",
            "sandbox_metrics",
            "remove_sandbox",
        ] {
            assert!(links.values().any(|l| l["operationId"] == id), "{id}");
        }
        for link in links.values() {
            assert!(ids.contains(&link["operationId"].as_str().unwrap().to_owned()));
            assert_eq!(link["parameters"]["name"], "$response.body#/name");
        }
    }
}
