//! The MON paper's triangle as an overlay: classes, flows and the plan the
//! demo and the tests run on [`super::sites::Sites::triangle`].
//!
//! The demo's overlay is read from the example site files in
//! `docs/examples/triangle/` ([`SITE_FILES`]; the unit tests check that the
//! testbed writes exactly those files for the triangle, and the demo's PFO
//! instance is [`INSTANCE`]):
//! - `A->C` (UDP, ports 5000-5099): flows `A->C/direct` and `A->C/via-B`;
//! - `B->C` (UDP, ports 5100-5199): flows `B->C/direct` and `B->C/via-A`.
//!
//! The TCP tests add `tcp-via-B` (TCP to port 5202, A -> C only via B) and
//! `tcp-A->C` (any other TCP A -> C, direct), with `tcp-C->A` (TCP C -> A,
//! direct) for the return direction: real transfers ([`triangle_overlay`]).

use super::overlay::{ClassSpec, FlowSpec, OverlaySpec, PlanSpec, RuleSpec};
use crate::error::{Error, Result};

/// The triangle's site files, `(site, text)`: `docs/examples/triangle/site-*.toml`.
pub const SITE_FILES: [(&str, &str); 3] = [
    (
        "A",
        include_str!("../../../../docs/examples/triangle/site-a.toml"),
    ),
    (
        "B",
        include_str!("../../../../docs/examples/triangle/site-b.toml"),
    ),
    (
        "C",
        include_str!("../../../../docs/examples/triangle/site-c.toml"),
    ),
];

/// The demo's PFO instance, `docs/examples/triangle/instance.json`: the
/// links' capacities are their rates (the demo scales them to the payload
/// share), the flows' links those of their routes ([`flow_links`]).
pub const INSTANCE: &str = include_str!("../../../../docs/examples/triangle/instance.json");

/// Overlay id of the demo.
pub const VNI: u32 = 4242;

/// UDP destination port of the `A->C` class's traffic.
pub const PORT_AC: u16 = 5001;
/// UDP destination port of the `B->C` class's traffic.
pub const PORT_BC: u16 = 5101;
/// TCP port served at C reached only via B.
pub const PORT_TCP_VIA_B: u16 = 5202;
/// TCP port served at C reached directly.
pub const PORT_TCP_DIRECT: u16 = 5201;

fn invalid(what: &str) -> Error {
    Error::Invalid(format!("example site file: {what}"))
}

fn string(t: &toml::Table, key: &str) -> Result<String> {
    t.get(key)
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(&format!("no string `{key}`")))
}

fn tables<'a>(t: &'a toml::Table, key: &str) -> Result<Vec<&'a toml::Table>> {
    let Some(v) = t.get(key) else {
        return Ok(Vec::new());
    };
    let a = v
        .as_array()
        .ok_or_else(|| invalid(&format!("`{key}` is not an array")))?;
    a.iter()
        .map(|x| {
            x.as_table()
                .ok_or_else(|| invalid(&format!("`{key}` holds a non-table")))
        })
        .collect()
}

/// The overlay of a site file: its VNI, classes and flows (no plan). Rules
/// may use `protocol` and `dst_ports` only (what [`RuleSpec`] writes).
pub fn parse_overlay(text: &str) -> Result<OverlaySpec> {
    let t: toml::Table = text.parse().map_err(|e| invalid(&format!("{e}")))?;
    let site = t
        .get("site")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| invalid("no [site]"))?;
    let vni = site
        .get("vni")
        .and_then(toml::Value::as_integer)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid("no vni"))?;
    let mut classes = Vec::new();
    for c in tables(&t, "classes")? {
        let mut rules = Vec::new();
        for r in tables(c, "rules")? {
            if let Some(k) = r.keys().find(|k| *k != "protocol" && *k != "dst_ports") {
                return Err(invalid(&format!("rule key `{k}` not supported here")));
            }
            rules.push(RuleSpec {
                protocol: string(r, "protocol").ok(),
                dst_ports: string(r, "dst_ports").ok(),
            });
        }
        classes.push(ClassSpec {
            id: string(c, "id")?,
            source: string(c, "source")?,
            destination: string(c, "destination")?,
            kind: string(c, "type")?,
            rules,
            overflow: string(c, "overflow")?,
        });
    }
    let mut flows = Vec::new();
    for f in tables(&t, "flows")? {
        let route = f
            .get("route")
            .and_then(toml::Value::as_array)
            .and_then(|r| {
                r.iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| invalid("a flow without a route of names"))?;
        flows.push(FlowSpec {
            id: string(f, "id")?,
            class: string(f, "class")?,
            route,
        });
    }
    Ok(OverlaySpec {
        vni,
        classes,
        flows,
        plan: None,
        keys: None,
    })
}

/// The demo's overlay, read from the example site files: the two UDP
/// classes of the paper's triangle (sessions beyond the plan are dropped, so
/// they cannot load the links outside the plan), with `plan` (None: plans
/// come from the control).
pub fn triangle_overlay_udp(plan: Option<PlanSpec>) -> OverlaySpec {
    // The shipped files: the unit tests parse them.
    let mut o = parse_overlay(SITE_FILES[0].1).expect("docs/examples/triangle/site-a.toml");
    o.plan = plan;
    o
}

