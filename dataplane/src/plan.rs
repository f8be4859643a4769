//! The plan: admitted sessions per class, target rate and MONtra weight per
//! flow, tagged with an epoch. One resolved form, [`PlanTable`] (dense arrays
//! by configuration index), goes from the control's plan source to the
//! workers; [`PlanFile`] is the same plan by id (a file, the TOML `[plan]`, a
//! plan shared by the organisation), turned into a table by
//! [`PlanFile::resolve`] and nowhere else.
//!
//! How a plan reaches a worker, in three files:
//! 1. `control/src/run/source.rs`: a plan source (the local PFO solver)
//!    produces a [`PlanTable`] for the site's configuration and checks it
//!    ([`PlanTable::check`]);
//! 2. this file: the table, its shape and its checks;
//! 3. `dataplane/src/shm/plan.rs`: the table as ring entries, chunks and a
//!    commit; each worker's `PlanAssembler` fills a preallocated table,
//!    checks it once more (it enters the dataplane process there) and
//!    switches to it on the active-epoch word; the worker then hands it to
//!    `overlay::Gateway::switch_plan` (admission limits, pacer rates,
//!    controller targets), which looks nothing up and checks nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What a plan is checked against: the number of classes and the class
/// index of each flow (from the running [`Config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanShape {
    flow_class: Vec<u32>,
    /// Flow indices of each class.
    class_flows: Vec<Vec<u32>>,
    /// Peers of the site (for the detours' spare capacity).
    peers: usize,
}

impl PlanShape {
    /// `classes` classes; flow `i` belongs to class `flow_class[i]` (a class
    /// out of range belongs to none: its flows never carry sessions).
    pub fn new(classes: usize, flow_class: Vec<u32>) -> Self {
        let mut class_flows = vec![Vec::new(); classes];
        for (f, &c) in flow_class.iter().enumerate() {
            if let (Some(v), Ok(f)) = (
                usize::try_from(c).ok().and_then(|c| class_flows.get_mut(c)),
                u32::try_from(f),
            ) {
                v.push(f);
            }
        }
        Self {
            flow_class,
            class_flows,
            peers: 0,
        }
    }
    /// The same shape for a site with `peers` peers (the plan's detour table is
    /// `peers x peers`).
    pub fn with_peers(mut self, peers: usize) -> Self {
        self.peers = peers;
        self
    }
    /// The shape of a configuration (flows whose class is unknown, which the
    /// loader rejects anyway, belong to no class).
    pub fn from_config(cfg: &Config) -> Self {
        let class = Ids::new("class", cfg.classes.iter().map(|c| c.id.as_str())).index;
        let flow_class = cfg
            .flows
            .iter()
            .map(|f| {
                class
                    .get(f.class.as_str())
                    .and_then(|&i| u32::try_from(i).ok())
                    .unwrap_or(u32::MAX)
            })
            .collect();
        Self::new(cfg.classes.len(), flow_class).with_peers(cfg.peers.len())
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_flows.len()
    }
    /// Number of flows.
    pub fn flows(&self) -> usize {
        self.flow_class.len()
    }
    /// Number of peers.
    pub fn peers(&self) -> usize {
        self.peers
    }
    /// Entries of the detour table: `peers x peers`.
    pub fn detours(&self) -> usize {
        self.peers.saturating_mul(self.peers)
    }
    /// Class index of flow `f` (`u32::MAX`: none).
    pub fn flow_class(&self, f: usize) -> u32 {
        self.flow_class.get(f).copied().unwrap_or(u32::MAX)
    }
}

