//! `--scenario topology`: MON on a Topology Zoo network (the paper ran the
//! AT&T network; the repository ships Abilene, 11 sites and 14 links), links
//! scaled down so that two cores carry every gateway: every planned flow
//! within 5 % of PFO's target on real packets, loss within the budget.

use super::{Options, Scenario, Summary, run};

/// A flow's delivered rate within this of its target counts (the 5 %).
pub const TOLERANCE: f64 = 0.05;

/// `--scenario topology`'s summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopologySummary {
    /// `topology`.
    pub scenario: Scenario,
    /// The network's name.
    pub network: String,
    /// Sites and links.
    pub sites: usize,
    /// WAN links.
    pub links: usize,
    /// Each link's rate each way, Mbit/s.
    pub link_mbps: f64,
    /// Planned flows (target > 0) and all flows.
    pub planned_flows: usize,
    /// The bound: every planned flow within this of its target.
    pub tolerance: f64,
    /// Largest |delivered - target| / target of a planned flow over the window.
    pub worst_error: f64,
    /// Largest loss of a planned flow over the window.
    pub worst_loss: f64,
    /// Planned flows whose controller sat at its safety cap most of the window.
    pub pinned: usize,
    /// Every bound met.
    pub ok: bool,
    /// One line.
    pub verdict: String,
    /// The run's plots (`--plots`), as in the run's `plots`: name -> file.
    pub plots: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The run.
    pub run: Summary,
}

/// Runs the demo on `o.topology`'s network.
pub fn run_topology(o: &Options) -> anyhow::Result<TopologySummary> {
    let t = o
        .topology
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--scenario topology needs a network"))?;
    let run = run(o)?;
    let planned: Vec<_> = run.flows.iter().filter(|f| f.target_mbps > 0.0).collect();
    let worst_loss = planned.iter().map(|f| f.loss).fold(0.0, f64::max);
    let pinned = planned
        .iter()
        .filter(|f| !f.floored && f.at_cap_share > 0.5)
        .count();
    let worst_error = run.worst_error;
    let ok = !planned.is_empty()
        && worst_error <= TOLERANCE
        && worst_loss <= run.loss_budget + 0.01
        && pinned == 0;
    let verdict = format!(
        "{}: {} sites, {} links of {} Mbit/s, {} planned flows; worst flow {:.2} % off its target (bound {:.0} %); worst loss {:.2} % (budget {:.1} % + 1 point); utility {:.2} of PFO's {:.2} ({:.1} %); {pinned} controller(s) pinned at the cap",
        if ok {
            "MONtra holds PFO's plan"
        } else {
            "MONtra does NOT hold PFO's plan"
        },
        t.graph.nodes.len(),
        t.graph.edges.len(),
        t.link_mbps,
        planned.len(),
        100.0 * worst_error,
        100.0 * TOLERANCE,
        100.0 * worst_loss,
        100.0 * run.loss_budget,
        run.utility.achieved,
        run.utility.optimum,
        100.0 * run.utility.ratio,
    );
    Ok(TopologySummary {
        scenario: Scenario::Topology,
        network: t.graph.name.clone(),
        sites: t.graph.nodes.len(),
        links: t.graph.edges.len(),
        link_mbps: t.link_mbps,
        planned_flows: planned.len(),
        tolerance: TOLERANCE,
        worst_error,
        worst_loss,
        pinned,
        ok,
        verdict,
        plots: run.plots.clone(),
        run,
    })
}
