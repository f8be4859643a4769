//! Applying a plan: channel counts, IRQ affinities, hugepages.
//!
//! [`channel_and_hugepage_actions`] and [`irq_actions`] are pure: they compare a
//! plan with what discovery found and list what must change, each change
//! printable as the equivalent shell line ([`Action::shell`]). [`run_apply`]
//! does the I/O: dry run by default, changes only when `execute` is true.
//! Channels are changed first and IRQs re-discovered afterwards, because a
//! driver may allocate new vectors (new IRQ numbers) when channels change.

use std::io::Write;

use crate::discover::ethtool::EthtoolSocket;
use crate::discover::{Channels, HostInfo, NicInfo, Roots, discover_host, discover_nic};
use crate::error::HwError;
use crate::parse::{format_cpulist, parse_u64};
use crate::plan::{ChannelTarget, DeploymentPlan};

/// One change to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `ethtool -L <if> ...`
    SetChannels {
        /// Interface.
        ifname: String,
        /// What the plan asks for.
        target: ChannelTarget,
        /// Current counts.
        from: Channels,
        /// Counts to set.
        to: Channels,
    },
    /// `echo <cpus> > /proc/irq/<irq>/smp_affinity_list`
    SetIrqAffinity {
        /// IRQ number.
        irq: u32,
        /// Interface and queue it serves (for messages).
        ifname: String,
        /// Queue index.
        queue: u32,
        /// Current affinity.
        from: Vec<u32>,
        /// New affinity.
        to: Vec<u32>,
    },
    /// `echo <n> > /sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages`
    ReserveHugepages {
        /// Page size (KiB).
        size_kb: u64,
        /// Currently reserved.
        from: u64,
        /// To reserve.
        to: u64,
    },
}

impl Action {
    /// The shell command doing the same thing.
    pub fn shell(&self, roots: &Roots) -> String {
        match self {
            Self::SetChannels { ifname, target, .. } => {
                format!("ethtool -L {ifname} {}", target.ethtool_args())
            }
            Self::SetIrqAffinity { irq, to, .. } => {
                format!(
                    "echo {} > {}",
                    format_cpulist(to),
                    roots.irq_affinity_path(*irq).display()
                )
            }
            Self::ReserveHugepages { size_kb, to, .. } => {
                format!(
                    "echo {to} > {}",
                    roots.nr_hugepages_path(*size_kb).display()
                )
            }
        }
    }

    /// A short comment: the value before the change (`was 0-1`).
    pub fn comment(&self) -> String {
        match self {
            Self::SetChannels { from, .. } => format!("was {}", from.describe()),
            Self::SetIrqAffinity {
                ifname,
                queue,
                from,
                ..
            } => {
                format!("{ifname} queue {queue}, was {}", format_cpulist(from))
            }
            Self::ReserveHugepages { from, .. } => format!("was {from}"),
        }
    }
}

fn find_nic<'a>(nics: &'a [NicInfo], ifname: &str) -> Result<&'a NicInfo, HwError> {
    nics.iter()
        .find(|n| n.ifname == ifname)
        .ok_or_else(|| HwError::NoSuchInterface(ifname.to_owned()))
}

