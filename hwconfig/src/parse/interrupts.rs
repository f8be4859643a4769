//! `/proc/interrupts` lines and the queue numbers hidden in IRQ names.
//!
//! Drivers name their per-queue MSI-X vectors in a handful of styles:
//! `eth0-TxRx-3` (ixgbe, igb, igc, bnxt_en), `i40e-eth0-TxRx-3`,
//! `ice-eth0-TxRx-3`, `eth0-rx-3` / `eth0-tx-3` (split vectors),
//! `eth0-fp-3` (qede), `virtio2-input.3` / `virtio2-output.3` (virtio_net,
//! named after the virtio device, not the interface) and
//! `mlx5_comp3@pci:0000:3b:00.0` (mlx5_core, named after the PCI address).
//! [`queue_of_irq_name`] understands all of them.

use serde::{Deserialize, Serialize};

/// Largest queue number we accept from an IRQ name (bounds parsing).
const MAX_QUEUE: u32 = 65_535;

/// One numbered line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrqLine {
    /// The IRQ number (first column).
    pub irq: u32,
    /// Interrupt count per CPU column, in header order.
    pub per_cpu: Vec<u64>,
    /// The action name: the last whitespace-separated token (`eth0-TxRx-3`).
    pub name: String,
}

/// Parses the whole text of `/proc/interrupts`. Lines that are not numbered
/// IRQs (`NMI:`, `LOC:`, the header) or that are malformed are skipped.
pub fn parse_interrupts(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let ncpu = lines
        .next()
        .map(|h| {
            h.split_whitespace()
                .filter(|t| t.starts_with("CPU"))
                .count()
        })
        .unwrap_or(0);
    lines.filter_map(|l| parse_line(l, ncpu)).collect()
}

fn parse_line(line: &str, ncpu: usize) -> Option<IrqLine> {
    let mut toks = line.split_whitespace();
    let irq = toks.next()?.strip_suffix(':')?.parse::<u32>().ok()?;
    let mut per_cpu = Vec::with_capacity(ncpu);
    let mut rest = Vec::new();
    for t in toks {
        if per_cpu.len() < ncpu
            && rest.is_empty()
            && let Ok(c) = t.parse::<u64>()
        {
            per_cpu.push(c);
            continue;
        }
        rest.push(t);
    }
    let name = (*rest.last()?).to_owned();
    Some(IrqLine { irq, per_cpu, name })
}

/// Which direction(s) of a queue an IRQ serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueDir {
    /// A combined rx+tx vector (`TxRx`, `comp`, `fp`).
    Both,
    /// Receive only (`rx`, `input`).
    Rx,
    /// Transmit only (`tx`, `output`).
    Tx,
}

/// The names under which an interface's IRQs may appear.
#[derive(Debug, Clone, Copy, Default)]
pub struct IrqIds<'a> {
    /// The interface name (`eth0`).
    pub ifname: &'a str,
    /// The parent device's own name when it is not a PCI function, e.g.
    /// `virtio2` (the basename of `/sys/class/net/<if>/device`).
    pub devname: Option<&'a str>,
    /// The bus address (`0000:3b:00.0`) from ETHTOOL_GDRVINFO / sysfs.
    pub bus_info: Option<&'a str>,
}

/// Extracts `(queue, direction)` from an IRQ action name if it names one of
/// the interface's queues, `None` otherwise (misc/config/async vectors,
/// other devices, garbage). Never panics.
pub fn queue_of_irq_name(name: &str, ids: &IrqIds<'_>) -> Option<(u32, QueueDir)> {
    let rest = remainder(name, ids)?;
    let digits_at = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, digits) = rest.split_at(digits_at);
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    let queue: u32 = digits.parse().ok().filter(|&q| q <= MAX_QUEUE)?;
    let head = head.to_ascii_lowercase();
    const NOT_QUEUES: [&str; 9] = [
        "config", "ctrl", "async", "misc", "other", "link", "lsc", "event", "mbx",
    ];
    if NOT_QUEUES.iter().any(|w| head.contains(w)) {
        return None;
    }
    const BOTH: [&str; 8] = [
        "txrx", "rxtx", "tx-rx", "rx-tx", "comp", "fp", "combined", "queue",
    ];
    let dir = if BOTH.iter().any(|w| head.contains(w)) {
        QueueDir::Both
    } else if head.contains("rx") || head.contains("input") {
        QueueDir::Rx
    } else if head.contains("tx") || head.contains("output") {
        QueueDir::Tx
    } else if head.chars().all(|c| matches!(c, '-' | '.' | '_')) {
        QueueDir::Both
    } else {
        return None;
    };
    Some((queue, dir))
}

