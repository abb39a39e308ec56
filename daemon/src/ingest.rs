//! Numbered samples from supervisors: each taken in once, acknowledged once it is stored.
//!
//! A supervisor numbers its run's samples from 1 and keeps each until msbd acknowledges it
//! (`runtime/src/supervisor/outbox.rs`); a new watch connection is first sent everything still
//! unacknowledged. msbd hands fresh samples to the live view and to the series writer, and
//! acknowledges a batch (`ClientRequest::SamplesStored`, cumulative) only when the writer says
//! it is committed: a `kill -9` of msbd at any moment loses nothing, the supervisor sends it again
//! to the next msbd.
//!
//! What is sent again may already be stored: the previous msbd may have committed samples and
//! died before acknowledging them. [`Intake`] drops them. Within one msbd it remembers, per
//! sandbox, the run and the highest number taken in; for a run it has not seen and did not
//! start (after a restart) it asks the store once for the time of the run's latest stored
//! sample: a run's
//! sample times strictly increase with their numbers (the sampler makes them), and the writer
//! commits in order, so anything taken at or before that time is stored. The number itself is
//! not stored: the time already identifies a run's sample, and the table stays what the
//! instrument declaration makes it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use msb_metrics::Sample;
use msb_protocol::session::ClientRequest;
use msb_runtime::framing::write_frame;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The series writer's gathering window, in ms (default 1000): for tests that need samples to
/// stay received but uncommitted, and for tuning.
pub const BATCH_WINDOW_VARIABLE: &str = "MSB_SERIES_BATCH_MS";

/// How msbd's series writer runs: the defaults, with the window from [`BATCH_WINDOW_VARIABLE`].
pub fn writer_options() -> msb_store::WriterOptions {
    let mut options = msb_store::WriterOptions::default();
    if let Some(ms) = std::env::var(BATCH_WINDOW_VARIABLE)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        options.batch_window = Duration::from_millis(ms);
    }
    options
}

/// The run of a sandbox msbd takes samples from, and the highest number taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
    run_id: String,
    through_seq: u64,
}

/// Which numbered samples msbd has already taken in, per sandbox.
#[derive(Debug, Default)]
pub struct Intake {
    taken: Mutex<HashMap<String, Taken>>,
    /// Per sandbox, the run this msbd started and has taken no sample from yet: none of its
    /// samples can be stored, so the store is not asked (a query over the open hour's table,
    /// 1-2 ms of CPU a run on the development host, growing with the hour).
    started: Mutex<HashMap<String, String>>,
}

impl Intake {
    /// The samples of a batch (`samples[i]` numbered `first_seq + i`, all of one run) not taken
    /// in before, and the batch's highest number. `stored_ms` gives the time of the run's latest
    /// stored sample at or after the one given; it is asked only for a run this msbd has not
    /// taken samples from.
    pub fn fresh(
        &self,
        first_seq: u64,
        samples: Vec<Sample>,
        stored_ms: impl FnOnce(&Sample) -> Option<u64>,
    ) -> (Vec<Sample>, u64) {
        let through_seq = (first_seq + samples.len() as u64).saturating_sub(1);
        let Some(first) = samples.first() else {
            return (samples, through_seq);
        };
        let (sandbox_id, run_id) = (first.sandbox_id.clone(), first.run_id.clone());
        let mut taken = self.taken.lock().unwrap();
        let known = taken
            .get(&sandbox_id)
            .filter(|t| t.run_id == run_id)
            .map(|t| t.through_seq);
        let fresh: Vec<Sample> = match known {
            Some(known) => samples
                .into_iter()
                .zip(first_seq..)
                .filter(|(_, seq)| *seq > known)
                .map(|(sample, _)| sample)
                .collect(),
            None => {
                let started_here = self
                    .started
                    .lock()
                    .unwrap()
                    .remove(&sandbox_id)
                    .is_some_and(|started| started == run_id);
                let stored = match started_here {
                    true => None,
                    false => stored_ms(first),
                };
                samples
                    .into_iter()
                    .filter(|s| stored.is_none_or(|stored| s.timestamp_ms > stored))
                    .collect()
            }
        };
        let through = known.unwrap_or(0).max(through_seq);
        taken.insert(
            sandbox_id,
            Taken {
                run_id,
                through_seq: through,
            },
        );
        (fresh, through_seq)
    }

    pub fn forget(&self, sandbox_id: &str) {
        self.taken.lock().unwrap().remove(sandbox_id);
        self.started.lock().unwrap().remove(sandbox_id);
    }

    /// This msbd starts run `run_id` of `sandbox_id`: its first samples are all fresh.
    pub fn started_here(&self, sandbox_id: &str, run_id: &str) {
        self.started
            .lock()
            .unwrap()
            .insert(sandbox_id.to_owned(), run_id.to_owned());
    }
}

/// Sends `SamplesStored` on one watch connection, from any thread, without waiting.
#[derive(Debug, Clone)]
pub struct Acknowledger(mpsc::UnboundedSender<u64>);

