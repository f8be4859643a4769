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
//! - per worker, [`Counters`] it writes: the generation it follows and,
//!   for it, frames captured, dropped (ring full) and limited (over the
//!   rate);
//! - per worker, a ring of [`SLOTS`] fixed [`Slot`]s of 2 KiB on the one
//!   ring primitive (`crate::ring`): the worker produces, the reader
//!   consumes. One ring per worker keeps every ring single-producer: the
//!   workers never share a cache line for a capture.
//!
//! The worker ([`MirrorTap`]) loads the generation once per loop iteration
//! (one relaxed atomic); while it is 0 nothing else runs. When on, each
//! frame at a capture point is matched against the [`Filter`], charged to
//! the integer [`TokenBucket`] and copied into a free slot; the hot path
//! allocates nothing and takes no lock. Each worker's bucket holds its
//! share of the rate (the request's rate and burst divided by the worker
//! count, at least 1), so the gateway as a whole copies at most the rate
//! asked for. Only one reader at a time: it holds an exclusive `flock` on
//! the file.
//!
//! The reader ([`Merge`]) drains every ring and hands out the frames in
//! timestamp order: each ring is in order (a worker's clock only moves
//! forward), so a frame is handed out once no ring can still bring an
//! earlier one: every ring has shown a frame as late, or the frame is older
//! than [`REORDER_WINDOW_NS`] (a worker publishes its slots at the end of
//! the batch they were taken in, well within it; a worker stalled longer
//! between the two may have its frames written out of order).

pub mod pcap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pacing::TokenBucket;
use crate::ring::{Consumer, Pod, Producer, ShmRing, ShmRingError};
use crate::sys::clock::Nanos;
use crate::sys::shm::{Access, REGION_MODE, ShmFile, ShmShared, shm_path};

/// "MGMIRR02": marks a ready mirror region of this format (02: a ring and
/// counters per worker; 01 had one of each).
pub const MIRROR_MAGIC: u64 = u64::from_le_bytes(*b"MGMIRR02");
/// Most workers a region serves (as the stats files).
pub const MAX_WORKERS: usize = crate::stats::MAX_WORKERS;
/// How long the reader holds a frame back for an earlier one from another
/// worker's ring, ns (see the module documentation).
pub const REORDER_WINDOW_NS: u64 = 100_000_000;
/// Slots of each worker's ring.
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
    /// Workers, each with its counters and ring.
    workers: AtomicU64,
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
const COUNTERS_BYTES: usize = std::mem::size_of::<Counters>();
const RING_BYTES: usize = ShmRing::<Slot>::bytes(SLOTS);
const _: () = assert!(std::mem::size_of::<Header>() == 64);
const _: () = assert!(COUNTERS_OFF.is_multiple_of(64) && COUNTERS_BYTES == 64);
const _: () = assert!(RING_BYTES.is_multiple_of(64));

/// Where the rings start in a region of `workers` workers.
const fn ring_off(workers: usize) -> usize {
    COUNTERS_OFF + workers * COUNTERS_BYTES
}

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
        let mut s = Self {
            ts_ns: 0,
            generation: 0,
            orig_len: 0,
            cap_len: 0,
            port: 0,
            side: 0,
            dir: 0,
            data: [0u8; SNAP_MAX],
        };
        s.fill(meta, frame, snaplen);
        s
    }

    /// Makes this slot hold the first `snaplen` bytes of `frame` (the bytes
    /// after them are left as they were: [`Slot::bytes`] ends at
    /// `cap_len`). In place in a ring's slot: no 2 KiB copies.
    #[inline]
    pub fn fill(&mut self, meta: SlotMeta, frame: &[u8], snaplen: usize) {
        let n = frame.len().min(snaplen).min(SNAP_MAX);
        self.data[..n].copy_from_slice(&frame[..n]);
        self.ts_ns = meta.ts_ns;
        self.generation = meta.generation;
        self.orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.cap_len = u32::try_from(n).unwrap_or(0);
        self.port = meta.port;
        self.side = meta.side;
        self.dir = meta.dir;
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
    /// A mirror region of another format version.
    #[error(
        "{path}: format {found}, this program reads {want}: the dataplane and this program come from different mongate builds (run the matching `mongate capture`)"
    )]
    Version {
        /// File.
        path: PathBuf,
        /// The region's format (its magic).
        found: String,
        /// The format this program reads.
        want: String,
    },
    /// A worker count the region cannot serve.
    #[error("mirror region: 1..={MAX_WORKERS} workers (asked for {0})")]
    Workers(usize),
    /// A tap for a worker the region has no ring for.
    #[error("mirror region: no worker {worker} (it serves {workers})")]
    NoWorker {
        /// The worker asked for.
        worker: usize,
        /// Workers the region serves.
        workers: usize,
    },
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
    /// One per worker.
    rings: Vec<ShmRing<Slot>>,
    /// The reader's lock (held while the value lives).
    _lock: Option<std::fs::File>,
}

