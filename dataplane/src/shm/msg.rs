//! The fixed-size messages of the control channel: one 256-byte plain-data
//! [`Msg`] (a `kind` tag, a `len`, an `epoch` and 30 payload words) and the
//! typed views [`Command`] (control -> dataplane) and [`Telemetry`]
//! (dataplane -> control) that encode into it and decode from it.
//!
//! Decoding never trusts the bytes: an unknown kind, a count larger than the
//! message holds or a value out of range is a [`DecodeError`], never a panic.
//!
//! The failover vocabulary (path references, the special values of an
//! [`Assignment`], [`PathEventKind`], [`PathTelemetry`]) is the overlay's
//! (`overlay::failover`): this module re-exports and encodes it.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::overlay::failover::{
    FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind, PathTelemetry,
};
pub use crate::wire::oam::HANDSHAKE_MAX;

/// Payload words of a [`Msg`].
pub const MSG_WORDS: usize = 30;
/// Plan entries carried by one [`PlanChunk`].
pub const CHUNK_ENTRIES: usize = 9;
/// Flow telemetry records per [`Telemetry::Flows`] message (six words each).
pub const FLOW_TEL_PER_MSG: usize = MSG_WORDS / FLOW_TEL_WORDS;
/// Words of one flow telemetry record.
const FLOW_TEL_WORDS: usize = 6;
/// Class records per [`Telemetry::Classes`] message (two words each).
pub const CLASSES_PER_MSG: usize = MSG_WORDS / 2;
/// Path assignments per [`Command::Assign`] message.
pub const ASSIGN_PER_MSG: usize = MSG_WORDS;
/// Peer records per [`Telemetry::Peers`] message.
pub const PEERS_PER_MSG: usize = MSG_WORDS;
/// Path records per [`Telemetry::Paths`] message (two words each).
pub const PATHS_PER_MSG: usize = MSG_WORDS / 2;
/// The largest smoothed RTT a path record carries, us (24 bits: 16.7 s; larger ones are sent
/// as this).
pub const SRTT_US_MAX: u32 = (1 << 24) - 1;
/// Key records per [`Telemetry::Keys`] message (five words each).
pub const KEYS_PER_MSG: usize = MSG_WORDS / 5;
/// Low bits of a key's local (receiver) index that name its dataplane key slot.
pub const KEY_SLOT_BITS: u32 = 10;
/// Key slots of the dataplane (`local_index & (KEY_SLOTS - 1)`).
pub const KEY_SLOTS: usize = 1 << KEY_SLOT_BITS;

/// One slot of a control ring. `#[repr(C)]`, 256 bytes, integers only, no
/// padding: any bit pattern is a valid `Msg` (and decodes to a value or an
/// error).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Message kind (`KIND_*`).
    pub kind: u32,
    /// Kind-specific count.
    pub len: u32,
    /// Plan epoch the message refers to (0 when none).
    pub epoch: u64,
    /// Payload.
    pub w: [u64; MSG_WORDS],
}

const _: () = assert!(std::mem::size_of::<Msg>() == 256);

impl Default for Msg {
    fn default() -> Self {
        Self {
            kind: 0,
            len: 0,
            epoch: 0,
            w: [0; MSG_WORDS],
        }
    }
}

/// `kind` values. Commands are 1..=15, telemetry 16..
pub mod kind {
    /// [`super::Command::PlanChunk`].
    pub const PLAN_CHUNK: u32 = 1;
    /// [`super::Command::PlanCommit`].
    pub const PLAN_COMMIT: u32 = 2;
    /// [`super::Command::Assign`].
    pub const ASSIGN: u32 = 3;
    /// [`super::Command::Probe`].
    pub const PROBE: u32 = 4;
    /// [`super::Command::InstallKey`].
    pub const INSTALL_KEY: u32 = 5;
    /// [`super::Command::RevokeKey`].
    pub const REVOKE_KEY: u32 = 6;
    /// [`super::Command::SendHandshake`].
    pub const SEND_HANDSHAKE: u32 = 7;
    /// [`super::Telemetry::Flows`].
    pub const FLOWS: u32 = 16;
    /// [`super::Telemetry::Classes`].
    pub const CLASSES: u32 = 17;
    /// [`super::Telemetry::ProbeResult`].
    pub const PROBE_RESULT: u32 = 18;
    /// [`super::Telemetry::Counters`].
    pub const COUNTERS: u32 = 19;
    /// [`super::Telemetry::PlanAck`].
    pub const PLAN_ACK: u32 = 20;
    /// [`super::Telemetry::Peers`].
    pub const PEERS: u32 = 21;
    /// [`super::Telemetry::Paths`].
    pub const PATHS: u32 = 22;
    /// [`super::Telemetry::PathEvent`].
    pub const PATH_EVENT: u32 = 23;
    /// [`super::Telemetry::Handshake`].
    pub const HANDSHAKE: u32 = 24;
    /// [`super::Telemetry::Keys`].
    pub const KEYS: u32 = 25;
}

