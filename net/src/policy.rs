//! Egress policy: which destinations a guest may reach.
//!
//! Rules `allow|deny@TARGET[:tcp|udp[:PORTS]]` are evaluated in order; the first rule that matches
//! decides. When none matches, the defaults apply: public addresses are allowed; private
//! (RFC 1918, 100.64.0.0/10, fc00::/7), loopback, link-local, cloud metadata (169.254.169.254,
//! fd00:ec2::254), multicast, unspecified and reserved ranges are denied.
//!
//! TARGET is a CIDR (`10.0.0.0/8`, `fd00::/8`, `[fd00::/8]`), a bare address (a /32 or /128),
//! `any` (every IP address) or `host`: the host alias (`host.msb.internal`, reached through the
//! gateway and relayed to the host's loopback). The alias is matched *only* by `host` rules, never
//! by a CIDR or `any`, and is denied by default, so `allow@host:tcp:8080` is the one way to open it.
//! Loopback and "this host" addresses (127.0.0.0/8, ::1, 0.0.0.0/8, ::) are denied whatever the
//! rules say: the host's loopback is reached only through the alias.
//! A rule with a protocol never matches ICMP; a rule without one matches every protocol.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::ports::Protocol;

/// A network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// A prefix; `None` when `prefix_len` is longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix_len <= max).then_some(Cidr { addr, prefix_len })
    }

    /// Whether `ip` lies inside this prefix (an IPv4-mapped IPv6 address matches IPv4 prefixes).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || PolicyError::Target(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix_len = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
        };
        Cidr::new(addr, prefix_len).ok_or_else(bad)
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where a guest is trying to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Ip(IpAddr),
    /// The host alias (`host.msb.internal`), relayed to the host's loopback.
    HostAlias,
}

/// The transport of a flow being judged (ICMP has no ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Icmp,
}

/// What a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cidr(Cidr),
    Any,
    HostAlias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// One `allow|deny@TARGET[:tcp|udp[:PORTS]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub target: Target,
    pub protocol: Option<Protocol>,
    /// Inclusive port ranges; empty means every port.
    pub ports: Vec<(u16, u16)>,
}

/// The default ranges a destination can fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Private,
    Loopback,
    LinkLocal,
    Metadata,
    /// Multicast, broadcast, unspecified, reserved and documentation-only space.
    Special,
    HostAlias,
}

/// The outcome of [`EgressPolicy::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The index of the deciding rule, or `None` when the defaults decided.
    pub rule: Option<usize>,
    pub class: AddressClass,
}

/// Why a rule was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("expected allow|deny@TARGET[:tcp|udp[:PORTS]], got {0:?}")]
    Shape(String),
    #[error("unknown action {0:?} (expected allow or deny)")]
    Action(String),
    #[error("invalid target {0:?} (expected a CIDR, an address, `any` or `host`)")]
    Target(String),
    #[error("unknown protocol {0:?} (expected tcp or udp)")]
    Protocol(String),
    #[error("invalid ports {0:?} (expected N, N-M or a comma list of them, 1-65535)")]
    Ports(String),
}

/// The ordered rule list plus the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub rules: Vec<Rule>,
}

