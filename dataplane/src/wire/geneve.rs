//! GENEVE (RFC 8926) header, option TLVs, and mongate's own options.
//!
//! ```text
//! GENEVE header (8 bytes + options):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//!
//! Option TLV:
//! |          Option Class         |      Type     |R|R|R| Length  |
//! |                  Variable-Length Option Data                  |
//! ```
//!
//! Opt Len and Length count 4-byte words (the header/TLV header excluded).
//! Type's high bit (0x80) marks a critical option: a receiver that does not
//! understand it MUST drop the packet ([`Error::UnknownCritical`]).
//!
//! mongate uses option class [`MONGATE_CLASS`] (0xFFF0, in the experimental
//! range 0xFFF0..=0xFFFF) with two types:
//! - [`FLOW_OPTION_TYPE`] (0x01, non-critical): flow id, sequence, send timestamp.
//! - [`SECURITY_OPTION_TYPE`] (0x82, critical): receiver index and AEAD counter;
//!   its presence also means a [`AEAD_TAG_LEN`]-byte tag trails the inner frame.

use super::{
    Error, Result, check_len, read_u16, read_u32, read_u64, write_u16, write_u32, write_u64,
};

/// IANA UDP destination port for GENEVE.
pub const UDP_PORT: u16 = 6081;
/// Fixed header length.
pub const HEADER_LEN: usize = 8;
/// The only version defined.
pub const VERSION: u8 = 0;
/// Largest options area (Opt Len is 6 bits of 4-byte words).
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Option TLV header length.
pub const OPTION_HEADER_LEN: usize = 4;
/// Critical bit of the option type.
pub const CRITICAL: u8 = 0x80;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00FF_FFFF;

/// mongate's option class (experimental range 0xFFF0..=0xFFFF, RFC 8926 7.2).
pub const MONGATE_CLASS: u16 = 0xFFF0;
/// Flow option type: non-critical (a receiver may ignore it and still deliver).
pub const FLOW_OPTION_TYPE: u8 = 0x01;
/// Flow option data length: flow id (4) + sequence (8) + timestamp (8).
pub const FLOW_OPTION_DATA_LEN: usize = 20;
/// Flow option total length (TLV header included).
pub const FLOW_OPTION_LEN: usize = OPTION_HEADER_LEN + FLOW_OPTION_DATA_LEN;
/// Security option type: critical (a receiver that cannot authenticate must drop).
pub const SECURITY_OPTION_TYPE: u8 = CRITICAL | 0x02;
/// Security option data length: receiver index (4) + counter (8).
pub const SECURITY_OPTION_DATA_LEN: usize = 12;
/// Security option total length.
pub const SECURITY_OPTION_LEN: usize = OPTION_HEADER_LEN + SECURITY_OPTION_DATA_LEN;
/// AEAD tag appended after the (encrypted) inner frame when the security option is present.
pub const AEAD_TAG_LEN: usize = 16;

/// The O bit: an OAM (control) message.
pub(crate) const FLAG_O: u8 = 0x80;
/// The C bit: critical options present.
const FLAG_C: u8 = 0x40;

/// The fields of the header, of an option TLV, and of mongate's options' data.
pub(crate) mod field {
    use crate::wire::Field;

    /// Version (2 bits) and Opt Len (6 bits, 4-byte words).
    pub(crate) const VER_OPT_LEN: usize = 0;
    /// The O and C bits.
    pub(crate) const FLAGS: usize = 1;
    pub(crate) const PROTOCOL: Field = 2..4;
    /// VNI (24 bits) and the reserved byte.
    pub(crate) const VNI: Field = 4..8;
    pub(crate) const RESERVED: usize = 7;

    /// Option TLV: class.
    pub(crate) const OPT_CLASS: Field = 0..2;
    /// Option TLV: type (high bit = critical).
    pub(crate) const OPT_TYPE: usize = 2;
    /// Option TLV: 3 reserved bits and the data length (5 bits, 4-byte words).
    pub(crate) const OPT_LENGTH: usize = 3;

    /// Flow option data: flow id.
    pub(crate) const FLOW_ID: Field = 0..4;
    /// Flow option data: sequence number.
    pub(crate) const FLOW_SEQ: Field = 4..12;
    /// Flow option data: send timestamp.
    pub(crate) const FLOW_TIMESTAMP: Field = 12..20;

    /// Security option data: receiver index (selects the receiver's key).
    pub(crate) const SEC_RECEIVER: Field = 0..4;
    /// Security option data: AEAD counter.
    pub(crate) const SEC_COUNTER: Field = 4..12;
}

