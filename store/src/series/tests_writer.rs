//! The writer's gathering window and commit notifications, on real DuckDB files.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use msb_metrics::Sample;

use super::*;
use crate::catalog::now_ms;
use crate::Store;

fn sample(sandbox: &str, run: &str, ts_ms: i64) -> Sample {
    Sample {
        sandbox_id: sandbox.into(),
        run_id: run.into(),
        timestamp_ms: ts_ms as u64,
        cpu_percent: Some(1.5),
        memory_bytes: Some(1 << 20),
        ..Sample::default()
    }
}

fn stored(store: &Store) -> i64 {
    store
        .conn()
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap()
}

fn writer(store: &Store, batch_window: Duration) -> SeriesWriter {
    SeriesWriter::start_with_options(
        store,
        WriterOptions {
            batch_window,
            ..WriterOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn appends_within_the_window_are_one_commit_and_each_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = writer(&store, Duration::from_millis(300));
    let (told_tx, told) = mpsc::channel();
    let t0 = now_ms() - 10_000;
    let started = Instant::now();
    for sandbox in 0..20 {
        let told_tx = told_tx.clone();
        writer.append_then(
            vec![sample(&format!("sb-{sandbox}"), "r", t0)],
            move |committed| told_tx.send((sandbox, committed, Instant::now())).unwrap(),
        );
    }
    let mut answers: Vec<_> = (0..20)
        .map(|_| told.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    // Told in the order appended, all committed, none before the window was over.
    assert!(answers.iter().all(|(_, committed, _)| *committed));
    assert_eq!(
        answers.iter().map(|(s, ..)| *s).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    answers.sort_by_key(|(_, _, at)| *at);
    assert!(answers[0].2 - started >= Duration::from_millis(250));
    // And what they were told about is visible to the store's own connection.
    assert_eq!(stored(&store), 20);
    let stats = writer.stats();
    assert_eq!((stats.commits, stats.written_samples), (1, 20), "{stats:?}");
}

#[test]
fn nothing_is_committed_inside_the_window_but_a_flush_commits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = writer(&store, Duration::from_secs(3600));
    let (told_tx, told) = mpsc::channel();
    let t0 = now_ms() - 10_000;
    for tick in 0..5 {
        let told_tx = told_tx.clone();
        writer.append_then(vec![sample("sb", "r", t0 + tick)], move |committed| {
            told_tx.send(committed).unwrap()
        });
    }
    // An empty append is told only after everything before it.
    let (empty_tx, empty) = mpsc::channel();
    writer.append_then(Vec::new(), move |committed| {
        empty_tx.send(committed).unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(told.try_recv().is_err(), "committed inside the window");
    assert!(empty.try_recv().is_err());
    assert_eq!(stored(&store), 0);
    let flushing = Instant::now();
    writer.flush().unwrap();
    assert!(flushing.elapsed() < Duration::from_secs(5));
    assert_eq!(stored(&store), 5);
    assert_eq!(told.try_iter().collect::<Vec<_>>(), [true; 5]);
    assert_eq!(empty.try_recv(), Ok(true));
    assert_eq!(writer.stats().commits, 1);
}

#[test]
fn a_full_batch_commits_before_the_window_and_drops_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = SeriesWriter::start_with_options(
        &store,
        WriterOptions {
            batch_window: Duration::from_secs(3600),
            batch_max_samples: 50,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let (told_tx, told) = mpsc::channel();
    let t0 = now_ms() - 10_000;
    // The first append starts the window; the one that fills the batch ends it.
    let first: Vec<Sample> = (0..30).map(|i| sample("sb", "r", t0 + i)).collect();
    writer.append(first);
    std::thread::sleep(Duration::from_millis(200));
    let rest: Vec<Sample> = (30..50).map(|i| sample("sb", "r", t0 + i)).collect();
    writer.append_then(rest, move |committed| told_tx.send(committed).unwrap());
    assert_eq!(told.recv_timeout(Duration::from_secs(10)), Ok(true));
    assert_eq!(stored(&store), 50);

    // A queue bound of 10: the oldest appends go, and their callers hear so.
    let small = SeriesWriter::start_with_options(
        &store,
        WriterOptions {
            batch_window: Duration::from_secs(3600),
            max_queued_samples: 10,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let (told_tx, told) = mpsc::channel();
    for i in 0..3 {
        let told_tx = told_tx.clone();
        let batch = (0..5)
            .map(|j| sample("sb2", "r", t0 + i * 10 + j))
            .collect();
        small.append_then(batch, move |committed| {
            told_tx.send((i, committed)).unwrap()
        });
    }
    assert_eq!(told.recv_timeout(Duration::from_secs(1)), Ok((0, false)));
    small.flush().unwrap();
    assert_eq!(told.try_iter().collect::<Vec<_>>(), [(1, true), (2, true)]);
}

#[test]
fn the_last_stored_sample_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("msb.duckdb")).unwrap();
    let writer = writer(&store, Duration::from_millis(10));
    let t0 = now_ms() - 10_000;
    assert_eq!(store.last_sample_ms("sb", "r1", t0).unwrap(), None);
    writer.append((0..5).map(|i| sample("sb", "r1", t0 + i * 1000)).collect());
    writer.append(vec![
        sample("sb", "r2", t0 + 9000),
        sample("other", "r1", t0 + 9000),
    ]);
    writer.flush().unwrap();
    assert_eq!(
        store.last_sample_ms("sb", "r1", t0).unwrap(),
        Some(t0 + 4000)
    );
    assert_eq!(
        store.last_sample_ms("sb", "r1", t0 + 4000).unwrap(),
        Some(t0 + 4000)
    );
    assert_eq!(store.last_sample_ms("sb", "r1", t0 + 4001).unwrap(), None);
    assert_eq!(
        store.last_sample_ms("sb", "r2", 0).unwrap(),
        Some(t0 + 9000)
    );
}
