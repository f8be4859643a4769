//! Packet capture from a running gateway: the mirror region
//! `<run dir>/NAME.mirror` and both of its sides.
//!
//! The gateway's ports are AF_XDP sockets (frames redirected by XDP never
//! reach AF_PACKET taps, and copy-mode transmit bypasses them too) or
//! io_uring UDP sockets, so `tcpdump` on an uplink does not see the overlay:
//! the frames are copied out by the worker itself.
//!
//! The file (mode 0600: it carries packet contents and takes requests) is
//! created by the dataplane next to `NAME.stats`; it holds
//! - a [`Request`] the reader (`mongate capture`) writes: a generation (0:
//!   off), sides, directions, the filter (peer, flow, IP protocol), a rate
//!   limit, a snap length and a deadline after which the worker stops on
//!   its own (a reader that died leaves nothing running);
//! - [`Counters`] the worker writes: the generation it follows and, for
//!   it, frames captured, dropped (ring full) and limited (over the rate);
//! - a ring of [`SLOTS`] fixed [`Slot`]s of 2 KiB on the one ring primitive
//!   (`crate::ring`): the worker produces, the reader consumes.
//!
//! The worker ([`MirrorTap`]) loads the generation once per loop iteration
//! (one relaxed atomic); while it is 0 nothing else runs. When on, each
//! frame at a capture point is matched against the [`Filter`], charged to
//! the integer [`TokenBucket`] and copied into a free slot; the hot path
//! allocates nothing and takes no lock. Only one reader at a time: it holds
//! an exclusive `flock` on the file.

pub mod pcap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pacing::TokenBucket;
use crate::ring::{Consumer, Pod, Producer, ShmRing, ShmRingError};
use crate::sys::clock::Nanos;
use crate::sys::shm::{Access, REGION_MODE, ShmFile, ShmShared, shm_path};

/// "MGMIRR01": marks a ready mirror region.
pub const MIRROR_MAGIC: u64 = u64::from_le_bytes(*b"MGMIRR01");
/// Slots of the ring.
pub const SLOTS: u32 = 512;
/// Bytes of one slot.
pub const SLOT_BYTES: usize = 2048;
/// Most bytes of a frame a slot holds (the snap length's ceiling).
pub const SNAP_MAX: usize = SLOT_BYTES - 24;
/// Filter value meaning "any" (peer, flow, protocol).
pub const ANY: u64 = u64::MAX;

/// Side bit: the LAN port.
pub const SIDE_LAN: u8 = 1;
/// Side bit: the uplinks.
pub const SIDE_WAN: u8 = 2;
/// Direction bit: received.
pub const DIR_RX: u8 = 1;
/// Direction bit: handed to the port to send.
pub const DIR_TX: u8 = 2;

/// The instance's mirror file: `<run dir>/NAME.mirror`.
pub fn mirror_path(name: &str) -> PathBuf {
    shm_path(name, "mirror")
}

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    pid: AtomicU64,
    slots: AtomicU64,
    slot_bytes: AtomicU64,
}
// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for Header {}

/// What the reader asks for. Every field but `generation` is written first;
/// `generation` is stored last (Release), the worker loads it (Acquire)
/// before the others.
#[repr(C, align(64))]
pub struct Request {
    /// 0: off; otherwise a new value per capture session.
    pub generation: AtomicU64,
    /// [`SIDE_LAN`] | [`SIDE_WAN`].
    pub sides: AtomicU64,
    /// [`DIR_RX`] | [`DIR_TX`].
    pub dirs: AtomicU64,
    /// Peer index (`Config::peers`), or [`ANY`].
    pub peer: AtomicU64,
    /// Wire flow id (`overlay::wire_flow_id`), or [`ANY`].
    pub flow: AtomicU64,
    /// IP protocol number, or [`ANY`].
    pub proto: AtomicU64,
    /// Frames per second at most (token bucket rate).
    pub max_pps: AtomicU64,
    /// Frames the bucket holds (it starts full).
    pub burst: AtomicU64,
    /// Bytes of each frame kept, at most [`SNAP_MAX`].
    pub snaplen: AtomicU64,
    /// CLOCK_MONOTONIC ns after which the worker stops by itself.
    pub deadline_ns: AtomicU64,
}
// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for Request {}

