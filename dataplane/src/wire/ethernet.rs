//! Ethernet II frames with at most one IEEE 802.1Q tag.
//!
//! ```text
//!  0                   6                  12      14
//! +-------------------+-------------------+-------+----------
//! | destination MAC   | source MAC        | type  | payload
//! +-------------------+-------------------+-------+----------
//! with a tag:                             | 8100  | TCI | type | payload
//! ```

use super::{Error, Result, check_len, get_u16, put_u16, read_u16, write_u16};

/// Ethernet header length without a tag.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

/// The header's fields.
pub(crate) mod field {
    use crate::wire::Field;

    pub(crate) const DST: Field = 0..6;
    pub(crate) const SRC: Field = 6..12;
    /// The EtherType, or the tag's TPID (0x8100) in a tagged frame.
    pub(crate) const TYPE_OR_TPID: Field = 12..14;
    /// A tagged frame's TCI; its EtherType follows.
    pub(crate) const TCI: Field = 14..16;
}

/// EtherType values used here.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// Transparent Ethernet bridging: GENEVE's protocol type for an inner Ethernet frame.
    pub const TEB: u16 = 0x6558;
    /// IEEE 802.1Q tag.
    pub const VLAN: u16 = 0x8100;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// IEEE 802.1ad service tag (QinQ); not parsed, reported as the EtherType.
    pub const QINQ: u16 = 0x88A8;
    /// IEEE 802 Local Experimental EtherType 1: mongate OAM payloads in GENEVE.
    pub const LOCAL_EXPERIMENTAL_1: u16 = 0x88B5;
    /// IEEE 802 Local Experimental EtherType 2: sealed mongate data payloads
    /// in GENEVE (ciphertext, not an Ethernet frame).
    pub const LOCAL_EXPERIMENTAL_2: u16 = 0x88B6;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// Group bit set (multicast or broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
}

impl core::str::FromStr for MacAddr {
    type Err = Error;
    /// Parses `aa:bb:cc:dd:ee:ff` (hex, any case).
    fn from_str(s: &str) -> core::result::Result<Self, Error> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or(Error::Malformed)?;
            if p.len() != 2 {
                return Err(Error::Malformed);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| Error::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed);
        }
        Ok(MacAddr(out))
    }
}

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An 802.1Q tag control information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id, 0..=4095.
    pub vid: u16,
}

impl VlanTag {
    /// From the 16-bit TCI.
    pub fn from_tci(tci: u16) -> Self {
        let [hi, _] = tci.to_be_bytes();
        Self {
            pcp: hi >> 5,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0FFF,
        }
    }
    /// The 16-bit TCI (out-of-range fields are masked).
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0FFF)
    }
}

/// A view of an Ethernet frame, checked by [`Frame::new_checked`].
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks the buffer holds a full header (including the tag, if any).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        if read_u16(b, field::TYPE_OR_TPID) == ethertype::VLAN {
            check_len(b, HEADER_LEN + VLAN_TAG_LEN)?;
        }
        Ok(Self { buffer })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }
    /// Source address.
    pub fn src(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }
    fn tagged(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::TYPE_OR_TPID) == ethertype::VLAN
    }
    /// The 802.1Q tag, if present.
    pub fn vlan(&self) -> Option<VlanTag> {
        self.tagged()
            .then(|| VlanTag::from_tci(read_u16(self.buffer.as_ref(), field::TCI)))
    }
    /// The EtherType of the payload (after the tag, if any).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), self.header_len() - 2)
    }
    /// Header length: 14, or 18 with a tag.
    pub fn header_len(&self) -> usize {
        if self.tagged() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
    /// Everything after the header (including any padding to the minimum frame size).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }
    /// Sets the source address.
    pub fn set_src(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }
    /// Sets the payload EtherType (after the tag, if any).
    pub fn set_ethertype(&mut self, t: u16) {
        let at = self.header_len() - 2;
        put_u16(self.buffer.as_mut(), at, t);
    }
    /// Rewrites the tag's TCI; does nothing on an untagged frame (adding a tag
    /// changes the header length: emit a new header instead).
    pub fn set_vlan(&mut self, tag: VlanTag) {
        if self.tagged() {
            write_u16(self.buffer.as_mut(), field::TCI, tag.tci());
        }
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// An Ethernet header as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: MacAddr,
    /// Destination address.
    pub dst: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// Payload EtherType.
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> Self {
        Self {
            src: f.src(),
            dst: f.dst(),
            vlan: f.vlan(),
            ethertype: f.ethertype(),
        }
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let hl = self.header_len();
        let b = buf.get_mut(..hl).ok_or(Error::NoRoom)?;
        b[field::DST].copy_from_slice(&self.dst.0);
        b[field::SRC].copy_from_slice(&self.src.0);
        if let Some(tag) = self.vlan {
            write_u16(b, field::TYPE_OR_TPID, ethertype::VLAN);
            write_u16(b, field::TCI, tag.tci());
        }
        put_u16(b, hl - 2, self.ethertype);
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0xaa, 0xbb,
    ];
    const TAGGED: [u8; 20] = [
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd, 0xaa, 0xbb,
    ];

    #[test]
    fn parses_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.vlan(), None);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn parses_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(
            f.vlan(),
            Some(VlanTag {
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn emit_matches_vectors() {
        for v in [&UNTAGGED[..], &TAGGED[..]] {
            let r = Repr::parse(&Frame::new_checked(v).unwrap());
            let mut out = [0u8; 18];
            let n = r.emit(&mut out).unwrap();
            assert_eq!(&out[..n], &v[..n]);
        }
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Frame::new_checked(&TAGGED[..17]).unwrap_err(),
            Error::Truncated
        );
        let r = Repr::parse(&Frame::new_checked(&TAGGED[..]).unwrap());
        assert_eq!(r.emit(&mut [0u8; 17]).unwrap_err(), Error::NoRoom);
    }

    #[test]
    fn setters() {
        let mut b = TAGGED;
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_vlan(VlanTag {
            pcp: 1,
            dei: true,
            vid: 4095,
        });
        f.set_ethertype(ethertype::IPV4);
        f.set_src(MacAddr([9; 6]));
        assert_eq!(
            f.vlan(),
            Some(VlanTag {
                pcp: 1,
                dei: true,
                vid: 4095
            })
        );
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.src(), MacAddr([9; 6]));
    }
}
