//! The correspondence between the organisation-wide PFO [`Instance`] and one site's
//! [`Config`]: class and flow ids must be the same sets, and every flow must belong to the same
//! class on both sides. Telemetry names configuration indices; PFO works on instance indices.

use std::collections::HashMap;

use mongate_dataplane::config::Config;

use crate::pfo::Instance;

/// An instance that does not fit the site configuration; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance vs site config: {entry}: {reason}")]
pub struct MatchError {
    /// The offending entry, e.g. `flow "A->C/direct"`.
    pub entry: String,
    /// What is wrong.
    pub reason: String,
}

fn mismatch(entry: String, reason: impl Into<String>) -> MatchError {
    MatchError {
        entry,
        reason: reason.into(),
    }
}

/// Index maps between the instance and the configuration, and which flows and classes this
/// site observes (those that start here).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteMap {
    /// Configuration class index of instance class `c`.
    pub class_to_cfg: Vec<usize>,
    /// Instance class index of configuration class `i`.
    pub class_from_cfg: Vec<usize>,
    /// Configuration flow index of instance flow `f`.
    pub flow_to_cfg: Vec<usize>,
    /// Instance flow index of configuration flow `i`.
    pub flow_from_cfg: Vec<usize>,
    /// Instance flow `f` starts at this site (its dataplane reports it).
    pub local_flow: Vec<bool>,
    /// Instance class `c` has this site as its source (its dataplane admits its sessions).
    pub local_class: Vec<bool>,
    /// Per one-waypoint detour, `p * peers + v` by configuration peer index (to peer `p`
    /// through peer `v`): the instance's links this site-`v` and `v`-`p`, when it has both.
    pub detour_links: Vec<Option<(usize, usize)>>,
    /// The configuration's peers, by index.
    pub peer_names: Vec<String>,
}

impl SiteMap {
    /// Matches `inst` against `cfg`. Errors name the first offending class or flow: a config
    /// entry missing from the instance, an instance entry missing from the config (including an
    /// instance flow whose class is not in the config), or a flow whose class differs.
    pub fn new(inst: &Instance, cfg: &Config) -> Result<Self, MatchError> {
        let inst_class: HashMap<&str, usize> = inst
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        let inst_flow: HashMap<&str, usize> = inst
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id.as_str(), i))
            .collect();
        let mut class_from_cfg = Vec::with_capacity(cfg.classes.len());
        for c in &cfg.classes {
            let Some(&i) = inst_class.get(c.id.as_str()) else {
                return Err(mismatch(
                    format!("config class {:?}", c.id),
                    "not in the instance",
                ));
            };
            class_from_cfg.push(i);
        }
        let mut class_to_cfg = vec![usize::MAX; inst.classes.len()];
        for (ci, &i) in class_from_cfg.iter().enumerate() {
            class_to_cfg[i] = ci;
        }
        for f in &inst.flows {
            let class = &inst.classes[f.class].id;
            if cfg.class_index(class).is_none() {
                return Err(mismatch(
                    format!("instance flow {:?}", f.id),
                    format!("its class {class:?} is not in the site config"),
                ));
            }
        }
        if let Some(c) = inst
            .classes
            .iter()
            .find(|c| cfg.class_index(&c.id).is_none())
        {
            return Err(mismatch(
                format!("instance class {:?}", c.id),
                "not in the site config",
            ));
        }
        let mut flow_from_cfg = Vec::with_capacity(cfg.flows.len());
        for f in &cfg.flows {
            let Some(&i) = inst_flow.get(f.id.as_str()) else {
                return Err(mismatch(
                    format!("config flow {:?}", f.id),
                    "not in the instance",
                ));
            };
            let inst_class = &inst.classes[inst.flows[i].class].id;
            if *inst_class != f.class {
                return Err(mismatch(
                    format!("flow {:?}", f.id),
                    format!(
                        "class {:?} in the site config but {inst_class:?} in the instance",
                        f.class
                    ),
                ));
            }
            flow_from_cfg.push(i);
        }
        if let Some(f) = inst.flows.iter().find(|f| cfg.flow_index(&f.id).is_none()) {
            return Err(mismatch(
                format!("instance flow {:?}", f.id),
                "not in the site config",
            ));
        }
        let mut flow_to_cfg = vec![usize::MAX; inst.flows.len()];
        for (fi, &i) in flow_from_cfg.iter().enumerate() {
            flow_to_cfg[i] = fi;
        }
        let here = cfg.site.name.as_str();
        let local_flow = flow_to_cfg
            .iter()
            .map(|&fi| cfg.flows[fi].route.first().map(String::as_str) == Some(here))
            .collect();
        let local_class = class_to_cfg
            .iter()
            .map(|&ci| cfg.classes[ci].source == here)
            .collect();
        // An instance link between two sites is named `A-B` or `B-A`.
        let link = |a: &str, b: &str| {
            inst.links
                .iter()
                .position(|l| l.id == format!("{a}-{b}") || l.id == format!("{b}-{a}"))
        };
        let peers = &cfg.peers;
        let detour_links = (0..peers.len() * peers.len())
            .map(|i| {
                let (p, v) = (&peers[i / peers.len()].name, &peers[i % peers.len()].name);
                if p == v {
                    return None;
                }
                Some((link(here, v)?, link(v, p)?))
            })
            .collect();
        Ok(Self {
            class_to_cfg,
            class_from_cfg,
            flow_to_cfg,
            flow_from_cfg,
            local_flow,
            detour_links,
            peer_names: cfg.peers.iter().map(|p| p.name.clone()).collect(),
            local_class,
        })
    }
}
