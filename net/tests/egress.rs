//! Guest -> host: the host alias, the policy, connection limits, byte counters.

mod common;

use common::{can_run, http_server, Sandbox};
use msb_net::{Destination, EgressPolicy, NetConfig, NetEvent, Transport};

fn config(rules: &[&str]) -> NetConfig {
    NetConfig {
        policy: EgressPolicy::from_rules(rules).unwrap(),
        dns_upstream: Some("127.0.0.1:9".parse().unwrap()),
        ..NetConfig::default()
    }
}

#[test]
fn host_alias_reaches_the_host_only_when_allowed() {
    if !can_run("host_alias_reaches_the_host_only_when_allowed") {
        return;
    }
    let port = http_server(b"hello-from-host".to_vec());
    let other = http_server(b"secret".to_vec());
    let mut sb = Sandbox::start(config(&[&format!("allow@host:tcp:{port}")]));
    let body = sb.ok(&format!(
        "curl -sS --max-time 5 http://172.30.0.254:{port}/"
    ));
    assert_eq!(body, "hello-from-host");
    let out = sb.sh(&format!(
        "curl -sS --max-time 5 http://172.30.0.254:{other}/"
    ));
    assert_eq!(
        out.status.code(),
        Some(7),
        "refused, not timed out: {out:?}"
    );
    let c = sb.wait_counters("denial", |c| c.drops_policy_denied == 1 && c.tcp_open == 0);
    assert_eq!(c.tcp_total, 1);
    let events = sb.drain_events();
    assert!(
        events.contains(&NetEvent::Denied {
            transport: Transport::Tcp,
            destination: Destination::HostAlias,
            port: other,
            rule: None
        }),
        "{events:?}"
    );
}

#[test]
fn a_denied_private_address_is_refused_and_counted() {
    if !can_run("a_denied_private_address_is_refused_and_counted") {
        return;
    }
    let mut sb = Sandbox::start(config(&[]));
    // Denied by the defaults: the guest gets a reset at once, nothing leaves the host.
    let out = sb.sh("curl -sS --max-time 5 http://10.255.255.1:80/");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = sb.sh("curl -sS --max-time 5 http://169.254.169.254/latest/meta-data/");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let c = sb.wait_counters("two denials", |c| c.drops_policy_denied == 2);
    assert_eq!((c.tcp_total, c.tcp_open), (0, 0));
    let events = sb.drain_events();
    for ip in ["10.255.255.1", "169.254.169.254"] {
        let want = NetEvent::Denied {
            transport: Transport::Tcp,
            destination: Destination::Ip(ip.parse().unwrap()),
            port: 80,
            rule: None,
        };
        assert!(events.contains(&want), "{ip}: {events:?}");
    }
    // An explicit rule that denies a public address wins over the defaults, and says which.
    let mut sb = Sandbox::start(config(&[
        "deny@198.51.100.0/24",
        "deny@203.0.113.7:tcp:443",
    ]));
    assert_eq!(
        sb.sh("curl -sS --max-time 5 https://203.0.113.7/")
            .status
            .code(),
        Some(7)
    );
    sb.wait_counters("rule denial", |c| c.drops_policy_denied == 1);
    assert!(matches!(
        sb.drain_events()[..],
        [NetEvent::Denied {
            rule: Some(1),
            port: 443,
            ..
        }]
    ));
}

#[test]
fn byte_counters_match_the_traffic() {
    if !can_run("byte_counters_match_the_traffic") {
        return;
    }
    const DOWN: u64 = 4 << 20;
    const UP: u64 = 2 << 20;
    let port = http_server(vec![b'x'; DOWN as usize]);
    let sb = Sandbox::start(config(&["allow@host"]));
    // Payload plus headers: with 64 KiB segments the overhead is far below 5 %, plus a few
    // KiB of handshakes, ACKs and the other direction's request or response.
    let slack = |n: u64| n + n / 20 + 64 * 1024;
    let before = sb.counters();
    let size = sb.ok(&format!(
        "curl -sS --max-time 20 -o /dev/null -w '%{{size_download}}' http://172.30.0.254:{port}/"
    ));
    assert_eq!(size, DOWN.to_string());
    let c = sb.wait_counters("download closed", |c| c.tcp_open == 0);
    let rx = c.rx_bytes - before.rx_bytes;
    assert!(
        rx >= DOWN && rx <= slack(DOWN),
        "rx {rx} for {DOWN} downloaded"
    );
    let before = c;
    let headers = sb.ok(&format!(
        "head -c {UP} /dev/zero | curl -sS --max-time 20 -D - -o /dev/null --data-binary @- http://172.30.0.254:{port}/"
    ));
    assert!(headers.contains(&format!("X-Received: {UP}")), "{headers}");
    let c = sb.wait_counters("upload closed", |c| c.tcp_open == 0);
    // The response to the upload is the same DOWN bytes; only the transmit side is checked.
    let tx = c.tx_bytes - before.tx_bytes;
    assert!(tx >= UP && tx <= slack(UP), "tx {tx} for {UP} uploaded");
    assert!(c.rx_packets > 0 && c.tx_packets > 0);
    assert_eq!(c.tcp_total, 2);
}