/// 0.0.0.0/8 and `::`: connecting there reaches the local host.
fn is_this_host(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// Classifies `ip` against the default ranges.
pub fn classify(ip: IpAddr) -> AddressClass {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if a == 0
        || a >= 224
        || ip.is_documentation()
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
    {
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first == 0x2001 && ip.segments()[1] == 0xdb8
    {
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

impl Rule {
    fn matches(&self, dst: Destination, transport: Transport, port: u16) -> bool {
        let target = match (self.target, dst) {
            (Target::HostAlias, Destination::HostAlias) => true,
            (Target::Any, Destination::Ip(_)) => true,
            (Target::Cidr(cidr), Destination::Ip(ip)) => cidr.contains(ip),
            _ => false,
        };
        let protocol = matches!(
            (self.protocol, transport),
            (None, _)
                | (Some(Protocol::Tcp), Transport::Tcp)
                | (Some(Protocol::Udp), Transport::Udp)
        );
        let port =
            self.ports.is_empty() || self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port));
        target && protocol && port
    }
}

impl EgressPolicy {
    /// Parses every rule, stopping at the first bad one.
    pub fn from_rules<S: AsRef<str>>(rules: &[S]) -> Result<Self, PolicyError> {
        let rules = rules
            .iter()
            .map(|r| r.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { rules })
    }

    /// Judges a flow to `dst` (`port` is ignored for ICMP): first matching rule, then the defaults.
    pub fn evaluate(&self, dst: Destination, transport: Transport, port: u16) -> Verdict {
        let class = match dst {
            Destination::Ip(ip) => classify(ip),
            Destination::HostAlias => AddressClass::HostAlias,
        };
        if let Destination::Ip(ip) = dst {
            // The host's loopback is reachable only through the host alias, whatever the rules:
            // a crafted frame to 127.0.0.1 or 0.0.0.0 must not reach it via `allow@any`.
            if class == AddressClass::Loopback || is_this_host(ip) {
                return Verdict {
                    allowed: false,
                    rule: None,
                    class,
                };
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.matches(dst, transport, port) {
                return Verdict {
                    allowed: rule.action == Action::Allow,
                    rule: Some(index),
                    class,
                };
            }
        }
        Verdict {
            allowed: class == AddressClass::Public,
            rule: None,
            class,
        }
    }

    /// DNS rebinding protection: whether a DNS answer may carry `ip`. Public addresses pass;
    /// an address in a default-denied range passes only when some `allow` rule names a prefix
    /// containing it (whatever its protocol and ports).
    pub fn dns_answer_allowed(&self, ip: IpAddr) -> bool {
        classify(ip) == AddressClass::Public
            || self.rules.iter().any(|r| {
                r.action == Action::Allow && matches!(r.target, Target::Cidr(c) if c.contains(ip))
            })
    }
}

fn parse_ports(text: &str) -> Result<Vec<(u16, u16)>, PolicyError> {
    let bad = || PolicyError::Ports(text.to_owned());
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n != 0 && !p.starts_with('+') => Ok(n),
        _ => Err(bad()),
    };
    text.split(',')
        .map(|item| {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (port(lo)?, port(hi)?),
                None => (port(item)?, port(item)?),
            };
            if hi < lo {
                return Err(bad());
            }
            Ok((lo, hi))
        })
        .collect()
}

impl FromStr for Rule {
    type Err = PolicyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let (action, rest) = text
            .split_once('@')
            .ok_or_else(|| PolicyError::Shape(input.to_owned()))?;
        let action = match action.to_ascii_lowercase().as_str() {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            _ => return Err(PolicyError::Action(action.to_owned())),
        };
        // Neither "tcp" nor "udp" is hexadecimal, so the first ":tcp"/":udp" ends an IPv6 target.
        let lower = rest.to_ascii_lowercase();
        let split = [":tcp", ":udp"]
            .iter()
            .filter_map(|p| lower.find(p))
            .min()
            .or_else(|| {
                // A protocol we do not know, after a target that is not IPv6 (`10.0.0.0/8:icmp`).
                let colon = rest.rfind(':')?;
                let head = &rest[..colon];
                (!head.contains(':') || head.ends_with(']')).then_some(colon)
            });
        let (target, tail) = match split {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let target = target.trim_start_matches('[').trim_end_matches(']');
        let target = match target.to_ascii_lowercase().as_str() {
            "" => return Err(PolicyError::Target(String::new())),
            "any" | "*" => Target::Any,
            "host" | "host.msb.internal" => Target::HostAlias,
            _ => Target::Cidr(target.parse()?),
        };
        let (protocol, ports) = match tail {
            None => (None, Vec::new()),
            Some(tail) => {
                let (proto, ports) = match tail.split_once(':') {
                    Some((proto, ports)) => (proto, Some(ports)),
                    None => (tail, None),
                };
                let protocol = match proto.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return Err(PolicyError::Protocol(proto.to_owned())),
                };
                (
                    Some(protocol),
                    ports.map(parse_ports).transpose()?.unwrap_or_default(),
                )
            }
        };
        Ok(Rule {
            action,
            target,
            protocol,
            ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Destination {
        Destination::Ip(text.parse().unwrap())
    }

    fn policy(rules: &[&str]) -> EgressPolicy {
        EgressPolicy::from_rules(rules).unwrap()
    }

    #[test]
    fn defaults_allow_public_and_deny_the_rest() {
        let p = EgressPolicy::default();
        let cases = [
            ("1.1.1.1", true, AddressClass::Public),
            ("2606:4700::1111", true, AddressClass::Public),
            ("10.1.2.3", false, AddressClass::Private),
            ("172.31.255.255", false, AddressClass::Private),
            ("172.32.0.1", true, AddressClass::Public),
            ("192.168.0.1", false, AddressClass::Private),
            ("100.64.0.1", false, AddressClass::Private),
            ("100.128.0.1", true, AddressClass::Public),
            ("127.0.0.1", false, AddressClass::Loopback),
            ("169.254.1.1", false, AddressClass::LinkLocal),
            ("169.254.169.254", false, AddressClass::Metadata),
            ("fd00:ec2::254", false, AddressClass::Metadata),
            ("fd12::1", false, AddressClass::Private),
            ("fe80::1", false, AddressClass::LinkLocal),
            ("::1", false, AddressClass::Loopback),
            ("::ffff:10.0.0.1", false, AddressClass::Private),
            ("0.0.0.0", false, AddressClass::Special),
            ("224.0.0.1", false, AddressClass::Special),
            ("255.255.255.255", false, AddressClass::Special),
        ];
        for (addr, allowed, class) in cases {
            let v = p.evaluate(ip(addr), Transport::Tcp, 443);
            assert_eq!(
                (v.allowed, v.class, v.rule),
                (allowed, class, None),
                "{addr}"
            );
        }
        assert!(
            !p.evaluate(Destination::HostAlias, Transport::Tcp, 80)
                .allowed
        );
    }

    #[test]
    fn first_matching_rule_wins_then_defaults() {
        let p = policy(&[
            "deny@10.1.0.0/16",
            "allow@10.0.0.0/8:tcp:80,443,8000-8999",
            "deny@any:udp",
            "allow@host:tcp:8080",
        ]);
        let check = |dst, t, port| {
            let v = p.evaluate(dst, t, port);
            (v.allowed, v.rule)
        };
        assert_eq!(check(ip("10.1.2.3"), Transport::Tcp, 80), (false, Some(0)));
        assert_eq!(check(ip("10.2.2.3"), Transport::Tcp, 443), (true, Some(1)));
        assert_eq!(check(ip("10.2.2.3"), Transport::Tcp, 8500), (true, Some(1)));
        assert_eq!(check(ip("10.2.2.3"), Transport::Tcp, 22), (false, None));
        assert_eq!(check(ip("10.2.2.3"), Transport::Icmp, 0), (false, None));
        assert_eq!(check(ip("1.1.1.1"), Transport::Udp, 53), (false, Some(2)));
        assert_eq!(check(ip("1.1.1.1"), Transport::Tcp, 53), (true, None));
        assert_eq!(
            check(Destination::HostAlias, Transport::Tcp, 8080),
            (true, Some(3))
        );
        assert_eq!(
            check(Destination::HostAlias, Transport::Tcp, 8081),
            (false, None)
        );
        // `any` never opens the host alias, nor the loopback and "this host" addresses.
        let p = policy(&["allow@any", "allow@127.0.0.0/8", "allow@0.0.0.0/0"]);
        assert!(
            !p.evaluate(Destination::HostAlias, Transport::Tcp, 1)
                .allowed
        );
        for addr in [
            "127.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(!p.evaluate(ip(addr), Transport::Tcp, 80).allowed, "{addr}");
        }
        assert!(p.evaluate(ip("10.0.0.1"), Transport::Icmp, 0).allowed);
    }

    #[test]
    fn rule_syntax() {
        let r: Rule = "allow@fd00::/8:tcp:443".parse().unwrap();
        assert_eq!(r.target, Target::Cidr("fd00::/8".parse().unwrap()));
        assert_eq!(
            (r.protocol, r.ports.as_slice()),
            (Some(Protocol::Tcp), &[(443, 443)][..])
        );
        let r: Rule = "DENY@[fd00::1]:udp".parse().unwrap();
        assert_eq!((r.action, r.protocol), (Action::Deny, Some(Protocol::Udp)));
        assert_eq!(r.target, Target::Cidr("fd00::1/128".parse().unwrap()));
        let r: Rule = "allow@192.168.1.7".parse().unwrap();
        assert_eq!((r.protocol, r.ports.len()), (None, 0));
        let r: Rule = "allow@host.msb.internal".parse().unwrap();
        assert_eq!(r.target, Target::HostAlias);
        let r: Rule = "deny@::/0".parse().unwrap();
        assert!(matches!(r.target, Target::Cidr(_)));
    }

    #[test]
    fn rule_errors() {
        let cases: &[(&str, PolicyError)] = &[
            ("allow", PolicyError::Shape("allow".into())),
            ("permit@1.2.3.4", PolicyError::Action("permit".into())),
            ("allow@", PolicyError::Target(String::new())),
            (
                "allow@10.0.0.0/33",
                PolicyError::Target("10.0.0.0/33".into()),
            ),
            (
                "allow@example.com",
                PolicyError::Target("example.com".into()),
            ),
            (
                "allow@10.0.0.0/8:icmp",
                PolicyError::Protocol("icmp".into()),
            ),
            ("allow@10.0.0.0/8:tcp:0", PolicyError::Ports("0".into())),
            ("allow@10.0.0.0/8:tcp:9-1", PolicyError::Ports("9-1".into())),
            (
                "allow@10.0.0.0/8:tcp:1,,2",
                PolicyError::Ports("1,,2".into()),
            ),
            ("allow@fd00::/8:udp:x", PolicyError::Ports("x".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Rule>().as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn dns_rebinding_filter() {
        let p = policy(&["allow@10.5.0.0/16:tcp:443", "deny@1.2.3.4"]);
        assert!(p.dns_answer_allowed("8.8.8.8".parse().unwrap()));
        assert!(p.dns_answer_allowed("10.5.1.1".parse().unwrap()));
        assert!(!p.dns_answer_allowed("10.6.1.1".parse().unwrap()));
        assert!(!p.dns_answer_allowed("127.0.0.1".parse().unwrap()));
        assert!(!p.dns_answer_allowed("169.254.169.254".parse().unwrap()));
    }
}
