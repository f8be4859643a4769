//! Deployment plans: worker -> core -> (interface, queue), IRQ -> same core.
//!
//! [`make_plan`] is pure: it takes discovered facts ([`HostInfo`],
//! [`NicInfo`]) and returns a [`DeploymentPlan`], which `mongate-dataplane`
//! reads back with [`plan_from_toml`].

use serde::{Deserialize, Serialize};

use crate::discover::{Channels, HostInfo, NicInfo};
use crate::error::HwError;
use crate::parse::format_cpulist;
use crate::xdp::XdpMode;

/// One (interface, queue) a worker owns, and the IRQ(s) serving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueAssignment {
    /// Interface name.
    pub ifname: String,
    /// Queue (channel) index; the AF_XDP socket binds here.
    pub queue: u32,
    /// IRQ of the queue (rx or combined); absent on virtual devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irq: Option<u32>,
    /// Separate tx IRQ, for drivers with split vectors (virtio_net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_irq: Option<u32>,
}

/// One worker thread: its core and its queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Worker id (0..n).
    pub id: u32,
    /// CPU the worker is pinned to; its queues' IRQs go there too.
    pub core: u32,
    /// One queue per interface.
    pub queues: Vec<QueueAssignment>,
}

/// Channel counts an interface should be set to (`ethtool -L`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTarget {
    /// Combined channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined: Option<u32>,
    /// rx channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx: Option<u32>,
    /// tx channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<u32>,
}

impl ChannelTarget {
    /// Target for `n` queue pairs given what the driver reports.
    pub fn for_queue_pairs(ch: &Channels, n: u32) -> Self {
        let t = ch.with_queue_pairs(n);
        if ch.max_combined > 0 {
            Self {
                combined: Some(t.combined),
                rx: (ch.rx > 0).then_some(0),
                tx: (ch.tx > 0).then_some(0),
            }
        } else {
            Self {
                combined: None,
                rx: (ch.max_rx > 0).then_some(t.rx),
                tx: (ch.max_tx > 0).then_some(t.tx),
            }
        }
    }

    /// Applies the target on top of current settings.
    pub fn apply_to(&self, cur: &Channels) -> Channels {
        let mut c = *cur;
        if let Some(v) = self.combined {
            c.combined = v;
        }
        if let Some(v) = self.rx {
            c.rx = v;
        }
        if let Some(v) = self.tx {
            c.tx = v;
        }
        c
    }

    /// True if nothing is to be set.
    pub fn is_empty(&self) -> bool {
        self.combined.is_none() && self.rx.is_none() && self.tx.is_none()
    }

    /// `combined 2` / `rx 1 tx 1`: the `ethtool -L` arguments.
    pub fn ethtool_args(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("combined", self.combined),
            ("rx", self.rx),
            ("tx", self.tx),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k} {v}"));
            }
        }
        parts.join(" ")
    }
}

/// What to do with one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfacePlan {
    /// Interface name.
    pub ifname: String,
    /// Driver, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// NUMA node of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// Channel counts to set; empty if the driver cannot change them.
    #[serde(default)]
    pub channels: ChannelTarget,
}

/// Hugepages to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepagePlan {
    /// Page size in KiB (2048 or 1048576).
    pub size_kb: u64,
    /// Minimum `nr_hugepages` wanted.
    pub pages: u64,
}

/// The deployment plan, written as TOML/JSON and read by the dataplane.
///
/// Scalars come first so the TOML has plain keys before tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// XDP attach mode for every interface.
    pub xdp_mode: XdpMode,
    /// Ask for AF_XDP zero-copy binds (fall back to copy if refused).
    pub zero_copy: bool,
    /// Things the operator should know or fix.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Hugepages to reserve, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugepages: Option<HugepagePlan>,
    /// Per-interface settings.
    #[serde(default)]
    pub interfaces: Vec<InterfacePlan>,
    /// Workers, by id.
    pub workers: Vec<WorkerPlan>,
}

/// What to plan for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRequest {
    /// Worker count; None = one per usable core, capped by queue capacity.
    pub workers: Option<u32>,
    /// Hugepages to reserve, if any.
    pub hugepages: Option<HugepagePlan>,
}

/// Orders the cores workers may use: skip core 0 when there are more than
/// two cores; then cores on the NIC's NUMA node first, isolated ones next,
/// core 0 (the housekeeping core) last.
pub fn usable_cores(host: &HostInfo, nic_node: Option<u32>) -> Vec<u32> {
    let mut cores: Vec<u32> = host.online_cpus.clone();
    if cores.len() > 2 {
        cores.retain(|&c| c != 0);
    }
    cores.sort_by_key(|&c| {
        let local = nic_node.is_none_or(|n| host.node_of_cpu(c) == Some(n));
        let isolated = host.isolated.contains(&c);
        (!local, !isolated, c == 0, c)
    });
    cores
}

