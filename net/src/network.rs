//! The engine's entry points: `Network` (configured, ports bound) and `RunningNetwork`.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use crate::config::{GuestSetup, NetConfig};
pub use crate::counters::{DropReason, NetCounters, NetCountersSnapshot, NetEvent};
use crate::ports::Protocol;
use crate::{device, dns, stack, sys, udp};

use crate::counters::EventSink;
use crate::device::Shared;
use crate::ring::Rings;
use crate::sys::Notifier;

/// Why a network could not be created or started.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot bind published port {address}/{protocol}")]
    Bind {
        address: SocketAddr,
        protocol: Protocol,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid network configuration: {0}")]
    Config(&'static str),
    #[error("cannot start the network's {what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A sandbox's network, configured and with its published ports bound, not yet attached to a
/// frame device. Creating it before the sandbox starts makes a port conflict a start error.
pub struct Network {
    config: NetConfig,
    counters: Arc<NetCounters>,
    events: EventSink,
    event_receiver: Option<tokio::sync::mpsc::Receiver<NetEvent>>,
    tcp_listeners: Vec<(std::net::TcpListener, u16)>,
    udp_listeners: Vec<(std::net::UdpSocket, u16)>,
}

impl Network {
    /// Validates `config`, reads the DNS upstream from `/etc/resolv.conf` when none is given,
    /// and binds every published port.
    pub fn new(mut config: NetConfig) -> Result<Network, NetError> {
        if config.mtu < 576 || config.mtu > 65521 {
            return Err(NetError::Config("mtu must be within 576..=65521"));
        }
        if config.prefix_len == 0 || config.prefix_len > 30 {
            return Err(NetError::Config("prefix_len must be within 1..=30"));
        }
        if config.dns_upstream.is_none() {
            config.dns_upstream = std::fs::read_to_string("/etc/resolv.conf")
                .ok()
                .and_then(|text| dns::upstream_from_resolv_conf(&text));
        }
        let mut tcp_listeners = Vec::new();
        let mut udp_listeners = Vec::new();
        for spec in &config.published {
            for (host_port, guest_port) in spec.pairs() {
                let address = SocketAddr::new(spec.bind, host_port);
                let bind_error = |source| NetError::Bind {
                    address,
                    protocol: spec.protocol,
                    source,
                };
                match spec.protocol {
                    Protocol::Tcp => {
                        let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
                        listener.set_nonblocking(true).map_err(bind_error)?;
                        tcp_listeners.push((listener, guest_port));
                    }
                    Protocol::Udp => {
                        let socket = std::net::UdpSocket::bind(address).map_err(bind_error)?;
                        socket.set_nonblocking(true).map_err(bind_error)?;
                        udp_listeners.push((socket, guest_port));
                    }
                }
            }
        }
        let (events, event_receiver) = EventSink::new(config.event_capacity);
        Ok(Network {
            config,
            counters: Arc::new(NetCounters::default()),
            events,
            event_receiver: Some(event_receiver),
            tcp_listeners,
            udp_listeners,
        })
    }

    /// The configuration in force (with the DNS upstream resolved).
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The counters, shared with the running network.
    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }

    /// The receiver of notable events; `None` after the first call.
    pub fn take_events(&mut self) -> Option<tokio::sync::mpsc::Receiver<NetEvent>> {
        self.event_receiver.take()
    }

    /// The addresses the published ports listen on, with their protocol.
    pub fn published_addresses(&self) -> Vec<(SocketAddr, Protocol)> {
        let tcp = self
            .tcp_listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .map(|a| (a, Protocol::Tcp));
        let udp = self
            .udp_listeners
            .iter()
            .filter_map(|(s, _)| s.local_addr().ok())
            .map(|a| (a, Protocol::Udp));
        tcp.chain(udp).collect()
    }

    /// Starts the network on `device`: a TAP file descriptor (`IFF_TAP | IFF_NO_PI`, see
    /// [`tap`]) or one end of a `SOCK_DGRAM`/`SOCK_SEQPACKET` socketpair carrying one Ethernet
    /// frame per message. Spawns the stack thread (which also serves the descriptor) and a
    /// one-worker tokio runtime for the host sockets.
    pub fn start(self, device: OwnedFd) -> Result<RunningNetwork, NetError> {
        let start_error = |what| move |source| NetError::Start { what, source };
        sys::set_nonblocking(device.as_raw_fd()).map_err(start_error("device"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("msb-net-io")
            .enable_all()
            .build()
            .map_err(start_error("runtime"))?;
        let shared = Arc::new(Shared {
            rings: Rings::new(
                self.config.tx_ring_frames,
                self.config.rx_ring_frames,
                self.config.frame_bytes(),
            ),
            counters: self.counters.clone(),
            stack: Notifier::new().map_err(start_error("wake-up"))?,
            stop: AtomicBool::new(false),
        });
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        let (to_guest_tx, to_guest_rx) =
            std::sync::mpsc::sync_channel(self.config.rx_ring_frames.max(64));
        let link = udp::StackLink {
            shared: shared.clone(),
            to_guest: to_guest_tx,
            control: control_tx,
        };
        let mut udp_senders = Vec::new();
        {
            let _guard = runtime.enter();
            for (listener, guest_port) in self.tcp_listeners {
                runtime.spawn(udp::published_tcp_listener(
                    listener,
                    guest_port,
                    self.config.max_tcp_connections,
                    link.clone(),
                    self.events.clone(),
                ));
            }
            for (index, (socket, guest_port)) in self.udp_listeners.into_iter().enumerate() {
                udp_senders.push(socket.try_clone().map_err(start_error("published port"))?);
                runtime.spawn(udp::published_listener(
                    socket,
                    index,
                    guest_port,
                    link.clone(),
                ));
            }
        }
        let config = Arc::new(self.config);
        let stack = stack::Stack::new(
            shared.clone(),
            config,
            runtime.handle().clone(),
            link,
            control_rx,
            to_guest_rx,
            self.events,
            udp_senders,
            device::FdDevice::new(device),
        );
        let poll = std::thread::Builder::new()
            .name("msb-net-stack".into())
            .spawn(move || stack.run())
            .map_err(start_error("stack thread"))?;
        Ok(RunningNetwork {
            shared,
            thread: Some(poll),
            runtime: Some(runtime),
        })
    }
}

/// A started network. Dropping it stops it (as [`RunningNetwork::stop`]).
pub struct RunningNetwork {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningNetwork {
    /// The live counters.
    pub fn counters(&self) -> &Arc<NetCounters> {
        &self.shared.counters
    }

    /// Stops the stack thread and every host socket task, and closes the frame device.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.stack.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for RunningNetwork {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_move_between_threads() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<Network>();
        send::<RunningNetwork>();
        sync::<NetCounters>();
        send::<NetEvent>();
    }

    #[test]
    fn bad_configurations_are_refused() {
        let err = |config| Network::new(config).err().map(|e| e.to_string());
        assert_eq!(
            err(NetConfig {
                mtu: 100,
                ..NetConfig::default()
            }),
            Some("invalid network configuration: mtu must be within 576..=65521".into())
        );
        assert!(err(NetConfig {
            prefix_len: 31,
            ..NetConfig::default()
        })
        .is_some());
        let network = Network::new(NetConfig {
            dns_upstream: Some("127.0.0.1:53".parse().unwrap()),
            ..NetConfig::default()
        })
        .unwrap();
        assert!(network.published_addresses().is_empty());
        let setup = network.config().guest_setup();
        assert_eq!(setup.resolv_conf, "nameserver 172.30.0.1\n");
        assert_eq!(setup.hosts_line, "172.30.0.254 host.msb.internal\n");
    }
}
