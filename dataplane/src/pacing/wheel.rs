//! A timer wheel scheduling flow departures: a near wheel of one slot per
//! tick for what is due soon, hierarchical levels beyond it.
//!
//! Time is counted in ticks of `2^shift` ns (default 2^10 = 1.024 us).
//! Each flow has at most one pending time, kept in a preallocated array
//! indexed by flow id (`when`, 8 bytes a flow).
//!
//! **Slots hold arrays of flow ids, with lazy deletion** (as Carousel's
//! timing wheel, SIGCOMM 2017, keeps a slot's packets together). A slot is a
//! stack of chunks of one cache line (14 ids each) taken from a pool
//! allocated in [`TimerWheel::new`]. Scheduling writes the flow's time and
//! appends its id to the slot's top chunk; re-scheduling or cancelling only
//! rewrites the time, leaving the old id where it is: a record is *live*
//! while the flow's time still falls in its slot, and a stale one is dropped
//! when its slot is emitted. So scheduling touches the flow's own word and
//! the slot's top chunk (hot: the slot is being filled), never another
//! flow's state; and emitting a slot reads its ids a line at a time, so the
//! times of a slot's flows are loaded together (prefetched from 2^14 flow
//! ids on), not one after the other through per-flow links. The previous
//! structure, a doubly linked list per slot through per-flow entries, made
//! each re-arm write two other flows' entries and each emission a chain of
//! dependent misses (docs/benchmarks.md, "Session 34").
//!
//! A flow returned by a poll is no longer scheduled (its time is cleared),
//! so a second record of it (a flow moved away and back) finds it cleared
//! and is dropped: each schedule is returned once. When the pool runs out
//! (more stale records waiting for their slots than its headroom), the
//! wheel compacts: every slot keeps its live records only, once each. The
//! pool holds `capacity + capacity / 2 + 1024` chunks, so a compaction
//! leaves at least `capacity / 2 + 1024` free and their cost, O(pool), is
//! amortised over as many schedules; counted in [`TimerWheel::compactions`].
//!
//! **Near wheel.** A time due within `N` ticks of the wheel's current tick
//! `elapsed` (`N` = 4 slots per flow id, a power of two from 64 to 2^20)
//! goes to slot `w & (N - 1)`: one slot per tick, so it is emitted from there
//! without moving again. The next occupied slot is found through a bitmap
//! with one summary bit per word above it (find-first-set, as Eiffel's
//! bucketed queues, NSDI 2019), a few word reads whatever `N` is.
//!
//! **Far levels.** Beyond the near wheel's horizon (as in the Linux and tokio
//! wheels) a time due at tick `w` goes to the level of the highest 6-bit
//! group in which `w` and `elapsed` differ, in slot `(w >> 6L) & 63`: 11
//! levels of 64 slots, level `L` slots spanning `64^L` ticks, cover the whole
//! `u64` tick range, so no overflow list is needed. When `elapsed` reaches a
//! far slot, its live records cascade to lower levels or into the near
//! wheel (before a near slot of the same tick is emitted). O(1) amortised.
//!
//! Guarantees (property-tested against a `BinaryHeap` model):
//! - an entry scheduled for `at_ns` is returned by the first `poll(now)` with
//!   `floor(now / tick) >= ceil(at_ns / tick)`, i.e. never early, at most one
//!   tick late (when polled on time), and exactly once;
//! - entries come out in non-decreasing tick order; a poll whose output is full
//!   leaves the rest for the next poll;
//! - scheduling in the past makes the entry due at the next poll;
//! - a time within the last tick before `u64::MAX` (the last two ns with a
//!   tick of 1 ns) never falls due (so `u64::MAX` can stand for "never").

