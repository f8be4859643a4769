//! OAM messages: the payload of GENEVE packets with the O bit set and protocol
//! type [`OAM_PROTOCOL`]. Gateways consume them and never forward them.
//!
//! ```text
//! Common header (4 bytes):
//! |   version=1   |     type      |     count     |  reserved=0   |
//!
//! type 1, aggregated acknowledgement: `count` entries of 40 bytes:
//! |                            flow id                            |
//! |                     ack delay (ns, saturating)                |
//! |                   cumulative sequence (64)                    |
//! |                         bitmap (64)                           |
//! |                echoed send timestamp (ns, 64)                 |
//! |                 received total (32, wrapping)                 |
//! |                   lost total (32, wrapping)                   |
//!
//! type 2 probe / type 3 probe echo (count = 0), 32 bytes:
//! |                            path id                            |
//! |                           probe seq                           |
//! |                    send timestamp (ns, 64)                    |
//! |                    echo timestamp (ns, 64)                    |
//! |                        nonce (64, random)                     |
//!
//! type 4 handshake initiation (148 bytes), type 5 handshake response (92),
//! type 6 cookie reply (64), count = 0: the control process's handshake
//! message, opaque to the dataplane. Sent without the security option (they
//! establish the keys); every other message type is sealed.
//! ```
//!
//! The echo copies the probe's nonce; the prober accepts an echo only for a
//! probe it sent and has not yet seen answered (`overlay::failover`).
//!
//! Trailing bytes after the message are allowed (probes may be padded to test
//! a path MTU) and ignored.

use super::ethernet::ethertype;
use super::{Error, Result, check_len, read_u32, read_u64, write_u32, write_u64};

/// GENEVE protocol type of OAM payloads (IEEE local experimental EtherType 1).
pub const OAM_PROTOCOL: u16 = ethertype::LOCAL_EXPERIMENTAL_1;
/// Current OAM message version.
pub const VERSION: u8 = 1;
/// Common header length.
pub const HEADER_LEN: usize = 4;
/// One acknowledgement entry.
pub const ACK_ENTRY_LEN: usize = 40;
/// Largest number of ack entries in one message (the count byte).
pub const MAX_ACK_ENTRIES: usize = 255;
/// Probe / probe echo body length.
pub const PROBE_LEN: usize = 32;
/// Bits in an ack bitmap.
pub const ACK_BITMAP_BITS: u64 = 64;
/// Largest handshake message body (the ring messages carry this many bytes).
pub const HANDSHAKE_MAX: usize = 200;
/// Handshake initiation body: sender index 4 | Noise IK message 1 (32 + 48 +
/// 28) | mac1 16 | mac2 16.
pub const HANDSHAKE_INIT_LEN: usize = 148;
/// Handshake response body: sender index 4 | receiver index 4 | Noise IK
/// message 2 (32 + 16) | mac1 16 | mac2 16.
pub const HANDSHAKE_RESPONSE_LEN: usize = 92;
/// Cookie reply body: receiver index 4 | nonce 24 | encrypted cookie 32.
pub const COOKIE_REPLY_LEN: usize = 64;
const _: () = assert!(HANDSHAKE_INIT_LEN <= HANDSHAKE_MAX);

/// The fields of the common header, of an ack entry and of a probe body.
pub(crate) mod field {
    use crate::wire::Field;

    pub(crate) const VERSION: usize = 0;
    pub(crate) const TYPE: usize = 1;
    /// Ack entries that follow (0 in other messages).
    pub(crate) const COUNT: usize = 2;
    pub(crate) const RESERVED: usize = 3;

    /// Ack entry: flow id.
    pub(crate) const ACK_FLOW_ID: Field = 0..4;
    /// Ack entry: delay between receiving the newest packet and acking, ns.
    pub(crate) const ACK_DELAY: Field = 4..8;
    /// Ack entry: cumulative sequence number.
    pub(crate) const ACK_CUM_SEQ: Field = 8..16;
    /// Ack entry: packets received beyond the cumulative one.
    pub(crate) const ACK_BITMAP: Field = 16..24;
    /// Ack entry: the newest packet's send timestamp.
    pub(crate) const ACK_ECHO_TS: Field = 24..32;
    /// Ack entry: packets received so far.
    pub(crate) const ACK_RECEIVED: Field = 32..36;
    /// Ack entry: packets given up on so far.
    pub(crate) const ACK_LOST: Field = 36..40;