/// Builds the plan. Errors say which flag to change.
pub fn make_plan(
    host: &HostInfo,
    nics: &[NicInfo],
    req: &PlanRequest,
) -> Result<DeploymentPlan, HwError> {
    if nics.is_empty() {
        return Err(HwError::Plan(
            "no interfaces given: use --interfaces IF[,IF]".to_owned(),
        ));
    }
    for (i, n) in nics.iter().enumerate() {
        if nics[..i].iter().any(|m| m.ifname == n.ifname) {
            return Err(HwError::Plan(format!(
                "{}: interface listed twice",
                n.ifname
            )));
        }
    }
    let mut warnings = Vec::new();

    let nodes: Vec<u32> = nics.iter().filter_map(|n| n.numa_node).collect();
    let nic_node = nodes.first().copied();
    if nodes.iter().any(|&n| Some(n) != nic_node) {
        warnings.push(format!(
            "interfaces are on different NUMA nodes; workers are placed on node {} (the first interface's)",
            nic_node.unwrap_or(0)
        ));
    }
    let cores = usable_cores(host, nic_node);
    if cores.is_empty() {
        return Err(HwError::Plan(
            "no online CPUs found (is /sys mounted?)".to_owned(),
        ));
    }

    // Queue capacity: every worker owns one queue on every interface.
    let (cap_if, capacity) = nics
        .iter()
        .map(|n| (n.ifname.as_str(), n.max_queue_pairs()))
        .min_by_key(|&(_, c)| c)
        .unwrap_or(("", 0));
    if capacity == 0 {
        return Err(HwError::Plan(format!(
            "{cap_if}: reports no rx/tx queues; cannot place workers"
        )));
    }
    let n = match req.workers {
        Some(0) => return Err(HwError::Plan("--workers must be at least 1".to_owned())),
        Some(w) => {
            let ncores = u32::try_from(cores.len()).unwrap_or(u32::MAX);
            if w > ncores {
                return Err(HwError::Plan(format!(
                    "{w} workers but only {ncores} usable cores ({}): use --workers {ncores} or fewer",
                    format_cpulist(&cores)
                )));
            }
            if w > capacity {
                return Err(HwError::Plan(format!(
                    "{cap_if}: at most {capacity} queues, {w} workers asked: use --workers {capacity} or fewer"
                )));
            }
            w
        }
        None => {
            let ncores = u32::try_from(cores.len()).unwrap_or(u32::MAX);
            if capacity < ncores {
                warnings.push(format!(
                    "{cap_if}: at most {capacity} queues: using {capacity} workers, not one per usable core ({ncores})"
                ));
            }
            ncores.min(capacity)
        }
    };
    let chosen: Vec<u32> = cores
        .iter()
        .copied()
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .collect();

    let isolate: Vec<u32> = chosen.iter().copied().filter(|&c| c != 0).collect();
    if host.isolated.is_empty() && isolate.is_empty() {
        warnings.push(
            "no isolated cores (and only core 0 is used, which cannot be isolated)".to_owned(),
        );
    } else if host.isolated.is_empty() {
        warnings.push(format!(
            "no isolated cores: for steady latency boot with isolcpus={c} nohz_full={c} rcu_nocbs={c}",
            c = format_cpulist(&isolate)
        ));
    } else if let Some(c) = chosen.iter().find(|c| !host.isolated.contains(c)) {
        warnings.push(format!(
            "core {c} is not isolated (isolated: {})",
            format_cpulist(&host.isolated)
        ));
    }
    if let Some(node) = nic_node
        && let Some(c) = chosen.iter().find(|&&c| host.node_of_cpu(c) != Some(node))
    {
        warnings.push(format!("core {c} is not on the NIC's NUMA node {node}"));
    }
    if host.irqbalance_running && nics.iter().any(|n| !n.irqs.is_empty()) {
        warnings.push(
            "irqbalance is running and will undo IRQ pinning: systemctl disable --now irqbalance"
                .to_owned(),
        );
    }

    let mut interfaces = Vec::new();
    for nic in nics {
        let channels = match nic.channels {
            Some(ch) if ch.max_queue_pairs() > 0 => {
                if ch.queue_pairs() != n {
                    warnings.push(format!(
                        "{}: channels will change from {} to {n} queue pairs (apply)",
                        nic.ifname,
                        ch.queue_pairs()
                    ));
                }
                ChannelTarget::for_queue_pairs(&ch, n)
            }
            _ => {
                if nic.queue_pairs() > n {
                    warnings.push(format!(
                        "{}: has {} queues and its count cannot be changed: traffic hashed to queues {n}.. is not read",
                        nic.ifname,
                        nic.queue_pairs()
                    ));
                }
                ChannelTarget::default()
            }
        };
        if !nic.has_device {
            warnings.push(format!("{}: virtual device, no IRQs to pin", nic.ifname));
        } else {
            let missing: Vec<u32> = (0..n)
                .filter(|&q| nic.irqs_of_queue(q).0.is_none())
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "{}: no IRQ found for queue(s) {} (may appear after apply changes channels)",
                    nic.ifname,
                    format_cpulist(&missing)
                ));
            }
        }
        interfaces.push(InterfacePlan {
            ifname: nic.ifname.clone(),
            driver: nic.driver.clone(),
            numa_node: nic.numa_node,
            channels,
        });
    }

    let all_native = nics.iter().all(|n| n.xdp.native);
    let xdp_mode = if all_native {
        XdpMode::Native
    } else {
        XdpMode::Generic
    };
    if !all_native {
        let generic: Vec<&str> = nics
            .iter()
            .filter(|n| !n.xdp.native)
            .map(|n| n.ifname.as_str())
            .collect();
        warnings.push(format!(
            "generic (skb) XDP because of {}: expect far lower packet rates",
            generic.join(", ")
        ));
    }
    let zero_copy = all_native && nics.iter().all(|n| n.xdp.zero_copy);
    for nic in nics {
        if !nic.xdp.note.is_empty() && nic.xdp.native {
            warnings.push(format!(
                "{} ({}): {}",
                nic.ifname,
                nic.driver.as_deref().unwrap_or("?"),
                nic.xdp.note
            ));
        }
    }

    if let Some(h) = req.hugepages {
        match host.hugepages.iter().find(|p| p.size_kb == h.size_kb) {
            None => {
                return Err(HwError::Plan(format!(
                    "no {} kB hugepages on this kernel: use --hugepage-size 2M",
                    h.size_kb
                )));
            }
            Some(p) if p.total < h.pages => warnings.push(format!(
                "hugepages-{}kB: {} reserved, apply will raise it to {}",
                h.size_kb, p.total, h.pages
            )),
            Some(_) => {}
        }
    }

    let workers = chosen
        .iter()
        .zip(0u32..)
        .map(|(&core, id)| WorkerPlan {
            id,
            core,
            queues: nics
                .iter()
                .map(|nic| {
                    let (irq, tx_irq) = nic.irqs_of_queue(id);
                    QueueAssignment {
                        ifname: nic.ifname.clone(),
                        queue: id,
                        irq,
                        tx_irq,
                    }
                })
                .collect(),
        })
        .collect();

    Ok(DeploymentPlan {
        xdp_mode,
        zero_copy,
        warnings,
        hugepages: req.hugepages,
        interfaces,
        workers,
    })
}

