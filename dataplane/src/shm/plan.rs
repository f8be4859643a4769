//! A [`PlanTable`] on the rings, both ends of the protocol (see
//! `docs/shm.md`, and [`crate::plan`] for the whole way of a plan).
//!
//! Control side: [`plan_entries`] lists a checked table by configuration
//! index, [`plan_commands`] cuts the entries into `PlanChunk`s and ends them
//! with a `PlanCommit` carrying the count and a [`Checksum`]; the control's
//! `ControlPort` broadcasts them, waits until every worker staged the epoch
//! and flips the active-epoch word.
//!
//! Worker side: [`PlanAssembler`], a pure state machine. Chunks of a plan are
//! assembled privately, a commit checks completeness, checksum and validity
//! ([`PlanTable::check`]: the plan enters the dataplane process here) and
//! *stages* the plan, and the shared active-epoch word makes the worker switch
//! to the staged plan. The running plan is replaced only by a whole, valid
//! plan (all-or-nothing), never by a part of one: anything wrong is refused
//! with a counter and the running plan stays. The worker hands the running
//! table to `overlay::Gateway::switch_plan` as it is.
//!
//! No allocation after [`PlanAssembler::new`]: the building, staged and
//! active plans are three preallocated [`PlanTable`]s that are swapped.
//!
//! Epochs are serial numbers ([`epoch_newer`], RFC 1982 style): they wrap,
//! so no epoch (not even `u64::MAX`, pushed by a faulty or hostile writer)
//! leaves the control without a newer one. And every control process that
//! attaches starts a new session ([`PlanAssembler::on_session`]): until the
//! first plan of the session is staged, a plan of any epoch is accepted, so
//! whatever epochs an earlier writer left (even different ones in different
//! workers) cannot lock out a restarted control.

use crate::plan::{PlanShape, PlanTable, usable};

use super::msg::{CHUNK_ENTRIES, COUNTER_WORDS, Command, PlanChunk, PlanEntry};

/// Whether epoch `a` is newer than `b` in serial number order: `a != b`
/// and `a` lies less than 2^63 steps after `b`, wrapping. `u64::MAX` is
/// older than 0.
#[inline]
pub fn epoch_newer(a: u64, b: u64) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 63
}

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Running FNV-1a 64 checksum over the epoch and the entries' words, in
/// order: what [`Command::PlanCommit`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// Starts the checksum of the plan of `epoch`.
    pub fn new(epoch: u64) -> Self {
        let mut c = Self(FNV_OFFSET);
        c.word(epoch);
        c
    }
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    /// Adds one entry.
    pub fn entry(&mut self, e: &PlanEntry) {
        for w in e.words() {
            self.word(w);
        }
    }
    /// The value.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The checksum of `entries` for `epoch`.
pub fn checksum(epoch: u64, entries: &[PlanEntry]) -> u64 {
    let mut c = Checksum::new(epoch);
    for e in entries {
        c.entry(e);
    }
    c.value()
}

/// The entries of a checked plan, by configuration index: every class, then
/// every flow.
pub fn plan_entries(plan: &PlanTable) -> Vec<PlanEntry> {
    let idx = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(plan.sessions.len() + plan.rate_mbps.len());
    for (c, &sessions) in plan.sessions.iter().enumerate() {
        out.push(PlanEntry::Class {
            class: idx(c),
            sessions,
        });
    }
    for (f, (&rate_mbps, &weight)) in plan.rate_mbps.iter().zip(&plan.weight).enumerate() {
        out.push(PlanEntry::Flow {
            flow: idx(f),
            rate_mbps,
            weight,
            floored: plan.is_floored(f),
        });
    }
    // The known detours only (the rest stay "not known").
    let n = plan.peers().max(1);
    for (i, &mbps) in plan.detour_mbps.iter().enumerate() {
        if mbps.is_finite() {
            out.push(PlanEntry::Detour {
                peer: idx(i / n),
                via: idx(i % n),
                mbps,
            });
        }
    }
    out
}

/// The commands carrying the plan `entries` of `epoch`: the chunks, then the
/// commit. An empty plan is one empty chunk.
pub fn plan_commands(epoch: u64, entries: &[PlanEntry]) -> Vec<Command> {
    let chunks: Vec<&[PlanEntry]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(CHUNK_ENTRIES).collect()
    };
    let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for (i, c) in chunks.iter().enumerate() {
        let mut e = [PlanEntry::Class {
            class: 0,
            sessions: 0,
        }; CHUNK_ENTRIES];
        e[..c.len()].copy_from_slice(c);
        out.push(Command::PlanChunk(PlanChunk {
            epoch,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            total,
            count: u32::try_from(c.len()).unwrap_or(0),
            entries: e,
        }));
    }
    out.push(Command::PlanCommit {
        epoch,
        chunks: total,
        entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        checksum: checksum(epoch, entries),
    });
    out
}

