//! The driver against a simulated dataplane: a seeded model of the paths (alive, loss, RTT)
//! answers the probe commands and produces per-flow acks and losses for the flows on their
//! assigned paths; time is simulated in 5 ms steps.

use mongate_dataplane::config::Config;
use mongate_dataplane::overlay::failover::{
    CONTROL_LEASE_NS, FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind,
    PathTelemetry,
};
use mongate_dataplane::shm::Command;
use mongate_dataplane::shm::msg::FlowTelemetry;
use proptest::prelude::*;

use super::{FailoverDriver, site_path_config};
use crate::failover::{MS, Nanos, SEC};

/// Site A of the triangle with two uplinks; C has two gateway addresses.
fn cfg() -> Config {
    let text = crate::run::tests::SITE_A
        .replace(
            r#"backend = "io_uring"
"#,
            r#"backend = "io_uring"

[[uplinks]]
name = "isp2"
interface = "up1"
local_address = "198.18.101.1"
capacity_mbps = 10
backend = "io_uring"
"#,
        )
        .replace(
            r#"gateways = ["198.18.104.1"]"#,
            r#"gateways = ["198.18.104.1", "198.18.105.1"]"#,
        );
    Config::from_toml_str(&text, "site-a2.toml").unwrap()
}

const B: u32 = 0;
const C: u32 = 1;

fn r(peer: u32, i: u32) -> u32 {
    peer << 16 | i
}

/// The dataplane's candidates: B: isp1, isp2; C: isp1 x 2 addresses, isp2 x 2 addresses,
/// then detours via B on isp1 and isp2.
fn table() -> Vec<PathTelemetry> {
    let p = |path, uplink, via, remote| PathTelemetry {
        path,
        uplink,
        via,
        remote,
        up: true,
        active: false,
        srtt_us: 0,
        rx_recent: false,
    };
    vec![
        p(r(B, 0), 0, u16::MAX, 0),
        p(r(B, 1), 1, u16::MAX, 0),
        p(r(C, 0), 0, u16::MAX, 0),
        p(r(C, 1), 0, u16::MAX, 1),
        p(r(C, 2), 1, u16::MAX, 0),
        p(r(C, 3), 1, u16::MAX, 1),
        p(r(C, 4), 0, 0, 0),
        p(r(C, 5), 1, 0, 0),
    ]
}

#[derive(Clone, Copy)]
struct Link {
    alive: bool,
    /// Loss each way, parts per thousand.
    loss_ppt: u64,
    rtt: Nanos,
}

struct World {
    d: FailoverDriver,
    now: Nanos,
    links: std::collections::BTreeMap<u32, Link>,
    /// Probe results due: (at, id, path, received, rtt).
    due: Vec<(Nanos, u64, u32, u32, Nanos)>,
    rng: u64,
    /// Cumulative (acks, losses) of flow 0 (A->C/direct).
    acks: u64,
    losses: u64,
    /// The path the dataplane sends flow 0 on.
    on: u32,
    /// Paths the control holds down in the dataplane's view.
    held_down: std::collections::BTreeSet<u32>,
    /// Paths the dataplane's ack-gap reflex dropped (until assigned or marked up).
    dropped: std::collections::BTreeSet<u32>,
    sent_probes: u64,
}

impl World {
    fn new() -> Self {
        let c = cfg();
        let d = FailoverDriver::new(&c, site_path_config(&c), 7, 0).unwrap();
        let mut w = World {
            d,
            now: 0,
            links: table()
                .iter()
                .map(|p| {
                    (
                        p.path,
                        Link {
                            alive: true,
                            loss_ppt: 0,
                            // isp1 paths 10 ms, isp2 14 ms, detours +8 ms.
                            rtt: 10 * MS
                                + u64::from(p.uplink) * 4 * MS
                                + u64::from(p.via != u16::MAX) * 8 * MS,
                        },
                    )
                })
                .collect(),
            due: Vec::new(),
            rng: 0x1234_5678_9ABC_DEF1,
            acks: 0,
            losses: 0,
            on: r(C, 0),
            held_down: std::collections::BTreeSet::new(),
            dropped: std::collections::BTreeSet::new(),
            sent_probes: 0,
        };
        w.d.on_paths(&table(), 0);
        w
    }

    fn chance(&mut self, ppt: u64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1000 < ppt
    }

