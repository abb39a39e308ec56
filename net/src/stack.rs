//! The stack thread: takes the guest's frames off the transmit ring, decides what each one is
//! (a new connection to judge, a datagram to relay, an echo to answer, or something for
//! smoltcp), runs smoltcp, and services every relayed connection.
//!
//! smoltcp has no wildcard accept, so a guest SYN to an unknown endpoint is held while the
//! policy, the limit and then the host-side connect decide; on success a socket listening on
//! exactly that endpoint is created (the interface accepts any address) and the SYN is fed to it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpListenEndpoint};
use tokio::sync::mpsc;

use crate::config::NetConfig;
use crate::counters::{DropReporter, EventSink, NetCounters, NetEvent};
use crate::device::{FdDevice, RingDevice, Shared};
use crate::dns;
use crate::frames::{self, GuestPacket, Link};
use crate::policy::{Destination, EgressPolicy, Transport};
use crate::ring::Frame;
use crate::tcp::{self, FlowKey, TcpConn};
use crate::udp::{self, DnsForward, StackLink, StackMsg, ToGuest};

/// The stack's own MAC address.
const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x02, 0x6d, 0x73, 0x62, 0x00, 0x01]);
/// Frames taken off the transmit ring per loop turn.
const FRAME_BATCH: usize = 256;
/// Echo requests relayed at once; more are dropped (as a lossy link would).
const ECHO_IN_FLIGHT: usize = 64;
/// First local port for connections the stack opens to the guest (published ports).
const EPHEMERAL_FIRST: u16 = 49152;

struct UdpFlow {
    to_host: mpsc::Sender<Vec<u8>>,
}

/// An echo request relayed through a host ICMP socket, awaiting its reply.
struct PendingEcho {
    socket: std::net::UdpSocket,
    request: Vec<u8>,
    guest: Ipv4Addr,
    remote: Ipv4Addr,
    deadline: std::time::Instant,
}

struct PublishedPeer {
    listener: usize,
    peer: SocketAddr,
    last_used: std::time::Instant,
}

pub(crate) struct Stack {
    shared: Arc<Shared>,
    config: Arc<NetConfig>,
    policy: Arc<EgressPolicy>,
    runtime: tokio::runtime::Handle,
    iface: Interface,
    sockets: SocketSet<'static>,
    device: RingDevice,
    guest_mac: Option<EthernetAddress>,
    tcp: HashMap<FlowKey, TcpConn>,
    /// SYNs held while their host-side connect runs.
    opening: HashMap<FlowKey, Frame>,
    udp: HashMap<FlowKey, UdpFlow>,
    /// Published UDP: the gateway port the guest sees -> the host peer it stands for.
    published_udp: HashMap<u16, PublishedPeer>,
    published_udp_ports: HashMap<(usize, SocketAddr), u16>,
    udp_listeners: Vec<std::net::UdpSocket>,
    next_port: u16,
    link: StackLink,
    control: Receiver<StackMsg>,
    to_guest: Receiver<ToGuest>,
    events: EventSink,
    drops: DropReporter,
    dns: Option<Arc<DnsForward>>,
    echoes: Vec<PendingEcho>,
    /// The guest's frame descriptor.
    fd_device: FdDevice,
    /// Whether the host lets us open ICMP echo sockets (learnt at the first attempt).
    echo_sockets: Option<bool>,
}

fn now() -> Instant {
    Instant::now()
}

