//! Metrics in the API: the live report (microsandbox's `msb metrics --format json` keys, in
//! its order, then msb's additions) and the capacity report.

use msb_metrics::{Number, Sample, ValueType, INSTRUMENTS, MICROSANDBOX_FIELDS};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// One sandbox's latest measurements: `name`, `state`, `cpus`, `timestamp`, then every field of
/// the instrument declaration (`msb_metrics::INSTRUMENTS`), microsandbox's first (its 18 keys,
/// in its order), `sandbox_id` and `run_id`, then msb's additions. A field whose source is
/// missing is `null`, never a made-up zero. Serialisation, parsing and the OpenAPI schema are
/// all derived from the declaration, so a new instrument reaches the API by being declared.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsReport {
    pub name: String,
    /// `running`, `stalled` (no sample for max(3 × interval, 3 s)) or `exited`.
    pub state: String,
    pub cpus: Option<f64>,
    /// RFC 3339 time of the sample.
    pub timestamp: String,
    /// The sample (`sampler_cpu_ns` and `timestamp_ms` are not part of the report).
    pub sample: Sample,
}

fn json_number(value: Option<Number>) -> serde_json::Value {
    match value {
        Some(Number::U64(v)) => v.into(),
        Some(Number::F64(v)) => v.into(),
        None => serde_json::Value::Null,
    }
}

impl Serialize for MetricsReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(6 + INSTRUMENTS.len()))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("state", &self.state)?;
        map.serialize_entry("cpus", &self.cpus)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        for (n, instrument) in INSTRUMENTS.iter().enumerate() {
            if n == MICROSANDBOX_FIELDS {
                map.serialize_entry("sandbox_id", &self.sample.sandbox_id)?;
                map.serialize_entry("run_id", &self.sample.run_id)?;
            }
            map.serialize_entry(
                instrument.field,
                &json_number((instrument.get)(&self.sample)),
            )?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MetricsReport {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut take_string = |key: &str| match map.remove(key) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(D::Error::custom(format!(
                "metrics report: `{key}` must be a string"
            ))),
        };
        let (name, state, timestamp) = (
            take_string("name")?,
            take_string("state")?,
            take_string("timestamp")?,
        );
        let (sandbox_id, run_id) = (take_string("sandbox_id")?, take_string("run_id")?);
        let cpus = map.get("cpus").and_then(serde_json::Value::as_f64);
        let mut sample = Sample {
            sandbox_id,
            run_id,
            ..Sample::default()
        };
        for instrument in INSTRUMENTS {
            let value = match map.get(instrument.field) {
                None | Some(serde_json::Value::Null) if instrument.nullable => None,
                None | Some(serde_json::Value::Null) => {
                    return Err(D::Error::custom(format!(
                        "metrics report: `{}` is missing",
                        instrument.field
                    )))
                }
                Some(value) => Some(
                    match instrument.value_type {
                        ValueType::U64 => value.as_u64().map(Number::U64),
                        ValueType::F64 => value.as_f64().map(Number::F64),
                    }
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "metrics report: `{}` is not a {:?} number",
                            instrument.field, instrument.value_type
                        ))
                    })?,
                ),
            };
            (instrument.set)(&mut sample, value);
        }
        Ok(MetricsReport {
            name,
            state,
            cpus,
            timestamp,
            sample,
        })
    }
}