    /// The dataplane side of the loop: probes answered (or not), assignments applied.
    fn exchange(&mut self) {
        for c in self.d.take_probes() {
            let Command::Probe { id, path, .. } = c else {
                panic!("not a probe: {c:?}")
            };
            self.sent_probes += 1;
            let Some(&l) = self.links.get(&path) else {
                // Not a path of this dataplane: refused at once.
                let now = self.now;
                self.d.on_probe_result(id, path, 0, 0, 0, now);
                continue;
            };
            let lost = !l.alive || self.chance(l.loss_ppt) || self.chance(l.loss_ppt);
            if lost {
                self.due.push((self.now + SEC, id, path, 0, 0));
            } else {
                self.due
                    .push((self.now + l.rtt + 2 * MS, id, path, 1, l.rtt));
            }
        }
        let now = self.now;
        let (ready, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|x| x.0 <= now);
        self.due = later;
        for (_, id, path, rec, rtt) in ready {
            self.d.on_probe_result(id, path, 1, rec, rtt, now);
        }
        for c in self.d.take_marks() {
            let Command::Assign { count, items } = c else {
                panic!("not a mark")
            };
            for a in &items[..usize::try_from(count).unwrap()] {
                match a.flow {
                    FLOW_MARK_DOWN => {
                        assert!(self.held_down.insert(a.path), "marked down twice");
                    }
                    FLOW_MARK_UP => {
                        self.held_down.remove(&a.path);
                        self.dropped.remove(&a.path);
                    }
                    f => panic!("not a mark: {f}"),
                }
            }
        }
        for (peer, cmds) in self.d.pending_assignments() {
            for c in &cmds {
                let Command::Assign { count, items } = c else {
                    panic!("not an assignment")
                };
                for a in &items[..usize::try_from(*count).unwrap()] {
                    // An assignment raises its path.
                    self.dropped.remove(&a.path);
                    // Flow 0 (A->C/direct) leaves toward C.
                    if a.flow == 0 {
                        self.on = a.path;
                    }
                }
            }
            self.d.assigned(peer);
        }
    }

    /// One 5 ms step; every 100 ms flow 0's telemetry (1000 packets/s on its path).
    fn step(&mut self) {
        self.now += 5 * MS;
        self.d.tick(self.now);
        self.exchange();
        if self.now.is_multiple_of(100 * MS) {
            let l = self.links.get(&self.on).copied().unwrap_or(Link {
                alive: false,
                loss_ppt: 0,
                rtt: 0,
            });
            for _ in 0..100 {
                if l.alive && !self.chance(l.loss_ppt) {
                    self.acks += 1;
                } else {
                    self.losses += 1;
                }
            }
            let t = FlowTelemetry {
                flow: 0,
                path: self.on,
                rate_bps: 8_000_000,
                acks: self.acks,
                losses: self.losses,
                queue_drops: 0,
                tx_bytes: 0,
            };
            self.d.on_flows(0, &[t], self.now);
        }
    }

    /// The dataplane's reflex: no ack on the path flow 0 rides; it drops the path, moves the
    /// flow to C's first candidate it holds usable and tells the control.
    fn ack_gap(&mut self) {
        let gapped = self.on;
        self.dropped.insert(gapped);
        if let Some(f) = (0..6)
            .map(|i| r(C, i))
            .find(|p| !self.dropped.contains(p) && !self.held_down.contains(p))
        {
            self.on = f;
        }
        let now = self.now;
        self.d.on_path_event(gapped, PathEventKind::AckGap, now);
    }