#[test]
fn tcp_and_udp_limits_refuse_and_count() {
    if !can_run("tcp_and_udp_limits_refuse_and_count") {
        return;
    }
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    // Holds each connection until the guest closes it.
    std::thread::spawn(move || {
        for stream in held.incoming().flatten() {
            std::thread::spawn(move || std::io::copy(&mut &stream, &mut std::io::sink()));
        }
    });
    let udp = common::udp_echo_server();
    let sb = Sandbox::start(NetConfig {
        max_tcp_connections: 2,
        max_udp_flows: 1,
        ..config(&["allow@host"])
    });
    // Two held connections fill the limit; the third is reset at once.
    let script = format!(
        "for i in 1 2; do timeout 4 nc 172.30.0.254 {port} </dev/null >/dev/null 2>&1 & done; \
         sleep 1; curl -sS --max-time 3 http://172.30.0.254:{port}/; echo exit=$?"
    );
    let out = sb.ok(&script);
    assert!(out.contains("exit=7"), "{out}");
    let c = sb.wait_counters("tcp refusal", |c| c.tcp_limit_refused == 1);
    assert_eq!(c.tcp_open, 2);
    // One UDP flow echoes; a second one (another source port) is refused.
    let echoed = sb.ok(&format!(
        "echo ping-udp | nc -u -w1 -p 40000 172.30.0.254 {udp}"
    ));
    assert_eq!(echoed.trim(), "ping-udp");
    let refused = sb.ok(&format!(
        "echo again | nc -u -w1 -p 40001 172.30.0.254 {udp}; true"
    ));
    assert_eq!(refused, "");
    let c = sb.wait_counters("udp refusal", |c| c.udp_limit_refused == 1);
    assert_eq!((c.udp_open, c.udp_total), (1, 1));
    sb.wait_counters("held connections closed", |c| c.tcp_open == 0);
}

#[test]
fn echo_requests_are_answered_where_allowed() {
    if !can_run("echo_requests_are_answered_where_allowed") {
        return;
    }
    let mut sb = Sandbox::start(config(&["allow@host"]));
    sb.ok("ping -c 2 -i 0.2 -W 2 172.30.0.1");
    // The host alias: relayed to the host's 127.0.0.1 when ICMP sockets are allowed here
    // (net.ipv4.ping_group_range), answered by the stack otherwise.
    sb.ok("ping -c 2 -i 0.2 -W 2 172.30.0.254");
    let c = sb.wait_counters("four replies", |c| c.icmp_echo_replies == 4);
    let groups = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let mut range = groups.split_whitespace().map(|g| g.parse::<i64>().unwrap());
    let (low, high) = (range.next().unwrap(), range.next().unwrap());
    let relayed = low <= 0 && 0 <= high;
    assert_eq!(c.icmp_echo_relayed, if relayed { 2 } else { 0 });
    if !relayed {
        // Without ICMP sockets the stack answers any allowed destination itself (nothing is
        // sent: with them, this echo would leave the machine, so it is only tried here).
        let sb = Sandbox::start(config(&["allow@198.51.100.7"]));
        sb.ok("ping -c 1 -W 2 198.51.100.7");
        assert_eq!(sb.counters().icmp_echo_replies, 1);
    }
    // Denied: the default policy keeps the alias (and private ranges) closed to ICMP too.
    let _ = sb.drain_events();
    let mut sb = Sandbox::start(config(&[]));
    let out = sb.sh("ping -c 1 -W 1 172.30.0.254; ping -c 1 -W 1 10.1.2.3");
    assert!(!out.status.success());
    sb.wait_counters("two denials", |c| c.drops_policy_denied == 2);
    assert!(sb.drain_events().iter().all(|e| matches!(
        e,
        NetEvent::Denied {
            transport: Transport::Icmp,
            ..
        }
    )));
}

#[test]
fn many_concurrent_connections_to_one_endpoint() {
    if !can_run("many_concurrent_connections_to_one_endpoint") {
        return;
    }
    let port = http_server(vec![b'y'; 100_000]);
    let sb = Sandbox::start(config(&["allow@host:tcp"]));
    // 200 requests, 40 at a time, all to the same host alias endpoint: each SYN gets its own
    // listening socket on that endpoint.
    let sizes = sb.ok(&format!(
        "seq 1 200 | xargs -P 40 -I{{}} curl -sS --max-time 10 -o /dev/null -w '%{{size_download}}\\n' http://172.30.0.254:{port}/"
    ));
    let sizes: Vec<&str> = sizes.lines().collect();
    assert_eq!(sizes.len(), 200);
    assert!(sizes.iter().all(|s| *s == "100000"), "{sizes:?}");
    let c = sb.wait_counters("all closed", |c| c.tcp_open == 0);
    assert_eq!(
        (c.tcp_total, c.tcp_limit_refused, c.tcp_connect_failed),
        (200, 0, 0)
    );
}
