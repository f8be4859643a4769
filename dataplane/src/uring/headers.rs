//! Pure header code of the io_uring UDP port: the synthetic Ethernet + IP + UDP
//! header written in front of each received datagram, the parser of the outer
//! header the pipeline leaves in front of each datagram to send, and socket
//! address encoding for the kernel (`sockaddr_in` / `sockaddr_in6` as bytes).
//!
//! No `unsafe`, no OS: everything here is exercised by unit and property tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::engine::DropReason;

/// Ethernet header length (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// Longest synthetic header (Ethernet + IPv6 + UDP).
pub const MAX_SYNTH_LEN: usize = ETH_LEN + IPV6_LEN + UDP_LEN;
/// Destination MAC of synthetic headers (locally administered, fixed: an io_uring
/// port has no link layer).
pub const SYNTH_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Source MAC of synthetic headers.
pub const SYNTH_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// TTL / hop limit written in synthetic headers.
pub const SYNTH_TTL: u8 = 64;
/// Size of the socket-address area: `sizeof(struct sockaddr_in6)`, which also
/// holds a `sockaddr_in`.
pub const SOCKADDR_LEN: usize = 28;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const IPPROTO_UDP: u8 = 17;
// Address families as the kernel spells them (Linux values on every architecture).
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Length of the synthetic header for a datagram of this address family.
pub const fn synth_len(v6: bool) -> usize {
    if v6 {
        ETH_LEN + IPV6_LEN + UDP_LEN
    } else {
        ETH_LEN + IPV4_LEN + UDP_LEN
    }
}

/// Why a synthetic header could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthError {
    /// Source and destination are of different address families.
    FamilyMismatch,
    /// The payload does not fit the IP / UDP length fields.
    TooLong,
    /// `hdr` is not exactly `synth_len` bytes.
    BadBuffer,
}

/// Writes the synthetic Ethernet + IPv4/IPv6 + UDP header describing a datagram
/// of `payload_len` bytes from `src` to `dst` into `hdr`, which must be exactly
/// [`synth_len`] bytes long (the bytes right in front of the payload).
///
/// The IPv4 header checksum is computed (20 bytes, cheap); the UDP checksum is
/// left zero (for IPv6 that is formally invalid, but nothing in the pipeline
/// checks it and the payload is never touched).
pub fn write_synthetic(
    hdr: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
) -> Result<(), SynthError> {
    let v6 = match (src, dst) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => false,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => true,
        _ => return Err(SynthError::FamilyMismatch),
    };
    if hdr.len() != synth_len(v6) {
        return Err(SynthError::BadBuffer);
    }
    let udp_len = u16::try_from(payload_len + UDP_LEN).map_err(|_| SynthError::TooLong)?;
    hdr[0..6].copy_from_slice(&SYNTH_DST_MAC);
    hdr[6..12].copy_from_slice(&SYNTH_SRC_MAC);
    let (ip, udp) = hdr[ETH_LEN..].split_at_mut(if v6 { IPV6_LEN } else { IPV4_LEN });
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total =
                u16::try_from(payload_len + IPV4_LEN + UDP_LEN).map_err(|_| SynthError::TooLong)?;
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&0u16.to_be_bytes()); // id
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = SYNTH_TTL;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let csum = ipv4_checksum(ip);
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ip[0] = 0x60;
            ip[1..4].copy_from_slice(&[0, 0, 0]);
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = SYNTH_TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        _ => return Err(SynthError::FamilyMismatch),
    }
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let et = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    hdr[12..14].copy_from_slice(&et.to_be_bytes());
    Ok(())
}

/// RFC 791 header checksum over `ip` (its checksum field must be zero).
pub fn ipv4_checksum(ip: &[u8]) -> u16 {
    !crate::wire::checksum::data(ip)
}

