//! History in the API: per-sandbox and fleet series, read-only SQL, Parquet export.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A window of history. Gauges are averaged per step; counters are per-second rates.
#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct HistoryResponse {
    /// The sandbox, or `*` for the fleet.
    pub name: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub step_ms: i64,
    /// One object per step with data, oldest first (fields as in `docs/metrics.md`; rates
    /// end in `_per_sec`).
    #[schema(value_type = Vec<Object>)]
    pub points: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement over the documented views (`samples`, `samples_1m`, `sandboxes`,
    /// `runs`, `events`, ...).
    pub sql: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct SqlResponse {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Absolute path of the Parquet file msbd writes (on msbd's host).
    pub path: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, ToSchema)]
pub struct ExportResponse {
    pub rows: u64,
    pub path: String,
}
