//! Discovery: what the host and each interface look like right now.
//!
//! Reads sysfs and procfs under configurable roots ([`Roots`], so tests can
//! point at a fake tree) and, when enabled, asks the driver through the
//! SIOCETHTOOL ioctl ([`ethtool`]). All text parsing is in [`crate::parse`].

pub mod ethtool;
mod host;
mod nic;

pub use host::{HostInfo, Hugepages, NumaNode, discover_host};
pub use nic::{NicInfo, QueueIrq, XdpSupport, discover_nic, list_interfaces, validate_ifname};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where sysfs and procfs are mounted (`/sys`, `/proc` normally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// sysfs mount point.
    pub sys: PathBuf,
    /// procfs mount point.
    pub proc: PathBuf,
    /// Ask drivers via SIOCETHTOOL (off for fake trees in tests).
    pub use_ethtool: bool,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            use_ethtool: true,
        }
    }
}

impl Roots {
    /// `/sys/class/net/<ifname>`.
    pub fn net_dir(&self, ifname: &str) -> PathBuf {
        self.sys.join("class/net").join(ifname)
    }

    /// `/proc/irq/<irq>/smp_affinity_list`.
    pub fn irq_affinity_path(&self, irq: u32) -> PathBuf {
        self.proc
            .join("irq")
            .join(irq.to_string())
            .join("smp_affinity_list")
    }

    /// `/sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages`.
    pub fn nr_hugepages_path(&self, size_kb: u64) -> PathBuf {
        self.sys
            .join("kernel/mm/hugepages")
            .join(format!("hugepages-{size_kb}kB"))
            .join("nr_hugepages")
    }
}

/// Reads a small text file; `None` if it is missing or unreadable.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Channel (queue) counts as ETHTOOL_GCHANNELS reports them.
///
/// A "combined" channel is an rx+tx queue pair with one IRQ (most NICs);
/// some drivers (veth) report separate rx and tx counts instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// Maximum rx-only channels.
    pub max_rx: u32,
    /// Maximum tx-only channels.
    pub max_tx: u32,
    /// Maximum "other" (link/misc) channels.
    pub max_other: u32,
    /// Maximum combined channels.
    pub max_combined: u32,
    /// Current rx-only channels.
    pub rx: u32,
    /// Current tx-only channels.
    pub tx: u32,
    /// Current other channels.
    pub other: u32,
    /// Current combined channels.
    pub combined: u32,
}

impl Channels {
    /// Queues a worker can own (one rx + one tx): combined channels if the
    /// driver uses them, otherwise min(rx, tx).
    pub fn queue_pairs(&self) -> u32 {
        if self.max_combined > 0 {
            self.combined + self.rx.min(self.tx)
        } else {
            self.rx.min(self.tx)
        }
    }

    /// The most queue pairs the driver can be configured to.
    pub fn max_queue_pairs(&self) -> u32 {
        if self.max_combined > 0 {
            self.max_combined
        } else {
            self.max_rx.min(self.max_tx)
        }
    }

    /// The settings that give exactly `n` queue pairs (clamped to the maxima).
    pub fn with_queue_pairs(&self, n: u32) -> Self {
        let mut t = *self;
        if self.max_combined > 0 {
            t.combined = n.min(self.max_combined);
            // rx-only/tx-only channels would add queues nobody reads.
            t.rx = 0;
            t.tx = 0;
        } else {
            t.rx = n.min(self.max_rx);
            t.tx = n.min(self.max_tx);
        }
        t
    }

    /// Human form: `combined 4/8` or `rx 2/2 tx 2/2` (current/max).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, cur, max) in [
            ("combined", self.combined, self.max_combined),
            ("rx", self.rx, self.max_rx),
            ("tx", self.tx, self.max_tx),
            ("other", self.other, self.max_other),
        ] {
            if max > 0 {
                parts.push(format!("{name} {cur}/{max}"));
            }
        }
        if parts.is_empty() {
            "none reported".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_arithmetic() {
        let veth = Channels {
            max_rx: 2,
            max_tx: 2,
            rx: 2,
            tx: 2,
            ..Channels::default()
        };
        assert_eq!(veth.queue_pairs(), 2);
        assert_eq!(veth.max_queue_pairs(), 2);
        let one = veth.with_queue_pairs(1);
        assert_eq!((one.rx, one.tx, one.combined), (1, 1, 0));
        assert_eq!(veth.with_queue_pairs(9).rx, 2);
        let nic = Channels {
            max_combined: 64,
            combined: 8,
            max_other: 1,
            other: 1,
            ..Channels::default()
        };
        assert_eq!(nic.queue_pairs(), 8);
        assert_eq!(nic.max_queue_pairs(), 64);
        let t = nic.with_queue_pairs(4);
        assert_eq!((t.combined, t.other, t.rx), (4, 1, 0));
        assert_eq!(nic.describe(), "combined 8/64, other 1/1");
    }
}
