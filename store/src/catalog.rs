//! The sandbox catalog: sandboxes, their labels and runs, and lifecycle events.

use std::collections::BTreeMap;

use duckdb::{params, OptionalExt, Row};

use crate::{Store, StoreError};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub ts_ms: i64,
    pub sandbox_id: Option<String>,
    pub kind: String,
    pub detail_json: String,
}

const SANDBOX_COLUMNS: &str =
    "id, name, status, config_json, ephemeral, created_at_ms, updated_at_ms";
const RUN_COLUMNS: &str =
    "id, sandbox_id, run_number, supervisor_pid, supervisor_start_ticks, init_pid, \
     workload_pid, started_at_ms, ended_at_ms, exit_code, signal, termination_reason, error";

fn sandbox_from_row(row: &Row<'_>) -> duckdb::Result<SandboxRow> {
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

fn run_from_row(row: &Row<'_>) -> duckdb::Result<RunRow> {
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
    })
}

impl Store {
    /// Adds a sandbox and its labels; fails with `NameTaken` and writes nothing if the name is in use.
    pub fn insert_sandbox(&self, sandbox: &SandboxRow) -> Result<(), StoreError> {
        if self.sandbox_by_name(&sandbox.name)?.is_some() {
            return Err(StoreError::NameTaken(sandbox.name.clone()));
        }
        self.in_transaction(|conn| {
            conn.execute(
                &format!("INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                params![
                    sandbox.id,
                    sandbox.name,
                    sandbox.status,
                    sandbox.config_json,
                    sandbox.ephemeral,
                    sandbox.created_at_ms,
                    sandbox.updated_at_ms
                ],
            )?;
            for (key, value) in &sandbox.labels {
                conn.execute(
                    "INSERT INTO labels VALUES (?, ?, ?)",
                    params![sandbox.id, key, value],
                )?;
            }
            Ok(())
        })
    }

