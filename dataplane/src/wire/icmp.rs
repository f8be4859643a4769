//! The two ICMP errors a tunnel endpoint must generate for path MTU discovery:
//! ICMPv4 "destination unreachable / fragmentation needed" (type 3 code 4,
//! RFC 792 + RFC 1191) and ICMPv6 "packet too big" (type 2, RFC 4443), plus
//! minimal views to parse them.
//!
//! ```text
//! ICMPv4 type 3 code 4:                 ICMPv6 type 2 code 0:
//! | type=3 | code=4 |   checksum    |   | type=2 | code=0 |   checksum    |
//! |    unused=0     | next-hop MTU  |   |              MTU (32)          |
//! | quoted original datagram ...    |   | quoted invoking packet ...     |
//! ```
//!
//! Quoting: ICMPv4 errors quote as much of the original datagram as fits in a
//! 576-byte ICMP datagram (RFC 1812 section 4.3.2.3; RFC 792's minimum is the
//! IP header + 8 bytes). ICMPv6 errors quote as much of the invoking packet as
//! fits without exceeding the IPv6 minimum MTU of 1280 bytes (RFC 4443 2.4(c)).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4::{self, protocol};
use super::{Error, Result, check_len, checksum, ipv6, read_u16, read_u32, write_u16, write_u32};

/// ICMP header length (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

/// The header's fields (the same first 8 bytes in v4 and v6).
pub(crate) mod field {
    use crate::wire::Field;

    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Field = 2..4;
    /// The rest of the header: ICMPv6 packet-too-big's MTU.
    pub(crate) const MTU: Field = 4..8;
    /// ICMPv4 frag-needed: unused.
    pub(crate) const UNUSED_V4: Field = 4..6;
    /// ICMPv4 frag-needed: the next-hop MTU (RFC 1191).
    pub(crate) const NEXT_HOP_MTU: Field = 6..8;
}
/// ICMPv4 destination unreachable.
pub const V4_DEST_UNREACHABLE: u8 = 3;
/// ICMPv4 code: fragmentation needed and DF set.
pub const V4_CODE_FRAG_NEEDED: u8 = 4;
/// ICMPv6 packet too big.
pub const V6_PACKET_TOO_BIG: u8 = 2;
/// Largest ICMPv4 error datagram (IP header included), RFC 1812 4.3.2.3.
pub const V4_MAX_ERROR_LEN: usize = 576;
/// Largest ICMPv6 error packet (IPv6 header included), RFC 4443 2.4(c).
pub const V6_MAX_ERROR_LEN: usize = ipv6::MIN_MTU;

/// A view of an ICMP message (v4 or v6: same first 8 bytes), checked by
/// [`Packet::new_checked`]. The message is the whole buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }
    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// ICMPv4 frag-needed: the next-hop MTU (bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }
    /// ICMPv6 packet-too-big: the MTU (bytes 4..8).
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MTU)
    }
    /// Everything after the 8-byte header (the quoted packet for errors).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// ICMPv4 checksum (over the message only) verifies.
    pub fn verify_checksum_v4(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xFFFF
    }
    /// ICMPv6 checksum (with the pseudo-header) verifies.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, protocol::ICMPV6, len),
            checksum::data(b),
        ]) == 0xFFFF
    }
}

/// True for ICMPv4 error types (never answered with another error).
const fn is_v4_error_type(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

fn v4_source_is_single_host(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_loopback()
        || a.octets()[0] >= 240)
}

