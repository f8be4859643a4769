//! tbf / htb shaping and blackholes on a bare veth pair. Needs root.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use mongate_testbed::Netns;
use mongate_testbed::link::{self, FlowMatch, HtbClass, HtbSpec, veth_pair};

#[test]
fn tbf_and_htb_install_and_remove() {
    if common::skip("tbf_and_htb_install_and_remove") {
        return;
    }
    let a = Netns::new("mgtq-").unwrap();
    let b = Netns::new("mgtq-").unwrap();
    veth_pair(&a, "qa", &b, "qb", 1).unwrap();
    let root = |ns: &Netns| {
        let o = ns.tc(&["qdisc", "show", "dev", "qa", "root"]).unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        link::shape(&a, "qa", 1_000_000, 100, Duration::from_millis(10)).is_err(),
        "burst < frame accepted"
    );
    link::shape(
        &a,
        "qa",
        1_000_000,
        link::default_burst(1_000_000, 1500),
        Duration::from_millis(10),
    )
    .unwrap();
    assert!(
        root(&a).contains("tbf") && root(&a).contains("rate 1Mbit"),
        "{}",
        root(&a)
    );
    link::unshape(&a, "qa").unwrap();
    link::unshape(&a, "qa").unwrap(); // idempotent
    assert!(!root(&a).contains("tbf"));
    let spec = HtbSpec {
        link_bps: 10_000_000,
        classes: vec![
            HtbClass {
                id: 2,
                rate_bps: 4_000_000,
                ceil_bps: 10_000_000,
            },
            HtbClass {
                id: 3,
                rate_bps: 6_000_000,
                ceil_bps: 10_000_000,
            },
        ],
        default_class: 3,
    };
    let flow = FlowMatch {
        dst: Some(Ipv4Addr::new(198, 18, 0, 9)),
        proto: Some(17),
        dport: Some(5000),
        ..FlowMatch::default()
    };
    link::shape_htb(&a, "qa", &spec, &[(2, flow)]).unwrap();
    let classes = a.tc(&["class", "show", "dev", "qa"]).unwrap();
    let classes = String::from_utf8_lossy(&classes.stdout);
    assert!(
        classes.contains("class htb 1:2") && classes.contains("class htb 1:3"),
        "{classes}"
    );
    let filters = a.tc(&["filter", "show", "dev", "qa"]).unwrap();
    assert!(String::from_utf8_lossy(&filters.stdout).contains("flowid 1:2"));
    let bad = HtbSpec {
        default_class: 9,
        ..spec
    };
    assert!(
        link::shape_htb(&a, "qa", &bad, &[]).is_err(),
        "unknown default class accepted"
    );
    // Blackhole composes with the root qdisc and is removable.
    link::blackhole(&a, "qa").unwrap();
    let eg = a.tc(&["filter", "show", "dev", "qa", "egress"]).unwrap();
    assert!(!eg.stdout.is_empty(), "no egress filter installed");
    link::unblackhole(&a, "qa").unwrap();
    let eg = a.tc(&["filter", "show", "dev", "qa", "egress"]).unwrap();
    assert!(
        eg.stdout.is_empty(),
        "blackhole filter left: {}",
        String::from_utf8_lossy(&eg.stdout)
    );
}
