//! Host -> guest: published TCP and UDP ports, and a port already in use.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{can_run, start_on_free_port};
use msb_net::{NetConfig, NetError, Network};

#[test]
fn published_ports_answer_from_the_host() {
    if !can_run("published_ports_answer_from_the_host") {
        return;
    }
    let (sb, tcp) = start_on_free_port(|tcp| NetConfig {
        published: vec![format!("{tcp}:8080").parse().unwrap()],
        dns_upstream: Some("127.0.0.1:9".parse().unwrap()),
        ..NetConfig::default()
    });
    // A TCP server and a UDP echo inside the namespace.
    let name = sb.name.clone();
    let guest = std::thread::spawn(move || {
        std::process::Command::new("timeout")
            .args(["10", "ip", "netns", "exec", &name, "sh", "-c"])
            .arg("echo hello-from-guest | nc -N -l 8080")
            .output()
    });
    // Until the guest listens, connections are accepted on the host and reset by the guest.
    let mut answer = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"hi guest\n");
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        if !got.is_empty() {
            answer = Some(got);
            break;
        }
    }
    assert_eq!(answer.as_deref(), Some("hello-from-guest\n"));
    let out = guest.join().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi guest\n");
    let c = sb.wait_counters("published connection closed", |c| c.tcp_open == 0);
    assert!(c.tcp_total >= 1);
}

#[test]
fn published_udp_round_trips() {
    if !can_run("published_udp_round_trips") {
        return;
    }
    let (sb, udp) = start_on_free_port(|udp| NetConfig {
        published: vec![format!("{udp}:5353/udp").parse().unwrap()],
        dns_upstream: Some("127.0.0.1:9".parse().unwrap()),
        ..NetConfig::default()
    });
    // The guest answers the first datagram it gets with "pong" (to the sender's address).
    let name = sb.name.clone();
    let guest = std::thread::spawn(move || {
        std::process::Command::new("timeout")
            .args([
                "10",
                "ip",
                "netns",
                "exec",
                &name,
                "sh",
                "-c",
                "echo pong | nc -u -l -W 1 5353",
            ])
            .output()
    });
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut answer = None;
    for _ in 0..30 {
        socket.send_to(b"ping\n", ("127.0.0.1", udp)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    assert_eq!(answer.as_deref(), Some("pong\n"));
    let out = guest.join().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping\n");
    assert!(sb.counters().udp_total >= 1);
}

#[test]
fn a_port_in_use_fails_at_creation() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Network::new(NetConfig {
        published: vec![format!("{port}:80").parse().unwrap()],
        ..NetConfig::default()
    })
    .err()
    .expect("must fail");
    assert!(matches!(err, NetError::Bind { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot bind published port 127.0.0.1:{port}/tcp")
    );
}