/// Why a message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Unknown `kind` for this direction.
    #[error("unknown message kind {0}")]
    Kind(u32),
    /// `len` larger than the message holds.
    #[error("message count {0} too large")]
    Len(u32),
    /// A field out of range (e.g. an unknown plan entry tag).
    #[error("message field out of range")]
    Field,
}

/// One entry of a plan on the wire, by index into the configuration's
/// classes or flows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PlanEntry {
    /// Class `class` (index in `Config::classes`) admits `sessions`.
    Class {
        /// Class index.
        class: u32,
        /// Admitted sessions `n_c`.
        sessions: u32,
    },
    /// Flow `flow` (index in `Config::flows`): target rate and MONtra weight.
    Flow {
        /// Flow index.
        flow: u32,
        /// Target rate `x_f` per session, Mbit/s.
        rate_mbps: f64,
        /// MONtra weight `w_f`.
        weight: f64,
        /// The mapping floored the weight (no priced link on the path): the
        /// controller's cap is the target itself.
        floored: bool,
    },
    /// Spare capacity of the detour to peer `peer` through peer `via` (indices
    /// in `Config::peers`) under the plan, Mbit/s (`PlanTable::detour_mbps`).
    Detour {
        /// Destination peer index.
        peer: u32,
        /// Waypoint peer index.
        via: u32,
        /// Mbit/s.
        mbps: f64,
    },
}

const TAG_CLASS: u64 = 1;
const TAG_FLOW: u64 = 2;
/// A flow entry whose weight the mapping floored.
const TAG_FLOW_FLOORED: u64 = 3;
const TAG_DETOUR: u64 = 4;

impl PlanEntry {
    /// The three words of this entry (`tag << 32 | index`, `a`, `b`): the
    /// wire form, also what the plan checksum covers.
    pub fn words(&self) -> [u64; 3] {
        match *self {
            PlanEntry::Class { class, sessions } => {
                [TAG_CLASS << 32 | u64::from(class), u64::from(sessions), 0]
            }
            PlanEntry::Flow {
                flow,
                rate_mbps,
                weight,
                floored,
            } => [
                (if floored { TAG_FLOW_FLOORED } else { TAG_FLOW }) << 32 | u64::from(flow),
                rate_mbps.to_bits(),
                weight.to_bits(),
            ],
            PlanEntry::Detour { peer, via, mbps } => [
                TAG_DETOUR << 32 | u64::from(peer),
                u64::from(via),
                mbps.to_bits(),
            ],
        }
    }

    /// Decodes three words.
    pub fn from_words(w: [u64; 3]) -> Result<Self, DecodeError> {
        let (tag, idx) = split(w[0]);
        match u64::from(tag) {
            TAG_CLASS => Ok(PlanEntry::Class {
                class: idx,
                sessions: u32::try_from(w[1]).map_err(|_| DecodeError::Field)?,
            }),
            t @ (TAG_FLOW | TAG_FLOW_FLOORED) => Ok(PlanEntry::Flow {
                flow: idx,
                rate_mbps: f64::from_bits(w[1]),
                weight: f64::from_bits(w[2]),
                floored: t == TAG_FLOW_FLOORED,
            }),
            TAG_DETOUR => Ok(PlanEntry::Detour {
                peer: idx,
                via: u32::try_from(w[1]).map_err(|_| DecodeError::Field)?,
                mbps: f64::from_bits(w[2]),
            }),
            _ => Err(DecodeError::Field),
        }
    }
}

/// `(high, low)` halves of a word.
fn split(w: u64) -> (u32, u32) {
    // Shifting/masking keep each half within 32 bits.
    let hi = u32::try_from(w >> 32).unwrap_or(u32::MAX);
    let lo = u32::try_from(w & 0xffff_ffff).unwrap_or(u32::MAX);
    (hi, lo)
}

fn join(hi: u32, lo: u32) -> u64 {
    u64::from(hi) << 32 | u64::from(lo)
}

/// Part `index` of `total` of the plan of epoch `epoch`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanChunk {
    /// Plan epoch.
    pub epoch: u64,
    /// Position of this chunk, 0-based.
    pub index: u32,
    /// Chunks in the plan.
    pub total: u32,
    /// Entries used in `entries`.
    pub count: u32,
    /// The entries (`count` of them are meaningful).
    pub entries: [PlanEntry; CHUNK_ENTRIES],
}

/// Flow to underlay path assignment. A path is named by its reference
/// `peer << 16 | index` (the candidate list the dataplane reports in
/// [`Telemetry::Paths`]); the flow must leave toward that peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Assignment {
    /// Flow index (`Config::flows`), [`FLOW_PEER_DEFAULT`], [`FLOW_MARK_DOWN`]
    /// or [`FLOW_MARK_UP`].
    pub flow: u32,
    /// Path reference, or [`PATH_NONE`] (follow the peer's default).
    pub path: u32,
}