impl Acknowledger {
    /// Starts the task that writes acknowledgements on `writer`; it ends with the last sender,
    /// or at the first failed write.
    pub fn start(mut writer: OwnedWriteHalf) -> Acknowledger {
        let (sender, mut numbers) = mpsc::unbounded_channel::<u64>();
        tokio::spawn(async move {
            while let Some(mut through_seq) = numbers.recv().await {
                // Acknowledgements are cumulative: only the highest one waiting matters.
                while let Ok(next) = numbers.try_recv() {
                    through_seq = through_seq.max(next);
                }
                let ack = ClientRequest::SamplesStored { through_seq };
                if write_frame(&mut writer, &ack).await.is_err() {
                    return;
                }
            }
        });
        Acknowledger(sender)
    }

    /// Every sample numbered up to `through_seq` is stored.
    pub fn stored(&self, through_seq: u64) {
        let _ = self.0.send(through_seq);
    }
}

/// Splits a watch connection into the half its events are read from and its acknowledger.
pub fn split_watch(stream: UnixStream) -> (OwnedReadHalf, Acknowledger) {
    let (reader, writer) = stream.into_split();
    (reader, Acknowledger::start(writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sandbox: &str, run: &str, ts: u64) -> Sample {
        Sample {
            sandbox_id: sandbox.into(),
            run_id: run.into(),
            timestamp_ms: ts,
            ..Sample::default()
        }
    }

    fn times(samples: &[Sample]) -> Vec<u64> {
        samples.iter().map(|s| s.timestamp_ms).collect()
    }

    #[test]
    fn a_run_started_here_is_not_looked_up_but_one_from_before_a_restart_is() {
        let intake = Intake::default();
        let never = |_: &Sample| -> Option<u64> { panic!("a run started here is not looked up") };
        intake.started_here("a", "r1");
        let (fresh, _) = intake.fresh(1, vec![sample("a", "r1", 10)], never);
        assert_eq!(times(&fresh), [10]);
        // Another run of the sandbox than the one started here (an earlier msbd's) is.
        intake.started_here("b", "r2");
        let (fresh, _) = intake.fresh(1, vec![sample("b", "r1", 5), sample("b", "r1", 6)], |_| {
            Some(5)
        });
        assert_eq!(times(&fresh), [6]);
    }

    #[test]
    fn a_batch_sent_again_on_the_same_msbd_is_taken_in_once() {
        let intake = Intake::default();
        let never = |_: &Sample| -> Option<u64> { panic!("the store is asked only once per run") };
        let (fresh, through) = intake.fresh(
            1,
            vec![sample("a", "r1", 10), sample("a", "r1", 20)],
            |_| None,
        );
        assert_eq!((times(&fresh), through), (vec![10, 20], 2));
        // The watch connection was opened again before the acknowledgement: 1-3 come again.
        let batch = vec![
            sample("a", "r1", 10),
            sample("a", "r1", 20),
            sample("a", "r1", 30),
        ];
        let (fresh, through) = intake.fresh(1, batch.clone(), never);
        assert_eq!((times(&fresh), through), (vec![30], 3));
        let (fresh, through) = intake.fresh(1, batch, never);
        assert_eq!((times(&fresh), through), (vec![], 3));
        // Another sandbox is its own count.
        let (fresh, _) = intake.fresh(1, vec![sample("b", "r9", 5)], |_| None);
        assert_eq!(times(&fresh), [5]);
        // A new run of the same sandbox starts over, asking the store first.
        let (fresh, through) = intake.fresh(1, vec![sample("a", "r2", 40)], |_| None);
        assert_eq!((times(&fresh), through), (vec![40], 1));
    }

    #[test]
    fn after_a_restart_what_the_store_has_is_dropped() {
        let intake = Intake::default();
        let batch: Vec<Sample> = (1..=5).map(|i| sample("a", "r1", i * 1000)).collect();
        let mut asked = None;
        let (fresh, through) = intake.fresh(7, batch, |first| {
            asked = Some((first.run_id.clone(), first.timestamp_ms));
            Some(3000)
        });
        assert_eq!(asked, Some(("r1".into(), 1000)));
        assert_eq!((times(&fresh), through), (vec![4000, 5000], 11));
        // Nothing of the batch stored yet: all of it.
        let intake = Intake::default();
        let batch: Vec<Sample> = (1..=3).map(|i| sample("a", "r1", i)).collect();
        let (fresh, _) = intake.fresh(1, batch, |_| None);
        assert_eq!(fresh.len(), 3);
        // All of it stored: nothing, but the batch is still acknowledged in full.
        let intake = Intake::default();
        let batch: Vec<Sample> = (1..=3).map(|i| sample("a", "r1", i)).collect();
        let (fresh, through) = intake.fresh(4, batch, |_| Some(3));
        assert_eq!((fresh.len(), through), (0, 6));
        // The next batch of that run goes by number.
        let (fresh, _) = intake.fresh(7, vec![sample("a", "r1", 4)], |_| {
            panic!("the store is asked only once per run")
        });
        assert_eq!(times(&fresh), [4]);
        // A sandbox removed and its run seen again (it cannot be, but): the store decides.
        intake.forget("a");
        let (fresh, _) = intake.fresh(8, vec![sample("a", "r1", 5)], |_| Some(5));
        assert!(fresh.is_empty());
    }
}
