//! One monitor task per active sandbox: it holds the watch connection to the sandbox's
//! supervisor, takes in its samples (`crate::ingest`), folds each record change into the catalog
//! ([`super::record`]), and when the connection ends (the supervisor is gone) settles the run and
//! removes the sandbox if it was ephemeral.

use std::sync::Arc;
use std::time::Duration;

use msb_metrics::Sample;
use msb_protocol::session::ClientEvent;
use msb_runtime::framing::read_frame;
use msb_runtime::run_record::{RunPhase, RunRecord};

use super::record::{apply_record, supervisor_of_run_alive};
use super::removal::remove_if_ephemeral;
use crate::ingest::Acknowledger;
use crate::state::Daemon;
use crate::supervisors;

/// Follows one sandbox's supervisor until it exits, then settles the catalog (and removes
/// the sandbox if it was ephemeral).
///
/// One monitor per run, not per sandbox: the monitor of a run that just ended may still be
/// settling (its supervisor exiting) when the next run starts, and that run needs its own.
pub fn spawn_monitor(daemon: Arc<Daemon>, sandbox_id: String) {
    let run_id = daemon
        .store()
        .latest_run(&sandbox_id)
        .ok()
        .flatten()
        .map(|run| run.id)
        .unwrap_or_default();
    let key = format!("{sandbox_id}/{run_id}");
    if !daemon.monitored.lock().unwrap().insert(key.clone()) {
        return;
    }
    tokio::spawn(async move {
        monitor(&daemon, &sandbox_id).await;
        daemon.monitored.lock().unwrap().remove(&key);
    });
}

