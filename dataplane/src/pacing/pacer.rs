//! Per-flow Poisson pacers and the pacing table: bounded per-flow FIFO queues
//! of packet descriptors, a timer wheel of departures, batched release.
//!
//! Each backlogged flow departs at the points of a Poisson process of rate
//! `rate_pps`: after each departure the next one is drawn `Exp(rate)` later,
//! counted from the *scheduled* time of the previous departure (not from when
//! the poll happened to run), so wheel rounding and poll jitter do not lower
//! the rate. Catch-up after a late poll is bounded by `max_lag_ns`.
//!
//! No credit while idle: when a flow's queue runs empty it leaves the wheel
//! but keeps its already-drawn next departure time; a packet arriving later
//! departs at `max(next_departure, now)`. Idle time therefore earns at most one
//! immediate departure, never a burst (the process is the Poisson process
//! thinned by packet availability).

use super::wheel::{TimerWheel, WheelError};
use crate::engine::{BATCH_SIZE, Batch, DropReason, Packet};
use crate::sys::{Rng, prefetch_read};

/// Pacing state of one flow: its rate and the time of its next departure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowPacer {
    /// Rate in packets per second (0 = paused).
    pub rate_pps: f64,
    /// Earliest time of the next departure (ns); `u64::MAX` = never.
    pub next_departure_ns: u64,
}

impl FlowPacer {
    /// A pacer at `rate_pps` whose first departure may happen at `now_ns`.
    pub fn new(rate_pps: f64, now_ns: u64) -> Self {
        let rate_pps = sanitize(rate_pps);
        Self {
            rate_pps,
            next_departure_ns: if rate_pps > 0.0 { now_ns } else { u64::MAX },
        }
    }

    /// Records a departure of `units` rate units (1 for a packet in packets/s;
    /// its bytes over the unit when pacing bytes) that was due at
    /// `next_departure_ns` and happened at `now_ns`, and draws the next one:
    /// `max(scheduled, now - max_lag) + Exp` with mean `units / rate`.
    #[inline]
    pub fn on_departure(&mut self, rng: &mut Rng, now_ns: u64, max_lag_ns: u64, units: f64) -> u64 {
        let base = self
            .next_departure_ns
            .min(now_ns)
            .max(now_ns.saturating_sub(max_lag_ns));
        self.next_departure_ns = base.saturating_add(rng.exp_gap_ns(self.rate_pps / units));
        self.next_departure_ns
    }

    /// Changes the rate at `now_ns`. The time left to the next departure is
    /// rescaled by `old / new` (for an exponential gap this is exact: the
    /// residual of a memoryless gap at the old rate, rescaled, is a residual at
    /// the new rate), so frequent rate updates cost no random draw. From or to
    /// rate 0 a fresh gap is drawn / departures stop.
    #[inline]
    pub fn set_rate(&mut self, rate_pps: f64, now_ns: u64, rng: &mut Rng) {
        let new = sanitize(rate_pps);
        let old = self.rate_pps;
        self.rate_pps = new;
        if new <= 0.0 {
            self.next_departure_ns = u64::MAX;
        } else if old <= 0.0 || self.next_departure_ns == u64::MAX {
            self.next_departure_ns = now_ns.saturating_add(rng.exp_gap_ns(new));
        } else if self.next_departure_ns > now_ns {
            let rem = (self.next_departure_ns - now_ns) as f64 * (old / new);
            // Saturating float -> int conversion; rem >= 0.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rem = rem as u64;
            self.next_departure_ns = now_ns.saturating_add(rem);
        }
    }
}

/// Finite, non-negative rate (NaN and negatives become 0).
#[inline]
fn sanitize(rate: f64) -> f64 {
    if rate.is_nan() || rate <= 0.0 {
        0.0
    } else {
        rate.min(1e15)
    }
}

