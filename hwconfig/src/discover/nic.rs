//! Per-interface discovery.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ethtool::EthtoolSocket;
use super::{Channels, Roots, read_opt};
use crate::error::HwError;
use crate::parse::interrupts::{IrqIds, QueueDir};
use crate::parse::{
    parse_cpulist, parse_interrupts, parse_numa_node, parse_u64, queue_of_irq_name,
};
use crate::xdp::driver_xdp;

/// One per-queue IRQ and where it may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueIrq {
    /// Queue (channel) index.
    pub queue: u32,
    /// rx, tx or both.
    pub dir: QueueDir,
    /// IRQ number.
    pub irq: u32,
    /// Action name in `/proc/interrupts`.
    pub name: String,
    /// CPUs allowed by `/proc/irq/N/smp_affinity_list` (empty if unreadable).
    pub affinity: Vec<u32>,
    /// Interrupts so far, all CPUs.
    pub count: u64,
}

/// XDP capabilities of the interface's driver (see [`crate::xdp`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpSupport {
    /// Generic (skb) mode: always true.
    pub generic: bool,
    /// Native (driver) mode per the driver table.
    pub native: bool,
    /// AF_XDP zero-copy per the driver table.
    pub zero_copy: bool,
    /// Caveats from the table, or why we assume generic only.
    pub note: String,
}

/// Everything discovered about one network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicInfo {
    /// Interface name.
    pub ifname: String,
    /// Interface index.
    pub ifindex: Option<u32>,
    /// Driver (ethtool, else the sysfs `device/driver` link).
    pub driver: Option<String>,
    /// Driver version (ethtool).
    pub driver_version: Option<String>,
    /// Firmware version (ethtool).
    pub firmware: Option<String>,
    /// Bus address (`0000:3b:00.0`).
    pub bus_info: Option<String>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
    /// MAC address.
    pub mac: Option<String>,
    /// `operstate` (`up`, `down`, `unknown`...).
    pub operstate: String,
    /// Carrier (None when the link is administratively down).
    pub carrier: Option<bool>,
    /// NUMA node of the device, None if not NUMA-attached or virtual.
    pub numa_node: Option<u32>,
    /// True if `/sys/class/net/<if>/device` exists (a real, bus-attached device).
    pub has_device: bool,
    /// Channel counts (ETHTOOL_GCHANNELS); None if the driver has none.
    pub channels: Option<Channels>,
    /// Number of `queues/rx-*` directories.
    pub sysfs_rx_queues: u32,
    /// Number of `queues/tx-*` directories.
    pub sysfs_tx_queues: u32,
    /// Per-queue IRQs, sorted by queue.
    pub irqs: Vec<QueueIrq>,
    /// XDP capabilities.
    pub xdp: XdpSupport,
    /// Things worth saying (virtual device, missing data...).
    pub notes: Vec<String>,
}

impl NicInfo {
    /// Queue pairs a worker can own now (channels, else sysfs queue dirs).
    pub fn queue_pairs(&self) -> u32 {
        match self.channels {
            Some(c) if c.queue_pairs() > 0 => c.queue_pairs(),
            _ => self.sysfs_rx_queues.min(self.sysfs_tx_queues),
        }
    }

    /// Most queue pairs possible (channel maxima, else the current count).
    pub fn max_queue_pairs(&self) -> u32 {
        match self.channels {
            Some(c) if c.max_queue_pairs() > 0 => c.max_queue_pairs(),
            _ => self.queue_pairs(),
        }
    }

    /// The IRQ serving rx (or rx+tx) of `queue`, and the tx-only one if split.
    pub fn irqs_of_queue(&self, queue: u32) -> (Option<u32>, Option<u32>) {
        let of = |want: &[QueueDir]| {
            self.irqs
                .iter()
                .find(|q| q.queue == queue && want.contains(&q.dir))
                .map(|q| q.irq)
        };
        (of(&[QueueDir::Both, QueueDir::Rx]), of(&[QueueDir::Tx]))
    }
}

/// Checks that `ifname` could be an interface name (so it is safe in paths).
pub fn validate_ifname(ifname: &str) -> Result<(), HwError> {
    let ok = !ifname.is_empty()
        && ifname.len() < libc::IFNAMSIZ
        && ifname != "."
        && ifname != ".."
        && !ifname.contains(['/', '\0', ':'])
        && !ifname.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(HwError::BadInterfaceName(ifname.to_owned()))
    }
}

fn read_trim(path: &Path) -> Option<String> {
    read_opt(path).map(|s| s.trim().to_owned())
}

