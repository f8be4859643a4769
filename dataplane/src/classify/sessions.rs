//! The session table: inner 5-tuple -> (class, flow or overflow outcome),
//! open addressing with linear probing, sized once at construction (load
//! factor at most 3/4 when full), backward-shift deletion (no tombstones).
//!
//! Time is kept per slot in ticks of 2^20 ns (about 1.05 ms) in 32 bits;
//! ages are computed with wrapping arithmetic, exact while a session is
//! idle for less than ~52 days, which the incremental sweep
//! ([`SessionTable::expire`]) guarantees in practice.

use super::hosts::Host;
use super::inner::FiveTuple;
use crate::sys::prefetch_read;

/// `flow` value of a session forwarded best effort (class over its plan).
pub const FLOW_BEST_EFFORT: u32 = u32::MAX;
/// `flow` value of a session whose packets are dropped (class over its plan).
pub const FLOW_DROP: u32 = u32::MAX - 1;

const TICK_SHIFT: u32 = 20;
const OCCUPIED: u8 = 1;
const V6: u8 = 2;
/// Refused (best effort or drop) because its class had no room in the plan:
/// counted in the classifier's per-class waiting sessions.
const WAITING: u8 = 4;
/// Closed (TCP FIN seen): its admission is freed; the entry keeps its flow
/// for the segments that follow the FIN, for [`SessionTable::closed_ticks`]
/// after the FIN (the classifier does not refresh a closed entry).
const CLOSED: u8 = 8;
/// How long a closed session keeps its pin after its FIN (capped by the
/// idle timeout), ns.
pub const CLOSED_LINGER_NS: u64 = 10_000_000_000;

/// Converts nanoseconds to 32-bit wrapping ticks.
#[inline]
pub(crate) fn tick(now_ns: u64) -> u32 {
    // Keeping the low 32 bits is the point: ticks wrap and ages use wrapping_sub.
    #[allow(clippy::cast_possible_truncation)]
    let t = (now_ns >> TICK_SHIFT) as u32;
    t
}

/// One slot (48 bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    src: u128,
    dst: u128,
    sport: u16,
    dport: u16,
    proto: u8,
    state: u8,
    /// Class index.
    pub class: u16,
    /// Flow index, or [`FLOW_BEST_EFFORT`] / [`FLOW_DROP`].
    pub flow: u32,
    last: u32,
}

impl Slot {
    /// The session's sender (inner source address).
    #[inline]
    pub fn host(&self) -> Host {
        Host {
            src: self.src,
            v6: self.state & V6 != 0,
        }
    }

