//! The gateway section of a `.flows` file (format `MGFLOW04`): what an
//! operator asks of a running site gateway beyond its flows' counters — the
//! plan in force and since when, whether a control process is attached, per
//! class the sessions admitted and waiting and the plan's room, per
//! candidate path its state, round-trip time, probe counts and last probe.
//!
//! Layout (after the flow slots, 64-byte aligned): a [`GwHeader`] (two
//! cache lines), the name tables (classes, peers, uplinks: 64-byte
//! NUL-padded names), then `classes` [`ClassSlot`]s and `paths`
//! [`PathSlot`]s. The counts and names are written before the file's magic
//! is published and never change; the slots have one writer (the gateway's
//! worker), which stores them with Relaxed once per report period (100 ms by
//! default, from its housekeeping: never per packet); readers take Relaxed
//! snapshots. Times are CLOCK_MONOTONIC ns (`sys::clock::now_ns`), the same
//! clock in every process of the machine.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::shm::{ShmFile, ShmShared};

/// Bytes of a name in the name tables (longer names are truncated).
pub(crate) const NAME_LEN: usize = 64;
/// Most classes, peers, uplinks or paths a gateway section describes.
pub const MAX_ITEMS: usize = 4096;

/// The section's fixed part.
#[repr(C, align(64))]
#[derive(Default)]
pub struct GwHeader {
    /// Classes described (fixed).
    pub classes: AtomicU64,
    /// Peers described (fixed).
    pub peers: AtomicU64,
    /// Uplinks described (fixed).
    pub uplinks: AtomicU64,
    /// Candidate paths described (fixed).
    pub paths: AtomicU64,
    /// Mean inner packet bytes of the flows' rate unit (fixed): a rate of
    /// `r` units/s is `r * rate_unit_bytes * 8` bit/s.
    pub rate_unit_bytes: AtomicU64,
    /// Epoch of the plan in force.
    pub epoch: AtomicU64,
    /// When that plan came into force (worker clock, ns; the gateway's start
    /// for the plan it started with).
    pub plan_since_ns: AtomicU64,
    /// The control process's last heartbeat as the worker read it from the
    /// control region (ns; 0: never, or no control region).
    pub control_heartbeat_ns: AtomicU64,
    /// The control session word (bumped at every attach).
    pub control_session: AtomicU64,
    /// 1 if the gateway has a control region (`--no-control`: 0).
    pub control_region: AtomicU64,
    /// The worker's clock at its last write of this section.
    pub updated_ns: AtomicU64,
    /// Sessions in the classifier's table (admitted, best effort, refused).
    pub sessions: AtomicU64,
    /// When the gateway started (worker clock, ns).
    pub started_ns: AtomicU64,
    /// LAN hosts held in worker 0's learned neighbour table.
    pub lan_hosts: AtomicU64,
    /// LAN hosts not learned since start: both their sets of the table
    /// were full of live entries (`NeighbourStats::full`, worker 0's).
    pub lan_hosts_not_learned: AtomicU64,
    _pad: [AtomicU64; 1],
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for GwHeader {}

/// One class of the site (one cache line).
#[repr(C, align(64))]
#[derive(Default)]
pub struct ClassSlot {
    /// Live admitted sessions.
    pub active: AtomicU64,
    /// Live sessions refused for lack of room in the plan (demand the plan
    /// does not cover).
    pub waiting: AtomicU64,
    /// Sessions the plan in force admits (the class's limit).
    pub admitted: AtomicU64,
    /// 1 if the class's sessions start at this site.
    pub local: AtomicU64,
    _pad: [AtomicU64; 4],
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for ClassSlot {}

/// Path state codes of [`PathSlot::state`].
pub mod state {
    /// Usable, answering.
    pub const UP: u64 = 1;
    /// Usable, but its echoes are overdue (silent for half the time that
    /// takes it down) or data sent on it waits for acks longer than half
    /// the ack gap.
    pub const SUSPECT: u64 = 2;
    /// Not usable: silent, or the ack-gap reflex took it down.
    pub const DOWN: u64 = 3;
    /// Held down by the control process (its path manager judged it bad).
    pub const HELD: u64 = 4;

