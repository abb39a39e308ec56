//! Live metrics: the latest sample of every sandbox, as the supervisors stream them.
//!
//! `msb metrics`, the SDKs' live calls (and, with the exporters, the Prometheus endpoint and the
//! OTel observable instruments) read from here; history goes to the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use msb_metrics::Sample;

/// The latest sample of one sandbox and when it arrived.
#[derive(Debug, Clone)]
pub struct Latest {
    pub sample: Sample,
    pub received: Instant,
    pub interval_ms: u64,
}

/// How fresh a sandbox's metrics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsState {
    /// Sampled within max(3 × interval, 3 s).
    Running,
    /// Active, but no sample for longer than that.
    Stalled,
    /// The run ended; the terminal sample is kept.
    Exited,
}

#[derive(Debug, Default)]
pub struct LiveMetrics {
    latest: Mutex<HashMap<String, Latest>>,
}

impl LiveMetrics {
    pub fn record(&self, samples: &[Sample], interval_ms: u64) {
        let mut latest = self.latest.lock().unwrap();
        for sample in samples {
            let newer = latest.get(&sample.sandbox_id).is_none_or(|l| {
                l.sample.run_id != sample.run_id || l.sample.timestamp_ms <= sample.timestamp_ms
            });
            if newer {
                latest.insert(
                    sample.sandbox_id.clone(),
                    Latest {
                        sample: sample.clone(),
                        received: Instant::now(),
                        interval_ms,
                    },
                );
            }
        }
    }

    pub fn get(&self, sandbox_id: &str) -> Option<Latest> {
        self.latest.lock().unwrap().get(sandbox_id).cloned()
    }

    pub fn forget(&self, sandbox_id: &str) {
        self.latest.lock().unwrap().remove(sandbox_id);
    }
}

/// The state of a sandbox's metrics given whether its run is active.
pub fn state_of(latest: &Latest, active: bool) -> MetricsState {
    if !active {
        return MetricsState::Exited;
    }
    let stale_after_ms = (3 * latest.interval_ms).max(3_000);
    let age_ms = msb_runtime::run_record::now_ms().saturating_sub(latest.sample.timestamp_ms);
    if age_ms > stale_after_ms {
        MetricsState::Stalled
    } else {
        MetricsState::Running
    }
}