/// What the worker reports, for the generation it follows.
#[repr(C, align(64))]
pub struct Counters {
    /// The generation the worker applied (0: off).
    pub applied: AtomicU64,
    /// Frames copied into the ring.
    pub captured: AtomicU64,
    /// Frames that matched and were within the rate, but the ring was full.
    pub dropped: AtomicU64,
    /// Frames that matched but were over the rate limit.
    pub limited: AtomicU64,
}
// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for Counters {}

const REQUEST_OFF: usize = 64;
const COUNTERS_OFF: usize = REQUEST_OFF + std::mem::size_of::<Request>();
const RING_OFF: usize = COUNTERS_OFF + std::mem::size_of::<Counters>();
const _: () = assert!(std::mem::size_of::<Header>() == 64);
const _: () = assert!(RING_OFF.is_multiple_of(64));

/// One captured frame. `#[repr(C)]`, no padding: 24 bytes of header, then
/// the first `cap_len` bytes of the frame.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    /// Worker clock (CLOCK_MONOTONIC) when its batch was handled, ns.
    pub ts_ns: u64,
    /// Low 32 bits of the generation it was captured for (the reader skips
    /// slots an earlier session left behind).
    pub generation: u32,
    /// The frame's length.
    pub orig_len: u32,
    /// Bytes of it in `data`.
    pub cap_len: u32,
    /// Worker port index (0: LAN, then the uplinks).
    pub port: u16,
    /// [`SIDE_LAN`] or [`SIDE_WAN`].
    pub side: u8,
    /// [`DIR_RX`] or [`DIR_TX`].
    pub dir: u8,
    /// The frame's first bytes.
    pub data: [u8; SNAP_MAX],
}
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);
// SAFETY: `#[repr(C)]` integers and a byte array, sizes summing to the
// struct's size (asserted above): no padding, every bit pattern valid.
unsafe impl Pod for Slot {}

impl Slot {
    /// A slot holding the first `snaplen` bytes of `frame`.
    pub fn new(meta: SlotMeta, frame: &[u8], snaplen: usize) -> Self {
        let n = frame.len().min(snaplen).min(SNAP_MAX);
        let mut data = [0u8; SNAP_MAX];
        data[..n].copy_from_slice(&frame[..n]);
        Self {
            ts_ns: meta.ts_ns,
            generation: meta.generation,
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            cap_len: u32::try_from(n).unwrap_or(0),
            port: meta.port,
            side: meta.side,
            dir: meta.dir,
            data,
        }
    }

    /// The captured bytes (bounded by the slot, whatever `cap_len` says).
    pub fn bytes(&self) -> &[u8] {
        let n = usize::try_from(self.cap_len)
            .unwrap_or(SNAP_MAX)
            .min(SNAP_MAX);
        &self.data[..n]
    }
}

/// The header fields of a [`Slot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotMeta {
    /// See [`Slot::ts_ns`].
    pub ts_ns: u64,
    /// See [`Slot::generation`].
    pub generation: u32,
    /// See [`Slot::port`].
    pub port: u16,
    /// See [`Slot::side`].
    pub side: u8,
    /// See [`Slot::dir`].
    pub dir: u8,
}

/// Which frames a capture wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// [`SIDE_LAN`] | [`SIDE_WAN`].
    pub sides: u8,
    /// [`DIR_RX`] | [`DIR_TX`].
    pub dirs: u8,
    /// Peer index.
    pub peer: Option<u16>,
    /// Wire flow id.
    pub flow: Option<u32>,
    /// IP protocol of the frame's (outermost) IP header.
    pub proto: Option<u8>,
}

/// What the filter asks of a frame, found by [`MirrorTap::offer`]'s caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// The peer it comes from or goes to, if known.
    pub peer: Option<u16>,
    /// The wire flow id it belongs to, if known.
    pub flow: Option<u32>,
    /// Its IP protocol (outermost IP header), if it has one.
    pub proto: Option<u8>,
}

impl Filter {
    /// Whether frames of `side` in `dir` may match at all (checked before
    /// anything of the frame is parsed).
    #[inline]
    pub fn wants(&self, side: u8, dir: u8) -> bool {
        self.sides & side != 0 && self.dirs & dir != 0
    }

