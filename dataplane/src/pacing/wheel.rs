//! A timer wheel scheduling flow departures: a near wheel of one slot per
//! tick for what is due soon, hierarchical levels beyond it.
//!
//! Time is counted in ticks of `2^shift` ns (default 2^10 = 1.024 us).
//! Each flow has at most one entry, stored in a preallocated array indexed by
//! flow id and linked into its slot by intrusive `u32` links: `schedule`,
//! re-`schedule` and `cancel` are O(1) and never allocate.
//!
//! **Near wheel.** An entry due within `N` ticks of the wheel's current tick
//! `elapsed` (`N` = 4 slots per flow id, a power of two from 64 to 2^20) goes
//! to slot `w & (N - 1)`: one slot per tick, so it is emitted from there
//! without moving again. The next occupied slot is found through a bitmap
//! with one summary bit per word above it (find-first-set, as Eiffel's
//! bucketed queues, NSDI 2019), a few word reads whatever `N` is. At many
//! flows this is what matters: each move of an entry relinks it next to
//! other flows' entries, cold cache lines, and a departure a few hundred
//! ms ahead used to cascade through two or three levels before it left.
//!
//! **Far levels.** Beyond the near wheel's horizon (as in the Linux and tokio
//! wheels) an entry due at tick `w` goes to the level of the highest 6-bit
//! group in which `w` and `elapsed` differ, in slot `(w >> 6L) & 63`: 11
//! levels of 64 slots, level `L` slots spanning `64^L` ticks, cover the whole
//! `u64` tick range, so no overflow list is needed. When `elapsed` reaches a
//! far slot, its entries cascade to lower levels or into the near wheel
//! (before a near slot of the same tick is emitted). O(1) amortised.
//!
//! Guarantees (property-tested against a `BinaryHeap` model):
//! - an entry scheduled for `at_ns` is returned by the first `poll(now)` with
//!   `floor(now / tick) >= ceil(at_ns / tick)`, i.e. never early, at most one
//!   tick late (when polled on time), and exactly once;
//! - entries come out in non-decreasing tick order; a poll whose output is full
//!   leaves the rest for the next poll;
//! - scheduling in the past makes the entry due at the next poll;
//! - a time within the last tick before `u64::MAX` never falls due (so
//!   `u64::MAX` can stand for "never").

/// Bits per level.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels: 11 * 6 = 66 bits >= 64-bit ticks.
const LEVELS: usize = 11;
/// "No entry" link.
const NIL: u32 = u32::MAX;
/// "Not in the wheel" location.
const NOWHERE: u32 = u32::MAX;
/// Locations from here on are in the hierarchical levels
/// (`FAR + level * 64 + slot`); below it, a slot of the near wheel.
const FAR: u32 = 1 << 24;
/// The near wheel's slots: from 64 up to 2^20 (see [`TimerWheel::new`]).
const NEAR_MIN_BITS: u32 = 6;
const NEAR_MAX_BITS: u32 = 20;
/// From this many flow ids on (entries beyond a few hundred KiB, out of
/// cache) [`TimerWheel::poll`] prefetches the due entries before it emits
/// them.
const PREFETCH_MIN_ENTRIES: usize = 1 << 14;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Due tick.
    when: u64,
    next: u32,
    prev: u32,
    /// A near slot, `FAR + level * 64 + slot`, or `NOWHERE`.
    loc: u32,
}

/// Errors of [`TimerWheel::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WheelError {
    /// Capacity beyond `u32::MAX - 1` flows.
    #[error("timer wheel: capacity {0} exceeds u32::MAX - 1")]
    Capacity(usize),
    /// Tick shift above 40 (a tick over 18 minutes makes no sense).
    #[error("timer wheel: tick shift {0} > 40")]
    Shift(u32),
}

/// Which of `n` positions are set, with find-next-set in a few word reads
/// whatever `n` is: one bit per position, and above it one bit per
/// non-zero word of the level below, up to a single word.
#[derive(Clone, Debug)]
struct Bitmap {
    levels: Vec<Vec<u64>>,
}

impl Bitmap {
    fn new(n: usize) -> Self {
        let mut levels = Vec::new();
        let mut words = n.div_ceil(64).max(1);
        loop {
            levels.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            words = words.div_ceil(64);
        }
        Self { levels }
    }