/// Builds an IPv4 packet carrying ICMP "fragmentation needed" (type 3 code 4)
/// about `offending` (the IPv4 packet that did not fit, starting at its IP
/// header), addressed to its source, from `router` (our address on the inner
/// side), advertising `next_hop_mtu`. Writes at the start of `out`, returns the
/// length written.
///
/// Refuses ([`Error::NotEligible`], RFC 1122 3.2.2 / RFC 1812 4.3.2.7) to
/// answer an ICMP error, a non-initial fragment, a packet to a broadcast or
/// multicast address, or from an address that is not a single host. Whether DF
/// was set (fragment instead?) is the caller's decision.
pub fn emit_frag_needed_v4(
    out: &mut [u8],
    router: Ipv4Addr,
    offending: &[u8],
    next_hop_mtu: u16,
    ttl: u8,
) -> Result<usize> {
    let p = ipv4::Packet::new_checked(offending)?;
    if p.frag_offset() != 0
        || !v4_source_is_single_host(p.src())
        || p.dst().is_broadcast()
        || p.dst().is_multicast()
    {
        return Err(Error::NotEligible);
    }
    if p.protocol() == protocol::ICMP && p.payload().first().is_some_and(|&t| is_v4_error_type(t)) {
        return Err(Error::NotEligible);
    }
    let original = &offending[..p.total_len()];
    let min_quote = (p.header_len() + 8).min(original.len());
    let fixed = ipv4::HEADER_LEN + HEADER_LEN;
    let room = out.len().min(V4_MAX_ERROR_LEN);
    if room < fixed + min_quote {
        return Err(Error::NoRoom);
    }
    let quote = original.len().min(room - fixed);
    let icmp_len = HEADER_LEN + quote;
    let ip = ipv4::Repr {
        src: router,
        dst: p.src(),
        protocol: protocol::ICMP,
        payload_len: icmp_len,
        ttl,
        tos: 0,
        ident: 0,
        dont_frag: false,
    };
    ip.emit(out)?;
    let m = &mut out[ipv4::HEADER_LEN..ipv4::HEADER_LEN + icmp_len];
    m[field::TYPE] = V4_DEST_UNREACHABLE;
    m[field::CODE] = V4_CODE_FRAG_NEEDED;
    write_u16(m, field::CHECKSUM, 0);
    write_u16(m, field::UNUSED_V4, 0);
    write_u16(m, field::NEXT_HOP_MTU, next_hop_mtu);
    m[HEADER_LEN..].copy_from_slice(&original[..quote]);
    let c = checksum::finish(checksum::data(m));
    write_u16(m, field::CHECKSUM, c);
    Ok(ipv4::HEADER_LEN + icmp_len)
}

