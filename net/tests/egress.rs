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
