//! Published ports: the `[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]` syntax, its
//! parser and the loopback check the CLI uses to warn about exposure beyond this host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The transport a published port or a policy rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p` argument: a host port range forwarded to an equally long guest port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address the listeners bind to; `127.0.0.1` unless the spec names one.
    pub bind: IpAddr,
    /// First host port.
    pub host_start: u16,
    /// First guest port; host port `host_start + i` goes to guest port `guest_start + i`.
    pub guest_start: u16,
    /// Number of ports in the range (at least 1).
    pub count: u16,
    pub protocol: Protocol,
}

/// The default bind address of a published port.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Why a port specification was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error("empty port specification")]
    Empty,
    #[error("unknown protocol {0:?} (expected tcp or udp)")]
    Protocol(String),
    #[error("expected [BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp], got {0:?}")]
    Shape(String),
    #[error("invalid bind address {0:?}")]
    BindAddress(String),
    #[error("invalid {side} port {value:?} (expected 1-65535)")]
    Port { side: &'static str, value: String },
    #[error("{side} port range {start}-{end} runs backwards")]
    Backwards {
        side: &'static str,
        start: u16,
        end: u16,
    },
    #[error("host range has {host} ports but guest range has {guest}")]
    LengthMismatch { host: u16, guest: u16 },
}

impl PortSpec {
    /// The `(host_port, guest_port)` pairs this spec publishes.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(move |i| (self.host_start + i, self.guest_start + i))
    }

    /// Whether the listeners are reachable from beyond this host (see [`is_non_loopback`]).
    pub fn is_exposed(&self) -> bool {
        is_non_loopback(self.bind)
    }
}

/// True when `addr` is not a loopback address: a specific interface address or the
/// unspecified address (all interfaces). The CLI warns before publishing on such an address.
pub fn is_non_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => !v4.is_loopback(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => !v4.is_loopback(),
            None => !v6.is_loopback(),
        },
    }
}

fn parse_port(side: &'static str, value: &str) -> Result<u16, PortSpecError> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 && !value.starts_with('+') => Ok(port),
        _ => Err(PortSpecError::Port {
            side,
            value: value.to_owned(),
        }),
    }
}

/// Parses `N` or `N-M` into (first, count).
fn parse_range(side: &'static str, value: &str) -> Result<(u16, u16), PortSpecError> {
    match value.split_once('-') {
        None => Ok((parse_port(side, value)?, 1)),
        Some((start, end)) => {
            let (start, end) = (parse_port(side, start)?, parse_port(side, end)?);
            if end < start {
                return Err(PortSpecError::Backwards { side, start, end });
            }
            Ok((start, end - start + 1))
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(PortSpecError::Empty);
        }
        let (text, protocol) = match text.rsplit_once('/') {
            None => (text, Protocol::Tcp),
            Some((rest, proto)) => match proto.to_ascii_lowercase().as_str() {
                "tcp" => (rest, Protocol::Tcp),
                "udp" => (rest, Protocol::Udp),
                _ => return Err(PortSpecError::Protocol(proto.to_owned())),
            },
        };
        let (bind, ports) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, ports) = rest
                .split_once("]:")
                .ok_or_else(|| PortSpecError::Shape(input.to_owned()))?;
            let bind = addr
                .parse::<IpAddr>()
                .map_err(|_| PortSpecError::BindAddress(addr.to_owned()))?;
            (bind, ports)
        } else {
            let mut parts = text.rsplitn(3, ':');
            let guest = parts.next().unwrap_or_default();
            let host = parts.next();
            match (host, parts.next()) {
                (None, _) => return Err(PortSpecError::Shape(input.to_owned())),
                (Some(_), None) => (DEFAULT_BIND, text),
                (Some(host), Some(addr)) => {
                    let bind = addr
                        .parse::<IpAddr>()
                        .map_err(|_| PortSpecError::BindAddress(addr.to_owned()))?;
                    (bind, &text[text.len() - guest.len() - host.len() - 1..])
                }
            }
        };
        let (host, guest) = ports
            .split_once(':')
            .ok_or_else(|| PortSpecError::Shape(input.to_owned()))?;
        if guest.contains(':') {
            return Err(PortSpecError::Shape(input.to_owned()));
        }
        let (host_start, host_count) = parse_range("host", host)?;
        let (guest_start, guest_count) = parse_range("guest", guest)?;
        if host_count != guest_count {
            return Err(PortSpecError::LengthMismatch {
                host: host_count,
                guest: guest_count,
            });
        }
        Ok(PortSpec {
            bind,
            host_start,
            guest_start,
            count: host_count,
            protocol,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bind {
            IpAddr::V4(v4) => write!(f, "{v4}:")?,
            IpAddr::V6(v6) => write!(f, "[{v6}]:")?,
        }
        let last = self.count - 1;
        if last == 0 {
            write!(f, "{}:{}", self.host_start, self.guest_start)?;
        } else {
            write!(
                f,
                "{}-{}:{}-{}",
                self.host_start,
                self.host_start + last,
                self.guest_start,
                self.guest_start + last
            )?;
        }
        write!(f, "/{}", self.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> PortSpec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn accepts_the_documented_forms() {
        let s = spec("8080:80");
        assert_eq!(
            s,
            PortSpec {
                bind: DEFAULT_BIND,
                host_start: 8080,
                guest_start: 80,
                count: 1,
                protocol: Protocol::Tcp
            }
        );
        assert!(!s.is_exposed());
        let s = spec("0.0.0.0:5353:53/udp");
        assert_eq!(s.bind, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(s.protocol, Protocol::Udp);
        assert!(s.is_exposed());
        let s = spec("9000-9002:7000-7002/TCP");
        assert_eq!(
            s.pairs().collect::<Vec<_>>(),
            vec![(9000, 7000), (9001, 7001), (9002, 7002)]
        );
        assert_eq!(spec("[::1]:8080:80").bind, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(spec("::1:8080:80").bind, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(spec("192.168.1.5:1-2:3-4").count, 2);
        assert_eq!(spec(" 1:1 ").host_start, 1);
    }

    #[test]
    fn display_round_trips() {
        for text in ["127.0.0.1:8080:80/tcp", "[::]:1-3:4-6/udp"] {
            assert_eq!(spec(text).to_string(), text);
            assert_eq!(spec(&spec(text).to_string()), spec(text));
        }
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        use PortSpecError::*;
        let cases: &[(&str, PortSpecError)] = &[
            ("", Empty),
            ("80", Shape("80".into())),
            ("80:80/sctp", Protocol("sctp".into())),
            (
                "0:80",
                Port {
                    side: "host",
                    value: "0".into(),
                },
            ),
            (
                "80:70000",
                Port {
                    side: "guest",
                    value: "70000".into(),
                },
            ),
            (
                "80:x",
                Port {
                    side: "guest",
                    value: "x".into(),
                },
            ),
            (
                "90-80:1-11",
                Backwards {
                    side: "host",
                    start: 90,
                    end: 80,
                },
            ),
            ("1-3:1-2", LengthMismatch { host: 3, guest: 2 }),
            ("localhost:80:80", BindAddress("localhost".into())),
            ("[::1:80:80", Shape("[::1:80:80".into())),
            (
                "80:+80",
                Port {
                    side: "guest",
                    value: "+80".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<PortSpec>().as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn loopback_check() {
        for (addr, exposed) in [
            ("127.0.0.1", false),
            ("127.8.9.10", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
            ("0.0.0.0", true),
            ("::", true),
            ("10.1.2.3", true),
        ] {
            assert_eq!(is_non_loopback(addr.parse().unwrap()), exposed, "{addr}");
        }
    }
}