/// A session key pair for one peer, installed by the control after a
/// handshake ([`Command::InstallKey`]). Wire form: `w[0] = peer << 32 |
/// local_index`, `w[1] = initiator << 32 | remote_index`, `w[2] =
/// created_ns`, `w[3..7]` the send key and `w[7..11]` the receive key (each
/// 32 bytes as four little-endian words).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyInstall {
    /// Peer index (`Config::peers`).
    pub peer: u32,
    /// Receiver index of packets to us under this key; its low
    /// [`KEY_SLOT_BITS`] bits are the key slot it replaces.
    pub local_index: u32,
    /// Receiver index we write into packets we seal with this key.
    pub remote_index: u32,
    /// AEAD key for sending.
    pub send_key: [u8; 32],
    /// AEAD key for receiving.
    pub recv_key: [u8; 32],
    /// We initiated the handshake: the key sends at once. A responder's key
    /// sends only once a packet authenticated with it (key confirmation).
    pub initiator: bool,
    /// When the handshake completed (the dataplane's clock, ns); the key is
    /// refused after `REJECT_AFTER_TIME` from it.
    pub created_ns: u64,
}

impl core::fmt::Debug for KeyInstall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("KeyInstall")
            .field("peer", &self.peer)
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .field("created_ns", &self.created_ns)
            .finish_non_exhaustive()
    }
}

/// A handshake message for the dataplane to send ([`Command::SendHandshake`]),
/// as a GENEVE OAM packet without the security option. Wire form: `len` =
/// byte count, `w[0] = port << 48 | family << 40 | msg_type << 32 | path`
/// (family 0 = no override, 4 or 6), `w[1..3]` the override address (16
/// bytes big-endian, IPv4 in the first 4), `w[3..28]` the 200 message bytes
/// (little-endian words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeOut {
    /// Path reference (`peer << 16 | index`, as [`Command::Probe`]): the
    /// uplink and template to send with.
    pub path: u32,
    /// Remote address and UDP port to send to instead of the path's (an
    /// answer to a roamed or NATed source).
    pub dst: Option<(IpAddr, u16)>,
    /// OAM message type (4 initiation, 5 response, 6 cookie reply).
    pub msg_type: u8,
    /// Bytes used in `bytes`.
    pub len: u16,
    /// The message.
    pub bytes: [u8; HANDSHAKE_MAX],
}

/// A handshake message the dataplane received ([`Telemetry::Handshake`]),
/// after its rate limits. Wire form as [`HandshakeOut`] with `port` (the
/// uplink index) in place of the path and the source address and UDP port
/// always present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeIn {
    /// Uplink index it arrived on.
    pub port: u32,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer UDP source port.
    pub src_port: u16,
    /// OAM message type (4..=6).
    pub msg_type: u8,
    /// Bytes used in `bytes`.
    pub len: u16,
    /// The message.
    pub bytes: [u8; HANDSHAKE_MAX],
}

/// Use of one installed key ([`Telemetry::Keys`]). Wire form, five words:
/// `peer << 32 | local_index`, `sent`, `received`, `last_rx_ns`,
/// `confirmed` (0 or 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// The key's local (receiver) index.
    pub local_index: u32,
    /// Peer index.
    pub peer: u32,
    /// Packets sealed with it (its send counter).
    pub sent: u64,
    /// Packets opened with it.
    pub received: u64,
    /// When the last packet opened with it arrived (0 = never), ns.
    pub last_rx_ns: u64,
    /// A packet authenticated with it (always true for initiator keys).
    pub confirmed: bool,
}

/// Words of the handshake bytes in a message.
const HS_WORDS: usize = HANDSHAKE_MAX / 8;
/// First word of the handshake bytes.
const HS_AT: usize = 3;
const _: () = assert!(HANDSHAKE_MAX.is_multiple_of(8) && HS_AT + HS_WORDS <= MSG_WORDS);

/// Packs bytes into little-endian words (`bytes.len() == 8 * words.len()`).
fn bytes_to_words(bytes: &[u8], words: &mut [u64]) {
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
}

/// Unpacks little-endian words into bytes.
fn words_to_bytes(words: &[u64], bytes: &mut [u8]) {
    for (c, w) in bytes.chunks_exact_mut(8).zip(words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
}

fn key_to_words(k: &[u8; 32], w: &mut [u64]) {
    bytes_to_words(k, w);
}

fn words_to_key(w: &[u64]) -> [u8; 32] {
    let mut k = [0u8; 32];
    words_to_bytes(w, &mut k);
    k
}

/// (family code, two words) of an address: 4 or 6, 16 bytes big-endian.
fn addr_words(a: IpAddr) -> (u64, [u64; 2]) {
    let (fam, b) = match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (4, b)
        }
        IpAddr::V6(v) => (6, v.octets()),
    };
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&b[..8]);
    lo.copy_from_slice(&b[8..]);
    (fam, [u64::from_be_bytes(hi), u64::from_be_bytes(lo)])
}