    fn run_for(&mut self, ns: Nanos) {
        let end = self.now + ns;
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `ok` or `limit`; returns the time it took.
    fn run_until(&mut self, limit: Nanos, mut ok: impl FnMut(&World) -> bool) -> Option<Nanos> {
        let t0 = self.now;
        while self.now - t0 < limit {
            if ok(self) {
                return Some(self.now - t0);
            }
            self.step();
        }
        None
    }
}

/// The manager probes every path that is up more often than the dataplane's lease lasts (jitter
/// included), so a live control holds the lease and the dataplane's own probes stay paused.
#[test]
fn the_managers_probes_renew_the_dataplanes_lease() {
    let p = site_path_config(&cfg());
    let jitter = p.health.probe_interval_ns / 100 * u64::from(p.probe_jitter_pct);
    assert!(p.health.probe_interval_ns + jitter < CONTROL_LEASE_NS);
}

#[test]
fn first_answer_wins_and_every_flow_of_the_peer_is_assigned() {
    let mut w = World::new();
    let t = w
        .run_until(500 * MS, |w| {
            w.d.wanted_path(1).is_some() && w.d.wanted_path(0).is_some()
        })
        .expect("both peers get a path");
    assert!(t <= 100 * MS, "initial race took {} ms", t / MS);
    // The fastest answers first: isp1 (10 ms) beats isp2 (14 ms) and the detours.
    assert_eq!(w.d.wanted_path(1).map(|p| p & 0xFFFF), Some(0));
    // Assignments: the peer default and both flows leaving here (A->C/direct toward C,
    // A->C/via-B toward B), nothing for flows starting elsewhere.
    let mut w2 = World::new();
    w2.run_until(500 * MS, |w| w.d.wanted_path(1).is_some())
        .unwrap();
    w2.d.resync();
    let pending = w2.d.pending_assignments();
    let mut flows: Vec<(u32, u32)> = pending
        .iter()
        .flat_map(|(_, cmds)| cmds.iter())
        .flat_map(|c| match c {
            Command::Assign { count, items } => items[..usize::try_from(*count).unwrap()]
                .iter()
                .map(|a| (a.flow, a.path >> 16))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    flows.sort_unstable();
    assert_eq!(
        flows,
        vec![
            (0, C),
            (1, B),
            (FLOW_PEER_DEFAULT, B),
            (FLOW_PEER_DEFAULT, C)
        ]
    );
    assert_eq!(w.d.stats().bad_paths, 0);
}

#[test]
fn an_ack_gap_moves_the_flows_to_a_path_that_answers() {
    let mut w = World::new();
    w.run_for(3 * SEC);
    let before = w.on;
    assert_eq!(before, r(C, 0));
    // isp1 goes dark (both of its C paths and the detour on it).
    for p in [r(C, 0), r(C, 1), r(C, 4), r(B, 0)] {
        w.links.get_mut(&p).unwrap().alive = false;
    }
    let now = w.now;
    w.d.on_path_event(before, PathEventKind::AckGap, now);
    let t = w
        .run_until(SEC, |w| w.on != before && w.links[&w.on].alive)
        .expect("the flows moved");
    assert!(t < 100 * MS, "move took {} ms", t / MS);
    // And they stay on a live path.
    w.run_for(5 * SEC);
    assert!(w.links[&w.on].alive);
}

/// A false alarm: the dataplane's reflex moves flow 0 off the direct path, which works, to
/// the detour (the other direct paths to C are dead, as in a three-site overlay). The direct
/// path answers the race first; the control still confirms the detour and tells the dataplane
/// (their views agree again), raises the dropped direct path in the dataplane once it holds it
/// up, and moves the flow back by the return rule (up 10 s, rank below 0.8 x the detour's).
/// Before, the direct path's own answer won the race, nothing was sent, and the flow stayed
/// on the detour for good while the control believed it on the direct path.
#[test]
fn after_a_false_alarm_the_flow_rides_the_detour_then_returns_to_the_direct_path() {
    let mut w = World::new();
    for i in 1..4 {
        w.links.get_mut(&r(C, i)).unwrap().alive = false;
    }
    // 40 s: the direct path has a history of 32 answered probes (the return rule needs them).
    w.run_for(40 * SEC);
    assert!((1..4).all(|i| w.held_down.contains(&r(C, i))));
    assert_eq!(w.on, r(C, 0));
    assert_eq!(w.d.wanted_path(1), Some(r(C, 0)));
    w.ack_gap();
    assert_eq!(w.on, r(C, 4), "the reflex fell back to the detour");
    w.run_until(SEC, |w| {
        w.d.wanted_path(1) == Some(w.on) && !w.dropped.contains(&r(C, 0))
    })
    .unwrap_or_else(|| {
        panic!(
            "control wants {:?}, the flow rides {:#x}, dropped {:?}",
            w.d.wanted_path(1),
            w.on,
            w.dropped
        )
    });
    assert!(w.on & 0xFFFF >= 4, "not on a detour: {:#x}", w.on);
    let t = w
        .run_until(20 * SEC, |w| w.on == r(C, 0))
        .expect("back on the direct path");
    let hold = site_path_config(&cfg()).health.failback_after_ns;
    assert!(
        t >= hold - SEC && t <= hold + 3 * SEC,
        "back after {} ms",
        t / MS
    );
    // And it stays there, the control and the dataplane agreeing.
    for _ in 0..400 {
        w.step();
        assert_eq!(w.d.wanted_path(1), Some(w.on));
    }
    assert_eq!(w.on, r(C, 0));
}

#[test]
fn heavy_loss_moves_the_flows_and_fails_the_link_only_when_every_direct_path_is_bad() {
    let mut w = World::new();
    w.run_for(3 * SEC);
    assert_eq!(w.on, r(C, 0));
    // 50 % loss each way on the path in use: probes still get some answers.
    w.links.get_mut(&r(C, 0)).unwrap().loss_ppt = 500;
    let t = w
        .run_until(10 * SEC, |w| w.on != r(C, 0))
        .expect("the flows left the lossy path");
    println!("heavy loss: moved after {} ms", t / MS);
    assert!(w.links[&w.on].loss_ppt == 0);
    // The lossy path is held down in the dataplane's view (its reflex will not pick it).
    w.run_until(5 * SEC, |w| w.held_down.contains(&r(C, 0)))
        .expect("the lossy path marked down");
    // One lossy path of four direct ones: no link failure for PFO.
    w.run_for(5 * SEC);
    assert!(w.d.take_link_changes().iter().all(|&(_, failed)| !failed));
    // Every direct path to C lossy: the link to C is failed for PFO; the flows ride the
    // detour through B.
    for i in 0..4 {
        w.links.get_mut(&r(C, i)).unwrap().loss_ppt = 600;
    }
    let mut changes = Vec::new();
    w.run_until(30 * SEC, |_| false);
    changes.extend(w.d.take_link_changes());
    assert!(
        changes.contains(&(1, true)),
        "link to C not reported failed: {changes:?}"
    );
    assert!(w.on & 0xFFFF >= 4, "not on a detour: {:#x}", w.on);
    // Repaired: reported up again, and the flows go back to a direct path.
    for i in 0..4 {
        w.links.get_mut(&r(C, i)).unwrap().loss_ppt = 0;
    }
    w.run_until(60 * SEC, |w| w.on & 0xFFFF < 4)
        .expect("back on a direct path");
    w.run_until(30 * SEC, |w| {
        (0..4).all(|i| !w.held_down.contains(&r(C, i)))
    })
    .expect("repaired paths marked up again");
    w.run_for(2 * SEC);
    let back = w.d.take_link_changes();
    assert!(
        back.contains(&(1, false)),
        "link to C not repaired: {back:?}"
    );
    // Probe cost stayed within the budget: 0.5 % of 2 x 10 Mbit/s in 96-byte probes is
    // 260 probes/s at most.
    let secs = w.now / SEC;
    assert!(
        w.sent_probes / secs < 260,
        "{} probes/s",
        w.sent_probes / secs
    );
}

fn arb_paths() -> impl Strategy<Value = Vec<PathTelemetry>> {
    proptest::collection::vec(
        (
            any::<u32>(),
            0u16..4,
            prop_oneof![Just(u16::MAX), 0u16..4],
            0u16..4,
        ),
        0..20,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(path, uplink, via, remote)| PathTelemetry {
                path: path & 0x3_000F,
                uplink,
                via,
                remote,
                ..PathTelemetry::default()
            })
            .collect()
    })
}

proptest! {
    /// Garbage from a dataplane (or a peer answering with garbage behind it) never panics
    /// the driver nor stalls it: afterwards it still races and assigns.
    #[test]
    fn garbage_inputs_are_counted_not_fatal(
        paths in arb_paths(),
        results in proptest::collection::vec(
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()), 0..40),
        events in proptest::collection::vec(any::<u32>(), 0..10),
        flows in proptest::collection::vec(
            (0u32..6, any::<u32>(), any::<u64>(), any::<u64>()), 0..20),
    ) {
        let mut w = World::new();
        let mut now = 0;
        w.d.on_paths(&paths, now);
        for (id, path, sent, rec, rtt) in results {
            now += MS;
            w.d.on_probe_result(id, path, sent, rec, rtt, now);
        }
        for e in events {
            w.d.on_path_event(e, PathEventKind::AckGap, now);
        }
        for (flow, path, acks, losses) in flows {
            let t = FlowTelemetry {
                flow,
                path,
                rate_bps: 0,
                acks,
                losses,
                queue_drops: 0,
                tx_bytes: 0,
            };
            w.d.on_flows(0, &[t], now);
        }
        w.now = now;
        w.run_for(2 * SEC);
        let wanted = w.d.wanted_path(1);
        prop_assert!(wanted.is_some_and(|p| w.links.get(&p).is_some_and(|l| l.alive)), "{wanted:?}");
        prop_assert!(w.d.manager().check_invariants().is_ok());
        let _ = PATH_NONE;
    }
}