/// Bits per level.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels: 11 * 6 = 66 bits >= 64-bit ticks.
const LEVELS: usize = 11;
/// "No chunk" link.
const NIL: u32 = u32::MAX;
/// A flow's time when it is not scheduled.
const IDLE: u64 = u64::MAX;
/// Ticks from here on never fall due: a poll's tick stays below it.
const NEVER: u64 = u64::MAX - 1;
/// Locations from here on are in the hierarchical levels
/// (`FAR + level * 64 + slot`); below it, a slot of the near wheel.
const FAR: u32 = 1 << 24;
/// The near wheel's slots: from 64 up to 2^20 (see [`TimerWheel::new`]).
const NEAR_MIN_BITS: u32 = 6;
const NEAR_MAX_BITS: u32 = 20;
/// From this many flow ids on (times beyond a hundred KiB, out of the
/// nearest caches) [`TimerWheel::poll`] prefetches what it emits.
const PREFETCH_MIN_ENTRIES: usize = 1 << 14;
/// Flow ids per chunk: with its count and link, one cache line.
const CHUNK_IDS: usize = 14;

/// Part of a slot's records: a cache line of flow ids.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Chunk {
    ids: [u32; CHUNK_IDS],
    /// Ids in use, `ids[..len]`.
    len: u32,
    /// The chunk below in the slot's stack, or the next free chunk.
    next: u32,
}

/// Errors of [`TimerWheel::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WheelError {
    /// Capacity of 2^31 - 1 flows or more (its chunk pool would exceed
    /// `u32` indices).
    #[error("timer wheel: capacity {0} is over 2^31 - 2")]
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
    /// Current tick: every scheduled time is `>= elapsed`.
    elapsed: u64,
    /// The near wheel: slot `t & near_mask` holds (the top chunk of) the
    /// records due at tick `t`, for `elapsed <= t <= elapsed + near_mask`.
    near_heads: Vec<u32>,
    near_occupied: Bitmap,
    near_mask: u64,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    /// Each flow's due tick, or [`IDLE`].
    when: Vec<u64>,
    chunks: Vec<Chunk>,
    /// The first free chunk, or [`NIL`].
    free: u32,
    /// One bit per flow id, all clear between compactions (its scratch:
    /// which flows a compaction has kept already).
    kept: Vec<u64>,
    len: usize,
    compactions: u64,
}

impl TimerWheel {
    /// Default tick: 2^10 ns.
    pub const DEFAULT_SHIFT: u32 = 10;

    /// A wheel for flow ids `0..capacity`, ticks of `2^shift` ns, starting at
    /// time `now_ns`. Allocates all memory here: a time per flow id, a pool
    /// of `capacity * 3/2 + 1024` chunks of 64 bytes, and a near wheel of 4
    /// slots per flow id (rounded up to a power of two, from 64 to 2^20
    /// slots: up to 4 MiB, about a second at the default tick).
    pub fn new(capacity: usize, shift: u32, now_ns: u64) -> Result<Self, WheelError> {
        let pool = capacity.saturating_add(capacity / 2).saturating_add(1024);
        Self::with_pool(capacity, shift, now_ns, pool)
    }