/// The address of a family code and two words; an IPv4 address with
/// nonzero bytes beyond its 4 is refused.
fn words_addr(fam: u64, w: [u64; 2]) -> Result<IpAddr, DecodeError> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[0].to_be_bytes());
    b[8..].copy_from_slice(&w[1].to_be_bytes());
    match fam {
        4 if b[4..].iter().all(|x| *x == 0) => {
            Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        }
        6 => Ok(IpAddr::V6(Ipv6Addr::from(b))),
        _ => Err(DecodeError::Field),
    }
}

/// A handshake message type byte (4..=6), else a field error.
fn handshake_type(t: u64) -> Result<u8, DecodeError> {
    match u8::try_from(t) {
        Ok(v @ 4..=6) => Ok(v),
        _ => Err(DecodeError::Field),
    }
}

/// Encodes the common part of [`HandshakeOut`] / [`HandshakeIn`].
fn encode_handshake(
    m: &mut Msg,
    low: u32,
    dst: Option<(IpAddr, u16)>,
    msg_type: u8,
    len: u16,
    bytes: &[u8; HANDSHAKE_MAX],
) {
    m.len = u32::from(len);
    let (fam, port, aw) = match dst {
        Some((a, port)) => {
            let (fam, aw) = addr_words(a);
            (fam, port, aw)
        }
        None => (0, 0, [0, 0]),
    };
    m.w[0] = u64::from(port) << 48 | fam << 40 | u64::from(msg_type) << 32 | u64::from(low);
    m.w[1] = aw[0];
    m.w[2] = aw[1];
    bytes_to_words(bytes, &mut m.w[HS_AT..HS_AT + HS_WORDS]);
}

/// The common part of a handshake message: (low word, address and port or
/// none, type, length, bytes).
#[allow(clippy::type_complexity)]
fn decode_handshake(
    m: &Msg,
) -> Result<(u32, Option<(IpAddr, u16)>, u8, u16, [u8; HANDSHAKE_MAX]), DecodeError> {
    let len =
        u16::try_from(check_len(m.len, HANDSHAKE_MAX)?).map_err(|_| DecodeError::Len(m.len))?;
    let (hi, low) = split(m.w[0]);
    let msg_type = handshake_type(u64::from(hi) & 0xFF)?;
    let fam = u64::from(hi >> 8) & 0xFF;
    let port = u16::try_from(hi >> 16).unwrap_or(u16::MAX);
    let dst = if fam == 0 {
        if port != 0 || m.w[1] != 0 || m.w[2] != 0 {
            return Err(DecodeError::Field);
        }
        None
    } else {
        Some((words_addr(fam, [m.w[1], m.w[2]])?, port))
    };
    let mut bytes = [0u8; HANDSHAKE_MAX];
    words_to_bytes(&m.w[HS_AT..HS_AT + HS_WORDS], &mut bytes);
    Ok((low, dst, msg_type, len, bytes))
}

/// Control -> dataplane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    /// A chunk of a plan.
    PlanChunk(PlanChunk),
    /// The plan of `epoch` is complete: `chunks` chunks, `entries` entries,
    /// FNV-1a checksum [`super::plan::checksum`] over its entries.
    PlanCommit {
        /// Plan epoch.
        epoch: u64,
        /// Chunks sent.
        chunks: u32,
        /// Entries sent.
        entries: u32,
        /// Checksum of the entries.
        checksum: u64,
    },
    /// Flow-to-path assignments (applied as they come, `count` used).
    Assign {
        /// Assignments used.
        count: u32,
        /// The assignments.
        items: [Assignment; ASSIGN_PER_MSG],
    },
    /// Send `count` probes on `path`, `interval_ns` apart; answer with a
    /// [`Telemetry::ProbeResult`] carrying `id` once every probe was
    /// answered or timed out. While a control sends probe commands it owns
    /// probing: the dataplane's own background probes pause (they resume
    /// when no command came for a lease time: fail-static).
    Probe {
        /// Probe id, echoed.
        id: u64,
        /// Path reference (`peer << 16 | index`).
        path: u32,
        /// Probes to send.
        count: u32,
        /// Gap between probes, ns.
        interval_ns: u64,
    },
    /// Install a session key pair (replacing what its slot held).
    InstallKey(KeyInstall),
    /// Forget the key of this local (receiver) index. Wire form: `w[0]`.
    RevokeKey {
        /// The key's local index.
        local_index: u32,
    },
    /// Send a handshake message.
    SendHandshake(HandshakeOut),
}

/// Telemetry of one flow (cumulative counters since the dataplane started).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowTelemetry {
    /// Flow index.
    pub flow: u32,
    /// Path reference the flow rides now (`peer << 16 | index`), or
    /// [`PATH_NONE`].
    pub path: u32,
    /// Current MONtra rate, bit/s.
    pub rate_bps: u64,
    /// Packets acknowledged.
    pub acks: u64,
    /// Packets lost.
    pub losses: u64,
    /// Packets dropped by the pacing queue.
    pub queue_drops: u64,
    /// Inner bytes sent on the WAN (the control's estimator takes the
    /// mean sending rate over its window from two reports).
    pub tx_bytes: u64,
}

