//! The gateway's DNS: forwarding to a resolver on the host (a tiny one on loopback here), the
//! host alias, rebinding protection and upstream failure.

mod common;

use std::net::UdpSocket;

use common::{can_run, Sandbox};
use msb_net::{EgressPolicy, NetConfig, NetEvent};

/// A resolver answering `public.test` with a public address and `rebind.test` with a private
/// one; it never answers `silent.test`.
fn resolver() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            let mut at = 12;
            let mut name = Vec::new();
            while at < n && query[at] != 0 {
                let len = query[at] as usize;
                name.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).to_string());
                at += 1 + len;
            }
            let end = at + 5;
            let ip = match name.join(".").as_str() {
                "public.test" => [93, 184, 216, 34],
                "rebind.test" => [10, 0, 0, 5],
                _ => continue,
            };
            let mut answer = query[..2].to_vec();
            answer.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            answer.extend_from_slice(&query[12..end]);
            answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            answer.extend_from_slice(&ip);
            let _ = socket.send_to(&answer, peer);
        }
    });
    port
}

#[test]
fn dns_is_forwarded_filtered_and_answers_the_host_alias() {
    if !can_run("dns_is_forwarded_filtered_and_answers_the_host_alias") {
        return;
    }
    let port = resolver();
    let mut sb = Sandbox::start(NetConfig {
        dns_upstream: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        dns_timeout: std::time::Duration::from_millis(500),
        policy: EgressPolicy::default(),
        ..NetConfig::default()
    });
    let dig = |name: &str| sb.ok(&format!("dig +time=3 +tries=1 @172.30.0.1 {name}"));
    let public = dig("public.test");
    assert!(
        public.contains("status: NOERROR") && public.contains("93.184.216.34"),
        "{public}"
    );
    let rebind = dig("rebind.test");
    assert!(
        rebind.contains("status: REFUSED") && !rebind.contains("10.0.0.5"),
        "{rebind}"
    );
    let silent = dig("silent.test");
    assert!(silent.contains("status: SERVFAIL"), "{silent}");
    let alias = sb.ok("dig +short +time=3 +tries=1 @172.30.0.1 HOST.msb.internal");
    assert_eq!(alias.trim(), "172.30.0.254");
    // The same over TCP (RFC 7766): answered by the gateway itself, with the same checks.
    let tcp = |name: &str| sb.ok(&format!("dig +tcp +time=3 +tries=1 @172.30.0.1 {name}"));
    let public = tcp("public.test");
    assert!(
        public.contains("status: NOERROR") && public.contains("93.184.216.34"),
        "{public}"
    );
    let rebind = tcp("rebind.test");
    assert!(rebind.contains("status: REFUSED"), "{rebind}");
    let alias = sb.ok("dig +tcp +short +time=3 +tries=1 @172.30.0.1 host.msb.internal");
    assert_eq!(alias.trim(), "172.30.0.254");
    // Two queries on one connection (+keepopen), both answered.
    let two =
        sb.ok("dig +tcp +keepopen +time=3 +tries=1 @172.30.0.1 public.test host.msb.internal");
    assert!(
        two.contains("93.184.216.34") && two.contains("172.30.0.254"),
        "{two}"
    );
    let c = sb.wait_counters("nine queries", |c| c.dns_queries == 9);
    assert_eq!((c.drops_dns_rebind, c.drops_dns_failed), (2, 1));
    let events = sb.drain_events();
    assert!(
        events.contains(&NetEvent::DnsRebindBlocked {
            name: "rebind.test".into(),
            address: "10.0.0.5".parse().unwrap()
        }),
        "{events:?}"
    );
}

#[test]
fn an_allow_rule_lets_a_private_answer_through() {
    if !can_run("an_allow_rule_lets_a_private_answer_through") {
        return;
    }
    let port = resolver();
    let sb = Sandbox::start(NetConfig {
        dns_upstream: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        policy: EgressPolicy::from_rules(&["allow@10.0.0.0/24:tcp:443"]).unwrap(),
        ..NetConfig::default()
    });
    let out = sb.ok("dig +short +time=3 +tries=1 @172.30.0.1 rebind.test");
    assert_eq!(out.trim(), "10.0.0.5");
}
