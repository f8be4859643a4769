//! Per-flow counters of an overlay gateway in shared memory, for the status
//! CLI, the demo and monitoring: `/dev/shm/mongate-<name>.flows`.
//!
//! Layout: a 64-byte header (magic, workers, flows, pid), a name table of
//! `flows` 64-byte NUL-padded flow ids, then `workers x flows` 128-byte
//! [`FlowSlot`]s. Each slot has one writer (its worker), which stores with
//! Relaxed; readers take Relaxed snapshots and sum the workers.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{MAX_WORKERS, StatsError};
use crate::shm::map::FileMap;

/// "MGFLOW01".
pub const FLOWS_MAGIC: u64 = u64::from_le_bytes(*b"MGFLOW01");
/// Most flows a flows file describes.
pub const MAX_FLOWS: usize = 4096;
/// Bytes of a flow id in the name table (longer ids are truncated).
const NAME_LEN: usize = 64;

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    workers: AtomicU64,
    flows: AtomicU64,
    pid: AtomicU64,
}

/// One worker's counters of one flow (two cache lines).
#[repr(C, align(64))]
#[derive(Default)]
pub struct FlowSlot {
    /// Inner packets sent on the WAN (origin).
    pub tx_packets: AtomicU64,
    /// Inner bytes sent.
    pub tx_bytes: AtomicU64,
    /// Inner packets delivered to the LAN (destination).
    pub rx_packets: AtomicU64,
    /// Inner bytes delivered.
    pub rx_bytes: AtomicU64,
    /// Inner packets relayed (waypoint).
    pub relayed_packets: AtomicU64,
    /// Inner bytes relayed.
    pub relayed_bytes: AtomicU64,
    /// Current MONtra rate, packets/s, as f64 bits (origin; 0 otherwise).
    pub rate_pps: AtomicU64,
    /// Packets acknowledged by the destination (origin).
    pub acked: AtomicU64,
    /// Packets the acks reported lost (origin).
    pub lost: AtomicU64,
    /// Packets dropped by the flow's pacing queue (origin).
    pub queue_drops: AtomicU64,
    /// Plan epoch in force.
    pub epoch: AtomicU64,
    /// The worker's clock (ns) at the last update.
    pub updated_ns: AtomicU64,
    /// The plan's aggregate rate, packets/s, as f64 bits (origin).
    pub target_pps: AtomicU64,
    /// Sender timestamp of the newest delivered packet (destination).
    pub last_rx_sent_ns: AtomicU64,
    _pad: [AtomicU64; 2],
}

/// Values written into a [`FlowSlot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct FlowValues {
    /// See [`FlowSlot::tx_packets`].
    pub tx_packets: u64,
    /// See [`FlowSlot::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`FlowSlot::rx_packets`].
    pub rx_packets: u64,
    /// See [`FlowSlot::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`FlowSlot::relayed_packets`].
    pub relayed_packets: u64,
    /// See [`FlowSlot::relayed_bytes`].
    pub relayed_bytes: u64,
    /// Current MONtra rate, packets/s.
    pub rate_pps: f64,
    /// See [`FlowSlot::acked`].
    pub acked: u64,
    /// See [`FlowSlot::lost`].
    pub lost: u64,
    /// See [`FlowSlot::queue_drops`].
    pub queue_drops: u64,
    /// See [`FlowSlot::epoch`].
    pub epoch: u64,
    /// See [`FlowSlot::updated_ns`].
    pub updated_ns: u64,
    /// The plan's aggregate rate, packets/s.
    pub target_pps: f64,
    /// See [`FlowSlot::last_rx_sent_ns`].
    pub last_rx_sent_ns: u64,
}

impl FlowValues {
    /// Sums counters (rates add; epoch and time: the largest).
    pub fn add(&mut self, o: &FlowValues) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.relayed_packets += o.relayed_packets;
        self.relayed_bytes += o.relayed_bytes;
        self.rate_pps += o.rate_pps;
        self.target_pps += o.target_pps;
        self.last_rx_sent_ns = self.last_rx_sent_ns.max(o.last_rx_sent_ns);
        self.acked += o.acked;
        self.lost += o.lost;
        self.queue_drops += o.queue_drops;
        self.epoch = self.epoch.max(o.epoch);
        self.updated_ns = self.updated_ns.max(o.updated_ns);
    }
}

impl FlowSlot {
    /// Stores `v` (single writer).
    pub fn store(&self, v: &FlowValues) {
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
    }

    /// Reads every value (Relaxed).
    pub fn load(&self) -> FlowValues {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FlowValues {
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
        }
    }
}

/// The flows file path for an instance name.
pub fn flows_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/mongate-{name}.flows"))
}

/// A mapped flows file.
pub struct FlowStatsRegion {
    map: FileMap,
    workers: usize,
    flows: usize,
    path: PathBuf,
    owner: bool,
}

fn names_off() -> usize {
    std::mem::size_of::<Header>()
}
fn slots_off(flows: usize) -> usize {
    names_off() + flows * NAME_LEN
}
fn region_len(workers: usize, flows: usize) -> usize {
    slots_off(flows) + workers * flows * std::mem::size_of::<FlowSlot>()
}

