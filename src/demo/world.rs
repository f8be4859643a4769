//! What a demo runs on: the sites and links, the overlay's classes and
//! flows, the PFO instance and the traffic the hosts offer. The MON
//! triangle ([`World::triangle`]) or an Internet Topology Zoo network
//! ([`World::zoo`], `--scenario topology`).

use mongate_testbed::topology::triangle::{INSTANCE, PORT_AC, PORT_BC, triangle_overlay_udp};
use mongate_testbed::topology::zoo::ZooGraph;
use mongate_testbed::{ClassSpec, FlowSpec, OverlaySpec, RuleSpec, Sites};

/// One class's backlogged UDP: from the source site's host to a port of the
/// destination site's host.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassTraffic {
    /// Class id.
    pub class: String,
    /// Source site.
    pub source: String,
    /// Destination site.
    pub destination: String,
    /// Destination UDP port (inside the class's rule).
    pub port: u16,
}

/// A demo's world.
#[derive(Clone, Debug)]
pub struct World {
    /// The sites and WAN links to build.
    pub sites: Sites,
    /// Classes and flows (no plan).
    pub spec: OverlaySpec,
    /// The PFO instance (JSON); link capacities are set from the built links
    /// (`super::instance`).
    pub instance: serde_json::Value,
    /// Traffic per class.
    pub traffic: Vec<ClassTraffic>,
    /// One line for the summary.
    pub description: String,
    /// The gateways' `--idle-sleep-us`: 50 on the triangle; on a larger
    /// network more, so that a dozen idle gateways do not take both cores
    /// in wake-ups (a 2 Mbit/s link carries a packet every 5 ms).
    pub idle_sleep_us: u32,
    /// The gateways' `--pacing-lag-sleeps`: 2 on the triangle; 10 (5 ms) on a
    /// larger network, whose 11 gateways, controls and hosts on two cores
    /// wake late: with 2 (1 ms) Abilene's controllers ran ~10 % above what
    /// their flows sent (the late wake-ups' departures were never made up),
    /// with 10 within 1 % (docs/montra.md, Scenario topology).
    pub pacing_lag_sleeps: u32,
}

impl World {
    /// The MON triangle: `docs/examples/triangle/` (A-B and A-C 10 Mbit/s,
    /// B-C 5; classes A->C and B->C).
    pub fn triangle() -> anyhow::Result<Self> {
        Ok(Self {
            sites: Sites::triangle(),
            spec: triangle_overlay_udp(None),
            instance: serde_json::from_str(INSTANCE)?,
            traffic: vec![
                ClassTraffic {
                    class: "A->C".into(),
                    source: "A".into(),
                    destination: "C".into(),
                    port: PORT_AC,
                },
                ClassTraffic {
                    class: "B->C".into(),
                    source: "B".into(),
                    destination: "C".into(),
                    port: PORT_BC,
                },
            ],
            description:
                "MON triangle: A-B 10, A-C 10, B-C 5 Mbit/s (tbf); LAN host + mongate gateway per site"
                    .into(),
            idle_sleep_us: 50,
            pacing_lag_sleeps: 2,
        })
    }

