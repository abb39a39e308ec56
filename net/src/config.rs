//! The knobs of one sandbox's network and their defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::dns::HOST_ALIAS_NAME;
use crate::policy::EgressPolicy;
use crate::ports::PortSpec;

/// One sandbox's network. Every sandbox has its own namespace and stack, so all of them can use
/// the same addresses; the defaults are meant to be used as they are.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The guest's address (default 172.30.0.2).
    pub guest_ipv4: Ipv4Addr,
    /// The gateway: the stack's own address, the guest's default route and DNS server
    /// (default 172.30.0.1).
    pub gateway_ipv4: Ipv4Addr,
    /// Prefix length of the guest's subnet (default 24).
    pub prefix_len: u8,
    /// The host alias address (`host.msb.internal`, default 172.30.0.254): connections to it
    /// reach the host's loopback on the same port, when the policy allows (`allow@host...`).
    pub host_alias_ipv4: Ipv4Addr,
    /// The link's MTU, to be set on the guest's interface too (default 65520, as slirp4netns:
    /// large segments make the userspace stack cheap per byte).
    pub mtu: usize,
    /// Frames in the transmit ring, guest -> stack (default 1024).
    pub tx_ring_frames: usize,
    /// Frames in the receive ring, stack -> guest (default 1024).
    pub rx_ring_frames: usize,
    /// Each TCP connection's receive and send buffer in the stack (default 1 MiB each).
    pub tcp_buffer_bytes: usize,
    /// Open TCP connections allowed, outbound and published together (default 256).
    pub max_tcp_connections: usize,
    /// Open UDP flows allowed, outbound and published together (default 256).
    pub max_udp_flows: usize,
    /// A UDP flow with no traffic for this long is closed (default 60 s).
    pub udp_idle_timeout: Duration,
    /// How long a host-side TCP connect may take before the guest gets a reset (default 10 s).
    pub connect_timeout: Duration,
    /// How long the DNS forwarder waits for upstream (default 5 s).
    pub dns_timeout: Duration,
    pub policy: EgressPolicy,
    /// Published ports; their listeners are bound by [`crate::Network::new`].
    pub published: Vec<PortSpec>,
    /// Where the gateway's DNS forwards; `None` reads the first `nameserver` of
    /// `/etc/resolv.conf` when the network is created.
    pub dns_upstream: Option<SocketAddr>,
    /// Capacity of the event channel (default 256); events beyond it are counted and lost.
    pub event_capacity: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            guest_ipv4: Ipv4Addr::new(172, 30, 0, 2),
            gateway_ipv4: Ipv4Addr::new(172, 30, 0, 1),
            prefix_len: 24,
            host_alias_ipv4: Ipv4Addr::new(172, 30, 0, 254),
            mtu: 65520,
            tx_ring_frames: 1024,
            rx_ring_frames: 1024,
            tcp_buffer_bytes: 1 << 20,
            max_tcp_connections: 256,
            max_udp_flows: 256,
            udp_idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            dns_timeout: Duration::from_secs(5),
            policy: EgressPolicy::default(),
            published: Vec::new(),
            dns_upstream: None,
            event_capacity: 256,
        }
    }
}

/// What must be configured inside the guest for the network to work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSetup {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: usize,
    /// The content of the guest's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// A line for the guest's `/etc/hosts` naming the host alias.
    pub hosts_line: String,
}

impl NetConfig {
    /// The guest-side settings matching this configuration.
    pub fn guest_setup(&self) -> GuestSetup {
        GuestSetup {
            address: self.guest_ipv4,
            prefix_len: self.prefix_len,
            gateway: self.gateway_ipv4,
            mtu: self.mtu,
            resolv_conf: format!("nameserver {}\n", self.gateway_ipv4),
            hosts_line: format!("{} {}\n", self.host_alias_ipv4, HOST_ALIAS_NAME),
        }
    }

    /// The largest Ethernet frame on the link (MTU plus the 14-byte header).
    pub(crate) fn frame_bytes(&self) -> usize {
        self.mtu + 14
    }
}