/// A plan resolved against one configuration: dense arrays by configuration
/// class and flow index, sized by its [`PlanShape`] (classes and flows without
/// a target are zero). The `Default` is the empty plan of epoch 0 with no
/// entries, which admits nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanTable {
    /// Plan generation; a dataplane ignores plans older than the one it runs
    /// (0: the empty plan a worker starts with).
    pub epoch: u64,
    /// Admitted sessions `n_c` per class index.
    pub sessions: Vec<u32>,
    /// Target rate `x_f` of EACH admitted session, Mbit/s, per flow index.
    pub rate_mbps: Vec<f64>,
    /// MONtra weight `w_f` per flow index.
    pub weight: Vec<f64>,
    /// Per flow index: the mapping floored the weight (no priced link on
    /// the path), so the flow's controller is capped at its target itself
    /// rather than at the safety multiple (see `docs/montra.md`).
    pub floored: Vec<bool>,
    /// Spare capacity under this plan of each one-waypoint detour, Mbit/s,
    /// by configuration peer index: entry `p * peers + v` is for traffic
    /// to peer `p` through peer `v`, the least spare capacity of the two
    /// links (this site to `v`, `v` to `p`), what the plan leaves unused
    /// on them. The share a failover may move onto that detour before the
    /// next plan (docs/paths.md); `f64::INFINITY`: not known (a plan from
    /// a file, or a detour over links the plan's instance does not have):
    /// moved flows keep their rates.
    pub detour_mbps: Vec<f64>,
}

/// A plan value is usable: finite and >= 0.
pub(crate) fn usable(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl PlanTable {
    /// The empty plan of epoch 0 for `shape`.
    pub fn empty(shape: &PlanShape) -> Self {
        Self {
            epoch: 0,
            sessions: vec![0; shape.classes()],
            rate_mbps: vec![0.0; shape.flows()],
            weight: vec![0.0; shape.flows()],
            floored: vec![false; shape.flows()],
            detour_mbps: vec![f64::INFINITY; shape.detours()],
        }
    }

    /// Zeroes every entry and sets the epoch (no allocation).
    pub fn clear(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.sessions.fill(0);
        self.rate_mbps.fill(0.0);
        self.weight.fill(0.0);
        self.floored.fill(false);
        self.detour_mbps.fill(f64::INFINITY);
    }

    /// Sessions admitted for class index `c` (0 past the end).
    pub fn sessions_of(&self, c: usize) -> u32 {
        self.sessions.get(c).copied().unwrap_or(0)
    }
    /// `(rate_mbps, weight)` of flow index `f` (zeros past the end).
    pub fn flow(&self, f: usize) -> (f64, f64) {
        (
            self.rate_mbps.get(f).copied().unwrap_or(0.0),
            self.weight.get(f).copied().unwrap_or(0.0),
        )
    }

    /// Spare capacity of the detour to peer `p` through peer `v`, Mbit/s
    /// (`f64::INFINITY`: not known, also past the end).
    pub fn detour(&self, p: usize, v: usize) -> f64 {
        let n = self.peers();
        if p >= n || v >= n {
            return f64::INFINITY;
        }
        self.detour_mbps
            .get(p * n + v)
            .copied()
            .unwrap_or(f64::INFINITY)
    }

    /// Peers of the detour table (its side).
    pub fn peers(&self) -> usize {
        self.detour_mbps.len().isqrt()
    }

    /// Whether flow index `f`'s weight is the mapping's floor (false past the end).
    pub fn is_floored(&self, f: usize) -> bool {
        self.floored.get(f).copied().unwrap_or(false)
    }

    /// Whether class `c` has a flow with a positive rate.
    fn carried(&self, shape: &PlanShape, c: usize) -> bool {
        shape.class_flows.get(c).is_some_and(|fs| {
            fs.iter()
                .any(|&f| usize::try_from(f).is_ok_and(|f| self.flow(f).0 > 0.0))
        })
    }

    /// The checks of a plan where it enters a process: sized by `shape`,
    /// rates and weights finite and >= 0, and every class admitting sessions
    /// has a flow with a positive rate. The error names the first offending
    /// field (by configuration index). Allocates nothing.
    pub fn check(&self, shape: &PlanShape) -> Result<(), PlanField> {
        if self.sessions.len() != shape.classes()
            || self.rate_mbps.len() != shape.flows()
            || self.weight.len() != shape.flows()
            || self.floored.len() != shape.flows()
            || self.detour_mbps.len() != shape.detours()
        {
            return Err(PlanField::Shape);
        }
        // Infinite is "not known"; NaN and negatives are not spare capacity.
        if let Some(i) = self.detour_mbps.iter().position(|&d| d.is_nan() || d < 0.0) {
            return Err(PlanField::Detour(i, "mbps"));
        }
        for (f, (&r, &w)) in self.rate_mbps.iter().zip(&self.weight).enumerate() {
            if !usable(r) {
                return Err(PlanField::Flow(f, "rate_mbps"));
            }
            if !usable(w) {
                return Err(PlanField::Flow(f, "weight"));
            }
        }
        for (c, &n) in self.sessions.iter().enumerate() {
            if n > 0 && !self.carried(shape, c) {
                return Err(PlanField::Class(c, "sessions"));
            }
        }
        Ok(())
    }

    /// The same plan by id (for files and logs): classes with sessions and
    /// flows with a rate or a weight, in configuration order.
    pub fn to_file(&self, cfg: &Config) -> PlanFile {
        PlanFile {
            epoch: self.epoch,
            classes: cfg
                .classes
                .iter()
                .zip(&self.sessions)
                .filter(|(_, s)| **s > 0)
                .map(|(c, s)| PlanClass {
                    id: c.id.clone(),
                    sessions: *s,
                })
                .collect(),
            flows: cfg
                .flows
                .iter()
                .zip(self.rate_mbps.iter().zip(&self.weight).zip(&self.floored))
                .filter(|(_, ((r, w), _))| **r != 0.0 || **w != 0.0)
                .map(|(f, ((r, w), fl))| PlanFlow {
                    id: f.id.clone(),
                    rate_mbps: *r,
                    weight: *w,
                    floored: *fl,
                })
                .collect(),
            detours: self
                .detour_mbps
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_finite())
                .filter_map(|(i, &mbps)| {
                    let n = self.peers().max(1);
                    Some(PlanDetour {
                        peer: cfg.peers.get(i / n)?.name.clone(),
                        via: cfg.peers.get(i % n)?.name.clone(),
                        mbps,
                    })
                })
                .collect(),
        }
    }
}

