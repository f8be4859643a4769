/// Why a packet was dropped. Small and `Copy`: counted per worker in shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or than the headers it claims.
    Runt = 0,
    /// Headers claim more bytes than the frame holds.
    Truncated = 1,
    /// Larger than the frame or the port's MTU.
    Oversized = 2,
    /// Not a protocol this stage handles (e.g. unknown EtherType).
    Unsupported = 3,
    /// TTL or hop limit expired.
    TtlExceeded = 4,
    /// No route or no matching rule.
    NoRoute = 5,
    /// The transmit ring was full.
    TxFull = 6,
    /// A per-flow queue was full (drop-tail).
    QueueFull = 7,
    /// Admission refused by the plan.
    NotAdmitted = 8,
    /// Malformed overlay header or option.
    BadOverlay = 9,
    /// The AEAD tag did not authenticate the packet (forged, corrupted, or
    /// sealed with another key).
    AuthFailed = 10,
    /// Anything else: a packet no stage decided on, the rx-drop benchmark's
    /// `DropAll`, an ICMP error that must not be answered.
    Other = 11,
    /// Sealed with a receiver index naming no key of ours.
    AuthNoKey = 12,
    /// Authenticated, but a duplicate or older than the replay window (or
    /// beyond the counter limit).
    AuthReplay = 13,
    /// An overlay packet without the security option while security is
    /// required (handshake messages excepted).
    AuthUnsealed = 14,
    /// Sealed with a key older than `REJECT_AFTER_TIME`.
    AuthExpired = 15,
    /// Authenticated, but its inner source is not the sending site's (or
    /// the flow's origin's), or its inner destination is neither ours nor a
    /// route we carry (cryptokey routing).
    CryptoRoute = 16,
    /// A handshake message over the rate limits.
    HandshakeLimited = 17,
    /// Not sent: no session key with the peer yet (never sent in clear).
    NoSession = 18,
    /// A LAN packet whose inner source is outside the site's LAN prefixes.
    LanSource = 19,
    /// A LAN packet from a MAC other than the one holding its source
    /// address (learned, heard within the hold time).
    LanMacConflict = 20,
    /// Not a failure: an OAM frame the gateway consumed (an ack, a probe
    /// echo, a handshake message handed to the control) whose frame went
    /// back to the pool because the gateway's frame reserve was full.
    OamConsumed = 21,
    /// A UDP or IP header checksum did not verify (outer header of an
    /// overlay packet).
    BadChecksum = 22,
    /// The ring to the worker that owns the packet's class or flow was
    /// full (a gateway with several workers: `worker/handoff.rs`).
    HandoffFull = 23,
    /// A handshake message addressed to another host (its outer
    /// destination is none of our uplinks' addresses): a point-to-point
    /// link delivers a peer's messages to gateways behind us here too, and
    /// they must not spend that peer's handshake budget.
    NotOurs = 24,
}