// SAFETY: the rings' pointers point into `shm`, which lives as long as the
// value; the region is only accessed through atomics and the ring protocol,
// whose two sides are handed out once each per ring (a worker's
// `MirrorTap`, the reader's `merge`).
unsafe impl Send for MirrorRegion {}
// SAFETY: as above: shared access goes through atomics only.
unsafe impl Sync for MirrorRegion {}

/// Bytes of the region for `workers` workers.
pub const fn region_bytes(workers: usize) -> usize {
    ring_off(workers) + workers * RING_BYTES
}

/// The format error for a region whose magic is another version of ours
/// ("MGMIRR" and two digits), `None` for any other magic.
fn version_error(path: &Path, found: u64) -> Option<MirrorError> {
    crate::sys::shm::other_version(found, MIRROR_MAGIC).map(|(found, want)| MirrorError::Version {
        path: path.to_path_buf(),
        found,
        want,
    })
}

impl MirrorRegion {
    /// Creates the region at `path` (mode 0600) for `workers` workers, off,
    /// with empty rings; removed when the value drops.
    pub fn create(path: &Path, workers: usize) -> Result<Self, MirrorError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(MirrorError::Workers(workers));
        }
        let io = |err| MirrorError::Io {
            path: path.to_path_buf(),
            err,
        };
        let shm = ShmFile::create(path, region_bytes(workers), REGION_MODE).map_err(io)?;
        let mut rings = Vec::with_capacity(workers);
        for w in 0..workers {
            let off = ring_off(workers) + w * RING_BYTES;
            // SAFETY: the mapping is page-aligned, `off` a multiple of 64
            // and the region holds the ring's bytes from there
            // (`region_bytes`); it stays mapped while `shm` lives, which
            // outlives the ring (same value); nobody else sees the file
            // before the magic below.
            let ring = unsafe { ShmRing::<Slot>::init(shm.base().add(off), RING_BYTES, SLOTS) }
                .map_err(|err| MirrorError::Ring {
                    path: path.to_path_buf(),
                    err,
                })?;
            rings.push(ring);
        }
        let r = Self {
            shm,
            rings,
            _lock: None,
        };
        let h = r.header();
        h.pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        h.slots.store(u64::from(SLOTS), Ordering::Relaxed);
        h.slot_bytes.store(SLOT_BYTES as u64, Ordering::Relaxed);
        h.workers.store(workers as u64, Ordering::Relaxed);
        h.magic.store(MIRROR_MAGIC, Ordering::Release);
        Ok(r)
    }

    /// Opens an existing region read-write for a capture, holding an
    /// exclusive lock on it ([`MirrorError::Busy`] if another capture
    /// does). A region of another format version is
    /// [`MirrorError::Version`].
    pub fn open(path: &Path) -> Result<Self, MirrorError> {
        use std::os::fd::AsRawFd;
        let io = |err| MirrorError::Io {
            path: path.to_path_buf(),
            err,
        };
        let bad = || MirrorError::Format(path.to_path_buf());
        let (f, len) = crate::sys::shm::open_existing(path, Access::ReadWrite).map_err(io)?;
        let len = usize::try_from(len).map_err(|_| bad())?;
        // Any length up to the largest region is mapped to read the
        // header; the geometry it gives is then checked against it.
        if len < std::mem::size_of::<Header>() || len > region_bytes(MAX_WORKERS) {
            return Err(bad());
        }
        // SAFETY: a descriptor we hold open; flock has no memory arguments.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(MirrorError::Busy(path.to_path_buf()));
            }
            return Err(io(e));
        }
        let shm = ShmFile::map(&f, len, path, Access::ReadWrite).map_err(io)?;
        let h = shm.get::<Header>(0).ok_or_else(bad)?;
        let magic = h.magic.load(Ordering::Acquire);
        if magic != MIRROR_MAGIC {
            return Err(version_error(path, magic).unwrap_or_else(bad));
        }
        let workers = usize::try_from(h.workers.load(Ordering::Relaxed)).unwrap_or(0);
        if h.slots.load(Ordering::Relaxed) != u64::from(SLOTS)
            || h.slot_bytes.load(Ordering::Relaxed) != SLOT_BYTES as u64
            || workers == 0
            || workers > MAX_WORKERS
            || len != region_bytes(workers)
        {
            return Err(bad());
        }
        let mut rings = Vec::with_capacity(workers);
        for w in 0..workers {
            let off = ring_off(workers) + w * RING_BYTES;
            // SAFETY: as in `create`; the ring was initialised by the
            // dataplane (its header is checked by `attach`).
            let ring = unsafe { ShmRing::<Slot>::attach(shm.base().add(off), RING_BYTES, SLOTS) }
                .map_err(|err| MirrorError::Ring {
                path: path.to_path_buf(),
                err,
            })?;
            rings.push(ring);
        }
        Ok(Self {
            shm,
            rings,
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

    /// Workers the region serves (a ring and counters each).
    pub fn workers(&self) -> usize {
        self.rings.len()
    }

    /// Worker `worker`'s counters (`None`: no such worker).
    pub fn counters(&self, worker: usize) -> Option<&Counters> {
        if worker >= self.workers() {
            return None;
        }
        self.shm
            .get::<Counters>(COUNTERS_OFF + worker * COUNTERS_BYTES)
    }

    /// Every worker's counters, in worker order.
    pub fn all_counters(&self) -> impl Iterator<Item = &Counters> {
        (0..self.workers()).filter_map(|w| self.counters(w))
    }

    /// Whether every worker follows `generation` (0: every one is off).
    pub fn applied_by_all(&self, generation: u64) -> bool {
        self.all_counters()
            .all(|c| c.applied.load(Ordering::Acquire) == generation)
    }

    /// The workers that do not follow `generation` yet.
    pub fn not_applied(&self, generation: u64) -> Vec<usize> {
        self.all_counters()
            .enumerate()
            .filter(|(_, c)| c.applied.load(Ordering::Acquire) != generation)
            .map(|(w, _)| w)
            .collect()
    }

    /// The pid of the process that created the region.
    pub fn pid(&self) -> u64 {
        self.header().pid.load(Ordering::Relaxed)
    }

    /// The reader's side of every worker's ring, merged in timestamp order,
    /// keeping the slots of generation `slot_gen` ([`gen32`]).
    ///
    /// # Safety
    /// At most one consumer of the rings exists at a time (the reader's
    /// `flock` keeps other captures out; call once per opened region).
    pub unsafe fn merge(&self, slot_gen: u32) -> Merge<'_> {
        let rings = self
            .rings
            .iter()
            // SAFETY: forwarded contract.
            .map(|r| unsafe { r.consumer() })
            .collect::<Vec<_>>();
        Merge {
            _region: self,
            last: vec![None; rings.len()],
            rings,
            pending: std::collections::BinaryHeap::new(),
            seq: 0,
            slot_gen,
            window_ns: REORDER_WINDOW_NS,
        }
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

/// One frame the reader took from a ring, waiting for its turn.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// See [`Slot::ts_ns`].
    pub ts_ns: u64,
    /// The worker whose ring it came from.
    pub worker: usize,
    /// See [`Slot::orig_len`].
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// Order taken (ties of `ts_ns` keep it).
    seq: u64,
}

impl Ord for Frame {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts_ns, self.seq).cmp(&(o.ts_ns, o.seq))
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The reader's side of every worker's ring ([`MirrorRegion::merge`]):
/// [`Merge::fill`] takes what the rings hold, [`Merge::next`] hands the
/// frames out in timestamp order (see the module documentation).
pub struct Merge<'a> {
    _region: &'a MirrorRegion,
    rings: Vec<Consumer<Slot>>,
    /// Per ring, the timestamp of the last slot of this capture taken: the
    /// ring brings nothing earlier any more.
    last: Vec<Option<u64>>,
    pending: std::collections::BinaryHeap<std::cmp::Reverse<Frame>>,
    seq: u64,
    slot_gen: u32,
    window_ns: u64,
}