/// Configuration of a [`PacingTable`].
#[derive(Clone, Copy, Debug)]
pub struct PacingConfig {
    /// Number of flows (ids `0..flows`).
    pub flows: u32,
    /// Packets queued per flow before drop-tail.
    pub queue_capacity: u32,
    /// Wheel tick = `2^tick_shift` ns.
    pub tick_shift: u32,
    /// Seed of the gap generator.
    pub seed: u64,
    /// Largest lateness (ns) made up by sending faster afterwards.
    pub max_lag_ns: u64,
    /// Bytes per rate unit: a departure of `len` bytes is followed by a gap
    /// of mean `len / unit_bytes / rate` (the flow paces bytes at
    /// `rate * unit_bytes` B/s whatever its packet sizes). 0: every packet
    /// is one unit (packets/s).
    pub unit_bytes: u32,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            flows: 1024,
            queue_capacity: 64,
            tick_shift: TimerWheel::DEFAULT_SHIFT,
            seed: 1,
            max_lag_ns: 100_000,
            unit_bytes: 0,
        }
    }
}

/// Errors building a [`PacingTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacingError {
    /// `flows * queue_capacity` is zero or does not fit in memory indices.
    #[error("pacing table: {flows} flows x {capacity} packets is not a valid size")]
    Size {
        /// Flows requested.
        flows: u32,
        /// Per-flow capacity requested.
        capacity: u32,
    },
    /// The wheel refused the configuration.
    #[error(transparent)]
    Wheel(#[from] WheelError),
}

/// Counters of a [`PacingTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacingStats {
    /// Packets accepted into a queue.
    pub enqueued: u64,
    /// Packets released by [`PacingTable::poll`].
    pub sent: u64,
    /// Packets refused because their flow's queue was full.
    pub dropped_full: u64,
    /// Packets refused because their flow id was out of range.
    pub dropped_no_flow: u64,
    /// Departures held back by [`PacingTable::hold`].
    pub holds: u64,
}

/// One flow's pacer and the position of its queue in the table's slots.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct FlowQueue {
    pacer: FlowPacer,
    /// Slot (within the flow's ring) of the oldest queued packet.
    head: u32,
    /// Packets queued.
    len: u32,
}

// Two records per cache line, none across two.
const _: () = assert!(size_of::<FlowQueue>() == 32);

/// N flows' bounded FIFO queues, their Poisson pacers and the departure
/// wheel. All memory is allocated in [`PacingTable::new`].
pub struct PacingTable {
    /// Each flow's pacer and queue position, one record (one cache line's
    /// half) per flow: an enqueue or a departure at many flows reads one
    /// cold line for them, not three.
    queues: Vec<FlowQueue>,
    /// `flows * cap` descriptors; flow `f` owns `[f*cap, (f+1)*cap)` as a ring.
    slots: Vec<Packet>,
    cap: u32,
    wheel: TimerWheel,
    rng: Rng,
    due: [u32; BATCH_SIZE],
    /// The flow of each packet the last [`PacingTable::poll`] appended, in order.
    released: [u32; BATCH_SIZE],
    /// How many of `released` are valid.
    n_released: usize,
    max_lag_ns: u64,
    unit_bytes: u32,
    stats: PacingStats,
}

impl PacingTable {
    /// A table of `cfg.flows` paused flows (rate 0) at time `now_ns`.
    pub fn new(cfg: PacingConfig, now_ns: u64) -> Result<Self, PacingError> {
        let size_err = PacingError::Size {
            flows: cfg.flows,
            capacity: cfg.queue_capacity,
        };
        let total = (cfg.flows as usize)
            .checked_mul(cfg.queue_capacity as usize)
            .ok_or(size_err)?;
        if total == 0 || total > (1 << 31) {
            return Err(size_err);
        }
        let n = cfg.flows as usize;
        Ok(Self {
            queues: vec![
                FlowQueue {
                    pacer: FlowPacer::new(0.0, now_ns),
                    head: 0,
                    len: 0,
                };
                n
            ],
            slots: vec![Packet::new(0, 0, 0, 0); total],
            cap: cfg.queue_capacity,
            wheel: TimerWheel::new(n, cfg.tick_shift, now_ns)?,
            rng: Rng::new(cfg.seed),
            due: [0; BATCH_SIZE],
            released: [0; BATCH_SIZE],
            n_released: 0,
            max_lag_ns: cfg.max_lag_ns,
            unit_bytes: cfg.unit_bytes,
            stats: PacingStats::default(),
        })
    }

