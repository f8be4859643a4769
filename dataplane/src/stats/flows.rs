//! Per-flow counters of an overlay gateway in shared memory, for the status
//! CLI, the demo and monitoring: `<run dir>/<name>.flows` (mode 0640, see
//! [`crate::sys::shm`]).
//!
//! Layout: the 64-byte header of every counters file (magic, workers, pid,
//! flows), a name table of `flows` 64-byte NUL-padded flow ids, then
//! `workers x flows` 192-byte [`FlowSlot`]s holding [`FlowCounters`] and
//! the path the flow rides, then (a site gateway's file) the gateway
//! section of [`super::gateway`]: plan, control, classes, paths. Each slot
//! has one writer (its worker), which stores with Relaxed; readers take
//! Relaxed snapshots and sum the workers.
//!
//! Format `MGFLOW04` (03 had no delivery times and gaps, 02 no spurious
//! and tail loss counts, 01 no path word and no gateway section); a reader of one version refuses the
//! others with [`StatsError::Version`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StatsError;
use super::file::{CountersFile, HEADER_BYTES, Kind};
use super::gateway::{ClassSlot, GatewayLayout, GatewaySnapshot, GwHeader, Offsets, PathSlot};
use crate::overlay::FlowCounters;
use crate::sys::shm::{ShmShared, shm_path};

/// "MGFLOW04" (04: delivery times and gaps; 03: spurious and tail losses;
/// 02: the path word of each slot, the gateway section).
pub const FLOWS_MAGIC: u64 = u64::from_le_bytes(*b"MGFLOW04");
/// Most flows a flows file describes.
pub const MAX_FLOWS: usize = 4096;
/// Bytes of a flow id in the name table (longer ids are truncated).
const NAME_LEN: usize = 64;

/// One worker's [`FlowCounters`] of one flow (three cache lines).
#[repr(C, align(64))]
#[derive(Default)]
pub struct FlowSlot {
    /// See [`FlowCounters::tx_packets`].
    pub tx_packets: AtomicU64,
    /// See [`FlowCounters::tx_bytes`].
    pub tx_bytes: AtomicU64,
    /// See [`FlowCounters::rx_packets`].
    pub rx_packets: AtomicU64,
    /// See [`FlowCounters::rx_bytes`].
    pub rx_bytes: AtomicU64,
    /// See [`FlowCounters::relayed_packets`].
    pub relayed_packets: AtomicU64,
    /// See [`FlowCounters::relayed_bytes`].
    pub relayed_bytes: AtomicU64,
    /// [`FlowCounters::rate_pps`] as f64 bits.
    pub rate_pps: AtomicU64,
    /// See [`FlowCounters::acked`].
    pub acked: AtomicU64,
    /// See [`FlowCounters::lost`].
    pub lost: AtomicU64,
    /// See [`FlowCounters::queue_drops`].
    pub queue_drops: AtomicU64,
    /// See [`FlowCounters::epoch`].
    pub epoch: AtomicU64,
    /// See [`FlowCounters::updated_ns`].
    pub updated_ns: AtomicU64,
    /// [`FlowCounters::target_pps`] as f64 bits.
    pub target_pps: AtomicU64,
    /// See [`FlowCounters::last_rx_sent_ns`].
    pub last_rx_sent_ns: AtomicU64,
    /// The path the flow rides now at its origin (`peer << 16 | index`;
    /// `u32::MAX`: none, or the flow does not start here). Written with
    /// the counters; not part of [`FlowCounters`].
    pub path: AtomicU64,
    /// The flow's class (index into the gateway section's classes;
    /// `u64::MAX`: unknown). Written at creation.
    pub class: AtomicU64,
    /// See [`FlowCounters::spurious`].
    pub spurious: AtomicU64,
    /// See [`FlowCounters::tail_lost`].
    pub tail_lost: AtomicU64,
    /// See [`FlowCounters::last_rx_ns`].
    pub last_rx_ns: AtomicU64,
    /// See [`FlowCounters::rx_resumed_ns`].
    pub rx_resumed_ns: AtomicU64,
    /// See [`FlowCounters::rx_gap_ns`].
    pub rx_gap_ns: AtomicU64,
    /// See [`FlowCounters::rx_resumed_sent_ns`].
    pub rx_resumed_sent_ns: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for FlowSlot {}

impl FlowSlot {
    /// Stores `v` (single writer).
    pub fn store(&self, v: &FlowCounters) {
        let s = |a: &AtomicU64, x: u64| a.store(x, Ordering::Relaxed);
        s(&self.tx_packets, v.tx_packets);
        s(&self.tx_bytes, v.tx_bytes);
        s(&self.rx_packets, v.rx_packets);
        s(&self.rx_bytes, v.rx_bytes);
        s(&self.relayed_packets, v.relayed_packets);
        s(&self.relayed_bytes, v.relayed_bytes);
        s(&self.rate_pps, v.rate_pps.to_bits());
        s(&self.acked, v.acked);
        s(&self.lost, v.lost);
        s(&self.queue_drops, v.queue_drops);
        s(&self.epoch, v.epoch);
        s(&self.updated_ns, v.updated_ns);
        s(&self.target_pps, v.target_pps.to_bits());
        s(&self.last_rx_sent_ns, v.last_rx_sent_ns);
        s(&self.spurious, v.spurious);
        s(&self.tail_lost, v.tail_lost);
        s(&self.last_rx_ns, v.last_rx_ns);
        s(&self.rx_resumed_ns, v.rx_resumed_ns);
        s(&self.rx_gap_ns, v.rx_gap_ns);
        s(&self.rx_resumed_sent_ns, v.rx_resumed_sent_ns);
    }