/// The part of `name` after the component that identifies the interface.
fn remainder<'n>(name: &'n str, ids: &IrqIds<'_>) -> Option<&'n str> {
    if let Some(bus) = ids.bus_info.filter(|b| !b.is_empty())
        && let Some((head, tail)) = name.split_once('@')
        && tail.ends_with(bus)
    {
        return Some(head);
    }
    if let Some(dev) = ids.devname.filter(|d| !d.is_empty())
        && let Some(r) = name.strip_prefix(dev).and_then(|r| r.strip_prefix('-'))
    {
        return Some(r);
    }
    let ifname = ids.ifname;
    if ifname.is_empty() {
        return None;
    }
    for (idx, _) in name.match_indices(ifname) {
        let before_ok = idx == 0 || name[..idx].ends_with(['-', '_', '@', ':']);
        let after = &name[idx + ifname.len()..];
        if before_ok && let Some(r) = after.strip_prefix(['-', '.', '_', ':']) {
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "           CPU0       CPU1       \n\
  24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config\n\
 38:          0       2141 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n\
 39:       1538          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n\
NMI:          0          0   Non-maskable interrupts\n\
ERR:          0\n";

    #[test]
    fn parses_numbered_lines_only() {
        let v = parse_interrupts(SAMPLE);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].irq, 24);
        assert_eq!(v[0].per_cpu, vec![1, 0]);
        assert_eq!(v[0].name, "ACPI:Ged");
        assert_eq!(v[2].irq, 38);
        assert_eq!(v[2].per_cpu, vec![0, 2141]);
        assert_eq!(v[2].name, "virtio2-input.0");
    }

    fn ids<'a>(ifname: &'a str) -> IrqIds<'a> {
        IrqIds {
            ifname,
            devname: None,
            bus_info: None,
        }
    }

    #[test]
    fn recognises_driver_styles() {
        let eth = ids("eth0");
        assert_eq!(
            queue_of_irq_name("eth0-TxRx-3", &eth),
            Some((3, QueueDir::Both))
        );
        assert_eq!(
            queue_of_irq_name("i40e-eth0-TxRx-12", &eth),
            Some((12, QueueDir::Both))
        );
        assert_eq!(
            queue_of_irq_name("ice-eth0-TxRx-0", &eth),
            Some((0, QueueDir::Both))
        );
        assert_eq!(
            queue_of_irq_name("eth0-rx-1", &eth),
            Some((1, QueueDir::Rx))
        );
        assert_eq!(
            queue_of_irq_name("eth0-tx-1", &eth),
            Some((1, QueueDir::Tx))
        );
        assert_eq!(
            queue_of_irq_name("eth0-fp-2", &eth),
            Some((2, QueueDir::Both))
        );
        assert_eq!(queue_of_irq_name("eth0-5", &eth), Some((5, QueueDir::Both)));
        // the misc vector is named after the interface alone
        assert_eq!(queue_of_irq_name("eth0", &eth), None);
        // other interfaces whose names share a prefix
        assert_eq!(queue_of_irq_name("eth01-TxRx-3", &eth), None);
        assert_eq!(queue_of_irq_name("veth0-TxRx-3", &eth), None);
        let virtio = IrqIds {
            ifname: "eth0",
            devname: Some("virtio2"),
            bus_info: None,
        };
        assert_eq!(
            queue_of_irq_name("virtio2-input.0", &virtio),
            Some((0, QueueDir::Rx))
        );
        assert_eq!(
            queue_of_irq_name("virtio2-output.7", &virtio),
            Some((7, QueueDir::Tx))
        );
        assert_eq!(queue_of_irq_name("virtio2-config", &virtio), None);
        assert_eq!(queue_of_irq_name("virtio21-input.0", &virtio), None);
        let mlx = IrqIds {
            ifname: "ens1f0np0",
            devname: None,
            bus_info: Some("0000:3b:00.0"),
        };
        assert_eq!(
            queue_of_irq_name("mlx5_comp3@pci:0000:3b:00.0", &mlx),
            Some((3, QueueDir::Both))
        );
        assert_eq!(
            queue_of_irq_name("mlx5_async0@pci:0000:3b:00.0", &mlx),
            None
        );
        assert_eq!(queue_of_irq_name("mlx5_comp3@pci:0000:3b:00.1", &mlx), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse_interrupts(&s);
        }

        #[test]
        fn parse_never_panics_on_lines(lines in proptest::collection::vec("[0-9A-Za-z:. \\-]{0,60}", 0..8)) {
            let text = format!("CPU0 CPU1\n{}", lines.join("\n"));
            for l in parse_interrupts(&text) {
                prop_assert!(l.per_cpu.len() <= 2);
                prop_assert!(!l.name.is_empty());
            }
        }

        #[test]
        fn queue_name_never_panics(name in "\\PC*", ifname in "\\PC{0,8}", dev in "\\PC{0,8}") {
            let ids = IrqIds { ifname: &ifname, devname: Some(&dev), bus_info: Some(&dev) };
            if let Some((q, _)) = queue_of_irq_name(&name, &ids) {
                prop_assert!(q <= MAX_QUEUE);
            }
        }
    }
}