    /// Number of flows.
    pub fn flows(&self) -> u32 {
        // queues.len() came from a u32.
        u32::try_from(self.queues.len()).unwrap_or(u32::MAX)
    }

    /// Counters.
    pub fn stats(&self) -> PacingStats {
        self.stats
    }

    /// Compactions of the table's timer wheel (its pool of slot chunks ran
    /// out: [`TimerWheel::compactions`]).
    pub fn wheel_compactions(&self) -> u64 {
        self.wheel.compactions()
    }

    /// The pacer of `flow`.
    pub fn pacer(&self, flow: u32) -> Option<&FlowPacer> {
        self.queues.get(flow as usize).map(|q| &q.pacer)
    }

    /// Packets queued for `flow` (0 for an unknown flow).
    pub fn queue_len(&self, flow: u32) -> u32 {
        self.queues.get(flow as usize).map_or(0, |q| q.len)
    }

    /// Earliest time a [`PacingTable::poll`] may release something (a wake-up
    /// hint, see [`TimerWheel::next_wakeup_ns`]).
    pub fn next_wakeup_ns(&self) -> Option<u64> {
        self.wheel.next_wakeup_ns()
    }

    /// Sets `flow`'s rate (packets/s; 0, negative or NaN pause it) at `now_ns`,
    /// keeping its queue. Returns false for an unknown flow.
    pub fn set_rate(&mut self, flow: u32, rate_pps: f64, now_ns: u64) -> bool {
        let Some(q) = self.queues.get_mut(flow as usize) else {
            return false;
        };
        q.pacer.set_rate(rate_pps, now_ns, &mut self.rng);
        let at = q.pacer.next_departure_ns;
        if q.len > 0 {
            if at == u64::MAX {
                self.wheel.cancel(flow);
            } else {
                self.wheel.schedule_due(flow, at, now_ns);
            }
        }
        true
    }

    /// Makes `flow`'s next departure due at `now_ns` if it was later (the
    /// gaps after it are drawn as usual): a flow a failover moved off a dead
    /// path sends its first packet on the new one at once, not after a gap
    /// at a rate just cut. Returns false for an unknown flow.
    pub fn release_now(&mut self, flow: u32, now_ns: u64) -> bool {
        let f = flow as usize;
        let Some(q) = self.queues.get_mut(f) else {
            return false;
        };
        let p = &mut q.pacer;
        if p.next_departure_ns <= now_ns || p.rate_pps <= 0.0 {
            return true;
        }
        p.next_departure_ns = now_ns;
        if q.len > 0 {
            self.wheel.schedule_due(flow, now_ns, now_ns);
        }
        true
    }

    /// Holds `flow`'s next departure until at least `until_ns` (its queue
    /// keeps filling; drop-tail as usual): used when a flow moves to a path
    /// with a shorter delay, so its first packets there cannot overtake its
    /// last ones on the old path. Returns false for an unknown flow.
    pub fn hold(&mut self, flow: u32, until_ns: u64) -> bool {
        let f = flow as usize;
        let Some(q) = self.queues.get_mut(f) else {
            return false;
        };
        let p = &mut q.pacer;
        if p.next_departure_ns == u64::MAX || p.next_departure_ns >= until_ns {
            return true;
        }
        p.next_departure_ns = until_ns;
        if q.len > 0 {
            self.wheel.schedule(flow, until_ns);
        }
        self.stats.holds += 1;
        true
    }

    /// Starts loading what [`PacingTable::enqueue`] on `flow` touches (its
    /// queue record, first slot and wheel entry): a hint for a batch
    /// whose flows are known before any is enqueued. Changes nothing.
    #[inline]
    pub fn prefetch_enqueue(&self, flow: u32) {
        let f = flow as usize;
        if let Some(q) = self.queues.get(f) {
            prefetch_read((q as *const FlowQueue).cast::<u8>());
            if let Some(slot) = self.slots.get(f * self.cap as usize) {
                prefetch_read((slot as *const Packet).cast::<u8>());
            }
            self.wheel.prefetch(flow);
        }
    }

