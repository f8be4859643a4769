//! Per-worker counters in shared memory, readable by other processes (status
//! CLI, bench, control) without locks.
//!
//! The file `<run dir>/<name>.stats` (mode 0640, see [`crate::sys::shm`])
//! holds a header and one cache-line-aligned [`WorkerCounters`] block per
//! worker. Each block has a single writer (its worker), which updates with
//! plain Relaxed load+store (no read-modify-write); readers map the file
//! read-only and take Relaxed snapshots. Counters only grow, so a reader sees
//! each one monotonic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

mod file;
pub mod flows;
pub mod gateway;

use crate::engine::DropReason;
use crate::sys::shm::{ShmShared, shm_path};
use file::{CountersFile, HEADER_BYTES, Kind};

/// "MGSTAT05" (02: the drop reasons of issue 11's security; 03:
/// `oam_consumed` and `bad_checksum`; 04: `handoff_full`, 8 ports per
/// worker; 05: `not_ours`).
pub const STATS_MAGIC: u64 = u64::from_le_bytes(*b"MGSTAT05");
/// Most workers a stats file describes.
pub const MAX_WORKERS: usize = 64;
/// Most ports per worker with their own counters (a gateway's: the LAN,
/// its uplinks, then one handoff port per other worker; ports beyond are
/// not counted).
pub const MAX_PORTS: usize = 8;

/// Counters of one port of a worker.
#[repr(C)]
#[derive(Default)]
pub struct PortCounters {
    /// Packets received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Packets sent.
    pub tx_packets: AtomicU64,
    /// Bytes sent.
    pub tx_bytes: AtomicU64,
    /// The kernel's receive drops for this port (cumulative, refreshed ~10/s).
    pub kernel_rx_dropped: AtomicU64,
    /// The kernel's "rx ring full" events.
    pub kernel_rx_ring_full: AtomicU64,
    /// The kernel's "fill ring empty" events.
    pub kernel_fill_empty: AtomicU64,
}

/// Counters of one worker. `#[repr(C)]`, a whole number of cache lines.
#[repr(C, align(64))]
#[derive(Default)]
pub struct WorkerCounters {
    /// Loop iterations that moved at least one packet.
    pub busy_loops: AtomicU64,
    /// Loop iterations that found nothing to do.
    pub idle_loops: AtomicU64,
    /// Per-port packet and byte counts.
    pub ports: [PortCounters; MAX_PORTS],
    /// Drops by [`DropReason`] (index = discriminant).
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Heartbeat: the worker's clock (ns) at its last flush.
    pub heartbeat_ns: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for WorkerCounters {}

/// Increments a single-writer counter.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A snapshot of a worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerSnapshot {
    /// Busy loop iterations.
    pub busy_loops: u64,
    /// Idle loop iterations.
    pub idle_loops: u64,
    /// rx packets per port.
    pub rx_packets: Vec<u64>,
    /// rx bytes per port.
    pub rx_bytes: Vec<u64>,
    /// tx packets per port.
    pub tx_packets: Vec<u64>,
    /// tx bytes per port.
    pub tx_bytes: Vec<u64>,
    /// Drops by reason name (non-zero only).
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Kernel-side receive drops per port (before our rings).
    pub kernel_rx_dropped: Vec<u64>,
    /// Kernel "rx ring full" events per port.
    pub kernel_rx_ring_full: Vec<u64>,
    /// Kernel "fill ring empty" events per port.
    pub kernel_fill_empty: Vec<u64>,
    /// Last heartbeat (worker clock, ns).
    pub heartbeat_ns: u64,
}

impl WorkerCounters {
    /// Reads every counter (Relaxed).
    pub fn snapshot(&self) -> WorkerSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut drops = std::collections::BTreeMap::new();
        for r in DropReason::ALL {
            let v = l(&self.drops[r as usize]);
            if v > 0 {
                drops.insert(r.name().to_string(), v);
            }
        }
        WorkerSnapshot {
            busy_loops: l(&self.busy_loops),
            idle_loops: l(&self.idle_loops),
            rx_packets: self.ports.iter().map(|p| l(&p.rx_packets)).collect(),
            rx_bytes: self.ports.iter().map(|p| l(&p.rx_bytes)).collect(),
            tx_packets: self.ports.iter().map(|p| l(&p.tx_packets)).collect(),
            tx_bytes: self.ports.iter().map(|p| l(&p.tx_bytes)).collect(),
            drops,
            kernel_rx_dropped: self.ports.iter().map(|p| l(&p.kernel_rx_dropped)).collect(),
            kernel_rx_ring_full: self
                .ports
                .iter()
                .map(|p| l(&p.kernel_rx_ring_full))
                .collect(),
            kernel_fill_empty: self.ports.iter().map(|p| l(&p.kernel_fill_empty)).collect(),
            heartbeat_ns: l(&self.heartbeat_ns),
        }
    }
}