    /// As [`Self::new`] with a pool of `pool` chunks (at least
    /// `capacity + 1`: a compaction then always frees one). Tests use small
    /// pools to compact often.
    fn with_pool(
        capacity: usize,
        shift: u32,
        now_ns: u64,
        pool: usize,
    ) -> Result<Self, WheelError> {
        if capacity >= NIL as usize / 2 {
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
        let pool = pool.clamp(capacity + 1, capacity + capacity / 2 + 1024);
        let chunks = (0..pool)
            .map(|i| Chunk {
                ids: [0; CHUNK_IDS],
                len: 0,
                // pool < u32::MAX (checked above): the last links to NIL.
                next: u32::try_from(i + 1)
                    .ok()
                    .filter(|&n| (n as usize) < pool)
                    .unwrap_or(NIL),
            })
            .collect();
        Ok(Self {
            shift,
            elapsed: (now_ns >> shift).min(NEVER - 1),
            near_heads: vec![NIL; near],
            near_occupied: Bitmap::new(near),
            near_mask: (near - 1) as u64,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            when: vec![IDLE; capacity],
            chunks,
            free: 0,
            kept: vec![0; capacity.div_ceil(64)],
            len: 0,
            compactions: 0,
        })
    }

    /// Number of flow ids the wheel holds.
    pub fn capacity(&self) -> usize {
        self.when.len()
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

    /// Compactions so far (the pool ran out of free chunks).
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// True when `flow` has a pending departure.
    pub fn is_scheduled(&self, flow: u32) -> bool {
        self.when.get(flow as usize).is_some_and(|&w| w != IDLE)
    }

    /// The tick `at_ns` falls due in: rounded up, so never early; at most
    /// [`NEVER`].
    #[inline]
    fn tick_of(&self, at_ns: u64) -> u64 {
        let mask = (1u64 << self.shift) - 1;
        ((at_ns >> self.shift) + u64::from(at_ns & mask != 0)).min(NEVER)
    }

    /// Schedules (or re-schedules) `flow` to depart at `at_ns`. A time in the
    /// past makes it due at the next poll. Returns false, doing nothing, if
    /// `flow` is out of range.
    #[inline]
    pub fn schedule(&mut self, flow: u32, at_ns: u64) -> bool {
        let when = self.tick_of(at_ns).max(self.elapsed);
        let Some(cur) = self.when.get_mut(flow as usize) else {
            return false;
        };
        if *cur == when {
            // Its record is where this time goes already.
            return true;
        }
        if *cur == IDLE {
            self.len += 1;
        }
        // The old record, if any, is stale from here on.
        *cur = when;
        let loc = self.loc_for(when);
        self.push(loc, flow);
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

    /// Where a record due at tick `when` goes: a near slot when it is due
    /// within the near wheel's horizon, else its level and slot as
    /// `FAR + level * 64 + slot`; the tick clamped as in `schedule`.
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

    /// Starts loading `flow`'s time (a hint for batches: scheduling it
    /// reads and writes it).
    #[inline]
    pub fn prefetch(&self, flow: u32) {
        if let Some(w) = self.when.get(flow as usize) {
            crate::sys::prefetch_read((w as *const u64).cast::<u8>());
        }
    }

    /// Removes `flow`'s pending departure. Returns whether there was one.
    pub fn cancel(&mut self, flow: u32) -> bool {
        match self.when.get_mut(flow as usize) {
            Some(w) if *w != IDLE => {
                *w = IDLE;
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    /// The earliest time (ns) at which a poll may return something, as a
    /// wake-up hint: a lower bound (a slot's records may all be stale, or a
    /// far slot may only cascade), exact when its records are live.
    pub fn next_wakeup_ns(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
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

    /// The top chunk of location `loc` (a near slot or a far level's slot).
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
    fn set_occupied(&mut self, loc: u32, on: bool) {
        if loc < FAR {
            if on {
                self.near_occupied.set(loc as usize);
            } else {
                self.near_occupied.clear(loc as usize);
            }
        } else {
            let l = (loc - FAR) as usize;
            if on {
                self.occupied[l / SLOTS] |= 1 << (l % SLOTS);
            } else {
                self.occupied[l / SLOTS] &= !(1 << (l % SLOTS));
            }
        }
    }

    /// Appends `flow`'s record to location `loc`: into its top chunk, or a
    /// new chunk on top when that one is full (compacting first if the pool
    /// has none free).
    #[inline]
    fn push(&mut self, loc: u32, flow: u32) {
        let head = *self.head_mut(loc);
        if head != NIL {
            let c = &mut self.chunks[head as usize];
            if (c.len as usize) < CHUNK_IDS {
                c.ids[c.len as usize] = flow;
                c.len += 1;
                return;
            }
        }
        if self.free == NIL {
            self.compact();
            // A compaction may have emptied this location's chunks.
            return self.push(loc, flow);
        }
        let new = self.free;
        let c = &mut self.chunks[new as usize];
        self.free = c.next;
        c.ids[0] = flow;
        c.len = 1;
        c.next = head;
        *self.head_mut(loc) = new;
        if head == NIL {
            self.set_occupied(loc, true);
        }
    }

    /// Takes the top chunk off location `loc` into the free list.
    #[inline]
    fn pop_chunk(&mut self, loc: u32) {
        let head = *self.head_mut(loc);
        let c = &mut self.chunks[head as usize];
        let below = c.next;
        c.next = self.free;
        self.free = head;
        *self.head_mut(loc) = below;
        if below == NIL {
            self.set_occupied(loc, false);
        }
    }

    /// The tick range `[start, end)` a record at location `loc` stands for
    /// (`end` saturating at `u64::MAX`).
    fn range_of(&self, loc: u32) -> (u64, u64) {
        if loc < FAR {
            let start = self.elapsed & self.near_mask;
            let ahead = u64::from(loc).wrapping_sub(start) & self.near_mask;
            let t = self.elapsed + ahead;
            return (t, t + 1);
        }
        let l = (loc - FAR) as usize;
        let (level, slot) = (l / SLOTS, l % SLOTS);
        let lshift = LEVEL_BITS as usize * level;
        let hi = lshift + LEVEL_BITS as usize;
        let base = if hi >= 64 {
            0
        } else {
            (self.elapsed >> hi) << hi
        };
        let start = base.saturating_add((slot as u64) << lshift);
        let end = if lshift >= 64 {
            u64::MAX
        } else {
            start.saturating_add(1 << lshift)
        };
        (start, end)
    }

    /// Keeps only the live records of every location, once each, packed
    /// into as few chunks as they need; frees the rest. O(pool).
    #[cold]
    #[inline(never)]
    fn compact(&mut self) {
        self.compactions += 1;
        // Far locations first (a flow live in a far slot and a near one is
        // kept in the far one, which cascades into the near one in time),
        // then the near slots through their bitmap. Allocates nothing.
        for level in 0..LEVELS {
            let mut occ = self.occupied[level];
            while occ != 0 {
                let slot = occ.trailing_zeros() as usize;
                occ &= occ - 1;
                #[allow(clippy::cast_possible_truncation)] // < 704
                self.compact_loc(FAR + (level * SLOTS + slot) as u32);
            }
        }
        let mut from = 0;
        while let Some(slot) = self.near_occupied.find_from(from) {
            #[allow(clippy::cast_possible_truncation)] // < 2^20
            self.compact_loc(slot as u32);
            from = slot + 1;
        }
        // Clear the scratch bits again (only the kept flows set them).
        for w in &mut self.kept {
            *w = 0;
        }
    }

    /// Rewrites location `loc`'s records in place, the live ones once each.
    fn compact_loc(&mut self, loc: u32) {
        let (start, end) = self.range_of(loc);
        let mut read = *self.head_mut(loc);
        // Written into the same chunks from the top one down; reading runs
        // ahead of writing, so nothing is overwritten before it is read.
        let mut write = read;
        let mut wlen = 0usize;
        while read != NIL {
            let c = self.chunks[read as usize];
            for &id in &c.ids[..c.len as usize] {
                let w = self.when[id as usize];
                let bit = 1u64 << (id % 64);
                let word = &mut self.kept[id as usize / 64];
                if w == IDLE || w < start || w >= end || *word & bit != 0 {
                    continue;
                }
                *word |= bit;
                if wlen == CHUNK_IDS {
                    #[allow(clippy::cast_possible_truncation)] // 14
                    {
                        self.chunks[write as usize].len = CHUNK_IDS as u32;
                    }
                    write = self.chunks[write as usize].next;
                    wlen = 0;
                }
                self.chunks[write as usize].ids[wlen] = id;
                wlen += 1;
            }
            read = c.next;
        }
        let head = *self.head_mut(loc);
        if wlen == 0 && write == head {
            // Nothing live: free the whole stack.
            while *self.head_mut(loc) != NIL {
                self.pop_chunk(loc);
            }
            return;
        }
        // `write` is the last chunk kept: free those below it.
        #[allow(clippy::cast_possible_truncation)] // <= 14
        {
            self.chunks[write as usize].len = wlen as u32;
        }
        let mut below = self.chunks[write as usize].next;
        self.chunks[write as usize].next = NIL;
        while below != NIL {
            let next = self.chunks[below as usize].next;
            self.chunks[below as usize].next = self.free;
            self.free = below;
            below = next;
        }
        // The kept chunks are filled from the top down, the last one maybe
        // in part: `push` appends to the top chunk only, so a part-filled
        // chunk below it stays so until its slot is emitted.
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

    /// Starts loading the top chunks of the near slots due by tick `now`
    /// (at most `max` slots), changing nothing: emitting a slot reads its
    /// chunk, then the bitmap to find the next slot, so without this pass
    /// the misses of a poll come one after the other. Returns how many
    /// slots it found due.
    fn prefetch_due(&self, now: u64, max: usize) -> usize {
        let mut skip = 0;
        for k in 0..max {
            match self.occupied_ahead(skip) {
                Some((slot, ahead)) if self.elapsed + ahead <= now => {
                    if let Some(c) = self.chunks.get(self.near_heads[slot] as usize) {
                        crate::sys::prefetch_read((c as *const Chunk).cast::<u8>());
                    }
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
            let slot = occ.trailing_zeros() as usize;
            #[allow(clippy::cast_possible_truncation)] // < 704
            let (start, _) = self.range_of(FAR + (level * SLOTS + slot) as u32);
            // Lower levels always expire before higher ones: the first
            // occupied level is the answer. Every time is >= elapsed and
            // shares elapsed's bits above its level, so occupied slots are
            // at or after elapsed's slot.
            return Some((level, slot, start.max(self.elapsed)));
        }
        None
    }

    /// Appends the flows due at `now_ns` to `out` (at most `out.len()`),
    /// returning how many. Each returned flow is no longer scheduled.
    pub fn poll(&mut self, now_ns: u64, out: &mut [u32]) -> usize {
        let now = (now_ns >> self.shift).min(NEVER - 1);
        let mut n = 0;
        if out.is_empty() {
            return 0;
        }
        let prefetch = self.when.len() >= PREFETCH_MIN_ENTRIES;
        if prefetch {
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
                #[allow(clippy::cast_possible_truncation)] // < 704
                let loc = FAR + (level * SLOTS + slot) as u32;
                let (start, end) = self.range_of(loc);
                self.elapsed = deadline;
                // Cascade the slot: its live records go to the near wheel
                // or a lower level; stale ones are dropped.
                while *self.head_mut(loc) != NIL {
                    let top = *self.head_mut(loc);
                    let c = self.chunks[top as usize];
                    self.pop_chunk(loc);
                    for &id in &c.ids[..c.len as usize] {
                        let w = self.when[id as usize];
                        if w != IDLE && w >= start && w < end {
                            let to = self.loc_for(w);
                            self.push(to, id);
                        }
                    }
                }
            } else {
                let Some((slot, tick)) = near else {
                    break;
                };
                if tick > now {
                    break;
                }
                self.elapsed = tick;
                #[allow(clippy::cast_possible_truncation)] // < 2^20
                let loc = slot as u32;
                while n < out.len() {
                    let top = self.near_heads[slot];
                    if top == NIL {
                        break;
                    }
                    if prefetch {
                        self.prefetch_chunk(top);
                    }
                    let c = &mut self.chunks[top as usize];
                    while c.len > 0 && n < out.len() {
                        c.len -= 1;
                        let id = c.ids[c.len as usize];
                        let w = &mut self.when[id as usize];
                        if *w == tick {
                            *w = IDLE;
                            self.len -= 1;
                            out[n] = id;
                            n += 1;
                        }
                    }
                    if c.len == 0 {
                        self.pop_chunk(loc);
                    }
                }
                if n == out.len() {
                    return n;
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
        n
    }

    /// Starts loading the times of chunk `c`'s flows and the chunk below
    /// it: a slot's times then arrive together.
    #[inline]
    fn prefetch_chunk(&self, c: u32) {
        let Some(c) = self.chunks.get(c as usize) else {
            return;
        };
        for &id in c.ids.iter().take(c.len as usize) {
            self.prefetch(id);
        }
        if let Some(below) = self.chunks.get(c.next as usize) {
            crate::sys::prefetch_read((below as *const Chunk).cast::<u8>());
        }
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
    fn moved_away_and_back_is_returned_once() {
        let mut w = TimerWheel::new(4, 10, 0).unwrap();
        let mut out = [0u32; 8];
        // Two records of flow 1 end up in the slot of tick 5, one of them
        // stale by the time it is read; flow 2 was cancelled.
        w.schedule(1, 5 * 1024);
        w.schedule(1, 9 * 1024);
        w.schedule(1, 5 * 1024);
        w.schedule(2, 5 * 1024);
        assert!(w.cancel(2));
        assert_eq!(w.len(), 1);
        assert_eq!(w.poll(20 * 1024, &mut out), 1);
        assert_eq!(out[0], 1);
        assert!(w.is_empty() && !w.is_scheduled(1));
        assert_eq!(w.poll(40 * 1024, &mut out), 0);
    }

    #[test]
    fn a_full_pool_compacts_and_loses_nothing() {
        // 8 flow ids, a pool of 9 chunks: re-arming the same flows at many
        // times leaves stale records behind until the pool runs out.
        let mut w = TimerWheel::with_pool(8, 10, 0, 9).unwrap();
        let mut out = [0u32; 16];
        for round in 0..200u64 {
            for f in 0..8u32 {
                // Far and near times, each in a slot of its own.
                w.schedule(f, (round * 97 + u64::from(f) * 13) % 5000 * 1024 + 1024);
            }
        }
        assert!(w.compactions() > 0, "the pool never ran out");
        assert_eq!(w.len(), 8);
        let mut seen = [0u32; 8];
        let mut now = 0;
        while now < 6000 * 1024 {
            now += 1024;
            let n = w.poll(now, &mut out);
            for &f in &out[..n] {
                seen[f as usize] += 1;
            }
        }
        assert_eq!(seen, [1; 8], "each flow returned exactly once");
        assert!(w.is_empty());
    }

    #[test]
    fn hundred_thousand_flows_keep_their_pool() {
        // Every flow re-armed 20 times ahead of its time (as the flow timers
        // are, per packet): the stale records fit the pool's headroom.
        let n = 100_000u32;
        let mut w = TimerWheel::new(n as usize, 19, 0).unwrap();
        let mut r = crate::sys::Rng::new(9);
        for k in 0..20u64 {
            for f in 0..n {
                w.schedule(f, (k + 1) * 1_000_000 + r.exp_gap_ns(1000.0) % 100_000_000);
            }
        }
        let mut out = vec![0u32; 256];
        let mut total = 0;
        let mut now = 0;
        while now < 200_000_000 {
            now += 1 << 19;
            loop {
                let k = w.poll(now, &mut out);
                total += k;
                if k < out.len() {
                    break;
                }
            }
        }
        assert_eq!(total, n as usize);
        assert!(w.is_empty());
        // 2 M records, 14 to a chunk in slots of ~10 000: within the pool.
        assert_eq!(w.compactions(), 0);
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
    fn run_model(ops: &[(u8, u32, u64)], shift: u32, pool: Option<usize>) -> TimerWheel {
        const N: u32 = 64;
        let tick = 1u64 << shift;
        let mut w = match pool {
            Some(p) => TimerWheel::with_pool(N as usize, shift, 0, p).unwrap(),
            None => TimerWheel::new(N as usize, shift, 0).unwrap(),
        };
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
        w
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
            run_model(&ops, shift, None);
        }

        /// The same with a pool of one chunk more than the flow ids: every
        /// few schedules the pool runs out and the wheel compacts.
        #[test]
        fn wheel_matches_heap_model_while_compacting(ops in proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u64>()), 1..400),
                                                     shift in 0u32..14) {
            run_model(&ops, shift, Some(65));
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
