//! The provided-buffer ring (IORING_REGISTER_PBUF_RING) memory: `entries`
//! descriptors of 16 bytes in one page-aligned anonymous mapping, shared with
//! the kernel. The application produces at the tail (stored in the `resv`
//! field of entry 0); the kernel consumes at a head it keeps to itself.
//!
//! Registration and unregistration are done by the port, which guarantees the
//! ring is unregistered before this memory is unmapped.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::sys::mmap::Mmap;

/// The mapped buffer ring.
pub(crate) struct BufRing {
    /// The port unregisters the ring (or closes the io_uring) before this
    /// unmaps.
    map: Mmap,
    mask: u16,
    /// Local copy of the tail: entries pushed, published with [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    /// Maps a ring of `entries` descriptors (a power of two in 1..=32768).
    pub(crate) fn new(entries: u16) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two <= 32768",
            ));
        }
        let bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let map = Mmap::anonymous(bytes, false)?;
        // Fresh anonymous memory is zeroed: tail = 0, matching `tail` below.
        Ok(Self {
            map,
            mask: entries - 1,
            tail: 0,
        })
    }

    /// Address to register with the kernel.
    pub(crate) fn addr(&self) -> u64 {
        self.map.base().as_ptr() as u64
    }

    /// The first entry (the mapping is page-aligned, so entries are aligned).
    fn base(&self) -> NonNull<BufRingEntry> {
        self.map.base().cast::<BufRingEntry>()
    }

    /// Writes one descriptor at the local tail (not yet visible to the kernel).
    /// The caller keeps at most `entries` descriptors outstanding.
    #[inline]
    pub(crate) fn push(&mut self, addr: u64, len: u32, bid: u16) {
        let idx = usize::from(self.tail & self.mask);
        // SAFETY: idx < entries, so the entry lies inside the mapping. The kernel
        // only reads entries between its head and the published tail, and the
        // caller never has more than `entries` outstanding, so this slot is not
        // being read. The setters write addr/len/bid only, never `resv` (which
        // for entry 0 is the shared tail).
        unsafe {
            let e = &mut *self.base().as_ptr().add(idx);
            e.set_addr(addr);
            e.set_len(len);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every pushed descriptor to the kernel (release store of the tail).
    #[inline]
    pub(crate) fn publish(&self) {
        // SAFETY: `base` is the first entry of a live, page-aligned ring, as
        // `BufRingEntry::tail` requires; the tail is a naturally aligned u16 that
        // the kernel reads atomically, so an AtomicU16 view of it is valid.
        unsafe {
            let tail = BufRingEntry::tail(self.base().as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}