    /// Reads every value (Relaxed).
    pub fn load(&self) -> FlowCounters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FlowCounters {
            tx_packets: l(&self.tx_packets),
            tx_bytes: l(&self.tx_bytes),
            rx_packets: l(&self.rx_packets),
            rx_bytes: l(&self.rx_bytes),
            relayed_packets: l(&self.relayed_packets),
            relayed_bytes: l(&self.relayed_bytes),
            rate_pps: f64::from_bits(l(&self.rate_pps)),
            acked: l(&self.acked),
            lost: l(&self.lost),
            queue_drops: l(&self.queue_drops),
            epoch: l(&self.epoch),
            updated_ns: l(&self.updated_ns),
            target_pps: f64::from_bits(l(&self.target_pps)),
            last_rx_sent_ns: l(&self.last_rx_sent_ns),
            spurious: l(&self.spurious),
            tail_lost: l(&self.tail_lost),
            last_rx_ns: l(&self.last_rx_ns),
            rx_resumed_ns: l(&self.rx_resumed_ns),
            rx_gap_ns: l(&self.rx_gap_ns),
            rx_resumed_sent_ns: l(&self.rx_resumed_sent_ns),
        }
    }
}

/// The flows file path for an instance name.
pub fn flows_path(name: &str) -> PathBuf {
    shm_path(name, "flows")
}

/// Offset of the first slot (a multiple of 64).
fn slots_off(flows: usize) -> usize {
    HEADER_BYTES + flows * NAME_LEN
}

/// The flows file: the header, the name table, the slots.
const FLOWS: Kind = Kind {
    magic: FLOWS_MAGIC,
    max_flows: MAX_FLOWS,
    len: |workers, flows| slots_off(flows) + workers * flows * std::mem::size_of::<FlowSlot>(),
};

/// A mapped flows file.
pub struct FlowStatsRegion {
    file: CountersFile,
    /// The gateway section's geometry, if the file has one.
    gw: Option<Offsets>,
}

impl FlowStatsRegion {
    /// Creates (truncating) the file for `workers` workers and the flows
    /// `ids` (in configuration order). Removed when dropped.
    pub fn create(path: &Path, workers: usize, ids: &[&str]) -> Result<Self, StatsError> {
        Self::create_with(path, workers, ids, None)
    }

    /// As [`Self::create`], with a gateway section for `layout` (a site
    /// gateway's file).
    pub fn create_gateway(
        path: &Path,
        workers: usize,
        ids: &[&str],
        layout: &GatewayLayout,
    ) -> Result<Self, StatsError> {
        Self::create_with(path, workers, ids, Some(layout))
    }

    fn create_with(
        path: &Path,
        workers: usize,
        ids: &[&str],
        layout: Option<&GatewayLayout>,
    ) -> Result<Self, StatsError> {
        let gw = match layout {
            Some(l) => Some(
                Offsets::new(l.classes.len(), l.peers.len(), l.uplinks.len(), l.paths)
                    .ok_or(StatsError::TooMany)?,
            ),
            None => None,
        };
        let base = (FLOWS.len)(workers, ids.len());
        let extra = gw.map_or(0, |o| o.len());
        let file = CountersFile::create(path, &FLOWS, (workers, ids.len(), extra), |shm| {
            for (i, id) in ids.iter().enumerate() {
                let n = id.len().min(NAME_LEN - 1);
                // Inside the file (its length counts `ids.len()` names).
                shm.write(HEADER_BYTES + i * NAME_LEN, &id.as_bytes()[..n]);
            }
            for w in 0..workers {
                for f in 0..ids.len() {
                    let off = slots_off(ids.len())
                        + (w * ids.len() + f) * std::mem::size_of::<FlowSlot>();
                    if let Some(s) = shm.get::<FlowSlot>(off) {
                        s.path.store(u64::from(u32::MAX), Ordering::Relaxed);
                        let class = layout
                            .and_then(|l| l.flow_classes.get(f))
                            .map_or(u64::MAX, |&c| c as u64);
                        s.class.store(class, Ordering::Relaxed);
                    }
                }
            }
            if let (Some(o), Some(l)) = (gw, layout) {
                o.fill(shm, base, l);
            }
        })?;
        Ok(Self { file, gw })
    }