    fn set(&mut self, mut i: usize) {
        for l in &mut self.levels {
            let was = l[i / 64];
            l[i / 64] = was | 1 << (i % 64);
            if was != 0 {
                return;
            }
            i /= 64;
        }
    }

    fn clear(&mut self, mut i: usize) {
        for l in &mut self.levels {
            l[i / 64] &= !(1 << (i % 64));
            if l[i / 64] != 0 {
                return;
            }
            i /= 64;
        }
    }

    /// The first set position at or after `i`.
    fn find_from(&self, i: usize) -> Option<usize> {
        self.find_at(0, i)
    }

    fn find_at(&self, level: usize, i: usize) -> Option<usize> {
        let words = self.levels.get(level)?;
        let w = i / 64;
        let here = words.get(w)? & (!0u64 << (i % 64));
        let w = if here != 0 {
            w
        } else {
            // The next non-zero word of this level, from the level above.
            self.find_at(level + 1, w + 1)?
        };
        let bits = words[w] & if w == i / 64 { !0u64 << (i % 64) } else { !0 };
        Some(w * 64 + bits.trailing_zeros() as usize)
    }
}

/// A timer wheel of flow ids `0..capacity`: one level of fine slots for
/// what is due within its horizon, hierarchical levels beyond it.
#[derive(Clone, Debug)]
pub struct TimerWheel {
    shift: u32,
    /// Current tick: every entry has `when >= elapsed`.
    elapsed: u64,
    /// The near wheel: slot `t & near_mask` holds the entries due at tick
    /// `t`, for `elapsed <= t <= elapsed + near_mask`.
    near_heads: Vec<u32>,
    near_occupied: Bitmap,
    near_mask: u64,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    entries: Vec<Entry>,
    len: usize,
}

impl TimerWheel {
    /// Default tick: 2^10 ns.
    pub const DEFAULT_SHIFT: u32 = 10;

    /// A wheel for flow ids `0..capacity`, ticks of `2^shift` ns, starting at
    /// time `now_ns`. Allocates all memory here: the entries, and a near
    /// wheel of 4 slots per flow id (rounded up to a power of two, from 64
    /// to 2^20 slots: up to 4 MiB, about a second at the default tick).
    pub fn new(capacity: usize, shift: u32, now_ns: u64) -> Result<Self, WheelError> {
        if capacity >= NIL as usize {
            return Err(WheelError::Capacity(capacity));
        }
        if shift > 40 {
            return Err(WheelError::Shift(shift));
        }
        let bits = (capacity
            .saturating_mul(4)
            .max(1)
            .next_power_of_two()
            .trailing_zeros())
        .clamp(NEAR_MIN_BITS, NEAR_MAX_BITS);
        let near = 1usize << bits;
        Ok(Self {
            shift,
            elapsed: now_ns >> shift,
            near_heads: vec![NIL; near],
            near_occupied: Bitmap::new(near),
            near_mask: (near - 1) as u64,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            entries: vec![
                Entry {
                    when: 0,
                    next: NIL,
                    prev: NIL,
                    loc: NOWHERE
                };
                capacity
            ],
            len: 0,
        })
    }

    /// Number of flow ids the wheel holds.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Flows currently scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tick length in ns.
    pub fn tick_ns(&self) -> u64 {
        1 << self.shift
    }

    /// True when `flow` has a pending departure.
    pub fn is_scheduled(&self, flow: u32) -> bool {
        self.entries
            .get(flow as usize)
            .is_some_and(|e| e.loc != NOWHERE)
    }

    /// The tick `at_ns` falls due in: rounded up, so never early.
    #[inline]
    fn tick_of(&self, at_ns: u64) -> u64 {
        let mask = (1u64 << self.shift) - 1;
        (at_ns >> self.shift) + u64::from(at_ns & mask != 0)
    }

