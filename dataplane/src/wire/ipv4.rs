//! IPv4 (RFC 791) header view.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP/ECN    |          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)                          |
//! ```

use core::net::Ipv4Addr;

use super::{Error, Result, check_len, check_length_field, checksum, read_u16, write_u16};

/// Header length without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The header's fields.
pub(crate) mod field {
    use crate::wire::Field;

    /// Version (high nibble) and IHL (low nibble, 4-byte words).
    pub(crate) const VER_IHL: usize = 0;
    /// DSCP (6 bits) and ECN (2), the former TOS.
    pub(crate) const TOS: usize = 1;
    /// Header + payload length.
    pub(crate) const TOTAL_LEN: Field = 2..4;
    pub(crate) const IDENT: Field = 4..6;
    /// Flags (3 bits) and fragment offset (13, 8-byte units).
    pub(crate) const FLAGS_FRAG: Field = 6..8;
    pub(crate) const TTL: usize = 8;
    pub(crate) const PROTOCOL: usize = 9;
    pub(crate) const CHECKSUM: Field = 10..12;
    pub(crate) const SRC_ADDR: Field = 12..16;
    pub(crate) const DST_ADDR: Field = 16..20;
}

/// IP protocol numbers used here.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet, checked by [`Packet::new_checked`].
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version 4, IHL >= 5, and that the header and the total length fit
    /// in the buffer (bytes beyond the total length, e.g. Ethernet padding, are
    /// allowed and ignored). Does not verify the checksum: see
    /// [`Packet::verify_checksum`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0F) * 4;
        check_length_field(hl, HEADER_LEN, b.len())?;
        check_length_field(usize::from(read_u16(b, field::TOTAL_LEN)), hl, b.len())?;
        Ok(Self { buffer })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Header length in bytes (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0F) * 4
    }
    /// The options bytes (empty when IHL = 5).
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }
    /// DSCP and ECN byte (former TOS).
    pub fn tos(&self) -> u8 {
        self.b()[field::TOS]
    }
    /// DSCP (upper 6 bits of the TOS byte).
    pub fn dscp(&self) -> u8 {
        self.b()[field::TOS] >> 2
    }
    /// ECN (lower 2 bits).
    pub fn ecn(&self) -> u8 {
        self.b()[field::TOS] & 3
    }
    /// Total length (header + payload).
    pub fn total_len(&self) -> usize {
        usize::from(read_u16(self.b(), field::TOTAL_LEN))
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.b(), field::IDENT)
    }
    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.b(), field::FLAGS_FRAG) & FLAG_DF != 0
    }
    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        read_u16(self.b(), field::FLAGS_FRAG) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(read_u16(self.b(), field::FLAGS_FRAG) & FRAG_MASK) * 8
    }
    /// True for any fragment (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    /// Payload protocol.
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.b(), field::CHECKSUM)
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.b()[field::SRC_ADDR]);
        Ipv4Addr::from(a)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.b()[field::DST_ADDR]);
        Ipv4Addr::from(a)
    }
    /// True when the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.b()[..self.header_len()]) == 0xFFFF
    }
    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the identification (checksum not updated).
    pub fn set_ident(&mut self, v: u16) {
        write_u16(self.bm(), field::IDENT, v);
    }
    /// Sets the TTL (checksum not updated).
    pub fn set_ttl(&mut self, v: u8) {
        self.bm()[field::TTL] = v;
    }
    /// Sets the TOS byte (checksum not updated).
    pub fn set_tos(&mut self, v: u8) {
        self.bm()[field::TOS] = v;
    }
    /// Sets the source address (checksum not updated).
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.bm()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }
    /// Sets the destination address (checksum not updated).
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.bm()[field::DST_ADDR].copy_from_slice(&a.octets());
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.bm(), field::CHECKSUM, v);
    }
    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::finish(checksum::data(&self.b()[..hl]));
        self.set_checksum(c);
    }
    /// Decrements the TTL as a router does, updating the checksum incrementally
    /// (RFC 1624). Returns the new TTL, or [`Error::Expired`] (and leaves the
    /// packet untouched) when the TTL is 0 or 1 so it must not be forwarded.
    pub fn decrement_ttl(&mut self) -> Result<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return Err(Error::Expired);
        }
        let proto = self.protocol();
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        Ok(ttl - 1)
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.bm()[hl..tl]
    }
}

/// An IPv4 header (without options) as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Repr {
    /// Reads the header of a checked packet. Rejects fragments
    /// ([`Error::Unsupported`]); options are skipped; the checksum is not checked.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        if p.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Self {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }
    /// Writes a 20-byte header with its checksum at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| Error::TooBig)?;
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::NoRoom)?;
        b[field::VER_IHL] = 0x45;
        b[field::TOS] = self.tos;
        write_u16(b, field::TOTAL_LEN, total);
        write_u16(b, field::IDENT, self.ident);
        write_u16(
            b,
            field::FLAGS_FRAG,
            if self.dont_frag { FLAG_DF } else { 0 },
        );
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol;
        write_u16(b, field::CHECKSUM, 0);
        b[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        b[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        let c = checksum::finish(checksum::data(b));
        write_u16(b, field::CHECKSUM, c);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // A well-known header (checksum 0xb861) followed by 0x73 - 20 = 95 payload bytes.
    fn vector() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        v.resize(0x73, 0xee);
        v
    }

    #[test]
    fn parses_known_vector() {
        let v = vector();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.ttl(), 64);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.payload().len(), 95);
        let r = Repr::parse(&p).unwrap();
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(&out[..], &v[..20]);
    }

    #[test]
    fn rejects_bad_headers() {
        let v = vector();
        assert_eq!(Packet::new_checked(&v[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&v[..0x72]).unwrap_err(),
            Error::Truncated
        );
        let mut w = v.clone();
        w[0] = 0x65;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Error::Malformed);
        w[0] = 0x44;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Error::Malformed);
        w[0] = 0x4f;
        assert!(Packet::new_checked(&w[..]).is_ok());
        w[0] = 0x45;
        w[2] = 0;
        w[3] = 19;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Error::Malformed);
        let mut w = v;
        w[10] ^= 1;
        assert!(!Packet::new_checked(&w[..]).unwrap().verify_checksum());
    }

    #[test]
    fn ttl_expiry() {
        let mut v = vector();
        v[8] = 1;
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.decrement_ttl(), Err(Error::Expired));
        assert_eq!(p.ttl(), 1);
    }

    proptest! {
        #[test]
        fn ttl_decrement_keeps_checksum_valid(ttl in 2u8.., proto in any::<u8>(), ident in any::<u16>(), src in any::<u32>(), dst in any::<u32>(), len in 0usize..100) {
            let r = Repr { src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst), protocol: proto, payload_len: len, ttl, tos: 0, ident, dont_frag: true };
            let mut buf = vec![0u8; 20 + len];
            r.emit(&mut buf).unwrap();
            let mut p = Packet::new_checked(&mut buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.decrement_ttl(), Ok(ttl - 1));
            prop_assert!(p.verify_checksum());
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
        }

        #[test]
        fn emit_parse_roundtrip(ttl in any::<u8>(), proto in any::<u8>(), ident in any::<u16>(), tos in any::<u8>(), df in any::<bool>(), src in any::<u32>(), dst in any::<u32>(), len in 0usize..100) {
            let r = Repr { src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst), protocol: proto, payload_len: len, ttl, tos, ident, dont_frag: df };
            let mut buf = vec![0u8; 20 + len];
            r.emit(&mut buf).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }
    }
}
