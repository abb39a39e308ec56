//! What `msb doctor` reports: one [`Check`] per host fact, ok, warn or fail, with a one-line fix
//! when it is not ok.
//!
//! The client answers what it can see itself (platform, devices, space, the store through
//! msbd); the checks that need the runtime (cgroups, the seccomp filter, the agent, the default
//! root) are answered by the supervisor binary, `msb-supervisor --doctor`, which prints a
//! [`DoctorReport`] as JSON, so that the client links no isolation backend.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Level,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn new(name: &str, status: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
        Check {
            name: name.to_owned(),
            status,
            detail: detail.into(),
            fix: fix.map(str::to_owned),
        }
    }
}

/// What `msb-supervisor --doctor` prints on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_through_its_json() {
        let report = DoctorReport {
            checks: vec![
                Check::new("cgroups", Level::Ok, "v2", None),
                Check::new("seccomp", Level::Fail, "no", Some("install libseccomp")),
            ],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""status":"fail""#), "{json}");
        assert_eq!(serde_json::from_str::<DoctorReport>(&json).unwrap(), report);
    }
}