impl Merge<'_> {
    /// Empties every ring without keeping anything (slots an earlier
    /// capture left behind).
    pub fn discard(&mut self) {
        for r in &mut self.rings {
            while r.pop().is_some() {}
            r.release();
        }
    }

    /// Takes what the rings hold (at most a ring's worth each), keeping the
    /// slots of this capture; returns slots taken. Call with the time read
    /// before, to [`Merge::next`] after.
    pub fn fill(&mut self) -> usize {
        let mut n = 0;
        for (w, r) in self.rings.iter_mut().enumerate() {
            for _ in 0..SLOTS {
                let Some(s) = r.pop() else { break };
                n += 1;
                if s.generation != self.slot_gen {
                    continue;
                }
                if let Some(l) = self.last.get_mut(w) {
                    *l = Some(l.map_or(s.ts_ns, |l| l.max(s.ts_ns)));
                }
                self.seq += 1;
                self.pending.push(std::cmp::Reverse(Frame {
                    ts_ns: s.ts_ns,
                    worker: w,
                    orig_len: s.orig_len,
                    data: s.bytes().to_vec(),
                    seq: self.seq,
                }));
            }
            r.release();
        }
        n
    }

    /// The earliest frame taken, once no ring can bring an earlier one:
    /// every ring has shown one as late, or it is older than the reorder
    /// window at `now` (CLOCK_MONOTONIC, read before the [`Merge::fill`]
    /// that took what the rings held). `now = u64::MAX`: everything taken,
    /// in order (the capture's end).
    pub fn next(&mut self, now: u64) -> Option<Frame> {
        let std::cmp::Reverse(top) = self.pending.peek()?;
        let seen_by_all = self
            .last
            .iter()
            .try_fold(u64::MAX, |m, l| l.map(|l| m.min(l)))
            .unwrap_or(0);
        let until = now.saturating_sub(self.window_ns).max(seen_by_all);
        if top.ts_ns > until && now != u64::MAX {
            return None;
        }
        self.pending.pop().map(|std::cmp::Reverse(f)| f)
    }

    /// Frames taken and not handed out yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The worker's side: applies requests, filters, limits and copies frames.
pub struct MirrorTap {
    region: std::sync::Arc<MirrorRegion>,
    worker: usize,
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
    /// Worker `worker`'s tap over `region` (the one producer of that
    /// worker's ring).
    pub fn new(region: std::sync::Arc<MirrorRegion>, worker: usize) -> Result<Self, MirrorError> {
        let Some(r) = region.rings.get(worker) else {
            return Err(MirrorError::NoWorker {
                worker,
                workers: region.workers(),
            });
        };
        // SAFETY: the dataplane makes one tap per worker, the only producer
        // of the worker's ring.
        let ring = unsafe { r.producer() };
        Ok(Self {
            region,
            worker,
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
        })
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
            // This worker's share of the rate and the burst.
            let n = self.region.workers().max(1) as u64;
            let rate = r.max_pps.load(Ordering::Relaxed);
            let rate = if rate == 0 { 0 } else { (rate / n).max(1) };
            let burst = (r.burst.load(Ordering::Relaxed) / n).max(1);
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
        let snaplen = self.snaplen;
        if self.ring.push_with(|s| s.fill(meta, frame, snaplen)) {
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
        let Some(c) = self.region.counters(self.worker) else {
            return;
        };
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