    /// Probe body: path id.
    pub(crate) const PROBE_PATH_ID: Field = 0..4;
    /// Probe body: sequence number on the path.
    pub(crate) const PROBE_SEQ: Field = 4..8;
    /// Probe body: prober's send time.
    pub(crate) const PROBE_SEND_TS: Field = 8..16;
    /// Probe body: responder's receive time.
    pub(crate) const PROBE_ECHO_TS: Field = 16..24;
    /// Probe body: the prober's random nonce, returned by the echo.
    pub(crate) const PROBE_NONCE: Field = 24..32;
}

/// OAM message type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Aggregated acknowledgement of data packets, several flows per message.
    Ack = 1,
    /// Path probe: the receiver answers at once with a [`MessageType::ProbeEcho`].
    Probe = 2,
    /// Answer to a probe.
    ProbeEcho = 3,
    /// Noise IK handshake initiation (unsealed, for the control process).
    HandshakeInit = 4,
    /// Noise IK handshake response (unsealed, for the control process).
    HandshakeResponse = 5,
    /// Cookie reply to an initiation under load (unsealed).
    CookieReply = 6,
}

impl MessageType {
    /// From the type byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Ack),
            2 => Some(Self::Probe),
            3 => Some(Self::ProbeEcho),
            4 => Some(Self::HandshakeInit),
            5 => Some(Self::HandshakeResponse),
            6 => Some(Self::CookieReply),
            _ => None,
        }
    }
    /// The body length of a handshake message type (`None` for the others).
    pub const fn handshake_len(self) -> Option<usize> {
        match self {
            Self::HandshakeInit => Some(HANDSHAKE_INIT_LEN),
            Self::HandshakeResponse => Some(HANDSHAKE_RESPONSE_LEN),
            Self::CookieReply => Some(COOKIE_REPLY_LEN),
            Self::Ack | Self::Probe | Self::ProbeEcho => None,
        }
    }
    /// A handshake message (types 4..=6): the only messages accepted without
    /// the security option.
    pub const fn is_handshake(self) -> bool {
        self.handshake_len().is_some()
    }
}

/// Acknowledgement state of one flow, as the receiving gateway reports it.
///
/// Semantics: every packet with `seq <= cum_seq` has been received or given
/// up as lost by the receiver (it has no retransmissions to wait for, so it
/// advances past a hole once the hole is older than its reordering
/// tolerance); bit `i` (LSB = 0) of `bitmap` says packet `cum_seq + 1 + i` was
/// received. The cumulative `received`/`lost` counters make the sender's loss
/// accounting exact even when acks themselves are lost or holes were skipped:
/// the sender takes their deltas between two acks.
///
/// Why 64 bits of bitmap: the receiver sends an ack at the latest when its
/// highest sequence gets 48 beyond `cum_seq` (or on a timer, a few per RTT),
/// so 64 bits cover what is outstanding plus reordering slack whatever the
/// flow's rate (the width bounds ack *spacing in packets*, not throughput);
/// it is one register, so set/shift/popcount are single instructions. A
/// flow at 100 kpps acked 4 times per 40 ms RTT would need 1000 bits per ack
/// without that rule, with it it just gets more frequent acks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AckEntry {
    /// Flow id (as in the GENEVE flow option).
    pub flow_id: u32,
    /// Time between receiving the newest packet and sending this ack, ns (saturates).
    pub ack_delay_ns: u32,
    /// Cumulative sequence (see the type docs).
    pub cum_seq: u64,
    /// Received packets beyond `cum_seq`: bit i = `cum_seq + 1 + i`.
    pub bitmap: u64,
    /// Send timestamp (from the flow option) of the newest packet received.
    pub echo_ts_ns: u64,
    /// Packets of this flow received so far (wrapping).
    pub received: u32,
    /// Packets of this flow the receiver gave up on so far (wrapping).
    pub lost: u32,
}

