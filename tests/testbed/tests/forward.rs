//! gen — dut — sink: build, forward with the kernel, blackhole, tear down.
//! Needs root.

mod common;

use std::net::SocketAddr;

use mongate_testbed::link;
use mongate_testbed::topology::forward::{ForwardOptions, SINK_V4, SINK_V6};
use mongate_testbed::{ForwardTopology, Mac};

fn build(prefix: &str) -> ForwardTopology {
    ForwardTopology::with_options(&ForwardOptions {
        prefix: prefix.into(),
        queues: 2,
        ..ForwardOptions::default()
    })
    .unwrap()
}

#[test]
fn forward_topology_forwards_only_when_enabled_and_cleans_up() {
    if common::skip("forward_topology_forwards_only_when_enabled_and_cleans_up") {
        return;
    }
    let t = build("mgtf-");
    assert_eq!(common::ours("mgtf-").len(), 3);
    let sink4: SocketAddr = (SINK_V4, 9).into();
    let sink6: SocketAddr = (SINK_V6, 9).into();
    // Forwarding is off by default: dut drops.
    assert!(
        !common::udp_reach(&t.gen_ns, &t.sink_ns, sink4),
        "delivered without forwarding"
    );
    t.set_kernel_forwarding(true).unwrap();
    assert!(
        common::udp_reach(&t.gen_ns, &t.sink_ns, sink4),
        "IPv4 not forwarded"
    );
    assert!(
        common::udp_reach(&t.gen_ns, &t.sink_ns, sink6),
        "IPv6 not forwarded"
    );
    // Static neighbours, deterministic MACs, queue counts as asked.
    assert_eq!(t.gen_if().mac, Mac::from_ipv4(t.gen_if().v4.unwrap().addr));
    assert_eq!(
        link::read_mac(&t.dut_ns, "dut0").unwrap(),
        t.dut_in_if().mac
    );
    let neigh = t.gen_ns.ip(&["neigh", "show", "dev", "gen0"]).unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains(&format!(
            "198.18.0.2 lladdr {} PERMANENT",
            t.dut_in_if().mac
        )),
        "{neigh}"
    );
    let d = t.dut_ns.ip(&["-d", "link", "show", "dut1"]).unwrap();
    assert!(String::from_utf8_lossy(&d.stdout).contains("numtxqueues 2 numrxqueues 2"));
    // Blackhole on dut's egress towards sink, then lift it.
    link::blackhole(&t.dut_ns, "dut1").unwrap();
    assert!(
        !common::udp_reach(&t.gen_ns, &t.sink_ns, sink4),
        "blackhole let traffic through"
    );
    link::unblackhole(&t.dut_ns, "dut1").unwrap();
    link::unblackhole(&t.dut_ns, "dut1").unwrap(); // idempotent
    assert!(
        common::udp_reach(&t.gen_ns, &t.sink_ns, sink4),
        "traffic did not resume"
    );
    drop(t);
    assert!(
        common::ours("mgtf-").is_empty(),
        "namespaces left after drop"
    );
}

#[test]
fn ping_across_forward_topology() {
    if common::skip("ping_across_forward_topology")
        || common::skip_no_ping("ping_across_forward_topology")
    {
        return;
    }
    let t = build("mgtg-");
    t.set_kernel_forwarding(true).unwrap();
    assert!(
        common::ping(&t.gen_ns, "198.19.0.1", 3),
        "IPv4 ping gen -> sink failed"
    );
    assert!(
        common::ping(&t.gen_ns, "2001:2:0:1::1", 3),
        "IPv6 ping gen -> sink failed"
    );
    link::set_link_down(&t.dut_ns, "dut1").unwrap();
    assert!(
        !link::is_up(&t.sink_ns, "sink0").unwrap(),
        "peer kept carrier"
    );
    assert!(
        !common::ping(&t.gen_ns, "198.19.0.1", 1),
        "ping through a downed link"
    );
    link::set_link_up(&t.dut_ns, "dut1").unwrap();
    assert!(
        common::ping(&t.gen_ns, "198.19.0.1", 3),
        "ping after link up failed"
    );
    drop(t);
    assert!(common::ours("mgtg-").is_empty());
}