/// A view of a GENEVE header, checked by [`Header::new_checked`].
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks version 0 ([`Error::Unsupported`] otherwise, RFC 8926 3.4:
    /// unknown versions are dropped) and that the options fit. Options are
    /// not walked: use [`Header::options`] / [`parse_options`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        if b[field::VER_OPT_LEN] >> 6 != VERSION {
            return Err(Error::Unsupported);
        }
        check_len(
            b,
            HEADER_LEN + usize::from(b[field::VER_OPT_LEN] & 0x3F) * 4,
        )?;
        Ok(Self { buffer })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Version (always 0 once checked).
    pub fn version(&self) -> u8 {
        self.b()[field::VER_OPT_LEN] >> 6
    }
    /// Length of the options area in bytes.
    pub fn options_len(&self) -> usize {
        usize::from(self.b()[field::VER_OPT_LEN] & 0x3F) * 4
    }
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }
    /// O bit: control (OAM) message, not to be forwarded as data.
    pub fn oam(&self) -> bool {
        self.b()[field::FLAGS] & FLAG_O != 0
    }
    /// C bit: critical options present.
    pub fn critical(&self) -> bool {
        self.b()[field::FLAGS] & FLAG_C != 0
    }
    /// Protocol type of the payload (an EtherType).
    pub fn protocol(&self) -> u16 {
        read_u16(self.b(), field::PROTOCOL)
    }
    /// Virtual network identifier (24 bits).
    pub fn vni(&self) -> u32 {
        read_u32(self.b(), field::VNI) >> 8
    }
    /// The raw options area.
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }
    /// Iterator over the option TLVs (bounds-checked).
    pub fn option_iter(&self) -> OptionIter<'_> {
        OptionIter {
            rest: self.options(),
        }
    }
    /// The payload after header and options.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the O bit.
    pub fn set_oam(&mut self, v: bool) {
        let b = self.buffer.as_mut();
        let f = &mut b[field::FLAGS];
        *f = if v { *f | FLAG_O } else { *f & !FLAG_O };
    }
    /// Sets the C bit.
    pub fn set_critical(&mut self, v: bool) {
        let b = self.buffer.as_mut();
        let f = &mut b[field::FLAGS];
        *f = if v { *f | FLAG_C } else { *f & !FLAG_C };
    }
    /// Sets the protocol type.
    pub fn set_protocol(&mut self, p: u16) {
        write_u16(self.buffer.as_mut(), field::PROTOCOL, p);
    }
    /// Sets the VNI; values above 24 bits are rejected.
    pub fn set_vni(&mut self, vni: u32) -> Result<()> {
        if vni > MAX_VNI {
            return Err(Error::Malformed);
        }
        let b = self.buffer.as_mut();
        write_u32(b, field::VNI, (vni << 8) | u32::from(b[field::RESERVED]));
        Ok(())
    }
    /// The options area, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// One option TLV, borrowed from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    /// Option class.
    pub class: u16,
    /// Type (high bit = critical).
    pub opt_type: u8,
    /// Option data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// Critical bit set.
    pub const fn is_critical(&self) -> bool {
        self.opt_type & CRITICAL != 0
    }
    /// Bytes the TLV occupies.
    pub const fn len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }
    /// Never true: a TLV has at least its header.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// Walks option TLVs with bounds checks. Yields `Err(Truncated)` once (and
/// then stops) when a TLV header or its data runs past the options area.
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionIter<'a> {
    /// Iterates over a raw options area.
    pub const fn new(options: &'a [u8]) -> Self {
        Self { rest: options }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<GeneveOption<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < OPTION_HEADER_LEN {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        }
        let len = OPTION_HEADER_LEN + usize::from(r[field::OPT_LENGTH] & 0x1F) * 4;
        let Some(tlv) = r.get(..len) else {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        };
        self.rest = &r[len..];
        Some(Ok(GeneveOption {
            class: read_u16(tlv, field::OPT_CLASS),
            opt_type: tlv[field::OPT_TYPE],
            data: &tlv[OPTION_HEADER_LEN..],
        }))
    }
}

/// Writes an option TLV header for `data_len` bytes of data (a multiple of 4,
/// at most 124) at the start of `buf`.
pub fn emit_option_header(
    buf: &mut [u8],
    class: u16,
    opt_type: u8,
    data_len: usize,
) -> Result<usize> {
    if !data_len.is_multiple_of(4) || data_len > 31 * 4 {
        return Err(Error::Malformed);
    }
    let b = buf.get_mut(..OPTION_HEADER_LEN).ok_or(Error::NoRoom)?;
    write_u16(b, field::OPT_CLASS, class);
    b[field::OPT_TYPE] = opt_type;
    b[field::OPT_LENGTH] = u8::try_from(data_len / 4).map_err(|_| Error::Malformed)?;
    Ok(OPTION_HEADER_LEN)
}

