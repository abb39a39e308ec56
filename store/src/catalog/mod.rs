//! The sandbox catalog: sandboxes, their labels and runs, and lifecycle events.
//!
//! msbd reads the catalog from memory ([`Mirror`], loaded when the store opens) and every
//! change goes to memory first, then to DuckDB through one writer thread that commits whatever
//! has queued up in one transaction ([`CatalogWriter`]). A DuckDB point query or commit costs
//! 0.5-4 ms here, and a `msb run` made about twenty of them on its critical path (ADR 008).
//! Readers of the tables themselves (events, read-only SQL, `health`) flush first.

use std::collections::{BTreeMap, HashMap};

use duckdb::Row;

use crate::{Store, StoreError};

mod writer;

pub(crate) use writer::{CatalogWriter, Mutation};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SandboxRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub config_json: String,
    pub ephemeral: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRow {
    pub id: String,
    pub sandbox_id: String,
    pub run_number: i32,
    pub supervisor_pid: Option<i32>,
    pub supervisor_start_ticks: Option<u64>,
    pub init_pid: Option<i32>,
    pub workload_pid: Option<i32>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub termination_reason: Option<String>,
    pub error: Option<String>,
    /// Processes the kernel's OOM killer ended during the run (`None`: unknown or not ended).
    #[serde(default)]
    pub oom_kills: Option<u64>,
    /// Why the run ended, as the `reason` label of `msb.sandbox.runs.ended`
    /// (`msb_runtime::lifecycle::END_CAUSES`).
    #[serde(default)]
    pub end_cause: Option<String>,
}

/// A named volume: a directory (`kind` `dir`, with an optional quota) or an ext4 image
/// (`kind` `disk`, of `size_bytes`), under `$MSB_HOME/volumes/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeRow {
    pub name: String,
    pub kind: String,
    pub quota_mib: Option<u64>,
    pub size_bytes: Option<u64>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    pub ts_ms: i64,
    pub sandbox_id: Option<String>,
    pub kind: String,
    pub detail_json: String,
}

pub(crate) const SANDBOX_COLUMNS: &str =
    "id, name, status, config_json, ephemeral, created_at_ms, updated_at_ms";
pub(crate) const VOLUME_COLUMNS: &str = "name, kind, quota_mib, size_bytes, created_at_ms";
pub(crate) const RUN_COLUMNS: &str =
    "id, sandbox_id, run_number, supervisor_pid, supervisor_start_ticks, init_pid, \
     workload_pid, started_at_ms, ended_at_ms, exit_code, signal, termination_reason, error, \
     oom_kills, end_cause";

pub(crate) fn sandbox_from_row(row: &Row<'_>) -> duckdb::Result<SandboxRow> {
    Ok(SandboxRow {
        id: row.get(0)?,
        name: row.get(1)?,
        status: row.get(2)?,
        config_json: row.get(3)?,
        ephemeral: row.get(4)?,
        created_at_ms: row.get(5)?,
        updated_at_ms: row.get(6)?,
        labels: BTreeMap::new(),
    })
}

pub(crate) fn run_from_row(row: &Row<'_>) -> duckdb::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        sandbox_id: row.get(1)?,
        run_number: row.get(2)?,
        supervisor_pid: row.get(3)?,
        supervisor_start_ticks: row.get(4)?,
        init_pid: row.get(5)?,
        workload_pid: row.get(6)?,
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
        exit_code: row.get(9)?,
        signal: row.get(10)?,
        termination_reason: row.get(11)?,
        error: row.get(12)?,
        oom_kills: row.get(13)?,
        end_cause: row.get(14)?,
    })
}

impl Store {
    /// Adds a sandbox and its labels; fails with `NameTaken` and writes nothing if the name is in use.
    pub fn insert_sandbox(&self, sandbox: &SandboxRow) -> Result<(), StoreError> {
        {
            let mut mirror = self.mirror();
            if mirror.by_name.contains_key(&sandbox.name) {
                return Err(StoreError::NameTaken(sandbox.name.clone()));
            }
            mirror
                .by_name
                .insert(sandbox.name.clone(), sandbox.id.clone());
            mirror.sandboxes.insert(sandbox.id.clone(), sandbox.clone());
        }
        self.persist(Mutation::InsertSandbox(sandbox.clone()));
        Ok(())
    }

    /// Adds a volume; fails with `VolumeExists` and writes nothing if the name is in use (two
    /// concurrent creates of one name: one wins, the other gets this error).
    pub fn insert_volume(&self, volume: &VolumeRow) -> Result<(), StoreError> {
        {
            let mut mirror = self.mirror();
            if mirror.volumes.contains_key(&volume.name) {
                return Err(StoreError::VolumeExists(volume.name.clone()));
            }
            mirror.volumes.insert(volume.name.clone(), volume.clone());
        }
        self.persist(Mutation::InsertVolume(volume.clone()));
        Ok(())
    }

    pub fn volume(&self, name: &str) -> Option<VolumeRow> {
        self.mirror().volumes.get(name).cloned()
    }

    /// Every volume, ordered by name.
    pub fn list_volumes(&self) -> Vec<VolumeRow> {
        self.mirror().volumes.values().cloned().collect()
    }

    pub fn delete_volume(&self, name: &str) {
        self.mirror().volumes.remove(name);
        self.persist(Mutation::DeleteVolume(name.to_owned()));
    }

    pub fn sandbox_by_name(&self, name: &str) -> Result<Option<SandboxRow>, StoreError> {
        let mirror = self.mirror();
        Ok(mirror
            .by_name
            .get(name)
            .and_then(|id| mirror.sandboxes.get(id))
            .cloned())
    }

    pub fn sandbox_by_id(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        Ok(self.mirror().sandboxes.get(id).cloned())
    }