    /// Opens an existing flows file read-only (`O_RDONLY`, `PROT_READ`: the
    /// slots of [`Self::slot`] may only be loaded). A gateway section is
    /// found when the file is long enough for the one its header declares.
    pub fn open(path: &Path) -> Result<Self, StatsError> {
        let file = CountersFile::open(path, &FLOWS)?;
        let base = (FLOWS.len)(file.workers(), file.flows());
        let gw = Offsets::read(file.shm(), base);
        Ok(Self { file, gw })
    }

    /// Byte offset of the gateway section.
    fn gw_base(&self) -> usize {
        (FLOWS.len)(self.file.workers(), self.file.flows())
    }

    /// The gateway section's header (a site gateway's file).
    pub fn gateway_header(&self) -> Option<&GwHeader> {
        self.gw?;
        self.file.shm().get(self.gw_base())
    }

    /// Class `i`'s slot of the gateway section.
    pub fn class_slot(&self, i: usize) -> Option<&ClassSlot> {
        self.gw?.class(self.file.shm(), self.gw_base(), i)
    }

    /// Path `i`'s slot of the gateway section.
    pub fn path_slot(&self, i: usize) -> Option<&PathSlot> {
        self.gw?.path(self.file.shm(), self.gw_base(), i)
    }

    /// A snapshot of the gateway section (`None`: the file has none).
    pub fn gateway(&self) -> Option<GatewaySnapshot> {
        self.gw?.snapshot(self.file.shm(), self.gw_base())
    }

    /// The pid of the process that created the file.
    pub fn pid(&self) -> u64 {
        self.file.pid()
    }

    /// The class of flow `f` (an index into the gateway section's classes).
    pub fn flow_class(&self, f: usize) -> Option<usize> {
        let c = self.slot(0, f)?.class.load(Ordering::Relaxed);
        usize::try_from(c).ok().filter(|&c| c < MAX_FLOWS)
    }