impl AckEntry {
    /// Parses one 40-byte entry.
    pub fn parse(b: &[u8]) -> Result<Self> {
        check_len(b, ACK_ENTRY_LEN)?;
        Ok(Self {
            flow_id: read_u32(b, field::ACK_FLOW_ID),
            ack_delay_ns: read_u32(b, field::ACK_DELAY),
            cum_seq: read_u64(b, field::ACK_CUM_SEQ),
            bitmap: read_u64(b, field::ACK_BITMAP),
            echo_ts_ns: read_u64(b, field::ACK_ECHO_TS),
            received: read_u32(b, field::ACK_RECEIVED),
            lost: read_u32(b, field::ACK_LOST),
        })
    }
    /// Writes one 40-byte entry.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..ACK_ENTRY_LEN).ok_or(Error::NoRoom)?;
        write_u32(b, field::ACK_FLOW_ID, self.flow_id);
        write_u32(b, field::ACK_DELAY, self.ack_delay_ns);
        write_u64(b, field::ACK_CUM_SEQ, self.cum_seq);
        write_u64(b, field::ACK_BITMAP, self.bitmap);
        write_u64(b, field::ACK_ECHO_TS, self.echo_ts_ns);
        write_u32(b, field::ACK_RECEIVED, self.received);
        write_u32(b, field::ACK_LOST, self.lost);
        Ok(ACK_ENTRY_LEN)
    }
    /// Whether packet `seq` is known received by this entry (`seq <= cum_seq`
    /// counts as "covered", which includes given-up packets).
    pub const fn covers(&self, seq: u64) -> bool {
        if seq <= self.cum_seq {
            return true;
        }
        let off = seq - self.cum_seq - 1;
        off < ACK_BITMAP_BITS && (self.bitmap >> off) & 1 == 1
    }
}

/// A probe or probe echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Probe {
    /// Path id (assigned by the prober's control process).
    pub path_id: u32,
    /// Probe sequence number on that path.
    pub probe_seq: u32,
    /// Prober's clock when sent (copied unchanged into the echo), ns.
    pub send_ts_ns: u64,
    /// Responder's clock when the probe arrived (0 in a probe), ns. Only
    /// comparable with `send_ts_ns` when clocks are synchronised; the RTT is
    /// `now - send_ts_ns` at the prober.
    pub echo_ts_ns: u64,
    /// Random, chosen by the prober; the echo returns it unchanged.
    pub nonce: u64,
}

impl Probe {
    /// Parses a 32-byte body.
    pub fn parse(b: &[u8]) -> Result<Self> {
        check_len(b, PROBE_LEN)?;
        Ok(Self {
            path_id: read_u32(b, field::PROBE_PATH_ID),
            probe_seq: read_u32(b, field::PROBE_SEQ),
            send_ts_ns: read_u64(b, field::PROBE_SEND_TS),
            echo_ts_ns: read_u64(b, field::PROBE_ECHO_TS),
            nonce: read_u64(b, field::PROBE_NONCE),
        })
    }
    /// The echo answering this probe, stamped with the responder's `now_ns`.
    pub const fn echo(&self, now_ns: u64) -> Self {
        Self {
            echo_ts_ns: now_ns,
            ..*self
        }
    }
}

/// A view of an OAM message, checked by [`Message::new_checked`].
#[derive(Debug, Clone)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Checks version, type, and that the body the header implies fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len(b, HEADER_LEN)?;
        if b[field::VERSION] != VERSION {
            return Err(Error::Unsupported);
        }
        let need = match MessageType::from_u8(b[field::TYPE]) {
            None => return Err(Error::Unsupported),
            Some(MessageType::Ack) => HEADER_LEN + usize::from(b[field::COUNT]) * ACK_ENTRY_LEN,
            Some(MessageType::Probe | MessageType::ProbeEcho) => HEADER_LEN + PROBE_LEN,
            Some(t) => HEADER_LEN + t.handshake_len().unwrap_or(0),
        };
        check_len(b, need)?;
        Ok(Self { buffer })
    }
    /// Message type.
    pub fn msg_type(&self) -> MessageType {
        // Checked in `new_checked`; the fallback is unreachable.
        MessageType::from_u8(self.buffer.as_ref()[field::TYPE]).unwrap_or(MessageType::Probe)
    }
    /// Entry count (acks; 0 otherwise).
    pub fn count(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::COUNT])
    }
    /// The ack entries (empty for probes).
    pub fn acks(&self) -> AckIter<'_> {
        let n = if self.msg_type() == MessageType::Ack {
            self.count()
        } else {
            0
        };
        AckIter {
            rest: &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + n * ACK_ENTRY_LEN],
        }
    }
    /// The probe body, for probe and echo messages.
    pub fn probe(&self) -> Option<Probe> {
        match self.msg_type() {
            MessageType::Probe | MessageType::ProbeEcho => {
                Probe::parse(&self.buffer.as_ref()[HEADER_LEN..]).ok()
            }
            _ => None,
        }
    }
    /// The handshake message bytes (opaque), for types 4..=6.
    pub fn handshake(&self) -> Option<&[u8]> {
        let n = self.msg_type().handshake_len()?;
        self.buffer.as_ref().get(HEADER_LEN..HEADER_LEN + n)
    }
    /// Message length (header + body, padding excluded).
    pub fn len(&self) -> usize {
        HEADER_LEN
            + match self.msg_type() {
                MessageType::Ack => self.count() * ACK_ENTRY_LEN,
                MessageType::Probe | MessageType::ProbeEcho => PROBE_LEN,
                t => t.handshake_len().unwrap_or(0),
            }
    }
    /// Never true for a checked message.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Iterator over the ack entries of a checked message.