    /// Starts loading what [`PacingTable::set_rate`] on `flow` touches (its
    /// queue record and wheel entry): a hint for a batch of acks, each of
    /// which may change its flow's rate. Changes nothing.
    #[inline]
    pub fn prefetch_rate(&self, flow: u32) {
        if let Some(q) = self.queues.get(flow as usize) {
            prefetch_read((q as *const FlowQueue).cast::<u8>());
            self.wheel.prefetch(flow);
        }
    }

    /// Queues `pkt` (unchanged, verdict included) on `flow`. On a full queue
    /// (drop-tail) or an unknown flow the packet comes back with the reason,
    /// so the caller can free its frame and count it.
    pub fn enqueue(
        &mut self,
        flow: u32,
        pkt: Packet,
        now_ns: u64,
    ) -> Result<(), (Packet, DropReason)> {
        let f = flow as usize;
        let Some(q) = self.queues.get_mut(f) else {
            self.stats.dropped_no_flow += 1;
            return Err((pkt, DropReason::NoRoute));
        };
        let len = q.len;
        if len >= self.cap {
            self.stats.dropped_full += 1;
            return Err((pkt, DropReason::QueueFull));
        }
        let idx = f * self.cap as usize + ((q.head + len) % self.cap) as usize;
        self.slots[idx] = pkt;
        q.len = len + 1;
        self.stats.enqueued += 1;
        if len == 0 {
            // Waking up: no credit for the idle time (see the module doc).
            let p = &mut q.pacer;
            if p.next_departure_ns != u64::MAX {
                p.next_departure_ns = p.next_departure_ns.max(now_ns);
                // Due now (most often): released by this iteration's poll.
                self.wheel.schedule_due(flow, p.next_departure_ns, now_ns);
            }
        }
        Ok(())
    }

    /// Appends every packet due at `now_ns` to `out` (up to its spare room),
    /// one per due flow, and re-schedules the flows still backlogged. Returns
    /// how many were appended; [`PacingTable::released`] names the flow of
    /// each. Call again while it fills `out`.
    pub fn poll(&mut self, now_ns: u64, out: &mut Batch) -> usize {
        let room = out.spare().min(BATCH_SIZE);
        let n = self.wheel.poll(now_ns, &mut self.due[..room]);
        let mut pushed = 0;
        self.n_released = 0;
        // With many flows each due flow's record and head slot are cold:
        // start loading them all before the first is read. The records
        // first: the head slot's address is read from the record, and
        // reading each record as soon as it was asked for would wait for
        // the misses one after the other.
        if n > 1 {
            for &flow in &self.due[..n] {
                if let Some(q) = self.queues.get(flow as usize) {
                    prefetch_read((q as *const FlowQueue).cast::<u8>());
                }
            }
            for &flow in &self.due[..n] {
                let f = flow as usize;
                if let Some(q) = self.queues.get(f)
                    && let Some(slot) = self.slots.get(f * self.cap as usize + q.head as usize)
                {
                    prefetch_read((slot as *const Packet).cast::<u8>());
                }
            }
        }
        for i in 0..n {
            let flow = self.due[i];
            let f = flow as usize;
            let q = &mut self.queues[f];
            let len = q.len;
            if len == 0 {
                continue; // cannot happen: only backlogged flows are scheduled
            }
            let idx = f * self.cap as usize + q.head as usize;
            let pkt = self.slots[idx];
            q.head = (q.head + 1) % self.cap;
            q.len = len - 1;
            // `room` <= spare: never fails.
            if out.push(pkt) {
                self.released[pushed] = flow;
                pushed += 1;
                self.n_released = pushed;
            }
            let units = if self.unit_bytes == 0 {
                1.0
            } else {
                f64::from(pkt.len.max(1)) / f64::from(self.unit_bytes)
            };
            let next =
                self.queues[f]
                    .pacer
                    .on_departure(&mut self.rng, now_ns, self.max_lag_ns, units);
            if len > 1 && next != u64::MAX {
                self.wheel.schedule_due(flow, next, now_ns);
            }
        }
        self.stats.sent += pushed as u64;
        pushed
    }

    /// The flow of each packet the last [`PacingTable::poll`] appended, in
    /// the order it appended them.
    pub fn released(&self) -> &[u32] {
        &self.released[..self.n_released]
    }

