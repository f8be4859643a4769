//! MONtra feedback: aggregated acknowledgements.
//!
//! Receiver side, [`AckAggregator`]: records the per-flow sequence numbers that
//! arrive and emits an [`AckInfo`] every `every_packets` packets or
//! `max_delay_ns` after the first unacknowledged arrival, whichever comes first.
//!
//! Sender side, [`AckTracker`]: numbers the packets it sends and turns acks
//! into per-packet successes and losses, each packet counted exactly once.
//!
//! ## Ack contents
//! `cum` is the receiver's next expected sequence number: every sequence
//! below `cum` was received. `bitmap` bit `i` says sequence `cum + 1 + i` was
//! received (so 65 sequences are described beyond the cumulative point).
//! The receiver's window is 64 packets: when a packet arrives 65 or more
//! beyond `cum`, the receiver gives up on the oldest holes and moves `cum`
//! forward past them (counted in [`AckAggregator::abandoned`]). The sender
//! would then take those holes as received; it has normally declared them lost
//! long before (3 later packets acked, see below), so this only happens when
//! several consecutive acks are lost (acks go every 16 packets, so it takes 3
//! or 4 lost in a row). Bounded and rare; documented in `docs/montra.md`.
//!
//! ## Loss rules (sender)
//! A packet still outstanding is declared lost when
//! - 3 packets sent after it have been acknowledged (packet threshold,
//!   tolerates reordering by up to 2 positions), or
//! - a later packet was acknowledged and it was sent more than
//!   `1.25 * max(srtt, latest_rtt)` ago (time threshold), or
//! - no later packet was acknowledged and it was sent more than
//!   `max(srtt + 4 rttvar + max_ack_delay, 1.25 srtt)` ago (tail timeout), or
//! - the sender's window of `window` outstanding packets is full and it is the
//!   oldest (bounded memory).
//!
//! An ack arriving for a packet already declared lost is counted as spurious
//! and not as a success. An ack naming a sequence never sent (its `cum` or a
//! bitmap bit beyond the next sequence to send) is not from the receiver and
//! is ignored as a whole (counted in [`TrackerStats::garbage`]); duplicated
//! and stale acks are ignored too; nothing panics, every loop is bounded by
//! the window.
//!
//! ## Plausible sequences (receiver)
//! A sequence number is adopted only when a sender could have reached it:
//! below [`SEQ_CEILING`], and, once the flow has received, at most
//! [`SEQ_JUMP`] plus one per [`SEQ_JUMP_NS_PER_PACKET`] ns since the last
//! accepted packet beyond the highest received. Anything else is refused
//! ([`AckAggregator::admit`], counted in [`AckAggregator::implausible`]):
//! one forged packet with a huge sequence would otherwise move `cum` past
//! everything the sender will ever send, and the flow's acks would be
//! garbage from then on.
//!
//! A sender that restarts numbers from 0 again: its packets are then far
//! below `cum`. After [`SENDER_RESTART_RUN`] such packets in a row (more than
//! the bitmap's 64 below `cum`: no reordering goes that far) the receiver
//! starts over from the sender's numbering (counted in
//! [`AckAggregator::restarts`]), so that its acks name sequences the new
//! sender sent.

/// One aggregated acknowledgement (plain contents; the wire encoding is
/// `wire::oam`'s business).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckInfo {
    /// Every sequence number below this was received (next expected).
    pub cum: u64,
    /// Bit `i`: sequence `cum + 1 + i` was received.
    pub bitmap: u64,
    /// Sender timestamp carried by the most recently arrived packet.
    pub echo_ts_ns: u64,
    /// Time that packet spent at the receiver before this ack was made.
    pub ack_delay_ns: u64,
}

/// Receiver ack policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckPolicy {
    /// Ack after this many arrivals.
    pub every_packets: u32,
    /// Ack at most this long after the first unacknowledged arrival.
    pub max_delay_ns: u64,
}

impl Default for AckPolicy {
    fn default() -> Self {
        Self {
            every_packets: 16,
            max_delay_ns: 5_000_000,
        }
    }
}

/// The largest receiver ack delay the tail timeout learns, ns (a gateway
/// descheduled for a second is a gateway with other problems).
pub const MAX_LEARNT_ACK_DELAY_NS: u64 = 1_000_000_000;
/// A sequence number at or beyond this is never plausible (a flow at 10
/// million packets per second takes 14,000 years to get there).
pub const SEQ_CEILING: u64 = 1 << 62;
/// How far beyond the highest sequence received a packet may be at once
/// (a burst of loss or a reordering the window could not hold).
pub const SEQ_JUMP: u64 = 1 << 20;
/// Plus one sequence per this many ns since the last accepted packet (a
/// flow at up to 31 million packets per second whose packets were lost or
/// whose path was down meanwhile).
pub const SEQ_JUMP_NS_PER_PACKET: u64 = 32;

/// Packets far below `cum` in a row after which the receiver takes the
/// sender for restarted and starts over from its numbering.
pub const SENDER_RESTART_RUN: u32 = 64;

/// Per-flow receiver state producing aggregated acks.
#[derive(Clone, Debug)]
pub struct AckAggregator {
    policy: AckPolicy,
    /// Highest sequence accepted (None: nothing yet).
    highest: Option<u64>,
    /// When the last packet was accepted.
    last_accept_ns: u64,
    implausible: u64,
    /// Packets far below `cum` in a row.
    stale_run: u32,
    restarts: u64,
    cum: u64,
    /// Bit i: seq cum + 1 + i received.
    bits: u64,
    echo_ts: u64,
    echo_arrival: u64,
    pending: u32,
    first_pending_ns: u64,
    duplicates: u64,
    abandoned: u64,
}

impl AckAggregator {
    /// A receiver expecting sequence 0 first.
    pub fn new(policy: AckPolicy) -> Self {
        let policy = AckPolicy {
            every_packets: policy.every_packets.max(1),
            max_delay_ns: policy.max_delay_ns,
        };
        Self {
            policy,
            highest: None,
            last_accept_ns: 0,
            implausible: 0,
            stale_run: 0,
            restarts: 0,
            cum: 0,
            bits: 0,
            echo_ts: 0,
            echo_arrival: 0,
            pending: 0,
            first_pending_ns: 0,
            duplicates: 0,
            abandoned: 0,
        }
    }

    /// Duplicate or stale arrivals seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Missing sequences the receiver gave up on (moved `cum` past).
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Times the receiver took the sender for restarted (see the module docs).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Packets refused as implausible (see the module docs).
    pub fn implausible(&self) -> u64 {
        self.implausible
    }

    /// Whether a packet `seq` arriving at `now_ns` is plausible (see the
    /// module docs); counts it when not. [`AckAggregator::on_packet`] calls
    /// it; a caller that must drop such a packet asks first.
    pub fn admit(&mut self, seq: u64, now_ns: u64) -> bool {
        let ok = seq < SEQ_CEILING
            && self.highest.is_none_or(|h| {
                let lead = now_ns.saturating_sub(self.last_accept_ns) / SEQ_JUMP_NS_PER_PACKET;
                seq <= h.saturating_add(SEQ_JUMP).saturating_add(lead)
            });
        if !ok {
            self.implausible += 1;
        }
        ok
    }