    /// Whether the frame needs parsing ([`FrameInfo`]) to be matched.
    #[inline]
    pub fn needs_info(&self) -> bool {
        self.peer.is_some() || self.flow.is_some() || self.proto.is_some()
    }

    /// Whether a frame with `info` matches: every field set in the filter
    /// must be known for the frame and equal.
    pub fn matches(&self, info: &FrameInfo) -> bool {
        fn ok<T: PartialEq>(want: Option<T>, have: Option<T>) -> bool {
            want.is_none() || want == have
        }
        ok(self.peer, info.peer) && ok(self.flow, info.flow) && ok(self.proto, info.proto)
    }

    fn from_request(r: &Request) -> Self {
        let narrow = |v: u64, bits: u8| u8::try_from(v & u64::from(bits)).unwrap_or(0);
        Self {
            sides: narrow(r.sides.load(Ordering::Relaxed), SIDE_LAN | SIDE_WAN),
            dirs: narrow(r.dirs.load(Ordering::Relaxed), DIR_RX | DIR_TX),
            peer: u16::try_from(r.peer.load(Ordering::Relaxed)).ok(),
            flow: u32::try_from(r.flow.load(Ordering::Relaxed)).ok(),
            proto: u8::try_from(r.proto.load(Ordering::Relaxed)).ok(),
        }
    }
}

/// Why the mirror region could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// I/O (no such file: no gateway of that name runs here).
    #[error("{path}: {err}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        err: std::io::Error,
    },
    /// Not a mirror region of this format.
    #[error("{0}: not a mongate mirror region of this build (bad magic or size)")]
    Format(PathBuf),
    /// The ring inside is unusable.
    #[error("{path}: {err}")]
    Ring {
        /// File.
        path: PathBuf,
        /// Error.
        err: ShmRingError,
    },
    /// Another capture holds the region.
    #[error("{0}: another capture of this gateway is running")]
    Busy(PathBuf),
}

/// The mapped mirror region (either side).
pub struct MirrorRegion {
    shm: ShmFile,
    ring: ShmRing<Slot>,
    /// The reader's lock (held while the value lives).
    _lock: Option<std::fs::File>,
}

// SAFETY: the ring's pointers point into `shm`, which lives as long as the
// value; the region is only accessed through atomics and the ring protocol,
// whose two sides are handed out once each (`producer`, `consumer`).
unsafe impl Send for MirrorRegion {}
// SAFETY: as above: shared access goes through atomics only.
unsafe impl Sync for MirrorRegion {}

/// Bytes of the region.
pub const fn region_bytes() -> usize {
    RING_OFF + ShmRing::<Slot>::bytes(SLOTS)
}

impl MirrorRegion {
    /// Creates the region at `path` (mode 0600), off, with an empty ring;
    /// removed when the value drops.
    pub fn create(path: &Path) -> Result<Self, MirrorError> {
        let io = |err| MirrorError::Io {
            path: path.to_path_buf(),
            err,
        };
        let shm = ShmFile::create(path, region_bytes(), REGION_MODE).map_err(io)?;
        // SAFETY: the mapping is page-aligned, `RING_OFF` a multiple of 64
        // and the region holds the ring's bytes (`region_bytes`); it stays
        // mapped while `shm` lives, which outlives the ring (same value);
        // nobody else sees the file before the magic below.
        let ring =
            unsafe { ShmRing::<Slot>::init(shm.base().add(RING_OFF), shm.len() - RING_OFF, SLOTS) }
                .map_err(|err| MirrorError::Ring {
                    path: path.to_path_buf(),
                    err,
                })?;
        let r = Self {
            shm,
            ring,
            _lock: None,
        };
        let h = r.header();
        h.pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        h.slots.store(u64::from(SLOTS), Ordering::Relaxed);
        h.slot_bytes.store(SLOT_BYTES as u64, Ordering::Relaxed);
        h.magic.store(MIRROR_MAGIC, Ordering::Release);
        Ok(r)
    }