async fn monitor(daemon: &Arc<Daemon>, sandbox_id: &str) {
    let socket = daemon.home.sandbox(sandbox_id).socket();
    let run = daemon.store().latest_run(sandbox_id).ok().flatten();
    let alive = || run.as_ref().is_some_and(supervisor_of_run_alive);

    // The supervisor binds its socket first thing (a warm one within a millisecond or two of
    // being handed the sandbox); look again soon, then less often (10 s in all).
    let mut connection = None;
    let mut pause = Duration::from_millis(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match supervisors::watch(&socket).await {
            Ok(stream) => {
                connection = Some(stream);
                break;
            }
            Err(_) if alive() => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(25));
            }
            Err(_) => break,
        }
    }
    let interval_ms = daemon
        .store()
        .sandbox_by_id(sandbox_id)
        .ok()
        .flatten()
        .and_then(|row| {
            serde_json::from_str::<msb_runtime::config::SandboxConfig>(&row.config_json).ok()
        })
        .and_then(|config| config.metrics_interval())
        .unwrap_or(msb_runtime::config::DEFAULT_METRICS_INTERVAL_MS);
    if let Some(stream) = connection {
        let (mut stream, acknowledger) = crate::ingest::split_watch(stream);
        let mut undecodable = false;
        loop {
            match read_frame::<_, ClientEvent>(&mut stream).await {
                Ok(Some(ClientEvent::RecordChanged)) => match apply_record(daemon, sandbox_id) {
                    // An ephemeral sandbox's supervisor records the end as soon as the sandbox
                    // is down (before its own clean-up): remove it now, so `msb run` returns
                    // without waiting for the supervisor to exit. Nothing of it is ingested
                    // after that.
                    Ok(status) if status.is_terminal() => {
                        if remove_if_ephemeral(daemon, sandbox_id) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("reconciling {sandbox_id}: {e}"),
                },
                Ok(Some(ClientEvent::Samples(samples))) => daemon.ingest(&samples, interval_ms),
                Ok(Some(ClientEvent::SampleBatch { first_seq, samples })) => {
                    take_in(daemon, (first_seq, samples), interval_ms, &acknowledger)
                }
                Ok(Some(_)) => {}
                // A whole frame this msbd cannot read: a supervisor started by another msb
                // version (its run goes on; stop, logs and exec do not depend on these frames).
                Err(msb_protocol::FrameError::Malformed(e)) => {
                    if !undecodable {
                        tracing::warn!(
                            "sandbox {sandbox_id}: a frame from its supervisor does not decode ({e}); \
                             it probably runs another msb version: its metrics are skipped until \
                             it is restarted"
                        );
                        undecodable = true;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    // The connection ended: the supervisor is exiting. If it recorded the end of the run, that
    // is all we need; otherwise let it finish dying before judging.
    // A later run has started meanwhile: its own monitor settles it.
    let current = daemon.store().latest_run(sandbox_id).ok().flatten();
    if run.is_some() && current.map(|r| r.id) != run.as_ref().map(|r| r.id.clone()) {
        return;
    }
    let run_record = daemon.home.sandbox(sandbox_id).run_record();
    let recorded_end = || RunRecord::read(&run_record).is_ok_and(|r| r.phase == RunPhase::Exited);
    for _ in 0..2000 {
        if recorded_end() || !alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match apply_record(daemon, sandbox_id) {
        Ok(status) if status.is_terminal() => {
            remove_if_ephemeral(daemon, sandbox_id);
        }
        Ok(status) => {
            tracing::warn!("{sandbox_id} is still {status} after its supervisor's socket closed")
        }
        Err(e) => tracing::warn!("reconciling {sandbox_id}: {e}"),
    }
}

/// Takes in a numbered batch: live state and history for the samples not taken in before, and an
/// acknowledgement of the whole batch once the writer has committed everything before it.
fn take_in(
    daemon: &Daemon,
    (first_seq, samples): (u64, Vec<Sample>),
    interval_ms: u64,
    acknowledger: &Acknowledger,
) {
    let sent = samples.len();
    let (fresh, through_seq) = daemon
        .intake
        .fresh(first_seq, samples, |first| stored_ms(daemon, first));
    if fresh.len() < sent {
        tracing::info!(
            through_seq,
            already_stored = sent - fresh.len(),
            "samples sent again were already stored; dropped"
        );
    }
    if let Some(first) = fresh.first() {
        let previous = daemon.live.get(&first.sandbox_id);
        daemon
            .telemetry
            .count_samples(previous.as_ref().map(|l| &l.sample), &fresh);
        record_quota_rejections(daemon, previous.as_ref().map(|l| &l.sample), &fresh);
        record_network_drops(daemon, previous.as_ref().map(|l| &l.sample), &fresh);
        daemon.live.record(&fresh, interval_ms);
    }
    match &daemon.series {
        // Even an empty batch goes through the writer: acknowledged only after what was
        // queued before it is committed.
        Some(series) => {
            let acknowledger = acknowledger.clone();
            series.append_then(fresh, move |stored| {
                if stored {
                    acknowledger.stored(through_seq);
                }
            });
        }
        // History is off: nothing will ever be stored, so holding samples back gains nothing.
        None => acknowledger.stored(through_seq),
    }
}

/// The time of the latest stored sample of `first`'s run, from `first`'s time on.
fn stored_ms(daemon: &Daemon, first: &Sample) -> Option<u64> {
    let since_ms = i64::try_from(first.timestamp_ms).unwrap_or(i64::MAX);
    match daemon
        .store()
        .last_sample_ms(&first.sandbox_id, &first.run_id, since_ms)
    {
        Ok(stored) => stored.and_then(|ms| u64::try_from(ms).ok()),
        Err(e) => {
            // Storing a sample twice is better than losing it.
            tracing::warn!(sandbox = %first.sandbox_id, "looking up stored samples: {e}");
            None
        }
    }
}

/// Records an event of `kind` at `sample`'s time, for its sandbox (a failure is logged: the
/// counters in the sample still say what happened).
fn append_sample_event(
    daemon: &Daemon,
    sample: &msb_metrics::Sample,
    kind: &str,
    detail: serde_json::Value,
) {
    let event = msb_store::EventRecord {
        ts_ms: sample.timestamp_ms as i64,
        sandbox_id: Some(sample.sandbox_id.clone()),
        kind: kind.to_owned(),
        detail_json: detail.to_string(),
    };
    if let Err(e) = daemon.store().append_event(&event) {
        tracing::warn!("recording a {kind} event: {e}");
    }
}

/// One `network_dropped` event per sample and reason for which the sandbox's network dropped
/// or refused something (its counter grew since the sample before, of the same run): the
/// reasons of `microsandbox.network.dropped` (`tx_ring_full`, `rx_ring_full`, `policy_denied`,
/// `dns_failed`) and the connection limits (`tcp_limit`, `udp_limit`). The events and the
/// counters cannot disagree: the events are the counters' growth.
fn record_network_drops(
    daemon: &Daemon,
    previous: Option<&msb_metrics::Sample>,
    fresh: &[msb_metrics::Sample],
) {
    let mut before = previous.cloned();
    for sample in fresh {
        let same_run = before.as_ref().filter(|b| b.run_id == sample.run_id);
        let counters = |s: &msb_metrics::Sample| {
            [
                ("tx_ring_full", s.net_drops_tx_ring_full),
                ("rx_ring_full", s.net_drops_rx_ring_full),
                ("policy_denied", s.net_drops_policy_denied),
                ("dns_failed", s.net_drops_dns_failed),
                ("tcp_limit", s.net_tcp_limit_refused),
                ("udp_limit", s.net_udp_limit_refused),
            ]
        };
        let then = same_run.map(counters);
        for (i, (reason, now)) in counters(sample).into_iter().enumerate() {
            let earlier = then.and_then(|t| t[i].1).unwrap_or(0);
            let grown = now.unwrap_or(0).saturating_sub(earlier);
            if grown == 0 {
                continue;
            }
            let detail = serde_json::json!({
                "run_id": sample.run_id, "reason": reason, "count": grown, "total": now,
            });
            append_sample_event(daemon, sample, "network_dropped", detail);
        }
        before = Some(sample.clone());
    }
}

/// One `quota_rejected` event per sample in which a mount's write quota refused writes (its
/// rejection counter grew since the sample before, of the same run), with how many and the
/// mount's figures then.
fn record_quota_rejections(
    daemon: &Daemon,
    previous: Option<&msb_metrics::Sample>,
    fresh: &[msb_metrics::Sample],
) {
    let mut before = previous.cloned();
    for sample in fresh {
        let same_run = before.as_ref().filter(|b| b.run_id == sample.run_id);
        let mounts = [
            (
                "/.msb",
                sample.runtime_fs_quota_rejections,
                same_run.and_then(|b| b.runtime_fs_quota_rejections),
                sample.runtime_fs_used_bytes,
                sample.runtime_fs_limit_bytes,
            ),
            (
                "volumes",
                sample.volumes_fs_quota_rejections,
                same_run.and_then(|b| b.volumes_fs_quota_rejections),
                sample.volumes_fs_used_bytes,
                sample.volumes_fs_limit_bytes,
            ),
        ];
        for (mount, now, then, used, limit) in mounts {
            let grown = now.unwrap_or(0).saturating_sub(then.unwrap_or(0));
            if grown == 0 {
                continue;
            }
            let detail = serde_json::json!({
                "run_id": sample.run_id, "mount": mount, "rejections": grown,
                "total_rejections": now, "used_bytes": used, "limit_bytes": limit,
            });
            append_sample_event(daemon, sample, "quota_rejected", detail);
        }
        before = Some(sample.clone());
    }
}