/// mongate's per-packet flow metadata (option class [`MONGATE_CLASS`], type
/// [`FLOW_OPTION_TYPE`]).
///
/// The sequence number is 64 bits: it never wraps (at 100 Mpps it would take
/// 5,800 years), so the ack, loss and replay logic needs no serial-number
/// arithmetic and a flow survives path switches and restarts of either side
/// without ambiguity; it costs 4 bytes more per packet than a u32 and keeps
/// the 8-byte fields 8-byte aligned in the option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowOption {
    /// Overlay flow id (the controller's flow `f`).
    pub flow_id: u32,
    /// Per-flow sequence number, starting at 1 (0 = none yet in acks).
    pub seq: u64,
    /// Sender's monotonic clock at transmission, nanoseconds.
    pub timestamp_ns: u64,
}

impl FlowOption {
    /// Parses the option data (exactly [`FLOW_OPTION_DATA_LEN`] bytes).
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() != FLOW_OPTION_DATA_LEN {
            return Err(Error::Malformed);
        }
        Ok(Self {
            flow_id: read_u32(data, field::FLOW_ID),
            seq: read_u64(data, field::FLOW_SEQ),
            timestamp_ns: read_u64(data, field::FLOW_TIMESTAMP),
        })
    }
    /// Writes the whole TLV ([`FLOW_OPTION_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..FLOW_OPTION_LEN).ok_or(Error::NoRoom)?;
        emit_option_header(b, MONGATE_CLASS, FLOW_OPTION_TYPE, FLOW_OPTION_DATA_LEN)?;
        let d = &mut b[OPTION_HEADER_LEN..];
        write_u32(d, field::FLOW_ID, self.flow_id);
        write_u64(d, field::FLOW_SEQ, self.seq);
        write_u64(d, field::FLOW_TIMESTAMP, self.timestamp_ns);
        Ok(FLOW_OPTION_LEN)
    }
}

/// The security option: option class [`MONGATE_CLASS`], type
/// [`SECURITY_OPTION_TYPE`] (critical). Its presence means the inner bytes
/// are ciphertext followed by an [`AEAD_TAG_LEN`]-byte tag. See
/// `docs/wire-format.md` for what is authenticated and encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SecurityOption {
    /// Receiver index: chosen by the receiving gateway at the handshake, it
    /// selects exactly one of its session keys (never the outer address).
    pub receiver_index: u32,
    /// Per-key packet counter: never repeats under one key; the AEAD nonce.
    pub counter: u64,
}

impl SecurityOption {
    /// Parses the option data (exactly [`SECURITY_OPTION_DATA_LEN`] bytes).
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() != SECURITY_OPTION_DATA_LEN {
            return Err(Error::Malformed);
        }
        Ok(Self {
            receiver_index: read_u32(data, field::SEC_RECEIVER),
            counter: read_u64(data, field::SEC_COUNTER),
        })
    }
    /// Writes the whole TLV ([`SECURITY_OPTION_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..SECURITY_OPTION_LEN).ok_or(Error::NoRoom)?;
        emit_option_header(
            b,
            MONGATE_CLASS,
            SECURITY_OPTION_TYPE,
            SECURITY_OPTION_DATA_LEN,
        )?;
        let d = &mut b[OPTION_HEADER_LEN..];
        write_u32(d, field::SEC_RECEIVER, self.receiver_index);
        write_u64(d, field::SEC_COUNTER, self.counter);
        Ok(SECURITY_OPTION_LEN)
    }
    /// The 96-bit AEAD nonce of `counter`: 4 zero bytes, then the counter
    /// little-endian (WireGuard's).
    pub fn aead_nonce(counter: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_le_bytes());
        n
    }
}

/// The options mongate understands, found by [`parse_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Options {
    /// The flow option, if present.
    pub flow: Option<FlowOption>,
    /// The security option, if present.
    pub security: Option<SecurityOption>,
}

