//! Reading the guest's frames before smoltcp sees them, and building the frames the stack sends
//! without a smoltcp socket (UDP datagrams, resets for refused connections, echo replies).

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::ring::Frame;

const ETH: usize = 14;
const IPV4: usize = 20;

/// What a guest frame carries, as far as the stack's dispatch cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GuestPacket<'a> {
    /// ARP and anything else smoltcp handles on its own.
    ForSmoltcp,
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        /// A SYN without ACK: the start of a connection.
        opening: bool,
        seq: u32,
    },
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &'a [u8],
    },
    Echo {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// The ICMP message from its type field on (type, code, checksum, ident, seq, data).
        message: &'a [u8],
    },
    /// IPv6, fragments, other protocols: dropped.
    Unsupported,
}

/// Classifies one guest frame; also returns its source MAC.
pub(crate) fn classify(frame: &[u8]) -> (Option<EthernetAddress>, GuestPacket<'_>) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return (None, GuestPacket::Unsupported);
    };
    let mac = Some(eth.src_addr());
    match eth.ethertype() {
        EthernetProtocol::Arp => return (mac, GuestPacket::ForSmoltcp),
        EthernetProtocol::Ipv4 => {}
        _ => return (mac, GuestPacket::Unsupported),
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return (mac, GuestPacket::Unsupported);
    };
    if ip.more_frags() || ip.frag_offset() != 0 {
        return (mac, GuestPacket::Unsupported);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let packet = match ip.next_header() {
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) => GuestPacket::Tcp {
                src: SocketAddrV4::new(src, tcp.src_port()),
                dst: SocketAddrV4::new(dst, tcp.dst_port()),
                opening: tcp.syn() && !tcp.ack(),
                seq: tcp.seq_number().0 as u32,
            },
            Err(_) => GuestPacket::Unsupported,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
            Ok(udp) => GuestPacket::Udp {
                src: SocketAddrV4::new(src, udp.src_port()),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                payload: udp.payload(),
            },
            Err(_) => GuestPacket::Unsupported,
        },
        IpProtocol::Icmp => {
            let message = ip.payload();
            // Type 8 is an echo request; anything shorter than its 8-byte header is junk.
            if message.len() >= 8 && message[0] == 8 {
                GuestPacket::Echo { src, dst, message }
            } else {
                GuestPacket::Unsupported
            }
        }
        _ => GuestPacket::Unsupported,
    };
    (mac, packet)
}

/// The two MAC addresses of the guest's link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) gateway: EthernetAddress,
    pub(crate) guest: EthernetAddress,
}

/// Writes Ethernet and IPv4 headers for a packet of `payload_len` bytes; returns the IP payload.
fn ipv4(
    frame: &mut Frame,
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
) -> &mut [u8] {
    let buf = frame.prepare(ETH + IPV4 + payload_len);
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: link.gateway,
        dst_addr: link.guest,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH..]);
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    }
    .emit(&mut ip, &ChecksumCapabilities::default());
    &mut buf[ETH + IPV4..]
}

/// The largest UDP payload that fits a frame of `frame_bytes`.
pub(crate) fn max_udp_payload(frame_bytes: usize) -> usize {
    frame_bytes.saturating_sub(ETH + IPV4 + 8).min(65507)
}

/// Builds a UDP datagram for the guest. `payload` must fit (see [`max_udp_payload`]).
pub(crate) fn udp(
    frame: &mut Frame,
    link: Link,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) {
    let body = ipv4(
        frame,
        link,
        *src.ip(),
        *dst.ip(),
        IpProtocol::Udp,
        8 + payload.len(),
    );
    let mut packet = UdpPacket::new_unchecked(body);
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut packet,
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
}

/// Builds the reset that refuses a guest's SYN (`syn_src` -> `syn_dst`, sequence `seq`).
pub(crate) fn refuse_syn(
    frame: &mut Frame,
    link: Link,
    syn_src: SocketAddrV4,
    syn_dst: SocketAddrV4,
    seq: u32,
) {
    let repr = TcpRepr {
        src_port: syn_dst.port(),
        dst_port: syn_src.port(),
        control: TcpControl::Rst,
        seq_number: TcpSeqNumber(0),
        ack_number: Some(TcpSeqNumber(seq.wrapping_add(1) as i32)),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let body = ipv4(
        frame,
        link,
        *syn_dst.ip(),
        *syn_src.ip(),
        IpProtocol::Tcp,
        repr.header_len(),
    );
    let mut packet = TcpPacket::new_unchecked(body);
    repr.emit(
        &mut packet,
        &IpAddress::Ipv4(*syn_dst.ip()),
        &IpAddress::Ipv4(*syn_src.ip()),
        &ChecksumCapabilities::default(),
    );
}

/// Builds the echo reply to an echo request `message` the guest sent from `src` to `dst`.
pub(crate) fn echo_reply(
    frame: &mut Frame,
    link: Link,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    message: &[u8],
) {
    let body = ipv4(frame, link, dst, src, IpProtocol::Icmp, message.len());
    body.copy_from_slice(message);
    body[0] = 0; // echo reply
    body[2] = 0;
    body[3] = 0;
    let sum = internet_checksum(body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::FramePool;

    fn link() -> Link {
        Link {
            gateway: EthernetAddress([2, 0, 0, 0, 0, 1]),
            guest: EthernetAddress([2, 0, 0, 0, 0, 2]),
        }
    }

    #[test]
    fn built_frames_classify_back() {
        let pool = FramePool::new(2048, 4);
        let a: SocketAddrV4 = "10.0.0.2:5000".parse().unwrap();
        let b: SocketAddrV4 = "1.2.3.4:53".parse().unwrap();
        let mut frame = pool.get();
        udp(&mut frame, link(), a, b, b"hello");
        let (mac, packet) = classify(frame.as_slice());
        assert_eq!(mac, Some(link().gateway));
        assert_eq!(
            packet,
            GuestPacket::Udp {
                src: a,
                dst: b,
                payload: b"hello"
            }
        );
        refuse_syn(&mut frame, link(), a, b, 41);
        let tcp = TcpPacket::new_checked(&frame.as_slice()[ETH + IPV4..]).unwrap();
        assert!(tcp.rst() && tcp.ack());
        assert_eq!((tcp.ack_number().0, tcp.src_port()), (42, 53));
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(*b.ip()), &IpAddress::Ipv4(*a.ip())));
        let request = [8u8, 0, 0, 0, 0, 7, 0, 1, b'p', b'i', b'n', b'g', b'!'];
        echo_reply(&mut frame, link(), *a.ip(), *b.ip(), &request);
        let ip = Ipv4Packet::new_checked(&frame.as_slice()[ETH..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (*b.ip(), *a.ip()));
        let icmp = ip.payload();
        assert_eq!((icmp[0], &icmp[4..]), (0, &request[4..]));
        assert_eq!(internet_checksum(icmp), 0);
    }
}
