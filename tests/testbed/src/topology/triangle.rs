//! The MON paper's triangle as an overlay: classes, flows and the plan the
//! demo and the tests run on [`super::sites::Sites::triangle`].
//!
//! - `A->C` (UDP, ports 5000-5099): flows `A->C/direct` and `A->C/via-B`;
//! - `B->C` (UDP, ports 5100-5199): flows `B->C/direct` and `B->C/via-A`;
//! - `tcp-via-B` (TCP to port 5202, A -> C only via B) and `tcp-A->C` (any
//!   other TCP A -> C, direct), with `tcp-C->A` (TCP C -> A, direct) for the
//!   return direction: real transfers for the TCP tests.

use super::overlay::{ClassSpec, FlowSpec, OverlaySpec, PlanSpec, RuleSpec};

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

/// The triangle overlay with `plan` (None: plans come from the control).
pub fn triangle_overlay(plan: Option<PlanSpec>) -> OverlaySpec {
    OverlaySpec {
        vni: VNI,
        classes: vec![
            class(
                "A->C",
                "A",
                "C",
                "video",
                vec![rule("udp", Some("5000-5099"))],
            ),
            class(
                "B->C",
                "B",
                "C",
                "video",
                vec![rule("udp", Some("5100-5199"))],
            ),
            class(
                "tcp-via-B",
                "A",
                "C",
                "bulk",
                vec![rule("tcp", Some("5202"))],
            ),
            class("tcp-A->C", "A", "C", "bulk", vec![rule("tcp", None)]),
            class("tcp-C->A", "C", "A", "bulk", vec![rule("tcp", None)]),
        ],
        flows: vec![
            flow("A->C/direct", "A->C", &["A", "C"]),
            flow("A->C/via-B", "A->C", &["A", "B", "C"]),
            flow("B->C/direct", "B->C", &["B", "C"]),
            flow("B->C/via-A", "B->C", &["B", "A", "C"]),
            flow("tcp-via-B", "tcp-via-B", &["A", "B", "C"]),
            flow("tcp-A->C", "tcp-A->C", &["A", "C"]),
            flow("tcp-C->A", "tcp-C->A", &["C", "A"]),
        ],
        plan,
    }
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

/// The demo's overlay: the two UDP classes of the paper's triangle only
/// (sessions beyond the plan are dropped, so they cannot load the links
/// outside the plan).
pub fn triangle_overlay_udp(plan: Option<PlanSpec>) -> OverlaySpec {
    let mut o = triangle_overlay(plan);
    o.classes.retain(|c| c.id == "A->C" || c.id == "B->C");
    for c in &mut o.classes {
        c.overflow = "drop".into();
    }
    o.flows.retain(|f| f.class == "A->C" || f.class == "B->C");
    o
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