    /// Refused because its class had no room (counted as waiting).
    #[inline]
    pub fn waiting(&self) -> bool {
        self.state & WAITING != 0
    }
    /// Closed: its admission is already freed.
    #[inline]
    pub fn closed(&self) -> bool {
        self.state & CLOSED != 0
    }
    /// Marks the session refused for lack of room (or not).
    #[inline]
    pub fn set_waiting(&mut self, on: bool) {
        if on {
            self.state |= WAITING;
        } else {
            self.state &= !WAITING;
        }
    }
    /// Marks the session closed (or open again).
    #[inline]
    pub fn set_closed(&mut self, on: bool) {
        if on {
            self.state |= CLOSED;
        } else {
            self.state &= !CLOSED;
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.state == 0
    }
    #[inline]
    fn holds(&self, t: &FiveTuple) -> bool {
        self.state & (OCCUPIED | V6) == (OCCUPIED | if t.v6 { V6 } else { 0 })
            && self.src == t.src
            && self.dst == t.dst
            && self.sport == t.sport
            && self.dport == t.dport
            && self.proto == t.proto
    }
    fn tuple(&self) -> FiveTuple {
        FiveTuple {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            v6: self.state & V6 != 0,
        }
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // Folded multiply: the low and high halves of the product, xored.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (p as u64, (p >> 64) as u64);
    lo ^ hi
}

/// The seeded hash of a tuple (also keys [`super::hosts::HostTable`]).
#[inline]
#[allow(clippy::cast_possible_truncation)] // splitting u128 into its u64 halves
pub(crate) fn hash(t: &FiveTuple, seed: u64) -> u64 {
    const K: [u64; 4] = [
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    let misc = u64::from(t.sport)
        | u64::from(t.dport) << 16
        | u64::from(t.proto) << 32
        | u64::from(t.v6) << 40;
    let a = fold(t.src as u64 ^ seed, (t.src >> 64) as u64 ^ K[0]);
    let b = fold(t.dst as u64 ^ K[1], (t.dst >> 64) as u64 ^ K[2]);
    fold(a ^ b ^ K[3], misc ^ seed.rotate_left(32))
}

/// The slot of hash `h` in a table of `n` slots: multiply-shift range
/// reduction (the high half of `h * n` is below `n`).
#[inline]
pub(crate) fn slot_of(h: u64, n: usize) -> usize {
    #[allow(clippy::cast_possible_truncation)]
    let i = ((u128::from(h) * n as u128) >> 64) as usize;
    i
}

/// The slot after `i` in a table of `n` slots (linear probing, wrapping).
#[inline]
pub(crate) fn next_slot(i: usize, n: usize) -> usize {
    if i + 1 == n { 0 } else { i + 1 }
}

/// Result of [`SessionTable::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The session is at this slot.
    At(usize),
    /// Absent; this empty slot is where it would go.
    Vacant(usize),
}

/// Fixed-size open-addressing session table.
#[derive(Debug)]
pub struct SessionTable {
    slots: Vec<Slot>,
    len: usize,
    capacity: usize,
    seed: u64,
    idle_ticks: u32,
    closed_ticks: u32,
    cursor: usize,
}

/// `ns` in ticks, rounded up, at most `u32::MAX / 2` (ages stay unambiguous).
fn ticks(ns: u64) -> u32 {
    u32::try_from(ns.div_ceil(1 << TICK_SHIFT))
        .unwrap_or(u32::MAX / 2)
        .min(u32::MAX / 2)
}

impl SessionTable {
    /// A table for up to `capacity` sessions (at least 1), idle timeout
    /// `idle_ns`, hash seed `seed` (pick it at random per worker so that
    /// inner addresses cannot be chosen to collide).
    pub fn new(capacity: usize, idle_ns: u64, seed: u64) -> Self {
        let capacity = capacity.max(1);
        let n = capacity + capacity / 3 + 1;
        let idle_ticks = ticks(idle_ns);
        Self {
            slots: vec![Slot::default(); n],
            len: 0,
            capacity,
            seed,
            idle_ticks,
            closed_ticks: ticks(CLOSED_LINGER_NS).min(idle_ticks),
            cursor: 0,
        }
    }

    /// Sets the idle timeout (a reload): sessions idle longer than the new
    /// timeout go at the next sweep. Allocates nothing.
    pub fn set_idle_timeout(&mut self, idle_ns: u64) {
        self.idle_ticks = ticks(idle_ns);
        self.closed_ticks = ticks(CLOSED_LINGER_NS).min(self.idle_ticks);
    }

    /// Slots (visited by one full sweep).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The idle timeout in ticks.
    pub fn idle_ticks(&self) -> u32 {
        self.idle_ticks
    }

    /// How long a closed session is kept after its FIN, in ticks
    /// ([`CLOSED_LINGER_NS`], at most the idle timeout).
    pub fn closed_ticks(&self) -> u32 {
        self.closed_ticks
    }

    /// Sessions stored (including expired ones not swept yet).
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// True when no new session fits.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }
    /// Memory held by the slots, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<Slot>()
    }

    #[inline]
    fn home(&self, t: &FiveTuple) -> usize {
        slot_of(hash(t, self.seed), self.slots.len())
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        next_slot(i, self.slots.len())
    }

    /// Looks a tuple up. Always terminates: at least `n - capacity` slots are empty.
    #[inline]
    pub fn find(&self, t: &FiveTuple) -> Found {
        let mut i = self.home(t);
        loop {
            let s = &self.slots[i];
            if s.is_empty() {
                return Found::Vacant(i);
            }
            if s.holds(t) {
                return Found::At(i);
            }
            i = self.next(i);
        }
    }

    /// Starts loading the cache lines of `t`'s home slot (a slot is 48
    /// bytes: its first and last byte, one or two lines) without waiting
    /// for them: the first pass of a batch, so that a batch's table misses
    /// overlap instead of following one another ([`Self::find`] then finds
    /// them in cache). A hint: no effect on the table.
    #[inline]
    pub fn prefetch(&self, t: &FiveTuple) {
        let s: *const Slot = &self.slots[self.home(t)];
        prefetch_read(s.cast::<u8>());
        prefetch_read(s.cast::<u8>().wrapping_add(size_of::<Slot>() - 1));
    }

    /// The slot at `i`, read only.
    #[inline]
    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// The slot at `i`.
    #[inline]
    pub fn slot_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[i]
    }