    /// Records packet `seq` carrying sender timestamp `sender_ts_ns`, arrived
    /// at `now_ns`. Returns an ack when the policy says so; an implausible
    /// `seq` is refused ([`AckAggregator::admit`]) and changes nothing else.
    pub fn on_packet(&mut self, seq: u64, sender_ts_ns: u64, now_ns: u64) -> Option<AckInfo> {
        if !self.admit(seq, now_ns) {
            return None;
        }
        self.last_accept_ns = self.last_accept_ns.max(now_ns);
        if seq.saturating_add(64) < self.cum {
            self.stale_run += 1;
            if self.stale_run >= SENDER_RESTART_RUN {
                // The sender restarted: its numbering from here on.
                self.restarts += 1;
                self.stale_run = 0;
                self.cum = seq;
                self.bits = 0;
                self.highest = Some(seq);
            }
        } else {
            self.stale_run = 0;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if seq < self.cum {
            self.duplicates += 1;
        } else if seq == self.cum {
            self.absorb_cum();
        } else {
            let mut off = seq - self.cum - 1;
            if off >= 64 {
                // Slide so that seq becomes bit 63: cum' = seq - 64, skipping
                // `shift` sequences (cum and bits 0..shift-2).
                let shift = off - 63;
                let (skipped_received, new_cum_received, new_bits) = if shift > 64 {
                    (u64::from(self.bits.count_ones()), false, 0)
                } else {
                    let below = if shift == 1 {
                        0
                    } else {
                        self.bits & ((1u64 << (shift - 1)) - 1)
                    };
                    let cum_rcvd = (self.bits >> (shift - 1)) & 1 == 1;
                    let nb = if shift == 64 { 0 } else { self.bits >> shift };
                    (u64::from(below.count_ones()), cum_rcvd, nb)
                };
                self.abandoned += shift - skipped_received;
                self.cum += shift;
                self.bits = new_bits;
                if new_cum_received {
                    self.absorb_cum();
                }
                // The absorbed run can end right before seq.
                if seq == self.cum {
                    self.absorb_cum();
                    off = u64::MAX;
                } else {
                    off = seq - self.cum - 1;
                }
            }
            if off < 64 {
                let bit = 1u64 << off;
                if self.bits & bit != 0 {
                    self.duplicates += 1;
                }
                self.bits |= bit;
            }
        }
        self.echo_ts = sender_ts_ns;
        self.echo_arrival = now_ns;
        if self.pending == 0 {
            self.first_pending_ns = now_ns;
        }
        self.pending += 1;
        if self.pending >= self.policy.every_packets {
            Some(self.make_ack(now_ns))
        } else {
            None
        }
    }

    /// `cum` has arrived: move past it and the in-order run after it.
    fn absorb_cum(&mut self) {
        let run = self.bits.trailing_ones();
        self.cum += 1 + u64::from(run);
        self.bits = if run >= 63 { 0 } else { self.bits >> (run + 1) };
    }

    /// Returns an ack if one is due at `now_ns` by the delay rule.
    pub fn poll(&mut self, now_ns: u64) -> Option<AckInfo> {
        if self.pending > 0
            && now_ns.saturating_sub(self.first_pending_ns) >= self.policy.max_delay_ns
        {
            Some(self.make_ack(now_ns))
        } else {
            None
        }
    }

    /// The time at which [`AckAggregator::poll`] will produce an ack, if
    /// anything is pending.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        (self.pending > 0).then(|| {
            self.first_pending_ns
                .saturating_add(self.policy.max_delay_ns)
        })
    }

    fn make_ack(&mut self, now_ns: u64) -> AckInfo {
        self.pending = 0;
        AckInfo {
            cum: self.cum,
            bitmap: self.bits,
            echo_ts_ns: self.echo_ts,
            ack_delay_ns: now_ns.saturating_sub(self.echo_arrival),
        }
    }
}

/// Sender tracker configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Outstanding packets remembered (rounded up to a power of two, >= 128).
    pub window: u32,
    /// Packet reordering threshold.
    pub reorder_packets: u64,
    /// RTT assumed before the first sample, ns.
    pub initial_rtt_ns: u64,
    /// The receiver's `max_delay_ns`, added to the tail timeout.
    pub max_ack_delay_ns: u64,
}

/// The ring size a tracker needs for a flow paced at up to `units_per_s`
/// rate units of `unit_bytes` bytes, each of whose packets stays outstanding
/// for at most `horizon_ns` (RTT, ack delay and loss detection), counting
/// packets of `min_packet_bytes` (a flow of small packets sends more of them
/// per rate unit): at least 128, at most `max`, a power of two. A ring too
/// small evicts packets as lost before their ack can come; one too large
/// costs memory per flow (8 bytes per entry).
pub fn window_for(
    units_per_s: f64,
    unit_bytes: u32,
    min_packet_bytes: u32,
    horizon_ns: u64,
    max: u32,
) -> u32 {
    let per_unit = f64::from(unit_bytes.max(1)) / f64::from(min_packet_bytes.max(1));
    #[allow(clippy::cast_precision_loss)]
    let horizon_s = horizon_ns as f64 * 1e-9;
    let need = (units_per_s.max(0.0) * per_unit.max(1.0) * horizon_s).ceil();
    let max = max.clamp(128, 1 << 24).next_power_of_two();
    // Saturating float -> int conversion of a finite value >= 0 (NaN: 0).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let need = need.min(f64::from(max)) as u32;
    need.clamp(128, max).next_power_of_two()
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            window: 4096,
            reorder_packets: 3,
            initial_rtt_ns: 100_000_000,
            max_ack_delay_ns: 5_000_000,
        }
    }
}

/// What one ack (or a timer poll) meant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Packets newly acknowledged.
    pub acked: u32,
    /// Packets newly declared lost.
    pub lost: u32,
    /// RTT sample taken from this ack, ns.
    pub rtt_sample_ns: Option<u64>,
}

/// Counters of an [`AckTracker`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Packets sent.
    pub sent: u64,
    /// Packets acknowledged.
    pub acked: u64,
    /// Packets declared lost (including evictions).
    pub lost: u64,
    /// Of which: evicted from a full window.
    pub evicted: u64,
    /// Packets declared lost and acked after all (each counted once; they
    /// stay counted in `lost`).
    pub spurious: u64,
    /// Of the losses: declared by the tail timeout (no later packet acked).
    pub tail_lost: u64,
    /// Acks naming sequences never sent (ignored as a whole).
    pub garbage: u64,
}

const OUTSTANDING: u8 = 0;
const ACKED: u8 = 1;
const LOST: u8 = 2;
const STATE_MASK: u64 = 3;

/// A slot's word: send time `ts` (ns, saturated at 2^62 - 1, 146 years)
/// and state `st`.
#[inline]
const fn pack(ts: u64, st: u8) -> u64 {
    let ts = if ts > u64::MAX >> 2 {
        u64::MAX >> 2
    } else {
        ts
    };
    (ts << 2) | st as u64
}

/// Per-flow sender state: outstanding packets and RTT estimate.
#[derive(Clone, Debug)]
pub struct AckTracker {
    cfg: TrackerConfig,
    mask: u64,
    /// Per remembered sequence: its send time (ns) shifted left by 2, and
    /// its state (`OUTSTANDING`, `ACKED`, `LOST`) in the low 2 bits: one
    /// array, so a send or an ack touches one cache line, not two.
    slots: Vec<u64>,
    next_seq: u64,
    /// Lowest sequence that may still be outstanding.
    oldest: u64,
    largest_acked: Option<u64>,
    last_send_ns: u64,
    srtt: u64,
    rttvar: u64,
    latest_rtt: u64,
    /// The largest ack delay the receiver reported lately, ns: each
    /// report decays it by 1/16 first (see [`AckTracker::thresholds`]).
    ack_delay_max: u64,
    stats: TrackerStats,
}