impl Stack {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: Arc<NetConfig>,
        runtime: tokio::runtime::Handle,
        link: StackLink,
        control: Receiver<StackMsg>,
        to_guest: Receiver<ToGuest>,
        events: EventSink,
        udp_listeners: Vec<std::net::UdpSocket>,
        fd_device: FdDevice,
    ) -> Stack {
        let mut device = RingDevice {
            shared: shared.clone(),
            inbox: VecDeque::new(),
            mtu: config.mtu,
        };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(GATEWAY_MAC)),
            &mut device,
            now(),
        );
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(config.gateway_ipv4.into(), config.prefix_len));
        });
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(config.gateway_ipv4);
        iface.set_any_ip(true);
        let policy = Arc::new(config.policy.clone());
        let dns = config.dns_upstream.map(|upstream| {
            Arc::new(DnsForward {
                upstream,
                timeout: config.dns_timeout,
                policy: policy.clone(),
                events: events.clone(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            })
        });
        Stack {
            shared,
            policy,
            runtime,
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            guest_mac: None,
            tcp: HashMap::new(),
            opening: HashMap::new(),
            udp: HashMap::new(),
            published_udp: HashMap::new(),
            published_udp_ports: HashMap::new(),
            udp_listeners,
            next_port: EPHEMERAL_FIRST,
            link,
            control,
            to_guest,
            events,
            drops: DropReporter::default(),
            dns,
            echoes: Vec::new(),
            fd_device,
            echo_sockets: None,
            config,
        }
    }

    fn counters(&self) -> &NetCounters {
        &self.shared.counters
    }

    fn link_addrs(&self) -> Option<Link> {
        Some(Link {
            gateway: GATEWAY_MAC,
            guest: self.guest_mac?,
        })
    }

    /// Builds a frame for the guest with `build` and queues it (dropped and counted when full).
    fn send_frame(&mut self, build: impl FnOnce(&mut Frame, Link)) {
        let Some(link) = self.link_addrs() else {
            return;
        };
        let mut frame = self.shared.rings.pool.get();
        build(&mut frame, link);
        self.shared
            .rings
            .push_to_guest(frame, &self.shared.counters);
    }

    /// Runs until the network is stopped.
    pub(crate) fn run(mut self) {
        let mut last_report = std::time::Instant::now();
        while !self.shared.stop.load(Relaxed) {
            self.shared.stack.take_pending();
            self.fd_device.read_batch(&self.shared);
            while let Ok(msg) = self.control.try_recv() {
                self.on_control(msg);
            }
            // Datagrams for the guest, a batch per turn; a full batch means more may wait.
            let mut backlog = true;
            for _ in 0..FRAME_BATCH {
                match self.to_guest.try_recv() {
                    Ok(item) => self.on_to_guest(item),
                    Err(_) => {
                        backlog = false;
                        break;
                    }
                }
            }
            for _ in 0..FRAME_BATCH {
                let Some(frame) = self.shared.rings.tx.pop() else {
                    break;
                };
                self.on_guest_frame(frame);
            }
            self.iface.poll(now(), &mut self.device, &mut self.sockets);
            self.service_connections();
            if !self.echoes.is_empty() {
                self.poll_echoes();
            }
            self.iface.poll(now(), &mut self.device, &mut self.sockets);
            self.fd_device.flush(&self.shared);
            self.shared.rings.publish_occupancy(self.counters());
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = std::time::Instant::now();
                self.drops.report(&self.shared.counters, &self.events);
                self.expire_published_udp();
            }
            // Sleep until woken or smoltcp has a timer due.
            self.shared.stack.arm();
            let device_ready = !self.fd_device.blocked() && !self.shared.rings.rx.is_empty();
            if self.shared.stack.take_pending()
                || backlog
                || device_ready
                || !self.shared.rings.tx.is_empty()
                || self.shared.stop.load(Relaxed)
            {
                self.shared.stack.disarm();
                continue;
            }
            // Rounded up, so a timer due in under a millisecond is slept for, not spun on.
            let timeout_ms = match self.iface.poll_delay(now(), &self.sockets) {
                Some(d) => d.total_micros().div_ceil(1000).min(1000) as i32,
                None => 1000,
            };
            if timeout_ms > 0 {
                let fds: Vec<_> = std::iter::once(self.fd_device.poll_events())
                    .chain(
                        self.echoes
                            .iter()
                            .map(|e| (e.socket.as_raw_fd(), libc::POLLIN)),
                    )
                    .collect();
                self.shared.stack.wait(&fds, timeout_ms);
            } else {
                self.shared.stack.disarm();
            }
        }
    }

    fn service_connections(&mut self) {
        let mut finished = Vec::new();
        for (key, conn) in &mut self.tcp {
            if conn.service(&mut self.sockets) {
                finished.push(*key);
            }
        }
        for key in finished {
            if let Some(conn) = self.tcp.remove(&key) {
                self.sockets.remove(conn.handle);
                NetCounters::dec(&self.shared.counters.tcp_open);
            }
        }
    }

    fn on_control(&mut self, msg: StackMsg) {
        match msg {
            StackMsg::TcpConnected { key, result } => {
                let Some(syn) = self.opening.remove(&key) else {
                    return;
                };
                match result {
                    Ok(stream) => {
                        let mut socket = tcp::new_socket(self.config.tcp_buffer_bytes);
                        let endpoint = IpListenEndpoint {
                            addr: Some((*key.remote.ip()).into()),
                            port: key.remote.port(),
                        };
                        if socket.listen(endpoint).is_err() {
                            NetCounters::dec(&self.shared.counters.tcp_open);
                            return;
                        }
                        let handle = self.sockets.add(socket);
                        let conn =
                            TcpConn::start(handle, stream, &self.runtime, self.shared.clone());
                        self.tcp.insert(key, conn);
                        self.device.inbox.push_back(syn);
                    }
                    Err(error) => {
                        tracing::debug!(%error, remote = %key.remote, "host connect failed");
                        NetCounters::inc(&self.shared.counters.tcp_connect_failed);
                        NetCounters::dec(&self.shared.counters.tcp_open);
                        self.refuse_syn(&syn);
                        self.shared.rings.pool.put(syn);
                    }
                }
            }
            StackMsg::Inbound { guest_port, stream } => {
                let local_port = self.allocate_port();
                let mut socket = tcp::new_socket(self.config.tcp_buffer_bytes);
                let remote = SocketAddrV4::new(self.config.guest_ipv4, guest_port);
                let local = SocketAddrV4::new(self.config.gateway_ipv4, local_port);
                let connected = socket.connect(
                    self.iface.context(),
                    (smoltcp::wire::IpAddress::Ipv4(*remote.ip()), remote.port()),
                    (smoltcp::wire::IpAddress::Ipv4(*local.ip()), local.port()),
                );
                if connected.is_err() {
                    return;
                }
                let handle = self.sockets.add(socket);
                let conn = TcpConn::start(handle, stream, &self.runtime, self.shared.clone());
                self.tcp.insert(
                    FlowKey {
                        guest: remote,
                        remote: local,
                    },
                    conn,
                );
                NetCounters::inc(&self.shared.counters.tcp_open);
                NetCounters::inc(&self.shared.counters.tcp_total);
            }
            StackMsg::UdpClosed { key } => {
                if self.udp.get(&key).is_some_and(|f| f.to_host.is_closed()) {
                    self.udp.remove(&key);
                    NetCounters::dec(&self.shared.counters.udp_open);
                }
            }
        }
    }

    fn allocate_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let in_use = self
                .tcp
                .keys()
                .any(|k| k.remote.port() == port && *k.remote.ip() == self.config.gateway_ipv4)
                || self.published_udp.contains_key(&port);
            if !in_use {
                return port;
            }
        }
    }

    fn on_to_guest(&mut self, item: ToGuest) {
        match item {
            ToGuest::Datagram { src, dst, payload } => {
                if payload.len() > frames::max_udp_payload(self.shared.rings.pool.frame_bytes()) {
                    return; // larger than the link carries; the guest would need fragments
                }
                self.send_frame(|frame, link| frames::udp(frame, link, src, dst, &payload));
            }
            ToGuest::Published {
                listener,
                guest_port,
                peer,
                payload,
            } => {
                let port = match self.published_udp_ports.get(&(listener, peer)) {
                    Some(port) => *port,
                    None => {
                        if self.udp_flows() >= self.config.max_udp_flows {
                            NetCounters::inc(&self.shared.counters.udp_limit_refused);
                            return;
                        }
                        let port = self.allocate_port();
                        self.published_udp_ports.insert((listener, peer), port);
                        self.published_udp.insert(
                            port,
                            PublishedPeer {
                                listener,
                                peer,
                                last_used: std::time::Instant::now(),
                            },
                        );
                        NetCounters::inc(&self.shared.counters.udp_open);
                        NetCounters::inc(&self.shared.counters.udp_total);
                        port
                    }
                };
                if let Some(p) = self.published_udp.get_mut(&port) {
                    p.last_used = std::time::Instant::now();
                }
                let src = SocketAddrV4::new(self.config.gateway_ipv4, port);
                let dst = SocketAddrV4::new(self.config.guest_ipv4, guest_port);
                self.send_frame(|frame, link| frames::udp(frame, link, src, dst, &payload));
            }
        }
    }

    fn expire_published_udp(&mut self) {
        let idle = self.config.udp_idle_timeout;
        let expired: Vec<u16> = self
            .published_udp
            .iter()
            .filter(|(_, p)| p.last_used.elapsed() > idle)
            .map(|(port, _)| *port)
            .collect();
        for port in expired {
            if let Some(p) = self.published_udp.remove(&port) {
                self.published_udp_ports.remove(&(p.listener, p.peer));
                NetCounters::dec(&self.shared.counters.udp_open);
            }
        }
    }

    fn udp_flows(&self) -> usize {
        self.udp.len() + self.published_udp.len()
    }

    fn on_guest_frame(&mut self, frame: Frame) {
        let (mac, packet) = frames::classify(frame.as_slice());
        if let Some(mac) = mac.filter(|m| m.is_unicast()) {
            self.guest_mac = Some(mac);
        }
        match packet {
            GuestPacket::ForSmoltcp => self.device.inbox.push_back(frame),
            GuestPacket::Tcp {
                src,
                dst,
                opening,
                seq,
            } => {
                let key = FlowKey {
                    guest: src,
                    remote: dst,
                };
                if !opening || self.tcp.contains_key(&key) {
                    self.device.inbox.push_back(frame);
                } else if !self.opening.contains_key(&key) {
                    self.open_tcp(key, seq, frame);
                } else {
                    self.shared.rings.pool.put(frame);
                }
            }
            GuestPacket::Udp { src, dst, payload } => {
                let payload = payload.to_vec();
                self.shared.rings.pool.put(frame);
                self.on_udp(src, dst, payload);
            }
            GuestPacket::Echo { src, dst, message } => {
                let message = message.to_vec();
                self.shared.rings.pool.put(frame);
                self.on_echo(src, dst, message);
            }
            GuestPacket::Unsupported => self.shared.rings.pool.put(frame),
        }
    }

    /// Broadcast and multicast traffic stays on the guest's link: dropped without a word.
    fn stays_on_link(&self, ip: Ipv4Addr) -> bool {
        let host_bits = u32::MAX
            .checked_shr(u32::from(self.config.prefix_len))
            .unwrap_or(0);
        ip.is_multicast()
            || ip.is_broadcast()
            || u32::from(ip) == u32::from(self.config.gateway_ipv4) | host_bits
    }

    /// Where a guest destination leads: the alias, or the address itself.
    fn destination(&self, ip: Ipv4Addr) -> Destination {
        if ip == self.config.host_alias_ipv4 {
            Destination::HostAlias
        } else {
            Destination::Ip(IpAddr::V4(ip))
        }
    }

    fn host_target(&self, dst: SocketAddrV4) -> SocketAddr {
        if *dst.ip() == self.config.host_alias_ipv4 {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dst.port())
        } else {
            dst.into()
        }
    }

    /// Applies the policy; a refusal is counted and reported.
    fn judge(&self, dst: Ipv4Addr, transport: Transport, port: u16) -> bool {
        let destination = self.destination(dst);
        let verdict = self.policy.evaluate(destination, transport, port);
        if !verdict.allowed {
            NetCounters::inc(&self.shared.counters.drops_policy_denied);
            self.events.emit(
                &self.shared.counters,
                NetEvent::Denied {
                    transport,
                    destination,
                    port,
                    rule: verdict.rule,
                },
            );
        }
        verdict.allowed
    }

    fn limit_reached(&self, dst: Ipv4Addr, transport: Transport, port: u16, limit: usize) {
        let counter = match transport {
            Transport::Udp => &self.shared.counters.udp_limit_refused,
            _ => &self.shared.counters.tcp_limit_refused,
        };
        NetCounters::inc(counter);
        self.events.emit(
            &self.shared.counters,
            NetEvent::LimitReached {
                transport,
                destination: self.destination(dst),
                port,
                limit,
            },
        );
    }

    fn refuse_syn(&mut self, syn: &Frame) {
        if let (_, GuestPacket::Tcp { src, dst, seq, .. }) = frames::classify(syn.as_slice()) {
            self.send_frame(|f, link| frames::refuse_syn(f, link, src, dst, seq));
        }
    }

    fn open_tcp(&mut self, key: FlowKey, _seq: u32, syn: Frame) {
        let dst = *key.remote.ip();
        if dst == self.config.gateway_ipv4 && key.remote.port() == 53 {
            return self.open_dns_tcp(key, syn);
        }
        let refuse =
            dst == self.config.gateway_ipv4 || !self.judge(dst, Transport::Tcp, key.remote.port());
        if refuse {
            self.refuse_syn(&syn);
            self.shared.rings.pool.put(syn);
            return;
        }
        let limit = self.config.max_tcp_connections;
        if self.tcp.len() + self.opening.len() >= limit {
            self.limit_reached(dst, Transport::Tcp, key.remote.port(), limit);
            self.refuse_syn(&syn);
            self.shared.rings.pool.put(syn);
            return;
        }
        NetCounters::inc(&self.shared.counters.tcp_open);
        NetCounters::inc(&self.shared.counters.tcp_total);
        self.opening.insert(key, syn);
        let target = self.host_target(key.remote);
        let timeout = self.config.connect_timeout;
        let link = self.link.clone();
        self.runtime.spawn(async move {
            let result =
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                    Ok(result) => result,
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                };
            link.control(StackMsg::TcpConnected { key, result });
        });
    }

    /// A TCP connection to the gateway's resolver: served in-process, no host connect.
    fn open_dns_tcp(&mut self, key: FlowKey, syn: Frame) {
        let limit = self.config.max_tcp_connections;
        let mut socket = tcp::new_socket(self.config.tcp_buffer_bytes);
        let endpoint = IpListenEndpoint {
            addr: Some((*key.remote.ip()).into()),
            port: key.remote.port(),
        };
        if self.tcp.len() + self.opening.len() >= limit || socket.listen(endpoint).is_err() {
            if self.tcp.len() + self.opening.len() >= limit {
                self.limit_reached(*key.remote.ip(), Transport::Tcp, key.remote.port(), limit);
            }
            self.refuse_syn(&syn);
            self.shared.rings.pool.put(syn);
            return;
        }
        NetCounters::inc(&self.shared.counters.tcp_open);
        NetCounters::inc(&self.shared.counters.tcp_total);
        let handle = self.sockets.add(socket);
        let server = crate::dns_tcp::DnsServer {
            forward: self.dns.clone(),
            alias: self.config.host_alias_ipv4,
        };
        let conn = TcpConn::start_dns(handle, server, &self.runtime, self.shared.clone());
        self.tcp.insert(key, conn);
        self.device.inbox.push_back(syn);
    }

    /// Echo requests: the gateway answers itself; the host alias is relayed to the host's
    /// loopback and other allowed destinations to themselves, through an unprivileged ICMP
    /// socket. Where the host refuses those sockets (`net.ipv4.ping_group_range`), the stack
    /// answers for every allowed destination itself (a reply then says "allowed", not
    /// "reachable").
    fn on_echo(&mut self, src: Ipv4Addr, dst: Ipv4Addr, message: Vec<u8>) {
        if dst == self.config.gateway_ipv4 {
            NetCounters::inc(&self.shared.counters.icmp_echo_replies);
            self.send_frame(|f, link| frames::echo_reply(f, link, src, dst, &message));
            return;
        }
        if self.stays_on_link(dst) {
            return;
        }
        if !self.judge(dst, Transport::Icmp, 0) {
            return;
        }
        let socket = if self.echo_sockets == Some(false) {
            None
        } else {
            match crate::sys::ping_socket() {
                Ok(socket) => {
                    self.echo_sockets = Some(true);
                    Some(socket)
                }
                Err(error) => {
                    if self.echo_sockets.is_none() {
                        tracing::info!(%error, "no ICMP echo sockets on this host; the stack answers echo requests itself");
                    }
                    self.echo_sockets = Some(false);
                    None
                }
            }
        };
        let target = if dst == self.config.host_alias_ipv4 {
            Ipv4Addr::LOCALHOST
        } else {
            dst
        };
        match socket {
            Some(socket) if self.echoes.len() < ECHO_IN_FLIGHT => {
                if socket.send_to(&message, (target, 0)).is_err() {
                    return;
                }
                self.echoes.push(PendingEcho {
                    socket,
                    request: message,
                    guest: src,
                    remote: dst,
                    deadline: std::time::Instant::now() + Duration::from_secs(5),
                });
                // A reply from the host's loopback is usually there already.
                self.poll_echoes();
            }
            Some(_) => {}
            None => {
                NetCounters::inc(&self.shared.counters.icmp_echo_replies);
                self.send_frame(|f, link| frames::echo_reply(f, link, src, dst, &message));
            }
        }
    }

    /// Delivers the echo replies that arrived and forgets requests past their deadline.
    fn poll_echoes(&mut self) {
        let mut buf = [0u8; 65536];
        let mut index = 0;
        while index < self.echoes.len() {
            let echo = &self.echoes[index];
            let mut reply = None;
            while let Ok(n) = echo.socket.recv(&mut buf) {
                // An echo reply (type 0) with the request's sequence number.
                if n >= 8 && buf[0] == 0 && buf[6..8] == echo.request[6..8] {
                    buf[4..6].copy_from_slice(&echo.request[4..6]);
                    reply = Some(n);
                    break;
                }
            }
            if let Some(n) = reply {
                let echo = self.echoes.swap_remove(index);
                NetCounters::inc(&self.shared.counters.icmp_echo_relayed);
                NetCounters::inc(&self.shared.counters.icmp_echo_replies);
                let message = &buf[..n];
                self.send_frame(|f, link| {
                    frames::echo_reply(f, link, echo.guest, echo.remote, message)
                });
            } else if echo.deadline < std::time::Instant::now() {
                self.echoes.swap_remove(index);
            } else {
                index += 1;
            }
        }
    }

    fn on_udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: Vec<u8>) {
        let gateway = self.config.gateway_ipv4;
        if *dst.ip() == gateway {
            if dst.port() == 53 {
                self.on_dns(src, dst, payload);
            } else if let Some(p) = self.published_udp.get_mut(&dst.port()) {
                p.last_used = std::time::Instant::now();
                let _ = self.udp_listeners[p.listener].send_to(&payload, p.peer);
            }
            return;
        }
        if self.stays_on_link(*dst.ip()) {
            return;
        }
        let key = FlowKey {
            guest: src,
            remote: dst,
        };
        if let Some(flow) = self.udp.get(&key) {
            match flow.to_host.try_send(payload) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    NetCounters::inc(&self.shared.counters.drops_udp_backlog);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(payload)) => {
                    self.udp.remove(&key);
                    NetCounters::dec(&self.shared.counters.udp_open);
                    return self.on_udp(src, dst, payload);
                }
            }
        }
        if !self.judge(*dst.ip(), Transport::Udp, dst.port()) {
            return;
        }
        let limit = self.config.max_udp_flows;
        if self.udp_flows() >= limit {
            self.limit_reached(*dst.ip(), Transport::Udp, dst.port(), limit);
            return;
        }
        let (to_host, from_guest) = mpsc::channel(udp::FLOW_QUEUE);
        let _ = to_host.try_send(payload);
        self.udp.insert(key, UdpFlow { to_host });
        NetCounters::inc(&self.shared.counters.udp_open);
        NetCounters::inc(&self.shared.counters.udp_total);
        let target = self.host_target(dst);
        self.runtime.spawn(udp::flow(
            key,
            target,
            from_guest,
            self.link.clone(),
            self.config.udp_idle_timeout,
        ));
    }

    fn on_dns(&mut self, src: SocketAddrV4, gateway: SocketAddrV4, query: Vec<u8>) {
        NetCounters::inc(&self.shared.counters.dns_queries);
        let Some(question) = dns::parse_query(&query) else {
            NetCounters::inc(&self.shared.counters.drops_dns_failed);
            return;
        };
        if question.name == dns::HOST_ALIAS_NAME {
            let answer = dns::alias_response(&query, &question, self.config.host_alias_ipv4);
            self.send_frame(|f, link| frames::udp(f, link, gateway, src, &answer));
            return;
        }
        let forward = match &self.dns {
            Some(forward) if forward.in_flight.load(Relaxed) < udp::DNS_IN_FLIGHT => {
                forward.clone()
            }
            _ => {
                NetCounters::inc(&self.shared.counters.drops_dns_failed);
                let answer = dns::error_response(&query, &question, dns::SERVFAIL);
                self.send_frame(|f, link| frames::udp(f, link, gateway, src, &answer));
                return;
            }
        };
        forward.in_flight.fetch_add(1, Relaxed);
        self.runtime.spawn(udp::forward_dns(
            forward,
            query,
            question,
            gateway,
            src,
            self.link.clone(),
        ));
    }
}
