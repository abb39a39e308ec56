//! Who may talk to msbd: its socket admits only the user who owns `MSB_HOME`, and root.
//!
//! The socket is bound under umask 077 in a 0700 home, so another user cannot reach it; the
//! peer-credential check (`SO_PEERCRED`) holds even where the file modes were relaxed. A refused
//! connection is answered `403` with an [`ErrorBody`](msb_api::ErrorBody) that says why, then
//! closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Whether a peer of uid `peer` may use the msbd of a home owned by `owner`.
pub fn admits(peer: u32, owner: u32) -> bool {
    peer == owner || peer == 0
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    stream.peer_cred().map(|cred| cred.uid())
}

/// msbd's listener: accepts connections from admitted peers only (see [`admits`]).
#[derive(Debug)]
pub struct PeerCheckedListener {
    listener: UnixListener,
    owner: u32,
}

impl PeerCheckedListener {
    pub fn new(listener: UnixListener, owner: u32) -> Self {
        Self { listener, owner }
    }
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // As axum's own listeners do: out of descriptors and the like pass.
                    tracing::warn!("accepting a connection on msbd.sock: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match peer_uid(&stream) {
                Ok(uid) if admits(uid, self.owner) => return (stream, addr),
                Ok(uid) => {
                    tracing::warn!(
                        uid,
                        owner = self.owner,
                        "refused a connection from another user"
                    );
                    tokio::spawn(refuse(stream, Some(uid), self.owner));
                }
                Err(e) => {
                    tracing::warn!("refused a connection whose peer is unknown: {e}");
                    tokio::spawn(refuse(stream, None, self.owner));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The message a refused peer gets.
pub fn refusal(peer: Option<u32>, owner: u32) -> String {
    let who = peer.map_or("a process whose uid is unknown".to_owned(), |uid| {
        format!("uid {uid}")
    });
    format!("msbd refused {who}: this MSB_HOME belongs to uid {owner}, and only that user and root may use its msbd")
}

/// Reads the request's head (so the client is not cut off mid-write), answers 403, closes.
async fn refuse(mut stream: UnixStream, peer: Option<u32>, owner: u32) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    let body = serde_json::to_string(&msb_api::ErrorBody {
        error: refusal(peer, owner),
        kind: "forbidden".into(),
        exit_code: None,
    })
    .expect("an error body serialises");
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_owner_and_root_only() {
        assert!(admits(1000, 1000));
        assert!(admits(0, 1000));
        assert!(admits(0, 0));
        assert!(!admits(65534, 1000));
        assert!(!admits(1000, 0));
    }

    #[tokio::test]
    async fn reads_the_peers_uid_and_refuses_another_user_with_a_403() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(peer_uid(&ours).unwrap(), me);
        // As if the home belonged to someone else (and we were not root).
        let owner = me + 1;
        if me != 0 {
            assert!(!admits(peer_uid(&ours).unwrap(), owner));
        }
        let refusing = tokio::spawn(refuse(ours, Some(me), owner));
        let mut client = theirs;
        client
            .write_all(b"GET /v1/sandboxes HTTP/1.1\r\nhost: msbd\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        refusing.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        let body: msb_api::ErrorBody =
            serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body.kind, "forbidden");
        assert!(
            body.error.contains(&format!("belongs to uid {owner}")),
            "{}",
            body.error
        );
    }
}