    /// A Topology Zoo network: every node a site, every edge a link of
    /// `link_mbps` each way, and up to `classes` classes between sites one
    /// or two hops apart ([`choose_classes`]).
    pub fn zoo(g: &ZooGraph, link_mbps: f64, classes: usize) -> anyhow::Result<Self> {
        if !(0.1..=100.0).contains(&link_mbps) {
            anyhow::bail!("--link-mbps must be in 0.1..=100");
        }
        if !(1..=MAX_CLASSES).contains(&classes) {
            anyhow::bail!("--classes must be in 1..={MAX_CLASSES}");
        }
        let mut sites = Sites::new();
        for n in &g.nodes {
            sites = sites.site(&n.site);
        }
        for (k, &(a, b)) in g.edges.iter().enumerate() {
            sites = sites.wan(
                &g.nodes[a].site,
                &g.nodes[b].site,
                link_mbps,
                &format!("l{k}"),
            );
        }
        sites
            .validate()
            .map_err(|e| anyhow::anyhow!("topology {}: {e}", g.name))?;
        let chosen = choose_classes(g, classes);
        if chosen.is_empty() {
            anyhow::bail!("topology {}: no two sites one or two hops apart", g.name);
        }
        let name = |i: usize| g.nodes[i].site.clone();
        let mut spec = OverlaySpec {
            vni: mongate_testbed::topology::triangle::VNI,
            classes: Vec::new(),
            flows: Vec::new(),
            plan: None,
            keys: None,
        };
        let mut inst_classes = Vec::new();
        let mut inst_flows = Vec::new();
        let mut traffic = Vec::new();
        // Per session: worth `slope` per Mbit/s up to half a link's rate,
        // half as much per Mbit/s above it, nothing above a link's rate.
        let r = link_mbps;
        for (k, c) in chosen.iter().enumerate() {
            let id = format!("{}->{}", name(c.source), name(c.destination));
            let slope = SLOPES[k % SLOPES.len()];
            let base = 6000 + 100 * u16::try_from(k).unwrap_or(0);
            spec.classes.push(ClassSpec {
                id: id.clone(),
                source: name(c.source),
                destination: name(c.destination),
                kind: "video".into(),
                rules: vec![RuleSpec {
                    protocol: Some("udp".into()),
                    dst_ports: Some(format!("{base}-{}", base + 99)),
                }],
                overflow: "drop".into(),
            });
            inst_classes.push(serde_json::json!({
                "id": id,
                "sessions": SESSIONS,
                "utility": {"piecewise_linear": [
                    [0.0, 0.0], [r / 4.0, slope * r / 4.0], [r / 2.0, slope * 3.0 * r / 8.0]
                ]}
            }));
            for route in &c.routes {
                let fid = match route.len() {
                    2 => format!("{id}/direct"),
                    _ => format!("{id}/via-{}", name(route[1])),
                };
                let sites_on: Vec<String> = route.iter().map(|&i| name(i)).collect();
                let links: Vec<String> = sites_on
                    .windows(2)
                    .map(|w| format!("{}-{}", w[0], w[1]))
                    .collect();
                spec.flows.push(FlowSpec {
                    id: fid.clone(),
                    class: id.clone(),
                    route: sites_on,
                });
                inst_flows.push(serde_json::json!({"id": fid, "class": id, "links": links}));
            }
            traffic.push(ClassTraffic {
                class: id,
                source: name(c.source),
                destination: name(c.destination),
                port: base + 1,
            });
        }
        // Links per direction ("X-Y": X to Y): tbf shapes each direction on
        // its own, so two classes crossing a link in opposite directions do
        // not share its capacity.
        let mut links = Vec::new();
        for &(a, b) in &g.edges {
            for (x, y) in [(a, b), (b, a)] {
                links.push(serde_json::json!({
                    "id": format!("{}-{}", name(x), name(y)),
                    "capacity": link_mbps
                }));
            }
        }
        let instance = serde_json::json!({
            "loss_budget": 0.02,
            "links": links,
            "classes": inst_classes,
            "flows": inst_flows,
        });
        let description = format!(
            "Topology Zoo {}: {} sites, {} links of {link_mbps} Mbit/s each way (tbf); {} classes between sites one or two hops apart; LAN host + mongate gateway per site",
            g.name,
            g.nodes.len(),
            g.edges.len(),
            chosen.len()
        );
        Ok(Self {
            sites,
            spec,
            instance,
            traffic,
            description,
            idle_sleep_us: 500,
            pacing_lag_sleeps: 10,
        })
    }

    /// Site names in build order.
    pub fn site_names(&self) -> Vec<String> {
        self.sites.sites.iter().map(|s| s.name.clone()).collect()
    }
}

/// Most classes of a zoo world (each takes 100 UDP ports from 6000 for its rule).
pub const MAX_CLASSES: usize = 64;
/// Sessions per class in a zoo world (the demand `N_c`).
const SESSIONS: u32 = 4;
/// Per-Mbit/s worth of the zoo classes, in turn.
const SLOPES: [f64; 4] = [2.0, 1.0, 1.5, 3.0];
/// Most classes whose routes may cross one direction of a link.
const MAX_PER_LINK: usize = 2;

/// A class of a zoo world: its ends and its routes (node indices, source
/// first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenClass {
    /// Source node.
    pub source: usize,
    /// Destination node.
    pub destination: usize,
    /// Routes: direct (if the ends are adjacent), then via each common
    /// neighbour.
    pub routes: Vec<Vec<usize>>,
}