    /// The name of a state code (`unknown` for any other value).
    pub fn name(code: u64) -> &'static str {
        match code {
            UP => "up",
            SUSPECT => "suspect",
            DOWN => "down",
            HELD => "held",
            _ => "unknown",
        }
    }
}

/// One candidate path (two cache lines).
#[repr(C, align(64))]
#[derive(Default)]
pub struct PathSlot {
    /// Path reference `peer << 16 | index` (see `overlay::failover::path_ref`).
    pub path: AtomicU64,
    /// Local uplink index.
    pub uplink: AtomicU64,
    /// Waypoint peer index, `u64::from(u16::MAX)` for a direct path.
    pub via: AtomicU64,
    /// The outer destination: IPv4 as `::ffff:a.b.c.d`, 16 bytes big-endian
    /// in two words (high, low).
    pub remote_hi: AtomicU64,
    /// See `remote_hi`.
    pub remote_lo: AtomicU64,
    /// A [`state`] code.
    pub state: AtomicU64,
    /// 1 if the peer's traffic rides it by default now.
    pub active: AtomicU64,
    /// Smoothed probe round-trip time, ns (0: none yet).
    pub srtt_ns: AtomicU64,
    /// Last probe sent (worker clock, ns; 0: none).
    pub last_probe_ns: AtomicU64,
    /// Last echo (or ack vouching for it), worker clock ns.
    pub last_echo_ns: AtomicU64,
    /// Probes sent (the dataplane's own and the control's).
    pub probes_sent: AtomicU64,
    /// Echoes received.
    pub echoes: AtomicU64,
    /// Times it went down.
    pub downs: AtomicU64,
    /// Since when up (worker clock, ns).
    pub up_since_ns: AtomicU64,
    _pad: [AtomicU64; 2],
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for PathSlot {}

/// What a gateway section describes, fixed at creation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayLayout {
    /// Class ids, in configuration order.
    pub classes: Vec<String>,
    /// Peer names, in configuration order.
    pub peers: Vec<String>,
    /// Uplink names, in configuration order.
    pub uplinks: Vec<String>,
    /// Candidate paths.
    pub paths: usize,
    /// Per flow (configuration order), the index of its class in `classes`.
    pub flow_classes: Vec<usize>,
    /// The flows' rate unit, bytes.
    pub rate_unit_bytes: u32,
}

/// Where the parts of a section start, relative to the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Offsets {
    names: usize,
    classes: usize,
    paths: usize,
    end: usize,
    n_classes: usize,
    n_peers: usize,
    n_uplinks: usize,
    n_paths: usize,
}

impl Offsets {
    /// The geometry of a section with these counts (`None`: too many).
    pub(crate) fn new(classes: usize, peers: usize, uplinks: usize, paths: usize) -> Option<Self> {
        if [classes, peers, uplinks, paths]
            .iter()
            .any(|&n| n > MAX_ITEMS)
        {
            return None;
        }
        let names = std::mem::size_of::<GwHeader>();
        let cls = names + (classes + peers + uplinks) * NAME_LEN;
        let paths_off = cls + classes * std::mem::size_of::<ClassSlot>();
        let end = paths_off + paths * std::mem::size_of::<PathSlot>();
        Some(Self {
            names,
            classes: cls,
            paths: paths_off,
            end,
            n_classes: classes,
            n_peers: peers,
            n_uplinks: uplinks,
            n_paths: paths,
        })
    }

    /// Bytes of the section.
    pub(crate) fn len(&self) -> usize {
        self.end
    }

    /// Writes the layout's names and counts into a fresh section at `base`
    /// of `shm` (before the file is published).
    pub(crate) fn fill(&self, shm: &mut ShmFile, base: usize, l: &GatewayLayout) {
        let names = l.classes.iter().chain(&l.peers).chain(&l.uplinks);
        for (i, n) in names.enumerate() {
            let k = n.len().min(NAME_LEN - 1);
            shm.write(base + self.names + i * NAME_LEN, &n.as_bytes()[..k]);
        }
        if let Some(h) = shm.get::<GwHeader>(base) {
            let s = |a: &AtomicU64, v: usize| a.store(v as u64, Ordering::Relaxed);
            s(&h.classes, self.n_classes);
            s(&h.peers, self.n_peers);
            s(&h.uplinks, self.n_uplinks);
            s(&h.paths, self.n_paths);
            h.rate_unit_bytes
                .store(u64::from(l.rate_unit_bytes), Ordering::Relaxed);
        }
    }