/// Channel and hugepage changes needed (skipping ones already in place);
/// returns the actions and comments about what is already fine.
pub fn channel_and_hugepage_actions(
    plan: &DeploymentPlan,
    nics: &[NicInfo],
    host: &HostInfo,
) -> Result<(Vec<Action>, Vec<String>), HwError> {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for ip in &plan.interfaces {
        let nic = find_nic(nics, &ip.ifname)?;
        if ip.channels.is_empty() {
            continue;
        }
        let Some(cur) = nic.channels else {
            return Err(HwError::NotSupported {
                ifname: ip.ifname.clone(),
                what: "channel counts (ETHTOOL_GCHANNELS); remove its [interfaces.channels] from the plan".to_owned(),
            });
        };
        let to = ip.channels.apply_to(&cur);
        for (name, v, max) in [
            ("combined", to.combined, cur.max_combined),
            ("rx", to.rx, cur.max_rx),
            ("tx", to.tx, cur.max_tx),
        ] {
            if v > max {
                return Err(HwError::Plan(format!(
                    "{}: plan wants {name} {v} but the driver allows at most {max}: re-run `mongate-hwconfig plan`",
                    ip.ifname
                )));
            }
        }
        if to == cur {
            notes.push(format!(
                "{}: channels already {}",
                ip.ifname,
                cur.describe()
            ));
        } else {
            actions.push(Action::SetChannels {
                ifname: ip.ifname.clone(),
                target: ip.channels,
                from: cur,
                to,
            });
        }
    }
    if let Some(h) = plan.hugepages {
        let cur = host
            .hugepages
            .iter()
            .find(|p| p.size_kb == h.size_kb)
            .ok_or_else(|| {
                HwError::Plan(format!(
                    "no hugepages-{}kB pool on this kernel: change [hugepages] size_kb",
                    h.size_kb
                ))
            })?;
        if cur.total >= h.pages {
            notes.push(format!(
                "hugepages-{}kB: already {} reserved (>= {})",
                h.size_kb, cur.total, h.pages
            ));
        } else {
            actions.push(Action::ReserveHugepages {
                size_kb: h.size_kb,
                from: cur.total,
                to: h.pages,
            });
        }
    }
    Ok((actions, notes))
}

/// IRQ affinity changes: every IRQ of a worker's queue goes to the worker's
/// core. Uses the IRQ numbers in `nics` (fresh discovery), not the plan's.
pub fn irq_actions(
    plan: &DeploymentPlan,
    nics: &[NicInfo],
) -> Result<(Vec<Action>, Vec<String>), HwError> {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for w in &plan.workers {
        for q in &w.queues {
            let nic = find_nic(nics, &q.ifname)?;
            if !nic.has_device {
                continue;
            }
            let irqs: Vec<_> = nic.irqs.iter().filter(|i| i.queue == q.queue).collect();
            if irqs.is_empty() {
                notes.push(format!(
                    "{} queue {}: no IRQ found now{}",
                    q.ifname,
                    q.queue,
                    q.irq
                        .map(|i| format!(" (plan said {i})"))
                        .unwrap_or_default()
                ));
            }
            for i in irqs {
                if i.affinity == [w.core] {
                    notes.push(format!(
                        "irq {} ({}): already on core {}",
                        i.irq, i.name, w.core
                    ));
                } else {
                    actions.push(Action::SetIrqAffinity {
                        irq: i.irq,
                        ifname: q.ifname.clone(),
                        queue: q.queue,
                        from: i.affinity.clone(),
                        to: vec![w.core],
                    });
                }
            }
        }
    }
    let virt: Vec<&str> = nics
        .iter()
        .filter(|n| !n.has_device)
        .map(|n| n.ifname.as_str())
        .collect();
    if !virt.is_empty() {
        notes.push(format!("{}: virtual, no IRQs to pin", virt.join(", ")));
    }
    Ok((actions, notes))
}

/// Every interface the plan names (interfaces table and worker queues).
pub fn plan_ifnames(plan: &DeploymentPlan) -> Vec<String> {
    let mut v: Vec<String> = plan
        .interfaces
        .iter()
        .map(|i| i.ifname.clone())
        .chain(
            plan.workers
                .iter()
                .flat_map(|w| w.queues.iter().map(|q| q.ifname.clone())),
        )
        .collect();
    v.sort();
    v.dedup();
    v
}

fn perform(roots: &Roots, a: &Action) -> Result<(), HwError> {
    match a {
        Action::SetChannels { ifname, to, .. } => {
            let what = format!("{ifname}: ethtool -L");
            let sock =
                EthtoolSocket::open().map_err(|e| HwError::from_io(ifname, what.clone(), e))?;
            sock.set_channels(ifname, to).map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => HwError::Plan(format!(
                    "{ifname}: driver refused channels {} (EINVAL): check `ethtool -l {ifname}`; an attached XDP program or AF_XDP socket may pin the count",
                    to.describe()
                )),
                _ => HwError::from_io(ifname, what, e),
            })
        }
        Action::SetIrqAffinity { irq, to, .. } => {
            let path = roots.irq_affinity_path(*irq);
            std::fs::write(&path, format!("{}\n", format_cpulist(to))).map_err(|e| match e.raw_os_error() {
                Some(libc::EIO | libc::EINVAL) => HwError::Plan(format!(
                    "irq {irq}: kernel refused affinity {} (managed IRQ, or CPU offline); leave it to the driver",
                    format_cpulist(to)
                )),
                _ => HwError::from_io_cap("", format!("irq {irq}: writing {}", path.display()), "CAP_SYS_ADMIN", e),
            })
        }
        Action::ReserveHugepages { size_kb, to, .. } => {
            let path = roots.nr_hugepages_path(*size_kb);
            std::fs::write(&path, format!("{to}\n")).map_err(|e| {
                HwError::from_io_cap(
                    "",
                    format!("writing {}", path.display()),
                    "CAP_SYS_ADMIN",
                    e,
                )
            })?;
            let got = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| parse_u64(&t).ok())
                .unwrap_or(0);
            if got < *to {
                return Err(HwError::Plan(format!(
                    "hugepages-{size_kb}kB: asked {to}, kernel reserved {got} (memory fragmented): reserve at boot with hugepagesz=... hugepages={to}"
                )));
            }
            Ok(())
        }
    }
}