/// Peer B's flows fill the B-to-A direction of our active path to B: our probes' echoes are
/// lost in its queue while B's data keeps arriving by that path (`rx_recent`). That data
/// vouches for the path: it stays B's path. Once B's data stops too, the lost probes move
/// B's traffic off it.
#[test]
fn data_from_the_peer_vouches_for_the_path_its_echoes_are_lost_on() {
    let mut w = World::new();
    w.run_for(3 * SEC);
    let active =
        w.d.wanted_path(usize::try_from(B).unwrap())
            .expect("B has a path");
    w.links.get_mut(&active).unwrap().alive = false;
    let mut seen: Vec<PathTelemetry> = table();
    for p in &mut seen {
        p.rx_recent = p.path == active;
    }
    for _ in 0..40 {
        // 2 s: B's data arrives by the path; the control hears of it every 100 ms.
        w.run_for(50 * MS);
        let now = w.now;
        w.d.on_paths(&seen, now);
    }
    assert_eq!(
        w.d.wanted_path(usize::try_from(B).unwrap()),
        Some(active),
        "vouched for by B's data"
    );
    let moved = w.run_until(5 * SEC, |w| {
        w.d.wanted_path(usize::try_from(B).unwrap()) != Some(active)
    });
    assert!(moved.is_some(), "B's data stopped: its lost probes count");
}
