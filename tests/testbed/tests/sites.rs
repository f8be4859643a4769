//! Multi-site topologies: the MON triangle with kernel routing, shaping,
//! failure injection; multi-homing. Needs root.

mod common;

use std::net::SocketAddr;

use mongate_testbed::{Sites, link};

#[test]
fn triangle_routes_shapes_fails_and_cleans_up() {
    if common::skip("triangle_routes_shapes_fails_and_cleans_up") {
        return;
    }
    let t = Sites::triangle().prefix("mgtt-").build().unwrap();
    assert_eq!(common::ours("mgtt-").len(), 3 * 2 + 3);
    t.install_kernel_routes().unwrap();
    let (a, b) = (t.site("A").unwrap(), t.site("B").unwrap());
    assert_eq!(b.lan_prefix.to_string(), "198.18.16.0/24");
    let b_host: SocketAddr = (b.host_if().v4.unwrap().addr, 9).into();
    let b_host6: SocketAddr = (b.host_if().v6.unwrap().addr, 9).into();
    assert!(
        common::udp_reach(&a.lan_ns, &b.lan_ns, b_host),
        "A -> B over kernel routes"
    );
    assert!(
        common::udp_reach(&a.lan_ns, &b.lan_ns, b_host6),
        "A -> B over IPv6"
    );
    // Shapers sit in the wire namespaces, at the configured rates.
    for (name, rate) in [("ab", "10Mbit"), ("ac", "10Mbit"), ("bc", "5Mbit")] {
        let l = t.link(name).unwrap();
        for port in ["xa", "xb"] {
            let q = l
                .wire_ns
                .tc(&["qdisc", "show", "dev", port, "root"])
                .unwrap();
            let q = String::from_utf8_lossy(&q.stdout);
            assert!(
                q.contains("tbf") && q.contains(&format!("rate {rate}")),
                "{name}/{port}: {q}"
            );
        }
    }
    // Link down from the wire: gateway A loses carrier, traffic stops.
    let ab = t.link("ab").unwrap();
    t.set_link("ab", false).unwrap();
    assert!(!link::is_up(&a.gw_ns, &ab.a_if().ifname).unwrap());
    assert!(
        !common::udp_reach(&a.lan_ns, &b.lan_ns, b_host),
        "delivered over a down link"
    );
    t.set_link("ab", true).unwrap();
    assert!(link::is_up(&a.gw_ns, &ab.a_if().ifname).unwrap());
    assert!(
        common::udp_reach(&a.lan_ns, &b.lan_ns, b_host),
        "no recovery after link up"
    );
    // Blackhole: carrier stays, traffic vanishes.
    t.blackhole_link("ab", true).unwrap();
    assert!(link::is_up(&a.gw_ns, &ab.a_if().ifname).unwrap());
    assert!(
        !common::udp_reach(&a.lan_ns, &b.lan_ns, b_host),
        "delivered through a blackhole"
    );
    t.blackhole_link("ab", false).unwrap();
    assert!(
        common::udp_reach(&a.lan_ns, &b.lan_ns, b_host),
        "no recovery after blackhole"
    );
    drop(t);
    assert!(
        common::ours("mgtt-").is_empty(),
        "namespaces left after drop"
    );
}

#[test]
fn multi_homed_sites_get_one_interface_per_uplink() {
    if common::skip("multi_homed_sites_get_one_interface_per_uplink") {
        return;
    }
    let t = Sites::new()
        .prefix("mgtm-")
        .site("X")
        .site("Y")
        .wan("X", "Y", 20.0, "fiber")
        .wan("Y", "X", 2.0, "lte")
        .build()
        .unwrap();
    assert_eq!(t.links_between("X", "Y").len(), 2);
    let x = t.site("X").unwrap();
    for l in t.links_between("Y", "X") {
        let own = if l.a_site == x.index {
            l.a_if()
        } else {
            l.b_if()
        };
        assert!(
            link::is_up(&x.gw_ns, &own.ifname).unwrap(),
            "{} down",
            own.ifname
        );
    }
    assert_ne!(
        t.link("fiber").unwrap().a_if().v4,
        t.link("lte").unwrap().b_if().v4
    );
    let names = t.ns_names();
    drop(t);
    let left = mongate_testbed::list_with_prefix("mgtm-").unwrap();
    assert!(names.iter().all(|n| !left.contains(n)), "left: {left:?}");
}