/// Walks an options area: picks up mongate's options, skips unknown
/// non-critical ones, fails with [`Error::UnknownCritical`] on an unknown
/// critical one, [`Error::Truncated`] on a TLV running past the area, and
/// [`Error::Malformed`] on a duplicated or wrongly sized mongate option.
pub fn parse_options(options: &[u8]) -> Result<Options> {
    let mut out = Options::default();
    for opt in OptionIter::new(options) {
        let opt = opt?;
        match (opt.class, opt.opt_type) {
            (MONGATE_CLASS, FLOW_OPTION_TYPE) => {
                let f = FlowOption::parse(opt.data)?;
                if out.flow.is_some() {
                    return Err(Error::Malformed);
                }
                out.flow = Some(f);
            }
            (MONGATE_CLASS, SECURITY_OPTION_TYPE) => {
                let s = SecurityOption::parse(opt.data)?;
                if out.security.is_some() {
                    return Err(Error::Malformed);
                }
                out.security = Some(s);
            }
            _ if opt.is_critical() => return Err(Error::UnknownCritical),
            _ => {}
        }
    }
    Ok(out)
}

/// A GENEVE header with mongate's options, as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// O bit (OAM/control payload).
    pub oam: bool,
    /// Payload protocol type (EtherType).
    pub protocol: u16,
    /// VNI (24 bits).
    pub vni: u32,
    /// mongate's options (emitted flow first, then security).
    pub options: Options,
}