impl FlowTelemetry {
    /// The telemetry of flow `flow` riding `path`, from its counters; the
    /// rate goes in bit/s for packets of `rate_unit_bytes`.
    pub fn new(
        flow: u32,
        path: u32,
        c: &crate::overlay::FlowCounters,
        rate_unit_bytes: u32,
    ) -> Self {
        Self {
            flow,
            path,
            rate_bps: c.rate_bps(rate_unit_bytes),
            acks: c.acked,
            losses: c.lost,
            queue_drops: c.queue_drops,
            tx_bytes: c.tx_bytes,
        }
    }
}

/// Sessions of one class. Wire form: `active << 32 | class`, then `waiting`
/// (the high half of the second word is zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClassTelemetry {
    /// Class index.
    pub class: u32,
    /// Admitted sessions currently active.
    pub active: u32,
    /// Live sessions refused (sent best effort or dropped) because the
    /// class had no room in the plan: demand the plan does not cover.
    pub waiting: u32,
}

/// Path state toward one peer site, as the dataplane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerTelemetry {
    /// Peer index (`Config::peers`).
    pub peer: u16,
    /// Direct candidate paths (uplink x peer address).
    pub direct: u16,
    /// Of which up.
    pub direct_up: u16,
    /// Path switches so far (wrapping at 2^16).
    pub switches: u16,
}

/// The wire code of a path event.
fn event_code(e: PathEventKind) -> u64 {
    match e {
        PathEventKind::AckGap => 1,
        PathEventKind::Up => 2,
    }
}

/// The path event of a wire code.
fn event_from_code(c: u64) -> Result<PathEventKind, DecodeError> {
    match c {
        1 => Ok(PathEventKind::AckGap),
        2 => Ok(PathEventKind::Up),
        _ => Err(DecodeError::Field),
    }
}

/// How a worker handled a plan (also mirrored in its header words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// Complete and valid: staged, waiting for the active epoch to flip.
    Staged,
    /// Switched to it.
    Running,
    /// Refused (see the worker's counters).
    Refused,
}

impl AckStatus {
    fn code(self) -> u32 {
        match self {
            AckStatus::Staged => 1,
            AckStatus::Running => 2,
            AckStatus::Refused => 3,
        }
    }
    fn from_code(c: u32) -> Result<Self, DecodeError> {
        match c {
            1 => Ok(AckStatus::Staged),
            2 => Ok(AckStatus::Running),
            3 => Ok(AckStatus::Refused),
            _ => Err(DecodeError::Field),
        }
    }
}

/// Number of counter words in [`Telemetry::Counters`].
pub const COUNTER_WORDS: usize = MSG_WORDS;

/// Dataplane -> control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Telemetry {
    /// Per-flow telemetry (`count` used).
    Flows {
        /// Records used.
        count: u32,
        /// The records.
        items: [FlowTelemetry; FLOW_TEL_PER_MSG],
    },
    /// Per-class active sessions (`count` used).
    Classes {
        /// Records used.
        count: u32,
        /// The records.
        items: [ClassTelemetry; CLASSES_PER_MSG],
    },
    /// Result of a [`Command::Probe`].
    ProbeResult {
        /// The probe id.
        id: u64,
        /// Path index.
        path: u32,
        /// Probes sent.
        sent: u32,
        /// Probes answered.
        received: u32,
        /// Smallest round-trip time, ns.
        rtt_min_ns: u64,
        /// Mean round-trip time, ns.
        rtt_mean_ns: u64,
    },
    /// A worker's counters (meaning of each word: [`super::plan::AssemblerCounters::to_words`]).
    Counters {
        /// Worker index.
        worker: u32,
        /// The words.
        words: [u64; COUNTER_WORDS],
    },
    /// Path state per peer (`count` used).
    Peers {
        /// Records used.
        count: u32,
        /// The records.
        items: [PeerTelemetry; PEERS_PER_MSG],
    },
    /// The candidate paths (`count` used); sent with every report.
    Paths {
        /// Records used.
        count: u32,
        /// The records.
        items: [PathTelemetry; PATHS_PER_MSG],
    },
    /// Something happened to a path, at dataplane time `at_ns`.
    PathEvent {
        /// Path reference.
        path: u32,
        /// What.
        event: PathEventKind,
        /// When (the dataplane's monotonic clock, ns).
        at_ns: u64,
    },
    /// A worker's answer about a plan.
    PlanAck {
        /// Worker index.
        worker: u32,
        /// Plan epoch.
        epoch: u64,
        /// What happened to it.
        status: AckStatus,
    },
    /// A handshake message received (rate limited), for the control.
    Handshake(HandshakeIn),
    /// Use of the installed keys (`count` used); sent with every report.
    Keys {
        /// Records used.
        count: u32,
        /// The records.
        items: [KeyUsage; KEYS_PER_MSG],
    },
}

