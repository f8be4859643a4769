//! Classic pcap files (LINKTYPE_ETHERNET, nanosecond magic): what `mongate
//! capture` writes and the wire tests hand to tshark. Every record is
//! bounded by the snap length in the file header.

use std::io::{self, Write};

/// Magic of a nanosecond-resolution classic pcap file.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Magic of a microsecond-resolution classic pcap file.
pub const MAGIC_US: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Writes a pcap stream record by record.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header (nanosecond timestamps, Ethernet, `snaplen`).
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone, sigfigs: 0.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out, snaplen })
    }

    /// One record: `data` (at most the snap length of it is written) of a
    /// frame `orig_len` bytes long, at `wall_ns` since the Unix epoch.
    pub fn record(&mut self, wall_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let cap = data
            .len()
            .min(usize::try_from(self.snaplen).unwrap_or(usize::MAX));
        let cap32 = u32::try_from(cap).unwrap_or(u32::MAX);
        let secs = u32::try_from(wall_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let frac = u32::try_from(wall_ns % 1_000_000_000).unwrap_or(0);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&cap32.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(cap32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..cap])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A whole file of `frames` (timestamps one microsecond apart from 1.7e9 s).
pub fn file_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), 65535).expect("writing to a Vec");
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        w.record(1_700_000_000_000_000_000 + i as u64 * 1000, len, f)
            .expect("writing to a Vec");
    }
    w.into_inner()
}

/// One record read back by [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Time since the Unix epoch, ns.
    pub wall_ns: u64,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Reads a classic little-endian pcap file (either magic): its snap length,
/// link type and records; `None` if it is not one, or a record is cut or
/// longer than the snap length.
pub fn parse(b: &[u8]) -> Option<(u32, u32, Vec<Record>)> {
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    let scale = match u32_at(0)? {
        MAGIC_NS => 1,
        MAGIC_US => 1000,
        _ => return None,
    };
    let (snaplen, link) = (u32_at(16)?, u32_at(20)?);
    let mut out = Vec::new();
    let mut o = 24;
    while o < b.len() {
        let (s, f, cap, orig) = (u32_at(o)?, u32_at(o + 4)?, u32_at(o + 8)?, u32_at(o + 12)?);
        if cap > snaplen || cap > orig {
            return None;
        }
        let start = o + 16;
        let end = start.checked_add(usize::try_from(cap).ok()?)?;
        out.push(Record {
            wall_ns: u64::from(s) * 1_000_000_000 + u64::from(f) * scale,
            orig_len: orig,
            data: b.get(start..end)?.to_vec(),
        });
        o = end;
    }
    Some((snaplen, link, out))
}