fn basename_of_link(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn count_prefixed(dir: &Path, prefix: &str) -> u32 {
    std::fs::read_dir(dir)
        .map(|rd| {
            let n = rd
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
        .unwrap_or(0)
}

fn msi_irqs(dev: &Path) -> Vec<u32> {
    for dir in [dev.join("msi_irqs"), dev.join("../msi_irqs")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut v: Vec<u32> = rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect();
            v.sort_unstable();
            return v;
        }
    }
    Vec::new()
}

/// Discovers one interface. Fails only if it does not exist (or the name is
/// invalid); anything unreadable becomes `None` plus a note.
pub fn discover_nic(roots: &Roots, ifname: &str) -> Result<NicInfo, HwError> {
    validate_ifname(ifname)?;
    let dir = roots.net_dir(ifname);
    if !dir.exists() {
        return Err(HwError::NoSuchInterface(ifname.to_owned()));
    }
    let mut notes = Vec::new();
    let sock = if roots.use_ethtool {
        EthtoolSocket::open().ok()
    } else {
        None
    };
    let drv = sock.as_ref().and_then(|s| s.drvinfo(ifname).ok());
    let channels = match &sock {
        Some(s) => match s.channels(ifname) {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!(
                    "driver reports no channels (ETHTOOL_GCHANNELS: {e}); queue count from sysfs, fixed"
                ));
                None
            }
        },
        None => None,
    };

    let dev = dir.join("device");
    let has_device = dev.exists();
    let devname = std::fs::canonicalize(&dev)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let sysfs_driver = basename_of_link(&dev.join("driver"));
    let nonempty = |s: &String| !s.is_empty();
    let driver = drv
        .as_ref()
        .map(|d| d.driver.clone())
        .filter(nonempty)
        .or(sysfs_driver);
    let bus_info = drv
        .as_ref()
        .map(|d| d.bus_info.clone())
        .filter(nonempty)
        .or_else(|| {
            // sysfs fallback: the PCI function is the device itself or (virtio) its parent
            [dev.clone(), dev.join("..")]
                .into_iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .find(|n| n.len() == 12 && n.as_bytes().get(4) == Some(&b':'))
        });
    let numa_node = if has_device {
        [dev.join("numa_node"), dev.join("../numa_node")]
            .iter()
            .find_map(|p| read_opt(p))
            .and_then(|t| parse_numa_node(&t).ok().flatten())
    } else {
        None
    };

    let queues_dir = dir.join("queues");
    let sysfs_rx_queues = count_prefixed(&queues_dir, "rx-");
    let sysfs_tx_queues = count_prefixed(&queues_dir, "tx-");

    let irqs = if has_device {
        let msi = msi_irqs(&dev);
        let ids = IrqIds {
            ifname,
            devname: devname.as_deref().filter(|d| !d.starts_with("0000:")),
            bus_info: bus_info.as_deref(),
        };
        let text = read_opt(&roots.proc.join("interrupts")).unwrap_or_default();
        let mut v: Vec<QueueIrq> = parse_interrupts(&text)
            .into_iter()
            .filter(|l| msi.is_empty() || msi.contains(&l.irq))
            .filter_map(|l| {
                let (queue, dir) = queue_of_irq_name(&l.name, &ids)?;
                let affinity = read_opt(&roots.irq_affinity_path(l.irq))
                    .and_then(|t| parse_cpulist(&t).ok())
                    .unwrap_or_default();
                Some(QueueIrq {
                    queue,
                    dir,
                    irq: l.irq,
                    name: l.name,
                    affinity,
                    count: l.per_cpu.iter().sum(),
                })
            })
            .collect();
        v.sort_by_key(|q| (q.queue, q.irq));
        if v.is_empty() {
            notes.push("no per-queue IRQs found in /proc/interrupts (driver names them in a way we don't know?)".to_owned());
        }
        v
    } else {
        notes.push(
            "virtual device (no device dir in sysfs): no IRQs to pin, no NUMA node; its queues are software queues".to_owned(),
        );
        Vec::new()
    };

    let xdp = match driver.as_deref().and_then(driver_xdp) {
        Some(d) => XdpSupport {
            generic: true,
            native: d.native,
            zero_copy: d.zero_copy,
            note: d.note.to_owned(),
        },
        None => XdpSupport {
            generic: true,
            native: false,
            zero_copy: false,
            note: format!(
                "driver {} not in the native-XDP table: generic (skb) mode only",
                driver.as_deref().unwrap_or("(none)")
            ),
        },
    };

    let carrier = read_trim(&dir.join("carrier")).and_then(|t| match t.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    });
    Ok(NicInfo {
        ifname: ifname.to_owned(),
        ifindex: read_opt(&dir.join("ifindex"))
            .and_then(|t| parse_u64(&t).ok())
            .and_then(|v| u32::try_from(v).ok()),
        driver,
        driver_version: drv.as_ref().map(|d| d.version.clone()).filter(nonempty),
        firmware: drv.as_ref().map(|d| d.firmware.clone()).filter(nonempty),
        bus_info,
        mtu: read_opt(&dir.join("mtu"))
            .and_then(|t| parse_u64(&t).ok())
            .and_then(|v| u32::try_from(v).ok()),
        mac: read_trim(&dir.join("address")).filter(nonempty),
        operstate: read_trim(&dir.join("operstate")).unwrap_or_else(|| "unknown".to_owned()),
        carrier,
        numa_node,
        has_device,
        channels,
        sysfs_rx_queues,
        sysfs_tx_queues,
        irqs,
        xdp,
        notes,
    })
}