impl Repr {
    /// Parses a checked header and its options (see [`parse_options`]).
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Result<Self> {
        Ok(Self {
            oam: h.oam(),
            protocol: h.protocol(),
            vni: h.vni(),
            options: parse_options(h.options())?,
        })
    }
    /// Header + options length.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
            + if self.options.flow.is_some() {
                FLOW_OPTION_LEN
            } else {
                0
            }
            + if self.options.security.is_some() {
                SECURITY_OPTION_LEN
            } else {
                0
            }
    }
    /// Writes header and options at the start of `buf`; the C bit is set when
    /// the (critical) security option is present.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.vni > MAX_VNI {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        let b = buf.get_mut(..hl).ok_or(Error::NoRoom)?;
        let words = u8::try_from((hl - HEADER_LEN) / 4).map_err(|_| Error::TooBig)?;
        b[field::VER_OPT_LEN] = words; // version 0 in the top two bits
        b[field::FLAGS] = if self.oam { FLAG_O } else { 0 }
            | if self.options.security.is_some() {
                FLAG_C
            } else {
                0
            };
        write_u16(b, field::PROTOCOL, self.protocol);
        write_u32(b, field::VNI, self.vni << 8);
        let mut at = HEADER_LEN;
        if let Some(f) = self.options.flow {
            at += f.emit(&mut b[at..])?;
        }
        if let Some(s) = self.options.security {
            at += s.emit(&mut b[at..])?;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::ethertype;
    use proptest::prelude::*;

    /// Hand-assembled from RFC 8926 figures 2 and 3: Ver 0, Opt Len 6 words,
    /// O=0, C=0, protocol 0x6558, VNI 0x123456, our flow option (class 0xFFF0,
    /// type 0x01, length 5 words) with flow 7, seq 0x0102030405060708,
    /// timestamp 1e9.
    const VECTOR: [u8; 32] = [
        0x06, 0x00, 0x65, 0x58, 0x12, 0x34, 0x56, 0x00, // header
        0xff, 0xf0, 0x01, 0x05, // option header
        0x00, 0x00, 0x00, 0x07, // flow id
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // seq
        0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x00, // timestamp 1_000_000_000
    ];

    fn vector_repr() -> Repr {
        Repr {
            oam: false,
            protocol: ethertype::TEB,
            vni: 0x123456,
            options: Options {
                flow: Some(FlowOption {
                    flow_id: 7,
                    seq: 0x0102030405060708,
                    timestamp_ns: 1_000_000_000,
                }),
                security: None,
            },
        }
    }

    #[test]
    fn parses_rfc_layout_vector() {
        let h = Header::new_checked(&VECTOR[..]).unwrap();
        assert_eq!(h.version(), 0);
        assert_eq!(h.options_len(), 24);
        assert!(!h.oam() && !h.critical());
        assert_eq!(h.protocol(), 0x6558);
        assert_eq!(h.vni(), 0x123456);
        assert!(h.payload().is_empty());
        assert_eq!(Repr::parse(&h).unwrap(), vector_repr());
    }

    #[test]
    fn emits_rfc_layout_vector() {
        let mut out = [0u8; 64];
        let n = vector_repr().emit(&mut out).unwrap();
        assert_eq!(&out[..n], &VECTOR[..]);
    }

    #[test]
    fn security_option_sets_c_bit() {
        let mut r = vector_repr();
        r.options.security = Some(SecurityOption {
            receiver_index: 3,
            counter: 99,
        });
        let mut out = [0u8; 64];
        let n = r.emit(&mut out).unwrap();
        assert_eq!(n, 8 + 24 + 16);
        assert_eq!(out[0], 10);
        assert_eq!(out[1], 0x40);
        assert_eq!(&out[32..36], &[0xff, 0xf0, 0x82, 0x03]);
        let h = Header::new_checked(&out[..n]).unwrap();
        assert!(h.critical());
        assert_eq!(Repr::parse(&h).unwrap(), r);
        assert_eq!(
            SecurityOption::aead_nonce(r.options.security.unwrap().counter),
            [0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn unknown_options() {
        // Unknown non-critical option (class 0x0102 type 0x03, 1 word) is skipped.
        let mut b = [0u8; 8 + 8 + 24];
        b[0] = 8;
        b[8..16].copy_from_slice(&[0x01, 0x02, 0x03, 0x01, 9, 9, 9, 9]);
        b[16..40].copy_from_slice(&VECTOR[8..32]);
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&h).unwrap().options, vector_repr().options);
        // The same with the critical bit: drop.
        b[10] = 0x83;
        assert_eq!(
            parse_options(Header::new_checked(&b[..]).unwrap().options()),
            Err(Error::UnknownCritical)
        );
        // Our class with an unknown critical type: drop too; non-critical: skip.
        b[8..10].copy_from_slice(&[0xff, 0xf0]);
        assert_eq!(parse_options(&b[8..40]), Err(Error::UnknownCritical));
        b[10] = 0x7f;
        assert!(parse_options(&b[8..40]).is_ok());
    }

    #[test]
    fn truncated_and_bad() {
        // Opt Len claims more than the buffer.
        assert_eq!(
            Header::new_checked(&VECTOR[..31]).unwrap_err(),
            Error::Truncated
        );
        // A TLV whose length runs past the options area.
        let mut b = VECTOR;
        b[11] = 6;
        assert_eq!(
            parse_options(Header::new_checked(&b[..]).unwrap().options()),
            Err(Error::Truncated)
        );
        // Options area ending mid TLV header.
        assert_eq!(parse_options(&[0xff, 0xf0]), Err(Error::Truncated));
        // Wrong length for our option.
        let mut b = VECTOR;
        b[0] = 5;
        b[11] = 4;
        assert_eq!(
            parse_options(Header::new_checked(&b[..]).unwrap().options()),
            Err(Error::Malformed)
        );
        // Duplicate.
        let mut d = [0u8; 48];
        d[..24].copy_from_slice(&VECTOR[8..]);
        d[24..].copy_from_slice(&VECTOR[8..]);
        assert_eq!(parse_options(&d), Err(Error::Malformed));
        // Version 1.
        let mut b = VECTOR;
        b[0] |= 0x40;
        assert_eq!(Header::new_checked(&b[..]).unwrap_err(), Error::Unsupported);
        // VNI too large.
        let mut r = vector_repr();
        r.vni = 1 << 24;
        assert_eq!(r.emit(&mut [0u8; 64]), Err(Error::Malformed));
    }

    #[test]
    fn setters() {
        let mut b = VECTOR;
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        h.set_oam(true);
        h.set_protocol(ethertype::LOCAL_EXPERIMENTAL_1);
        h.set_vni(MAX_VNI).unwrap();
        assert_eq!(h.set_vni(MAX_VNI + 1), Err(Error::Malformed));
        assert!(h.oam());
        assert_eq!(h.vni(), MAX_VNI);
        assert_eq!(h.protocol(), 0x88B5);
        assert_eq!(b[7], 0, "reserved byte untouched");
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            any::<bool>(),
            any::<u16>(),
            0..=MAX_VNI,
            proptest::option::of((any::<u32>(), any::<u64>(), any::<u64>())),
            proptest::option::of((any::<u32>(), any::<u64>())),
        )
            .prop_map(|(oam, protocol, vni, f, s)| Repr {
                oam,
                protocol,
                vni,
                options: Options {
                    flow: f.map(|(flow_id, seq, timestamp_ns)| FlowOption {
                        flow_id,
                        seq,
                        timestamp_ns,
                    }),
                    security: s.map(|(receiver_index, counter)| SecurityOption {
                        receiver_index,
                        counter,
                    }),
                },
            })
    }

    proptest! {
        #[test]
        fn emit_parse_roundtrip(r in arb_repr(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = vec![0u8; r.header_len() + tail.len()];
            let n = r.emit(&mut buf).unwrap();
            buf[n..].copy_from_slice(&tail);
            let h = Header::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&h).unwrap(), r);
            prop_assert_eq!(h.payload(), &tail[..]);
        }
    }
}
