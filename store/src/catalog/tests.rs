use super::writer::{coalesce, JournalLine, Mutation};
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
        oom_kills: None,
        end_cause: None,
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

/// A batch's events are appended together: every field, in order, after a reopen too.
#[test]
fn events_of_one_batch_are_stored_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msb.duckdb");
    let event = |ts_ms: i64, sandbox: Option<&str>, kind: &str| EventRecord {
        ts_ms,
        sandbox_id: sandbox.map(str::to_owned),
        kind: kind.into(),
        detail_json: format!("{{\"n\":{ts_ms}}}"),
    };
    let written = [
        event(1, Some("a1"), "status"),
        event(2, None, "daemon"),
        event(3, Some("a1"), "status"),
        event(4, Some("a1"), "oom"),
    ];
    {
        let store = Store::open(&path).unwrap();
        store.insert_sandbox(&sandbox("a1", "web")).unwrap();
        for e in &written {
            store.append_event(e).unwrap();
        }
        let stored = store.events_for("a1").unwrap();
        let expected: Vec<&EventRecord> =
            written.iter().filter(|e| e.sandbox_id.is_some()).collect();
        assert_eq!(stored.iter().collect::<Vec<_>>(), expected);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.events_for("a1").unwrap().len(), 3);
}