fn class(id: &str, s: &str, d: &str, kind: &str, rules: Vec<RuleSpec>) -> ClassSpec {
    ClassSpec {
        id: id.into(),
        source: s.into(),
        destination: d.into(),
        kind: kind.into(),
        rules,
        overflow: "best_effort".into(),
    }
}

fn rule(proto: &str, ports: Option<&str>) -> RuleSpec {
    RuleSpec {
        protocol: Some(proto.into()),
        dst_ports: ports.map(Into::into),
    }
}

fn flow(id: &str, class: &str, route: &[&str]) -> FlowSpec {
    FlowSpec {
        id: id.into(),
        class: class.into(),
        route: route.iter().map(|s| (*s).to_string()).collect(),
    }
}

/// The triangle overlay of the TCP tests, with `plan` (None: plans come from
/// the control): the demo's UDP classes with best-effort overflow, then the
/// TCP classes and their flows.
pub fn triangle_overlay(plan: Option<PlanSpec>) -> OverlaySpec {
    let mut o = triangle_overlay_udp(plan);
    for c in &mut o.classes {
        c.overflow = "best_effort".into();
    }
    o.classes.extend([
        class(
            "tcp-via-B",
            "A",
            "C",
            "bulk",
            vec![rule("tcp", Some("5202"))],
        ),
        class("tcp-A->C", "A", "C", "bulk", vec![rule("tcp", None)]),
        class("tcp-C->A", "C", "A", "bulk", vec![rule("tcp", None)]),
    ]);
    o.flows.extend([
        flow("tcp-via-B", "tcp-via-B", &["A", "B", "C"]),
        flow("tcp-A->C", "tcp-A->C", &["A", "C"]),
        flow("tcp-C->A", "tcp-C->A", &["C", "A"]),
    ]);
    o
}

/// A plan for the TCP classes only: one session each at `mbps`.
pub fn tcp_plan(epoch: u64, mbps: f64) -> PlanSpec {
    PlanSpec {
        epoch,
        classes: vec![
            ("tcp-via-B".into(), 4),
            ("tcp-A->C".into(), 4),
            ("tcp-C->A".into(), 4),
        ],
        flows: vec![
            ("tcp-via-B".into(), mbps / 4.0, 1.0),
            ("tcp-A->C".into(), mbps / 4.0, 1.0),
            ("tcp-C->A".into(), mbps / 4.0, 1.0),
        ],
    }
}

/// Site pairs of the triangle's links, as the PFO instance names them.
pub const LINKS: [(&str, &str, &str); 3] = [("ab", "A", "B"), ("ac", "A", "C"), ("bc", "B", "C")];

/// The links (by PFO link id `X-Y`) each triangle flow crosses.
pub fn flow_links(route: &[String]) -> Vec<String> {
    route
        .windows(2)
        .map(|w| {
            let (a, b) = if w[0] <= w[1] {
                (&w[0], &w[1])
            } else {
                (&w[1], &w[0])
            };
            format!("{a}-{b}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sites::Sites;
    use super::*;

    /// A site file without its comments and blank lines.
    fn content(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn the_testbed_writes_the_example_site_files() {
        let sites = Sites::triangle();
        let spec = triangle_overlay_udp(None);
        for (name, text) in SITE_FILES {
            let ours = sites.site_config(name, &spec).unwrap();
            assert_eq!(content(&ours), content(text), "site {name}");
            assert_eq!(parse_overlay(text).unwrap(), spec, "site {name}");
        }
        assert_eq!(spec.vni, VNI);
    }

    #[test]
    fn the_overlays_keep_their_classes_and_flows() {
        let udp = triangle_overlay_udp(None);
        let ids = |o: &OverlaySpec| o.classes.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&udp), ["A->C", "B->C"]);
        assert!(udp.classes.iter().all(|c| c.overflow == "drop"));
        let all = triangle_overlay(Some(tcp_plan(1, 8.0)));
        assert_eq!(
            ids(&all),
            ["A->C", "B->C", "tcp-via-B", "tcp-A->C", "tcp-C->A"]
        );
        assert!(all.classes.iter().all(|c| c.overflow == "best_effort"));
        let flows: Vec<_> = all.flows.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            flows,
            [
                "A->C/direct",
                "A->C/via-B",
                "B->C/direct",
                "B->C/via-A",
                "tcp-via-B",
                "tcp-A->C",
                "tcp-C->A"
            ]
        );
        assert_eq!(
            all.classes[0].rules,
            [RuleSpec {
                protocol: Some("udp".into()),
                dst_ports: Some("5000-5099".into())
            }]
        );
    }

    #[test]
    fn unsupported_rule_keys_are_errors() {
        let t = SITE_FILES[0]
            .1
            .replace("dst_ports = \"5000-5099\"", "dscp = [46]");
        assert!(parse_overlay(&t).is_err());
    }
}