fn check_len(len: u32, max: usize) -> Result<usize, DecodeError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(DecodeError::Len(len)),
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Command {
    /// The wire form.
    pub fn encode(&self) -> Msg {
        let mut m = Msg::default();
        match *self {
            Command::PlanChunk(c) => {
                m.kind = kind::PLAN_CHUNK;
                m.epoch = c.epoch;
                let n = usize::try_from(c.count)
                    .unwrap_or(usize::MAX)
                    .min(CHUNK_ENTRIES);
                m.len = count_u32(n);
                m.w[0] = join(c.total, c.index);
                for (i, e) in c.entries[..n].iter().enumerate() {
                    m.w[1 + 3 * i..4 + 3 * i].copy_from_slice(&e.words());
                }
            }
            Command::PlanCommit {
                epoch,
                chunks,
                entries,
                checksum,
            } => {
                m.kind = kind::PLAN_COMMIT;
                m.epoch = epoch;
                m.w[0] = join(entries, chunks);
                m.w[1] = checksum;
            }
            Command::Assign { count, items } => {
                m.kind = kind::ASSIGN;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(ASSIGN_PER_MSG);
                m.len = count_u32(n);
                for (w, a) in m.w.iter_mut().zip(&items[..n]) {
                    *w = join(a.path, a.flow);
                }
            }
            Command::Probe {
                id,
                path,
                count,
                interval_ns,
            } => {
                m.kind = kind::PROBE;
                m.w[0] = id;
                m.w[1] = join(count, path);
                m.w[2] = interval_ns;
            }
            Command::InstallKey(k) => {
                m.kind = kind::INSTALL_KEY;
                m.w[0] = join(k.peer, k.local_index);
                m.w[1] = join(u32::from(k.initiator), k.remote_index);
                m.w[2] = k.created_ns;
                key_to_words(&k.send_key, &mut m.w[3..7]);
                key_to_words(&k.recv_key, &mut m.w[7..11]);
            }
            Command::RevokeKey { local_index } => {
                m.kind = kind::REVOKE_KEY;
                m.w[0] = u64::from(local_index);
            }
            Command::SendHandshake(h) => {
                m.kind = kind::SEND_HANDSHAKE;
                encode_handshake(&mut m, h.path, h.dst, h.msg_type, h.len, &h.bytes);
            }
        }
        m
    }

    /// Decodes a message read from the command ring.
    pub fn decode(m: &Msg) -> Result<Self, DecodeError> {
        match m.kind {
            kind::PLAN_CHUNK => {
                let n = check_len(m.len, CHUNK_ENTRIES)?;
                let (total, index) = split(m.w[0]);
                let mut entries = [PlanEntry::Class {
                    class: 0,
                    sessions: 0,
                }; CHUNK_ENTRIES];
                for (i, e) in entries[..n].iter_mut().enumerate() {
                    *e = PlanEntry::from_words([m.w[1 + 3 * i], m.w[2 + 3 * i], m.w[3 + 3 * i]])?;
                }
                Ok(Command::PlanChunk(PlanChunk {
                    epoch: m.epoch,
                    index,
                    total,
                    count: m.len,
                    entries,
                }))
            }
            kind::PLAN_COMMIT => {
                let (entries, chunks) = split(m.w[0]);
                Ok(Command::PlanCommit {
                    epoch: m.epoch,
                    chunks,
                    entries,
                    checksum: m.w[1],
                })
            }
            kind::ASSIGN => {
                let n = check_len(m.len, ASSIGN_PER_MSG)?;
                let mut items = [Assignment::default(); ASSIGN_PER_MSG];
                for (a, w) in items[..n].iter_mut().zip(&m.w) {
                    let (path, flow) = split(*w);
                    *a = Assignment { flow, path };
                }
                Ok(Command::Assign {
                    count: m.len,
                    items,
                })
            }
            kind::PROBE => {
                let (count, path) = split(m.w[1]);
                Ok(Command::Probe {
                    id: m.w[0],
                    path,
                    count,
                    interval_ns: m.w[2],
                })
            }
            kind::INSTALL_KEY => {
                let (peer, local_index) = split(m.w[0]);
                let (initiator, remote_index) = split(m.w[1]);
                Ok(Command::InstallKey(KeyInstall {
                    peer,
                    local_index,
                    remote_index,
                    send_key: words_to_key(&m.w[3..7]),
                    recv_key: words_to_key(&m.w[7..11]),
                    initiator: match initiator {
                        0 => false,
                        1 => true,
                        _ => return Err(DecodeError::Field),
                    },
                    created_ns: m.w[2],
                }))
            }
            kind::REVOKE_KEY => Ok(Command::RevokeKey {
                local_index: u32::try_from(m.w[0]).map_err(|_| DecodeError::Field)?,
            }),
            kind::SEND_HANDSHAKE => {
                let (path, dst, msg_type, len, bytes) = decode_handshake(m)?;
                Ok(Command::SendHandshake(HandshakeOut {
                    path,
                    dst,
                    msg_type,
                    len,
                    bytes,
                }))
            }
            k => Err(DecodeError::Kind(k)),
        }
    }
}