/// Why a plan (or a part of one) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Epoch not newer than the running or staged plan (in serial order,
    /// [`epoch_newer`]), within a control session.
    Stale,
    /// A chunk out of order (gap, repeat, or a changed total).
    OutOfOrder,
    /// The commit's checksum does not match the entries received.
    Checksum,
    /// The entries do not form a valid plan for this configuration.
    Invalid,
    /// A commit for a plan whose chunks did not all arrive.
    Incomplete,
    /// More chunks announced than a plan for this configuration can need.
    TooLarge,
    /// The active-epoch word names an epoch this worker has not staged.
    NotStaged,
}

/// What a message or a tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing visible (a chunk accepted, or not a plan message).
    None,
    /// The plan of this epoch is complete and valid, and waits for activation.
    Staged(u64),
    /// The worker now runs the plan of this epoch.
    Switched(u64),
    /// The plan of this epoch was refused; the running plan stays.
    Refused(u64, Refusal),
}

/// Counters of an assembler (all only grow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblerCounters {
    /// Chunks received.
    pub chunks: u64,
    /// Commits received.
    pub commits: u64,
    /// Plans staged.
    pub staged: u64,
    /// Plans switched to.
    pub switched: u64,
    /// Refused: stale epoch.
    pub stale: u64,
    /// Refused: chunk out of order.
    pub out_of_order: u64,
    /// Refused: checksum mismatch.
    pub checksum: u64,
    /// Refused: invalid plan.
    pub invalid: u64,
    /// Refused: incomplete plan at commit.
    pub incomplete: u64,
    /// Refused: too many chunks.
    pub too_large: u64,
    /// Active epoch named a plan not staged here.
    pub not_staged: u64,
    /// Partial plans dropped because they took too long.
    pub timeouts: u64,
    /// Partial plans dropped because a newer plan started.
    pub abandoned: u64,
    /// Messages that did not decode (counted by the caller via [`PlanAssembler::count_decode_error`]).
    pub decode_errors: u64,
    /// Ring corruption events (counted by the caller via [`PlanAssembler::count_ring_error`]).
    pub ring_errors: u64,
}

impl AssemblerCounters {
    /// The counters as the words of a `Telemetry::Counters` message, in
    /// field order (then zeros).
    pub fn to_words(&self) -> [u64; COUNTER_WORDS] {
        let mut w = [0u64; COUNTER_WORDS];
        let v = [
            self.chunks,
            self.commits,
            self.staged,
            self.switched,
            self.stale,
            self.out_of_order,
            self.checksum,
            self.invalid,
            self.incomplete,
            self.too_large,
            self.not_staged,
            self.timeouts,
            self.abandoned,
            self.decode_errors,
            self.ring_errors,
        ];
        w[..v.len()].copy_from_slice(&v);
        w
    }
    /// Total refusals of any kind.
    pub fn refused(&self) -> u64 {
        self.stale
            + self.out_of_order
            + self.checksum
            + self.invalid
            + self.incomplete
            + self.too_large
            + self.not_staged
    }
}

#[derive(Clone, Copy, Debug)]
struct Build {
    epoch: u64,
    total: u32,
    next: u32,
    entries: u32,
    sum: Checksum,
    started_ns: u64,
}

/// The worker-side plan state machine. Time (ns, any monotonic origin) is
/// passed in.
#[derive(Debug)]
pub struct PlanAssembler {
    shape: PlanShape,
    timeout_ns: u64,
    max_chunks: u32,
    active: PlanTable,
    staged: PlanTable,
    staged_valid: bool,
    building: PlanTable,
    build: Option<Build>,
    seen_class: Vec<bool>,
    seen_flow: Vec<bool>,
    seen_detour: Vec<bool>,
    not_staged_reported: u64,
    /// The control session word last seen.
    session: Option<u64>,
    /// A new session started and no plan of it was staged yet: any epoch
    /// is accepted.
    open: bool,
    counters: AssemblerCounters,
}

impl PlanAssembler {
    /// An assembler for plans of `shape`, running the empty plan of epoch 0;
    /// a partial plan older than `timeout_ns` is dropped.
    pub fn new(shape: PlanShape, timeout_ns: u64) -> Self {
        let classes = shape.classes();
        let entries = classes + shape.flows() + shape.detours();
        let max_chunks = u32::try_from(entries.div_ceil(CHUNK_ENTRIES).max(1)).unwrap_or(u32::MAX);
        Self {
            timeout_ns,
            max_chunks,
            active: PlanTable::empty(&shape),
            staged: PlanTable::empty(&shape),
            staged_valid: false,
            building: PlanTable::empty(&shape),
            build: None,
            seen_class: vec![false; classes],
            seen_flow: vec![false; shape.flows()],
            seen_detour: vec![false; shape.detours()],
            not_staged_reported: 0,
            session: None,
            open: false,
            counters: AssemblerCounters::default(),
            shape,
        }
    }

