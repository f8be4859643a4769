use super::*;
use crate::discover::{NumaNode, QueueIrq, XdpSupport};
use crate::parse::interrupts::QueueDir;
use proptest::prelude::*;

fn host(ncpu: u32, isolated: &[u32], nodes: &[&[u32]]) -> HostInfo {
    HostInfo {
        kernel: "6.18".into(),
        online_cpus: (0..ncpu).collect(),
        isolated: isolated.to_vec(),
        nohz_full: vec![],
        numa_nodes: nodes
            .iter()
            .zip(0u32..)
            .map(|(c, id)| NumaNode {
                id,
                cpus: c.to_vec(),
            })
            .collect(),
        hugepages: vec![crate::discover::Hugepages {
            size_kb: 2048,
            total: 0,
            free: 0,
        }],
        irqbalance_running: false,
    }
}

fn nic(
    name: &str,
    driver: &str,
    max: u32,
    cur: u32,
    node: Option<u32>,
    irq_base: Option<u32>,
) -> NicInfo {
    NicInfo {
        ifname: name.into(),
        ifindex: Some(2),
        driver: Some(driver.into()),
        driver_version: None,
        firmware: None,
        bus_info: None,
        mtu: Some(1500),
        mac: None,
        operstate: "up".into(),
        carrier: Some(true),
        numa_node: node,
        has_device: irq_base.is_some(),
        channels: Some(Channels {
            max_combined: max,
            combined: cur,
            ..Channels::default()
        }),
        sysfs_rx_queues: cur,
        sysfs_tx_queues: cur,
        irqs: irq_base
            .map(|b| {
                (0..cur)
                    .map(|q| QueueIrq {
                        queue: q,
                        dir: QueueDir::Both,
                        irq: b + q,
                        name: format!("{name}-TxRx-{q}"),
                        affinity: vec![],
                        count: 0,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        xdp: XdpSupport {
            generic: true,
            native: crate::xdp::driver_xdp(driver).is_some_and(|d| d.native),
            zero_copy: crate::xdp::driver_xdp(driver).is_some_and(|d| d.zero_copy),
            note: String::new(),
        },
        notes: vec![],
    }
}

fn veth(name: &str, q: u32) -> NicInfo {
    let mut n = nic(name, "veth", 0, 0, None, None);
    n.channels = Some(Channels {
        max_rx: q,
        max_tx: q,
        rx: q,
        tx: q,
        ..Channels::default()
    });
    n.sysfs_rx_queues = q;
    n.sysfs_tx_queues = q;
    n
}

#[test]
fn default_workers_skip_core0_prefer_isolated_local() {
    let h = host(8, &[5, 6, 7], &[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    let n = nic("eth0", "ice", 64, 8, Some(1), Some(100));
    let p = make_plan(&h, &[n], &PlanRequest::default()).unwrap();
    let cores: Vec<u32> = p.workers.iter().map(|w| w.core).collect();
    assert_eq!(cores, vec![5, 6, 7, 4, 1, 2, 3]);
    assert_eq!(p.workers[0].queues[0].irq, Some(100));
    assert_eq!(p.workers[6].queues[0].queue, 6);
    assert_eq!(p.xdp_mode, XdpMode::Native);
    assert!(p.zero_copy);
    assert_eq!(p.interfaces[0].channels.combined, Some(7));
    assert!(p.warnings.iter().any(|w| w.contains("from 8 to 7")));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("core 4 is not isolated"))
    );
    p.validate().unwrap();
}

#[test]
fn two_cores_use_both() {
    let h = host(2, &[], &[&[0, 1]]);
    let p = make_plan(&h, &[veth("a", 2)], &PlanRequest::default()).unwrap();
    assert_eq!(
        p.workers.iter().map(|w| w.core).collect::<Vec<_>>(),
        vec![1, 0]
    );
    assert_eq!(
        p.interfaces[0].channels,
        ChannelTarget {
            combined: None,
            rx: Some(2),
            tx: Some(2)
        }
    );
    assert_eq!(p.xdp_mode, XdpMode::Native);
    assert!(!p.zero_copy);
    assert!(p.warnings.iter().any(|w| w.contains("a: virtual device")));
    assert!(p.warnings.iter().any(|w| w.contains("isolcpus=1 ")));
    let one = make_plan(
        &h,
        &[veth("a", 2)],
        &PlanRequest {
            workers: Some(1),
            ..PlanRequest::default()
        },
    )
    .unwrap();
    assert_eq!(
        one.workers[0].core, 1,
        "core 0 is the housekeeping core, used last"
    );
}

#[test]
fn capacity_caps_default_and_rejects_explicit() {
    let h = host(4, &[], &[&[0, 1, 2, 3]]);
    let p = make_plan(
        &h,
        &[nic("eth0", "virtio_net", 1, 1, None, Some(38))],
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(p.workers.len(), 1);
    assert!(p.warnings.iter().any(|w| w.contains("at most 1 queues")));
    let e = make_plan(
        &h,
        &[nic("eth0", "virtio_net", 1, 1, None, Some(38))],
        &PlanRequest {
            workers: Some(2),
            ..PlanRequest::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "eth0: at most 1 queues, 2 workers asked: use --workers 1 or fewer"
    );
    let e = make_plan(
        &h,
        &[veth("a", 8)],
        &PlanRequest {
            workers: Some(4),
            ..PlanRequest::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("only 3 usable cores"), "{e}");
    let e = make_plan(
        &h,
        &[veth("a", 8)],
        &PlanRequest {
            workers: Some(0),
            ..PlanRequest::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 1"));
    assert!(make_plan(&h, &[], &PlanRequest::default()).is_err());
    assert!(make_plan(&h, &[veth("a", 2), veth("a", 2)], &PlanRequest::default()).is_err());
}

#[test]
fn generic_if_any_driver_lacks_native() {
    let h = host(4, &[], &[&[0, 1, 2, 3]]);
    let p = make_plan(
        &h,
        &[
            nic("eth0", "ice", 8, 8, None, Some(1)),
            nic("d0", "dummy", 8, 8, None, Some(50)),
        ],
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(p.xdp_mode, XdpMode::Generic);
    assert!(!p.zero_copy);
    assert_eq!(p.workers[2].queues.len(), 2);
    assert_eq!(p.workers[2].queues[1].irq, Some(52));
}

#[test]
fn hugepages_need_known_size() {
    let h = host(2, &[], &[&[0, 1]]);
    let req = PlanRequest {
        workers: None,
        hugepages: Some(HugepagePlan {
            size_kb: 2048,
            pages: 64,
        }),
    };
    let p = make_plan(&h, &[veth("a", 2)], &req).unwrap();
    assert_eq!(
        p.hugepages,
        Some(HugepagePlan {
            size_kb: 2048,
            pages: 64
        })
    );
    let req = PlanRequest {
        workers: None,
        hugepages: Some(HugepagePlan {
            size_kb: 4096,
            pages: 1,
        }),
    };
    assert!(make_plan(&h, &[veth("a", 2)], &req).is_err());
}

#[test]
fn toml_and_json_roundtrip() {
    let h = host(8, &[], &[&[0, 1, 2, 3, 4, 5, 6, 7]]);
    let req = PlanRequest {
        workers: Some(3),
        hugepages: Some(HugepagePlan {
            size_kb: 2048,
            pages: 8,
        }),
    };
    let p = make_plan(
        &h,
        &[
            nic("eth0", "ixgbe", 16, 16, Some(0), Some(64)),
            veth("v0", 4),
        ],
        &req,
    )
    .unwrap();
    let t = p.to_toml().unwrap();
    assert_eq!(plan_from_toml(&t).unwrap(), p);
    assert_eq!(plan_from_str(&t).unwrap(), p);
    assert_eq!(plan_from_str(&p.to_json().unwrap()).unwrap(), p);
}

#[test]
fn minimal_hand_written_plan_parses_and_bad_ones_fail() {
    let t = "xdp_mode = \"generic\"\nzero_copy = false\n[[workers]]\nid = 0\ncore = 1\nqueues = [{ ifname = \"a\", queue = 0 }]\n";
    let p = plan_from_toml(t).unwrap();
    assert_eq!(p.workers[0].queues[0].irq, None);
    assert!(p.interfaces.is_empty());
    let dup = format!("{t}[[workers]]\nid = 1\ncore = 1\nqueues = []\n");
    assert!(plan_from_toml(&dup).unwrap_err().contains("share core 1"));
    let twice =
        format!("{t}[[workers]]\nid = 1\ncore = 2\nqueues = [{{ ifname = \"a\", queue = 0 }}]\n");
    assert!(
        plan_from_toml(&twice)
            .unwrap_err()
            .contains("more than one worker")
    );
    assert!(plan_from_toml("xdp_mode = \"turbo\"\nzero_copy = false\nworkers = []").is_err());
}

proptest! {
    #[test]
    fn plan_parser_never_panics(s in "\\PC*") {
        let _ = plan_from_str(&s);
        let _ = plan_from_toml(&s);
    }

    #[test]
    fn plans_are_always_valid(ncpu in 1u32..64, iso in proptest::collection::vec(0u32..64, 0..8),
                              q in 1u32..32, workers in proptest::option::of(1u32..64)) {
        let h = host(ncpu, &iso, &[&(0..ncpu).collect::<Vec<_>>()]);
        let req = PlanRequest { workers, hugepages: None };
        if let Ok(p) = make_plan(&h, &[nic("eth0", "ice", q, q, Some(0), Some(10)), veth("v", q)], &req) {
            prop_assert!(p.validate().is_ok());
            prop_assert!(!p.workers.is_empty());
            prop_assert!(p.workers.len() <= usize::try_from(q).unwrap());
            prop_assert!(p.workers.iter().all(|w| w.core < ncpu && (ncpu <= 2 || w.core != 0)));
        }
    }
}
