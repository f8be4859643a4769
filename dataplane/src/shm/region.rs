//! The control region: the file `<run dir>/<name>.ctl` (mode 0600, see
//! [`crate::sys::shm`]), created by the dataplane, attached by the control
//! process.
//!
//! Layout (every part 64-byte aligned):
//! - [`CtlHeader`] (128 bytes): an identity line written by the dataplane
//!   (magic, version, layout sizes, workers, dataplane pid, generation) and a
//!   control line written by the control process (heartbeat, pid, active
//!   epoch, session: bumped at every attach);
//! - one [`WorkerWords`] line per worker, written by that worker (staged and
//!   running epochs, heartbeat, refusals, ring resets);
//! - per worker, two [`ShmRing<Msg>`]: commands (control -> worker) then
//!   telemetry (worker -> control).
//!
//! The dataplane creates a new file at every start (a file of an earlier run
//! is removed first; a control process still mapping it keeps the old inode,
//! so nothing shrinks under it) with a fresh generation, and bumps the
//! generation at every repair; the control process holds an exclusive `flock`
//! on the file (one control at a time, released by the kernel if it dies) and
//! re-attaches when the generation changes or the path names another file.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::ring::{Consumer, Pod, Producer, RingError, ShmRing, ShmRingError};
use crate::sys::shm::{Access, REGION_MODE, ShmFile, file_id, open_existing, path_id, shm_path};

use super::msg::{Command, DecodeError, Msg, Telemetry};
use super::plan::epoch_newer;

// SAFETY: `Msg` is `#[repr(C)]` of u32, u32, u64, [u64; 30]: integers only,
// no padding (the two u32 fill the 8 bytes before the u64), any bit pattern valid.
unsafe impl Pod for Msg {}

/// "MGCTL001".
pub const CTL_MAGIC: u64 = u64::from_le_bytes(*b"MGCTL001");
/// Layout version (2: the control line's session word; epochs compared as
/// serial numbers; 3: path records carry `rx_recent`, their RTT in 24 bits).
pub const CTL_VERSION: u32 = 3;
/// Most workers a region describes.
pub const MAX_WORKERS: u32 = 64;
/// Most slots per ring.
pub const MAX_RING_SLOTS: u32 = 1 << 16;

#[repr(C, align(64))]
struct Ident {
    magic: AtomicU64,
    version: AtomicU32,
    header_bytes: AtomicU32,
    msg_bytes: AtomicU32,
    ring_slots: AtomicU32,
    workers: AtomicU32,
    _r: AtomicU32,
    dataplane_pid: AtomicU64,
    generation: AtomicU64,
    total_bytes: AtomicU64,
}

#[repr(C, align(64))]
struct ControlLine {
    heartbeat_ns: AtomicU64,
    control_pid: AtomicU64,
    active_epoch: AtomicU64,
    /// Bumped by every control process that attaches: a new session
    /// starts a new epoch space in every worker ([`super::PlanAssembler::on_session`]).
    session: AtomicU64,
}

/// The region header: identity (dataplane-written), control line
/// (control-written). 128 bytes.
#[repr(C)]
pub struct CtlHeader {
    ident: Ident,
    control: ControlLine,
}

const HEADER_BYTES: usize = std::mem::size_of::<CtlHeader>();
const _: () = assert!(HEADER_BYTES == 128);
/// The header size as stored in the header (a const, checked above).
const HEADER_BYTES_U32: u32 = 128;
/// The message size as stored in the header (`Msg` is 256 bytes, asserted in `msg`).
const MSG_BYTES_U32: u32 = 256;
const _: () = assert!(std::mem::size_of::<Msg>() == MSG_BYTES_U32 as usize);

/// One worker's published state, written only by that worker.
#[repr(C, align(64))]
pub struct WorkerWords {
    staged_epoch: AtomicU64,
    running_epoch: AtomicU64,
    heartbeat_ns: AtomicU64,
    refused: AtomicU64,
    ring_resets: AtomicU64,
}

const WORDS_BYTES: usize = std::mem::size_of::<WorkerWords>();
const _: () = assert!(WORDS_BYTES == 64);

/// A snapshot of a worker's published state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// Epoch of the plan staged last (0: none yet).
    pub staged_epoch: u64,
    /// Epoch of the plan running.
    pub running_epoch: u64,
    /// Worker clock (monotonic ns) at its last step.
    pub heartbeat_ns: u64,
    /// Plans and messages refused.
    pub refused: u64,
    /// Times its rings were reset after corruption.
    pub ring_resets: u64,
}

