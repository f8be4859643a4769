//! Packet views and the overlay wire format.
//!
//! Follows smoltcp's `wire` pattern: every protocol has a zero-copy view
//! (`Packet<T: AsRef<[u8]>>`, or `Frame`/`Header`) validated once by
//! `new_checked`, after which its getters cannot fail or panic; setters exist
//! for `T: AsMut<[u8]>`; a plain-data `Repr` parses from and emits into bytes.
//! Nothing here allocates, touches the OS, or panics on any input bytes (each
//! parser is property-tested and fuzzed through [`fuzz`]).
//!
//! - [`checksum`]: the Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//! - [`ethernet`], [`ipv4`], [`ipv6`], [`udp`], [`icmp`]: the underlay protocols.
//! - [`tcp`]: ports and control flags of inner TCP segments (the classifier).
//! - [`geneve`]: RFC 8926 GENEVE header, option TLVs, and mongate's own options.
//! - [`oam`]: acknowledgement and probe messages carried with the GENEVE O bit.
//! - [`overlay`]: the whole encapsulation (outer Ethernet + IP + UDP + GENEVE)
//!   built from a per-peer [`overlay::OverlayTemplate`], and decapsulation.
//! - [`fuzz`]: one `fuzz_*(data)` entry point per parser, shared by the
//!   cargo-fuzz targets in `fuzz/` and by the property tests.
//!
//! The byte layout is documented in `docs/wire-format.md`.

pub mod checksum;
pub mod ethernet;
pub mod fuzz;
pub mod geneve;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod oam;
pub mod overlay;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod pcap_tests;

use crate::engine::DropReason;

/// Why bytes could not be parsed or emitted. Small and `Copy`, so the hot path
/// can count it (see [`Error::drop_reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than a header or than the length a header claims.
    Truncated,
    /// Field values are inconsistent (bad version, length below the header size...).
    Malformed,
    /// Well-formed but not handled here (fragment, extension header, unknown version).
    Unsupported,
    /// A checksum did not verify.
    BadChecksum,
    /// A GENEVE option with the critical bit that we do not understand: the
    /// packet MUST be dropped (RFC 8926 section 3.5).
    UnknownCritical,
    /// Not overlay traffic (not UDP to the GENEVE port).
    NotOverlay,
    /// The output buffer (or headroom/tailroom) is too small.
    NoRoom,
    /// The result would exceed a length field (e.g. an IPv4 total length over 65535).
    TooBig,
    /// TTL or hop limit would reach zero.
    Expired,
    /// An ICMP error must not be generated for this packet (RFC 1122 3.2.2, RFC 4443 2.4).
    NotEligible,
}

impl Error {
    /// The drop counter this error is accounted under.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            Self::Truncated => DropReason::Truncated,
            Self::Malformed | Self::UnknownCritical => DropReason::BadOverlay,
            Self::Unsupported | Self::NotOverlay => DropReason::Unsupported,
            Self::BadChecksum => DropReason::BadChecksum,
            Self::NotEligible => DropReason::Other,
            Self::NoRoom | Self::TooBig => DropReason::Oversized,
            Self::Expired => DropReason::TtlExceeded,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::BadChecksum => "bad checksum",
            Self::UnknownCritical => "unknown critical GENEVE option",
            Self::NotOverlay => "not overlay traffic",
            Self::NoRoom => "buffer too small",
            Self::TooBig => "length field overflow",
            Self::Expired => "TTL expired",
            Self::NotEligible => "no ICMP error allowed for this packet",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, Error>;

/// A field's byte range in a header. Every view names its fields once, in a
/// `mod field` (smoltcp's pattern), and reads and writes them by name.
pub(crate) type Field = core::ops::Range<usize>;

/// `f` moved `by` bytes on: a field of a header that starts at `by`.
#[inline(always)]
pub(crate) const fn shifted(f: Field, by: usize) -> Field {
    f.start + by..f.end + by
}

/// [`Error::Truncated`] unless `b` holds at least `len` bytes.
#[inline(always)]
pub(crate) const fn check_len(b: &[u8], len: usize) -> Result<()> {
    if b.len() < len {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

/// Checks a length field's `value`: [`Error::Malformed`] below `min` (the
/// header it counts), [`Error::Truncated`] beyond the `avail` bytes there are.
#[inline(always)]
pub(crate) const fn check_length_field(value: usize, min: usize, avail: usize) -> Result<()> {
    if value < min {
        Err(Error::Malformed)
    } else if value > avail {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

// Big-endian field access. Callers index only within lengths validated by a
// `new_checked` (or an explicit length check just before). `read_*`/`write_*`
// take a named [`Field`]; `get_*`/`put_*` an offset computed at run time.
#[inline(always)]
pub(crate) fn read_u16(b: &[u8], f: Field) -> u16 {
    debug_assert_eq!(f.len(), 2);
    get_u16(b, f.start)
}
#[inline(always)]
pub(crate) fn read_u32(b: &[u8], f: Field) -> u32 {
    debug_assert_eq!(f.len(), 4);
    get_u32(b, f.start)
}
#[inline(always)]
pub(crate) fn read_u64(b: &[u8], f: Field) -> u64 {
    debug_assert_eq!(f.len(), 8);
    get_u64(b, f.start)
}
#[inline(always)]
pub(crate) fn write_u16(b: &mut [u8], f: Field, v: u16) {
    debug_assert_eq!(f.len(), 2);
    put_u16(b, f.start, v);
}
#[inline(always)]
pub(crate) fn write_u32(b: &mut [u8], f: Field, v: u32) {
    debug_assert_eq!(f.len(), 4);
    put_u32(b, f.start, v);
}
#[inline(always)]
pub(crate) fn write_u64(b: &mut [u8], f: Field, v: u64) {
    debug_assert_eq!(f.len(), 8);
    put_u64(b, f.start, v);
}
#[inline(always)]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline(always)]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline(always)]
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
#[inline(always)]
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
#[inline(always)]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
#[inline(always)]
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
