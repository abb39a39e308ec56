//! The network's counters (plain atomics, read with [`NetCounters::snapshot`]) and its notable
//! events (a bounded channel the data path never waits on).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::mpsc;

use crate::policy::{Destination, Transport};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one sandbox's network. Byte and packet counts are from the guest's
        /// view: `tx_*` is what the guest sent (frames accepted into the transmit ring), `rx_*`
        /// what it received (frames written to its device). `*_open` and `*_ring_frames` are
        /// gauges; everything else only grows.
        #[derive(Debug, Default)]
        pub struct NetCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`NetCounters`] at one instant.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct NetCountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl NetCounters {
            /// Reads every counter (each atomically; the set is not one transaction).
            pub fn snapshot(&self) -> NetCountersSnapshot {
                NetCountersSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Bytes of Ethernet frames the guest received.
    rx_bytes,
    /// Frames the guest received.
    rx_packets,
    /// Bytes of Ethernet frames the guest sent (accepted into the transmit ring).
    tx_bytes,
    /// Frames the guest sent (accepted into the transmit ring).
    tx_packets,
    /// Frames waiting in the transmit ring (guest -> stack) now.
    tx_ring_frames,
    /// Frames waiting in the receive ring (stack -> guest) now.
    rx_ring_frames,
    /// Guest frames dropped because the transmit ring was full.
    drops_tx_ring_full,
    /// Datagrams (UDP, DNS, ICMP replies) for the guest dropped because the receive ring or the
    /// queue in front of it was full. TCP is never dropped there: it waits (backpressure).
    drops_rx_ring_full,
    /// Flows and packets refused by the egress policy.
    drops_policy_denied,
    /// DNS queries that got no answer from upstream (timeout, error) or were refused.
    drops_dns_failed,
    /// DNS answers refused because they pointed into a denied range (rebinding protection).
    drops_dns_rebind,
    /// Guest datagrams dropped because the flow's queue to its host socket was full.
    drops_udp_backlog,
    /// Guest TCP connections refused because the TCP connection limit was reached.
    tcp_limit_refused,
    /// New UDP flows refused because the UDP flow limit was reached.
    udp_limit_refused,
    /// Allowed TCP connections whose host-side connect failed (the guest sees a reset).
    tcp_connect_failed,
    /// TCP connections open now (outbound and published).
    tcp_open,
    /// TCP connections ever opened.
    tcp_total,
    /// UDP flows open now (outbound and published).
    udp_open,
    /// UDP flows ever opened.
    udp_total,
    /// DNS queries the gateway received.
    dns_queries,
    /// ICMP echo replies delivered to the guest (relayed or answered by the stack).
    icmp_echo_replies,
    /// ICMP echo requests relayed through a host ICMP socket.
    icmp_echo_relayed,
    /// Events lost because the event channel was full.
    events_dropped,
}

impl NetCounters {
    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Relaxed);
    }
}

/// Why frames were dropped, as reported in [`NetEvent::Dropped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    TxRingFull,
    RxRingFull,
    UdpBacklog,
}

impl DropReason {
    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::RxRingFull => "rx_ring_full",
            DropReason::UdpBacklog => "udp_backlog",
        }
    }
}

/// Something an operator may want in the sandbox's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// Frames were dropped; reported at most once a second per reason with the count since the
    /// last report.
    Dropped { reason: DropReason, frames: u64 },
    /// The egress policy refused a flow. `rule` is the index of the deciding rule, `None` when
    /// the defaults decided.
    Denied {
        transport: Transport,
        destination: Destination,
        port: u16,
        rule: Option<usize>,
    },
    /// A connection or flow was refused because its limit was reached.
    LimitReached {
        transport: Transport,
        destination: Destination,
        port: u16,
        limit: usize,
    },
    /// A DNS answer for `name` pointed at `address`, which the policy denies.
    DnsRebindBlocked { name: String, address: IpAddr },
}

/// The sending side of the event channel: never blocks, counts what it has to drop.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    sender: mpsc::Sender<NetEvent>,
}

impl EventSink {
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<NetEvent>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (EventSink { sender }, receiver)
    }

    pub(crate) fn emit(&self, counters: &NetCounters, event: NetEvent) {
        tracing::debug!(?event, "network event");
        if self.sender.try_send(event).is_err() {
            NetCounters::inc(&counters.events_dropped);
        }
    }
}

/// Turns the drop counters into at most one [`NetEvent::Dropped`] per reason per call.
#[derive(Debug, Default)]
pub(crate) struct DropReporter {
    reported: [u64; 3],
}

impl DropReporter {
    pub(crate) fn report(&mut self, counters: &NetCounters, events: &EventSink) {
        let now = [
            (DropReason::TxRingFull, &counters.drops_tx_ring_full),
            (DropReason::RxRingFull, &counters.drops_rx_ring_full),
            (DropReason::UdpBacklog, &counters.drops_udp_backlog),
        ];
        for (slot, (reason, counter)) in self.reported.iter_mut().zip(now) {
            let value = counter.load(Relaxed);
            if value > *slot {
                events.emit(
                    counters,
                    NetEvent::Dropped {
                        reason,
                        frames: value - *slot,
                    },
                );
                *slot = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reports_carry_the_delta_and_a_full_channel_is_counted() {
        let counters = NetCounters::default();
        let (sink, mut events) = EventSink::new(2);
        let mut reporter = DropReporter::default();
        NetCounters::add(&counters.drops_tx_ring_full, 5);
        reporter.report(&counters, &sink);
        reporter.report(&counters, &sink);
        NetCounters::add(&counters.drops_tx_ring_full, 2);
        NetCounters::inc(&counters.drops_rx_ring_full);
        reporter.report(&counters, &sink);
        let first = events.try_recv().unwrap();
        assert_eq!(
            first,
            NetEvent::Dropped {
                reason: DropReason::TxRingFull,
                frames: 5
            }
        );
        assert_eq!(
            events.try_recv().unwrap(),
            NetEvent::Dropped {
                reason: DropReason::TxRingFull,
                frames: 2
            }
        );
        assert!(events.try_recv().is_err());
        assert_eq!(counters.snapshot().events_dropped, 1);
    }
}