impl Telemetry {
    /// The wire form.
    pub fn encode(&self) -> Msg {
        let mut m = Msg::default();
        match *self {
            Telemetry::Flows { count, items } => {
                m.kind = kind::FLOWS;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(FLOW_TEL_PER_MSG);
                m.len = count_u32(n);
                for (i, f) in items[..n].iter().enumerate() {
                    let at = FLOW_TEL_WORDS * i;
                    m.w[at..at + FLOW_TEL_WORDS].copy_from_slice(&[
                        join(f.path, f.flow),
                        f.rate_bps,
                        f.acks,
                        f.losses,
                        f.queue_drops,
                        f.tx_bytes,
                    ]);
                }
            }
            Telemetry::Classes { count, items } => {
                m.kind = kind::CLASSES;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(CLASSES_PER_MSG);
                m.len = count_u32(n);
                for (w, c) in m.w.chunks_exact_mut(2).zip(&items[..n]) {
                    w[0] = join(c.active, c.class);
                    w[1] = u64::from(c.waiting);
                }
            }
            Telemetry::ProbeResult {
                id,
                path,
                sent,
                received,
                rtt_min_ns,
                rtt_mean_ns,
            } => {
                m.kind = kind::PROBE_RESULT;
                m.w[0] = id;
                m.w[1] = u64::from(path);
                m.w[2] = join(received, sent);
                m.w[3] = rtt_min_ns;
                m.w[4] = rtt_mean_ns;
            }
            Telemetry::Peers { count, items } => {
                m.kind = kind::PEERS;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(PEERS_PER_MSG);
                m.len = count_u32(n);
                for (w, p) in m.w.iter_mut().zip(&items[..n]) {
                    *w = u64::from(p.peer) << 48
                        | u64::from(p.direct) << 32
                        | u64::from(p.direct_up) << 16
                        | u64::from(p.switches);
                }
            }
            Telemetry::Paths { count, items } => {
                m.kind = kind::PATHS;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(PATHS_PER_MSG);
                m.len = count_u32(n);
                for (i, p) in items[..n].iter().enumerate() {
                    m.w[2 * i] = join(p.path, u32::from(p.uplink) << 16 | u32::from(p.via));
                    m.w[2 * i + 1] = u64::from(p.remote) << 48
                        | u64::from(p.up) << 40
                        | u64::from(p.active) << 32
                        | u64::from(p.rx_recent) << 24
                        | u64::from(p.srtt_us.min(SRTT_US_MAX));
                }
            }
            Telemetry::PathEvent { path, event, at_ns } => {
                m.kind = kind::PATH_EVENT;
                m.w[0] = u64::from(path);
                m.w[1] = event_code(event);
                m.w[2] = at_ns;
            }
            Telemetry::Counters { worker, words } => {
                m.kind = kind::COUNTERS;
                m.len = worker;
                m.w = words;
            }
            Telemetry::PlanAck {
                worker,
                epoch,
                status,
            } => {
                m.kind = kind::PLAN_ACK;
                m.len = worker;
                m.epoch = epoch;
                m.w[0] = u64::from(status.code());
            }
            Telemetry::Handshake(h) => {
                m.kind = kind::HANDSHAKE;
                encode_handshake(
                    &mut m,
                    h.port,
                    Some((h.src, h.src_port)),
                    h.msg_type,
                    h.len,
                    &h.bytes,
                );
            }
            Telemetry::Keys { count, items } => {
                m.kind = kind::KEYS;
                let n = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .min(KEYS_PER_MSG);
                m.len = count_u32(n);
                for (i, k) in items[..n].iter().enumerate() {
                    m.w[5 * i..5 * i + 5].copy_from_slice(&[
                        join(k.peer, k.local_index),
                        k.sent,
                        k.received,
                        k.last_rx_ns,
                        u64::from(k.confirmed),
                    ]);
                }
            }
        }
        m
    }