    /// Starts with the running plan under `epoch`: the plan a worker runs
    /// before any control's (the site file's), whose epoch the control
    /// region's active word starts at. Without it the worker takes that word
    /// for a newer plan it has not staged (a `NotStaged` refusal at every
    /// start), and a control's first plan, numbered after what the workers
    /// report, could carry that very epoch and switch as soon as staged.
    #[must_use]
    pub fn with_running_epoch(mut self, epoch: u64) -> Self {
        self.active.epoch = epoch;
        self
    }

    /// The plan the worker runs.
    pub fn active(&self) -> &PlanTable {
        &self.active
    }
    /// Epoch of the staged plan, if one waits for activation.
    pub fn staged_epoch(&self) -> Option<u64> {
        self.staged_valid.then_some(self.staged.epoch)
    }
    /// Epoch of the plan being assembled, if any.
    pub fn building_epoch(&self) -> Option<u64> {
        self.build.map(|b| b.epoch)
    }
    /// The counters.
    pub fn counters(&self) -> &AssemblerCounters {
        &self.counters
    }
    /// Counts a message that did not decode.
    pub fn count_decode_error(&mut self) {
        self.counters.decode_errors += 1;
    }
    /// Counts a corrupted ring.
    pub fn count_ring_error(&mut self) {
        self.counters.ring_errors += 1;
    }

    /// Newest epoch known here (running or staged): plans must be newer.
    fn floor(&self) -> u64 {
        if self.staged_valid && epoch_newer(self.staged.epoch, self.active.epoch) {
            self.staged.epoch
        } else {
            self.active.epoch
        }
    }

    /// Whether a plan of `epoch` is too old to take (never while a new
    /// session is open).
    fn stale(&self, epoch: u64) -> bool {
        !self.open && !epoch_newer(epoch, self.floor())
    }

    /// Whether a new control session is open (no plan of it staged yet).
    pub fn session_open(&self) -> bool {
        self.open
    }

    /// Looks at the control's session word (read every step before the
    /// ring): a value other than the one seen last opens a new session, in
    /// which the first plan may carry any epoch; its staging closes it. A
    /// partial plan of the previous session is dropped.
    pub fn on_session(&mut self, word: u64) {
        if self.session != Some(word) {
            if self.session.is_some() && self.build.take().is_some() {
                self.counters.abandoned += 1;
            }
            self.session = Some(word);
            self.open = true;
        }
    }

    fn refuse(&mut self, epoch: u64, why: Refusal) -> Event {
        let c = &mut self.counters;
        match why {
            Refusal::Stale => c.stale += 1,
            Refusal::OutOfOrder => c.out_of_order += 1,
            Refusal::Checksum => c.checksum += 1,
            Refusal::Invalid => c.invalid += 1,
            Refusal::Incomplete => c.incomplete += 1,
            Refusal::TooLarge => c.too_large += 1,
            Refusal::NotStaged => c.not_staged += 1,
        }
        Event::Refused(epoch, why)
    }

    /// Drops a partial plan that has been assembling for too long.
    pub fn tick(&mut self, now_ns: u64) {
        if let Some(b) = self.build
            && now_ns.saturating_sub(b.started_ns) > self.timeout_ns
        {
            self.build = None;
            self.counters.timeouts += 1;
        }
    }

    /// Feeds a decoded command; non-plan commands are ignored (`Event::None`).
    pub fn on_command(&mut self, cmd: &Command, now_ns: u64) -> Event {
        match cmd {
            Command::PlanChunk(c) => self.on_chunk(c, now_ns),
            &Command::PlanCommit {
                epoch,
                chunks,
                entries,
                checksum,
            } => self.on_commit(epoch, chunks, entries, checksum, now_ns),
            _ => Event::None,
        }
    }