/// Applies (or, with `execute == false`, prints) the plan. Output lines are
/// shell equivalents; comments start with `#`.
pub fn run_apply(
    roots: &Roots,
    plan: &DeploymentPlan,
    execute: bool,
    out: &mut dyn Write,
) -> Result<(), HwError> {
    let io = |e: std::io::Error| HwError::Io {
        what: "writing output".to_owned(),
        source: e,
    };
    let names = plan_ifnames(plan);
    let discover_all = || {
        names
            .iter()
            .map(|n| discover_nic(roots, n))
            .collect::<Result<Vec<NicInfo>, HwError>>()
    };
    let nics = discover_all()?;
    let host = discover_host(roots);
    if !execute {
        writeln!(
            out,
            "# dry run: nothing is changed; re-run with --apply to do this"
        )
        .map_err(io)?;
    }
    let (first, notes) = channel_and_hugepage_actions(plan, &nics, &host)?;
    for n in &notes {
        writeln!(out, "# {n}").map_err(io)?;
    }
    for a in &first {
        writeln!(out, "{}    # {}", a.shell(roots), a.comment()).map_err(io)?;
        if execute {
            perform(roots, a)?;
        }
    }
    let channels_changed = first
        .iter()
        .any(|a| matches!(a, Action::SetChannels { .. }));
    let nics = if execute && channels_changed {
        discover_all()?
    } else {
        nics
    };
    let (second, notes) = irq_actions(plan, &nics)?;
    if !execute && channels_changed && !second.is_empty() {
        writeln!(
            out,
            "# IRQ numbers below are today's; --apply re-discovers them after the channel change"
        )
        .map_err(io)?;
    }
    for n in &notes {
        writeln!(out, "# {n}").map_err(io)?;
    }
    for a in &second {
        writeln!(out, "{}    # {}", a.shell(roots), a.comment()).map_err(io)?;
        if execute {
            perform(roots, a)?;
        }
    }
    if host.irqbalance_running && !second.is_empty() {
        writeln!(out, "# warning: irqbalance is running and will move these IRQs: systemctl disable --now irqbalance")
            .map_err(io)?;
    }
    if first.is_empty() && second.is_empty() {
        writeln!(out, "# nothing to change").map_err(io)?;
    } else if execute {
        writeln!(out, "# applied {} change(s)", first.len() + second.len()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{Hugepages, QueueIrq, XdpSupport};
    use crate::parse::interrupts::QueueDir;
    use crate::plan::{HugepagePlan, InterfacePlan, QueueAssignment, WorkerPlan};
    use crate::xdp::XdpMode;

    fn nic(ifname: &str, ch: Channels, irqs: Vec<QueueIrq>) -> NicInfo {
        NicInfo {
            ifname: ifname.into(),
            ifindex: None,
            driver: None,
            driver_version: None,
            firmware: None,
            bus_info: None,
            mtu: None,
            mac: None,
            operstate: "up".into(),
            carrier: None,
            numa_node: None,
            has_device: !irqs.is_empty(),
            channels: Some(ch),
            sysfs_rx_queues: 0,
            sysfs_tx_queues: 0,
            irqs,
            xdp: XdpSupport {
                generic: true,
                native: false,
                zero_copy: false,
                note: String::new(),
            },
            notes: vec![],
        }
    }

    fn irq(queue: u32, irq: u32, dir: QueueDir, aff: &[u32]) -> QueueIrq {
        QueueIrq {
            queue,
            dir,
            irq,
            name: format!("q{queue}"),
            affinity: aff.to_vec(),
            count: 0,
        }
    }

    fn plan(target: ChannelTarget, hp: Option<HugepagePlan>) -> DeploymentPlan {
        DeploymentPlan {
            xdp_mode: XdpMode::Native,
            zero_copy: false,
            warnings: vec![],
            hugepages: hp,
            interfaces: vec![InterfacePlan {
                ifname: "eth0".into(),
                driver: None,
                numa_node: None,
                channels: target,
            }],
            workers: (0..2)
                .map(|id| WorkerPlan {
                    id,
                    core: id + 2,
                    queues: vec![QueueAssignment {
                        ifname: "eth0".into(),
                        queue: id,
                        irq: None,
                        tx_irq: None,
                    }],
                })
                .collect(),
        }
    }

    fn host() -> HostInfo {
        HostInfo {
            kernel: String::new(),
            online_cpus: (0..4).collect(),
            isolated: vec![],
            nohz_full: vec![],
            numa_nodes: vec![],
            hugepages: vec![Hugepages {
                size_kb: 2048,
                total: 16,
                free: 16,
            }],
            irqbalance_running: false,
        }
    }

    #[test]
    fn lists_channel_irq_and_hugepage_changes() {
        let ch = Channels {
            max_combined: 8,
            combined: 4,
            ..Channels::default()
        };
        let nics = vec![nic(
            "eth0",
            ch,
            vec![
                irq(0, 40, QueueDir::Rx, &[0, 1]),
                irq(0, 41, QueueDir::Tx, &[2]),
                irq(1, 42, QueueDir::Both, &[3]),
            ],
        )];
        let p = plan(
            ChannelTarget {
                combined: Some(2),
                ..ChannelTarget::default()
            },
            Some(HugepagePlan {
                size_kb: 2048,
                pages: 64,
            }),
        );
        let (a, _) = channel_and_hugepage_actions(&p, &nics, &host()).unwrap();
        let roots = Roots::default();
        let lines: Vec<String> = a.iter().map(|a| a.shell(&roots)).collect();
        assert_eq!(
            lines,
            vec![
                "ethtool -L eth0 combined 2".to_owned(),
                "echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages".to_owned(),
            ]
        );
        let (a, notes) = irq_actions(&p, &nics).unwrap();
        let lines: Vec<String> = a.iter().map(|a| a.shell(&roots)).collect();
        // worker 0 is on core 2: irq 40 moves, irq 41 is already there;
        // worker 1 is on core 3 where irq 42 already is.
        assert_eq!(
            lines,
            vec!["echo 2 > /proc/irq/40/smp_affinity_list".to_owned()]
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn nothing_to_do_when_in_place_and_errors_when_missing() {
        let ch = Channels {
            max_rx: 2,
            max_tx: 2,
            rx: 2,
            tx: 2,
            ..Channels::default()
        };
        let nics = vec![nic("eth0", ch, vec![])];
        let p = plan(
            ChannelTarget {
                combined: None,
                rx: Some(2),
                tx: Some(2),
            },
            Some(HugepagePlan {
                size_kb: 2048,
                pages: 8,
            }),
        );
        let (a, notes) = channel_and_hugepage_actions(&p, &nics, &host()).unwrap();
        assert!(a.is_empty());
        assert_eq!(notes.len(), 2);
        let (a, notes) = irq_actions(&p, &nics).unwrap();
        assert!(a.is_empty());
        assert!(notes[0].contains("virtual"));
        let too_many = plan(
            ChannelTarget {
                combined: None,
                rx: Some(3),
                tx: Some(3),
            },
            None,
        );
        assert!(
            channel_and_hugepage_actions(&too_many, &nics, &host())
                .unwrap_err()
                .to_string()
                .contains("at most 2")
        );
        let other = vec![nic("eth1", ch, vec![])];
        assert_eq!(
            channel_and_hugepage_actions(&p, &other, &host())
                .unwrap_err()
                .to_string(),
            "eth0: no such interface (see `ip link`)"
        );
    }
}