    /// The geometry a section at `base` of `shm` declares, if it fits in
    /// the file.
    pub(crate) fn read(shm: &ShmFile, base: usize) -> Option<Self> {
        let h = shm.get::<GwHeader>(base)?;
        let n = |a: &AtomicU64| usize::try_from(a.load(Ordering::Relaxed)).ok();
        let o = Self::new(n(&h.classes)?, n(&h.peers)?, n(&h.uplinks)?, n(&h.paths)?)?;
        (base.checked_add(o.end)? <= shm.len()).then_some(o)
    }

    /// Name `i` of the table (classes, then peers, then uplinks).
    fn name(&self, shm: &ShmFile, base: usize, i: usize) -> String {
        let mut b = [0u8; NAME_LEN];
        shm.read(base + self.names + i * NAME_LEN, &mut b);
        let end = b.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        String::from_utf8_lossy(&b[..end]).into_owned()
    }

    /// Class slot `i`.
    pub(crate) fn class<'a>(
        &self,
        shm: &'a ShmFile,
        base: usize,
        i: usize,
    ) -> Option<&'a ClassSlot> {
        if i >= self.n_classes {
            return None;
        }
        shm.get(base + self.classes + i * std::mem::size_of::<ClassSlot>())
    }

    /// Path slot `i`.
    pub(crate) fn path<'a>(&self, shm: &'a ShmFile, base: usize, i: usize) -> Option<&'a PathSlot> {
        if i >= self.n_paths {
            return None;
        }
        shm.get(base + self.paths + i * std::mem::size_of::<PathSlot>())
    }

    /// A snapshot of the whole section.
    pub(crate) fn snapshot(&self, shm: &ShmFile, base: usize) -> Option<GatewaySnapshot> {
        let h = shm.get::<GwHeader>(base)?;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let classes = (0..self.n_classes)
            .filter_map(|i| {
                let c = self.class(shm, base, i)?;
                Some(ClassSnapshot {
                    id: self.name(shm, base, i),
                    active: l(&c.active),
                    waiting: l(&c.waiting),
                    admitted: l(&c.admitted),
                    local: l(&c.local) == 1,
                })
            })
            .collect();
        let paths = (0..self.n_paths)
            .filter_map(|i| {
                let p = self.path(shm, base, i)?;
                let hi = l(&p.remote_hi).to_be_bytes();
                let lo = l(&p.remote_lo).to_be_bytes();
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&hi);
                b[8..].copy_from_slice(&lo);
                let v6 = std::net::Ipv6Addr::from(b);
                let remote = v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4);
                Some(PathSnapshot {
                    path: l(&p.path),
                    uplink: l(&p.uplink),
                    via: l(&p.via),
                    remote,
                    state: l(&p.state),
                    active: l(&p.active) == 1,
                    srtt_ns: l(&p.srtt_ns),
                    last_probe_ns: l(&p.last_probe_ns),
                    last_echo_ns: l(&p.last_echo_ns),
                    probes_sent: l(&p.probes_sent),
                    echoes: l(&p.echoes),
                    downs: l(&p.downs),
                    up_since_ns: l(&p.up_since_ns),
                })
            })
            .collect();
        Some(GatewaySnapshot {
            rate_unit_bytes: l(&h.rate_unit_bytes),
            epoch: l(&h.epoch),
            plan_since_ns: l(&h.plan_since_ns),
            control_heartbeat_ns: l(&h.control_heartbeat_ns),
            control_session: l(&h.control_session),
            control_region: l(&h.control_region) == 1,
            updated_ns: l(&h.updated_ns),
            sessions: l(&h.sessions),
            started_ns: l(&h.started_ns),
            lan_hosts: l(&h.lan_hosts),
            lan_hosts_not_learned: l(&h.lan_hosts_not_learned),
            classes,
            peers: (0..self.n_peers)
                .map(|i| self.name(shm, base, self.n_classes + i))
                .collect(),
            uplinks: (0..self.n_uplinks)
                .map(|i| self.name(shm, base, self.n_classes + self.n_peers + i))
                .collect(),
            paths,
        })
    }
}

/// A class's values at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassSnapshot {
    /// Class id.
    pub id: String,
    /// Live admitted sessions.
    pub active: u64,
    /// Live sessions refused for lack of room.
    pub waiting: u64,
    /// Sessions the plan admits.
    pub admitted: u64,
    /// Its sessions start at this site.
    pub local: bool,
}