/// Up to `n` classes, deterministically: the overlay relays a flow through
/// at most one waypoint (a waypoint relays acks to the origin over its own
/// direct paths: docs/overlay.md), so a class joins two sites one or two
/// hops apart and its routes are the direct link and every two-hop path.
/// Classes with most routes first (where PFO has a choice), then those that
/// bring sites no class touches yet; a direction of a link is crossed by at
/// most two classes, and two sites are joined by at most one class.
pub fn choose_classes(g: &ZooGraph, n: usize) -> Vec<ChosenClass> {
    let count = g.nodes.len();
    let mut cands = Vec::new();
    for s in 0..count {
        for d in 0..count {
            if s == d {
                continue;
            }
            let mut routes = Vec::new();
            if g.adjacent(s, d) {
                routes.push(vec![s, d]);
            }
            for w in g.neighbours(s) {
                if w != d && g.adjacent(w, d) {
                    routes.push(vec![s, w, d]);
                }
            }
            if !routes.is_empty() {
                cands.push(ChosenClass {
                    source: s,
                    destination: d,
                    routes,
                });
            }
        }
    }
    let mut chosen: Vec<ChosenClass> = Vec::new();
    let mut used_links: std::collections::BTreeMap<(usize, usize), usize> =
        std::collections::BTreeMap::new();
    let mut touched = vec![false; count];
    while chosen.len() < n {
        let fits = |c: &ChosenClass| {
            let pair = (c.source.min(c.destination), c.source.max(c.destination));
            if chosen
                .iter()
                .any(|o| (o.source.min(o.destination), o.source.max(o.destination)) == pair)
            {
                return false;
            }
            c.routes
                .iter()
                .flat_map(|r| r.windows(2))
                .all(|w| used_links.get(&(w[0], w[1])).copied().unwrap_or(0) < MAX_PER_LINK)
        };
        let fresh = |c: &ChosenClass| {
            c.routes
                .iter()
                .flatten()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|&&i| !touched[i])
                .count()
        };
        // Most routes, then most untouched sites, then the first in order.
        let Some(best) = cands
            .iter()
            .filter(|c| fits(c))
            .max_by(|a, b| {
                (a.routes.len(), fresh(a))
                    .cmp(&(b.routes.len(), fresh(b)))
                    .then_with(|| (b.source, b.destination).cmp(&(a.source, a.destination)))
            })
            .cloned()
        else {
            break;
        };
        for r in &best.routes {
            for w in r.windows(2) {
                *used_links.entry((w[0], w[1])).or_default() += 1;
            }
            for &i in r {
                touched[i] = true;
            }
        }
        chosen.push(best);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abilene_classes_have_choices_and_spread_over_the_network() {
        let g = ZooGraph::shipped("Abilene").unwrap().unwrap();
        let cs = choose_classes(&g, 8);
        assert_eq!(cs.len(), 8);
        // Deterministic.
        assert_eq!(cs, choose_classes(&g, 8));
        for c in &cs {
            for r in &c.routes {
                assert!(r.len() == 2 || r.len() == 3, "{r:?}");
                assert_eq!((r[0], r[r.len() - 1]), (c.source, c.destination));
                assert!(r.windows(2).all(|w| g.adjacent(w[0], w[1])));
            }
        }
        // Some classes have two routes (PFO chooses), and every site is on a route.
        assert!(cs.iter().filter(|c| c.routes.len() >= 2).count() >= 3);
        let mut on: Vec<usize> = cs
            .iter()
            .flat_map(|c| c.routes.iter().flatten().copied())
            .collect();
        on.sort_unstable();
        on.dedup();
        assert_eq!(on.len(), g.nodes.len());
        for bad in [0, MAX_CLASSES + 1] {
            let e = World::zoo(&g, 2.0, bad).unwrap_err().to_string();
            assert!(e.contains("--classes"), "{e}");
        }
        let w = World::zoo(&g, 2.0, 8).unwrap();
        assert_eq!(w.sites.sites.len(), 11);
        assert_eq!(w.sites.links.len(), 14);
        assert_eq!(w.traffic.len(), 8);
        // The instance PFO reads: every flow's links exist, both directions of every edge.
        let inst = mongate_control::pfo::Instance::from_json(&w.instance.to_string()).unwrap();
        assert_eq!(inst.links.len(), 28);
        assert_eq!(inst.classes.len(), 8);
        assert_eq!(inst.flows.len(), w.spec.flows.len());
    }
}
