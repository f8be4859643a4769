//! PFO's result, [`Solution`]: the `pfo --json` format and its human-readable table. The
//! control turns it into the dataplane's plan (`run/source.rs`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Outcome of a solve. `infeasible` does not exist: admitting no session is always feasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Gap within tolerance.
    Optimal,
    /// Stopped by the time limit: best solution and bound so far.
    TimeLimit,
}

/// Per class: admitted sessions and per-session total rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSolution {
    /// Class id.
    pub id: String,
    /// `n_c`.
    pub sessions: u32,
    /// Per-session total rate `sum_f x_f`.
    pub rate: f64,
}

/// Per flow: per-session rate and MONtra weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSolution {
    /// Flow id.
    pub id: String,
    /// `x_f`, rate of EACH admitted session on this route (also the MONtra rate cap).
    pub rate: f64,
    /// MONtra weight `w_f` (see `mapping`), scaled to the instance's loss budget.
    pub weight: f64,
    /// The weight is the mapping's floor (no priced link on the route): the
    /// gateway caps the flow at its target.
    #[serde(default)]
    pub floored: bool,
}

/// Per link: planned load and capacity dual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSolution {
    /// Link id.
    pub id: String,
    /// `sum_f n_c x_f` over the flows on the link.
    pub load: f64,
    /// `mu_l`.
    pub dual: f64,
}

/// A PFO solution (the `--json` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// Outcome.
    pub status: Status,
    /// Mission utility of this solution, evaluated with the exact utility functions.
    pub objective: f64,
    /// Proven upper bound on the optimum.
    pub bound: f64,
    /// `(bound - objective) / max(1, |bound|)`.
    pub gap: f64,
    /// Wall time of the solve.
    pub seconds: f64,
    /// Classes, in instance order.
    pub classes: Vec<ClassSolution>,
    /// Flows, in instance order.
    pub flows: Vec<FlowSolution>,
    /// Links, in instance order.
    pub links: Vec<LinkSolution>,
}

/// `(bound - objective) / max(1, |bound|)`.
pub fn relative_gap(objective: f64, bound: f64) -> f64 {
    ((bound - objective) / bound.abs().max(1.0)).max(0.0)
}

impl Solution {
    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let status = match self.status {
            Status::Optimal => "optimal",
            Status::TimeLimit => "time_limit",
        };
        let _ = writeln!(
            s,
            "status {status}  objective {:.6}  bound {:.6}  gap {:.2e}  {:.3} s",
            self.objective, self.bound, self.gap, self.seconds
        );
        let w = |v: &mut dyn Iterator<Item = usize>| v.max().unwrap_or(0).max(4);
        let cw = w(&mut self.classes.iter().map(|c| c.id.len()));
        let _ = writeln!(
            s,
            "\n{:<cw$}  {:>8}  {:>12}",
            "class", "sessions", "rate/session"
        );
        for c in &self.classes {
            let _ = writeln!(s, "{:<cw$}  {:>8}  {:>12.4}", c.id, c.sessions, c.rate);
        }
        let fw = w(&mut self.flows.iter().map(|f| f.id.len()));
        let _ = writeln!(
            s,
            "\n{:<fw$}  {:>12}  {:>12}",
            "flow", "rate/session", "weight"
        );
        for f in &self.flows {
            let _ = writeln!(s, "{:<fw$}  {:>12.4}  {:>12.6}", f.id, f.rate, f.weight);
        }
        let lw = w(&mut self.links.iter().map(|l| l.id.len()));
        let _ = writeln!(s, "\n{:<lw$}  {:>12}  {:>12}", "link", "load", "dual");
        for l in &self.links {
            let _ = writeln!(s, "{:<lw$}  {:>12.4}  {:>12.6}", l.id, l.load, l.dual);
        }
        s
    }
}