/// Region geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    workers: u32,
    slots: u32,
}

impl Layout {
    fn ring_bytes(self) -> usize {
        ShmRing::<Msg>::bytes(self.slots)
    }
    fn total(self) -> usize {
        let w = self.workers as usize;
        HEADER_BYTES + w * WORDS_BYTES + 2 * w * self.ring_bytes()
    }
    fn words_off(self, i: usize) -> usize {
        HEADER_BYTES + i * WORDS_BYTES
    }
    /// Offset of worker `i`'s command ring (`tel = false`) or telemetry ring.
    fn ring_off(self, i: usize, tel: bool) -> usize {
        HEADER_BYTES
            + self.workers as usize * WORDS_BYTES
            + (2 * i + usize::from(tel)) * self.ring_bytes()
    }
    fn valid(self) -> bool {
        (1..=MAX_WORKERS).contains(&self.workers)
            && self.slots.is_power_of_two()
            && self.slots <= MAX_RING_SLOTS
    }
}

/// Errors creating or attaching a control region.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// I/O.
    #[error("control region {path}: {err}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        err: std::io::Error,
    },
    /// Bad header: not a region, another version, inconsistent sizes, or
    /// being (re)initialised right now (retry).
    #[error("control region {0}: invalid or changing header")]
    Header(PathBuf),
    /// A ring header inside the region is invalid.
    #[error("control region {path}: ring: {err}")]
    Ring {
        /// File.
        path: PathBuf,
        /// Error.
        err: ShmRingError,
    },
    /// Another control process holds the region.
    #[error("control region {0}: another control process is attached")]
    Busy(PathBuf),
    /// Worker count or ring size out of range.
    #[error(
        "control region: 1..={MAX_WORKERS} workers, ring slots a power of two <= {MAX_RING_SLOTS}"
    )]
    Geometry,
    /// The worker's port was already taken.
    #[error("control region: worker {0} port already taken or out of range")]
    Taken(usize),
}

/// The path of the control region for an instance name.
pub fn ctl_path(name: &str) -> PathBuf {
    shm_path(name, "ctl")
}

/// The generation of a new region: the wall clock in ns, so that a region
/// created from scratch never reuses a generation a control process saw
/// before (the control also compares the file itself, see
/// [`ControlPort::check`]).
fn fresh_generation() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    wall.max(1)
}

/// A shared mapping of a region file.
struct Mapping {
    map: ShmFile,
    layout: Layout,
    /// Process-local: worker ports handed out (dataplane side).
    taken: Vec<AtomicBool>,
    /// Process-local: ring reset requested by `verify` (dataplane side).
    reset: Vec<AtomicBool>,
}