impl AckTracker {
    /// An empty tracker; the first packet sent gets sequence 0.
    pub fn new(cfg: TrackerConfig) -> Self {
        let n = cfg.window.clamp(128, 1 << 24).next_power_of_two();
        let cfg = TrackerConfig {
            reorder_packets: cfg.reorder_packets.clamp(1, 64),
            ..cfg
        };
        Self {
            cfg,
            mask: u64::from(n) - 1,
            slots: vec![pack(0, ACKED); n as usize],
            next_seq: 0,
            oldest: 0,
            largest_acked: None,
            last_send_ns: 0,
            srtt: cfg.initial_rtt_ns,
            rttvar: cfg.initial_rtt_ns / 2,
            latest_rtt: cfg.initial_rtt_ns,
            ack_delay_max: 0,
            stats: TrackerStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Outstanding packets this tracker remembers (its ring's size).
    pub fn window(&self) -> u32 {
        // mask < 2^24 (clamped in `new` and `ensure_window`).
        u32::try_from(self.mask + 1).unwrap_or(u32::MAX)
    }

    /// Grows the ring to hold at least `window` packets (rounded up to a
    /// power of two, at most 2^24), keeping the state of every sequence it
    /// remembers; never shrinks. Allocates: call it when a plan changes a
    /// flow's rate, not per packet. A flow is built with a small ring
    /// ([`window_for`]) so that a gateway of a million slow flows fits in
    /// memory, and grown when a plan lets it send faster.
    pub fn ensure_window(&mut self, window: u32) {
        let n = u64::from(window.clamp(128, 1 << 24).next_power_of_two());
        let old = self.mask + 1;
        if n <= old {
            return;
        }
        let len = usize::try_from(n).unwrap_or(1 << 24);
        let mut slots = vec![pack(0, ACKED); len];
        let new_mask = n - 1;
        // The old ring holds the last `old` sequences; in the larger ring
        // each keeps its own slot.
        for seq in self.next_seq.saturating_sub(old)..self.next_seq {
            let (from, to) = (self.idx(seq), usize::try_from(seq & new_mask).unwrap_or(0));
            slots[to] = self.slots[from];
        }
        self.slots = slots;
        self.mask = new_mask;
    }

    /// Smoothed RTT, ns.
    pub fn srtt_ns(&self) -> u64 {
        self.srtt
    }

    /// Packets sent and not yet settled.
    pub fn outstanding(&self) -> u64 {
        self.stats.sent - self.stats.acked - self.stats.lost
    }

    #[inline]
    fn idx(&self, seq: u64) -> usize {
        // mask < 2^24: fits usize.
        usize::try_from(seq & self.mask).unwrap_or(0)
    }

    /// State of slot `i`.
    #[inline]
    fn state_at(&self, i: usize) -> u8 {
        // The low 2 bits: fits u8.
        #[allow(clippy::cast_possible_truncation)]
        let st = (self.slots[i] & STATE_MASK) as u8;
        st
    }

    /// Send time of slot `i`, ns.
    #[inline]
    fn sent_at(&self, i: usize) -> u64 {
        self.slots[i] >> 2
    }

    #[inline]
    fn set_state(&mut self, i: usize, st: u8) {
        self.slots[i] = (self.slots[i] & !STATE_MASK) | u64::from(st);
    }

    fn advance_oldest(&mut self) {
        while self.oldest < self.next_seq && self.state_at(self.idx(self.oldest)) != OUTSTANDING {
            self.oldest += 1;
        }
    }

    /// Starts loading the memory [`AckTracker::on_send`] will write (the
    /// next sequence's slots): a hint for batches of departures.
    #[inline]
    pub fn prefetch_send(&self) {
        let i = self.idx(self.next_seq);
        if let Some(w) = self.slots.get(i) {
            crate::sys::prefetch_read((w as *const u64).cast::<u8>());
        }
    }

    /// Starts loading the memory [`AckTracker::on_ack`] reads first (the
    /// oldest outstanding packet's slots): a hint for batches of acks.
    #[inline]
    pub fn prefetch_ack(&self) {
        let i = self.idx(self.oldest);
        if let Some(w) = self.slots.get(i) {
            crate::sys::prefetch_read((w as *const u64).cast::<u8>());
        }
    }

    /// Numbers a packet sent at `now_ns`. Returns its sequence and the number
    /// of packets declared lost to make room (0 unless the window was full).
    pub fn on_send(&mut self, now_ns: u64) -> (u64, u32) {
        let mut evicted = 0;
        if self.next_seq - self.oldest > self.mask {
            let i = self.idx(self.oldest);
            if self.state_at(i) == OUTSTANDING {
                self.set_state(i, LOST);
                self.stats.lost += 1;
                self.stats.evicted += 1;
                evicted = 1;
            }
            self.oldest += 1;
            self.advance_oldest();
        }
        // Send times are kept monotonic so that time-based scans can stop early.
        self.last_send_ns = self.last_send_ns.max(now_ns);
        let seq = self.next_seq;
        let i = self.idx(seq);
        self.slots[i] = pack(self.last_send_ns, OUTSTANDING);
        self.next_seq += 1;
        self.stats.sent += 1;
        (seq, evicted)
    }

    /// Marks `seq` acknowledged if it is outstanding; returns 1 if newly so.
    #[inline]
    fn ack_one(&mut self, seq: u64) -> u32 {
        // The ring still holds the state of the last `window` sequences.
        if seq >= self.next_seq || self.next_seq - seq > self.mask + 1 {
            return 0;
        }
        let i = self.idx(seq);
        match self.state_at(i) {
            OUTSTANDING => {
                self.set_state(i, ACKED);
                self.stats.acked += 1;
                1
            }
            LOST => {
                // Declared lost, acked after all: counted once.
                self.set_state(i, ACKED);
                self.stats.spurious += 1;
                0
            }
            _ => 0,
        }
    }

    /// Applies an ack received at `now_ns`.
    pub fn on_ack(&mut self, ack: &AckInfo, now_ns: u64) -> AckOutcome {
        let mut out = AckOutcome::default();
        // An ack naming a sequence never sent did not come from the receiver.
        let cum = ack.cum;
        let top_bit = u64::from(63 - ack.bitmap.leading_zeros().min(63));
        if cum > self.next_seq
            || (ack.bitmap != 0 && cum.saturating_add(1 + top_bit) >= self.next_seq)
        {
            self.stats.garbage += 1;
            return out;
        }
        let mut largest: Option<u64> = cum.checked_sub(1);
        let spurious_before = self.stats.spurious;
        let mut s = self.oldest;
        while s < cum {
            out.acked += self.ack_one(s);
            s += 1;
        }
        // The packet the ack echoes arrived. When the tail timeout declared
        // it lost before its ack came, `oldest` moved past it and the loop
        // above did not see it: found by its send time (exact; a cumulative
        // ack alone may have slid past holes, see AckAggregator).
        if let Some(k) = cum.checked_sub(1)
            && k < self.oldest
            && self.next_seq - k <= self.mask + 1
        {
            let i = self.idx(k);
            if self.state_at(i) == LOST && self.sent_at(i) == ack.echo_ts_ns {
                self.ack_one(k);
            }
        }
        // Bitmap part (every bit names a sequence sent, checked above).
        let mut bits = ack.bitmap;
        while bits != 0 {
            let i = u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            let seq = cum + 1 + i;
            out.acked += self.ack_one(seq);
            largest = Some(seq);
        }
        if let Some(l) = largest.filter(|&l| l < self.next_seq) {
            self.largest_acked = Some(self.largest_acked.map_or(l, |p| p.max(l)));
        }
        // RTT sample only from acks that acknowledged something new (or
        // late: see below) and echo a plausible timestamp; the ack delay
        // from any such echo, above all
        // from an ack of packets already declared lost (the sign that the
        // allowance was too short: a sparse flow whose every packet was
        // declared lost before its ack came would never learn it).
        if ack.echo_ts_ns <= now_ns && ack.echo_ts_ns <= self.last_send_ns {
            // The delay is part of the round trip: at most it.
            self.on_ack_delay(ack.ack_delay_ns.min(now_ns - ack.echo_ts_ns));
            // An ack of packets already declared lost samples the round
            // trip too: they were declared lost because it grew (a queue
            // filling on the path), and a sparse flow whose every packet is
            // declared lost before its ack would otherwise never learn it.
            if out.acked > 0 || self.stats.spurious > spurious_before {
                let rtt = (now_ns - ack.echo_ts_ns)
                    .saturating_sub(ack.ack_delay_ns)
                    .max(1);
                self.on_rtt(rtt);
                out.rtt_sample_ns = Some(rtt);
            }
        }
        // Packet-threshold losses.
        if let Some(l) = self.largest_acked {
            let mut s = self.oldest;
            while s < self.next_seq && s + self.cfg.reorder_packets <= l {
                let i = self.idx(s);
                if self.state_at(i) == OUTSTANDING {
                    self.set_state(i, LOST);
                    self.stats.lost += 1;
                    out.lost += 1;
                }
                s += 1;
            }
        }
        self.advance_oldest();
        out.lost += self.detect_time_losses(now_ns);
        out
    }

    fn on_rtt(&mut self, rtt: u64) {
        // RFC 6298 smoothing: srtt = 7/8 srtt + 1/8 rtt, rttvar = 3/4 rttvar + 1/4 |srtt - rtt|.
        self.latest_rtt = rtt;
        let dev = self.srtt.abs_diff(rtt);
        self.rttvar = (3 * (self.rttvar / 4)).saturating_add(dev / 4);
        self.srtt = (7 * (self.srtt / 8)).saturating_add(rtt / 8);
    }

    /// Notes an ack delay the receiver reported (at most
    /// [`MAX_LEARNT_ACK_DELAY_NS`]: an ack forged or broken to report hours
    /// would otherwise hold every tail loss undetected until it decays).
    fn on_ack_delay(&mut self, d: u64) {
        self.ack_delay_max = d
            .min(MAX_LEARNT_ACK_DELAY_NS)
            .max(self.ack_delay_max - self.ack_delay_max / 16);
    }

    /// Declares losses by the time rules at `now_ns` (call on a timer, e.g.
    /// every few ms; [`AckTracker::on_ack`] calls it too).
    pub fn poll(&mut self, now_ns: u64) -> u32 {
        self.detect_time_losses(now_ns)
    }

    /// The (reorder, tail) time thresholds of the loss rules, ns.
    ///
    /// The tail's allowance for the receiver's ack delay: the configured
    /// one while the receiver keeps to it, else 1.25 times the largest
    /// delay it reported lately. RTT samples leave the ack delay out, so a
    /// receiver whose ack timer runs late (a gateway descheduled for a few
    /// ms on a loaded host) pushed a sparse flow's acks, all of them
    /// timer-driven, past the tail timeout: declared lost, then acked
    /// (`spurious`; on Abilene a 0.78 Mbit/s flow declared 5 % where the
    /// wire lost 0.7 %). A dense flow's acks go every 16 packets, on
    /// arrival, with no delay to speak of.
    #[inline]
    fn thresholds(&self) -> (u64, u64) {
        let reorder = self.srtt.max(self.latest_rtt).saturating_mul(5) / 4;
        let ack_delay = if self.ack_delay_max > self.cfg.max_ack_delay_ns {
            self.ack_delay_max.saturating_mul(5) / 4
        } else {
            self.cfg.max_ack_delay_ns
        };
        let tail = self
            .srtt
            .saturating_add(self.rttvar.saturating_mul(4))
            .saturating_add(ack_delay)
            .max(reorder);
        (reorder, tail)
    }

    /// The earliest time at which [`AckTracker::poll`] can declare a loss
    /// (the oldest outstanding packet's send time plus its threshold), or
    /// `None` with nothing outstanding. Exact until the next `on_send`,
    /// `on_ack` or `poll`: a caller keeping a timer per tracker re-reads it
    /// after those (`on_send` changes it only when nothing was outstanding
    /// or a packet was evicted). Send times are monotonic and a later
    /// packet's threshold is never smaller, so no later packet is due
    /// before the oldest.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let (reorder, tail) = self.thresholds();
        let mut s = self.oldest;
        // `oldest` is outstanding after every public call but `on_send`
        // (which never settles one); the scan is for robustness.
        while s < self.next_seq {
            let i = self.idx(s);
            if self.state_at(i) == OUTSTANDING {
                let below_largest = self.largest_acked.is_some_and(|l| s < l);
                let thr = if below_largest { reorder } else { tail };
                return Some(self.sent_at(i).saturating_add(thr));
            }
            s += 1;
        }
        None
    }

    fn detect_time_losses(&mut self, now_ns: u64) -> u32 {
        let (reorder, tail) = self.thresholds();
        let mut lost = 0;
        let mut s = self.oldest;
        while s < self.next_seq {
            let i = self.idx(s);
            if self.state_at(i) == OUTSTANDING {
                let below_largest = self.largest_acked.is_some_and(|l| s < l);
                let thr = if below_largest { reorder } else { tail };
                if now_ns.saturating_sub(self.sent_at(i)) < thr {
                    // Later packets were sent later: none of them is due either
                    // (tail >= reorder).
                    break;
                }
                self.set_state(i, LOST);
                self.stats.lost += 1;
                self.stats.tail_lost += u64::from(!below_largest);
                lost += 1;
            }
            s += 1;
        }
        self.advance_oldest();
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Rng;
    use proptest::prelude::*;

    #[test]
    fn in_order_cumulative() {
        let mut r = AckAggregator::new(AckPolicy {
            every_packets: 4,
            max_delay_ns: 1000,
        });
        assert_eq!(r.on_packet(0, 10, 100), None);
        assert_eq!(r.on_packet(1, 11, 101), None);
        assert_eq!(r.on_packet(2, 12, 102), None);
        let a = r.on_packet(3, 13, 103).unwrap();
        assert_eq!(
            (a.cum, a.bitmap, a.echo_ts_ns, a.ack_delay_ns),
            (4, 0, 13, 0)
        );
        let mut t = AckTracker::new(TrackerConfig::default());
        for k in 0..4 {
            t.on_send(10 + k);
        }
        let o = t.on_ack(&a, 1013);
        assert_eq!((o.acked, o.lost), (4, 0));
        assert_eq!(o.rtt_sample_ns, Some(1000));
    }

    #[test]
    fn hole_then_fill_and_bitmap() {
        let mut r = AckAggregator::new(AckPolicy {
            every_packets: 100,
            max_delay_ns: 10,
        });
        for s in [0, 2, 3, 5] {
            r.on_packet(s, 0, 0);
        }
        let a = r.poll(10).unwrap();
        assert_eq!(a.cum, 1);
        assert_eq!(a.bitmap, 0b1011); // 2, 3, 5 relative to cum+1 = 2
        r.on_packet(1, 0, 20);
        let a = r.poll(30).unwrap();
        assert_eq!((a.cum, a.bitmap), (4, 0b1)); // 5 = cum + 1
        assert_eq!(r.poll(40), None);
    }

    #[test]
    fn receiver_window_slides_and_counts_abandoned() {
        let mut r = AckAggregator::new(AckPolicy {
            every_packets: 1,
            max_delay_ns: 10,
        });
        r.on_packet(0, 0, 0);
        // 1 lost; 200 arrives: cum moves to 200 - 64 = 136.
        let a = r.on_packet(200, 0, 0).unwrap();
        assert_eq!(a.cum, 136);
        assert_eq!(a.bitmap, 1 << 63);
        assert_eq!(r.abandoned(), 135); // 1..=135
        // Duplicate / stale.
        r.on_packet(5, 0, 0);
        r.on_packet(200, 0, 0);
        assert_eq!(r.duplicates(), 2);
        // u64 extremes do not panic.
        r.on_packet(u64::MAX, 0, 0);
        r.on_packet(u64::MAX - 1, 0, 0);
    }

    /// A sparse flow (a packet every 50 ms, each acked alone by the
    /// receiver's timer) whose receiver acks 25 ms late, past the 5 ms it
    /// is configured for, on a 20 ms round trip: its acks come 45 ms after
    /// each packet. Nothing is declared lost once the reported delays are
    /// learnt (with the configured 5 ms only, every packet from about the
    /// 10th on was declared lost, then acked), and the one packet truly
    /// lost is declared within 1.5 times its ack's 45 ms.
    #[test]
    fn a_receiver_s_late_ack_timer_is_not_loss() {
        const MS: u64 = 1_000_000;
        let mut t = AckTracker::new(TrackerConfig::default());
        let mut losses = Vec::new();
        for k in 0..200u64 {
            let sent = k * 50 * MS;
            let (seq, _) = t.on_send(sent);
            assert_eq!(seq, k);
            // Polled every ms until the ack comes.
            for ms in 1..45 {
                for _ in 0..t.poll(sent + ms * MS) {
                    losses.push((k, sent + ms * MS));
                }
            }
            if k == 150 {
                continue; // lost on the way
            }
            // Received: everything but 150 (from 151 on, cum stays there).
            let (cum, bitmap) = if k < 150 {
                (k + 1, 0)
            } else {
                (150, (1u64 << (k - 150)) - 1)
            };
            let at = sent + 45 * MS;
            let o = t.on_ack(
                &AckInfo {
                    cum,
                    bitmap,
                    echo_ts_ns: sent,
                    ack_delay_ns: 25 * MS,
                },
                at,
            );
            for _ in 0..o.lost {
                losses.push((k, at));
            }
        }
        assert_eq!(t.stats().spurious, 0);
        let late: Vec<_> = losses.iter().filter(|l| l.0 >= 20).collect();
        assert_eq!(late.len(), 1, "{losses:?}");
        let at = late[0].1 - 150 * 50 * MS;
        assert!(
            at > 45 * MS && at <= 68 * MS,
            "packet 150 declared {at} ns after it left"
        );
    }

    /// 20 packets `dense.0` apart, each acked `dense.1` after it left
    /// reporting `dense.2` of ack delay; then 40 packets 500 ms apart, each
    /// acked `sparse.0` after it left reporting `sparse.1`, the tracker
    /// polled 1 ms before each ack. Returns the losses declared around each
    /// sparse packet (poll and ack).
    fn dense_then_sparse(
        t: &mut AckTracker,
        dense: (u64, u64, u64),
        sparse: (u64, u64),
    ) -> Vec<u32> {
        const MS: u64 = 1_000_000;
        let ack = |t: &mut AckTracker, k: u64, sent: u64, after: u64, delay: u64| {
            t.on_ack(
                &AckInfo {
                    cum: k + 1,
                    bitmap: 0,
                    echo_ts_ns: sent,
                    ack_delay_ns: delay,
                },
                sent + after,
            )
        };
        for k in 0..20u64 {
            let sent = k * dense.0;
            t.on_send(sent);
            assert_eq!(ack(t, k, sent, dense.1, dense.2).lost, 0);
        }
        (20..60u64)
            .map(|k| {
                let sent = k * 500 * MS;
                t.on_send(sent);
                t.poll(sent + sparse.0 - MS) + ack(t, k, sent, sparse.0, sparse.1).lost
            })
            .collect()
    }

    /// A receiver whose acks of a sparse flow come only with its next
    /// packet, 400 ms later: the first packet is declared lost before its
    /// ack, whose reported delay teaches the tracker (an ack of packets
    /// already lost counts: with only acks of new packets teaching, every
    /// packet was declared lost before its ack, for ever), and from the
    /// third on none is.
    #[test]
    fn acks_of_lost_packets_teach_the_ack_delay() {
        const MS: u64 = 1_000_000;
        let mut t = AckTracker::new(TrackerConfig::default());
        // Acked 22 ms after the send (2 ms held), then 400 ms (380 held).
        let lost = dense_then_sparse(&mut t, (50 * MS, 22 * MS, 2 * MS), (400 * MS, 380 * MS));
        assert_eq!(lost[0], 1, "the allowance was 5 ms");
        assert!(lost[2..].iter().all(|&n| n == 0), "{lost:?}");
    }

    /// An ack reporting a huge delay (forged, or a broken receiver) teaches
    /// at most 1 s: the next tail packet is still declared lost 1.25 s plus
    /// its RTT allowance after it left, not 125 s.
    #[test]
    fn a_huge_reported_ack_delay_is_capped() {
        const MS: u64 = 1_000_000;
        let mut t = AckTracker::new(TrackerConfig::default());
        t.on_send(0);
        // Echoes a packet 100 s old and says it held the ack all along.
        let at = 100_000 * MS;
        t.on_ack(
            &AckInfo {
                cum: 1,
                bitmap: 0,
                echo_ts_ns: 0,
                ack_delay_ns: at - MS,
            },
            at,
        );
        let sent = at + 10 * MS;
        t.on_send(sent);
        let due = t.next_deadline_ns().expect("one outstanding");
        let allowance = due - sent;
        assert!(
            (MAX_LEARNT_ACK_DELAY_NS / 4 * 5..2 * MAX_LEARNT_ACK_DELAY_NS).contains(&allowance),
            "tail allowance {allowance} ns"
        );
        assert_eq!(t.poll(sent + 2 * MAX_LEARNT_ACK_DELAY_NS), 1);
    }

    /// A sparse flow whose path's round trip grows from 10 to 150 ms (a
    /// queue filling on a link it shares): its packets are declared lost by
    /// the tail timeout before their acks come. Those late acks are found
    /// (by the echoed send time: the tail loss moved `oldest` past them),
    /// counted spurious and sample the round trip, so the tracker learns it; before, a packet
    /// already lost gave no sample and every packet was declared lost, for
    /// ever (Abilene's Houston->Indianapolis/via-KansasCity at its 2 pps
    /// floor, every packet delivered).
    #[test]
    fn late_acks_of_tail_losses_teach_the_round_trip() {
        const MS: u64 = 1_000_000;
        let mut t = AckTracker::new(TrackerConfig::default());
        // Acked 10 ms after the send, then 150 ms (1 ms held each time).
        let lost = dense_then_sparse(&mut t, (20 * MS, 10 * MS, MS), (150 * MS, MS));
        assert_eq!(lost[0], 1, "the tail timeout was short of 150 ms");
        let settled = lost.iter().position(|&n| n == 0).expect("never learnt");
        assert!(lost[settled..].iter().all(|&n| n == 0), "{lost:?}");
        assert!(settled <= 5, "{lost:?}");
        // Every declared loss was acked after all.
        assert_eq!(t.stats().spurious, t.stats().lost);
        assert!(t.srtt_ns() > 100 * MS, "srtt {}", t.srtt_ns());
    }

    #[test]
    fn reordering_by_two_is_not_loss_but_three_is() {
        let mut t = AckTracker::new(TrackerConfig::default());
        for k in 0..10 {
            t.on_send(k);
        }
        // 0 missing, 1 and 2 acked: reordering tolerated.
        let o = t.on_ack(
            &AckInfo {
                cum: 0,
                bitmap: 0b11,
                echo_ts_ns: 2,
                ack_delay_ns: 0,
            },
            100,
        );
        assert_eq!((o.acked, o.lost), (2, 0));
        // 3 acked too: 0 is lost.
        let o = t.on_ack(
            &AckInfo {
                cum: 0,
                bitmap: 0b111,
                echo_ts_ns: 3,
                ack_delay_ns: 0,
            },
            100,
        );
        assert_eq!((o.acked, o.lost), (1, 1));
        // Late ack of 0: not a success (it is settled as lost).
        let o = t.on_ack(
            &AckInfo {
                cum: 4,
                bitmap: 0,
                echo_ts_ns: 3,
                ack_delay_ns: 0,
            },
            100,
        );
        assert_eq!((o.acked, o.lost), (0, 0));
        assert_eq!((t.stats().acked, t.stats().lost), (3, 1));
        // Within the window a late ack of a lost packet is counted as spurious.
        for k in 0..5 {
            t.on_send(200 + k); // 10..=14
        }
        t.on_ack(
            &AckInfo {
                cum: 10,
                bitmap: 0b1110,
                echo_ts_ns: 204,
                ack_delay_ns: 0,
            },
            300,
        ); // 12,13,14 -> 10 lost
        // 10 after all, named twice: counted once.
        for _ in 0..2 {
            let o = t.on_ack(
                &AckInfo {
                    cum: 9,
                    bitmap: 0b1,
                    echo_ts_ns: 204,
                    ack_delay_ns: 0,
                },
                300,
            );
            assert_eq!((o.acked, o.lost), (0, 0));
            assert_eq!(t.stats().spurious, 1);
        }
    }

    #[test]
    fn time_threshold_and_tail_timeout() {
        let cfg = TrackerConfig {
            initial_rtt_ns: 10_000_000,
            max_ack_delay_ns: 1_000_000,
            ..Default::default()
        };
        let mut t = AckTracker::new(cfg);
        t.on_send(0); // 0
        t.on_send(1); // 1
        t.on_send(2); // 2
        // 1 acked (0 missing, reorder by 1 only) at rtt 10 ms.
        let o = t.on_ack(
            &AckInfo {
                cum: 0,
                bitmap: 0b1,
                echo_ts_ns: 1,
                ack_delay_ns: 0,
            },
            10_000_001,
        );
        assert_eq!((o.acked, o.lost), (1, 0));
        // 0 is below the largest acked: lost after 1.25 rtt = 12.5 ms.
        assert_eq!(t.poll(12_000_000), 0);
        assert_eq!(t.poll(12_600_000), 1);
        // 2 is a tail packet: srtt + 4 rttvar + 1 ms.
        assert_eq!(t.poll(20_000_000), 0);
        assert_eq!(t.poll(200_000_000), 1);
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn garbage_acks_are_bounded_and_harmless() {
        let mut t = AckTracker::new(TrackerConfig {
            window: 128,
            ..Default::default()
        });
        for k in 0..10 {
            t.on_send(k);
        }
        let o = t.on_ack(
            &AckInfo {
                cum: u64::MAX,
                bitmap: u64::MAX,
                echo_ts_ns: u64::MAX,
                ack_delay_ns: u64::MAX,
            },
            5,
        );
        // Names sequences never sent: ignored as a whole.
        assert_eq!(o.acked, 0);
        assert_eq!(t.stats().garbage, 1);
        assert_eq!(o.rtt_sample_ns, None);
        let o = t.on_ack(
            &AckInfo {
                cum: 3,
                bitmap: u64::MAX,
                echo_ts_ns: 0,
                ack_delay_ns: 0,
            },
            5,
        );
        assert_eq!((o.acked, o.lost), (0, 0));
        // Window eviction: 1000 sends, nothing acked, window 128.
        let mut ev = 0;
        for k in 0..1000 {
            ev += t.on_send(10 + k).1;
        }
        // (the 10 first are still outstanding: the garbage acked nothing)
        assert_eq!(ev, 1010 - 128);
        assert_eq!(
            t.stats().sent,
            t.stats().acked + t.stats().lost + t.outstanding()
        );
    }

    fn ack(cum: u64, bitmap: u64) -> AckInfo {
        AckInfo {
            cum,
            bitmap,
            echo_ts_ns: 0,
            ack_delay_ns: 0,
        }
    }

    #[test]
    fn acks_beyond_what_was_sent_are_ignored() {
        let mut t = AckTracker::new(TrackerConfig::default());
        for k in 0..10 {
            t.on_send(k);
        }
        // cum one beyond the next sequence; a bitmap bit naming seq 10.
        for a in [ack(11, 0), ack(5, 1 << 4), ack(0, 1 << 63)] {
            assert_eq!(t.on_ack(&a, 100), AckOutcome::default());
        }
        assert_eq!((t.stats().garbage, t.stats().acked), (3, 0));
        // The real ack still counts in full: 0..5 and 7..=9 (5 and 6 lost).
        let o = t.on_ack(&ack(5, 0b1110), 100);
        assert_eq!((o.acked, o.lost, t.stats().garbage), (8, 2, 3));
    }

    /// The old attack: one data packet with a sequence near 2^63 moved the
    /// receiver's `cum` there, and every ack after it named sequences never
    /// sent. Now the packet is refused and the acks go on.
    #[test]
    fn one_huge_sequence_does_not_break_the_acks() {
        let mut r = AckAggregator::new(AckPolicy {
            every_packets: 1,
            max_delay_ns: 10,
        });
        let mut t = AckTracker::new(TrackerConfig::default());
        let mut acked = 0;
        for s in 0..200u64 {
            t.on_send(s * 1000);
            if s == 100 {
                for forged in [(1u64 << 63) - 5, u64::MAX, SEQ_CEILING] {
                    assert!(!r.admit(forged, s * 1000));
                    assert_eq!(r.on_packet(forged, 0, s * 1000), None);
                }
            }
            let a = r
                .on_packet(s, s * 1000, s * 1000 + 10)
                .expect("acks every packet");
            assert_eq!(a.cum, s + 1);
            acked += t.on_ack(&a, s * 1000 + 20).acked;
        }
        assert_eq!(r.implausible(), 6);
        assert_eq!(acked, 200);
        assert_eq!((t.stats().garbage, t.stats().lost), (0, 0));
    }

    #[test]
    fn the_plausible_lead_grows_with_time() {
        let mut r = AckAggregator::new(AckPolicy::default());
        // A fresh receiver follows a sender already under way.
        assert!(r.admit(1_000_000_000, 0));
        r.on_packet(1_000_000_000, 0, 0);
        let h = 1_000_000_000u64;
        assert!(r.admit(h + SEQ_JUMP, 0));
        assert!(!r.admit(h + SEQ_JUMP + 1, 0));
        // 1 ms later: 31250 more.
        assert!(r.admit(h + SEQ_JUMP + 31_250, 1_000_000));
        assert!(!r.admit(h + SEQ_JUMP + 31_251, 1_000_000));
        assert!(!r.admit(SEQ_CEILING, u64::MAX));
        assert_eq!(r.implausible(), 3);
        // A refused packet changes nothing.
        let before = r.poll(u64::MAX).map(|a| (a.cum, a.bitmap));
        assert_eq!(r.on_packet(h + SEQ_JUMP * 2, 0, 0), None);
        assert_eq!(r.implausible(), 4);
        r.on_packet(h - 1, 0, 0);
        let after = r.poll(u64::MAX).map(|a| (a.cum, a.bitmap));
        assert_eq!(after.map(|a| a.0), before.map(|b| b.0));
    }

    #[test]
    fn a_restarted_sender_is_followed() {
        let mut r = AckAggregator::new(AckPolicy {
            every_packets: 1,
            max_delay_ns: 10,
        });
        for s in 0..1000 {
            r.on_packet(s, 0, s);
        }
        // The sender starts over from 0: 63 packets are stale, the 64th
        // restarts the receiver at its numbering.
        for s in 0..u64::from(SENDER_RESTART_RUN) {
            let a = r.on_packet(s, 0, 2000 + s).unwrap();
            if s + 1 < u64::from(SENDER_RESTART_RUN) {
                assert_eq!(a.cum, 1000);
            } else {
                assert_eq!(a.cum, s + 1);
            }
        }
        assert_eq!(r.restarts(), 1);
        // Reordering within the window never restarts.
        let mut r = AckAggregator::new(AckPolicy::default());
        for s in 0..100 {
            r.on_packet(s, 0, 0);
        }
        for _ in 0..200 {
            r.on_packet(40, 0, 0);
        }
        assert_eq!(r.restarts(), 0);
    }

    /// End to end: random loss, reordering, duplication of data and acks,
    /// garbage acks; at the end every packet is settled exactly once.
    fn run_pattern(
        seed: u64,
        n: u64,
        loss: f64,
        dup: f64,
        ack_loss: f64,
        reorder_ns: u64,
        garbage: bool,
    ) {
        let mut rng = Rng::new(seed);
        let mut tx = AckTracker::new(TrackerConfig {
            window: 512,
            initial_rtt_ns: 2_000_000,
            ..Default::default()
        });
        let mut rx = AckAggregator::new(AckPolicy {
            every_packets: 8,
            max_delay_ns: 1_000_000,
        });
        // Events: (time, kind, payload) sorted by time; kind 0 = data arrival, 1 = ack arrival.
        let mut data: Vec<(u64, u64, u64)> = Vec::new(); // (arrival, seq, send ts)
        let mut delivered = std::collections::HashSet::new();
        let mut t = 0u64;
        let mut send_times = Vec::new();
        for _ in 0..n {
            t += 10_000 + rng.below(20_000);
            let (seq, _) = tx.on_send(t);
            send_times.push(t);
            if rng.next_f64() < loss {
                continue;
            }
            let arr = t + 1_000_000 + rng.below(reorder_ns.max(1));
            data.push((arr, seq, t));
            delivered.insert(seq);
            if rng.next_f64() < dup {
                data.push((arr + rng.below(3_000_000), seq, t));
            }
        }
        data.sort_unstable();
        let mut acks: Vec<(u64, AckInfo)> = Vec::new();
        for &(arr, seq, ts) in &data {
            if let Some(a) = rx.poll(arr) {
                acks.push((arr, a));
            }
            if let Some(a) = rx.on_packet(seq, ts, arr) {
                acks.push((arr, a));
            }
        }
        if let Some(a) = rx.poll(u64::MAX / 4) {
            acks.push((t + 10_000_000, a));
        }
        let mut ack_events: Vec<(u64, AckInfo)> = Vec::new();
        for (at, a) in acks {
            if rng.next_f64() < ack_loss {
                continue;
            }
            let d = at + 1_000_000 + rng.below(500_000);
            ack_events.push((d, a));
            if rng.next_f64() < dup {
                ack_events.push((d + rng.below(5_000_000), a));
            }
            if garbage && rng.next_f64() < 0.05 {
                let g = AckInfo {
                    cum: rng.next_u64() % (n + 100),
                    bitmap: rng.next_u64(),
                    echo_ts_ns: rng.next_u64(),
                    ack_delay_ns: rng.next_u64(),
                };
                ack_events.push((d, g));
            }
        }
        ack_events.sort_by_key(|e| e.0);
        // Replay the sender in time order: sends (same times as above) and ack arrivals.
        let mut tx = AckTracker::new(TrackerConfig {
            window: 512,
            initial_rtt_ns: 2_000_000,
            ..Default::default()
        });
        let (mut acked, mut lost) = (0u64, 0u64);
        let mut ai = 0;
        for (k, &st) in send_times.iter().enumerate() {
            while ai < ack_events.len() && ack_events[ai].0 < st {
                let o = tx.on_ack(&ack_events[ai].1, ack_events[ai].0);
                acked += u64::from(o.acked);
                lost += u64::from(o.lost);
                ai += 1;
            }
            let (seq, ev) = tx.on_send(st);
            assert_eq!(seq, k as u64);
            lost += u64::from(ev);
        }
        for (at, a) in &ack_events[ai..] {
            let o = tx.on_ack(a, *at);
            acked += u64::from(o.acked);
            lost += u64::from(o.lost);
        }
        lost += u64::from(tx.poll(u64::MAX / 2));
        let s = tx.stats();
        assert_eq!(acked, s.acked);
        assert_eq!(lost, s.lost);
        assert_eq!(acked + lost, n, "every packet settled once");
        assert_eq!(tx.outstanding(), 0);
        if !garbage {
            // Only the receiver's abandoned holes can be mistaken for arrivals.
            let d = delivered.len() as u64;
            assert!(
                s.acked <= d + rx.abandoned(),
                "acked {} > delivered {d} + abandoned",
                s.acked
            );
            assert!(
                s.lost + rx.abandoned() >= n - d,
                "lost {} < never delivered {}",
                s.lost,
                n - d
            );
        }
    }

    #[test]
    fn settles_everything_on_a_clean_path() {
        let mut tx = AckTracker::new(TrackerConfig::default());
        let mut rx = AckAggregator::new(AckPolicy::default());
        let mut acked = 0;
        for k in 0..10_000u64 {
            let (seq, _) = tx.on_send(k * 1000);
            if let Some(a) = rx.on_packet(seq, k * 1000, k * 1000 + 500) {
                acked += tx.on_ack(&a, k * 1000 + 1000).acked;
            }
        }
        if let Some(a) = rx.poll(u64::MAX) {
            acked += tx.on_ack(&a, 10_001_000).acked;
        }
        assert_eq!(acked, 10_000);
        assert_eq!(tx.stats().lost, 0);
    }

    #[test]
    fn window_for_sizes_to_the_cap_and_clamps() {
        // 4 units/s of 1250 B, 64 B packets (19.5 per unit), 0.25 s: 20 -> 128.
        assert_eq!(window_for(4.0, 1250, 64, 250_000_000, 4096), 128);
        // 3600 units/s: 17 550 packets -> the max.
        assert_eq!(window_for(3600.0, 1250, 64, 250_000_000, 4096), 4096);
        // 200 units/s: 975 -> 1024.
        assert_eq!(window_for(200.0, 1250, 64, 250_000_000, 1 << 20), 1024);
        // Packets as large as the unit: 1 per unit.
        assert_eq!(window_for(2000.0, 1250, 1250, 250_000_000, 1 << 20), 512);
        // Nonsense rates never panic and give the minimum or the max.
        assert_eq!(window_for(f64::NAN, 1250, 64, 250_000_000, 4096), 128);
        assert_eq!(window_for(-5.0, 0, 0, 0, 0), 128);
        assert_eq!(
            window_for(f64::INFINITY, 1250, 64, u64::MAX, u32::MAX),
            1 << 24
        );
    }

    #[test]
    fn a_grown_window_keeps_what_it_remembered() {
        let mut t = AckTracker::new(TrackerConfig {
            window: 128,
            ..Default::default()
        });
        assert_eq!(t.window(), 128);
        for k in 0..200 {
            t.on_send(k * 1000);
        }
        // 72 evicted; 128 outstanding, sequences 72..200.
        assert_eq!(t.stats().evicted, 72);
        t.ensure_window(1000);
        assert_eq!(t.window(), 1024);
        t.ensure_window(200); // never shrinks
        assert_eq!(t.window(), 1024);
        // A cumulative ack of everything settles exactly the 128 still
        // outstanding (the evicted ones stay lost).
        let out = t.on_ack(&ack(200, 0), 300_000);
        assert_eq!(out.acked, 128);
        assert_eq!(t.stats().lost, 72);
        assert_eq!(t.outstanding(), 0);
        // Now 1000 more sends fit without eviction.
        for k in 0..1000 {
            assert_eq!(t.on_send(400_000 + k).1, 0);
        }
        assert_eq!(t.outstanding(), 1000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Growing a ring at any point (no eviction before it) changes
        /// nothing: the tracker answers every ack and poll exactly as one
        /// built at the larger size from the start.
        #[test]
        fn growing_is_invisible(ops in proptest::collection::vec((0u8..3, 0u64..40, any::<u64>()), 1..400), grow_at in 0usize..400) {
            let mut small = AckTracker::new(TrackerConfig { window: 128, ..Default::default() });
            let mut big = AckTracker::new(TrackerConfig { window: 512, ..Default::default() });
            let mut now = 0u64;
            for (k, (op, x, bits)) in ops.into_iter().enumerate() {
                if k == grow_at && small.stats().evicted == 0 {
                    small.ensure_window(512);
                }
                now += 1_000_000;
                match op {
                    0 => { small.on_send(now); big.on_send(now); }
                    1 => {
                        let a = AckInfo { cum: small.next_seq.saturating_sub(x), bitmap: bits & 0xff, echo_ts_ns: 0, ack_delay_ns: 0 };
                        prop_assert_eq!(small.on_ack(&a, now), big.on_ack(&a, now));
                    }
                    _ => { prop_assert_eq!(small.poll(now), big.poll(now)); }
                }
                if small.stats().evicted > 0 {
                    break;
                }
                prop_assert_eq!(small.stats(), big.stats());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn successes_plus_losses_equal_sent(seed in any::<u64>(), n in 1u64..3000, loss in 0.0f64..0.3,
                                            dup in 0.0f64..0.2, ack_loss in 0.0f64..0.3, reorder in 0u64..3_000_000,
                                            garbage in any::<bool>()) {
            run_pattern(seed, n, loss, dup, ack_loss, reorder, garbage);
        }

        #[test]
        fn tracker_never_panics_on_arbitrary_acks(acks in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 1..50), sends in 0u64..600) {
            let mut tx = AckTracker::new(TrackerConfig { window: 128, ..Default::default() });
            for k in 0..sends { tx.on_send(k); }
            for (c, b, e, d, now) in acks {
                tx.on_ack(&AckInfo { cum: c % (sends + 70), bitmap: b, echo_ts_ns: e, ack_delay_ns: d }, now);
                tx.on_ack(&AckInfo { cum: c, bitmap: b, echo_ts_ns: e, ack_delay_ns: d }, now);
                tx.poll(now);
                let s = tx.stats();
                prop_assert_eq!(s.sent, s.acked + s.lost + tx.outstanding());
            }
        }

        /// `next_deadline_ns` is exact: a poll one ns before it declares
        /// nothing, a poll at it declares at least one loss, and `None`
        /// means nothing is outstanding; after any mix of sends (with
        /// evictions from a small window), acks (a receiver's, partly
        /// lost) and polls.
        #[test]
        fn next_deadline_is_exact(ops in proptest::collection::vec((0u8..4, 0u64..40_000_000), 1..300)) {
            let mut tx = AckTracker::new(TrackerConfig { window: 128, initial_rtt_ns: 10_000_000, ..Default::default() });
            let mut rx = AckAggregator::new(AckPolicy { every_packets: 4, max_delay_ns: 1_000_000 });
            let mut now = 1u64;
            let mut in_flight: Vec<(u64, u64)> = Vec::new();
            for (op, dt) in ops {
                now += dt / 8;
                match op {
                    0 | 1 => {
                        let (seq, _) = tx.on_send(now);
                        // Every third packet is lost on the way.
                        if seq % 3 != 1 {
                            in_flight.push((seq, now));
                        }
                    }
                    2 => {
                        for (seq, ts) in in_flight.drain(..) {
                            if let Some(a) = rx.on_packet(seq, ts, now) {
                                tx.on_ack(&a, now);
                            }
                        }
                    }
                    _ => {
                        tx.poll(now);
                    }
                }
                match tx.next_deadline_ns() {
                    None => prop_assert_eq!(tx.outstanding(), 0),
                    Some(d) => {
                        prop_assert!(tx.outstanding() > 0);
                        if d > 0 {
                            prop_assert_eq!(tx.clone().poll(d - 1), 0);
                        }
                        prop_assert!(tx.clone().poll(d) >= 1);
                    }
                }
            }
        }

        #[test]
        fn receiver_never_panics(seqs in proptest::collection::vec(any::<u64>(), 1..200), small in proptest::collection::vec(0u64..300, 1..300)) {
            let mut r = AckAggregator::new(AckPolicy { every_packets: 3, max_delay_ns: 5 });
            for (i, s) in small.iter().chain(seqs.iter()).enumerate() {
                let _ = r.on_packet(*s, i as u64, i as u64);
                let _ = r.poll(i as u64);
            }
        }
    }
}
