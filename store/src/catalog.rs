//! The sandbox catalog: sandboxes, their labels and runs, and lifecycle events.
//!
//! msbd reads the catalog from memory ([`Mirror`], loaded when the store opens) and every
//! change goes to memory first, then to DuckDB through one writer thread that commits whatever
//! has queued up in one transaction ([`CatalogWriter`]). A DuckDB point query or commit costs
//! 0.5-4 ms here, and a `msb run` made about twenty of them on its critical path (ADR 008).
//! Readers of the tables themselves (events, read-only SQL, `health`) flush first.

use std::collections::{BTreeMap, HashMap};

use duckdb::{params, Row};

use crate::{Store, StoreError};

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
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        Ok(mirror)
    }
}

/// One change to persist, in the order it was made.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Mutation {
    InsertSandbox(SandboxRow),
    SetStatus {
        sandbox_id: String,
        status: String,
        updated_at_ms: i64,
    },
    DeleteSandbox(String),
    InsertRun(RunRow),
    UpdateRun(RunRow),
    AppendEvent(EventRecord),
    /// Answered once everything before it is committed.
    #[serde(skip)]
    Flush(std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// Persists catalog changes on its own thread and connection: it collects changes for a short
/// window, drops those made void within it ([`coalesce`]), applies the rest in one transaction
/// (one commit, one WAL sync) and answers flushes. Every change is first appended to the
/// journal file (one `write`, no sync: it has to survive a crash of msbd, not of the host), so a
/// change msbd acknowledged but had not committed when it died is replayed at the next open.
/// A failed batch is logged and remembered ([`CatalogWriter::last_error`]); the mirror keeps
/// serving it.
pub(crate) struct CatalogWriter {
    queue: Option<std::sync::mpsc::Sender<(u64, Mutation)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    journal: std::sync::Mutex<Option<Journal>>,
    /// The sequence number of the last committed change.
    applied: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The append-only file of changes not yet known to be committed.
struct Journal {
    file: std::fs::File,
    path: std::path::PathBuf,
    next_seq: u64,
}

/// A journal larger than this is truncated once everything in it is committed.
const JOURNAL_TRUNCATE_BYTES: u64 = 256 << 10;

#[derive(serde::Serialize, serde::Deserialize)]
struct JournalLine {
    seq: u64,
    change: Mutation,
}

impl CatalogWriter {
    /// Replays what the journal at `journal` holds beyond the last committed change, then
    /// starts the writer on `conn`. `None`: no journal (an in-memory store).
    pub(crate) fn start(
        conn: duckdb::Connection,
        journal: Option<&std::path::Path>,
    ) -> Result<CatalogWriter, StoreError> {
        let applied_seq: u64 =
            conn.query_row("SELECT applied_seq FROM catalog_journal", [], |r| r.get(0))?;
        let journal = match journal {
            Some(path) => Some(Journal::open_and_replay(&conn, path, applied_seq)?),
            None => None,
        };
        let applied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            journal.as_ref().map_or(applied_seq, |j| j.next_seq - 1),
        ));
        let (queue, changes) = std::sync::mpsc::channel::<(u64, Mutation)>();
        let last_error: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let errors = last_error.clone();
        let committed = applied.clone();
        let thread = std::thread::Builder::new()
            .name("catalog-writer".into())
            .spawn(move || {
                while let Ok(first) = changes.recv() {
                    // Group commit: collect for a short window (a flush ends it at once), so
                    // that a burst, e.g. the whole life of an ephemeral sandbox, is one commit
                    // and changes that cancel out are never written (see `coalesce`).
                    let deadline = std::time::Instant::now() + GROUP_COMMIT_WINDOW;
                    let mut flushing = matches!(first.1, Mutation::Flush(_));
                    let mut batch = vec![first];
                    while !flushing {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        match changes.recv_timeout(left) {
                            Ok(next) => {
                                flushing = matches!(next.1, Mutation::Flush(_));
                                batch.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    batch.extend(changes.try_iter());
                    let last_seq = batch.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
                    let mut flushes = Vec::new();
                    let work: Vec<Mutation> = coalesce(
                        batch
                            .into_iter()
                            .filter_map(|(_, m)| match m {
                                Mutation::Flush(reply) => {
                                    flushes.push(reply);
                                    None
                                }
                                other => Some(other),
                            })
                            .collect(),
                    );
                    let result = if work.is_empty() && last_seq == 0 {
                        Ok(())
                    } else {
                        apply(&conn, &work, last_seq).map_err(|e| e.to_string())
                    };
                    match &result {
                        Ok(()) => {
                            committed.fetch_max(last_seq, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => {
                            tracing::error!(changes = work.len(), "persisting the catalog: {e}");
                            *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                        }
                    }
                    for reply in flushes {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .expect("spawning the catalog writer");
        Ok(CatalogWriter {
            queue: Some(queue),
            thread: Some(thread),
            journal: std::sync::Mutex::new(journal),
            applied,
            last_error,
        })
    }

    /// Journals `mutation` (when there is a journal) and queues it for the writer.
    pub(crate) fn send(&self, mutation: Mutation) {
        let seq = match &mutation {
            Mutation::Flush(_) => 0,
            _ => {
                let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
                match journal.as_mut() {
                    Some(journal) => match journal.append(&mutation, &self.applied) {
                        Ok(seq) => seq,
                        Err(e) => {
                            tracing::error!("writing the catalog journal: {e}");
                            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(format!("catalog journal: {e}"));
                            0
                        }
                    },
                    None => 0,
                }
            }
        };
        if let Some(queue) = &self.queue {
            let _ = queue.send((seq, mutation));
        }
    }

    /// Waits until everything sent before is committed.
    pub(crate) fn flush(&self) -> Result<(), String> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(Mutation::Flush(reply));
        answer
            .recv()
            .map_err(|_| "the catalog writer stopped".to_owned())?
    }
}

impl Journal {
    /// Applies the lines after `applied_seq` (one transaction), then empties the file.
    fn open_and_replay(
        conn: &duckdb::Connection,
        path: &std::path::Path,
        applied_seq: u64,
    ) -> Result<Journal, StoreError> {
        use std::io::Write as _;
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(StoreError::CatalogWrite(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        };
        let mut last_seq = applied_seq;
        let mut pending = Vec::new();
        for line in text.lines() {
            // A line cut short by a crash in the middle of its write is skipped.
            let Ok(line) = serde_json::from_str::<JournalLine>(line) else {
                continue;
            };
            last_seq = last_seq.max(line.seq);
            if line.seq > applied_seq {
                pending.push(line.change);
            }
        }
        if !pending.is_empty() {
            tracing::info!(changes = pending.len(), "replaying the catalog journal");
            apply(conn, &coalesce(pending), last_seq)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| StoreError::CatalogWrite(format!("opening {}: {e}", path.display())))?;
        file.flush()
            .map_err(|e| StoreError::CatalogWrite(format!("{}: {e}", path.display())))?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            next_seq: last_seq + 1,
        })
    }

    /// Appends one line; returns its sequence number.
    fn append(
        &mut self,
        mutation: &Mutation,
        applied: &std::sync::atomic::AtomicU64,
    ) -> std::io::Result<u64> {
        use std::io::Write as _;
        let seq = self.next_seq;
        let everything_committed = applied.load(std::sync::atomic::Ordering::SeqCst) + 1 >= seq;
        if everything_committed && self.file.metadata()?.len() > JOURNAL_TRUNCATE_BYTES {
            self.file.set_len(0)?;
            self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        }
        let mut line = serde_json::to_vec(&JournalLine {
            seq,
            // Serialising borrows would need a second type; the clone is small.
            change: mutation.clone_change(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.next_seq += 1;
        Ok(seq)
    }
}

impl Mutation {
    fn clone_change(&self) -> Mutation {
        match self {
            Mutation::InsertSandbox(s) => Mutation::InsertSandbox(s.clone()),
            Mutation::SetStatus {
                sandbox_id,
                status,
                updated_at_ms,
            } => Mutation::SetStatus {
                sandbox_id: sandbox_id.clone(),
                status: status.clone(),
                updated_at_ms: *updated_at_ms,
            },
            Mutation::DeleteSandbox(id) => Mutation::DeleteSandbox(id.clone()),
            Mutation::InsertRun(run) => Mutation::InsertRun(run.clone()),
            Mutation::UpdateRun(run) => Mutation::UpdateRun(run.clone()),
            Mutation::AppendEvent(event) => Mutation::AppendEvent(event.clone()),
            Mutation::Flush(reply) => Mutation::Flush(reply.clone()),
        }
    }
}

impl Drop for CatalogWriter {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written everything queued.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long the writer collects changes before committing them.
pub(crate) const GROUP_COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Drops the changes of a batch that a later change in the same batch makes void, so that
/// applying the rest in order leaves the tables exactly as applying all would (pure):
/// everything about a sandbox inserted and deleted within the batch but its events; all but
/// the last status of a sandbox; all but the last update of a run.
pub(crate) fn coalesce(work: Vec<Mutation>) -> Vec<Mutation> {
    use std::collections::HashSet;
    let inserted: HashSet<&str> = work
        .iter()
        .filter_map(|m| match m {
            Mutation::InsertSandbox(s) => Some(s.id.as_str()),
            _ => None,
        })
        .collect();
    let born_and_gone: HashSet<String> = work
        .iter()
        .filter_map(|m| match m {
            Mutation::DeleteSandbox(id) if inserted.contains(id.as_str()) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let mut last_status: HashMap<&str, usize> = HashMap::new();
    let mut last_update: HashMap<&str, usize> = HashMap::new();
    for (index, mutation) in work.iter().enumerate() {
        match mutation {
            Mutation::SetStatus { sandbox_id, .. } => {
                last_status.insert(sandbox_id, index);
            }
            Mutation::UpdateRun(run) => {
                last_update.insert(&run.id, index);
            }
            _ => {}
        }
    }
    let keep: Vec<bool> = work
        .iter()
        .enumerate()
        .map(|(index, mutation)| match mutation {
            Mutation::InsertSandbox(s) => !born_and_gone.contains(&s.id),
            Mutation::DeleteSandbox(id) => !born_and_gone.contains(id),
            Mutation::InsertRun(run) => !born_and_gone.contains(&run.sandbox_id),
            Mutation::SetStatus { sandbox_id, .. } => {
                !born_and_gone.contains(sandbox_id)
                    && last_status.get(sandbox_id.as_str()) == Some(&index)
            }
            Mutation::UpdateRun(run) => {
                !born_and_gone.contains(&run.sandbox_id)
                    && last_update.get(run.id.as_str()) == Some(&index)
            }
            Mutation::AppendEvent(_) | Mutation::Flush(_) => true,
        })
        .collect();
    work.into_iter()
        .zip(keep)
        .filter_map(|(mutation, keep)| keep.then_some(mutation))
        .collect()
}

/// Applies `work` in one transaction, recording `last_seq` as the last committed change.
fn apply(conn: &duckdb::Connection, work: &[Mutation], last_seq: u64) -> Result<(), duckdb::Error> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = work
        .iter()
        .try_for_each(|m| apply_one(conn, m))
        .and_then(|()| {
            if last_seq > 0 {
                conn.prepare_cached(
                    "UPDATE catalog_journal SET applied_seq = greatest(applied_seq, ?)",
                )?
                .execute([last_seq])?;
            }
            Ok(())
        });
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn apply_one(conn: &duckdb::Connection, mutation: &Mutation) -> Result<(), duckdb::Error> {
    match mutation {
        Mutation::InsertSandbox(sandbox) => {
            conn.prepare_cached(&format!(
                "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))?
            .execute(params![
                sandbox.id,
                sandbox.name,
                sandbox.status,
                sandbox.config_json,
                sandbox.ephemeral,
                sandbox.created_at_ms,
                sandbox.updated_at_ms
            ])?;
            for (key, value) in &sandbox.labels {
                conn.prepare_cached("INSERT INTO labels VALUES (?, ?, ?)")?
                    .execute(params![sandbox.id, key, value])?;
            }
        }
        Mutation::SetStatus {
            sandbox_id,
            status,
            updated_at_ms,
        } => {
            conn.prepare_cached("UPDATE sandboxes SET status = ?, updated_at_ms = ? WHERE id = ?")?
                .execute(params![status, updated_at_ms, sandbox_id])?;
        }
        Mutation::DeleteSandbox(sandbox_id) => {
            for table in [
                "DELETE FROM labels WHERE sandbox_id = ?",
                "DELETE FROM runs WHERE sandbox_id = ?",
                "DELETE FROM sandboxes WHERE id = ?",
            ] {
                conn.prepare_cached(table)?.execute([sandbox_id])?;
            }
        }
        Mutation::InsertRun(run) => {
            conn.prepare_cached(&format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))?
            .execute(params![
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
            ])?;
        }
        Mutation::UpdateRun(run) => {
            conn.prepare_cached(
                "UPDATE runs SET supervisor_pid = ?, supervisor_start_ticks = ?, init_pid = ?, workload_pid = ?, \
                 started_at_ms = ?, ended_at_ms = ?, exit_code = ?, signal = ?, termination_reason = ?, error = ? \
                 WHERE id = ?",
            )?
            .execute(params![
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
            ])?;
        }
        Mutation::AppendEvent(event) => {
            conn.prepare_cached("INSERT INTO events VALUES (?, ?, ?, ?)")?
                .execute(params![
                    event.ts_ms,
                    event.sandbox_id,
                    event.kind,
                    event.detail_json
                ])?;
        }
        Mutation::Flush(_) => {}
    }
    Ok(())
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

    /// What the mirror serves is what the file holds once the writer has caught up: reopening
    /// the store (which loads the mirror from the tables) gives the same catalog.
    #[test]
    fn the_file_matches_the_mirror_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msb.duckdb");
        let expected = {
            let store = Store::open(&path).unwrap();
            for (id, name) in [("a1", "web"), ("b2", "api"), ("c3", "gone")] {
                store.insert_sandbox(&sandbox(id, name)).unwrap();
            }
            store.insert_run(&run("r1", "a1", 1)).unwrap();
            let mut second = run("r2", "a1", 2);
            store.insert_run(&second).unwrap();
            second.exit_code = Some(0);
            second.ended_at_ms = Some(7);
            store.update_run(&second).unwrap();
            store.set_status("a1", "Stopped").unwrap();
            store.delete_sandbox("c3").unwrap();
            // The SQL view of the tables waits for the writer.
            let counted = store
                .read_only_sql("SELECT count(*) AS n FROM sandboxes")
                .unwrap();
            assert_eq!(counted.1[0][0], serde_json::json!(2));
            (
                store.list_sandboxes().unwrap(),
                store.runs_for("a1").unwrap(),
            )
            // Dropping the store joins the writer: everything queued is committed.
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.list_sandboxes().unwrap(), expected.0);
        assert_eq!(store.runs_for("a1").unwrap(), expected.1);
        assert_eq!(
            store.sandbox_by_name("web").unwrap().unwrap().status,
            "Stopped"
        );
        assert!(store.sandbox_by_id("c3").unwrap().is_none());
        assert_eq!(store.latest_run("a1").unwrap().unwrap().exit_code, Some(0));
        assert!(store.catalog_error().is_none());
    }

    #[test]
    fn a_batch_drops_what_later_changes_make_void() {
        let status = |id: &str, status: &str| Mutation::SetStatus {
            sandbox_id: id.into(),
            status: status.into(),
            updated_at_ms: 1,
        };
        let event = |id: &str| {
            Mutation::AppendEvent(EventRecord {
                ts_ms: 1,
                sandbox_id: Some(id.into()),
                kind: "status".into(),
                detail_json: "{}".into(),
            })
        };
        let mut finished = run("r1", "eph", 1);
        finished.exit_code = Some(0);
        let work = vec![
            // An ephemeral sandbox's whole life.
            Mutation::InsertSandbox(sandbox("eph", "run-1")),
            Mutation::InsertRun(run("r1", "eph", 1)),
            status("eph", "Starting"),
            event("eph"),
            status("eph", "Running"),
            Mutation::UpdateRun(finished),
            status("eph", "Stopped"),
            event("eph"),
            Mutation::DeleteSandbox("eph".into()),
            // A sandbox from an earlier batch: only its last status; its run's last update.
            status("old", "Running"),
            Mutation::UpdateRun(run("r9", "old", 3)),
            status("old", "Stopped"),
            Mutation::UpdateRun(run("r9", "old", 4)),
            Mutation::DeleteSandbox("older".into()),
        ];
        let kept: Vec<String> = coalesce(work)
            .iter()
            .map(|m| match m {
                Mutation::SetStatus {
                    sandbox_id, status, ..
                } => format!("status {sandbox_id} {status}"),
                Mutation::UpdateRun(run) => format!("update {} {}", run.id, run.run_number),
                Mutation::AppendEvent(e) => format!("event {}", e.sandbox_id.clone().unwrap()),
                Mutation::DeleteSandbox(id) => format!("delete {id}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kept,
            [
                "event eph",
                "event eph",
                "status old Stopped",
                "update r9 4",
                "delete older"
            ]
        );
    }

    /// A change journaled but not committed when msbd died (simulated: a line appended to the
    /// journal of a closed store) is in the catalog after the next open, exactly once; a torn
    /// last line is skipped.
    #[test]
    fn the_journal_replays_what_was_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msb.duckdb");
        {
            let store = Store::open(&path).unwrap();
            store.insert_sandbox(&sandbox("a1", "kept")).unwrap();
        }
        let applied: u64 = {
            let conn = duckdb::Connection::open(&path).unwrap();
            conn.query_row("SELECT applied_seq FROM catalog_journal", [], |r| r.get(0))
                .unwrap()
        };
        assert!(applied >= 1);
        let journal = Store::journal_path(&path);
        let lines = [
            serde_json::to_string(&JournalLine {
                seq: applied + 1,
                change: Mutation::InsertSandbox(sandbox("b2", "acknowledged")),
            })
            .unwrap(),
            serde_json::to_string(&JournalLine {
                seq: applied + 2,
                change: Mutation::SetStatus {
                    sandbox_id: "b2".into(),
                    status: "Running".into(),
                    updated_at_ms: 5,
                },
            })
            .unwrap(),
            "{\"seq\": 99, \"chan".to_owned(),
        ];
        std::fs::write(&journal, lines.join("\n")).unwrap();
        for _ in 0..2 {
            let store = Store::open(&path).unwrap();
            let names: Vec<String> = store
                .list_sandboxes()
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect();
            assert_eq!(names, ["acknowledged", "kept"]);
            assert_eq!(
                store.sandbox_by_id("b2").unwrap().unwrap().status,
                "Running"
            );
            // New changes continue the sequence.
            store.set_status("a1", "Stopped").unwrap();
        }
        let left = std::fs::read_to_string(&journal).unwrap().lines().count();
        assert!(left <= 1, "the journal was emptied at open: {left} lines");
    }
}