    /// The path flow `f` rides at its origin (the first worker's word that
    /// names one), `None` if none.
    pub fn flow_path(&self, f: usize) -> Option<u32> {
        (0..self.workers())
            .filter_map(|w| self.slot(w, f))
            .map(|s| s.path.load(Ordering::Relaxed))
            .find(|&p| p < u64::from(u32::MAX))
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Workers described.
    pub fn workers(&self) -> usize {
        self.file.workers()
    }

    /// Flow ids, in configuration order.
    pub fn ids(&self) -> Vec<String> {
        (0..self.file.flows())
            .map(|i| {
                let mut b = [0u8; NAME_LEN];
                self.file.shm().read(HEADER_BYTES + i * NAME_LEN, &mut b);
                let end = b.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .collect()
    }

    /// Worker `w`'s slot of flow `f`.
    pub fn slot(&self, w: usize, f: usize) -> Option<&FlowSlot> {
        let flows = self.file.flows();
        if w >= self.workers() || f >= flows {
            return None;
        }
        let off = slots_off(flows) + (w * flows + f) * std::mem::size_of::<FlowSlot>();
        self.file.shm().get(off)
    }

    /// Every flow's counters summed over the workers: `(id, counters)`.
    pub fn totals(&self) -> Vec<(String, FlowCounters)> {
        self.ids()
            .into_iter()
            .enumerate()
            .map(|(f, id)| {
                let mut t = FlowCounters::default();
                for w in 0..self.workers() {
                    if let Some(s) = self.slot(w, f) {
                        t.add(&s.load());
                    }
                }
                (id, t)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_open_sum() {
        let dir = crate::sys::shm::TestDir::new("flows");
        let path = dir.file("t.flows");
        let w = FlowStatsRegion::create(&path, 2, &["a-direct", "a-via-b"]).unwrap();
        w.slot(0, 1).unwrap().store(&FlowCounters {
            tx_packets: 3,
            rate_pps: 100.0,
            epoch: 2,
            ..FlowCounters::default()
        });
        w.slot(1, 1).unwrap().store(&FlowCounters {
            tx_packets: 4,
            rate_pps: 50.0,
            epoch: 1,
            ..FlowCounters::default()
        });
        assert!(w.slot(2, 0).is_none());
        assert!(w.slot(0, 2).is_none());
        let r = FlowStatsRegion::open(&path).unwrap();
        let t = r.totals();
        assert_eq!(t[0].0, "a-direct");
        assert_eq!(t[1].0, "a-via-b");
        assert_eq!(t[1].1.tx_packets, 7);
        assert_eq!(t[1].1.rate_pps, 150.0);
        assert_eq!(t[1].1.epoch, 2);
        assert_eq!(t[0].1, FlowCounters::default());
        drop(r);
        drop(w);
        assert!(!path.exists());
    }

    #[test]
    fn the_gateway_section_round_trips() {
        use crate::stats::gateway::{PathRecord, state};
        let dir = crate::sys::shm::TestDir::new("flows-gw");
        let path = dir.file("g.flows");
        let layout = GatewayLayout {
            classes: vec!["bulk".into()],
            peers: vec!["B".into(), "C".into()],
            uplinks: vec!["ab (veth0)".into()],
            paths: 3,
            flow_classes: vec![0, 0],
            rate_unit_bytes: 1250,
        };
        let w = FlowStatsRegion::create_gateway(&path, 1, &["x", "y"], &layout).unwrap();
        // A file without a section has none.
        let plain = dir.file("p.flows");
        let p = FlowStatsRegion::create(&plain, 1, &["x"]).unwrap();
        assert!(p.gateway().is_none() && p.gateway_header().is_none());
        assert_eq!(FlowStatsRegion::open(&plain).unwrap().flow_class(0), None);
        let h = w.gateway_header().unwrap();
        h.epoch.store(7, Ordering::Relaxed);
        w.class_slot(0).unwrap().active.store(2, Ordering::Relaxed);
        assert!(w.class_slot(1).is_none() && w.path_slot(3).is_none());
        w.path_slot(2).unwrap().store(&PathRecord {
            path: 1 << 16 | 1,
            uplink: 0,
            via: 0,
            remote: "198.18.0.9".parse().unwrap(),
            state: state::HELD,
            active: true,
            srtt_ns: 5,
            last_probe_ns: 6,
            last_echo_ns: 7,
            probes_sent: 8,
            echoes: 9,
            downs: 10,
            up_since_ns: 11,
        });
        w.slot(0, 1)
            .unwrap()
            .path
            .store(1 << 16 | 1, Ordering::Relaxed);
        let r = FlowStatsRegion::open(&path).unwrap();
        let g = r.gateway().unwrap();
        assert_eq!((g.epoch, g.rate_unit_bytes), (7, 1250));
        assert_eq!(g.classes[0].id, "bulk");
        assert_eq!(g.classes[0].active, 2);
        assert_eq!(g.peers, ["B", "C"]);
        assert_eq!(g.uplinks, ["ab (veth0)"]);
        let p = &g.paths[2];
        assert_eq!(p.remote.to_string(), "198.18.0.9");
        assert_eq!((p.peer(), p.waypoint()), (1, Some(0)));
        assert_eq!((p.state, p.srtt_ns, p.downs), (state::HELD, 5, 10));
        assert_eq!(g.paths[0].state, 0);
        assert_eq!((r.flow_path(0), r.flow_path(1)), (None, Some(1 << 16 | 1)));
        assert_eq!((r.flow_class(0), r.flow_class(1)), (Some(0), Some(0)));
        assert_eq!(r.pid(), u64::from(std::process::id()));
        // The file of an older build: refused, saying so.
        drop(r);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..8].copy_from_slice(b"MGFLOW01");
        let old = dir.file("old.flows");
        std::fs::write(&old, &bytes).unwrap();
        let e = FlowStatsRegion::open(&old).err().expect("refused");
        let m = e.to_string();
        assert!(
            m.contains("MGFLOW01") && m.contains("MGFLOW04") && m.contains("builds"),
            "{m}"
        );
        std::fs::remove_file(&old).unwrap();
    }

    #[test]
    fn garbage_is_refused() {
        let dir = crate::sys::shm::TestDir::new("garbage-flows");
        let path = dir.file("g.flows");
        std::fs::write(&path, vec![9u8; 4096]).unwrap();
        assert!(FlowStatsRegion::open(&path).is_err());
        // Magic, workers, pid, flows.
        let mut h = FLOWS_MAGIC.to_le_bytes().to_vec();
        h.extend_from_slice(&u64::MAX.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes());
        h.extend_from_slice(&u64::MAX.to_le_bytes());
        h.resize(4096, 0);
        std::fs::write(&path, h).unwrap();
        assert!(FlowStatsRegion::open(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