/// Builds an IPv6 packet carrying ICMPv6 "packet too big" about `offending`
/// (the IPv6 packet that did not fit), addressed to its source, from `router`,
/// advertising `mtu`. Writes at the start of `out`, returns the length.
///
/// Refuses ([`Error::NotEligible`], RFC 4443 2.4(e)) to answer an ICMPv6 error
/// message (only when ICMPv6 is the first next header: extension headers are
/// not walked) or a packet whose source is unspecified or multicast. Unlike
/// other errors, packet-too-big IS sent for multicast destinations.
pub fn emit_packet_too_big_v6(
    out: &mut [u8],
    router: Ipv6Addr,
    offending: &[u8],
    mtu: u32,
    hop_limit: u8,
) -> Result<usize> {
    let p = ipv6::Packet::new_checked(offending)?;
    if p.src().is_unspecified() || p.src().is_multicast() {
        return Err(Error::NotEligible);
    }
    if p.next_header() == protocol::ICMPV6 && p.payload().first().is_some_and(|&t| t < 128) {
        return Err(Error::NotEligible);
    }
    let original = &offending[..p.total_len()];
    let fixed = ipv6::HEADER_LEN + HEADER_LEN;
    let room = out.len().min(V6_MAX_ERROR_LEN);
    if room < fixed + ipv6::HEADER_LEN.min(original.len()) {
        return Err(Error::NoRoom);
    }
    let quote = original.len().min(room - fixed);
    let icmp_len = HEADER_LEN + quote;
    let ip = ipv6::Repr {
        src: router,
        dst: p.src(),
        next_header: protocol::ICMPV6,
        payload_len: icmp_len,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
    };
    ip.emit(out)?;
    let len32 = u32::try_from(icmp_len).map_err(|_| Error::TooBig)?;
    let m = &mut out[ipv6::HEADER_LEN..ipv6::HEADER_LEN + icmp_len];
    m[field::TYPE] = V6_PACKET_TOO_BIG;
    m[field::CODE] = 0;
    write_u16(m, field::CHECKSUM, 0);
    write_u32(m, field::MTU, mtu);
    m[HEADER_LEN..].copy_from_slice(&original[..quote]);
    let sum = checksum::combine(&[
        checksum::pseudo_header_v6(router, p.src(), protocol::ICMPV6, len32),
        checksum::data(m),
    ]);
    write_u16(m, field::CHECKSUM, checksum::finish(sum));
    Ok(ipv6::HEADER_LEN + icmp_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::udp;

    fn v4_offender(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let r = ipv4::Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 0, 1),
            protocol: protocol::UDP,
            payload_len: len - 20,
            ttl: 63,
            tos: 0,
            ident: 7,
            dont_frag: true,
        };
        r.emit(&mut b).unwrap();
        for (i, x) in b[20..].iter_mut().enumerate() {
            *x = u8::try_from(i % 251).unwrap();
        }
        b
    }

    #[test]
    fn frag_needed_quotes_up_to_576() {
        let off = v4_offender(1500);
        let mut out = [0u8; 2000];
        let n =
            emit_frag_needed_v4(&mut out, Ipv4Addr::new(198, 18, 0, 254), &off, 1400, 64).unwrap();
        assert_eq!(n, 576);
        let ip = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(ip.protocol(), protocol::ICMP);
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()),
            (3, 4, 1400)
        );
        assert!(icmp.verify_checksum_v4());
        assert_eq!(icmp.data(), &off[..576 - 28]);
    }

    #[test]
    fn frag_needed_small_packet_quoted_whole_and_header_vector() {
        let off = v4_offender(40);
        let mut out = [0u8; 100];
        let n =
            emit_frag_needed_v4(&mut out, Ipv4Addr::new(198, 18, 0, 254), &off, 1280, 64).unwrap();
        assert_eq!(n, 20 + 8 + 40);
        assert_eq!(&out[20..24], &[3, 4, out[22], out[23]]);
        assert_eq!(&out[24..28], &[0, 0, 0x05, 0x00]);
        assert_eq!(&out[28..n], &off[..]);
    }

    #[test]
    fn frag_needed_refusals() {
        let router = Ipv4Addr::new(198, 18, 0, 254);
        let mut out = [0u8; 600];
        // An ICMP error about an ICMP error.
        let mut off = v4_offender(56);
        off[9] = protocol::ICMP;
        off[20] = 3;
        assert_eq!(
            emit_frag_needed_v4(&mut out, router, &off, 1400, 64),
            Err(Error::NotEligible)
        );
        // An echo request is fine.
        off[20] = 8;
        assert!(emit_frag_needed_v4(&mut out, router, &off, 1400, 64).is_ok());
        // Non-initial fragment.
        let mut off = v4_offender(56);
        off[7] = 1;
        assert_eq!(
            emit_frag_needed_v4(&mut out, router, &off, 1400, 64),
            Err(Error::NotEligible)
        );
        // Multicast destination.
        let mut off = v4_offender(56);
        off[16] = 224;
        assert_eq!(
            emit_frag_needed_v4(&mut out, router, &off, 1400, 64),
            Err(Error::NotEligible)
        );
        // Too little room.
        let off = v4_offender(56);
        assert_eq!(
            emit_frag_needed_v4(&mut out[..40], router, &off, 1400, 64),
            Err(Error::NoRoom)
        );
        // Garbage.
        assert_eq!(
            emit_frag_needed_v4(&mut out, router, &[0x45, 0], 1400, 64),
            Err(Error::Truncated)
        );
    }

    fn v6_offender(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let r = ipv6::Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: protocol::UDP,
            payload_len: len - 40,
            hop_limit: 63,
            traffic_class: 0,
            flow_label: 0,
        };
        r.emit(&mut b).unwrap();
        udp::Repr {
            src_port: 1,
            dst_port: 2,
        }
        .emit(&mut b[40..], len - 48)
        .unwrap();
        b
    }

    #[test]
    fn packet_too_big_quotes_up_to_1280() {
        let off = v6_offender(1500);
        let router: Ipv6Addr = "2001:db8::fe".parse().unwrap();
        let mut out = [0u8; 2000];
        let n = emit_packet_too_big_v6(&mut out, router, &off, 1400, 64).unwrap();
        assert_eq!(n, 1280);
        let ip = ipv6::Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.dst(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.code(), icmp.mtu()), (2, 0, 1400));
        assert!(icmp.verify_checksum_v6(router, ip.dst()));
        assert_eq!(icmp.data(), &off[..1280 - 48]);
        // An ICMPv6 error is never answered.
        let mut e = v6_offender(100);
        e[6] = protocol::ICMPV6;
        e[40] = 1;
        assert_eq!(
            emit_packet_too_big_v6(&mut out, router, &e, 1400, 64),
            Err(Error::NotEligible)
        );
        e[40] = 128;
        assert!(emit_packet_too_big_v6(&mut out, router, &e, 1400, 64).is_ok());
    }
}