impl Mapping {
    /// `map` holds at least `layout.total()` bytes (checked by the callers).
    fn new(map: ShmFile, layout: Layout) -> Self {
        let w = layout.workers as usize;
        Self {
            map,
            layout,
            taken: (0..w).map(|_| AtomicBool::new(false)).collect(),
            reset: (0..w).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn header(&self) -> &CtlHeader {
        // SAFETY: the mapping is page-aligned and at least a header long
        // (checked before mapping); all fields are atomics.
        unsafe { self.map.base().cast::<CtlHeader>().as_ref() }
    }

    fn words(&self, i: usize) -> Option<&WorkerWords> {
        if i >= self.layout.workers as usize {
            return None;
        }
        // SAFETY: `i < workers`; the mapping holds `layout.total()` bytes
        // (checked at create/attach); the offset is 64-byte aligned.
        Some(unsafe {
            self.map
                .base()
                .add(self.layout.words_off(i))
                .cast::<WorkerWords>()
                .as_ref()
        })
    }

    fn ring_base(&self, i: usize, tel: bool) -> NonNull<u8> {
        debug_assert!(i < self.layout.workers as usize);
        // SAFETY: within the mapping: offset + ring bytes <= layout.total() <= len.
        unsafe { self.map.base().add(self.layout.ring_off(i, tel)) }
    }

    /// Attaches (validating its header) worker `i`'s ring.
    fn ring(&self, i: usize, tel: bool) -> Result<ShmRing<Msg>, ShmRingError> {
        // SAFETY: a 64-byte aligned part of the mapping, `ring_bytes` long,
        // alive as long as `self` (ports keep an `Arc<Mapping>`).
        unsafe {
            ShmRing::attach(
                self.ring_base(i, tel),
                self.layout.ring_bytes(),
                self.layout.slots,
            )
        }
    }

    /// (Re)initialises worker `i`'s ring.
    fn init_ring(&self, i: usize, tel: bool) -> Result<ShmRing<Msg>, ShmRingError> {
        // SAFETY: as in `ring`. The ring header is written through atomics
        // only; a peer still using the ring can at worst make its indices
        // inconsistent, which the ring detects (`Corrupt`).
        unsafe {
            ShmRing::init(
                self.ring_base(i, tel),
                self.layout.ring_bytes(),
                self.layout.slots,
            )
        }
    }

    fn ident_ok(&self) -> bool {
        let id = &self.header().ident;
        id.version.load(Ordering::Relaxed) == CTL_VERSION
            && id.header_bytes.load(Ordering::Relaxed) as usize == HEADER_BYTES
            && id.msg_bytes.load(Ordering::Relaxed) as usize == std::mem::size_of::<Msg>()
            && id.ring_slots.load(Ordering::Relaxed) == self.layout.slots
            && id.workers.load(Ordering::Relaxed) == self.layout.workers
            && id.total_bytes.load(Ordering::Relaxed) == self.layout.total() as u64
    }

    fn write_ident(&self) {
        let id = &self.header().ident;
        id.version.store(CTL_VERSION, Ordering::Relaxed);
        id.header_bytes.store(HEADER_BYTES_U32, Ordering::Relaxed);
        id.msg_bytes.store(MSG_BYTES_U32, Ordering::Relaxed);
        id.ring_slots.store(self.layout.slots, Ordering::Relaxed);
        id.workers.store(self.layout.workers, Ordering::Relaxed);
        id.dataplane_pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        id.total_bytes
            .store(self.layout.total() as u64, Ordering::Relaxed);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.map.is_owner() {
            // Tell an attached control process the region is gone.
            self.header().ident.magic.store(0, Ordering::Release);
        }
        // `map` removes the file (owner) and unmaps when dropped, after this.
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CtlError + '_ {
    move |err| CtlError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The dataplane's handle on its control region: creates it, hands out one
/// [`WorkerPort`] per worker, checks and repairs the header.
pub struct CtlRegion {
    map: Arc<Mapping>,
}

impl CtlRegion {
    /// Creates the region (a new file, mode 0600: a file of an earlier run
    /// is removed first, see [`ShmFile::create`]) for `workers` workers with
    /// rings of `slots` messages, the active epoch set to `active_epoch` (the
    /// plan the workers start with), a fresh generation. The file is removed
    /// when the region and every port are dropped.
    pub fn create(
        path: &Path,
        workers: u32,
        slots: u32,
        active_epoch: u64,
    ) -> Result<Self, CtlError> {
        let layout = Layout { workers, slots };
        if !layout.valid() {
            return Err(CtlError::Geometry);
        }
        let file = ShmFile::create(path, layout.total(), REGION_MODE).map_err(io(path))?;
        let map = Mapping::new(file, layout);
        let h = map.header();
        h.ident.magic.store(0, Ordering::Release);
        map.write_ident();
        h.ident
            .generation
            .store(fresh_generation(), Ordering::Relaxed);
        h.control
            .active_epoch
            .store(active_epoch, Ordering::Relaxed);
        h.control.heartbeat_ns.store(0, Ordering::Relaxed);
        h.control.control_pid.store(0, Ordering::Relaxed);
        h.control.session.store(0, Ordering::Relaxed);
        for i in 0..workers as usize {
            let w = map.words(i).ok_or(CtlError::Geometry)?;
            w.staged_epoch.store(active_epoch, Ordering::Relaxed);
            w.running_epoch.store(active_epoch, Ordering::Relaxed);
            w.heartbeat_ns.store(0, Ordering::Relaxed);
            w.refused.store(0, Ordering::Relaxed);
            w.ring_resets.store(0, Ordering::Relaxed);
            for tel in [false, true] {
                map.init_ring(i, tel).map_err(|err| CtlError::Ring {
                    path: path.to_path_buf(),
                    err,
                })?;
            }
        }
        h.ident.magic.store(CTL_MAGIC, Ordering::Release);
        Ok(Self { map: Arc::new(map) })
    }

    /// The generation (bumped at every re-creation and ring reset).
    pub fn generation(&self) -> u64 {
        self.map.header().ident.generation.load(Ordering::Acquire)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.map.layout.workers as usize
    }

    /// The control process's last heartbeat (monotonic ns; 0: never).
    pub fn control_heartbeat_ns(&self) -> u64 {
        self.map
            .header()
            .control
            .heartbeat_ns
            .load(Ordering::Acquire)
    }

    /// Whether the control process beat within `timeout_ns` of `now_ns`.
    /// The dataplane keeps its plan either way (fail-static): this is for
    /// reporting.
    pub fn control_alive(&self, now_ns: u64, timeout_ns: u64) -> bool {
        let hb = self.control_heartbeat_ns();
        hb != 0 && now_ns.saturating_sub(hb) <= timeout_ns
    }

    /// Worker `i`'s published state.
    pub fn worker_state(&self, i: usize) -> Option<WorkerState> {
        self.map.words(i).map(snapshot)
    }

    /// Worker `i`'s port (once).
    pub fn worker_port(&self, i: usize) -> Result<WorkerPort, CtlError> {
        let taken = self.map.taken.get(i).ok_or(CtlError::Taken(i))?;
        if taken.swap(true, Ordering::AcqRel) {
            return Err(CtlError::Taken(i));
        }
        let ring_err = |err| CtlError::Ring {
            path: self.map.map.path().to_path_buf(),
            err,
        };
        let cmd = self.map.ring(i, false).map_err(ring_err)?;
        let tel = self.map.ring(i, true).map_err(ring_err)?;
        // SAFETY: the dataplane side is the unique consumer of the command
        // ring and producer of the telemetry ring of worker `i` (`taken`);
        // the control side takes the other ends.
        let (cmd, tel) = unsafe { (cmd.consumer(), tel.producer()) };
        Ok(WorkerPort {
            map: self.map.clone(),
            idx: i,
            cmd,
            tel,
        })
    }

    /// Checks the header and every ring header; repairs what was overwritten
    /// (identity rewritten, rings flagged for reset by their worker) and bumps
    /// the generation so the control process re-attaches. Returns whether
    /// anything was wrong. Call it periodically (e.g. once a second).
    pub fn verify_and_repair(&self) -> bool {
        let h = self.map.header();
        let mut bad = false;
        if h.ident.magic.load(Ordering::Acquire) != CTL_MAGIC || !self.map.ident_ok() {
            h.ident.magic.store(0, Ordering::Release);
            self.map.write_ident();
            h.ident.magic.store(CTL_MAGIC, Ordering::Release);
            bad = true;
        }
        for i in 0..self.workers() {
            if self.map.ring(i, false).is_err() || self.map.ring(i, true).is_err() {
                self.map.reset[i].store(true, Ordering::Release);
                bad = true;
            }
        }
        if bad {
            h.ident.generation.fetch_add(1, Ordering::AcqRel);
        }
        bad
    }
}

fn snapshot(w: &WorkerWords) -> WorkerState {
    WorkerState {
        staged_epoch: w.staged_epoch.load(Ordering::Acquire),
        running_epoch: w.running_epoch.load(Ordering::Acquire),
        heartbeat_ns: w.heartbeat_ns.load(Ordering::Relaxed),
        refused: w.refused.load(Ordering::Relaxed),
        ring_resets: w.ring_resets.load(Ordering::Relaxed),
    }
}

/// What [`WorkerPort::recv`] found.
// The command is returned by value on purpose: boxing it would allocate per
// message on the worker's path.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Recv {
    /// Nothing published.
    Empty,
    /// A command.
    Cmd(Command),
    /// A message that did not decode (count it, drop it).
    Bad(DecodeError),
    /// The ring's indices are inconsistent: call [`WorkerPort::reset_rings`].
    Corrupt,
}

/// One worker's end of the channel: consumer of its command ring, producer
/// of its telemetry ring, writer of its [`WorkerWords`].
pub struct WorkerPort {
    map: Arc<Mapping>,
    idx: usize,
    cmd: Consumer<Msg>,
    tel: Producer<Msg>,
}

impl WorkerPort {
    /// Worker index.
    pub fn index(&self) -> usize {
        self.idx
    }

    fn words(&self) -> &WorkerWords {
        self.map.words(self.idx).expect("index checked at creation")
    }

    /// Next command (call [`Self::release`] after a batch).
    pub fn recv(&mut self) -> Recv {
        match self.cmd.available(1) {
            Err(RingError::Corrupt) => Recv::Corrupt,
            Ok(0) => Recv::Empty,
            Ok(_) => match self.cmd.pop() {
                Some(m) => match Command::decode(&m) {
                    Ok(c) => Recv::Cmd(c),
                    Err(e) => Recv::Bad(e),
                },
                None => Recv::Empty,
            },
        }
    }

    /// Gives the slots read back to the control process.
    pub fn release(&mut self) {
        self.cmd.release();
    }

    /// Queues telemetry (visible after [`Self::flush`]); false when the ring
    /// is full or corrupt (the message is dropped: telemetry is lossy).
    pub fn send(&mut self, t: &Telemetry) -> bool {
        self.tel.push(t.encode())
    }

    /// Publishes queued telemetry.
    pub fn flush(&mut self) {
        self.tel.publish();
    }

    /// Whether the telemetry ring's indices are inconsistent.
    pub fn telemetry_corrupt(&mut self) -> bool {
        self.tel.free(self.tel.size()).is_err()
    }

    /// The shared active-epoch word (Acquire).
    pub fn active_epoch(&self) -> u64 {
        self.map
            .header()
            .control
            .active_epoch
            .load(Ordering::Acquire)
    }

    /// The control process's last heartbeat (0: never).
    pub fn control_heartbeat_ns(&self) -> u64 {
        self.map
            .header()
            .control
            .heartbeat_ns
            .load(Ordering::Acquire)
    }

    /// The control session word (bumped at every attach).
    pub fn control_session(&self) -> u64 {
        self.map.header().control.session.load(Ordering::Acquire)
    }

    /// Publishes the staged epoch (the control process's acknowledgement).
    pub fn set_staged(&self, epoch: u64) {
        self.words().staged_epoch.store(epoch, Ordering::Release);
    }

    /// Publishes the running epoch.
    pub fn set_running(&self, epoch: u64) {
        self.words().running_epoch.store(epoch, Ordering::Release);
    }

    /// Publishes the heartbeat and the refusal count.
    pub fn beat(&self, now_ns: u64, refused: u64) {
        let w = self.words();
        w.heartbeat_ns.store(now_ns, Ordering::Relaxed);
        w.refused.store(refused, Ordering::Relaxed);
    }

    /// Publishes both epochs again (every step: whatever else wrote these
    /// words, the control reads what the worker holds).
    pub fn publish_epochs(&self, staged: u64, running: u64) {
        let w = self.words();
        if w.staged_epoch.load(Ordering::Relaxed) != staged {
            w.staged_epoch.store(staged, Ordering::Release);
        }
        if w.running_epoch.load(Ordering::Relaxed) != running {
            w.running_epoch.store(running, Ordering::Release);
        }
    }

    /// Whether [`CtlRegion::verify_and_repair`] asked for a ring reset.
    pub fn reset_requested(&self) -> bool {
        self.map.reset[self.idx].load(Ordering::Relaxed)
    }

    /// Re-initialises this worker's two rings (empty) after corruption and
    /// bumps the generation, so that the control process re-attaches and
    /// resends a full plan. The running plan is untouched.
    pub fn reset_rings(&mut self) -> Result<(), ShmRingError> {
        let cmd = self.map.init_ring(self.idx, false)?;
        let tel = self.map.init_ring(self.idx, true)?;
        // SAFETY: this port is the unique dataplane-side user of these rings.
        let (cmd, tel) = unsafe { (cmd.consumer(), tel.producer()) };
        self.cmd = cmd;
        self.tel = tel;
        self.map.reset[self.idx].store(false, Ordering::Release);
        let w = self.words();
        w.ring_resets
            .store(w.ring_resets.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.map
            .header()
            .ident
            .generation
            .fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// Why the control process could not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The region was re-created or repaired (generation changed, or closed):
    /// re-attach, then resend a full plan with a new epoch.
    #[error("control region changed: re-attach")]
    Stale,
    /// A ring lacks room for the whole batch (nothing was sent): retry later.
    #[error("ring full")]
    Full,
    /// The batch can never fit in a ring.
    #[error("batch larger than a ring")]
    TooBig,
    /// A ring's indices are inconsistent (the dataplane will reset it).
    #[error("ring corrupt")]
    Corrupt,
    /// Not every worker staged the epoch.
    #[error("epoch not staged by every worker")]
    NotStaged,
}

/// The control process's end: producer of every command ring, consumer of
/// every telemetry ring, writer of the control line.
pub struct ControlPort {
    map: Arc<Mapping>,
    _lock: File,
    /// `(device, inode)` of the file attached.
    file: (u64, u64),
    generation: u64,
    /// Control sessions of this region before this one.
    earlier_sessions: u64,
    cmd: Vec<Producer<Msg>>,
    tel: Vec<Consumer<Msg>>,
    scratch: Vec<Msg>,
}

impl ControlPort {
    /// Attaches to the region at `path`: opens it (checked: a regular file,
    /// not a symlink, owned by its directory's owner, not writable by
    /// others), takes the exclusive lock, validates the header and every
    /// ring header against the file's length (garbage or a short file is
    /// an error, never a fault), reads the generation and starts a new
    /// session (a new epoch space in every worker).
    pub fn attach(path: &Path) -> Result<Self, CtlError> {
        let (f, flen) = open_existing(path, Access::ReadWrite).map_err(io(path))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(CtlError::Busy(path.to_path_buf()));
            }
            return Err(io(path)(e));
        }
        let bad = || CtlError::Header(path.to_path_buf());
        let flen = usize::try_from(flen).map_err(|_| bad())?;
        let mut head = [0u8; HEADER_BYTES];
        f.read_exact_at(&mut head, 0).map_err(|_| bad())?;
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let layout = Layout {
            slots: u32_at(20),
            workers: u32_at(24),
        };
        if !layout.valid() || layout.total() > flen {
            return Err(bad());
        }
        let file = ShmFile::map(&f, flen, path, Access::ReadWrite).map_err(io(path))?;
        let map = Mapping::new(file, layout);
        let h = map.header();
        if h.ident.magic.load(Ordering::Acquire) != CTL_MAGIC || !map.ident_ok() {
            return Err(bad());
        }
        let generation = h.ident.generation.load(Ordering::Acquire);
        let ring_err = |err| CtlError::Ring {
            path: path.to_path_buf(),
            err,
        };
        let mut cmd = Vec::with_capacity(layout.workers as usize);
        let mut tel = Vec::with_capacity(layout.workers as usize);
        for i in 0..layout.workers as usize {
            let c = map.ring(i, false).map_err(ring_err)?;
            let t = map.ring(i, true).map_err(ring_err)?;
            // SAFETY: the exclusive flock makes this process the only
            // control side: unique producer of the command rings and unique
            // consumer of the telemetry rings.
            unsafe {
                cmd.push(c.producer());
                tel.push(t.consumer());
            }
        }
        // Re-check: the dataplane may have been re-initialising meanwhile.
        if h.ident.magic.load(Ordering::Acquire) != CTL_MAGIC
            || h.ident.generation.load(Ordering::Acquire) != generation
        {
            return Err(bad());
        }
        h.control
            .control_pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        let earlier_sessions = h.control.session.fetch_add(1, Ordering::AcqRel);
        let file = file_id(&f).map_err(io(path))?;
        Ok(Self {
            map: Arc::new(map),
            _lock: f,
            file,
            generation,
            earlier_sessions,
            cmd,
            tel,
            scratch: Vec::new(),
        })
    }

    /// The generation read at attach.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many control sessions this region had before this one (0: the
    /// first control of this dataplane; more: a control ran, so the
    /// dataplane's path choices are a control's, or its own since that
    /// control died).
    pub fn earlier_sessions(&self) -> u64 {
        self.earlier_sessions
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cmd.len()
    }

    /// `Err(Stale)` when the region was closed, re-created (the path names
    /// another file: a restarted dataplane) or repaired since attach.
    pub fn check(&self) -> Result<(), SendError> {
        let h = self.map.header();
        if h.ident.magic.load(Ordering::Acquire) != CTL_MAGIC
            || h.ident.generation.load(Ordering::Acquire) != self.generation
            || path_id(self.map.map.path()).ok() != Some(self.file)
        {
            return Err(SendError::Stale);
        }
        Ok(())
    }

    /// Writes the heartbeat (monotonic ns).
    pub fn heartbeat(&self, now_ns: u64) {
        self.map
            .header()
            .control
            .heartbeat_ns
            .store(now_ns, Ordering::Release);
    }

    /// The shared active-epoch word.
    pub fn active_epoch(&self) -> u64 {
        self.map
            .header()
            .control
            .active_epoch
            .load(Ordering::Acquire)
    }

    /// Worker `i`'s published state.
    pub fn worker_state(&self, i: usize) -> Option<WorkerState> {
        self.map.words(i).map(snapshot)
    }

    /// The epoch after the newest one the workers hold (their staged and
    /// running words, which each worker republishes every step), in serial
    /// number order ([`epoch_newer`]: it wraps, so no value is a dead end),
    /// never 0. The active word is not trusted for this: only a worker's
    /// own words say what it will refuse.
    pub fn next_epoch(&self) -> u64 {
        let newest = (0..self.workers())
            .filter_map(|i| self.worker_state(i))
            .flat_map(|s| [s.staged_epoch, s.running_epoch])
            .reduce(|a, b| if epoch_newer(b, a) { b } else { a })
            .unwrap_or_else(|| self.active_epoch());
        match newest.wrapping_add(1) {
            0 => 1,
            e => e,
        }
    }

    /// Sends `cmds` to every worker, all or nothing: if any ring lacks room
    /// for the whole batch nothing is sent.
    pub fn broadcast(&mut self, cmds: &[Command]) -> Result<(), SendError> {
        self.check()?;
        let n = u32::try_from(cmds.len()).map_err(|_| SendError::TooBig)?;
        for p in &mut self.cmd {
            if n > p.size() {
                return Err(SendError::TooBig);
            }
            match p.free(n) {
                Err(RingError::Corrupt) => return Err(SendError::Corrupt),
                Ok(f) if f < n => return Err(SendError::Full),
                Ok(_) => {}
            }
        }
        self.scratch.clear();
        self.scratch.extend(cmds.iter().map(Command::encode));
        for p in &mut self.cmd {
            for m in &self.scratch {
                if !p.push(*m) {
                    // Checked above; only a concurrent corruption gets here.
                    return Err(SendError::Corrupt);
                }
            }
            p.publish();
        }
        Ok(())
    }

    /// Sends `cmds` to worker `i` only, all or nothing.
    pub fn send(&mut self, i: usize, cmds: &[Command]) -> Result<(), SendError> {
        self.check()?;
        let n = u32::try_from(cmds.len()).map_err(|_| SendError::TooBig)?;
        let p = self.cmd.get_mut(i).ok_or(SendError::TooBig)?;
        if n > p.size() {
            return Err(SendError::TooBig);
        }
        match p.free(n) {
            Err(RingError::Corrupt) => return Err(SendError::Corrupt),
            Ok(f) if f < n => return Err(SendError::Full),
            Ok(_) => {}
        }
        for c in cmds {
            if !p.push(c.encode()) {
                return Err(SendError::Corrupt);
            }
        }
        p.publish();
        Ok(())
    }

    /// Whether every worker has staged (or already runs) `epoch`.
    pub fn all_staged(&self, epoch: u64) -> bool {
        (0..self.workers())
            .filter_map(|i| self.worker_state(i))
            .all(|s| s.staged_epoch == epoch || s.running_epoch == epoch)
    }

    /// Whether every worker runs `epoch`.
    pub fn all_running(&self, epoch: u64) -> bool {
        (0..self.workers())
            .filter_map(|i| self.worker_state(i))
            .all(|s| s.running_epoch == epoch)
    }

    /// Flips the active-epoch word to `epoch`, only once every worker has
    /// staged it: from then on each worker switches at its next step.
    pub fn activate(&self, epoch: u64) -> Result<(), SendError> {
        self.check()?;
        if !self.all_staged(epoch) {
            return Err(SendError::NotStaged);
        }
        self.map
            .header()
            .control
            .active_epoch
            .store(epoch, Ordering::Release);
        Ok(())
    }

    /// Next telemetry message of worker `i` (`None`: empty or corrupt ring);
    /// slots are released at once.
    pub fn recv(&mut self, i: usize) -> Option<Result<Telemetry, DecodeError>> {
        let c = self.tel.get_mut(i)?;
        let m = c.pop()?;
        c.release();
        Some(Telemetry::decode(&m))
    }
}
