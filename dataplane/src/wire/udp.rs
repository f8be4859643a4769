//! UDP (RFC 768) header view and checksums over IPv4/IPv6 pseudo-headers.
//!
//! Zero-checksum rules: over IPv4 a checksum field of 0 means "not computed"
//! and always verifies; a computed 0 is sent as 0xFFFF. Over IPv6 the checksum
//! is mandatory (RFC 8200 section 8.1): a field of 0 never verifies. (RFC 6935
//! allows 0 for tunnels only by configuration; we compute it.)

use core::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4::protocol;
use super::{Error, Result, check_len, check_length_field, checksum, read_u16, write_u16};

/// Header length.
pub const HEADER_LEN: usize = 8;

/// The header's fields.
pub(crate) mod field {
    use crate::wire::Field;

    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    /// Header + payload length.
    pub(crate) const LENGTH: Field = 4..6;
    pub(crate) const CHECKSUM: Field = 6..8;
}

/// A view of a UDP datagram, checked by [`Packet::new_checked`].
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header fits and 8 <= length field <= buffer length (bytes
    /// beyond the length field are ignored).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        check_length_field(usize::from(read_u16(b, field::LENGTH)), HEADER_LEN, b.len())?;
        Ok(Self { buffer })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.b(), field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.b(), field::DST_PORT)
    }
    /// Length field (header + payload).
    pub fn len(&self) -> usize {
        usize::from(read_u16(self.b(), field::LENGTH))
    }
    /// Never true for a checked packet (length >= 8); for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.b(), field::CHECKSUM)
    }
    /// Payload (up to the length field).
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.len()]
    }
    fn sum_with(&self, pseudo: u16) -> u16 {
        checksum::combine(&[pseudo, checksum::data(&self.b()[..self.len()])])
    }
    /// Sum over the IPv4 pseudo-header and the datagram (0xFFFF when valid).
    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        self.sum_with(checksum::pseudo_header_v4(
            src,
            dst,
            protocol::UDP,
            u32::from(read_u16(self.b(), field::LENGTH)),
        ))
    }
    fn sum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        self.sum_with(checksum::pseudo_header_v6(
            src,
            dst,
            protocol::UDP,
            u32::from(read_u16(self.b(), field::LENGTH)),
        ))
    }
    /// Verifies over IPv4: a zero checksum field always passes.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.sum_v4(src, dst) == 0xFFFF
    }
    /// Verifies over IPv6: a zero checksum field fails.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0 && self.sum_v6(src, dst) == 0xFFFF
    }
}

/// Maps a computed checksum of 0 to 0xFFFF (0 means "none" on the wire).
#[inline]
pub const fn wire_checksum(c: u16) -> u16 {
    if c == 0 { 0xFFFF } else { c }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }
    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Computes and stores the checksum over the IPv4 pseudo-header.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = wire_checksum(checksum::finish(self.sum_v4(src, dst)));
        self.set_checksum(c);
    }
    /// Computes and stores the checksum over the IPv6 pseudo-header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = wire_checksum(checksum::finish(self.sum_v6(src, dst)));
        self.set_checksum(c);
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

/// A UDP header as plain data (length and checksum derive from the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl Repr {
    /// Reads the ports of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        }
    }
    /// Writes the header for a `payload_len`-byte payload with checksum 0; fill
    /// it with [`Packet::fill_checksum_v4`]/[`Packet::fill_checksum_v6`] once
    /// the payload is in place.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::TooBig)?;
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::NoRoom)?;
        write_u16(b, field::SRC_PORT, self.src_port);
        write_u16(b, field::DST_PORT, self.dst_port);
        write_u16(b, field::LENGTH, len);
        write_u16(b, field::CHECKSUM, 0);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 192.0.2.1:1234 -> 192.0.2.2:53, payload "abc".
    fn v4() -> (Ipv4Addr, Ipv4Addr, [u8; 11]) {
        (
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            [
                0x04, 0xd2, 0x00, 0x35, 0x00, 0x0b, 0x00, 0x00, b'a', b'b', b'c',
            ],
        )
    }

    #[test]
    fn v4_checksum_known_value() {
        let (s, d, mut b) = v4();
        // Pseudo: c000+0201+c000+0202+0011+000b = 0x1841f -> 0x8420
        // UDP: 04d2+0035+000b+0000+6162+6300 = 0xc974; total 0x8420+0xc974 = 0x14d94 -> 0x4d95
        // checksum = !0x4d95 = 0xb26a
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v4(s, d);
        assert_eq!(p.checksum(), 0xb26a);
        assert!(p.verify_checksum_v4(s, d));
        p.set_checksum(0);
        assert!(
            p.verify_checksum_v4(s, d),
            "zero means no checksum over IPv4"
        );
        p.set_checksum(0x1234);
        assert!(!p.verify_checksum_v4(s, d));
    }

    #[test]
    fn v6_zero_checksum_fails() {
        let (_, _, mut b) = v4();
        let (s, d) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert!(!p.verify_checksum_v6(s, d));
        p.fill_checksum_v6(s, d);
        assert!(p.verify_checksum_v6(s, d));
        assert_ne!(p.checksum(), 0);
    }

    #[test]
    fn rejects() {
        let (_, _, b) = v4();
        assert_eq!(Packet::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&b[..10]).unwrap_err(), Error::Truncated);
        let mut w = b;
        w[5] = 7;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Error::Malformed);
    }

    proptest! {
        #[test]
        fn fill_then_verify(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..200), s4 in any::<u32>(), d4 in any::<u32>(), s6 in any::<u128>(), d6 in any::<u128>()) {
            let mut buf = vec![0u8; 8 + payload.len()];
            Repr { src_port: sp, dst_port: dp }.emit(&mut buf, payload.len()).unwrap();
            buf[8..].copy_from_slice(&payload);
            let mut p = Packet::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum_v4(s4.into(), d4.into());
            prop_assert!(p.verify_checksum_v4(s4.into(), d4.into()));
            prop_assert_ne!(p.checksum(), 0);
            p.fill_checksum_v6(s6.into(), d6.into());
            prop_assert!(p.verify_checksum_v6(s6.into(), d6.into()));
            prop_assert_eq!(Repr::parse(&p), Repr { src_port: sp, dst_port: dp });
            prop_assert_eq!(p.payload(), &payload[..]);
        }
    }
}
