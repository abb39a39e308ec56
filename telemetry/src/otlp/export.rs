//! One exporter per signal: a byte-bounded queue, one worker task, and its health counters.
//!
//! Producers never wait: [`Exporter::submit`] puts a request in the queue and returns. The worker
//! sends the oldest request; a retryable failure (collector down, 429/503, gRPC `UNAVAILABLE`)
//! keeps it at the head and backs off (1 s doubling to 10 s); a permanent one (400, bad data)
//! drops it. When the queue would exceed its byte budget the oldest requests go first. Every
//! dropped data point or span is counted in [`ExportStats::dropped`], so memory stays bounded
//! while the collector is away and the loss is visible, never silent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::Notify;

use super::config::{Signal, SignalConfig};
use super::transport::{SendError, Transport};

/// Default byte budget of one signal's queue.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;

/// The longest wait between two attempts while the collector is away.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What one export request carries.
#[derive(Debug, Clone)]
pub enum Payload {
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

impl Payload {
    fn encoded_len(&self) -> usize {
        match self {
            Payload::Metrics(r) => r.encoded_len(),
            Payload::Traces(r) => r.encoded_len(),
        }
    }
}

/// A request waiting in the queue.
#[derive(Debug)]
struct Pending {
    payload: Payload,
    /// Data points or spans in it: what is lost if it is dropped.
    items: u64,
    bytes: usize,
}

/// Health of one signal's export, read by the exporters of msbd's own metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Data points (metrics) or spans (traces) that will never reach the collector.
    pub dropped: AtomicU64,
    /// Unix milliseconds of the last successful export; 0 = none yet.
    pub last_success_ms: AtomicU64,
    pub queued_bytes: AtomicU64,
}

impl ExportStats {
    pub fn add_dropped(&self, items: u64) {
        self.dropped.fetch_add(items, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Queue {
    pending: Mutex<VecDeque<Pending>>,
    capacity_bytes: usize,
    wake: Notify,
    stats: ExportStats,
}

impl Queue {
    /// Appends, then drops the oldest requests until the queue fits its budget (the newest
    /// request is kept even when it alone exceeds the budget: it is the freshest state).
    fn push(&self, pending: Pending, front: bool) {
        let mut queue = self.pending.lock().unwrap();
        if front {
            queue.push_front(pending);
        } else {
            queue.push_back(pending);
        }
        let mut bytes: usize = queue.iter().map(|p| p.bytes).sum();
        while bytes > self.capacity_bytes && queue.len() > 1 {
            let victim = if front {
                queue.pop_back()
            } else {
                queue.pop_front()
            };
            let victim = victim.expect("len > 1");
            bytes -= victim.bytes;
            self.stats.add_dropped(victim.items);
        }
        self.stats
            .queued_bytes
            .store(bytes as u64, Ordering::Relaxed);
    }

    fn pop(&self) -> Option<Pending> {
        let mut queue = self.pending.lock().unwrap();
        let next = queue.pop_front();
        let bytes: usize = queue.iter().map(|p| p.bytes).sum();
        self.stats
            .queued_bytes
            .store(bytes as u64, Ordering::Relaxed);
        next
    }
}

/// A running exporter for one signal.
#[derive(Debug, Clone)]
pub struct Exporter {
    pub signal: Signal,
    pub endpoint: String,
    queue: Arc<Queue>,
}

impl Exporter {
    /// Starts the worker on the current Tokio runtime.
    pub fn start(config: SignalConfig, capacity_bytes: usize) -> Exporter {
        let queue = Arc::new(Queue {
            pending: Mutex::new(VecDeque::new()),
            capacity_bytes,
            wake: Notify::new(),
            stats: ExportStats::default(),
        });
        let exporter = Exporter {
            signal: config.signal,
            endpoint: config.endpoint.clone(),
            queue: queue.clone(),
        };
        tokio::spawn(worker(Transport::new(config), queue));
        exporter
    }

    pub fn stats(&self) -> &ExportStats {
        &self.queue.stats
    }

    /// Queues a request; never blocks.
    pub fn submit(&self, payload: Payload, items: u64) {
        let bytes = payload.encoded_len();
        self.queue.push(
            Pending {
                payload,
                items,
                bytes,
            },
            false,
        );
        self.queue.wake.notify_one();
    }
}

async fn worker(transport: Transport, queue: Arc<Queue>) {
    let signal = transport.signal();
    let mut backoff = Duration::from_secs(1);
    let mut failures_in_a_row: u64 = 0;
    loop {
        let Some(pending) = queue.pop() else {
            queue.wake.notified().await;
            continue;
        };
        match transport.send(&pending.payload).await {
            Ok(rejected) => {
                queue.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                queue
                    .stats
                    .last_success_ms
                    .store(now_ms(), Ordering::Relaxed);
                if rejected > 0 {
                    queue.stats.add_dropped(rejected);
                    tracing::warn!(
                        "the OTLP collector rejected {rejected} {} items",
                        signal.as_str()
                    );
                }
                if failures_in_a_row > 0 {
                    tracing::info!(
                        "OTLP {} export to {} resumed after {failures_in_a_row} failed attempts",
                        signal.as_str(),
                        transport.endpoint()
                    );
                }
                failures_in_a_row = 0;
                backoff = Duration::from_secs(1);
            }
            Err(SendError::Retryable(e)) => {
                queue.stats.failed.fetch_add(1, Ordering::Relaxed);
                if failures_in_a_row == 0 {
                    tracing::warn!(
                        "OTLP {} export to {} failed ({e}); retrying, keeping at most {} KiB queued",
                        signal.as_str(),
                        transport.endpoint(),
                        queue.capacity_bytes >> 10
                    );
                }
                failures_in_a_row += 1;
                queue.push(pending, true);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(SendError::Permanent(e)) => {
                queue.stats.failed.fetch_add(1, Ordering::Relaxed);
                queue.stats.add_dropped(pending.items);
                tracing::warn!(
                    "OTLP {} export to {} was refused ({e}); {} items dropped",
                    signal.as_str(),
                    transport.endpoint(),
                    pending.items
                );
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(items: u64, bytes: usize) -> Pending {
        Pending {
            payload: Payload::Metrics(Default::default()),
            items,
            bytes,
        }
    }

    #[test]
    fn the_queue_keeps_its_budget_and_counts_what_it_drops() {
        let queue = Queue {
            pending: Mutex::new(VecDeque::new()),
            capacity_bytes: 100,
            wake: Notify::new(),
            stats: ExportStats::default(),
        };
        for _ in 0..10 {
            queue.push(pending(7, 30), false);
        }
        assert_eq!(queue.pending.lock().unwrap().len(), 3);
        assert_eq!(queue.stats.dropped.load(Ordering::Relaxed), 7 * 7);
        assert_eq!(queue.stats.queued_bytes.load(Ordering::Relaxed), 90);
        // A failed head goes back to the front; the newest is then what is dropped.
        let head = queue.pop().unwrap();
        queue.push(pending(1, 30), false);
        queue.push(head, true);
        assert_eq!(queue.pending.lock().unwrap().front().unwrap().items, 7);
        assert_eq!(queue.stats.dropped.load(Ordering::Relaxed), 7 * 7 + 1);
        // One request larger than the budget is still kept (it is the freshest state).
        while queue.pop().is_some() {}
        queue.push(pending(5, 1000), false);
        assert_eq!(queue.pending.lock().unwrap().len(), 1);
    }
}