/// A plan by id: the form of plan files, of the TOML `[plan]` table and of
/// plans exchanged between sites. Classes and flows not listed get zero
/// sessions and zero rate. [`PlanFile::resolve`] turns it into the
/// [`PlanTable`] of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Plan generation; a dataplane ignores plans older than the one it runs.
    pub epoch: u64,
    /// Per class: admitted sessions.
    #[serde(default)]
    pub classes: Vec<PlanClass>,
    /// Per flow: target rate and MONtra weight.
    #[serde(default)]
    pub flows: Vec<PlanFlow>,
    /// Spare capacity of one-waypoint detours ([`PlanTable::detour_mbps`]);
    /// those not listed are not known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detours: Vec<PlanDetour>,
}

/// Spare capacity under the plan of the detour to `peer` through `via`, by site name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDetour {
    /// Destination peer.
    pub peer: String,
    /// Waypoint peer.
    pub via: String,
    /// Mbit/s (finite, >= 0).
    pub mbps: f64,
}

/// Admitted sessions of one class (`n_c`), by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanClass {
    /// Class id.
    pub id: String,
    /// Sessions admitted.
    pub sessions: u32,
}

/// Target of one flow, by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFlow {
    /// Flow id.
    pub id: String,
    /// Target rate `x_f` of EACH admitted session on this flow, Mbit/s (>= 0).
    pub rate_mbps: f64,
    /// MONtra weight `w_f` (>= 0).
    pub weight: f64,
    /// The mapping floored the weight: the controller is capped at the
    /// target (default false: capped at the safety multiple).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floored: bool,
}