impl DeploymentPlan {
    /// Serialises as TOML.
    pub fn to_toml(&self) -> Result<String, HwError> {
        toml::to_string_pretty(self)
            .map_err(|e| HwError::Plan(format!("cannot write plan as TOML: {e}")))
    }

    /// Serialises as pretty JSON.
    pub fn to_json(&self) -> Result<String, HwError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| HwError::Plan(format!("cannot write plan as JSON: {e}")))
    }

    /// Checks internal consistency (unique worker ids and cores, one queue
    /// per interface per worker, no queue owned twice).
    pub fn validate(&self) -> Result<(), String> {
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(o) = self.workers[..i].iter().find(|o| o.id == w.id) {
                return Err(format!("worker id {} appears twice", o.id));
            }
            if let Some(o) = self.workers[..i].iter().find(|o| o.core == w.core) {
                return Err(format!(
                    "workers {} and {} share core {}",
                    o.id, w.id, w.core
                ));
            }
            for q in &w.queues {
                let owners = self
                    .workers
                    .iter()
                    .flat_map(|o| &o.queues)
                    .filter(|p| p.ifname == q.ifname && p.queue == q.queue)
                    .count();
                if owners > 1 {
                    return Err(format!(
                        "{} queue {} is owned by more than one worker",
                        q.ifname, q.queue
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses a plan (TOML or, if the text starts with `{`, JSON) and validates it.
pub fn plan_from_str(text: &str) -> Result<DeploymentPlan, String> {
    let plan: DeploymentPlan = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        toml::from_str(text).map_err(|e| e.to_string())?
    };
    plan.validate()?;
    Ok(plan)
}

/// Parses and validates a TOML plan.
pub fn plan_from_toml(text: &str) -> Result<DeploymentPlan, String> {
    let plan: DeploymentPlan = toml::from_str(text).map_err(|e| e.to_string())?;
    plan.validate()?;
    Ok(plan)
}

#[cfg(test)]
mod tests;
