//! Fixtures for the root-only integration tests: a network namespace whose `eth0` is a TAP
//! device served by a running msb-net, plus tiny servers on the host's loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use msb_net::{NetConfig, NetCountersSnapshot, NetEvent, Network, RunningNetwork};

/// Whether the tests can run; prints why not.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "curl", "nc", "dig", "ping", "md5sum"]
        .iter()
        .all(|t| which(t));
    // The tests use OpenBSD netcat's -N, -W and -q.
    let openbsd_nc = tools
        && Command::new("nc")
            .arg("-h")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("-N"));
    if !root || !tools || !openbsd_nc {
        eprintln!(
            "skipping {test}: needs root and ip, curl, OpenBSD nc, dig, ping \
             (apt-get install iproute2 curl netcat-openbsd dnsutils iputils-ping); root={root}"
        );
    }
    root && tools && openbsd_nc
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

/// A network namespace with a TAP `eth0` attached to a running network.
pub struct Sandbox {
    pub name: String,
    pub net: Option<RunningNetwork>,
    pub events: tokio::sync::mpsc::Receiver<NetEvent>,
    pub config: NetConfig,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Sandbox {
    pub fn start(config: NetConfig) -> Sandbox {
        let mut network = Network::new(config).expect("network");
        Sandbox::start_network(network.take_events().unwrap(), network)
    }

    pub fn start_network(
        events: tokio::sync::mpsc::Receiver<NetEvent>,
        network: Network,
    ) -> Sandbox {
        let name = format!(
            "msbnet{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        assert!(run(Command::new("ip").args(["netns", "add", &name]))
            .status
            .success());
        let config = network.config().clone();
        // The TAP is opened and configured by msb-net itself (no `ip` inside).
        let setup = config.guest_setup();
        let netns = format!("/run/netns/{name}");
        let tap =
            msb_net::tap::open_in_netns(Path::new(&netns), "eth0", Some(&setup)).expect("tap");
        let net = network.start(tap).expect("start");
        Sandbox {
            name,
            net: Some(net),
            events,
            config,
        }
    }

    /// Runs a shell command inside the namespace, with a hard time limit.
    pub fn sh(&self, script: &str) -> Output {
        run(Command::new("timeout").args([
            "-k", "2", "30", "ip", "netns", "exec", &self.name, "sh", "-c", script,
        ]))
    }

    /// Runs a shell command and returns its stdout, asserting success.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn counters(&self) -> NetCountersSnapshot {
        self.net.as_ref().unwrap().counters().snapshot()
    }

    pub fn drain_events(&mut self) -> Vec<NetEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Waits until `check` holds on the counters (they are updated by other threads).
    pub fn wait_counters(
        &self,
        what: &str,
        check: impl Fn(&NetCountersSnapshot) -> bool,
    ) -> NetCountersSnapshot {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = self.counters();
            if check(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {c:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            net.stop();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An HTTP/1.0 server on 127.0.0.1 answering every request with `body`; returns its port.
pub fn http_server(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 65536];
                // Read the headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = find(&request, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        while request.len() < end + 4 + length {
                            let Ok(n) = stream.read(&mut buf) else { return };
                            if n == 0 {
                                break;
                            }
                            request.extend_from_slice(&buf[..n]);
                        }
                        let received = request.len() - end - 4;
                        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nX-Received: {received}\r\n\r\n", body.len());
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                        return;
                    }
                }
            });
        }
    });
    port
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A UDP echo server on 127.0.0.1; returns its port.
pub fn udp_echo_server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    port
}

/// A free TCP and UDP port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts a sandbox whose configuration publishes a port picked here. A port found free can be
/// taken (as an ephemeral port of another test's connection) before the network binds it, so a
/// bind that finds it in use tries another.
pub fn start_on_free_port(config: impl Fn(u16) -> NetConfig) -> (Sandbox, u16) {
    for _ in 0..20 {
        let port = free_port();
        match Network::new(config(port)) {
            Ok(mut network) => {
                let events = network.take_events().unwrap();
                return (Sandbox::start_network(events, network), port);
            }
            Err(msb_net::NetError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => panic!("network: {e:?}"),
        }
    }
    panic!("no free port in 20 tries")
}