/// A path's values at one moment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathSnapshot {
    /// Path reference `peer << 16 | index`.
    pub path: u64,
    /// Uplink index.
    pub uplink: u64,
    /// Waypoint peer index (`65535`: direct).
    pub via: u64,
    /// Outer destination.
    pub remote: std::net::IpAddr,
    /// [`state`] code.
    pub state: u64,
    /// Rides by default now.
    pub active: bool,
    /// Smoothed probe RTT, ns (0: none).
    pub srtt_ns: u64,
    /// Last probe sent, ns (0: none).
    pub last_probe_ns: u64,
    /// Last echo, ns.
    pub last_echo_ns: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Echoes received.
    pub echoes: u64,
    /// Times down.
    pub downs: u64,
    /// Up since, ns.
    pub up_since_ns: u64,
}

impl PathSnapshot {
    /// The peer index of the path reference.
    pub fn peer(&self) -> usize {
        usize::try_from(self.path >> 16).unwrap_or(usize::MAX)
    }
    /// The waypoint's peer index, if a detour.
    pub fn waypoint(&self) -> Option<usize> {
        (self.via != u64::from(u16::MAX)).then(|| usize::try_from(self.via).unwrap_or(usize::MAX))
    }
}

/// The whole gateway section at one moment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GatewaySnapshot {
    /// The flows' rate unit, bytes.
    pub rate_unit_bytes: u64,
    /// Plan epoch in force.
    pub epoch: u64,
    /// Since when (ns).
    pub plan_since_ns: u64,
    /// Control heartbeat (ns; 0: none).
    pub control_heartbeat_ns: u64,
    /// Control session word.
    pub control_session: u64,
    /// The gateway has a control region.
    pub control_region: bool,
    /// Last write of the section (ns).
    pub updated_ns: u64,
    /// Sessions in the table.
    pub sessions: u64,
    /// Gateway start (ns).
    pub started_ns: u64,
    /// LAN hosts held in the learned neighbour table.
    pub lan_hosts: u64,
    /// LAN hosts not learned (the table full where they hash).
    pub lan_hosts_not_learned: u64,
    /// Classes.
    pub classes: Vec<ClassSnapshot>,
    /// Peer names.
    pub peers: Vec<String>,
    /// Uplink names.
    pub uplinks: Vec<String>,
    /// Candidate paths.
    pub paths: Vec<PathSnapshot>,
}

/// A path's values as the gateway publishes them (the writer's input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRecord {
    /// Path reference.
    pub path: u32,
    /// Uplink index.
    pub uplink: u16,
    /// Waypoint index or `u16::MAX`.
    pub via: u16,
    /// Outer destination.
    pub remote: std::net::IpAddr,
    /// [`state`] code.
    pub state: u64,
    /// Active.
    pub active: bool,
    /// Smoothed RTT, ns.
    pub srtt_ns: u64,
    /// Last probe, ns.
    pub last_probe_ns: u64,
    /// Last echo, ns.
    pub last_echo_ns: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Echoes.
    pub echoes: u64,
    /// Downs.
    pub downs: u64,
    /// Up since, ns.
    pub up_since_ns: u64,
}

impl PathSlot {
    /// Stores `r` (single writer).
    pub fn store(&self, r: &PathRecord) {
        let s = |a: &AtomicU64, x: u64| a.store(x, Ordering::Relaxed);
        let v6 = match r.remote {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
            std::net::IpAddr::V6(a) => a,
        };
        let b = v6.octets();
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&b[..8]);
        lo.copy_from_slice(&b[8..]);
        s(&self.path, u64::from(r.path));
        s(&self.uplink, u64::from(r.uplink));
        s(&self.via, u64::from(r.via));
        s(&self.remote_hi, u64::from_be_bytes(hi));
        s(&self.remote_lo, u64::from_be_bytes(lo));
        s(&self.state, r.state);
        s(&self.active, u64::from(r.active));
        s(&self.srtt_ns, r.srtt_ns);
        s(&self.last_probe_ns, r.last_probe_ns);
        s(&self.last_echo_ns, r.last_echo_ns);
        s(&self.probes_sent, r.probes_sent);
        s(&self.echoes, r.echoes);
        s(&self.downs, r.downs);
        s(&self.up_since_ns, r.up_since_ns);
    }
}

const _: () = assert!(std::mem::size_of::<GwHeader>() == 128);
const _: () = assert!(std::mem::size_of::<ClassSlot>() == 64);
const _: () = assert!(std::mem::size_of::<PathSlot>() == 128);
