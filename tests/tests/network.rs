//! The sandbox network (issue #8) through the real binaries, all traffic local: the host alias
//! behind `--net-rule allow@host`, a published port reached from the host, `--no-network`,
//! the byte counters in `msb metrics`, the private-range default, bad flags and a port in use,
//! and a planted `/etc/resolv.conf` link that the next start must not follow.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use msb_e2e::{require_root, TestHome};

/// An HTTP server on the host's 127.0.0.1 answering every request with `body`; returns its port.
fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A shell line fetching `/` from the host alias's `port` with busybox `nc` (the busybox
/// root's static `wget` segfaults here, exit 139, even on an address); fails when refused.
fn http_get(port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 172.30.0.254 {port} > /tmp/out; grep -q 200 /tmp/out && cat /tmp/out")
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_host_alias_answers_with_allow_host_and_is_refused_without() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let port = http_server("hello-from-host");
    // By address (see `http_get`): the alias is 172.30.0.254, as `/etc/hosts` says.
    let hosts = home.ok(&["run", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains("172.30.0.254 host.msb.internal"), "{hosts}");
    let get = http_get(port);
    let allowed = home.ok(&["run", "--net-rule", "allow@host", "--", "sh", "-c", &get]);
    assert!(allowed.contains("hello-from-host"), "{allowed}");
    let refused = home.msb(&["run", "--", "sh", "-c", &get]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(!refused.stdout.contains("hello-from-host"), "{refused:?}");
}

#[test]
fn a_private_destination_is_refused_by_default() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let out = home.msb(&["run", "--", "nc", "-w", "3", "10.1.2.3", "80"]);
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn a_published_port_answers_from_the_host() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let port = free_port();
    let publish = format!("{port}:8080");
    home.ok(&[
        "run",
        "-d",
        "-n",
        "web",
        "-p",
        &publish,
        "--",
        "sh",
        "-c",
        "while true; do echo published-hello | nc -l -p 8080; done",
    ]);
    let mut answer = String::new();
    home.eventually(
        Duration::from_secs(20),
        "the published port to answer",
        || {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            answer.clear();
            let _ = stream.read_to_string(&mut answer);
            answer.contains("published-hello")
        },
    );
    // Once `stop` returns the port is the host's again, and a new run publishes it at once.
    home.ok(&["stop", "web"]);
    drop(TcpListener::bind(("127.0.0.1", port)).expect("the stopped sandbox's port is free"));
    home.ok(&["start", "web"]);
    home.eventually(
        Duration::from_secs(20),
        "the restarted sandbox's port to answer",
        || {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            answer.clear();
            let _ = stream.read_to_string(&mut answer);
            answer.contains("published-hello")
        },
    );
    home.ok(&["rm", "-f", "web"]);
}

#[test]
fn no_network_leaves_only_loopback() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let interfaces = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "cat", "/proc/net/dev"]);
        home.ok(&all)
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(interfaces(&["--no-network"]), ["lo"]);
    let mut with = interfaces(&[]);
    with.sort();
    assert_eq!(with, ["eth0", "lo"]);
}

#[test]
fn byte_counters_match_the_transfer() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let body: &'static str = Box::leak("x".repeat(1 << 20).into_boxed_str());
    let port = http_server(body);
    let script = format!(
        "{} > /dev/null && touch /tmp/done; sleep 60",
        http_get(port)
    );
    home.ok(&[
        "run",
        "-d",
        "-n",
        "m",
        "--metrics-interval",
        "100ms",
        "--net-rule",
        "allow@host",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let mut rx = 0;
    home.eventually(Duration::from_secs(30), "the download counted", || {
        let done = home
            .msb(&["exec", "m", "--", "test", "-e", "/tmp/done"])
            .code
            == 0;
        let sample = home.metrics("m");
        rx = sample["net_rx_bytes"].as_u64().unwrap_or(0);
        done && rx >= 1 << 20
    });
    // Headers plus Ethernet/IP/TCP overhead: well under 10% at the MTU of 65520.
    assert!(rx < (1 << 20) + (1 << 20) / 10, "net_rx_bytes {rx}");
    let sample = home.metrics("m");
    assert!(sample["net_tx_bytes"].as_u64().unwrap() > 0, "{sample}");
    assert!(sample["net_rx_packets"].as_u64().unwrap() > 0, "{sample}");
    home.ok(&["rm", "-f", "m"]);
}

#[test]
fn bad_flags_and_a_port_in_use_create_nothing() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    for (flag, value) in [
        ("-p", "notaport"),
        ("-p", "70000:80"),
        ("--net-rule", "permit@10.0.0.0/8"),
    ] {
        let out = home.msb(&["create", "-n", "bad", flag, value, "--", "true"]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains(value), "{out:?}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("{port}:80");
    let out = home.msb(&["run", "-n", "busy", "-p", &publish, "--", "true"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(&port.to_string()), "{out:?}");
    assert!(home.names().is_empty(), "{:?}", home.names());
}

#[test]
fn a_non_loopback_bind_warns() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let publish = format!("0.0.0.0:{}:80", free_port());
    let out = home.msb(&["run", "-p", &publish, "--", "true"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("warning"), "{out:?}");
}

#[test]
fn a_planted_resolv_conf_link_is_replaced_not_followed() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(victim.path(), "host-content\n").unwrap();
    let plant = format!(
        "cat /etc/resolv.conf; rm -f /etc/resolv.conf /etc/hosts; ln -s {0} /etc/resolv.conf; ln -s {0} /etc/hosts",
        victim.path().display()
    );
    home.ok(&["create", "-n", "r", "--", "sh", "-c", &plant]);
    home.ok(&["start", "r"]);
    home.ok(&["wait", "r"]);
    assert_eq!(
        std::fs::read_to_string(victim.path()).unwrap(),
        "host-content\n"
    );
    home.ok(&["start", "r"]);
    home.ok(&["wait", "r"]);
    assert_eq!(
        std::fs::read_to_string(victim.path()).unwrap(),
        "host-content\n"
    );
    // The second run read the resolv.conf written for it, not the host file.
    let logs = home.ok(&["logs", "r"]);
    assert!(!logs.contains("host-content"), "{logs}");
    assert_eq!(logs.matches("nameserver 172.30.0.1").count(), 2, "{logs}");
}
