//! The host side of datagrams: one tokio task per outbound UDP flow, one per DNS query, one
//! per published UDP port. Replies reach the stack thread through a bounded channel; a full
//! channel drops the datagram and counts it (`drops_rx_ring_full`), it never waits.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::counters::{EventSink, NetCounters, NetEvent};
use crate::device::Shared;
use crate::dns;
use crate::policy::EgressPolicy;
use crate::tcp::FlowKey;

/// Datagrams queued per flow towards its host socket.
pub(crate) const FLOW_QUEUE: usize = 64;
/// DNS queries forwarded at once; more get SERVFAIL.
pub(crate) const DNS_IN_FLIGHT: usize = 64;

/// Something for the guest that the stack thread turns into a frame.
#[derive(Debug)]
pub(crate) enum ToGuest {
    Datagram {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
    },
    /// A datagram that arrived on published UDP listener `listener` from `peer`.
    Published {
        listener: usize,
        guest_port: u16,
        peer: SocketAddr,
        payload: Vec<u8>,
    },
}

/// Control messages from the tokio tasks to the stack thread (never dropped).
#[derive(Debug)]
pub(crate) enum StackMsg {
    TcpConnected {
        key: FlowKey,
        result: std::io::Result<tokio::net::TcpStream>,
    },
    Inbound {
        guest_port: u16,
        stream: tokio::net::TcpStream,
    },
    UdpClosed {
        key: FlowKey,
    },
}

/// Handles the tasks need to reach the stack thread.
#[derive(Clone)]
pub(crate) struct StackLink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) to_guest: SyncSender<ToGuest>,
    pub(crate) control: Sender<StackMsg>,
}

impl StackLink {
    pub(crate) fn send_to_guest(&self, item: ToGuest) {
        match self.to_guest.try_send(item) {
            Ok(()) => self.shared.stack.notify(),
            Err(TrySendError::Full(_)) => {
                NetCounters::inc(&self.shared.counters.drops_rx_ring_full)
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn control(&self, msg: StackMsg) {
        if self.control.send(msg).is_ok() {
            self.shared.stack.notify();
        }
    }
}

/// Relays one guest UDP flow to `target` until it has been idle for `idle`.
pub(crate) async fn flow(
    key: FlowKey,
    target: SocketAddr,
    mut from_guest: mpsc::Receiver<Vec<u8>>,
    link: StackLink,
    idle: Duration,
) {
    let bind: SocketAddr = if target.ip().is_loopback() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) if s.connect(target).await.is_ok() => s,
        _ => {
            link.control(StackMsg::UdpClosed { key });
            return;
        }
    };
    let mut buf = vec![0; 65536];
    loop {
        tokio::select! {
            datagram = from_guest.recv() => match datagram {
                Some(d) => { let _ = socket.send(&d).await; }
                None => break,
            },
            received = socket.recv(&mut buf) => {
                // Errors (an ICMP port unreachable) are ignored; the flow goes on.
                if let Ok(n) = received {
                    link.send_to_guest(ToGuest::Datagram {
                        src: key.remote,
                        dst: key.guest,
                        payload: buf[..n].to_vec(),
                    });
                }
            }
            () = tokio::time::sleep(idle) => break,
        }
    }
    link.control(StackMsg::UdpClosed { key });
}

/// What a DNS forward needs besides the query.
pub(crate) struct DnsForward {
    pub(crate) upstream: SocketAddr,
    pub(crate) timeout: Duration,
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) events: EventSink,
    pub(crate) in_flight: Arc<AtomicUsize>,
}

/// Forwards one query upstream and answers the guest (`reply_from` is the gateway's port 53).
pub(crate) async fn forward_dns(
    forward: Arc<DnsForward>,
    query: Vec<u8>,
    question: dns::Question,
    reply_from: SocketAddrV4,
    reply_to: SocketAddrV4,
    link: StackLink,
) {
    let response = resolve(&forward, &query, &question, &link.shared.counters).await;
    forward.in_flight.fetch_sub(1, Relaxed);
    link.send_to_guest(ToGuest::Datagram {
        src: reply_from,
        dst: reply_to,
        payload: response,
    });
}

/// Receives on a published UDP port and hands each datagram to the stack.
pub(crate) async fn published_listener(
    socket: std::net::UdpSocket,
    listener: usize,
    guest_port: u16,
    link: StackLink,
) {
    let Ok(socket) = UdpSocket::from_std(socket) else {
        return;
    };
    let mut buf = vec![0; 65536];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        link.send_to_guest(ToGuest::Published {
            listener,
            guest_port,
            peer,
            payload: buf[..n].to_vec(),
        });
    }
}

/// Accepts on a published TCP port and hands each connection to the stack, refusing beyond the
/// connection limit.
pub(crate) async fn published_tcp_listener(
    listener: std::net::TcpListener,
    guest_port: u16,
    max_connections: usize,
    link: StackLink,
    events: EventSink,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let counters = link.shared.counters.clone();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if counters.tcp_open.load(Relaxed) as usize >= max_connections {
            NetCounters::inc(&counters.tcp_limit_refused);
            events.emit(
                &counters,
                NetEvent::LimitReached {
                    transport: crate::policy::Transport::Tcp,
                    destination: crate::policy::Destination::Ip(peer.ip()),
                    port: guest_port,
                    limit: max_connections,
                },
            );
            continue;
        }
        link.control(StackMsg::Inbound { guest_port, stream });
    }
}

/// The answer to one query: the upstream resolver's, unless it points into a range the policy
/// denies (rebinding: REFUSED, counted, an event) or none came in time (SERVFAIL, counted).
pub(crate) async fn resolve(
    forward: &DnsForward,
    query: &[u8],
    question: &dns::Question,
    counters: &NetCounters,
) -> Vec<u8> {
    let answer = async {
        let bind: SocketAddr = if forward.upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await.ok()?;
        socket.connect(forward.upstream).await.ok()?;
        socket.send(query).await.ok()?;
        let mut buf = vec![0; 65536];
        loop {
            let n = socket.recv(&mut buf).await.ok()?;
            if n >= 12 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    };
    match tokio::time::timeout(forward.timeout, answer).await {
        Ok(Some(response)) => {
            let blocked = dns::answer_addresses(&response)
                .unwrap_or_default()
                .into_iter()
                .find(|ip| !forward.policy.dns_answer_allowed(*ip));
            match blocked {
                None => response,
                Some(address) => {
                    NetCounters::inc(&counters.drops_dns_rebind);
                    forward.events.emit(
                        counters,
                        NetEvent::DnsRebindBlocked {
                            name: question.name.clone(),
                            address,
                        },
                    );
                    dns::error_response(query, question, dns::REFUSED)
                }
            }
        }
        _ => {
            NetCounters::inc(&counters.drops_dns_failed);
            dns::error_response(query, question, dns::SERVFAIL)
        }
    }
}