    /// Opens an existing region read-write for a capture, holding an
    /// exclusive lock on it ([`MirrorError::Busy`] if another capture
    /// does).
    pub fn open(path: &Path) -> Result<Self, MirrorError> {
        use std::os::fd::AsRawFd;
        let io = |err| MirrorError::Io {
            path: path.to_path_buf(),
            err,
        };
        let (f, len) = crate::sys::shm::open_existing(path, Access::ReadWrite).map_err(io)?;
        if usize::try_from(len).ok() != Some(region_bytes()) {
            return Err(MirrorError::Format(path.to_path_buf()));
        }
        // SAFETY: a descriptor we hold open; flock has no memory arguments.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(MirrorError::Busy(path.to_path_buf()));
            }
            return Err(io(e));
        }
        let shm = ShmFile::map(&f, region_bytes(), path, Access::ReadWrite).map_err(io)?;
        let h = shm
            .get::<Header>(0)
            .ok_or_else(|| MirrorError::Format(path.to_path_buf()))?;
        if h.magic.load(Ordering::Acquire) != MIRROR_MAGIC
            || h.slots.load(Ordering::Relaxed) != u64::from(SLOTS)
            || h.slot_bytes.load(Ordering::Relaxed) != SLOT_BYTES as u64
        {
            return Err(MirrorError::Format(path.to_path_buf()));
        }
        // SAFETY: as in `create`; the ring was initialised by the dataplane
        // (its header is checked by `attach`).
        let ring = unsafe {
            ShmRing::<Slot>::attach(shm.base().add(RING_OFF), shm.len() - RING_OFF, SLOTS)
        }
        .map_err(|err| MirrorError::Ring {
            path: path.to_path_buf(),
            err,
        })?;
        Ok(Self {
            shm,
            ring,
            _lock: Some(f),
        })
    }

    fn header(&self) -> &Header {
        self.shm.get::<Header>(0).expect("header inside the region")
    }

    /// The request block.
    pub fn request(&self) -> &Request {
        self.shm
            .get::<Request>(REQUEST_OFF)
            .expect("request inside the region")
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Counters {
        self.shm
            .get::<Counters>(COUNTERS_OFF)
            .expect("counters inside the region")
    }

    /// The pid of the process that created the region.
    pub fn pid(&self) -> u64 {
        self.header().pid.load(Ordering::Relaxed)
    }

    /// The reader's side of the ring.
    ///
    /// # Safety
    /// At most one consumer exists at a time (the reader's `flock` keeps
    /// other captures out; call once per opened region).
    pub unsafe fn consumer(&self) -> Consumer<Slot> {
        // SAFETY: forwarded contract.
        unsafe { self.ring.consumer() }
    }

    /// Writes `req` and then its generation (Release): the worker applies
    /// it at its next loop iteration.
    pub fn start(&self, req: &StartRequest) {
        let r = self.request();
        let opt = |v: Option<u64>| v.unwrap_or(ANY);
        r.sides
            .store(u64::from(req.filter.sides), Ordering::Relaxed);
        r.dirs.store(u64::from(req.filter.dirs), Ordering::Relaxed);
        r.peer
            .store(opt(req.filter.peer.map(u64::from)), Ordering::Relaxed);
        r.flow
            .store(opt(req.filter.flow.map(u64::from)), Ordering::Relaxed);
        r.proto
            .store(opt(req.filter.proto.map(u64::from)), Ordering::Relaxed);
        r.max_pps.store(req.max_pps, Ordering::Relaxed);
        r.burst.store(req.burst, Ordering::Relaxed);
        r.snaplen.store(req.snaplen, Ordering::Relaxed);
        r.deadline_ns.store(req.deadline_ns, Ordering::Relaxed);
        r.generation.store(req.generation, Ordering::Release);
    }

    /// Turns the mirror off.
    pub fn stop(&self) {
        self.request().generation.store(0, Ordering::Release);
    }
}

/// A capture session's request ([`MirrorRegion::start`]).
#[derive(Clone, Copy, Debug)]
pub struct StartRequest {
    /// Nonzero, new per session.
    pub generation: u64,
    /// Which frames.
    pub filter: Filter,
    /// Rate limit, frames/s.
    pub max_pps: u64,
    /// Bucket depth, frames.
    pub burst: u64,
    /// Bytes kept per frame.
    pub snaplen: u64,
    /// CLOCK_MONOTONIC deadline.
    pub deadline_ns: Nanos,
}

