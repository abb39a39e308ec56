//! DNS over TCP at the gateway's port 53 (RFC 7766): each message with a two-byte length
//! prefix, answered in order like the UDP ones (the host alias here, the rest forwarded to the
//! host's resolver with the same rebinding check). A client falls back to TCP when a UDP answer
//! comes truncated, and some ask over TCP only.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::counters::NetCounters;
use crate::device::Shared;
use crate::dns;
use crate::udp::{resolve, DnsForward};

/// What the gateway's TCP resolver answers with.
pub(crate) struct DnsServer {
    /// The host's resolver (`None`: none configured, every other name gets SERVFAIL).
    pub(crate) forward: Option<Arc<DnsForward>>,
    /// The address `host.msb.internal` resolves to.
    pub(crate) alias: Ipv4Addr,
}

/// Serves one connection: reads length-prefixed queries from `from_guest`, writes
/// length-prefixed answers to `to_guest`; ends when the guest closes its side or sends
/// something that is not a DNS query (the connection is then closed).
pub(crate) async fn serve(
    server: DnsServer,
    mut from_guest: mpsc::Receiver<Vec<u8>>,
    to_guest: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut pending = Vec::new();
    'connection: while let Some(chunk) = from_guest.recv().await {
        // Room was made in the channel: the stack may read more from the guest.
        shared.stack.notify();
        pending.extend_from_slice(&chunk);
        while let Some(query) = next_message(&mut pending) {
            let Some(response) = answer(&server, &query, &shared.counters).await else {
                break 'connection;
            };
            if to_guest.send(frame(&response)).await.is_err() {
                break 'connection;
            }
            shared.stack.notify();
        }
    }
    // Dropping `to_guest` tells the stack this side is done: it closes the connection.
    drop(to_guest);
    shared.stack.notify();
}

/// Takes one complete length-prefixed message off the front of `pending`.
fn next_message(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let length = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
    if pending.len() < 2 + length {
        return None;
    }
    let message = pending[2..2 + length].to_vec();
    pending.drain(..2 + length);
    Some(message)
}

/// `message` with its length prefix.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// The answer to one query; `None` for a message that is not a query (counted as failed).
async fn answer(server: &DnsServer, query: &[u8], counters: &NetCounters) -> Option<Vec<u8>> {
    NetCounters::inc(&counters.dns_queries);
    let Some(question) = dns::parse_query(query) else {
        NetCounters::inc(&counters.drops_dns_failed);
        return None;
    };
    if question.name == dns::HOST_ALIAS_NAME {
        return Some(dns::alias_response(query, &question, server.alias));
    }
    let response = match &server.forward {
        Some(forward) => resolve(forward, query, &question, counters).await,
        None => {
            NetCounters::inc(&counters.drops_dns_failed);
            dns::error_response(query, &question, dns::SERVFAIL)
        }
    };
    // An answer too long for the prefix (a UDP answer can be 65,536 bytes) fails cleanly.
    if response.len() > usize::from(u16::MAX) {
        NetCounters::inc(&counters.drops_dns_failed);
        return Some(dns::error_response(query, &question, dns::SERVFAIL));
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_and_in_order() {
        let mut pending = frame(b"first");
        pending.extend(frame(b"second"));
        pending.extend_from_slice(&[0, 9, b'p']);
        assert_eq!(next_message(&mut pending).as_deref(), Some(&b"first"[..]));
        assert_eq!(next_message(&mut pending).as_deref(), Some(&b"second"[..]));
        // A partial message waits for the rest.
        assert_eq!(next_message(&mut pending), None);
        pending.extend_from_slice(b"artial..");
        assert_eq!(
            next_message(&mut pending).as_deref(),
            Some(&b"partial.."[..])
        );
        assert!(pending.is_empty());
        assert_eq!(next_message(&mut vec![0]), None);
    }
}