impl DropReason {
    /// Number of variants: the size of per-reason counter arrays.
    pub const COUNT: usize = 25;
    /// All reasons, index = discriminant.
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Runt,
        Self::Truncated,
        Self::Oversized,
        Self::Unsupported,
        Self::TtlExceeded,
        Self::NoRoute,
        Self::TxFull,
        Self::QueueFull,
        Self::NotAdmitted,
        Self::BadOverlay,
        Self::AuthFailed,
        Self::Other,
        Self::AuthNoKey,
        Self::AuthReplay,
        Self::AuthUnsealed,
        Self::AuthExpired,
        Self::CryptoRoute,
        Self::HandshakeLimited,
        Self::NoSession,
        Self::LanSource,
        Self::LanMacConflict,
        Self::OamConsumed,
        Self::BadChecksum,
        Self::HandoffFull,
        Self::NotOurs,
    ];

    /// Stable snake_case name for counters and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Runt => "runt",
            Self::Truncated => "truncated",
            Self::Oversized => "oversized",
            Self::Unsupported => "unsupported",
            Self::TtlExceeded => "ttl_exceeded",
            Self::NoRoute => "no_route",
            Self::TxFull => "tx_full",
            Self::QueueFull => "queue_full",
            Self::NotAdmitted => "not_admitted",
            Self::BadOverlay => "bad_overlay",
            Self::AuthFailed => "auth_failed",
            Self::Other => "other",
            Self::AuthNoKey => "auth_no_key",
            Self::AuthReplay => "auth_replay",
            Self::AuthUnsealed => "auth_unsealed",
            Self::AuthExpired => "auth_expired",
            Self::CryptoRoute => "crypto_route",
            Self::HandshakeLimited => "handshake_limited",
            Self::NoSession => "no_session",
            Self::LanSource => "lan_source",
            Self::LanMacConflict => "lan_mac_conflict",
            Self::OamConsumed => "oam_consumed",
            Self::BadChecksum => "bad_checksum",
            Self::HandoffFull => "handoff_full",
            Self::NotOurs => "not_ours",
        }
    }
}

/// What happens to a packet after a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet (fresh from a port).
    Pending,
    /// Send out of the worker's port with this index.
    Tx(u16),
    /// Drop and count.
    Drop(DropReason),
    /// A stage keeps the frame (queued for pacing); it is no longer in the batch's care.
    Held,
}

/// A packet: a frame in the worker's [`super::Arena`], `len` bytes starting at
/// byte offset `addr` (which may point into the frame's headroom after an
/// encapsulation pushed headers in front).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Offset of the first byte in the arena.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Index of the port it arrived on.
    pub port: u16,
    /// What to do with it.
    pub verdict: Verdict,
    /// Receive timestamp (worker clock), for latency and pacing.
    pub rx_ns: u64,
    /// Handoff between the workers of a gateway (`worker/handoff.rs`):
    /// bits 24..32, 0 when it arrived on this worker's port, else the
    /// index of the worker that received it plus one; bits 0..24, a flow
    /// index the sending stage chose for it ([`HANDOFF_NO_FLOW`]: none).
    /// See [`Packet::handed_from`], [`Packet::handoff_flow`].
    pub handoff: u32,
}

/// [`Packet::handoff_flow`] of a packet handed on without a flow.
pub const HANDOFF_NO_FLOW: u32 = 0x00FF_FFFF;

impl Packet {
    /// A fresh packet as a port delivers it.
    pub const fn new(addr: u64, len: u32, port: u16, rx_ns: u64) -> Self {
        Self {
            addr,
            len,
            port,
            verdict: Verdict::Pending,
            rx_ns,
            handoff: HANDOFF_NO_FLOW,
        }
    }

    /// The worker (index + 1) that handed it to this one; 0: it arrived
    /// here.
    #[inline]
    pub const fn handed_from(&self) -> u8 {
        (self.handoff >> 24) as u8
    }

    /// The flow the handing worker chose for it, if any.
    #[inline]
    pub const fn handoff_flow(&self) -> Option<u32> {
        match self.handoff & HANDOFF_NO_FLOW {
            HANDOFF_NO_FLOW => None,
            f => Some(f),
        }
    }

    /// Tags it with `flow` (below 2^24 - 1) for the worker it is handed
    /// to, keeping where it came from.
    #[inline]
    pub const fn set_handoff_flow(&mut self, flow: u32) {
        self.handoff = (self.handoff & !HANDOFF_NO_FLOW) | (flow & HANDOFF_NO_FLOW);
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    /// Every reason at its index, with its own name (the counters in the
    /// stats file are by index, `mongate status` shows them by name).
    #[test]
    fn drop_reasons_are_indexed_and_named_once() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(names.insert(r.name()), "{} twice", r.name());
        }
        assert_eq!(DropReason::OamConsumed.name(), "oam_consumed");
        assert_eq!(DropReason::BadChecksum.name(), "bad_checksum");
    }
}