/// The worker's side: applies requests, filters, limits and copies frames.
pub struct MirrorTap {
    region: std::sync::Arc<MirrorRegion>,
    ring: Producer<Slot>,
    generation: u64,
    on: bool,
    filter: Filter,
    snaplen: usize,
    deadline: Nanos,
    bucket: TokenBucket,
    captured: u64,
    dropped: u64,
    limited: u64,
    dirty: bool,
}

impl MirrorTap {
    /// The tap over `region` (the one producer of its ring).
    pub fn new(region: std::sync::Arc<MirrorRegion>) -> Self {
        // SAFETY: the dataplane makes one tap per region (one worker), the
        // only producer of the ring.
        let ring = unsafe { region.ring.producer() };
        Self {
            region,
            ring,
            generation: 0,
            on: false,
            filter: Filter {
                sides: 0,
                dirs: 0,
                peer: None,
                flow: None,
                proto: None,
            },
            snaplen: 0,
            deadline: 0,
            bucket: TokenBucket::new(0, 0, 0),
            captured: 0,
            dropped: 0,
            limited: 0,
            dirty: false,
        }
    }

    /// Once per worker loop iteration: one relaxed load of the request's
    /// generation; a new one is applied (counters reset), the deadline
    /// turns the mirror off.
    #[inline]
    pub fn sync(&mut self, now: Nanos) {
        let g = self.region.request().generation.load(Ordering::Relaxed);
        if g != self.generation {
            self.apply(now);
        } else if self.on && now >= self.deadline {
            self.on = false;
            self.publish();
        }
    }

    #[cold]
    fn apply(&mut self, now: Nanos) {
        let r = self.region.request();
        // Pairs with the reader's Release store of the generation: the
        // fields it wrote before are visible below.
        let g2 = r.generation.load(Ordering::Acquire);
        self.generation = g2;
        self.on = g2 != 0;
        if self.on {
            self.filter = Filter::from_request(r);
            self.snaplen = usize::try_from(r.snaplen.load(Ordering::Relaxed))
                .unwrap_or(SNAP_MAX)
                .clamp(1, SNAP_MAX);
            self.deadline = r.deadline_ns.load(Ordering::Relaxed);
            let rate = r.max_pps.load(Ordering::Relaxed);
            let burst = r.burst.load(Ordering::Relaxed).max(1);
            self.bucket = TokenBucket::new(rate, burst, now);
            self.captured = 0;
            self.dropped = 0;
            self.limited = 0;
        }
        self.publish();
    }

    /// Whether captures run (a local flag: no shared memory read).
    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// The filter in force.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Offers one frame of `side` in `dir` on worker port `port`; `info`
    /// is asked only when the filter needs it.
    #[inline]
    pub fn offer(
        &mut self,
        now: Nanos,
        port: u16,
        (side, dir): (u8, u8),
        frame: &[u8],
        info: impl FnOnce() -> FrameInfo,
    ) {
        if !self.on || !self.filter.wants(side, dir) {
            return;
        }
        if self.filter.needs_info() && !self.filter.matches(&info()) {
            return;
        }
        self.dirty = true;
        if !self.bucket.try_consume(1, now) {
            self.limited += 1;
            return;
        }
        let meta = SlotMeta {
            ts_ns: now,
            generation: gen32(self.generation),
            port,
            side,
            dir,
        };
        if self.ring.push(Slot::new(meta, frame, self.snaplen)) {
            self.captured += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// After a batch: publishes the slots written and the counters.
    #[inline]
    pub fn finish(&mut self) {
        if self.dirty {
            self.ring.publish();
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.dirty = false;
        let c = self.region.counters();
        c.captured.store(self.captured, Ordering::Relaxed);
        c.dropped.store(self.dropped, Ordering::Relaxed);
        c.limited.store(self.limited, Ordering::Relaxed);
        // Last: a reader that sees its generation here sees its counters.
        let applied = if self.on { self.generation } else { 0 };
        c.applied.store(applied, Ordering::Release);
    }
}

/// The generation as a slot carries it.
pub fn gen32(g: u64) -> u32 {
    u32::try_from(g & u64::from(u32::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
