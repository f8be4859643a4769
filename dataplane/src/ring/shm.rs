//! A ring laid out in a shared-memory region (control <-> dataplane): a
//! validated header followed by the slots.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::cursor::{Consumer, Pod, Producer, RingPtrs};

/// "MGRING01": marks an initialised ring header.
pub const SHM_RING_MAGIC: u64 = u64::from_le_bytes(*b"MGRING01");

/// One cache line of 64 bytes holding an index, so producer and consumer never
/// share a line.
#[repr(C, align(64))]
struct Line {
    v: AtomicU32,
    _pad: [u32; 15],
}

/// The header at the start of a shared-memory ring. `#[repr(C)]`, fixed size
/// (192 bytes), followed by `size` slots of `slot_size` bytes.
#[repr(C, align(64))]
pub struct ShmRingHeader {
    magic: AtomicU64,
    slot_size: AtomicU32,
    size: AtomicU32,
    _pad: [u64; 6],
    producer: Line,
    consumer: Line,
}

const _: () = assert!(std::mem::size_of::<ShmRingHeader>() == 192);

/// Why a shared-memory ring could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShmRingError {
    /// The region is smaller than the header plus the slots, or misaligned.
    #[error("shm ring: region too small or misaligned")]
    Region,
    /// No valid magic: not initialised, or overwritten.
    #[error("shm ring: bad magic (not initialised or corrupted)")]
    Magic,
    /// The slot size or count does not match what this side expects.
    #[error("shm ring: geometry mismatch (slot size or count)")]
    Geometry,
}

/// A ring inside a shared mapping, to be split into its producer or consumer.
pub struct ShmRing<T: Pod> {
    ptrs: RingPtrs<T>,
}

impl<T: Pod> ShmRing<T> {
    /// Bytes needed for a ring of `size` slots.
    pub const fn bytes(size: u32) -> usize {
        std::mem::size_of::<ShmRingHeader>() + size as usize * std::mem::size_of::<T>()
    }

    /// Initialises a new, empty ring of `size` slots at `base` (zeroing the
    /// indices, then writing the magic last with Release).
    ///
    /// # Safety
    /// `base` points to `len` writable bytes, 64-byte aligned, that stay mapped
    /// while any `Producer`/`Consumer` made from the result lives, and no
    /// other party uses the ring during initialisation.
    pub unsafe fn init(base: NonNull<u8>, len: usize, size: u32) -> Result<Self, ShmRingError> {
        if size == 0 || !size.is_power_of_two() {
            return Err(ShmRingError::Geometry);
        }
        if len < Self::bytes(size) || base.as_ptr().align_offset(64) != 0 {
            return Err(ShmRingError::Region);
        }
        let h = base.cast::<ShmRingHeader>();
        // SAFETY: region checked above; exclusive during init (contract).
        let hr = unsafe { h.as_ref() };
        hr.magic.store(0, Ordering::Relaxed);
        hr.slot_size.store(
            u32::try_from(std::mem::size_of::<T>()).map_err(|_| ShmRingError::Geometry)?,
            Ordering::Relaxed,
        );
        hr.size.store(size, Ordering::Relaxed);
        hr.producer.v.store(0, Ordering::Relaxed);
        hr.consumer.v.store(0, Ordering::Relaxed);
        hr.magic.store(SHM_RING_MAGIC, Ordering::Release);
        // SAFETY: forwarded contract; the ring was just initialised.
        unsafe { Self::attach(base, len, size) }
    }

    /// Attaches to a ring initialised by another party, checking the header.
    ///
    /// # Safety
    /// As [`Self::init`], except that the ring is already initialised and the
    /// other party may be using it.
    pub unsafe fn attach(base: NonNull<u8>, len: usize, size: u32) -> Result<Self, ShmRingError> {
        if len < std::mem::size_of::<ShmRingHeader>() || base.as_ptr().align_offset(64) != 0 {
            return Err(ShmRingError::Region);
        }
        let h = base.cast::<ShmRingHeader>();
        // SAFETY: at least a header's worth of aligned bytes, checked above.
        let hr = unsafe { h.as_ref() };
        if hr.magic.load(Ordering::Acquire) != SHM_RING_MAGIC {
            return Err(ShmRingError::Magic);
        }
        let slot_ok = usize::try_from(hr.slot_size.load(Ordering::Relaxed)).ok()
            == Some(std::mem::size_of::<T>());
        if !slot_ok
            || hr.size.load(Ordering::Relaxed) != size
            || size == 0
            || !size.is_power_of_two()
        {
            return Err(ShmRingError::Geometry);
        }
        if len < Self::bytes(size) {
            return Err(ShmRingError::Region);
        }
        // SAFETY: `h` is a valid header; `slots` follow it inside the region.
        let slots = unsafe { base.add(std::mem::size_of::<ShmRingHeader>()) }.cast::<T>();
        let ptrs = RingPtrs {
            producer: NonNull::from(&hr.producer.v),
            consumer: NonNull::from(&hr.consumer.v),
            flags: None,
            slots,
            size,
        };
        Ok(Self { ptrs })
    }

    /// The producing side.
    ///
    /// # Safety
    /// At most one producer of this ring exists at a time, across all processes.
    pub unsafe fn producer(&self) -> Producer<T> {
        // SAFETY: geometry validated in init/attach; uniqueness by contract.
        unsafe { Producer::new(self.ptrs) }.expect("validated geometry")
    }

    /// The consuming side.
    ///
    /// # Safety
    /// At most one consumer of this ring exists at a time, across all processes.
    pub unsafe fn consumer(&self) -> Consumer<T> {
        // SAFETY: as in `producer`.
        unsafe { Consumer::new(self.ptrs) }.expect("validated geometry")
    }
}
