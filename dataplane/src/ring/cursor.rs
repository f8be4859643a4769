use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Plain data that may be copied in and out of shared memory: every bit
/// pattern is a valid value, no padding is read uninitialised, no pointers.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers (and arrays of them)
/// with no padding bytes, for which any bit pattern is a valid value.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: integers: any bit pattern is valid, no padding.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}

/// A ring's other side broke the protocol (an index claims more than `size`
/// slots): the caller should count it and refuse to use the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The shared indices are inconsistent.
    Corrupt,
}

/// The raw parts of a ring: where its indices and slots live.
#[derive(Clone, Copy, Debug)]
pub struct RingPtrs<T> {
    /// The producer index.
    pub producer: NonNull<AtomicU32>,
    /// The consumer index.
    pub consumer: NonNull<AtomicU32>,
    /// Optional flags word (AF_XDP's `XDP_RING_NEED_WAKEUP`).
    pub flags: Option<NonNull<AtomicU32>>,
    /// First slot.
    pub slots: NonNull<T>,
    /// Number of slots, a power of two.
    pub size: u32,
}

struct Raw<T> {
    p: RingPtrs<T>,
    mask: u32,
}

impl<T: Pod> Raw<T> {
    /// # Safety
    /// See [`Producer::new`].
    unsafe fn new(p: RingPtrs<T>) -> Option<Self> {
        if p.size == 0 || !p.size.is_power_of_two() {
            return None;
        }
        Some(Self {
            p,
            mask: p.size - 1,
        })
    }
    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: `new`'s contract: the index outlives the ring and is only
        // accessed atomically.
        unsafe { self.p.producer.as_ref() }
    }
    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { self.p.consumer.as_ref() }
    }
    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size`, and `slots` points to `size` slots.
        unsafe { self.p.slots.as_ptr().add((idx & self.mask) as usize) }
    }
    fn flags(&self) -> u32 {
        match self.p.flags {
            // SAFETY: as in `producer`.
            Some(f) => unsafe { f.as_ref() }.load(Ordering::Acquire),
            None => 0,
        }
    }
}

/// The producing side of a ring: writes slots, then publishes them.
pub struct Producer<T: Pod> {
    raw: Raw<T>,
    /// Our producer index (published or reserved).
    head: u32,
    /// Cached consumer index + size: we may write up to here.
    limit: u32,
    /// Reserved but not yet published.
    reserved: u32,
}

// SAFETY: a producer is the unique owner of its side of the ring; moving it to
// another thread moves that ownership (the memory it points to is shared with
// the consumer only through atomics and the slot protocol).
unsafe impl<T: Pod> Send for Producer<T> {}

impl<T: Pod> Producer<T> {
    /// A producer over `p`.
    ///
    /// # Safety
    /// - `producer`, `consumer`, `flags` and the `size` slots are valid,
    ///   suitably aligned and stay mapped for the life of the returned value;
    /// - no other producer of this ring exists (one writer of `producer` and of
    ///   the unpublished slots);
    /// - the other side accesses the indices only atomically.
    pub unsafe fn new(p: RingPtrs<T>) -> Option<Self> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(p) }?;
        let head = raw.producer().load(Ordering::Relaxed);
        let limit = raw.consumer().load(Ordering::Acquire).wrapping_add(p.size);
        Some(Self {
            raw,
            head,
            limit,
            reserved: 0,
        })
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.raw.p.size
    }

    /// Free slots, refreshing the consumer index only if fewer than `want`
    /// are known to be free. Errors if the consumer claims to have read
    /// slots that were never produced.
    #[inline]
    pub fn free(&mut self, want: u32) -> Result<u32, RingError> {
        let mut free = self
            .limit
            .wrapping_sub(self.head.wrapping_add(self.reserved));
        if free < want {
            let cons = self.raw.consumer().load(Ordering::Acquire);
            // consumer may not be ahead of what we published.
            if self.head.wrapping_sub(cons) > self.raw.p.size {
                return Err(RingError::Corrupt);
            }
            self.limit = cons.wrapping_add(self.raw.p.size);
            free = self
                .limit
                .wrapping_sub(self.head.wrapping_add(self.reserved));
        }
        Ok(free)
    }

    /// The index of the next free slot (not reserved yet), refreshing the
    /// consumer index only when none is known free; `None` when full.
    #[inline]
    fn next_free(&mut self) -> Option<u32> {
        if self
            .limit
            .wrapping_sub(self.head.wrapping_add(self.reserved))
            == 0
            && self.free(1).unwrap_or(0) == 0
        {
            return None;
        }
        Some(self.head.wrapping_add(self.reserved))
    }

    /// Writes `v` into the next free slot (reserving it). Returns false when
    /// the ring is full. Nothing is visible to the consumer before [`Self::publish`].
    #[inline]
    pub fn push(&mut self, v: T) -> bool {
        let Some(idx) = self.next_free() else {
            return false;
        };
        // SAFETY: the slot lies in [head, limit): free, owned by us until published.
        unsafe { self.raw.slot(idx).write_volatile(v) };
        self.reserved += 1;
        true
    }

    /// Fills the next free slot in place (reserving it): for slots too large
    /// to copy twice (`push` builds the value, then writes it volatile, a
    /// word at a time). Returns false, without calling `f`, when the ring
    /// is full. Only for rings whose other side is a thread of this
    /// process or another process, not the kernel (it reads the slot only
    /// after the Release of [`Self::publish`], as for `push`).
    #[inline]
    pub fn push_with(&mut self, f: impl FnOnce(&mut T)) -> bool {
        let Some(idx) = self.next_free() else {
            return false;
        };
        // SAFETY: the slot lies in [head, limit): free, owned by us until
        // published; the consumer reads it only after the Release store of
        // `publish`; no other reference to it exists while `f` runs. Every
        // bit pattern is a valid `T` (Pod), whatever the slot held.
        f(unsafe { &mut *self.raw.slot(idx) });
        self.reserved += 1;
        true
    }

    /// Makes every pushed slot visible to the consumer (one Release store).
    #[inline]
    pub fn publish(&mut self) {
        if self.reserved > 0 {
            self.head = self.head.wrapping_add(self.reserved);
            self.reserved = 0;
            self.raw.producer().store(self.head, Ordering::Release);
        }
    }

    /// Whether the other side asked to be woken (AF_XDP need_wakeup).
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.raw.flags() & 1 != 0
    }

    /// Slots published and not yet consumed, as far as we know (for tests and stats).
    pub fn in_flight(&self) -> u32 {
        self.head
            .wrapping_sub(self.limit.wrapping_sub(self.raw.p.size))
    }
}

/// The consuming side of a ring: reads published slots, then releases them.
pub struct Consumer<T: Pod> {
    raw: Raw<T>,
    /// Our consumer index (released).
    tail: u32,
    /// Cached producer index.
    avail_end: u32,
    /// Read but not yet released.
    taken: u32,
    _t: PhantomData<T>,
}

// SAFETY: as for `Producer`.
unsafe impl<T: Pod> Send for Consumer<T> {}

impl<T: Pod> Consumer<T> {
    /// A consumer over `p`.
    ///
    /// # Safety
    /// As [`Producer::new`], with "consumer" for "producer".
    pub unsafe fn new(p: RingPtrs<T>) -> Option<Self> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(p) }?;
        let tail = raw.consumer().load(Ordering::Relaxed);
        let avail_end = raw.producer().load(Ordering::Acquire);
        Some(Self {
            raw,
            tail,
            avail_end,
            taken: 0,
            _t: PhantomData,
        })
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.raw.p.size
    }

    /// Published slots not yet read, refreshing the producer index when fewer
    /// than `want` are known.
    #[inline]
    pub fn available(&mut self, want: u32) -> Result<u32, RingError> {
        let pos = self.tail.wrapping_add(self.taken);
        let mut n = self.avail_end.wrapping_sub(pos);
        if n < want {
            let prod = self.raw.producer().load(Ordering::Acquire);
            if prod.wrapping_sub(self.tail) > self.raw.p.size {
                return Err(RingError::Corrupt);
            }
            self.avail_end = prod;
            n = prod.wrapping_sub(pos);
        }
        Ok(n)
    }

    /// The index of the next published slot not read yet, refreshing the
    /// producer index only when none is known; `None` when empty (or
    /// corrupt).
    #[inline]
    fn next_published(&mut self) -> Option<u32> {
        let pos = self.tail.wrapping_add(self.taken);
        if self.avail_end == pos && self.available(1).unwrap_or(0) == 0 {
            return None;
        }
        Some(pos)
    }

    /// Reads the next published slot, or `None` when empty (or corrupt).
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let pos = self.next_published()?;
        // SAFETY: pos lies in [tail, producer): published by the producer
        // (Acquire above) and not released by us, so the producer won't touch it.
        let v = unsafe { self.raw.slot(pos).read_volatile() };
        self.taken += 1;
        Some(v)
    }

    /// Reads the next published slot in place with `f` (the counterpart of
    /// [`Producer::push_with`]); `None`, without calling `f`, when empty.
    #[inline]
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let pos = self.next_published()?;
        // SAFETY: pos lies in [tail, producer): published by the producer
        // (Acquire above) and not released by us, so the producer does not
        // write it while `f` reads it; a Pod slot is valid whatever its bits.
        let r = f(unsafe { &*self.raw.slot(pos) });
        self.taken += 1;
        Some(r)
    }

    /// Gives every popped slot back to the producer (one Release store).
    #[inline]
    pub fn release(&mut self) {
        if self.taken > 0 {
            self.tail = self.tail.wrapping_add(self.taken);
            self.taken = 0;
            self.raw.consumer().store(self.tail, Ordering::Release);
        }
    }

    /// Whether the other side asked to be woken.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.raw.flags() & 1 != 0
    }
}
