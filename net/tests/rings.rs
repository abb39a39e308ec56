//! The rings under pressure: a flood that overflows the transmit ring is dropped and counted and
//! the network recovers; a tiny receive ring slows TCP down without corrupting it.

mod common;

use common::{can_run, http_server, Sandbox};
use msb_net::{DropReason, EgressPolicy, NetConfig, NetEvent};

fn config(tx: usize, rx: usize) -> NetConfig {
    NetConfig {
        tx_ring_frames: tx,
        rx_ring_frames: rx,
        policy: EgressPolicy::from_rules(&["allow@host:tcp"]).unwrap(),
        dns_upstream: Some("127.0.0.1:9".parse().unwrap()),
        ..NetConfig::default()
    }
}

#[test]
fn a_flood_overflows_the_transmit_ring_and_the_network_recovers() {
    if !can_run("a_flood_overflows_the_transmit_ring_and_the_network_recovers") {
        return;
    }
    let port = http_server(b"still-alive".to_vec());
    let mut sb = Sandbox::start(config(2, 1024));
    // 64 MiB of datagrams to a gateway port nobody serves: read from the TAP in batches far
    // larger than the ring.
    sb.ok("head -c 67108864 /dev/zero | nc -u -w1 -q0 172.30.0.1 9999 || true");
    let c = sb.wait_counters("drops", |c| c.drops_tx_ring_full > 0);
    assert!(c.tx_packets > 0);
    // The stack drains; nothing waits on a wake-up that cannot come.
    let body = sb.ok(&format!(
        "curl -sS --max-time 5 http://172.30.0.254:{port}/"
    ));
    assert_eq!(body, "still-alive");
    let c = sb.wait_counters("drained rings", |c| {
        c.tx_ring_frames == 0 && c.tcp_open == 0
    });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _ = sb.ok(&format!(
        "curl -sS --max-time 5 http://172.30.0.254:{port}/"
    ));
    let dropped: u64 = sb
        .drain_events()
        .iter()
        .filter_map(|e| match e {
            NetEvent::Dropped {
                reason: DropReason::TxRingFull,
                frames,
            } => Some(*frames),
            _ => None,
        })
        .sum();
    assert!(
        dropped > 0 && dropped <= sb.counters().drops_tx_ring_full,
        "{dropped} vs {c:?}"
    );
}

#[test]
fn a_tiny_receive_ring_applies_backpressure_to_tcp() {
    if !can_run("a_tiny_receive_ring_applies_backpressure_to_tcp") {
        return;
    }
    const SIZE: usize = 16 << 20;
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let port = http_server(body.clone());
    let sb = Sandbox::start(config(1024, 2));
    let sum = sb.ok(&format!(
        "curl -sS --max-time 30 http://172.30.0.254:{port}/ | md5sum"
    ));
    let file = std::env::temp_dir().join(format!("msb-net-body-{port}"));
    std::fs::write(&file, &body).unwrap();
    let want = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("md5sum < {}", file.display()))
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(sum, String::from_utf8_lossy(&want.stdout));
    let c = sb.wait_counters("closed", |c| c.tcp_open == 0);
    assert!(c.rx_bytes >= SIZE as u64);
    assert!(c.rx_ring_frames <= 2);
}
