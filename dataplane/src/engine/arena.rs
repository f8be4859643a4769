use std::cell::Cell;
use std::marker::PhantomData;

use crate::sys::mmap::Mmap;

/// Errors creating an arena.
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    /// Frame size not a power of two in 2048..=65536, or zero frames.
    #[error("arena: frame size {0} must be a power of two in 2048..=65536 and frames > 0")]
    BadGeometry(u32),
    /// mmap failed.
    #[error("arena: mmap of {bytes} bytes failed: {err}")]
    Mmap {
        /// Requested size.
        bytes: usize,
        /// OS error.
        err: std::io::Error,
    },
}

/// The frame memory of one worker: `frames` frames of `frame_size` bytes in one
/// page-aligned anonymous mapping. AF_XDP registers it as the UMEM (shared by all
/// the worker's sockets, so a frame received on one interface is sent on another
/// without a copy); io_uring hands its frames to the kernel as provided buffers.
///
/// Each frame starts with `headroom` bytes kept free for headers pushed in front
/// (encapsulation).
pub struct Arena {
    map: Mmap,
    frame_size: u32,
    frames: u32,
    headroom: u32,
    /// Sent to its worker, never shared between threads (not `Sync`).
    _not_sync: PhantomData<Cell<u8>>,
}

impl Arena {
    /// Maps `frames` frames of `frame_size` bytes, trying 2 MiB huge pages first
    /// when `hugepages` is set and falling back to normal pages.
    pub fn new(
        frames: u32,
        frame_size: u32,
        headroom: u32,
        hugepages: bool,
    ) -> Result<Self, ArenaError> {
        if frames == 0
            || !frame_size.is_power_of_two()
            || !(2048..=65536).contains(&frame_size)
            || headroom >= frame_size / 2
        {
            return Err(ArenaError::BadGeometry(frame_size));
        }
        let bytes = frames as usize * frame_size as usize;
        let map =
            Mmap::anonymous(bytes, hugepages).map_err(|err| ArenaError::Mmap { bytes, err })?;
        Ok(Self {
            map,
            frame_size,
            frames,
            headroom,
            _not_sync: PhantomData,
        })
    }

    /// Start of the mapping (for registering it with the kernel).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.base().as_ptr()
    }
    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }
    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }
    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }
    /// Headroom at the start of every frame.
    pub fn headroom(&self) -> u32 {
        self.headroom
    }
    /// The frame base address (offset) containing `addr`.
    pub fn frame_of(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// `len` bytes at `addr`, if they lie within one frame of the arena.
    #[inline]
    pub fn get(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let (off, len) = self.check(addr, len)?;
        // SAFETY: `check` proved off..off+len lies inside the mapping, which
        // lives as long as `self`; `&self` forbids concurrent `&mut` access.
        Some(unsafe { std::slice::from_raw_parts(self.map.base().as_ptr().add(off), len) })
    }

    /// `len` bytes at `addr`, mutable, if they lie within one frame.
    #[inline]
    pub fn get_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let (off, len) = self.check(addr, len)?;
        // SAFETY: as in `get`; `&mut self` makes this the only live reference.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.base().as_ptr().add(off), len) })
    }

    /// The bytes of packet `p`.
    #[inline]
    pub fn packet(&self, p: &super::Packet) -> Option<&[u8]> {
        self.get(p.addr, p.len)
    }
    /// The bytes of packet `p`, mutable.
    #[inline]
    pub fn packet_mut(&mut self, p: &super::Packet) -> Option<&mut [u8]> {
        self.get_mut(p.addr, p.len)
    }

    #[inline]
    fn check(&self, addr: u64, len: u32) -> Option<(usize, usize)> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.map.len() as u64 {
            return None;
        }
        // Must not cross a frame boundary (the kernel's aligned-mode rule).
        if len > 0 && self.frame_of(addr) != self.frame_of(end - 1) {
            return None;
        }
        Some((usize::try_from(addr).ok()?, len as usize))
    }
}

/// Free frames of one arena: a preallocated stack of frame base addresses.
/// Every frame is at all times in exactly one place: this pool, a kernel ring,
/// a batch, or a stage's queue.
pub struct FramePool {
    free: Vec<u64>,
    frame_size: u64,
}

impl FramePool {
    /// A pool holding every frame of `arena`.
    pub fn new(arena: &Arena) -> Self {
        let fs = u64::from(arena.frame_size());
        let free = (0..u64::from(arena.frames()))
            .rev()
            .map(|i| i * fs)
            .collect();
        Self {
            free,
            frame_size: fs,
        }
    }
    /// A pool over frames `first..first+count` only (a worker's share of a larger arena).
    pub fn with_range(frame_size: u32, first: u32, count: u32) -> Self {
        let fs = u64::from(frame_size);
        let free = (u64::from(first)..u64::from(first) + u64::from(count))
            .rev()
            .map(|i| i * fs)
            .collect();
        Self {
            free,
            frame_size: fs,
        }
    }
    /// Takes a free frame (its base address).
    #[inline]
    pub fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }
    /// Returns the frame containing `addr`. Capacity was reserved up front, so
    /// this never allocates.
    #[inline]
    pub fn free(&mut self, addr: u64) {
        debug_assert!(self.free.len() < self.free.capacity(), "frame freed twice");
        self.free.push(addr & !(self.frame_size - 1));
    }
    /// Free frames available.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}