/// Errors opening a stats file.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// I/O.
    #[error("stats file {path}: {err}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        err: std::io::Error,
    },
    /// Not a stats file, or a different version.
    #[error("stats file {0}: not a mongate stats file (bad magic)")]
    Magic(PathBuf),
    /// A file of this kind in another format version.
    #[error(
        "{path}: format {found}, this program reads {want}: the dataplane and this program come from different mongate builds (run the matching `mongate status`)"
    )]
    Version {
        /// File.
        path: PathBuf,
        /// The file's format (its magic).
        found: String,
        /// The format this program reads.
        want: String,
    },
    /// Too many workers.
    #[error("stats: at most {MAX_WORKERS} workers")]
    TooMany,
}

/// A mapped stats file.
pub struct StatsRegion {
    file: CountersFile,
}

/// The stats file: the header, then one [`WorkerCounters`] per worker.
const STATS: Kind = Kind {
    magic: STATS_MAGIC,
    max_flows: 0,
    len: |workers, _| HEADER_BYTES + workers * std::mem::size_of::<WorkerCounters>(),
};

/// The stats file path for an instance name (e.g. the site name).
pub fn stats_path(name: &str) -> PathBuf {
    shm_path(name, "stats")
}

impl StatsRegion {
    /// Creates (truncating) the stats file for `workers` workers. The file
    /// is removed when the region is dropped.
    pub fn create(path: &Path, workers: usize) -> Result<Self, StatsError> {
        let file = CountersFile::create(path, &STATS, (workers, 0, 0), |_| {})?;
        Ok(Self { file })
    }

    /// Opens an existing stats file read-only (`O_RDONLY`, `PROT_READ`: the
    /// counters of [`Self::worker`] may only be loaded).
    pub fn open(path: &Path) -> Result<Self, StatsError> {
        let file = CountersFile::open(path, &STATS)?;
        Ok(Self { file })
    }

    /// Number of workers described.
    pub fn workers(&self) -> usize {
        self.file.workers()
    }

    /// Worker `i`'s counters.
    pub fn worker(&self, i: usize) -> Option<&WorkerCounters> {
        if i >= self.workers() {
            return None;
        }
        let off = HEADER_BYTES + i * std::mem::size_of::<WorkerCounters>();
        self.file.shm().get(off)
    }

    /// The pid of the process that created the file.
    pub fn pid(&self) -> u64 {
        self.file.pid()
    }

    /// Snapshots of every worker.
    pub fn snapshot(&self) -> Vec<WorkerSnapshot> {
        (0..self.workers())
            .filter_map(|i| self.worker(i))
            .map(WorkerCounters::snapshot)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_open_read() {
        let dir = crate::sys::shm::TestDir::new("stats");
        let path = dir.file("t.stats");
        let w = StatsRegion::create(&path, 2).unwrap();
        bump(&w.worker(1).unwrap().ports[0].rx_packets, 5);
        bump(&w.worker(1).unwrap().drops[DropReason::Runt as usize], 2);
        let r = StatsRegion::open(&path).unwrap();
        assert_eq!(r.workers(), 2);
        let s = r.snapshot();
        assert_eq!(s[1].rx_packets[0], 5);
        assert_eq!(s[1].drops.get("runt"), Some(&2));
        assert_eq!(s[0].rx_packets[0], 0);
        assert!(r.worker(2).is_none());
        drop(r);
        drop(w);
        assert!(!path.exists());
    }

    #[test]
    fn garbage_file_is_refused() {
        let dir = crate::sys::shm::TestDir::new("garbage-stats");
        let path = dir.file("g.stats");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        assert!(matches!(
            StatsRegion::open(&path),
            Err(StatsError::Magic(_))
        ));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            StatsRegion::open(&path),
            Err(StatsError::Magic(_))
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