    /// True when the session at `i` has been idle longer than the timeout
    /// (a closed session: longer than [`Self::closed_ticks`]).
    #[inline]
    pub fn is_expired(&self, i: usize, now: u32) -> bool {
        let s = &self.slots[i];
        let limit = if s.closed() {
            self.closed_ticks
        } else {
            self.idle_ticks
        };
        now.wrapping_sub(s.last) > limit
    }

    /// Refreshes the session's last-seen time.
    #[inline]
    pub fn touch_at(&mut self, i: usize, now: u32) {
        self.slots[i].last = now;
    }

    /// Stores a new session in the vacant slot `i` returned by [`Self::find`]
    /// for the same tuple. Returns false (and stores nothing) when full.
    #[inline]
    pub fn insert(&mut self, i: usize, t: &FiveTuple, class: u16, flow: u32, now: u32) -> bool {
        if self.is_full() {
            return false;
        }
        self.slots[i] = Slot {
            src: t.src,
            dst: t.dst,
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
            state: OCCUPIED | if t.v6 { V6 } else { 0 },
            class,
            flow,
            last: now,
        };
        self.len += 1;
        true
    }

    /// Removes the session at `i` (occupied), shifting later members of its
    /// probe run back.
    pub fn remove(&mut self, i: usize) {
        if self.slots.get(i).is_none_or(Slot::is_empty) {
            return;
        }
        let n = self.slots.len();
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            if self.slots[j].is_empty() || j == i {
                break;
            }
            let home = self.home(&self.slots[j].tuple());
            // The entry at j may fill the hole if the hole lies on its probe path [home, j].
            if (j + n - home) % n >= (j + n - hole) % n {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }

    /// Moves the sweep cursor over up to `budget` slots from where the
    /// previous call stopped and removes the expired sessions, reporting each
    /// one's slot to `on_expire` (a slot just emptied is looked at again
    /// before moving on: a shifted entry may now occupy it; removals are
    /// bounded by the sessions stored). Returns how many were removed. Call
    /// it with budgets that add up to the table's slots within the idle
    /// timeout.
    pub fn expire(&mut self, now: u32, budget: usize, mut on_expire: impl FnMut(&Slot)) -> usize {
        let mut removed = 0;
        let mut moved = 0;
        while moved < budget {
            let i = self.cursor;
            if !self.slots[i].is_empty() && self.is_expired(i, now) {
                let s = self.slots[i];
                self.remove(i);
                on_expire(&s);
                removed += 1;
            } else {
                self.cursor = self.next(i);
                moved += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
impl SessionTable {
    /// The stored sessions (tests: invariants over the whole table).
    pub(crate) fn occupied(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(i: u32) -> FiveTuple {
        FiveTuple {
            src: u128::from(i),
            dst: 7,
            sport: 1,
            dport: 2,
            proto: 17,
            v6: false,
        }
    }

    #[test]
    fn insert_find_expire() {
        let mut s = SessionTable::new(100, 10 << 20, 1);
        for i in 0..100 {
            let Found::Vacant(at) = s.find(&t(i)) else {
                panic!("dup")
            };
            assert!(s.insert(at, &t(i), 0, 3, 0));
        }
        assert!(s.is_full());
        let Found::Vacant(at) = s.find(&t(100)) else {
            panic!("dup")
        };
        assert!(!s.insert(at, &t(100), 0, 3, 0));
        for i in 0..100 {
            assert!(matches!(s.find(&t(i)), Found::At(_)));
        }
        // Keep the odd ones alive, let the even ones expire.
        for i in (1..100).step_by(2) {
            let Found::At(at) = s.find(&t(i)) else {
                panic!("lost")
            };
            s.touch_at(at, 20);
        }
        let mut n = 0;
        let removed = s.expire(21, 10_000, |x| {
            assert_eq!(x.flow, 3);
            n += 1;
        });
        assert_eq!((removed, n, s.len()), (50, 50, 50));
        for i in 0..100 {
            assert_eq!(matches!(s.find(&t(i)), Found::At(_)), i % 2 == 1, "{i}");
        }
    }

    #[test]
    fn collisions_survive_removal() {
        // A tiny table forces long probe runs and wrap-around.
        let mut s = SessionTable::new(6, 1 << 20, 99);
        for i in 0..6 {
            let Found::Vacant(at) = s.find(&t(i)) else {
                panic!()
            };
            assert!(s.insert(at, &t(i), 0, 0, u32::from(i % 2 == 0) * 100));
        }
        // At tick 101 sessions stamped 0 have expired, those stamped 100 have not.
        assert_eq!(s.expire(101, 100, |_| {}), 3);
        for i in 0..6 {
            assert_eq!(matches!(s.find(&t(i)), Found::At(_)), i % 2 == 0, "{i}");
        }
    }
}