    /// Every sandbox, ordered by name.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRow>, StoreError> {
        let mirror = self.mirror();
        Ok(mirror
            .by_name
            .values()
            .filter_map(|id| mirror.sandboxes.get(id).cloned())
            .collect())
    }

    pub fn set_status(&self, sandbox_id: &str, status: &str) -> Result<(), StoreError> {
        let updated_at_ms = now_ms();
        if let Some(row) = self.mirror().sandboxes.get_mut(sandbox_id) {
            row.status = status.to_owned();
            row.updated_at_ms = updated_at_ms;
        }
        self.persist(Mutation::SetStatus {
            sandbox_id: sandbox_id.to_owned(),
            status: status.to_owned(),
            updated_at_ms,
        });
        Ok(())
    }

    /// Removes a sandbox with its labels and runs (its events stay, as history).
    pub fn delete_sandbox(&self, sandbox_id: &str) -> Result<(), StoreError> {
        {
            let mut mirror = self.mirror();
            if let Some(row) = mirror.sandboxes.remove(sandbox_id) {
                mirror.by_name.remove(&row.name);
            }
            mirror.runs.remove(sandbox_id);
        }
        self.persist(Mutation::DeleteSandbox(sandbox_id.to_owned()));
        Ok(())
    }

    pub fn next_run_number(&self, sandbox_id: &str) -> Result<i32, StoreError> {
        Ok(self
            .mirror()
            .runs
            .get(sandbox_id)
            .and_then(|runs| runs.iter().map(|r| r.run_number).max())
            .unwrap_or(0)
            + 1)
    }

    pub fn insert_run(&self, run: &RunRow) -> Result<(), StoreError> {
        {
            let mut mirror = self.mirror();
            let runs = mirror.runs.entry(run.sandbox_id.clone()).or_default();
            runs.push(run.clone());
            runs.sort_by_key(|r| r.run_number);
        }
        self.persist(Mutation::InsertRun(run.clone()));
        Ok(())
    }

    /// Overwrites a run's mutable fields.
    pub fn update_run(&self, run: &RunRow) -> Result<(), StoreError> {
        {
            let mut mirror = self.mirror();
            let stored = mirror
                .runs
                .get_mut(&run.sandbox_id)
                .and_then(|runs| runs.iter_mut().find(|r| r.id == run.id));
            if let Some(stored) = stored {
                let (sandbox_id, run_number) = (stored.sandbox_id.clone(), stored.run_number);
                *stored = RunRow {
                    sandbox_id,
                    run_number,
                    ..run.clone()
                };
            }
        }
        self.persist(Mutation::UpdateRun(run.clone()));
        Ok(())
    }

    /// A sandbox's runs, oldest first.
    pub fn runs_for(&self, sandbox_id: &str) -> Result<Vec<RunRow>, StoreError> {
        Ok(self
            .mirror()
            .runs
            .get(sandbox_id)
            .cloned()
            .unwrap_or_default())
    }

    pub fn latest_run(&self, sandbox_id: &str) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .mirror()
            .runs
            .get(sandbox_id)
            .and_then(|runs| runs.last().cloned()))
    }

    pub fn append_event(&self, event: &EventRecord) -> Result<(), StoreError> {
        self.persist(Mutation::AppendEvent(event.clone()));
        Ok(())
    }

    pub fn events_for(&self, sandbox_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.flush_catalog()?;
        let mut statement = self
            .conn()
            .prepare("SELECT ts_ms, sandbox_id, kind, detail_json FROM events WHERE sandbox_id = ? ORDER BY ts_ms")?;
        let rows = statement
            .query_map([sandbox_id], |r| {
                Ok(EventRecord {
                    ts_ms: r.get(0)?,
                    sandbox_id: r.get(1)?,
                    kind: r.get(2)?,
                    detail_json: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// The catalog as msbd sees it: every sandbox and run, in memory. Reads never touch DuckDB;
/// every change is applied here first, then persisted by the [`CatalogWriter`].
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    pub sandboxes: HashMap<String, SandboxRow>,
    /// name -> id, ordered by name (the order of `list_sandboxes`).
    pub by_name: BTreeMap<String, String>,
    /// sandbox id -> its runs by run number.
    pub runs: HashMap<String, Vec<RunRow>>,
    /// Named volumes by name.
    pub volumes: BTreeMap<String, VolumeRow>,
}

impl Mirror {
    /// Reads the catalog tables.
    pub(crate) fn load(conn: &duckdb::Connection) -> Result<Mirror, StoreError> {
        let mut mirror = Mirror::default();
        let mut statement = conn.prepare(&format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes"))?;
        for row in statement.query_map([], sandbox_from_row)? {
            let row = row?;
            mirror.by_name.insert(row.name.clone(), row.id.clone());
            mirror.sandboxes.insert(row.id.clone(), row);
        }
        let mut statement = conn.prepare("SELECT sandbox_id, key, value FROM labels")?;
        for label in statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (sandbox_id, key, value) = label?;
            if let Some(row) = mirror.sandboxes.get_mut(&sandbox_id) {
                row.labels.insert(key, value);
            }
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY sandbox_id, run_number"
        ))?;
        for run in statement.query_map([], run_from_row)? {
            let run = run?;
            mirror
                .runs
                .entry(run.sandbox_id.clone())
                .or_default()
                .push(run);
        }
        let mut statement = conn.prepare(&format!("SELECT {VOLUME_COLUMNS} FROM volumes"))?;
        for volume in statement.query_map([], |r| {
            Ok(VolumeRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                quota_mib: r.get(2)?,
                size_bytes: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        })? {
            let volume = volume?;
            mirror.volumes.insert(volume.name.clone(), volume);
        }
        Ok(mirror)
    }
}

#[cfg(test)]
mod tests;