/// Lists interface names in `/sys/class/net` (sorted).
pub fn list_interfaces(roots: &Roots) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(roots.sys.join("class/net"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// A fake sysfs/procfs with a virtio NIC (device two levels down, IRQs
    /// named after the virtio device) and a veth (no device dir).
    fn fake_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "sys/devices/pci0000:00/0000:00:03.0/numa_node", "0\n");
        write(
            r,
            "sys/devices/pci0000:00/0000:00:03.0/msi_irqs/37",
            "msix\n",
        );
        write(
            r,
            "sys/devices/pci0000:00/0000:00:03.0/msi_irqs/38",
            "msix\n",
        );
        write(
            r,
            "sys/devices/pci0000:00/0000:00:03.0/msi_irqs/39",
            "msix\n",
        );
        fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2")).unwrap();
        fs::create_dir_all(r.join("sys/bus/virtio/drivers/virtio_net")).unwrap();
        std::os::unix::fs::symlink(
            r.join("sys/bus/virtio/drivers/virtio_net"),
            r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2/driver"),
        )
        .unwrap();
        write(r, "sys/class/net/eth0/mtu", "1400\n");
        write(r, "sys/class/net/eth0/address", "02:fc:00:00:00:01\n");
        write(r, "sys/class/net/eth0/operstate", "up\n");
        write(r, "sys/class/net/eth0/carrier", "1\n");
        write(r, "sys/class/net/eth0/ifindex", "4\n");
        fs::create_dir_all(r.join("sys/class/net/eth0/queues/rx-0")).unwrap();
        fs::create_dir_all(r.join("sys/class/net/eth0/queues/tx-0")).unwrap();
        std::os::unix::fs::symlink(
            r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2"),
            r.join("sys/class/net/eth0/device"),
        )
        .unwrap();
        write(r, "sys/class/net/veth0/mtu", "1500\n");
        write(r, "sys/class/net/veth0/operstate", "down\n");
        for q in ["rx-0", "rx-1", "tx-0", "tx-1"] {
            fs::create_dir_all(r.join("sys/class/net/veth0/queues").join(q)).unwrap();
        }
        write(
            r,
            "proc/interrupts",
            "           CPU0       CPU1\n\
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config\n\
 38:          5       2141 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n\
 39:       1538          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n\
 40:          1          1 PCI-MSIX-0000:00:04.0   1-edge      virtio3-input.0\n",
        );
        write(r, "proc/irq/38/smp_affinity_list", "1\n");
        write(r, "proc/irq/39/smp_affinity_list", "0-1\n");
        t
    }

    fn roots(t: &tempfile::TempDir) -> Roots {
        Roots {
            sys: t.path().join("sys"),
            proc: t.path().join("proc"),
            use_ethtool: false,
        }
    }

    #[test]
    fn discovers_virtio_nic_from_sysfs() {
        let t = fake_tree();
        let n = discover_nic(&roots(&t), "eth0").unwrap();
        assert_eq!(n.driver.as_deref(), Some("virtio_net"));
        assert_eq!(n.bus_info.as_deref(), Some("0000:00:03.0"));
        assert_eq!(n.mtu, Some(1400));
        assert_eq!(n.ifindex, Some(4));
        assert_eq!(n.carrier, Some(true));
        assert_eq!(n.numa_node, Some(0));
        assert!(n.has_device);
        assert_eq!((n.sysfs_rx_queues, n.sysfs_tx_queues), (1, 1));
        assert_eq!(n.queue_pairs(), 1);
        let irqs: Vec<(u32, u32, QueueDir)> =
            n.irqs.iter().map(|q| (q.irq, q.queue, q.dir)).collect();
        assert_eq!(irqs, vec![(38, 0, QueueDir::Rx), (39, 0, QueueDir::Tx)]);
        assert_eq!(n.irqs[0].affinity, vec![1]);
        assert_eq!(n.irqs[0].count, 2146);
        assert_eq!(n.irqs_of_queue(0), (Some(38), Some(39)));
        assert!(n.xdp.native);
    }

    #[test]
    fn veth_has_no_irqs_and_says_so() {
        let t = fake_tree();
        let n = discover_nic(&roots(&t), "veth0").unwrap();
        assert!(!n.has_device);
        assert!(n.irqs.is_empty());
        assert_eq!(n.queue_pairs(), 2);
        assert!(n.notes.iter().any(|s| s.contains("virtual device")));
        assert!(!n.xdp.native, "no driver known without ethtool");
        assert!(n.xdp.generic);
    }

    #[test]
    fn missing_and_bad_names() {
        let t = fake_tree();
        let e = discover_nic(&roots(&t), "eth9").unwrap_err();
        assert_eq!(e.to_string(), "eth9: no such interface (see `ip link`)");
        assert!(matches!(
            discover_nic(&roots(&t), "../x"),
            Err(HwError::BadInterfaceName(_))
        ));
        assert!(matches!(
            discover_nic(&roots(&t), ""),
            Err(HwError::BadInterfaceName(_))
        ));
        assert_eq!(list_interfaces(&roots(&t)), vec!["eth0", "veth0"]);
    }
}
