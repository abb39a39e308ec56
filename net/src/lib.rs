//! msb-net: a sandbox's userspace network.
//!
//! The guest's Ethernet frames (from a TAP device in the sandbox's network namespace, or later a
//! microVM NIC's socketpair) pass through two bounded rings to a stack thread running smoltcp,
//! which terminates guest TCP and relays it to host sockets owned by tokio tasks; UDP, DNS and
//! ICMP echo are handled on the frames directly. See `README.md` for the design.
//!
//! ```no_run
//! /// Runs a network for the sandbox whose TAP device is `tap_fd`.
//! fn serve(tap_fd: std::os::fd::OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = msb_net::NetConfig::default();
//!     config.published.push("8080:80".parse()?);
//!     config.policy = msb_net::EgressPolicy::from_rules(&["allow@host:tcp:5432"])?;
//!     let mut network = msb_net::Network::new(config)?; // binds the published ports now
//!     let events = network.take_events();
//!     let running = network.start(tap_fd)?; // the TAP inside the sandbox's namespace
//!     println!("{:?}", running.counters().snapshot());
//!     running.stop();
//!     Ok(())
//! }
//! ```

#[cfg(feature = "engine")]
mod config;
#[cfg(feature = "engine")]
mod counters;
#[cfg(feature = "engine")]
mod device;
#[cfg(feature = "engine")]
pub mod dns;
#[cfg(feature = "engine")]
mod dns_tcp;
#[cfg(feature = "engine")]
mod frames;
pub mod policy;
pub mod ports;
#[cfg(feature = "engine")]
mod ring;
#[cfg(feature = "engine")]
mod stack;
#[cfg(feature = "engine")]
mod sys;
#[cfg(feature = "engine")]
pub mod tap;
#[cfg(feature = "engine")]
mod tcp;
#[cfg(feature = "engine")]
mod udp;

#[cfg(feature = "engine")]
mod network;

#[cfg(feature = "engine")]
pub use network::*;
pub use policy::{Destination, EgressPolicy, PolicyError, Rule, Transport};
pub use ports::{is_non_loopback, PortSpec, PortSpecError, Protocol};