impl FlowStatsRegion {
    /// Creates (truncating) the file for `workers` workers and the flows
    /// `ids` (in configuration order). Removed when dropped.
    pub fn create(path: &Path, workers: usize, ids: &[&str]) -> Result<Self, StatsError> {
        let flows = ids.len();
        if workers > MAX_WORKERS || flows > MAX_FLOWS {
            return Err(StatsError::TooMany);
        }
        let io = |err| StatsError::Io {
            path: path.to_path_buf(),
            err,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        let len = region_len(workers, flows);
        f.set_len(len as u64).map_err(io)?;
        let map = FileMap::map(&f, len).map_err(io)?;
        let r = Self {
            map,
            workers,
            flows,
            path: path.to_path_buf(),
            owner: true,
        };
        for (i, id) in ids.iter().enumerate() {
            let n = id.len().min(NAME_LEN - 1);
            // SAFETY: the name table holds `flows` entries of NAME_LEN bytes
            // inside the mapping (region_len), nobody else has the file yet
            // (created and truncated just now, magic not yet published).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    id.as_ptr(),
                    r.map.base().as_ptr().add(names_off() + i * NAME_LEN),
                    n,
                );
            }
        }
        let h = r.header();
        h.workers.store(workers as u64, Ordering::Relaxed);
        h.flows.store(flows as u64, Ordering::Relaxed);
        h.pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        h.magic.store(FLOWS_MAGIC, Ordering::Release);
        Ok(r)
    }

    /// Opens an existing flows file (values only read).
    pub fn open(path: &Path) -> Result<Self, StatsError> {
        let io = |err| StatsError::Io {
            path: path.to_path_buf(),
            err,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let flen = usize::try_from(f.metadata().map_err(io)?.len()).unwrap_or(0);
        if flen < std::mem::size_of::<Header>() {
            return Err(StatsError::Magic(path.to_path_buf()));
        }
        let map = FileMap::map(&f, flen).map_err(io)?;
        let mut r = Self {
            map,
            workers: 0,
            flows: 0,
            path: path.to_path_buf(),
            owner: false,
        };
        let h = r.header();
        if h.magic.load(Ordering::Acquire) != FLOWS_MAGIC {
            return Err(StatsError::Magic(path.to_path_buf()));
        }
        let workers = usize::try_from(h.workers.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let flows = usize::try_from(h.flows.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if workers > MAX_WORKERS || flows > MAX_FLOWS || region_len(workers, flows) > flen {
            return Err(StatsError::Magic(path.to_path_buf()));
        }
        r.workers = workers;
        r.flows = flows;
        Ok(r)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is page-aligned and at least a header long.
        unsafe { self.map.base().cast::<Header>().as_ref() }
    }

    /// Workers described.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Flow ids, in configuration order.
    pub fn ids(&self) -> Vec<String> {
        (0..self.flows)
            .map(|i| {
                let mut b = [0u8; NAME_LEN];
                // SAFETY: entry `i < flows` of the name table lies inside the
                // mapping (checked at create/open); plain bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.map.base().as_ptr().add(names_off() + i * NAME_LEN),
                        b.as_mut_ptr(),
                        NAME_LEN,
                    );
                }
                let end = b.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .collect()
    }

    /// Worker `w`'s slot of flow `f`.
    pub fn slot(&self, w: usize, f: usize) -> Option<&FlowSlot> {
        if w >= self.workers || f >= self.flows {
            return None;
        }
        // SAFETY: `w < workers`, `f < flows`: the slot lies inside the
        // mapping (region_len checked at create/open); slots are 64-byte
        // aligned (slots_off is a multiple of 64, the mapping page-aligned).
        Some(unsafe {
            self.map
                .base()
                .add(slots_off(self.flows))
                .cast::<FlowSlot>()
                .add(w * self.flows + f)
                .as_ref()
        })
    }

    /// Every flow's values summed over the workers: `(id, values)`.
    pub fn totals(&self) -> Vec<(String, FlowValues)> {
        self.ids()
            .into_iter()
            .enumerate()
            .map(|(f, id)| {
                let mut t = FlowValues::default();
                for w in 0..self.workers {
                    if let Some(s) = self.slot(w, f) {
                        t.add(&s.load());
                    }
                }
                (id, t)
            })
            .collect()
    }
}

impl Drop for FlowStatsRegion {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_open_sum() {
        let path = std::env::temp_dir().join(format!("mongate-test-{}.flows", std::process::id()));
        let w = FlowStatsRegion::create(&path, 2, &["a-direct", "a-via-b"]).unwrap();
        w.slot(0, 1).unwrap().store(&FlowValues {
            tx_packets: 3,
            rate_pps: 100.0,
            epoch: 2,
            ..FlowValues::default()
        });
        w.slot(1, 1).unwrap().store(&FlowValues {
            tx_packets: 4,
            rate_pps: 50.0,
            epoch: 1,
            ..FlowValues::default()
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
        assert_eq!(t[0].1, FlowValues::default());
        drop(r);
        drop(w);
        assert!(!path.exists());
    }

    #[test]
    fn garbage_is_refused() {
        let path =
            std::env::temp_dir().join(format!("mongate-garbage-{}.flows", std::process::id()));
        std::fs::write(&path, vec![9u8; 4096]).unwrap();
        assert!(FlowStatsRegion::open(&path).is_err());
        let mut h = FLOWS_MAGIC.to_le_bytes().to_vec();
        h.extend_from_slice(&u64::MAX.to_le_bytes());
        h.extend_from_slice(&u64::MAX.to_le_bytes());
        h.resize(4096, 0);
        std::fs::write(&path, h).unwrap();
        assert!(FlowStatsRegion::open(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
