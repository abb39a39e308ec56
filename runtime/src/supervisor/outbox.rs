//! The supervisor's samples on their way to msbd's store: numbered, kept until acknowledged.
//!
//! Every sample the sampler takes is numbered (per run, from 1) and kept here until msbd says
//! that the store has committed it (`ClientRequest::SamplesStored`, cumulative). A new watcher
//! (msbd after a restart, even a `kill -9`) is first sent everything still unacknowledged, so a
//! sample that was in flight, or received but not yet committed, when msbd died is sent again;
//! msbd drops the ones it had already stored (see `daemon/src/ingest.rs`). The outbox is
//! bounded: when it is full the oldest sample goes, and is counted.

use std::collections::VecDeque;

use msb_metrics::Sample;
use msb_protocol::session::ClientEvent;

/// Samples kept while msbd has not acknowledged them: at least 5 minutes, never fewer than 600.
pub fn capacity(interval_ms: u64) -> usize {
    ((300_000 / interval_ms.max(1)) as usize).max(600)
}

/// Most samples in one `SampleBatch` frame of a backlog (a sample encodes to a few hundred
/// bytes; frames are limited to `MAX_FRAME_BYTES`).
pub const BACKLOG_BATCH: usize = 256;

/// Unacknowledged samples, oldest first.
#[derive(Debug)]
pub struct SampleOutbox {
    samples: VecDeque<Sample>,
    /// The number of `samples[0]` (or of the next sample when empty).
    first_seq: u64,
    capacity: usize,
    /// Samples dropped unacknowledged because the outbox was full.
    pub dropped: u64,
}

impl SampleOutbox {
    pub fn new(capacity: usize) -> Self {
        SampleOutbox {
            samples: VecDeque::new(),
            first_seq: 1,
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Keeps `sample` until it is acknowledged and returns its number. When the outbox is full
    /// the oldest sample is dropped and counted.
    pub fn push(&mut self, sample: Sample) -> u64 {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
            self.first_seq += 1;
            self.dropped += 1;
            if self.dropped == 1 || self.dropped % 1000 == 0 {
                tracing::warn!(
                    dropped = self.dropped,
                    "msbd has not stored the oldest samples; dropping them (the outbox is full)"
                );
            }
        }
        self.samples.push_back(sample);
        self.next_seq() - 1
    }

    /// The number the next sample gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.samples.len() as u64
    }

    /// Forgets every sample numbered up to `through_seq` (an acknowledgement of numbers not
    /// yet given out forgets only what there is).
    pub fn acknowledge(&mut self, through_seq: u64) {
        while self.first_seq <= through_seq && self.samples.pop_front().is_some() {
            self.first_seq += 1;
        }
    }

    /// Everything unacknowledged, oldest first, as frames of at most [`BACKLOG_BATCH`].
    pub fn backlog(&self) -> Vec<ClientEvent> {
        let (front, back) = self.samples.as_slices();
        let mut frames = Vec::new();
        let mut seq = self.first_seq;
        let mut batch: Vec<Sample> = Vec::new();
        for sample in front.iter().chain(back) {
            batch.push(sample.clone());
            if batch.len() == BACKLOG_BATCH {
                let samples = std::mem::take(&mut batch);
                let first_seq = seq;
                seq += samples.len() as u64;
                frames.push(ClientEvent::SampleBatch { first_seq, samples });
            }
        }
        if !batch.is_empty() {
            frames.push(ClientEvent::SampleBatch {
                first_seq: seq,
                samples: batch,
            });
        }
        frames
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts: u64) -> Sample {
        Sample {
            timestamp_ms: ts,
            ..Sample::default()
        }
    }

    /// `(first_seq, timestamps)` of each frame.
    fn frames(outbox: &SampleOutbox) -> Vec<(u64, Vec<u64>)> {
        outbox
            .backlog()
            .into_iter()
            .map(|frame| match frame {
                ClientEvent::SampleBatch { first_seq, samples } => {
                    (first_seq, samples.iter().map(|s| s.timestamp_ms).collect())
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn samples_stay_until_acknowledged_and_are_offered_again() {
        let mut outbox = SampleOutbox::new(10);
        assert_eq!(outbox.push(sample(100)), 1);
        assert_eq!(outbox.push(sample(200)), 2);
        assert_eq!(outbox.push(sample(300)), 3);
        // Sent to a watcher that went away without acknowledging: all of them again.
        assert_eq!(frames(&outbox), [(1, vec![100, 200, 300])]);
        assert_eq!(frames(&outbox), [(1, vec![100, 200, 300])]);
        outbox.acknowledge(2);
        assert_eq!(frames(&outbox), [(3, vec![300])]);
        // Acknowledgements are cumulative; repeating an old one changes nothing.
        outbox.acknowledge(1);
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.push(sample(400)), 4);
        outbox.acknowledge(4);
        assert!(outbox.is_empty());
        assert!(outbox.backlog().is_empty());
        // Numbers go on after the outbox emptied; acknowledging the future forgets nothing new.
        assert_eq!(outbox.push(sample(500)), 5);
        outbox.acknowledge(99);
        assert!(outbox.is_empty());
        assert_eq!(outbox.push(sample(600)), 6);
        assert_eq!(outbox.dropped, 0);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let mut outbox = SampleOutbox::new(3);
        for ts in 0..5 {
            outbox.push(sample(ts));
        }
        assert_eq!(outbox.dropped, 2);
        assert_eq!(frames(&outbox), [(3, vec![2, 3, 4])]);
        outbox.acknowledge(3);
        assert_eq!(frames(&outbox), [(4, vec![3, 4])]);
        assert_eq!(capacity(1000), 600);
        assert_eq!(capacity(100), 3000);
    }

    #[test]
    fn a_long_backlog_goes_in_frames_that_fit() {
        let mut outbox = SampleOutbox::new(1000);
        for ts in 0..(BACKLOG_BATCH as u64 * 2 + 7) {
            outbox.push(sample(ts));
        }
        let frames = frames(&outbox);
        let shape: Vec<(u64, usize)> = frames.iter().map(|(s, t)| (*s, t.len())).collect();
        let batch = BACKLOG_BATCH as u64;
        assert_eq!(
            shape,
            [
                (1, BACKLOG_BATCH),
                (1 + batch, BACKLOG_BATCH),
                (1 + 2 * batch, 7)
            ]
        );
        assert_eq!(frames[1].1[0], batch);
        let largest = msb_protocol::encode(&outbox.backlog()[0]).len();
        assert!(largest < msb_protocol::MAX_FRAME_BYTES, "{largest}");
    }
}
