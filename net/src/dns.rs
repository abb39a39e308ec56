//! The gateway's DNS: just enough of the message format to answer the host alias, to read the
//! addresses in an upstream answer (rebinding protection) and to build error responses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The name the gateway answers with the host alias address.
pub const HOST_ALIAS_NAME: &str = "host.msb.internal";

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
/// Response code: the server failed.
pub(crate) const SERVFAIL: u8 = 2;
/// Response code: the server refuses to answer.
pub(crate) const REFUSED: u8 = 5;

/// The single question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    /// Lower case, without the trailing dot.
    pub(crate) name: String,
    pub(crate) qtype: u16,
    /// Offset just past the question section.
    end: usize,
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Reads a (possibly compressed) name starting at `at`; returns it and the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)? as usize;
        match len {
            0 => return Some((name, end.unwrap_or(at + 1))),
            l if l & 0xc0 == 0xc0 => {
                end.get_or_insert(at + 2);
                at = (usize::from(u16_at(msg, at)?)) & 0x3fff;
            }
            l if l < 64 => {
                let label = msg.get(at + 1..at + 1 + l)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

/// Parses the question of a standard query with exactly one question.
pub(crate) fn parse_query(msg: &[u8]) -> Option<Question> {
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || u16_at(msg, 4)? != 1 {
        return None;
    }
    let (name, at) = read_name(msg, HEADER)?;
    let qtype = u16_at(msg, at)?;
    u16_at(msg, at + 2)?;
    Some(Question {
        name,
        qtype,
        end: at + 4,
    })
}

fn response_header(query: &[u8], rcode: u8, answers: u16) -> Vec<u8> {
    let rd = query[2] & 0x01;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | rd); // QR, opcode 0, RD copied
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A response carrying only the question and `rcode`.
pub(crate) fn error_response(query: &[u8], question: &Question, rcode: u8) -> Vec<u8> {
    let mut out = response_header(query, rcode, 0);
    out.extend_from_slice(&query[HEADER..question.end]);
    out
}

/// The answer to a query for the host alias: an A record for `alias`, or no records for other
/// types (so resolvers do not wait for an AAAA that will never come).
pub(crate) fn alias_response(query: &[u8], question: &Question, alias: Ipv4Addr) -> Vec<u8> {
    let wants_a = matches!(question.qtype, TYPE_A | TYPE_ANY);
    let mut out = response_header(query, 0, u16::from(wants_a));
    out.extend_from_slice(&query[HEADER..question.end]);
    if wants_a {
        out.extend_from_slice(&[0xc0, HEADER as u8]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 4]); // IN, TTL 60, 4 bytes
        out.extend_from_slice(&alias.octets());
    }
    out
}

/// The A and AAAA addresses in a response's answer section (`None` if it does not parse).
pub(crate) fn answer_addresses(msg: &[u8]) -> Option<Vec<IpAddr>> {
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut at = HEADER;
    for _ in 0..questions {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = read_name(msg, at)?.1;
        let rtype = u16_at(msg, at)?;
        let len = usize::from(u16_at(msg, at + 8)?);
        let data = msg.get(at + 10..at + 10 + len)?;
        match (rtype, len) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let bytes: [u8; 16] = data.try_into().ok()?;
                out.push(IpAddr::V6(Ipv6Addr::from(bytes)));
            }
            _ => {}
        }
        at += 10 + len;
    }
    Some(out)
}

/// The first `nameserver` of a resolv.conf, on port 53.
pub fn upstream_from_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "nameserver")
            .then(|| words.next()?.split('%').next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_alias_and_reads_it_back() {
        let q = query(0x1234, "Host.MSB.internal", TYPE_A);
        let question = parse_query(&q).unwrap();
        assert_eq!(
            (question.name.as_str(), question.qtype),
            (HOST_ALIAS_NAME, TYPE_A)
        );
        let alias = Ipv4Addr::new(172, 30, 0, 254);
        let r = alias_response(&q, &question, alias);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(answer_addresses(&r).unwrap(), vec![IpAddr::V4(alias)]);
        let q6 = query(1, HOST_ALIAS_NAME, TYPE_AAAA);
        let r6 = alias_response(&q6, &parse_query(&q6).unwrap(), alias);
        assert_eq!(answer_addresses(&r6).unwrap(), Vec::<IpAddr>::new());
        let e = error_response(&q, &question, REFUSED);
        assert_eq!(
            (e[3] & 0x0f, answer_addresses(&e).unwrap().len()),
            (REFUSED, 0)
        );
    }

    #[test]
    fn rejects_junk_and_responses() {
        assert_eq!(parse_query(&[0; 5]), None);
        let mut r = query(1, "a.b", TYPE_A);
        r[2] |= 0x80;
        assert_eq!(parse_query(&r), None);
        let mut loopy = query(1, "a", TYPE_A);
        loopy[12] = 0xc0;
        loopy[13] = 12;
        assert_eq!(parse_query(&loopy), None);
        assert_eq!(answer_addresses(&[0; 3]), None);
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example\nnameserver fe80::1%eth0\nnameserver 1.1.1.1\n";
        assert_eq!(
            upstream_from_resolv_conf(text),
            Some("[fe80::1]:53".parse().unwrap())
        );
        assert_eq!(
            upstream_from_resolv_conf("nameserver 127.0.0.53"),
            Some("127.0.0.53:53".parse().unwrap())
        );
        assert_eq!(upstream_from_resolv_conf("options ndots:1"), None);
    }
}