    /// Schedules (or re-schedules) `flow` to depart at `at_ns`. A time in the
    /// past makes it due at the next poll. Returns false, doing nothing, if
    /// `flow` is out of range.
    #[inline]
    pub fn schedule(&mut self, flow: u32, at_ns: u64) -> bool {
        if flow as usize >= self.entries.len() {
            return false;
        }
        let when = self.tick_of(at_ns);
        let loc = self.entries[flow as usize].loc;
        if loc != NOWHERE {
            // A re-schedule into the slot the entry is in already (a rate
            // change moving a far departure by a little): only its time
            // changes. Relinking would touch two other flows' entries,
            // cold lines at many flows.
            if self.loc_for(when) == loc {
                self.entries[flow as usize].when = when.max(self.elapsed);
                return true;
            }
            self.unlink(flow);
        }
        self.insert(flow, when);
        true
    }

    /// As [`Self::schedule`], for a departure due at `at_ns` seen at
    /// `now_ns`: one due already (`at_ns <= now_ns`) is returned by a poll
    /// at `now_ns`. (`schedule` rounds a time up to its tick, so a time
    /// inside the current tick, `now_ns` itself most often, waits for the
    /// next tick: a packet of an idle flow would miss the poll of the
    /// iteration that received it, and leave in a later one with a kick of
    /// its own.) Never early: a poll at `now_ns` or later is not before
    /// `at_ns`.
    #[inline]
    pub fn schedule_due(&mut self, flow: u32, at_ns: u64, now_ns: u64) -> bool {
        let at = if at_ns <= now_ns {
            now_ns & !((1u64 << self.shift) - 1)
        } else {
            at_ns
        };
        self.schedule(flow, at)
    }

