//! msb-net: a sandbox's userspace network.
//!
//! The guest's Ethernet frames (from a TAP device in the sandbox's network namespace, or later a
//! microVM NIC's socketpair) pass through two bounded rings to a poll thread running smoltcp,
//! which terminates guest TCP and relays it to host sockets owned by tokio tasks; UDP, DNS and
//! ICMP echo are handled on the frames directly. See `README.md` for the design.

pub mod policy;
pub mod ports;

pub use policy::{EgressPolicy, PolicyError, Rule};
pub use ports::{is_non_loopback, PortSpec, PortSpecError, Protocol};
