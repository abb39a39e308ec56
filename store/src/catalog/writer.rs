//! Persisting the catalog: the journal, the group-committing writer thread, coalescing (ADR 008).

use std::collections::HashMap;

use duckdb::params;

use super::{
    EventRecord, RunRow, SandboxRow, VolumeRow, RUN_COLUMNS, SANDBOX_COLUMNS, VOLUME_COLUMNS,
};
use crate::StoreError;

/// One change to persist, in the order it was made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    InsertVolume(VolumeRow),
    DeleteVolume(String),
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
pub(super) struct JournalLine {
    pub(super) seq: u64,
    pub(super) change: Mutation,
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
                crate::set_thread_priority(0, crate::WriterPriority::Low);
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
            change: mutation.clone(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.next_seq += 1;
        Ok(seq)
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

/// How long the writer collects changes before committing them. Every reader of the tables
/// flushes first and the journal covers a crash of msbd, so the window is invisible but for
/// the CPU: a commit costs DuckDB about 6 ms here, and back-to-back runs (about 20 ms each)
/// took 1.3-1.5 ms of the writer's CPU each with a 100 ms window, 0.1-0.3 ms with 1 s
/// (docs/adr/008-catalog-in-memory.md).
pub(crate) const GROUP_COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

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
            Mutation::AppendEvent(_)
            | Mutation::Flush(_)
            | Mutation::InsertVolume(_)
            | Mutation::DeleteVolume(_) => true,
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
    // Events go through one appender, in order, after the rest (nothing else touches their
    // table): an `INSERT` is a whole query in DuckDB, and a run makes several events.
    let result = work
        .iter()
        .filter(|m| !matches!(m, Mutation::AppendEvent(_)))
        .try_for_each(|m| apply_one(conn, m))
        .and_then(|()| append_events(conn, work))
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

/// Appends the batch's events, in order.
fn append_events(conn: &duckdb::Connection, work: &[Mutation]) -> Result<(), duckdb::Error> {
    let mut events = work.iter().filter_map(|m| match m {
        Mutation::AppendEvent(event) => Some(event),
        _ => None,
    });
    let Some(first) = events.next() else {
        return Ok(());
    };
    let mut appender = conn.appender("events")?;
    for event in std::iter::once(first).chain(events) {
        appender.append_row(params![
            event.ts_ms,
            event.sandbox_id,
            event.kind,
            event.detail_json
        ])?;
    }
    appender.flush()
}

fn apply_one(conn: &duckdb::Connection, mutation: &Mutation) -> Result<(), duckdb::Error> {
    match mutation {
        Mutation::InsertVolume(volume) => {
            conn.prepare_cached(&format!(
                "INSERT INTO volumes ({VOLUME_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
            ))?
            .execute(params![
                volume.name,
                volume.kind,
                volume.quota_mib,
                volume.size_bytes,
                volume.created_at_ms,
            ])?;
        }
        Mutation::DeleteVolume(name) => {
            conn.prepare_cached("DELETE FROM volumes WHERE name = ?")?
                .execute([name])?;
        }
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
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
                run.error,
                run.oom_kills,
                run.end_cause
            ])?;
        }
        Mutation::UpdateRun(run) => {
            conn.prepare_cached(
                "UPDATE runs SET supervisor_pid = ?, supervisor_start_ticks = ?, init_pid = ?, workload_pid = ?, \
                 started_at_ms = ?, ended_at_ms = ?, exit_code = ?, signal = ?, termination_reason = ?, error = ?, \
                 oom_kills = ?, end_cause = ? WHERE id = ?",
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
                run.oom_kills,
                run.end_cause,
                run.id
            ])?;
        }
        // Appended together by `append_events`.
        Mutation::AppendEvent(_) | Mutation::Flush(_) => {}
    }
    Ok(())
}
