//! TCP (RFC 9293) header view: the ports and the control flags, what the
//! classifier needs to follow a connection's start and end. Options, sequence
//! numbers and checksums are not read (the gateway forwards TCP untouched).

use super::{Result, check_len, read_u16};

/// Length of the fixed header (no options).
pub const HEADER_LEN: usize = 20;

/// The header's fields.
pub(crate) mod field {
    use crate::wire::Field;

    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    /// Data offset (4 bits), reserved bits, and the 8 flag bits.
    pub(crate) const FLAGS: Field = 12..14;
}

/// Control flag bits (the low byte of the data-offset/flags word).
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers (connection start).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment, checked by [`Packet::new_checked`].
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the fixed header fits. The data offset is not checked:
    /// nothing here reads beyond the fixed header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref(), HEADER_LEN)?;
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
    /// The eight control flags ([`flags`]).
    pub fn flags(&self) -> u8 {
        read_u16(self.b(), field::FLAGS).to_be_bytes()[1]
    }
    /// Header length from the data offset, bytes (as written: may be below
    /// 20 or beyond the buffer in a malformed segment).
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::FLAGS.start] >> 4) * 4
    }
    /// FIN set.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    /// SYN set.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    /// RST set.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    /// ACK set.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
}

/// The fields of a TCP header the gateway reads, as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Control flags.
    pub flags: u8,
}

impl Repr {
    /// Reads a checked segment.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            flags: p.flags(),
        }
    }
    /// Writes a 20-byte header without options (data offset 5, sequence and
    /// acknowledgment numbers, window, checksum and urgent pointer 0).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..HEADER_LEN).ok_or(super::Error::NoRoom)?;
        b.fill(0);
        super::write_u16(b, field::SRC_PORT, self.src_port);
        super::write_u16(b, field::DST_PORT, self.dst_port);
        super::write_u16(b, field::FLAGS, 5 << 12 | u16::from(self.flags));
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;
    use proptest::prelude::*;

    #[test]
    fn known_segment() {
        // 40000 -> 443, data offset 8 (with options), FIN|ACK.
        let mut b = [0u8; 32];
        b[0..2].copy_from_slice(&40000u16.to_be_bytes());
        b[2..4].copy_from_slice(&443u16.to_be_bytes());
        b[12] = 8 << 4;
        b[13] = flags::FIN | flags::ACK;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert!(p.fin() && p.ack() && !p.syn() && !p.rst());
        assert_eq!(p.header_len(), 32);
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
    }

    proptest! {
        #[test]
        fn emit_then_parse(sp in any::<u16>(), dp in any::<u16>(), f in any::<u8>()) {
            let r = Repr { src_port: sp, dst_port: dp, flags: f };
            let mut buf = [0xAAu8; 24];
            prop_assert_eq!(r.emit(&mut buf), Ok(HEADER_LEN));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), r);
            prop_assert_eq!(p.header_len(), HEADER_LEN);
            prop_assert_eq!(p.rst(), f & flags::RST != 0);
        }
    }
}