    /// Decodes a message read from the telemetry ring.
    pub fn decode(m: &Msg) -> Result<Self, DecodeError> {
        match m.kind {
            kind::FLOWS => {
                let n = check_len(m.len, FLOW_TEL_PER_MSG)?;
                let mut items = [FlowTelemetry::default(); FLOW_TEL_PER_MSG];
                for (i, f) in items[..n].iter_mut().enumerate() {
                    let w = &m.w[FLOW_TEL_WORDS * i..FLOW_TEL_WORDS * (i + 1)];
                    let (path, flow) = split(w[0]);
                    *f = FlowTelemetry {
                        flow,
                        path,
                        rate_bps: w[1],
                        acks: w[2],
                        losses: w[3],
                        queue_drops: w[4],
                        tx_bytes: w[5],
                    };
                }
                Ok(Telemetry::Flows {
                    count: m.len,
                    items,
                })
            }
            kind::CLASSES => {
                let n = check_len(m.len, CLASSES_PER_MSG)?;
                let mut items = [ClassTelemetry::default(); CLASSES_PER_MSG];
                for (c, w) in items[..n].iter_mut().zip(m.w.chunks_exact(2)) {
                    let (active, class) = split(w[0]);
                    let waiting = u32::try_from(w[1]).map_err(|_| DecodeError::Field)?;
                    *c = ClassTelemetry {
                        class,
                        active,
                        waiting,
                    };
                }
                Ok(Telemetry::Classes {
                    count: m.len,
                    items,
                })
            }
            kind::PROBE_RESULT => {
                let (received, sent) = split(m.w[2]);
                Ok(Telemetry::ProbeResult {
                    id: m.w[0],
                    path: u32::try_from(m.w[1]).map_err(|_| DecodeError::Field)?,
                    sent,
                    received,
                    rtt_min_ns: m.w[3],
                    rtt_mean_ns: m.w[4],
                })
            }
            kind::PEERS => {
                let n = check_len(m.len, PEERS_PER_MSG)?;
                let mut items = [PeerTelemetry::default(); PEERS_PER_MSG];
                let part = |w: u64, shift: u32| u16::try_from((w >> shift) & 0xFFFF).unwrap_or(0);
                for (p, w) in items[..n].iter_mut().zip(&m.w) {
                    *p = PeerTelemetry {
                        peer: part(*w, 48),
                        direct: part(*w, 32),
                        direct_up: part(*w, 16),
                        switches: part(*w, 0),
                    };
                    if p.direct_up > p.direct {
                        return Err(DecodeError::Field);
                    }
                }
                Ok(Telemetry::Peers {
                    count: m.len,
                    items,
                })
            }
            kind::PATHS => {
                let n = check_len(m.len, PATHS_PER_MSG)?;
                let mut items = [PathTelemetry::default(); PATHS_PER_MSG];
                for (i, p) in items[..n].iter_mut().enumerate() {
                    let (path, uv) = split(m.w[2 * i]);
                    let w = m.w[2 * i + 1];
                    let flag = |shift: u32| match (w >> shift) & 0xFF {
                        0 => Ok(false),
                        1 => Ok(true),
                        _ => Err(DecodeError::Field),
                    };
                    *p = PathTelemetry {
                        path,
                        uplink: u16::try_from(uv >> 16).unwrap_or(u16::MAX),
                        via: u16::try_from(uv & 0xFFFF).unwrap_or(u16::MAX),
                        remote: u16::try_from(w >> 48).unwrap_or(u16::MAX),
                        up: flag(40)?,
                        active: flag(32)?,
                        rx_recent: flag(24)?,
                        srtt_us: u32::try_from(w & u64::from(SRTT_US_MAX)).unwrap_or(u32::MAX),
                    };
                }
                Ok(Telemetry::Paths {
                    count: m.len,
                    items,
                })
            }
            kind::PATH_EVENT => Ok(Telemetry::PathEvent {
                path: u32::try_from(m.w[0]).map_err(|_| DecodeError::Field)?,
                event: event_from_code(m.w[1])?,
                at_ns: m.w[2],
            }),
            kind::COUNTERS => Ok(Telemetry::Counters {
                worker: m.len,
                words: m.w,
            }),
            kind::PLAN_ACK => Ok(Telemetry::PlanAck {
                worker: m.len,
                epoch: m.epoch,
                status: AckStatus::from_code(
                    u32::try_from(m.w[0]).map_err(|_| DecodeError::Field)?,
                )?,
            }),
            kind::HANDSHAKE => {
                let (port, src, msg_type, len, bytes) = decode_handshake(m)?;
                let (src, src_port) = src.ok_or(DecodeError::Field)?;
                Ok(Telemetry::Handshake(HandshakeIn {
                    port,
                    src,
                    src_port,
                    msg_type,
                    len,
                    bytes,
                }))
            }
            kind::KEYS => {
                let n = check_len(m.len, KEYS_PER_MSG)?;
                let mut items = [KeyUsage::default(); KEYS_PER_MSG];
                for (i, k) in items[..n].iter_mut().enumerate() {
                    let w = &m.w[5 * i..5 * i + 5];
                    let (peer, local_index) = split(w[0]);
                    *k = KeyUsage {
                        local_index,
                        peer,
                        sent: w[1],
                        received: w[2],
                        last_rx_ns: w[3],
                        confirmed: match w[4] {
                            0 => false,
                            1 => true,
                            _ => return Err(DecodeError::Field),
                        },
                    };
                }
                Ok(Telemetry::Keys {
                    count: m.len,
                    items,
                })
            }
            k => Err(DecodeError::Kind(k)),
        }
    }
}