    pub fn sandbox_by_name(&self, name: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE name = ?"),
                [name],
                sandbox_from_row,
            )
            .optional()?;
        row.map(|r| self.with_labels(r)).transpose()
    }

    pub fn sandbox_by_id(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?"),
                [id],
                sandbox_from_row,
            )
            .optional()?;
        row.map(|r| self.with_labels(r)).transpose()
    }

    /// Every sandbox, ordered by name.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRow>, StoreError> {
        let mut statement = self.conn().prepare(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes ORDER BY name"
        ))?;
        let mut rows = statement
            .query_map([], sandbox_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        // All labels in one query, not one per sandbox.
        let mut statement = self
            .conn()
            .prepare("SELECT sandbox_id, key, value FROM labels ORDER BY key")?;
        let mut labels: std::collections::HashMap<String, BTreeMap<String, String>> =
            Default::default();
        for label in statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (sandbox_id, key, value) = label?;
            labels.entry(sandbox_id).or_default().insert(key, value);
        }
        for row in &mut rows {
            row.labels = labels.remove(&row.id).unwrap_or_default();
        }
        Ok(rows)
    }

    fn with_labels(&self, mut sandbox: SandboxRow) -> Result<SandboxRow, StoreError> {
        let mut statement = self
            .conn()
            .prepare("SELECT key, value FROM labels WHERE sandbox_id = ? ORDER BY key")?;
        let labels = statement
            .query_map([&sandbox.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        sandbox.labels = labels;
        Ok(sandbox)
    }

    pub fn set_status(&self, sandbox_id: &str, status: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET status = ?, updated_at_ms = ? WHERE id = ?",
            params![status, now_ms(), sandbox_id],
        )?;
        Ok(())
    }

    /// Removes a sandbox with its labels and runs (its events stay, as history).
    pub fn delete_sandbox(&self, sandbox_id: &str) -> Result<(), StoreError> {
        self.in_transaction(|conn| {
            conn.execute("DELETE FROM labels WHERE sandbox_id = ?", [sandbox_id])?;
            conn.execute("DELETE FROM runs WHERE sandbox_id = ?", [sandbox_id])?;
            conn.execute("DELETE FROM sandboxes WHERE id = ?", [sandbox_id])?;
            Ok(())
        })
    }

    pub fn next_run_number(&self, sandbox_id: &str) -> Result<i32, StoreError> {
        Ok(self.conn().query_row(
            "SELECT coalesce(max(run_number), 0) + 1 FROM runs WHERE sandbox_id = ?",
            [sandbox_id],
            |r| r.get(0),
        )?)
    }

    pub fn insert_run(&self, run: &RunRow) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            params![
                run.id,
                run.sandbox_id,
                run.run_number,
                run.supervisor_pid,
                run.supervisor_start_ticks,
                run.init_pid,
                run.workload_pid,
                run.started_at_ms,
                run.ended_at_ms,
                run.exit_code,
                run.signal,
                run.termination_reason,
                run.error
            ],
        )?;
        Ok(())
    }

    /// Overwrites a run's mutable fields.
    pub fn update_run(&self, run: &RunRow) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE runs SET supervisor_pid = ?, supervisor_start_ticks = ?, init_pid = ?, workload_pid = ?, \
             started_at_ms = ?, ended_at_ms = ?, exit_code = ?, signal = ?, termination_reason = ?, error = ? \
             WHERE id = ?",
            params![
                run.supervisor_pid,
                run.supervisor_start_ticks,
                run.init_pid,
                run.workload_pid,
                run.started_at_ms,
                run.ended_at_ms,
                run.exit_code,
                run.signal,
                run.termination_reason,
                run.error,
                run.id
            ],
        )?;
        Ok(())
    }

    /// A sandbox's runs, oldest first.
    pub fn runs_for(&self, sandbox_id: &str) -> Result<Vec<RunRow>, StoreError> {
        let mut statement = self.conn().prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE sandbox_id = ? ORDER BY run_number"
        ))?;
        let rows = statement
            .query_map([sandbox_id], run_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn latest_run(&self, sandbox_id: &str) -> Result<Option<RunRow>, StoreError> {
        Ok(self.runs_for(sandbox_id)?.pop())
    }

    pub fn append_event(&self, event: &EventRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            params![event.ts_ms, event.sandbox_id, event.kind, event.detail_json],
        )?;
        Ok(())
    }

    pub fn events_for(&self, sandbox_id: &str) -> Result<Vec<EventRecord>, StoreError> {
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

    fn in_transaction(
        &self,
        work: impl FnOnce(&duckdb::Connection) -> Result<(), duckdb::Error>,
    ) -> Result<(), StoreError> {
        self.conn().execute_batch("BEGIN TRANSACTION")?;
        match work(self.conn()) {
            Ok(()) => {
                self.conn().execute_batch("COMMIT")?;
                Ok(())
            }
            Err(e) => {
                let _ = self.conn().execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, name: &str) -> SandboxRow {
        SandboxRow {
            id: id.into(),
            name: name.into(),
            status: "Created".into(),
            config_json: "{}".into(),
            ephemeral: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        }
    }

    fn run(id: &str, sandbox_id: &str, number: i32) -> RunRow {
        RunRow {
            id: id.into(),
            sandbox_id: sandbox_id.into(),
            run_number: number,
            supervisor_pid: Some(10),
            supervisor_start_ticks: Some(99),
            init_pid: None,
            workload_pid: None,
            started_at_ms: 5,
            ended_at_ms: None,
            exit_code: None,
            signal: None,
            termination_reason: None,
            error: None,
        }
    }

    #[test]
    fn sandbox_rows_round_trip_and_names_are_unique() {
        let store = Store::open_in_memory().unwrap();
        store.insert_sandbox(&sandbox("a1", "web")).unwrap();
        assert!(matches!(
            store.insert_sandbox(&sandbox("a2", "web")),
            Err(StoreError::NameTaken(_))
        ));
        assert_eq!(store.list_sandboxes().unwrap().len(), 1);
        let got = store.sandbox_by_name("web").unwrap().unwrap();
        assert_eq!(got, sandbox("a1", "web"));
        store.set_status("a1", "Running").unwrap();
        assert_eq!(
            store.sandbox_by_name("web").unwrap().unwrap().status,
            "Running"
        );
        assert!(store.sandbox_by_name("nope").unwrap().is_none());
    }

    #[test]
    fn runs_are_numbered_updated_and_removed_with_their_sandbox() {
        let store = Store::open_in_memory().unwrap();
        store.insert_sandbox(&sandbox("a1", "web")).unwrap();
        assert_eq!(store.next_run_number("a1").unwrap(), 1);
        store.insert_run(&run("r1", "a1", 1)).unwrap();
        assert_eq!(store.next_run_number("a1").unwrap(), 2);
        let mut finished = run("r1", "a1", 1);
        finished.ended_at_ms = Some(9);
        finished.exit_code = Some(3);
        finished.termination_reason = Some("Failed".into());
        store.update_run(&finished).unwrap();
        store.update_run(&finished).unwrap();
        assert_eq!(store.latest_run("a1").unwrap(), Some(finished));
        store
            .append_event(&EventRecord {
                ts_ms: 1,
                sandbox_id: Some("a1".into()),
                kind: "k".into(),
                detail_json: "{}".into(),
            })
            .unwrap();
        store.delete_sandbox("a1").unwrap();
        assert!(store.runs_for("a1").unwrap().is_empty());
        assert!(store.sandbox_by_name("web").unwrap().is_none());
        assert_eq!(store.events_for("a1").unwrap().len(), 1);
    }
}
