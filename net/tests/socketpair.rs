//! The stack over a socketpair (the microVM path; no root needed): ARP, echo, a refused SYN, and
//! a transmit-ring flood that is dropped and counted while the stack stays responsive.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use msb_net::{NetConfig, Network};

const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GUEST_IP: [u8; 4] = [172, 30, 0, 2];
const GATEWAY_IP: [u8; 4] = [172, 30, 0, 1];

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    h.extend_from_slice(&GUEST_IP);
    h.extend_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&GUEST_MAC);
    a.extend_from_slice(&GUEST_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&GATEWAY_IP);
    ethernet([0xff; 6], 0x0806, &a)
}

/// Receives frames until `pick` accepts one; fails after two seconds.
fn expect(guest: &UnixDatagram, what: &str, pick: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut buf = vec![0; 70000];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if let Ok(n) = guest.recv(&mut buf) {
            if pick(&buf[..n]) {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("no {what}");
}

fn start(config: NetConfig) -> (msb_net::RunningNetwork, UnixDatagram) {
    let (stack_end, guest_end) = msb_net::tap::frame_socketpair().unwrap();
    let running = Network::new(config).unwrap().start(stack_end).unwrap();
    let guest = UnixDatagram::from(guest_end);
    guest
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (running, guest)
}

fn config() -> NetConfig {
    NetConfig {
        dns_upstream: Some("127.0.0.1:9".parse().unwrap()),
        ..NetConfig::default()
    }
}

#[test]
fn arp_echo_and_a_refused_syn() {
    let (running, guest) = start(config());
    guest.send(&arp_request()).unwrap();
    let reply = expect(&guest, "ARP reply", |f| {
        f[12..14] == [8, 6] && f[20..22] == [0, 2]
    });
    let gateway_mac: [u8; 6] = reply[22..28].try_into().unwrap();
    assert_eq!(reply[28..32], GATEWAY_IP);

    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 7];
    icmp.extend_from_slice(b"socketpair");
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    guest
        .send(&ethernet(gateway_mac, 0x0800, &ipv4(GATEWAY_IP, 1, &icmp)))
        .unwrap();
    let reply = expect(&guest, "echo reply", |f| {
        f.len() > 34 && f[23] == 1 && f[34] == 0
    });
    assert_eq!(&reply[38..], &icmp[4..]);

    // A SYN to a default-denied address gets a reset (RST+ACK of seq+1) at once.
    let mut syn = vec![
        0x9c, 0x40, 0, 80, 0, 0, 0, 41, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let dst = [10, 9, 9, 9];
    let mut pseudo = GUEST_IP.to_vec();
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&syn);
    let sum = checksum(&pseudo);
    syn[16..18].copy_from_slice(&sum.to_be_bytes());
    guest
        .send(&ethernet(gateway_mac, 0x0800, &ipv4(dst, 6, &syn)))
        .unwrap();
    let rst = expect(&guest, "reset", |f| f.len() >= 54 && f[23] == 6);
    assert_eq!(rst[26..30], dst);
    assert_eq!(rst[47] & 0x14, 0x14, "RST and ACK");
    assert_eq!(rst[42..46], [0, 0, 0, 42]);
    // The counters move just after the frames do; give them a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let c = loop {
        let c = running.counters().snapshot();
        if c.rx_packets >= 3 || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!((c.drops_policy_denied, c.icmp_echo_replies), (1, 1));
    assert!(c.rx_packets >= 3 && c.tx_packets == 3, "{c:?}");
    running.stop();
}

#[test]
fn a_flood_is_dropped_and_counted_and_the_stack_answers_after() {
    let (running, guest) = start(NetConfig {
        tx_ring_frames: 4,
        ..config()
    });
    let mut udp = vec![0x9c, 0x40, 0x27, 0x0f, 0, 8 + 200, 0, 0];
    udp.extend_from_slice(&[0; 200]);
    let frame = ethernet(
        [2, 0x6d, 0x73, 0x62, 0, 1],
        0x0800,
        &ipv4(GATEWAY_IP, 17, &udp),
    );
    guest.set_nonblocking(true).unwrap();
    let mut sent = 0u64;
    for _ in 0..20_000 {
        if guest.send(&frame).is_ok() {
            sent += 1;
        }
    }
    guest.set_nonblocking(false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = running.counters().snapshot();
        if c.tx_packets + c.drops_tx_ring_full == sent {
            assert!(c.drops_tx_ring_full > 0, "{c:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{sent} sent, {c:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    guest.send(&arp_request()).unwrap();
    expect(&guest, "ARP reply after the flood", |f| {
        f[12..14] == [8, 6] && f[20..22] == [0, 2]
    });
    running.stop();
}