#[derive(Clone, Debug)]
pub struct AckIter<'a> {
    rest: &'a [u8],
}

impl Iterator for AckIter<'_> {
    type Item = AckEntry;
    fn next(&mut self) -> Option<AckEntry> {
        let e = AckEntry::parse(self.rest).ok()?;
        self.rest = &self.rest[ACK_ENTRY_LEN..];
        Some(e)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() / ACK_ENTRY_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for AckIter<'_> {}

/// An OAM message as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Acks: entries borrowed from a caller's slice (emit) or from the packet (parse).
    Ack(AckEntries<'a>),
    /// A probe.
    Probe(Probe),
    /// A probe echo.
    ProbeEcho(Probe),
    /// A handshake message: its type (4..=6) and its bytes (exactly the
    /// type's length to emit; borrowed from the packet when parsed).
    Handshake(MessageType, &'a [u8]),
}

/// Ack entries, either decoded values or raw bytes of a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckEntries<'a> {
    /// Entries to emit.
    Values(&'a [AckEntry]),
    /// `count * 40` bytes of a received message.
    Raw(&'a [u8]),
}

impl<'a> AckEntries<'a> {
    /// Number of entries.
    pub const fn len(&self) -> usize {
        match self {
            Self::Values(v) => v.len(),
            Self::Raw(r) => r.len() / ACK_ENTRY_LEN,
        }
    }
    /// No entries.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<AckEntry> {
        match self {
            Self::Values(v) => v.get(i).copied(),
            Self::Raw(r) => AckEntry::parse(r.get(i.checked_mul(ACK_ENTRY_LEN)?..)?).ok(),
        }
    }
}

impl<'a> Repr<'a> {
    /// Parses a checked message.
    pub fn parse(m: &Message<&'a [u8]>) -> Self {
        let b: &'a [u8] = m.buffer;
        match m.msg_type() {
            MessageType::Ack => Self::Ack(AckEntries::Raw(
                &b[HEADER_LEN..HEADER_LEN + m.count() * ACK_ENTRY_LEN],
            )),
            t @ (MessageType::Probe | MessageType::ProbeEcho) => {
                let p = Probe::parse(&b[HEADER_LEN..]).unwrap_or_default();
                if t == MessageType::Probe {
                    Self::Probe(p)
                } else {
                    Self::ProbeEcho(p)
                }
            }
            t => {
                let n = t.handshake_len().unwrap_or(0);
                Self::Handshake(t, &b[HEADER_LEN..HEADER_LEN + n])
            }
        }
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::Ack(e) => e.len() * ACK_ENTRY_LEN,
                Self::Probe(_) | Self::ProbeEcho(_) => PROBE_LEN,
                Self::Handshake(_, b) => b.len(),
            }
    }
    /// Never true.
    pub const fn is_empty(&self) -> bool {
        false
    }
    /// Writes the message at the start of `buf`; more than
    /// [`MAX_ACK_ENTRIES`] entries is [`Error::TooBig`], a handshake whose
    /// type is not 4..=6 or whose bytes are not that type's length is
    /// [`Error::Malformed`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Self::Handshake(t, bytes) = self
            && t.handshake_len() != Some(bytes.len())
        {
            return Err(Error::Malformed);
        }
        let len = self.len();
        let b = buf.get_mut(..len).ok_or(Error::NoRoom)?;
        b[field::VERSION] = VERSION;
        b[field::RESERVED] = 0;
        match self {
            Self::Ack(entries) => {
                b[field::TYPE] = MessageType::Ack as u8;
                b[field::COUNT] = u8::try_from(entries.len()).map_err(|_| Error::TooBig)?;
                for i in 0..entries.len() {
                    let e = entries.get(i).ok_or(Error::Malformed)?;
                    e.emit(&mut b[HEADER_LEN + i * ACK_ENTRY_LEN..])?;
                }
            }
            Self::Probe(p) | Self::ProbeEcho(p) => {
                let t = if matches!(self, Self::Probe(_)) {
                    MessageType::Probe
                } else {
                    MessageType::ProbeEcho
                };
                b[field::TYPE] = t as u8;
                b[field::COUNT] = 0;
                let d = &mut b[HEADER_LEN..];
                write_u32(d, field::PROBE_PATH_ID, p.path_id);
                write_u32(d, field::PROBE_SEQ, p.probe_seq);
                write_u64(d, field::PROBE_SEND_TS, p.send_ts_ns);
                write_u64(d, field::PROBE_ECHO_TS, p.echo_ts_ns);
                write_u64(d, field::PROBE_NONCE, p.nonce);
            }
            Self::Handshake(t, bytes) => {
                b[field::TYPE] = *t as u8;
                b[field::COUNT] = 0;
                b[HEADER_LEN..].copy_from_slice(bytes);
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn probe_vector() {
        let p = Probe {
            path_id: 0x0a0b0c0d,
            probe_seq: 5,
            send_ts_ns: 0x1122334455667788,
            echo_ts_ns: 0,
            nonce: 0x0102030405060708,
        };
        let mut out = [0u8; 36];
        assert_eq!(Repr::Probe(p).emit(&mut out).unwrap(), 36);
        assert_eq!(
            out,
            [
                1, 2, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 5, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                0x77, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8
            ]
        );
        let m = Message::new_checked(&out[..]).unwrap();
        assert_eq!(m.msg_type(), MessageType::Probe);
        assert_eq!(m.probe(), Some(p));
        assert_eq!(m.acks().len(), 0);
        assert_eq!(Repr::parse(&m), Repr::Probe(p));
        let e = p.echo(42);
        assert_eq!(e.echo_ts_ns, 42);
        assert_eq!((e.send_ts_ns, e.nonce), (p.send_ts_ns, p.nonce));
    }

    #[test]
    fn ack_vector_and_covers() {
        let e = AckEntry {
            flow_id: 1,
            ack_delay_ns: 2,
            cum_seq: 100,
            bitmap: 0b101,
            echo_ts_ns: 3,
            received: 4,
            lost: 5,
        };
        let mut out = [0u8; 4 + 80];
        let n = Repr::Ack(AckEntries::Values(&[e, e]))
            .emit(&mut out)
            .unwrap();
        assert_eq!(n, 84);
        assert_eq!(&out[..4], &[1, 1, 2, 0]);
        assert_eq!(&out[4..12], &[0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(&out[12..20], &100u64.to_be_bytes());
        let m = Message::new_checked(&out[..]).unwrap();
        assert_eq!(m.acks().collect::<Vec<_>>(), vec![e, e]);
        assert!(
            e.covers(100)
                && e.covers(101)
                && !e.covers(102)
                && e.covers(103)
                && !e.covers(104)
                && !e.covers(u64::MAX)
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Message::new_checked(&[1u8, 1, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Message::new_checked(&[2u8, 1, 0, 0][..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            Message::new_checked(&[1u8, 9, 0, 0][..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            Message::new_checked(&[1u8, 1, 1, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Message::new_checked(&[1u8, 2, 0, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert!(Message::new_checked(&[1u8, 1, 0, 0][..]).is_ok());
        let many = [AckEntry::default(); 256];
        assert_eq!(
            Repr::Ack(AckEntries::Values(&many)).emit(&mut [0u8; 4 + 256 * 40]),
            Err(Error::TooBig)
        );
    }

    #[test]
    fn handshake_messages() {
        for (t, n) in [
            (MessageType::HandshakeInit, 148),
            (MessageType::HandshakeResponse, 92),
            (MessageType::CookieReply, 64),
        ] {
            let body: Vec<u8> = (0..n).map(|i: usize| (i * 7).to_le_bytes()[0]).collect();
            let mut out = vec![0u8; 4 + n + 3];
            assert_eq!(Repr::Handshake(t, &body).emit(&mut out).unwrap(), 4 + n);
            assert_eq!(&out[..4], &[1, t as u8, 0, 0]);
            let m = Message::new_checked(&out[..]).unwrap();
            assert_eq!(m.msg_type(), t);
            assert!(t.is_handshake());
            assert_eq!(m.len(), 4 + n);
            assert_eq!(m.handshake(), Some(&body[..]));
            assert_eq!(m.probe(), None);
            assert_eq!(m.acks().len(), 0);
            assert_eq!(Repr::parse(&m), Repr::Handshake(t, &body));
            // One byte short of the type's length: truncated.
            assert_eq!(
                Message::new_checked(&out[..3 + n]).unwrap_err(),
                Error::Truncated
            );
            // Emit refuses a wrong length.
            assert_eq!(
                Repr::Handshake(t, &body[1..]).emit(&mut out),
                Err(Error::Malformed)
            );
        }
        assert_eq!(
            Repr::Handshake(MessageType::Probe, &[0u8; 24]).emit(&mut [0u8; 64]),
            Err(Error::Malformed)
        );
        assert!(!MessageType::Ack.is_handshake());
    }

    fn arb_entry() -> impl Strategy<Value = AckEntry> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(flow_id, ack_delay_ns, cum_seq, bitmap, echo_ts_ns, received, lost)| AckEntry {
                    flow_id,
                    ack_delay_ns,
                    cum_seq,
                    bitmap,
                    echo_ts_ns,
                    received,
                    lost,
                },
            )
    }

    proptest! {
        #[test]
        fn ack_roundtrip(entries in proptest::collection::vec(arb_entry(), 0..40), pad in 0usize..8) {
            let r = Repr::Ack(AckEntries::Values(&entries));
            let mut buf = vec![0u8; r.len() + pad];
            prop_assert_eq!(r.emit(&mut buf).unwrap(), r.len());
            let m = Message::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(m.len(), r.len());
            prop_assert_eq!(m.acks().collect::<Vec<_>>(), entries);
        }

        #[test]
        fn probe_roundtrip(path_id in any::<u32>(), probe_seq in any::<u32>(), s in any::<u64>(), e in any::<u64>(), nonce in any::<u64>(), echo in any::<bool>()) {
            let p = Probe { path_id, probe_seq, send_ts_ns: s, echo_ts_ns: e, nonce };
            let r = if echo { Repr::ProbeEcho(p) } else { Repr::Probe(p) };
            let mut buf = [0u8; 36];
            r.emit(&mut buf).unwrap();
            let m = Message::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&m), r);
        }

        #[test]
        fn handshake_roundtrip(t in 4u8..=6, seed in any::<u8>(), pad in 0usize..8) {
            let t = MessageType::from_u8(t).unwrap();
            let body: Vec<u8> = (0..t.handshake_len().unwrap()).map(|i| seed ^ i.to_le_bytes()[0]).collect();
            let r = Repr::Handshake(t, &body);
            let mut buf = vec![0u8; r.len() + pad];
            prop_assert_eq!(r.emit(&mut buf).unwrap(), r.len());
            let m = Message::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(m.len(), r.len());
            prop_assert_eq!(Repr::parse(&m), r);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = Message::new_checked(&bytes[..]) {
                prop_assert!(m.len() <= bytes.len());
                let r = Repr::parse(&m);
                let mut out = vec![0u8; r.len()];
                prop_assert_eq!(r.emit(&mut out), Ok(m.len()));
                prop_assert_eq!(&out[..], &bytes[..m.len()].iter().enumerate().map(|(i, b)| if i == 3 || (i == 2 && m.msg_type() != MessageType::Ack) { 0 } else { *b }).collect::<Vec<_>>()[..]);
                let _ = (m.handshake(), m.probe(), m.acks().count());
            }
        }
    }
}