    /// Feeds one chunk.
    pub fn on_chunk(&mut self, c: &PlanChunk, now_ns: u64) -> Event {
        self.counters.chunks += 1;
        self.tick(now_ns);
        if self.stale(c.epoch) {
            return self.refuse(c.epoch, Refusal::Stale);
        }
        match self.build {
            // Chunk 0 of the epoch being built restarts it (a restarted
            // control process resending the same epoch); any other chunk must
            // be the next one.
            Some(b) if b.epoch == c.epoch && c.index != 0 => {
                if c.index != b.next || c.total != b.total {
                    self.build = None;
                    return self.refuse(c.epoch, Refusal::OutOfOrder);
                }
            }
            other => {
                // An older plan's chunk while a newer one assembles (in an
                // open session, chunk 0 of any epoch restarts).
                let older = other.is_some_and(|b| epoch_newer(b.epoch, c.epoch));
                if older && !(self.open && c.index == 0) {
                    return self.refuse(c.epoch, Refusal::Stale);
                }
                if other.is_some() && c.index == 0 {
                    self.counters.abandoned += 1;
                }
                self.build = None;
                if c.index != 0 {
                    return self.refuse(c.epoch, Refusal::OutOfOrder);
                }
                if c.total == 0 || c.total > self.max_chunks {
                    return self.refuse(c.epoch, Refusal::TooLarge);
                }
                self.building.clear(c.epoch);
                self.seen_class.fill(false);
                self.seen_flow.fill(false);
                self.seen_detour.fill(false);
                self.build = Some(Build {
                    epoch: c.epoch,
                    total: c.total,
                    next: 0,
                    entries: 0,
                    sum: Checksum::new(c.epoch),
                    started_ns: now_ns,
                });
            }
        }
        let n = usize::try_from(c.count).unwrap_or(usize::MAX);
        let Some(entries) = c.entries.get(..n) else {
            self.build = None;
            return self.refuse(c.epoch, Refusal::Invalid);
        };
        let Some(mut b) = self.build else {
            return Event::None;
        };
        for e in entries {
            if !self.put(e) {
                self.build = None;
                return self.refuse(c.epoch, Refusal::Invalid);
            }
            b.sum.entry(e);
        }
        b.next += 1;
        b.entries = b.entries.saturating_add(c.count);
        self.build = Some(b);
        Event::None
    }

    /// Writes one entry into the building plan; false when out of range,
    /// duplicate, or not a finite non-negative number.
    fn put(&mut self, e: &PlanEntry) -> bool {
        match *e {
            PlanEntry::Class { class, sessions } => {
                let Ok(i) = usize::try_from(class) else {
                    return false;
                };
                match self.seen_class.get_mut(i) {
                    Some(seen) if !*seen => {
                        *seen = true;
                        self.building.sessions[i] = sessions;
                        true
                    }
                    _ => false,
                }
            }
            PlanEntry::Flow {
                flow,
                rate_mbps,
                weight,
                floored,
            } => {
                if !usable(rate_mbps) || !usable(weight) {
                    return false;
                }
                let Ok(i) = usize::try_from(flow) else {
                    return false;
                };
                match self.seen_flow.get_mut(i) {
                    Some(seen) if !*seen => {
                        *seen = true;
                        self.building.rate_mbps[i] = rate_mbps;
                        self.building.weight[i] = weight;
                        self.building.floored[i] = floored;
                        true
                    }
                    _ => false,
                }
            }
            PlanEntry::Detour { peer, via, mbps } => {
                if !usable(mbps) {
                    return false;
                }
                let n = self.shape.peers();
                let (Ok(p), Ok(v)) = (usize::try_from(peer), usize::try_from(via)) else {
                    return false;
                };
                if p >= n || v >= n {
                    return false;
                }
                match self.seen_detour.get_mut(p * n + v) {
                    Some(seen) if !*seen => {
                        *seen = true;
                        self.building.detour_mbps[p * n + v] = mbps;
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Feeds a commit: stages the plan if complete, matching and valid.
    pub fn on_commit(
        &mut self,
        epoch: u64,
        chunks: u32,
        entries: u32,
        checksum: u64,
        now_ns: u64,
    ) -> Event {
        self.counters.commits += 1;
        self.tick(now_ns);
        if self.stale(epoch) {
            return self.refuse(epoch, Refusal::Stale);
        }
        let Some(b) = self.build.take() else {
            return self.refuse(epoch, Refusal::Incomplete);
        };
        if b.epoch != epoch || b.next != b.total || chunks != b.total || entries != b.entries {
            return self.refuse(epoch, Refusal::Incomplete);
        }
        if b.sum.value() != checksum {
            return self.refuse(epoch, Refusal::Checksum);
        }
        if self.building.check(&self.shape).is_err() {
            return self.refuse(epoch, Refusal::Invalid);
        }
        std::mem::swap(&mut self.building, &mut self.staged);
        self.staged_valid = true;
        self.open = false;
        self.counters.staged += 1;
        Event::Staged(epoch)
    }

    /// Looks at the shared active-epoch word: switches to the staged plan
    /// when the word names it. A word newer than the running plan naming a
    /// plan not staged here is counted once and ignored (fail-static).
    pub fn on_active_epoch(&mut self, word: u64, now_ns: u64) -> Event {
        self.tick(now_ns);
        if self.staged_valid && self.staged.epoch == word {
            std::mem::swap(&mut self.active, &mut self.staged);
            self.staged_valid = false;
            self.counters.switched += 1;
            return Event::Switched(word);
        }
        if epoch_newer(word, self.active.epoch) && word != self.not_staged_reported {
            self.not_staged_reported = word;
            return self.refuse(word, Refusal::NotStaged);
        }
        Event::None
    }
}