impl utoipa::PartialSchema for MetricsReport {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One sandbox's latest measurements. The first 18 keys are microsandbox's, in its \
                 order; a field whose source is missing is `null`, never a made-up zero. Fields \
                 after `run_id` are msb's additions (docs/metrics.md).",
            ))
            .property("name", string("The sandbox's name."))
            .required("name")
            .property(
                "state",
                string("`running`, `stalled` (no sample for max(3 × interval, 3 s)) or `exited`.")
                    .enum_values(Some(["running", "stalled", "exited"])),
            )
            .required("state")
            .property(
                "cpus",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Number, Type::Null]))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                    .description(Some("The sandbox's CPU quota in cores (`null`: none).")),
            )
            .property("timestamp", string("RFC 3339 time of the sample."))
            .required("timestamp");
        for (n, instrument) in INSTRUMENTS.iter().enumerate() {
            if n == MICROSANDBOX_FIELDS {
                object = object
                    .property("sandbox_id", string("The sandbox's id."))
                    .required("sandbox_id")
                    .property("run_id", string("The run the sample belongs to."))
                    .required("run_id");
            }
            let (base, format) = match instrument.value_type {
                ValueType::U64 => (Type::Integer, KnownFormat::Int64),
                ValueType::F64 => (Type::Number, KnownFormat::Double),
            };
            let schema_type = if instrument.nullable {
                SchemaType::from_iter([base, Type::Null])
            } else {
                SchemaType::new(base)
            };
            let mut description = format!(
                "`{}` ({} in `{}`). {}.",
                instrument.name,
                instrument.kind.as_str(),
                instrument.unit,
                instrument.description
            );
            if let Some(requires) = instrument.requires {
                description.push_str(&format!(" Null without: {requires}."));
            }
            let mut property = ObjectBuilder::new()
                .schema_type(schema_type)
                .format(Some(SchemaFormat::KnownFormat(format)))
                .description(Some(description));
            if instrument.value_type == ValueType::U64 {
                property = property.minimum(Some(0));
            }
            object = object.property(instrument.field, property);
            if !instrument.nullable {
                object = object.required(instrument.field);
            }
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

impl utoipa::ToSchema for MetricsReport {}

/// What this host has and what its sandboxes have been given and use.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct CapacityReport {
    pub host_cpus: u64,
    pub host_memory_bytes: Option<u64>,
    pub host_memory_available_bytes: Option<u64>,
    /// Sum of running sandboxes' `--cpus` (sandboxes without a quota are not counted).
    pub cpus_committed: f64,
    /// Running sandboxes without a CPU quota.
    pub sandboxes_without_cpu_limit: u64,
    /// Sum of running sandboxes' memory limits (`--memory`, or the default: every sandbox
    /// has one).
    pub memory_committed_bytes: u64,
    /// Sum of running sandboxes' latest `cpu_percent`.
    pub cpu_percent_used: f64,
    /// Sum of running sandboxes' latest `memory_bytes`.
    pub memory_used_bytes: u64,
    pub msb_home_free_bytes: Option<u64>,
    pub sandboxes: Vec<SandboxHeadroom>,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct SandboxHeadroom {
    pub name: String,
    pub cpus: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_limit_bytes: Option<u64>,
    /// `memory_limit_bytes - memory_bytes`.
    pub memory_headroom_bytes: Option<u64>,
    pub upper_free_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    fn report() -> MetricsReport {
        let mut sample = Sample {
            sandbox_id: "sb-1".into(),
            run_id: "run-1".into(),
            ..Sample::default()
        };
        for (n, i) in INSTRUMENTS.iter().enumerate() {
            // Every other optional field null, the rest set to a value of its type.
            let value = match i.value_type {
                ValueType::U64 => Number::U64(n as u64 * 1000 + 1),
                ValueType::F64 => Number::F64(n as f64 + 0.25),
            };
            (i.set)(&mut sample, (n % 2 == 0 || !i.nullable).then_some(value));
        }
        MetricsReport {
            name: "web".into(),
            state: "running".into(),
            cpus: Some(0.5),
            timestamp: "2026-12-04T00:00:00Z".into(),
            sample,
        }
    }

    /// The keys of a JSON object, in the order they are written.
    fn keys_in_order(json: &str) -> Vec<String> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(keys)
            }
        }
        use serde::Deserializer;
        serde_json::Deserializer::from_str(json)
            .deserialize_map(Keys)
            .unwrap()
    }

    /// The JSON, its parsing and the OpenAPI schema agree with the instrument declaration: the
    /// same keys in the same order, microsandbox's 18 first, types and nullability as declared.
    #[test]
    fn json_and_schema_follow_the_declaration() {
        let report = report();
        let json = serde_json::to_string(&report).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys = keys_in_order(&json);
        let mut expected = vec!["name", "state", "cpus", "timestamp"];
        expected.extend(INSTRUMENTS[..MICROSANDBOX_FIELDS].iter().map(|i| i.field));
        expected.extend(["sandbox_id", "run_id"]);
        expected.extend(INSTRUMENTS[MICROSANDBOX_FIELDS..].iter().map(|i| i.field));
        assert_eq!(keys, expected);
        assert_eq!(keys[17], "uptime_secs");
        let parsed: MetricsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, report);
        for (n, i) in INSTRUMENTS.iter().enumerate() {
            let v = &value[i.field];
            match (n % 2 == 0 || !i.nullable, i.value_type) {
                (false, _) => assert!(v.is_null(), "{}", i.field),
                (true, ValueType::U64) => assert!(v.is_u64(), "{}", i.field),
                (true, ValueType::F64) => assert!(v.is_f64(), "{}", i.field),
            }
        }
        let RefOr::T(Schema::Object(object)) = MetricsReport::schema() else {
            panic!("the schema is an object");
        };
        let properties: Vec<&str> = object.properties.keys().map(String::as_str).collect();
        assert_eq!(properties, expected);
        let schema = serde_json::to_value(MetricsReport::schema()).unwrap();
        for i in INSTRUMENTS {
            let types = &schema["properties"][i.field]["type"];
            let required = schema["required"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(i.field));
            assert_eq!(required, !i.nullable, "{}", i.field);
            let base = if i.value_type == ValueType::U64 {
                "integer"
            } else {
                "number"
            };
            assert!(
                types == base || types.as_array().is_some_and(|t| t.contains(&base.into())),
                "{}: {types}",
                i.field
            );
        }
        // A report with a field of the wrong type, or a missing required one, is refused.
        let mut wrong = value.clone();
        wrong["memory_bytes"] = serde_json::json!("lots");
        assert!(serde_json::from_value::<MetricsReport>(wrong).is_err());
        let mut missing = value;
        missing.as_object_mut().unwrap().remove("uptime_secs");
        assert!(serde_json::from_value::<MetricsReport>(missing).is_err());
    }
}