    /// Where [`Self::insert`] would place an entry due at tick `when`: a
    /// near slot when it is due within the near wheel's horizon, else its
    /// level and slot as `FAR + level * 64 + slot`; the tick clamped as there.
    #[inline]
    fn loc_for(&self, when: u64) -> u32 {
        let when = when.max(self.elapsed);
        if when - self.elapsed <= self.near_mask {
            // Masked to at most 20 bits.
            #[allow(clippy::cast_possible_truncation)]
            return (when & self.near_mask) as u32;
        }
        let level = self.level_for(when);
        #[allow(clippy::cast_possible_truncation)] // masked to 6 bits
        let slot = ((when >> (LEVEL_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize;
        #[allow(clippy::cast_possible_truncation)] // level < 11, slot < 64: < 704
        let far = (level * SLOTS + slot) as u32;
        FAR + far
    }

    /// Starts loading `flow`'s entry (a hint for batches: scheduling it
    /// reads and writes it).
    #[inline]
    pub fn prefetch(&self, flow: u32) {
        if let Some(e) = self.entries.get(flow as usize) {
            crate::sys::prefetch_read((e as *const Entry).cast::<u8>());
        }
    }

    /// Removes `flow`'s pending departure. Returns whether there was one.
    pub fn cancel(&mut self, flow: u32) -> bool {
        if !self.is_scheduled(flow) {
            return false;
        }
        self.unlink(flow);
        true
    }

    /// The earliest time (ns) at which a poll may return something, as a
    /// wake-up hint: exact for entries due within the near wheel's horizon,
    /// a lower bound otherwise (a poll then may cascade and return nothing).
    pub fn next_wakeup_ns(&self) -> Option<u64> {
        let near = self.next_near().map(|(_, t)| t);
        let far = self.next_expiration().map(|(_, _, t)| t);
        let t = match (near, far) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(t.saturating_mul(1 << self.shift).max(t))
    }

    #[inline]
    fn level_for(&self, when: u64) -> usize {
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        (significant / LEVEL_BITS) as usize
    }

    /// The list head of location `loc` (a near slot or a far level's slot).
    #[inline]
    fn head_mut(&mut self, loc: u32) -> &mut u32 {
        if loc < FAR {
            &mut self.near_heads[loc as usize]
        } else {
            let l = (loc - FAR) as usize;
            &mut self.heads[l / SLOTS][l % SLOTS]
        }
    }

    #[inline]
    fn insert(&mut self, flow: u32, when: u64) {
        let when = when.max(self.elapsed);
        let loc = self.loc_for(when);
        let head = *self.head_mut(loc);
        self.entries[flow as usize] = Entry {
            when,
            next: head,
            prev: NIL,
            loc,
        };
        if head != NIL {
            self.entries[head as usize].prev = flow;
        } else if loc < FAR {
            self.near_occupied.set(loc as usize);
        } else {
            let l = (loc - FAR) as usize;
            self.occupied[l / SLOTS] |= 1 << (l % SLOTS);
        }
        *self.head_mut(loc) = flow;
        self.len += 1;
    }

    #[inline]
    fn unlink(&mut self, flow: u32) {
        let e = self.entries[flow as usize];
        if e.prev == NIL {
            *self.head_mut(e.loc) = e.next;
            if e.next == NIL {
                if e.loc < FAR {
                    self.near_occupied.clear(e.loc as usize);
                } else {
                    let l = (e.loc - FAR) as usize;
                    self.occupied[l / SLOTS] &= !(1 << (l % SLOTS));
                }
            }
        } else {
            self.entries[e.prev as usize].next = e.next;
        }
        if e.next != NIL {
            self.entries[e.next as usize].prev = e.prev;
        }
        self.entries[flow as usize].loc = NOWHERE;
        self.len -= 1;
    }

    /// The near wheel's earliest occupied slot: (slot, its tick).
    #[inline]
    fn next_near(&self) -> Option<(usize, u64)> {
        let (slot, ahead) = self.occupied_ahead(0)?;
        Some((slot, self.elapsed + ahead))
    }

    /// The first occupied near slot at least `skip` ticks after the
    /// current one: (slot, ticks ahead). Near ticks run from `elapsed`'s
    /// slot round the ring to the one before it.
    #[inline]
    fn occupied_ahead(&self, skip: u64) -> Option<(usize, u64)> {
        if skip > self.near_mask {
            return None;
        }
        // Masked to at most 20 bits.
        #[allow(clippy::cast_possible_truncation)]
        let start = (self.elapsed & self.near_mask) as usize;
        #[allow(clippy::cast_possible_truncation)]
        let from = ((self.elapsed + skip) & self.near_mask) as usize;
        let slot = if from >= start {
            self.near_occupied
                .find_from(from)
                .or_else(|| self.near_occupied.find_from(0).filter(|&s| s < start))?
        } else {
            self.near_occupied.find_from(from).filter(|&s| s < start)?
        };
        let ahead = (slot as u64).wrapping_sub(start as u64) & self.near_mask;
        Some((slot, ahead))
    }

    /// Starts loading the entries at the heads of the near slots due by
    /// tick `now` (at most `max` slots), changing nothing. Emitting a slot
    /// reads its head's entry (for the next link) and then the occupancy
    /// bitmap to find the next slot: with many flows each entry is a miss,
    /// and without this pass the misses of a poll come one after the other.
    /// Returns how many slots it found due.
    fn prefetch_due(&self, now: u64, max: usize) -> usize {
        let mut skip = 0;
        for k in 0..max {
            match self.occupied_ahead(skip) {
                Some((slot, ahead)) if self.elapsed + ahead <= now => {
                    self.prefetch(self.near_heads[slot]);
                    skip = ahead + 1;
                }
                _ => return k,
            }
        }
        max
    }

    /// The earliest occupied slot of the far levels: (level, slot, deadline
    /// tick).
    #[inline]
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occ = self.occupied[level];
            if occ == 0 {
                continue;
            }
            let lshift = LEVEL_BITS as usize * level;
            // Every entry has when >= elapsed and shares elapsed's bits above
            // its level, so occupied slots are at or after elapsed's slot.
            let slot = occ.trailing_zeros() as usize;
            let hi = lshift + LEVEL_BITS as usize;
            let base = if hi >= 64 {
                0
            } else {
                (self.elapsed >> hi) << hi
            };
            let start = base.saturating_add((slot as u64) << lshift);
            // Lower levels always expire before higher ones: the first
            // occupied level is the answer.
            return Some((level, slot, start.max(self.elapsed)));
        }
        None
    }

    /// Appends the flows due at `now_ns` to `out` (at most `out.len()`),
    /// returning how many. Each returned flow is no longer scheduled.
    pub fn poll(&mut self, now_ns: u64, out: &mut [u32]) -> usize {
        let now = now_ns >> self.shift;
        let mut n = 0;
        if out.is_empty() {
            return 0;
        }
        if self.entries.len() >= PREFETCH_MIN_ENTRIES {
            let _ = self.prefetch_due(now, out.len());
        }
        loop {
            let near = self.next_near();
            let far = self.next_expiration();
            // The far levels first at a tie: what they cascade joins the
            // near slots before those are emitted.
            let far_first = match (near, far) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((_, t)), Some((_, _, d))) => d <= t,
            };
            if far_first {
                let Some((level, slot, deadline)) = far else {
                    break;
                };
                if deadline > now {
                    break;
                }
                self.elapsed = deadline;
                // Cascade the slot: its entries go to the near wheel or a
                // lower level.
                #[allow(clippy::cast_possible_truncation)] // < 704
                let loc = FAR + (level * SLOTS + slot) as u32;
                loop {
                    let id = *self.head_mut(loc);
                    if id == NIL {
                        break;
                    }
                    let when = self.entries[id as usize].when;
                    self.unlink(id);
                    self.insert(id, when);
                }
            } else {
                let Some((slot, tick)) = near else {
                    break;
                };
                if tick > now {
                    break;
                }
                self.elapsed = tick;
                while n < out.len() {
                    let id = self.near_heads[slot];
                    if id == NIL {
                        break;
                    }
                    self.unlink(id);
                    out[n] = id;
                    n += 1;
                }
                if n == out.len() {
                    return n;
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn rejects_bad_config_and_ids() {
        assert!(TimerWheel::new(usize::MAX, 10, 0).is_err());
        assert!(TimerWheel::new(10, 41, 0).is_err());
        let mut w = TimerWheel::new(4, 10, 0).unwrap();
        assert!(!w.schedule(4, 0));
        assert!(!w.cancel(99));
        assert!(!w.is_scheduled(99));
    }

    #[test]
    fn never_early_at_most_one_tick_late() {
        let mut w = TimerWheel::new(1, 10, 0).unwrap();
        let mut out = [0u32; 4];
        w.schedule(0, 1500); // due tick 2 = 2048 ns
        assert_eq!(w.poll(1500, &mut out), 0);
        assert_eq!(w.poll(2047, &mut out), 0);
        assert_eq!(w.poll(2048, &mut out), 1);
        assert_eq!(w.poll(10_000, &mut out), 0);
        assert!(w.is_empty());
    }

    #[test]
    fn far_future_and_max_time() {
        let mut w = TimerWheel::new(3, 10, 0).unwrap();
        let mut out = [0u32; 4];
        w.schedule(0, u64::MAX);
        w.schedule(1, 3_600_000_000_000); // 1 h
        w.schedule(2, 1 << 62);
        assert_eq!(w.poll(3_599_999_000_000, &mut out), 0);
        assert_eq!(w.poll(3_600_001_000_000, &mut out), 1);
        assert_eq!(out[0], 1);
        assert_eq!(w.poll((1 << 62) + 1024, &mut out), 1);
        assert_eq!(out[0], 2);
        // The last partial tick rounds up past u64::MAX: `u64::MAX` means never.
        assert_eq!(w.poll(u64::MAX, &mut out), 0);
        assert!(w.is_scheduled(0));
        w.schedule(0, u64::MAX - 4096);
        assert_eq!(w.poll(u64::MAX, &mut out), 1);
        assert_eq!(out[0], 0);
    }

    #[test]
    fn due_now_is_returned_by_a_poll_now() {
        let mut w = TimerWheel::new(2, 10, 0).unwrap();
        let mut out = [0u32; 4];
        // 1500 ns is inside tick 1 (1024..2048): `schedule` rounds it up to
        // tick 2, so a poll at 1500 does not return it.
        w.schedule(0, 1500);
        assert_eq!(w.poll(1500, &mut out), 0);
        assert_eq!(w.poll(2048, &mut out), 1);
        // Due at or before the poll's time: returned by it.
        w.schedule_due(0, 2100, 2100);
        w.schedule_due(1, 1000, 2500);
        assert_eq!(w.poll(2500, &mut out), 2);
        // Not due yet: as `schedule`, never early.
        w.schedule_due(0, 3000, 2600);
        assert_eq!(w.poll(2999, &mut out), 0);
        assert_eq!(w.poll(3072, &mut out), 1);
    }

    #[test]
    fn reschedule_moves_the_single_entry() {
        let mut w = TimerWheel::new(2, 10, 0).unwrap();
        let mut out = [0u32; 4];
        w.schedule(1, 1_000_000);
        w.schedule(1, 5_000);
        assert_eq!(w.len(), 1);
        assert_eq!(w.poll(10_000, &mut out), 1);
        assert_eq!(w.poll(2_000_000, &mut out), 0);
        w.schedule(0, 50_000);
        assert!(w.cancel(0));
        assert_eq!(w.poll(100_000, &mut out), 0);
    }

    #[test]
    fn prefetch_pass_finds_the_due_slots_also_round_the_ring() {
        // 64 ids: a near wheel of 256 slots of 1 tick (1024 ns).
        let mut w = TimerWheel::new(64, 10, 0).unwrap();
        let mut out = [0u32; 64];
        // Move the wheel's tick near the end of the ring, so the due slots
        // wrap round to its start.
        w.schedule(0, 250 * 1024);
        assert_eq!(w.poll(250 * 1024, &mut out), 1);
        // Due at ticks 252, 254 (2 in one slot), 256 (slot 0) and 259 (slot
        // 3); one at tick 400 (not due at 300).
        for (f, t) in [(1, 252), (2, 254), (3, 254), (4, 256), (5, 259), (6, 400)] {
            w.schedule(f, t * 1024);
        }
        assert_eq!(w.prefetch_due(251, 8), 0);
        assert_eq!(w.prefetch_due(254, 8), 2);
        assert_eq!(w.prefetch_due(300, 8), 4);
        assert_eq!(w.prefetch_due(300, 3), 3);
        assert_eq!(w.prefetch_due(300, 0), 0);
        // The poll itself: the five due, in order, then the rest later.
        let n = w.poll(300 * 1024, &mut out);
        assert_eq!(n, 5);
        assert_eq!(out[0], 1);
        assert_eq!(out[4], 5);
        assert_eq!(w.prefetch_due(300, 8), 0);
        assert_eq!(w.prefetch_due(400, 8), 1);
    }

    #[test]
    fn full_output_leaves_the_rest() {
        let mut w = TimerWheel::new(100, 10, 0).unwrap();
        for f in 0..100 {
            w.schedule(f, 5_000 + u64::from(f % 3) * 1024);
        }
        let mut out = [0u32; 16];
        let mut seen = [false; 100];
        let mut total = 0;
        for _ in 0..10 {
            let n = w.poll(100_000, &mut out);
            for &f in &out[..n] {
                assert!(!seen[f as usize], "returned twice");
                seen[f as usize] = true;
            }
            total += n;
        }
        assert_eq!(total, 100);
    }

    /// Random operations against a BinaryHeap model with lazy deletion.
    fn run_model(ops: &[(u8, u32, u64)], shift: u32) {
        const N: u32 = 64;
        let tick = 1u64 << shift;
        let mut w = TimerWheel::new(N as usize, shift, 0).unwrap();
        let mut heap: BinaryHeap<Reverse<(u64, u32, u64)>> = BinaryHeap::new();
        let mut gen_of = vec![0u64; N as usize];
        let mut live = vec![false; N as usize];
        let mut last_at = vec![0u64; N as usize];
        let mut now = 0u64;
        let mut prev_now_t = 0u64;
        let mut out = [0u32; 8];
        for &(op, id, x) in ops {
            let id = id % N;
            match op % 4 {
                0 | 1 => {
                    // schedule: offsets spanning past, near, far and huge
                    let at = match x % 6 {
                        0 => now.saturating_sub(x % 5000),
                        1 => now + x % 100_000,
                        2 => now + x % 100_000_000_000,
                        3 => now.saturating_add(x),
                        // A nudge of its last time, as a rate change does:
                        // often into the slot it is in already.
                        4 => last_at[id as usize].saturating_add((x >> 8) % (64 * tick)),
                        _ => last_at[id as usize].saturating_sub((x >> 8) % (64 * tick)),
                    };
                    last_at[id as usize] = at;
                    gen_of[id as usize] += 1;
                    live[id as usize] = true;
                    let t = at.div_ceil(tick);
                    heap.push(Reverse((t, id, gen_of[id as usize])));
                    assert!(w.schedule(id, at));
                }
                2 => {
                    assert_eq!(w.cancel(id), live[id as usize]);
                    live[id as usize] = false;
                    gen_of[id as usize] += 1;
                }
                _ => {
                    now += match x % 3 {
                        0 => x % 3000,
                        1 => x % 10_000_000,
                        _ => x % 1_000_000_000_000,
                    };
                    let cap = (x % 9) as usize; // 0..=8 output slots
                    let n = w.poll(now, &mut out[..cap]);
                    let now_t = now / tick;
                    // The model's due entries, earliest first.
                    let mut due = Vec::new();
                    while let Some(&Reverse((t, f, g))) = heap.peek() {
                        if g != gen_of[f as usize] {
                            heap.pop();
                            continue;
                        }
                        if t > now_t {
                            break;
                        }
                        heap.pop();
                        due.push((t, f, g));
                    }
                    assert_eq!(n, due.len().min(cap), "count at now {now}");
                    // Returned: all due, ticks no later than any not returned.
                    let mut got: Vec<u32> = out[..n].to_vec();
                    got.sort_unstable();
                    got.dedup();
                    assert_eq!(got.len(), n, "duplicate in one poll");
                    let max_ret = out[..n]
                        .iter()
                        .map(|f| due.iter().find(|d| d.1 == *f).map(|d| d.0));
                    // Order is by due tick, where entries already overdue at the
                    // previous poll count as due at that poll's tick.
                    let mut max_t = 0;
                    for t in max_ret {
                        let t = t.expect("returned a flow that is not due");
                        max_t = max_t.max(t.max(prev_now_t));
                    }
                    for d in &due {
                        if out[..n].contains(&d.1) {
                            live[d.1 as usize] = false;
                            gen_of[d.1 as usize] += 1;
                        } else {
                            assert!(d.0.max(prev_now_t) >= max_t, "skipped an earlier tick");
                            heap.push(Reverse(*d));
                        }
                    }
                    prev_now_t = now_t;
                }
            }
            let model_len = live.iter().filter(|&&l| l).count();
            assert_eq!(w.len(), model_len);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn bitmap_matches_a_set(bits in 0u32..21,
                                ops in proptest::collection::vec((any::<bool>(), any::<u32>()), 1..300)) {
            let n = 1usize << bits;
            let mut b = Bitmap::new(n);
            let mut model = std::collections::BTreeSet::new();
            for (set, x) in ops {
                let i = x as usize % n;
                if set {
                    b.set(i);
                    model.insert(i);
                } else {
                    b.clear(i);
                    model.remove(&i);
                }
                // Next set position from a few starting points.
                for from in [0, i, (i + 1) % n, (x as usize >> 7) % n, n - 1] {
                    prop_assert_eq!(b.find_from(from), model.range(from..).next().copied());
                }
            }
        }

        #[test]
        fn wheel_matches_heap_model(ops in proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u64>()), 1..400),
                                    shift in 0u32..14) {
            run_model(&ops, shift);
        }
    }

    #[test]
    fn hundred_thousand_flows_rescheduled() {
        // 100k flows, each re-scheduled after every departure: every departure
        // is seen exactly once, in order, never early.
        let n = 100_000u32;
        let mut w = TimerWheel::new(n as usize, 10, 0).unwrap();
        let mut r = crate::sys::Rng::new(5);
        let mut due = vec![0u64; n as usize];
        for f in 0..n {
            due[f as usize] = r.exp_gap_ns(1000.0);
            w.schedule(f, due[f as usize]);
        }
        let mut out = vec![0u32; 256];
        let mut now = 0;
        let mut departures = 0u64;
        while now < 50_000_000 {
            now += 10_000;
            loop {
                let k = w.poll(now, &mut out);
                for &f in &out[..k] {
                    assert!(due[f as usize] <= now, "early");
                    assert!(now - due[f as usize] < 10_000 + 1024, "late");
                    due[f as usize] += r.exp_gap_ns(1000.0);
                    w.schedule(f, due[f as usize]);
                }
                departures += k as u64;
                // Re-scheduled in the past: due at once, poll again.
                if k == 0 {
                    break;
                }
            }
        }
        assert_eq!(w.len(), n as usize);
        // ~1000/s * 100k flows * 50 ms = 5M departures.
        assert!((4_900_000..5_100_000).contains(&departures), "{departures}");
    }
}