/// Which plan field an error is about: in a [`PlanFile`], `i` is the
/// position in its list; in a [`PlanTable`], the configuration index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanField {
    /// `epoch`.
    Epoch,
    /// `classes[i].<field>`.
    Class(usize, &'static str),
    /// `flows[i].<field>`.
    Flow(usize, &'static str),
    /// `detours[i].<field>`.
    Detour(usize, &'static str),
    /// A table not sized for the configuration.
    Shape,
}

/// A plan that does not fit its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.field(""))]
pub struct PlanError {
    /// The offending field.
    pub at: PlanField,
    /// What is wrong.
    pub message: String,
}

impl PlanError {
    fn new(at: PlanField, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }
    /// The error of [`PlanTable::check`] finding `at` in a table for `cfg`.
    pub fn in_table(at: PlanField, cfg: &Config) -> Self {
        match at {
            PlanField::Class(c, _) => Self::new(
                at,
                format!(
                    "class `{}` admits sessions but none of its flows has a positive rate",
                    cfg.classes.get(c).map_or("?", |c| c.id.as_str())
                ),
            ),
            PlanField::Flow(..) | PlanField::Detour(..) => Self::new(at, "must be finite and >= 0"),
            PlanField::Epoch | PlanField::Shape => {
                Self::new(at, "not sized for this configuration")
            }
        }
    }
    /// Dotted path of the field, under `prefix` (e.g. `"plan."`).
    pub fn field(&self, prefix: &str) -> String {
        match self.at {
            PlanField::Epoch => format!("{prefix}epoch"),
            PlanField::Class(i, f) => format!("{prefix}classes[{i}].{f}"),
            PlanField::Flow(i, f) => format!("{prefix}flows[{i}].{f}"),
            PlanField::Detour(i, f) => format!("{prefix}detours[{i}].{f}"),
            PlanField::Shape => format!("{prefix}(shape)"),
        }
    }
}

impl PlanFile {
    /// The [`PlanTable`] of this plan for `cfg`: the one place where plan ids
    /// meet configuration indices. Checks known and unique class and flow
    /// ids, finite non-negative rates and weights, and that every class with
    /// admitted sessions has a flow with a positive rate; errors name the
    /// field by its position in this plan.
    pub fn resolve(&self, cfg: &Config) -> Result<PlanTable, PlanError> {
        let shape = PlanShape::from_config(cfg);
        let mut class = Ids::new("class", cfg.classes.iter().map(|c| c.id.as_str()));
        let mut flow = Ids::new("flow", cfg.flows.iter().map(|f| f.id.as_str()));
        let mut t = PlanTable::empty(&shape);
        t.epoch = self.epoch;
        for (i, c) in self.classes.iter().enumerate() {
            let ci = class
                .take(&c.id)
                .map_err(|m| PlanError::new(PlanField::Class(i, "id"), m))?;
            t.sessions[ci] = c.sessions;
        }
        for (i, f) in self.flows.iter().enumerate() {
            let fi = flow
                .take(&f.id)
                .map_err(|m| PlanError::new(PlanField::Flow(i, "id"), m))?;
            for (v, name) in [(f.rate_mbps, "rate_mbps"), (f.weight, "weight")] {
                if !usable(v) {
                    return Err(PlanError::new(
                        PlanField::Flow(i, name),
                        "must be finite and >= 0",
                    ));
                }
            }
            t.rate_mbps[fi] = f.rate_mbps;
            t.weight[fi] = f.weight;
            t.floored[fi] = f.floored;
        }
        let peer = |name: &str| cfg.peers.iter().position(|p| p.name == name);
        let n = cfg.peers.len();
        for (i, d) in self.detours.iter().enumerate() {
            let (Some(p), Some(v)) = (peer(&d.peer), peer(&d.via)) else {
                return Err(PlanError::new(
                    PlanField::Detour(i, "peer"),
                    format!("unknown peer `{}` or `{}`", d.peer, d.via),
                ));
            };
            if !usable(d.mbps) {
                return Err(PlanError::new(
                    PlanField::Detour(i, "mbps"),
                    "must be finite and >= 0",
                ));
            }
            t.detour_mbps[p * n + v] = d.mbps;
        }
        // In this plan's order, so that the error names its first offender.
        for (i, c) in self.classes.iter().enumerate() {
            let Some(&ci) = class.index.get(c.id.as_str()) else {
                continue;
            };
            if c.sessions > 0 && !t.carried(&shape, ci) {
                return Err(PlanError::new(
                    PlanField::Class(i, "sessions"),
                    PlanError::in_table(PlanField::Class(ci, "sessions"), cfg).message,
                ));
            }
        }
        debug_assert_eq!(t.check(&shape), Ok(()));
        Ok(t)
    }
}

/// Configuration indices by id, each id to be taken at most once.
struct Ids<'a> {
    what: &'static str,
    index: HashMap<&'a str, usize>,
    seen: Vec<bool>,
}

impl<'a> Ids<'a> {
    /// The ids of `what` (`class`, `flow`), in index order.
    fn new(what: &'static str, ids: impl Iterator<Item = &'a str>) -> Self {
        let ids: Vec<&str> = ids.collect();
        Self {
            what,
            seen: vec![false; ids.len()],
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
        }
    }
    /// The index of `id`, or why not (unknown, or taken before).
    fn take(&mut self, id: &str) -> Result<usize, String> {
        let what = self.what;
        let Some(&i) = self.index.get(id) else {
            return Err(format!("unknown {what} `{id}`"));
        };
        match self.seen.get_mut(i) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(i)
            }
            _ => Err(format!("duplicate {what} `{id}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::from_toml_str(
            include_str!("../../docs/examples/site-a.toml"),
            "site-a.toml",
        )
        .expect("example")
    }

    #[test]
    fn check_names_the_offending_field() {
        let cfg = cfg();
        let shape = PlanShape::from_config(&cfg);
        let good = cfg.plan.clone().expect("plan");
        assert_eq!(good.check(&shape), Ok(()));
        let mut t = good.clone();
        t.weight[1] = f64::NAN;
        assert_eq!(t.check(&shape), Err(PlanField::Flow(1, "weight")));
        let mut t = good.clone();
        t.rate_mbps[2] = -1.0;
        assert_eq!(t.check(&shape), Err(PlanField::Flow(2, "rate_mbps")));
        let mut t = good.clone();
        t.rate_mbps[2] = 0.0;
        assert_eq!(t.check(&shape), Err(PlanField::Class(1, "sessions")));
        assert_eq!(
            PlanError::in_table(PlanField::Class(1, "sessions"), &cfg).to_string(),
            "classes[1].sessions: class `bulk-ac` admits sessions but none of its flows has a positive rate"
        );
        let mut t = good;
        t.sessions.pop();
        assert_eq!(t.check(&shape), Err(PlanField::Shape));
        assert_eq!(PlanTable::empty(&shape).check(&shape), Ok(()));
    }

    #[test]
    fn resolve_and_back() {
        let cfg = cfg();
        let t = cfg.plan.clone().expect("plan");
        assert_eq!(t.to_file(&cfg).resolve(&cfg), Ok(t.clone()));
        assert_eq!(t.sessions_of(0), 3);
        assert_eq!(t.sessions_of(99), 0);
        assert_eq!(t.flow(1), (1.0, 0.75));
        assert_eq!(t.flow(99), (0.0, 0.0));
    }

    #[test]
    fn detours_by_name_resolve_and_back() {
        let cfg = cfg();
        let mut f = cfg.plan.clone().expect("plan").to_file(&cfg);
        assert!(f.detours.is_empty(), "a file plan knows no detour");
        f.detours.push(PlanDetour {
            peer: "C".into(),
            via: "B".into(),
            mbps: 1.5,
        });
        let t = f.resolve(&cfg).expect("resolves");
        assert_eq!(t.check(&PlanShape::from_config(&cfg)), Ok(()));
        assert_eq!((t.detour(1, 0), t.detour(0, 1)), (1.5, f64::INFINITY));
        assert_eq!(t.to_file(&cfg), f);
        let mut bad = f.clone();
        bad.detours[0].via = "Z".into();
        assert_eq!(
            bad.resolve(&cfg).unwrap_err().field("plan."),
            "plan.detours[0].peer"
        );
        let mut bad = f;
        bad.detours[0].mbps = -1.0;
        assert_eq!(bad.resolve(&cfg).unwrap_err().field(""), "detours[0].mbps");
        let mut t = t;
        t.detour_mbps[3] = f64::NAN;
        assert_eq!(
            t.check(&PlanShape::from_config(&cfg)),
            Err(PlanField::Detour(3, "mbps"))
        );
        t.detour_mbps.pop();
        assert_eq!(
            t.check(&PlanShape::from_config(&cfg)),
            Err(PlanField::Shape)
        );
    }

    #[test]
    fn shape_of_a_config() {
        let s = PlanShape::from_config(&cfg());
        assert_eq!((s.classes(), s.flows()), (3, 4));
        assert_eq!(
            (0..5).map(|f| s.flow_class(f)).collect::<Vec<_>>(),
            vec![0, 0, 1, 2, u32::MAX]
        );
        let s = PlanShape::new(2, vec![1, 7, 0]);
        assert_eq!(s.class_flows, vec![vec![2], vec![0]]);
    }
}
