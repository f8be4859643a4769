//! IPv6 (RFC 8200) fixed header view. Extension headers are not walked: the
//! payload is whatever `next_header` names.
//!
//! ```text
//! +-------+---------------+---------------------------------------+
//! |Version| Traffic Class |              Flow Label               |
//! |        Payload Length         |  Next Header  |   Hop Limit   |
//! |                  Source Address (128 bits)                    |
//! |               Destination Address (128 bits)                  |
//! ```

use core::net::Ipv6Addr;

use super::{
    Error, Result, check_len, check_length_field, read_u16, read_u32, write_u16, write_u32,
};

/// Fixed header length.
pub const HEADER_LEN: usize = 40;

/// The fixed header's fields.
pub(crate) mod field {
    use crate::wire::Field;

    /// The version's byte (its high nibble).
    pub(crate) const VERSION: usize = 0;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub(crate) const VER_TC_FLOW: Field = 0..4;
    /// Payload length (the header excluded).
    pub(crate) const PAYLOAD_LEN: Field = 4..6;
    pub(crate) const NEXT_HEADER: usize = 6;
    pub(crate) const HOP_LIMIT: usize = 7;
    pub(crate) const SRC_ADDR: Field = 8..24;
    pub(crate) const DST_ADDR: Field = 24..40;
}
/// The minimum link MTU every IPv6 path supports (RFC 8200 section 5).
pub const MIN_MTU: usize = 1280;

/// A view of an IPv6 packet, checked by [`Packet::new_checked`].
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version 6 and that header + payload length fit in the buffer
    /// (trailing bytes are ignored). Jumbograms (payload length 0 with a
    /// hop-by-hop jumbo option) are not supported: length 0 means empty.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        if b[field::VERSION] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        let total = HEADER_LEN + usize::from(read_u16(b, field::PAYLOAD_LEN));
        check_length_field(total, HEADER_LEN, b.len())?;
        Ok(Self { buffer })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Traffic class (DSCP/ECN).
    pub fn traffic_class(&self) -> u8 {
        let w = read_u32(self.b(), field::VER_TC_FLOW);
        (w >> 20).to_be_bytes()[3]
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        read_u32(self.b(), field::VER_TC_FLOW) & 0x000F_FFFF
    }
    /// Payload length.
    pub fn payload_len(&self) -> usize {
        usize::from(read_u16(self.b(), field::PAYLOAD_LEN))
    }
    /// Header + payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.b()[field::NEXT_HEADER]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }
    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }
    /// The payload (payload length bytes after the header).
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Decrements the hop limit as a router does (no checksum in IPv6). Returns
    /// the new value, or [`Error::Expired`] (packet untouched) at 0 or 1.
    pub fn decrement_hop_limit(&mut self) -> Result<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return Err(Error::Expired);
        }
        self.set_hop_limit(h - 1);
        Ok(h - 1)
    }
    /// Sets the flow label (masked to 20 bits).
    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let w = (read_u32(b, field::VER_TC_FLOW) & 0xFFF0_0000) | (label & 0x000F_FFFF);
        write_u32(b, field::VER_TC_FLOW, w);
    }
    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let w = (read_u32(b, field::VER_TC_FLOW) & 0xF00F_FFFF) | (u32::from(tc) << 20);
        write_u32(b, field::VER_TC_FLOW, w);
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// An IPv6 fixed header as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        }
    }
    /// Writes the 40-byte header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let plen = u16::try_from(self.payload_len).map_err(|_| Error::TooBig)?;
        if self.flow_label > 0x000F_FFFF {
            return Err(Error::Malformed);
        }
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::NoRoom)?;
        write_u32(
            b,
            field::VER_TC_FLOW,
            (6 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label,
        );
        write_u16(b, field::PAYLOAD_LEN, plen);
        b[field::NEXT_HEADER] = self.next_header;
        b[field::HOP_LIMIT] = self.hop_limit;
        b[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        b[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 6, tc 0xb8 (EF), label 0x12345, plen 4, UDP, hop 64, 2001:db8::1 -> 2001:db8::2
    const V: [u8; 44] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x04, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4,
    ];

    #[test]
    fn parses_known_vector() {
        let p = Packet::new_checked(&V[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        let mut out = [0u8; 40];
        Repr::parse(&p).emit(&mut out).unwrap();
        assert_eq!(&out[..], &V[..40]);
    }

    #[test]
    fn rejects_and_hop_limit() {
        assert_eq!(Packet::new_checked(&V[..43]).unwrap_err(), Error::Truncated);
        let mut w = V;
        w[0] = 0x4b;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Error::Malformed);
        let mut w = V;
        let mut p = Packet::new_checked(&mut w[..]).unwrap();
        assert_eq!(p.decrement_hop_limit(), Ok(63));
        p.set_hop_limit(1);
        assert_eq!(p.decrement_hop_limit(), Err(Error::Expired));
        p.set_flow_label(0xFFFFFFFF);
        p.set_traffic_class(0x01);
        assert_eq!(p.flow_label(), 0xFFFFF);
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.b()[0] >> 4, 6);
    }

    proptest! {
        #[test]
        fn emit_parse_roundtrip(src in any::<u128>(), dst in any::<u128>(), nh in any::<u8>(), len in 0usize..64, hop in any::<u8>(), tc in any::<u8>(), fl in 0u32..0x100000) {
            let r = Repr { src: Ipv6Addr::from(src), dst: Ipv6Addr::from(dst), next_header: nh, payload_len: len, hop_limit: hop, traffic_class: tc, flow_label: fl };
            let mut buf = vec![0u8; 40 + len];
            r.emit(&mut buf).unwrap();
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), r);
        }
    }
}
