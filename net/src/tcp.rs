//! TCP relaying: one smoltcp socket per guest connection on the stack thread, one tokio task
//! per host socket, joined by two bounded chunk channels.
//!
//! Backpressure runs both ways: the stack reads from a smoltcp socket only while the channel
//! to the host has room (so the guest's window closes when the host is slow), and writes to the
//! socket only what its send buffer takes (so the host task blocks on a full channel when the
//! guest is slow). Each side wakes the other after making room.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::device::Shared;

/// Chunks queued per direction and per connection.
const CHANNEL_CHUNKS: usize = 16;
/// The largest chunk moved at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// A connection as the stack sees it: `guest` is the guest's endpoint, `remote` the endpoint the
/// guest talks to (the real destination, the host alias, or the gateway for published ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub(crate) guest: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
}

/// The stack thread's half of a relayed connection.
pub(crate) struct TcpConn {
    pub(crate) handle: SocketHandle,
    to_host: Option<mpsc::Sender<Vec<u8>>>,
    from_host: mpsc::Receiver<Vec<u8>>,
    /// A chunk from the host not yet fully written into the socket, and how much was.
    unsent: Option<(Vec<u8>, usize)>,
    host_closed: bool,
    fin_sent: bool,
    failed: Arc<AtomicBool>,
}

/// Creates the smoltcp socket for a connection, with the configured buffers.
pub(crate) fn new_socket(buffer_bytes: usize) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer_bytes]),
        tcp::SocketBuffer::new(vec![0; buffer_bytes]),
    );
    socket.set_nagle_enabled(false);
    socket.set_keep_alive(Some(smoltcp::time::Duration::from_secs(60)));
    socket.set_timeout(Some(smoltcp::time::Duration::from_secs(300)));
    socket
}

impl TcpConn {
    /// Pairs the socket `handle` with a tokio task relaying to `stream`.
    pub(crate) fn start(
        handle: SocketHandle,
        stream: TcpStream,
        runtime: &tokio::runtime::Handle,
        shared: Arc<Shared>,
    ) -> TcpConn {
        Self::start_with(handle, runtime, |to_host, from_host, failed| {
            relay(stream, to_host, from_host, shared, failed)
        })
    }

    /// Pairs the socket `handle` with the gateway's DNS-over-TCP server instead of a host
    /// socket.
    pub(crate) fn start_dns(
        handle: SocketHandle,
        server: crate::dns_tcp::DnsServer,
        runtime: &tokio::runtime::Handle,
        shared: Arc<Shared>,
    ) -> TcpConn {
        Self::start_with(handle, runtime, |to_host, from_host, _failed| {
            crate::dns_tcp::serve(server, to_host, from_host, shared)
        })
    }

    /// Pairs the socket `handle` with the task `host` makes from the connection's channels:
    /// what the guest sent, what goes back to it, and a flag that aborts the connection.
    fn start_with<F>(
        handle: SocketHandle,
        runtime: &tokio::runtime::Handle,
        host: impl FnOnce(mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>, Arc<AtomicBool>) -> F,
    ) -> TcpConn
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (to_host, to_host_rx) = mpsc::channel(CHANNEL_CHUNKS);
        let (from_host_tx, from_host) = mpsc::channel(CHANNEL_CHUNKS);
        let failed = Arc::new(AtomicBool::new(false));
        runtime.spawn(host(to_host_rx, from_host_tx, failed.clone()));
        TcpConn {
            handle,
            to_host: Some(to_host),
            from_host,
            unsent: None,
            host_closed: false,
            fin_sent: false,
            failed,
        }
    }

    /// Moves what can be moved between the socket and the host task. Returns true when the
    /// connection is finished and its socket can be removed.
    pub(crate) fn service(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if self.failed.load(Relaxed) {
            socket.abort();
            return true;
        }
        // Guest -> host, while the channel has room.
        if let Some(to_host) = &self.to_host {
            while socket.can_recv() {
                let Ok(permit) = to_host.try_reserve() else {
                    break;
                };
                let chunk = socket.recv(|data| {
                    let n = data.len().min(CHUNK_BYTES);
                    (n, data[..n].to_vec())
                });
                match chunk {
                    Ok(chunk) => permit.send(chunk),
                    Err(_) => break,
                }
            }
            let guest_finished = matches!(
                socket.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
                    | tcp::State::Closed
            );
            if guest_finished && !socket.can_recv() {
                // The guest sent FIN and everything before it went out: half-close the host.
                self.to_host = None;
            }
        }
        // Host -> guest, as far as the send buffer takes.
        if socket.may_send() {
            loop {
                if self.unsent.is_none() {
                    match self.from_host.try_recv() {
                        Ok(chunk) => self.unsent = Some((chunk, 0)),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.host_closed = true;
                            break;
                        }
                    }
                }
                let Some((chunk, done)) = &mut self.unsent else {
                    break;
                };
                match socket.send_slice(&chunk[*done..]) {
                    Ok(n) => *done += n,
                    Err(_) => break,
                }
                if *done < chunk.len() {
                    break;
                }
                self.unsent = None;
            }
            if self.host_closed && self.unsent.is_none() && !self.fin_sent {
                socket.close();
                self.fin_sent = true;
            }
        } else if matches!(
            socket.state(),
            tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen
        ) {
            return false;
        } else if self.from_host.is_closed() || self.to_host.is_none() {
            // The guest can take no more data; whatever the host still sends is discarded.
            while self.from_host.try_recv().is_ok() {}
        }
        matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait)
    }
}

/// The host half: copies between `stream` and the stack's channels until both directions end.
async fn relay(
    stream: TcpStream,
    mut to_host: mpsc::Receiver<Vec<u8>>,
    from_host: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    failed: Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let up = async {
        let result: std::io::Result<()> = async {
            while let Some(chunk) = to_host.recv().await {
                // Room was made in the channel: the stack may read more from the guest.
                shared.stack.notify();
                write.write_all(&chunk).await?;
            }
            write.shutdown().await
        }
        .await;
        if result.is_err() {
            failed.store(true, Relaxed);
            shared.stack.notify();
        }
    };
    let down_shared = shared.clone();
    let down = async {
        let shared = down_shared;
        let result: std::io::Result<()> = async {
            let from_host = from_host;
            loop {
                let mut chunk = vec![0; CHUNK_BYTES];
                let n = read.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                chunk.truncate(n);
                if from_host.send(chunk).await.is_err() {
                    return Ok(());
                }
                shared.stack.notify();
            }
        }
        .await;
        if result.is_err() {
            failed.store(true, Relaxed);
        }
        // `from_host` is gone with the block above: the stack sees the host's end of stream.
        shared.stack.notify();
    };
    tokio::join!(up, down);
}