/// The outer UDP datagram found at the front of a frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterUdp {
    /// Where to send it (outer IP destination and UDP destination port).
    pub dst: SocketAddr,
    /// Offset of the UDP payload from the start of the frame bytes.
    pub payload_off: usize,
    /// UDP payload length (from the UDP length field).
    pub payload_len: usize,
}

/// Why an outer header was rejected on send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OuterError {
    /// Shorter than the headers it must contain.
    Runt,
    /// Length fields claim more bytes than the frame holds, or are inconsistent.
    Truncated,
    /// Not plain Ethernet + IPv4/IPv6 + UDP to a nonzero port (VLAN tags, IP
    /// options are fine for IPv4, fragments, extension headers, other protocols).
    Unsupported,
}

impl OuterError {
    /// The engine's drop reason for this error.
    pub const fn reason(self) -> DropReason {
        match self {
            Self::Runt => DropReason::Runt,
            Self::Truncated => DropReason::Truncated,
            Self::Unsupported => DropReason::Unsupported,
        }
    }
}

/// Parses the outer Ethernet + IPv4/IPv6 + UDP header at the front of `frame`.
/// Never panics, whatever the bytes. Source addresses in the header are
/// ignored: the socket's own address is the source of what it sends.
pub fn parse_outer(frame: &[u8]) -> Result<OuterUdp, OuterError> {
    let eth = frame.get(..ETH_LEN).ok_or(OuterError::Runt)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let ip = &frame[ETH_LEN..];
    let (dst_ip, l4_off, l4_len): (IpAddr, usize, usize) = match ethertype {
        ETHERTYPE_IPV4 => {
            let h = ip.get(..IPV4_LEN).ok_or(OuterError::Runt)?;
            if h[0] >> 4 != 4 {
                return Err(OuterError::Unsupported);
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < IPV4_LEN {
                return Err(OuterError::Truncated);
            }
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if total < ihl + UDP_LEN {
                return Err(OuterError::Runt);
            }
            if total > ip.len() {
                return Err(OuterError::Truncated);
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if frag & 0x3fff != 0 || h[9] != IPPROTO_UDP {
                return Err(OuterError::Unsupported);
            }
            let d = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            (IpAddr::V4(d), ETH_LEN + ihl, total - ihl)
        }
        ETHERTYPE_IPV6 => {
            let h = ip.get(..IPV6_LEN).ok_or(OuterError::Runt)?;
            if h[0] >> 4 != 6 {
                return Err(OuterError::Unsupported);
            }
            if h[6] != IPPROTO_UDP {
                return Err(OuterError::Unsupported);
            }
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if plen < UDP_LEN {
                return Err(OuterError::Runt);
            }
            if IPV6_LEN + plen > ip.len() {
                return Err(OuterError::Truncated);
            }
            let mut d = [0u8; 16];
            d.copy_from_slice(&h[24..40]);
            (IpAddr::V6(Ipv6Addr::from(d)), ETH_LEN + IPV6_LEN, plen)
        }
        _ => return Err(OuterError::Unsupported),
    };
    let udp = frame
        .get(l4_off..l4_off + UDP_LEN)
        .ok_or(OuterError::Runt)?;
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_LEN || udp_len > l4_len {
        return Err(OuterError::Truncated);
    }
    if port == 0 {
        return Err(OuterError::Unsupported);
    }
    Ok(OuterUdp {
        dst: SocketAddr::new(dst_ip, port),
        payload_off: l4_off + UDP_LEN,
        payload_len: udp_len - UDP_LEN,
    })
}

/// Encodes `addr` as the kernel's `sockaddr_in` or `sockaddr_in6` into `out`;
/// returns the length to pass as `socklen_t`.
pub fn encode_sockaddr(addr: SocketAddr, out: &mut [u8; SOCKADDR_LEN]) -> u32 {
    *out = [0; SOCKADDR_LEN];
    match addr {
        SocketAddr::V4(a) => {
            out[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.ip().octets());
            16
        }
        SocketAddr::V6(a) => {
            out[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            out[8..24].copy_from_slice(&a.ip().octets());
            out[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            28
        }
    }
}

/// Decodes a `sockaddr_in` / `sockaddr_in6` the kernel wrote (e.g. in the name
/// area of a multishot recvmsg buffer). `None` for other families or short input.
pub fn decode_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    match family {
        AF_INET if b.len() >= 16 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(b[4], b[5], b[6], b[7]),
                port,
            )))
        }
        AF_INET6 if b.len() >= SOCKADDR_LEN => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Converts a destination to the family of a socket: IPv4 destinations become
/// IPv4-mapped IPv6 addresses on an IPv6 socket; IPv6 destinations on an IPv4
/// socket are refused (`None`).
pub fn to_socket_family(dst: SocketAddr, socket_v6: bool) -> Option<SocketAddr> {
    match (dst, socket_v6) {
        (SocketAddr::V4(_), false) | (SocketAddr::V6(_), true) => Some(dst),
        (SocketAddr::V4(a), true) => Some(SocketAddr::V6(SocketAddrV6::new(
            a.ip().to_ipv6_mapped(),
            a.port(),
            0,
            0,
        ))),
        (SocketAddr::V6(a), false) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, a.port()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_with(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let hl = synth_len(src.is_ipv6());
        let mut f = vec![0u8; hl + payload.len()];
        write_synthetic(&mut f[..hl], src, dst, payload.len()).unwrap();
        f[hl..].copy_from_slice(payload);
        f
    }

    #[test]
    fn synthetic_v4_roundtrips_and_checksums() {
        let src: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        let dst: SocketAddr = "198.18.0.2:5000".parse().unwrap();
        let f = frame_with(src, dst, b"hello");
        assert_eq!(f.len(), 42 + 5);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A correct header checksums to zero when summed with its checksum.
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 20 + 8 + 5);
        assert_eq!(&f[26..30], &[198, 18, 0, 1]);
        let o = parse_outer(&f).unwrap();
        assert_eq!(
            o,
            OuterUdp {
                dst,
                payload_off: 42,
                payload_len: 5
            }
        );
        assert_eq!(&f[o.payload_off..o.payload_off + o.payload_len], b"hello");
    }

    #[test]
    fn synthetic_v6_roundtrips() {
        let src: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:5000".parse().unwrap();
        let f = frame_with(src, dst, &[7u8; 100]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 108);
        let o = parse_outer(&f).unwrap();
        assert_eq!(
            o,
            OuterUdp {
                dst,
                payload_off: 62,
                payload_len: 100
            }
        );
    }

    #[test]
    fn synthetic_rejects_mixed_families_and_bad_buffers() {
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(
            write_synthetic(&mut [0; 42], a, b, 1),
            Err(SynthError::FamilyMismatch)
        );
        assert_eq!(
            write_synthetic(&mut [0; 41], a, a, 1),
            Err(SynthError::BadBuffer)
        );
        assert_eq!(
            write_synthetic(&mut [0; 42], a, a, 70_000),
            Err(SynthError::TooLong)
        );
    }

    #[test]
    fn outer_rejects_malformed() {
        let src: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        let dst: SocketAddr = "198.18.0.2:5000".parse().unwrap();
        let good = frame_with(src, dst, b"abcdef");
        assert_eq!(parse_outer(&good[..10]), Err(OuterError::Runt));
        assert_eq!(parse_outer(&good[..30]), Err(OuterError::Runt));
        let mut f = good.clone();
        f[12] = 0x81; // VLAN
        assert_eq!(parse_outer(&f), Err(OuterError::Unsupported));
        let mut f = good.clone();
        f[23] = 6; // TCP
        assert_eq!(parse_outer(&f), Err(OuterError::Unsupported));
        let mut f = good.clone();
        f[14] = 0x44; // IHL 16 bytes
        assert_eq!(parse_outer(&f), Err(OuterError::Truncated));
        let mut f = good.clone();
        f[17] = 200; // total length beyond frame
        assert_eq!(parse_outer(&f), Err(OuterError::Truncated));
        let mut f = good.clone();
        f[39] = 200; // UDP length beyond IP payload
        assert_eq!(parse_outer(&f), Err(OuterError::Truncated));
        let mut f = good.clone();
        f[20] = 0x20; // more fragments
        assert_eq!(parse_outer(&f), Err(OuterError::Unsupported));
        let mut f = good;
        f[36..38].copy_from_slice(&[0, 0]); // port 0
        assert_eq!(parse_outer(&f), Err(OuterError::Unsupported));
    }

    #[test]
    fn outer_accepts_ipv4_options_and_padding() {
        // IHL 6 (4 bytes of options) and 10 bytes of Ethernet padding at the end.
        let mut f = vec![0u8; 14 + 24 + 8 + 3 + 10];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x46;
        f[16..18].copy_from_slice(&(24u16 + 8 + 3).to_be_bytes());
        f[23] = 17;
        f[30..34].copy_from_slice(&[198, 18, 1, 1]);
        f[38 + 2..38 + 4].copy_from_slice(&9u16.to_be_bytes());
        f[38 + 4..38 + 6].copy_from_slice(&11u16.to_be_bytes());
        let o = parse_outer(&f).unwrap();
        assert_eq!(o.dst, "198.18.1.1:9".parse().unwrap());
        assert_eq!((o.payload_off, o.payload_len), (46, 3));
    }

    #[test]
    fn sockaddr_roundtrip_and_family_mapping() {
        for s in ["198.18.3.4:65535", "[2001:db8::5]:7", "[fe80::1%3]:9"] {
            let a: SocketAddr = s.parse().unwrap();
            let mut b = [0u8; SOCKADDR_LEN];
            let len = encode_sockaddr(a, &mut b);
            assert_eq!(len, if a.is_ipv6() { 28 } else { 16 });
            assert_eq!(decode_sockaddr(&b[..len as usize]), Some(a));
        }
        assert_eq!(decode_sockaddr(&[0, 0, 1, 2]), None);
        assert_eq!(decode_sockaddr(&[]), None);
        let v4: SocketAddr = "198.18.0.9:53".parse().unwrap();
        assert_eq!(
            to_socket_family(v4, true),
            Some("[::ffff:198.18.0.9]:53".parse().unwrap())
        );
        assert_eq!(to_socket_family(v4, false), Some(v4));
        assert_eq!(
            to_socket_family("[2001:db8::1]:53".parse().unwrap(), false),
            None
        );
    }

    proptest! {
        #[test]
        fn parse_outer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(o) = parse_outer(&bytes) {
                prop_assert!(o.payload_off + o.payload_len <= bytes.len());
            }
        }

        #[test]
        fn parse_outer_survives_mutations(pos in 0usize..70, val in any::<u8>(), v6 in any::<bool>(), n in 0usize..40) {
            let (src, dst): (SocketAddr, SocketAddr) = if v6 {
                ("[2001:db8::1]:1".parse().unwrap(), "[2001:db8::2]:2".parse().unwrap())
            } else {
                ("198.18.0.1:1".parse().unwrap(), "198.18.0.2:2".parse().unwrap())
            };
            let mut f = frame_with(src, dst, &vec![0xaa; n]);
            if pos < f.len() {
                f[pos] = val;
            }
            if let Ok(o) = parse_outer(&f) {
                prop_assert!(o.payload_off + o.payload_len <= f.len());
            }
        }

        #[test]
        fn synthetic_then_parse_is_identity(a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), sp in any::<u16>(), dp in 1u16.., n in 0usize..1500) {
            let src = SocketAddr::from((a, sp));
            let dst = SocketAddr::from((b, dp));
            let f = frame_with(src, dst, &vec![1; n]);
            prop_assert_eq!(parse_outer(&f), Ok(OuterUdp { dst, payload_off: 42, payload_len: n }));
            prop_assert_eq!(ipv4_checksum(&f[14..34]), 0);
        }
    }
}