    /// Removes every queued packet of `flow` (e.g. when the flow is torn
    /// down), handing each to `free`. Returns how many.
    pub fn drain(&mut self, flow: u32, mut free: impl FnMut(Packet)) -> u32 {
        let f = flow as usize;
        let Some(q) = self.queues.get_mut(f) else {
            return 0;
        };
        let (len, head) = (q.len, q.head);
        q.len = 0;
        q.head = 0;
        for k in 0..len {
            let idx = f * self.cap as usize + ((head + k) % self.cap) as usize;
            free(self.slots[idx]);
        }
        self.wheel.cancel(flow);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Verdict;

    fn pkt(tag: u64) -> Packet {
        let mut p = Packet::new(tag, 100, 0, 0);
        p.verdict = Verdict::Tx(1);
        p
    }

    fn table(flows: u32, cap: u32, shift: u32) -> PacingTable {
        let cfg = PacingConfig {
            flows,
            queue_capacity: cap,
            tick_shift: shift,
            seed: 77,
            max_lag_ns: 100_000,
            unit_bytes: 0,
        };
        PacingTable::new(cfg, 0).unwrap()
    }

    /// Drives a backlogged single flow event by event (poll exactly at the
    /// wake-up hints), returning the release times.
    fn run_backlogged(rate: f64, shift: u32, departures: usize) -> Vec<u64> {
        let mut t = table(1, 8, shift);
        t.set_rate(0, rate, 0);
        let mut tag = 0;
        for _ in 0..8 {
            t.enqueue(0, pkt(tag), 0).unwrap();
            tag += 1;
        }
        let mut times = Vec::with_capacity(departures);
        let mut out = Batch::new();
        let mut expect = 0;
        while times.len() < departures {
            let now = t.next_wakeup_ns().expect("backlogged flow is scheduled");
            out.clear();
            let n = t.poll(now, &mut out);
            for p in out.as_slice() {
                assert_eq!(p.addr, expect, "FIFO order");
                assert_eq!(p.verdict, Verdict::Tx(1), "descriptor unchanged");
                expect += 1;
                times.push(now);
                t.enqueue(0, pkt(tag), now).unwrap();
                tag += 1;
            }
            assert!(n <= 1);
        }
        times
    }

    #[test]
    fn released_names_the_flow_of_every_packet_in_order() {
        let mut t = table(4, 8, 0);
        for f in [1u32, 3] {
            t.set_rate(f, 1000.0, 0);
            for k in 0..4 {
                // The tag says which flow the packet was queued on.
                t.enqueue(f, pkt(u64::from(f) * 100 + k), 0).unwrap();
            }
        }
        let mut out = Batch::new();
        let mut seen = 0;
        let mut now = 0;
        while seen < 8 {
            now = t.next_wakeup_ns().expect("backlogged flows are scheduled");
            out.clear();
            let n = t.poll(now, &mut out);
            assert_eq!(t.released().len(), n);
            for (p, &f) in out.as_slice().iter().zip(t.released()) {
                assert_eq!(
                    p.addr / 100,
                    u64::from(f),
                    "packet released for its own flow"
                );
            }
            seen += n;
        }
        out.clear();
        assert_eq!(t.poll(now, &mut out), 0);
        assert!(t.released().is_empty(), "an empty poll releases nothing");
    }

    #[test]
    fn a_packet_of_an_idle_flow_leaves_at_the_poll_of_its_arrival() {
        // Ticks of 1 024 ns; arrivals between tick boundaries, long after
        // the flow's last departure: each must leave at a poll at its own
        // arrival time (the iteration that received it), not a tick later.
        let mut t = table(2, 8, 10);
        t.set_rate(0, 1000.0, 0);
        t.set_rate(1, 1000.0, 0);
        let mut out = Batch::new();
        let mut now = 0;
        for k in 0..20u64 {
            now += 5_000_000 + 333 * k + 1;
            t.enqueue(0, pkt(k), now).unwrap();
            out.clear();
            assert_eq!(t.poll(now, &mut out), 1, "arrival {k} at {now}");
            assert_eq!(out.as_slice()[0].addr, k);
        }
        // A release keeps a due departure due now.
        t.enqueue(1, pkt(100), now + 1).unwrap();
        t.enqueue(1, pkt(101), now + 1).unwrap();
        out.clear();
        assert_eq!(t.poll(now + 1, &mut out), 1);
        t.set_rate(1, 0.001, now + 2);
        assert!(t.release_now(1, now + 3));
        out.clear();
        assert_eq!(t.poll(now + 3, &mut out), 1);
        assert_eq!(out.as_slice()[0].addr, 101);
    }

    #[test]
    fn a_hold_delays_the_next_departure_and_keeps_the_queue() {
        let mut t = table(2, 8, 0);
        t.set_rate(0, 1000.0, 0);
        for tag in 0..3 {
            t.enqueue(0, pkt(tag), 0).unwrap();
        }
        assert!(t.hold(0, 50_000_000));
        assert!(!t.hold(9, 1), "unknown flow");
        // Nothing leaves before the hold ends, however often we poll.
        let mut out = Batch::new();
        for now in (0..50_000_000).step_by(1_000_000) {
            assert_eq!(t.poll(now, &mut out), 0, "at {now}");
        }
        // Then the queue drains in order.
        let mut got = Vec::new();
        let mut now = 50_000_000;
        while got.len() < 3 && now < 1_000_000_000 {
            out.clear();
            t.poll(now, &mut out);
            got.extend(out.as_slice().iter().map(|p| p.addr));
            now += 100_000;
        }
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(t.stats().holds, 1);
        // A hold earlier than the next departure, or on a paused flow, changes nothing.
        assert!(t.hold(1, 10));
        assert_eq!(t.stats().holds, 1);
    }

    #[test]
    fn a_release_sends_the_head_at_once_then_paces_as_before() {
        let mut t = table(2, 8, 0);
        t.set_rate(0, 1000.0, 0);
        for tag in 0..3 {
            t.enqueue(0, pkt(tag), 0).unwrap();
        }
        let mut out = Batch::new();
        let mut now = 0;
        while t.poll(now, &mut out) == 0 && now < 1_000_000_000 {
            now += 1_000;
        }
        assert_eq!(out.len(), 1, "the first left");
        // At 1 packet/s the next is about a second away...
        t.set_rate(0, 1.0, now);
        let next = t.pacer(0).unwrap().next_departure_ns;
        assert!(next > now);
        // ...released, it leaves now, and the one after a gap later.
        now += 1_000;
        assert!(t.release_now(0, now));
        assert!(!t.release_now(9, now), "unknown flow");
        out.clear();
        assert_eq!(t.poll(now, &mut out), 1);
        assert_eq!(out.as_slice()[0].addr, 1);
        assert!(t.pacer(0).unwrap().next_departure_ns > now);
        // A paused flow stays paused.
        t.set_rate(1, 0.0, now);
        t.enqueue(1, pkt(7), now).unwrap();
        assert!(t.release_now(1, now));
        out.clear();
        assert_eq!(t.poll(now, &mut out), 0);
    }

    #[test]
    fn inter_departure_times_are_exponential_ks() {
        // n = 10^5 gaps at 100 kpps with a 1 ns tick.
        let rate = 100_000.0;
        let times = run_backlogged(rate, 0, 100_001);
        let mut gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        gaps.sort_by(f64::total_cmp);
        let d = crate::sys::rng::ks_exp(&gaps, 1e9 / rate);
        let crit = 1.628 / (gaps.len() as f64).sqrt();
        eprintln!(
            "KS D = {d:.5} (n = {}, critical at alpha 0.01 = {crit:.5})",
            gaps.len()
        );
        assert!(d < crit, "D = {d}, critical {crit}");
    }

    #[test]
    fn achieved_rate_within_one_percent_1kpps_to_1mpps() {
        for rate in [1_000.0, 10_000.0, 100_000.0, 1_000_000.0] {
            // Default 1.024 us tick: rounding must not bias the rate.
            let times = run_backlogged(rate, TimerWheel::DEFAULT_SHIFT, 100_001);
            let achieved = 1e9 * 100_000.0 / (times[100_000] - times[0]) as f64;
            let err = (achieved - rate).abs() / rate;
            eprintln!("rate {rate}: achieved {achieved:.1} ({:.3}%)", err * 100.0);
            assert!(err < 0.01, "rate {rate}: achieved {achieved}");
        }
    }

    #[test]
    fn byte_pacing_keeps_the_byte_rate_whatever_the_sizes() {
        // 1000 units/s of 1250 B = 1.25 MB/s, with frames of 100, 1250 and
        // 1500 B mixed: the bytes sent over 10^5 departures keep the rate;
        // in packet mode the same rate is 1000 packets/s whatever their size.
        for unit_bytes in [1250u32, 0] {
            let mut t = PacingTable::new(
                PacingConfig {
                    flows: 1,
                    queue_capacity: 8,
                    tick_shift: 0,
                    seed: 5,
                    max_lag_ns: 100_000,
                    unit_bytes,
                },
                0,
            )
            .unwrap();
            t.set_rate(0, 1000.0, 0);
            let sizes = [100u32, 1250, 1500];
            let mut i = 0usize;
            let mut next = |tag: u64| {
                i += 1;
                Packet::new(tag, sizes[i % 3], 0, 0)
            };
            for tag in 0..8 {
                t.enqueue(0, next(tag), 0).unwrap();
            }
            let (mut bytes, mut sent, mut out) = (0u64, 0u64, Batch::new());
            let mut first_last = (None, 0u64);
            while sent < 100_000 {
                let now = t.next_wakeup_ns().expect("backlogged");
                out.clear();
                t.poll(now, &mut out);
                for p in out.as_slice() {
                    if first_last.0.is_none() {
                        first_last.0 = Some(now);
                    } else {
                        // The gap after the first departure onwards: count
                        // every departure but the last one's bytes below.
                        bytes += u64::from(p.len);
                        sent += 1;
                    }
                    first_last.1 = now;
                    t.enqueue(0, next(sent), now).unwrap();
                }
            }
            let secs = (first_last.1 - first_last.0.unwrap()) as f64 / 1e9;
            if unit_bytes == 0 {
                let pps = sent as f64 / secs;
                assert!((pps - 1000.0).abs() < 10.0, "packet mode: {pps} pps");
            } else {
                // Each gap is charged to the packet before it: the bytes of
                // departures 0..n-1 over the time from the first to the last.
                let bps = bytes as f64 / secs;
                let want = 1000.0 * f64::from(unit_bytes);
                assert!(
                    (bps - want).abs() / want < 0.01,
                    "byte mode: {bps} B/s vs {want}"
                );
            }
        }
    }

    #[test]
    fn periodic_polling_keeps_the_rate() {
        // A worker polling every 20 us at 200 kpps: up to 4 departures per poll.
        let mut t = table(1, 64, TimerWheel::DEFAULT_SHIFT);
        t.set_rate(0, 200_000.0, 0);
        let mut out = Batch::new();
        let mut sent = 0u64;
        let mut now = 0;
        while now < 1_000_000_000 {
            while t.queue_len(0) < 64 {
                t.enqueue(0, pkt(0), now).unwrap();
            }
            now += 20_000;
            loop {
                out.clear();
                let n = t.poll(now, &mut out);
                sent += n as u64;
                if n == 0 {
                    break;
                }
                // refill between polls of the same instant
                while t.queue_len(0) < 64 {
                    t.enqueue(0, pkt(0), now).unwrap();
                }
            }
        }
        assert!(sent.abs_diff(200_000) < 2_000, "sent {sent}");
    }

    #[test]
    fn drop_tail_returns_the_packet() {
        let mut t = table(2, 4, 10);
        for i in 0..4 {
            assert!(t.enqueue(1, pkt(i), 0).is_ok());
        }
        let (p, why) = t.enqueue(1, pkt(99), 0).unwrap_err();
        assert_eq!((p.addr, why), (99, DropReason::QueueFull));
        let (p, why) = t.enqueue(7, pkt(5), 0).unwrap_err();
        assert_eq!((p.addr, why), (5, DropReason::NoRoute));
        let s = t.stats();
        assert_eq!((s.enqueued, s.dropped_full, s.dropped_no_flow), (4, 1, 1));
        let mut freed = Vec::new();
        assert_eq!(t.drain(1, |p| freed.push(p.addr)), 4);
        assert_eq!(freed, vec![0, 1, 2, 3]);
        assert_eq!(t.queue_len(1), 0);
    }

    #[test]
    fn paused_flow_holds_packets_until_rate_set() {
        let mut t = table(1, 4, 10);
        t.enqueue(0, pkt(1), 0).unwrap();
        let mut out = Batch::new();
        assert_eq!(t.poll(1_000_000_000, &mut out), 0);
        t.set_rate(0, 1000.0, 1_000_000_000);
        assert_eq!(t.poll(1_000_000_000 + 1_000_000_000, &mut out), 1);
        t.enqueue(0, pkt(2), 2_000_000_000).unwrap();
        t.set_rate(0, 0.0, 2_000_000_000);
        assert_eq!(t.poll(u64::MAX - (1 << 20), &mut out), 0);
        assert_eq!(t.queue_len(0), 1);
    }

    #[test]
    fn idle_flow_earns_no_burst() {
        // 1000 pps; idle for 10 s, then 50 packets arrive at once: at most one
        // leaves immediately, the rest follow at the paced rate.
        let mut t = table(1, 64, 10);
        t.set_rate(0, 1000.0, 0);
        let start = 10_000_000_000;
        for i in 0..50 {
            t.enqueue(0, pkt(i), start).unwrap();
        }
        let mut out = Batch::new();
        let mut first_ms = 0;
        // Releases in the first millisecond (mean 1 packet; 64 in a burst).
        let mut now = start;
        while now <= start + 1_000_000 {
            out.clear();
            first_ms += t.poll(now, &mut out);
            now += 1_000;
        }
        assert!(first_ms <= 5, "burst of {first_ms} after idle");
        // All 50 go out in roughly 50 ms.
        while now <= start + 200_000_000 {
            out.clear();
            t.poll(now, &mut out);
            now += 1_000;
        }
        assert_eq!(t.queue_len(0), 0);
        assert_eq!(t.stats().sent, 50);
    }

    #[test]
    fn rate_change_rescales_pending_gap() {
        let mut rng = Rng::new(1);
        let mut p = FlowPacer::new(1000.0, 0);
        p.next_departure_ns = 1_000_000;
        p.set_rate(2000.0, 0, &mut rng);
        assert_eq!(p.next_departure_ns, 500_000);
        p.set_rate(0.0, 0, &mut rng);
        assert_eq!(p.next_departure_ns, u64::MAX);
        p.set_rate(f64::NAN, 0, &mut rng);
        assert_eq!(p.rate_pps, 0.0);
        p.set_rate(1e6, 100, &mut rng);
        assert!(p.next_departure_ns >= 100 && p.next_departure_ns < 100 + 100_000);
    }

    #[test]
    fn many_flows_batched_and_fair() {
        // 1000 flows at 1000 pps each, backlogged, polled every 50 us in 64-packet
        // batches: each flow sends ~1000 in a second, none is starved.
        let n = 1000u32;
        let mut t = table(n, 4, 10);
        for f in 0..n {
            t.set_rate(f, 1000.0, 0);
        }
        let mut per_flow = vec![0u64; n as usize];
        let mut out = Batch::new();
        let mut now = 0;
        while now < 1_000_000_000 {
            for f in 0..n {
                while t.queue_len(f) < 4 {
                    t.enqueue(f, pkt(u64::from(f)), now).unwrap();
                }
            }
            now += 50_000;
            loop {
                out.clear();
                let k = t.poll(now, &mut out);
                for p in out.as_slice() {
                    per_flow[usize::try_from(p.addr).unwrap()] += 1;
                }
                if k < BATCH_SIZE {
                    break;
                }
            }
        }
        let total: u64 = per_flow.iter().sum();
        assert!(total.abs_diff(1_000_000) < 10_000, "total {total}");
        // Poisson count over 1 s at 1000/s: sd ~ 32; 6 sd bounds.
        assert!(
            per_flow.iter().all(|&c| (800..1200).contains(&c)),
            "min {:?} max {:?}",
            per_flow.iter().min(),
            per_flow.iter().max()
        );
    }
}
