//! Unit and property tests of the path manager.

use proptest::prelude::*;

use super::*;
use crate::failover::ids::AddrId;

const DST: SiteId = SiteId(2);

fn cfg() -> PathConfig {
    PathConfig {
        uplinks: vec![
            UplinkConfig {
                id: UplinkId(0),
                capacity_bytes_per_s: 1_250_000,
                cost: 0,
            },
            UplinkConfig {
                id: UplinkId(1),
                capacity_bytes_per_s: 1_250_000,
                cost: 5 * MS,
            },
        ],
        initial_seq: Some(100),
        ..PathConfig::default()
    }
}

fn key(u: u16, r: u32, wp: Option<u32>) -> PathKey {
    PathKey {
        dst: DST,
        uplink: UplinkId(u),
        waypoint: wp.map(SiteId),
        remote: AddrId(r),
    }
}

/// Paths 0..4: (u0,r0) (u0,r1) (u1,r0) (u1,r1); path 4: (u0, via site 3, r0).
fn manager(c: PathConfig) -> PathManager {
    let mut m = PathManager::new(c, 7, 0).expect("valid config");
    for (u, r, wp) in [
        (0, 0, None),
        (0, 1, None),
        (1, 0, None),
        (1, 1, None),
        (0, 0, Some(3)),
    ] {
        m.add_path(key(u, r, wp), 0).expect("path");
    }
    m
}

fn drain(m: &mut PathManager) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

/// A tiny driver: answers probes on working paths after `rtt`, feeds data feedback for the
/// active path every 50 ms, calls `handle_timeout` when due.
struct Driver {
    now: Nanos,
    working: Vec<bool>,
    /// Probe RTT per path.
    rtt: Vec<Nanos>,
    /// Packets lost of every 50 in the active path's data feedback.
    data_loss: u64,
    /// Per path, 0 or n: every probe whose sequence number is a multiple of n is lost (a full
    /// link's occasional drop).
    drop_every: Vec<u32>,
    pending: Vec<(Nanos, PathId, u32)>,
    next_feedback: Nanos,
    log: Vec<(Nanos, Action)>,
    /// Called with the manager as it is when it emits an action.
    check: Option<fn(&PathManager, &Action)>,
}

impl Driver {
    fn new(n: usize) -> Self {
        Self {
            now: 0,
            working: vec![true; n],
            rtt: vec![10 * MS; n],
            data_loss: 0,
            drop_every: vec![0; n],
            pending: Vec::new(),
            next_feedback: 50 * MS,
            log: Vec::new(),
            check: None,
        }
    }

    fn collect(&mut self, m: &mut PathManager) {
        for a in drain(m) {
            if let Some(f) = self.check {
                f(m, &a);
            }
            if let Action::Probe { path, seq } = a
                && self.working[path.0 as usize]
                && !matches!(self.drop_every[path.0 as usize], n if n > 0 && seq % n == 0)
            {
                self.pending
                    .push((self.now + self.rtt[path.0 as usize], path, seq));
            }
            self.log.push((self.now, a));
        }
    }

    fn run_until(&mut self, m: &mut PathManager, end: Nanos) {
        self.collect(m);
        while self.now < end {
            let mut next = end.min(self.next_feedback);
            if let Some(t) = m.poll_timeout() {
                next = next.min(t);
            }
            if let Some(p) = self.pending.iter().map(|p| p.0).min() {
                next = next.min(p);
            }
            assert!(next >= self.now);
            self.now = next;
            let due: Vec<_> = self
                .pending
                .iter()
                .copied()
                .filter(|p| p.0 <= self.now)
                .collect();
            self.pending.retain(|p| p.0 > self.now);
            for (_, path, seq) in due {
                m.on_probe_reply(path, seq, self.now);
                self.collect(m);
            }
            if self.now >= self.next_feedback {
                self.next_feedback += 50 * MS;
                if let Some(a) = m.active_path(DST) {
                    if self.working[a.0 as usize] {
                        m.on_data_feedback(a, 50 - self.data_loss, self.data_loss, self.now);
                    }
                    self.collect(m);
                }
            }
            if m.poll_timeout().is_some_and(|t| t <= self.now) {
                m.handle_timeout(self.now);
                self.collect(m);
                assert!(
                    m.poll_timeout().is_some_and(|t| t > self.now),
                    "timer stall"
                );
            }
            m.check_invariants().expect("invariants");
        }
    }

    fn moves_after(&self, t: Nanos) -> Vec<(Nanos, Option<PathId>, PathId)> {
        self.log
            .iter()
            .filter_map(|(at, a)| match a {
                Action::MoveFlows { from, to, .. } if *at >= t => Some((*at, *from, *to)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn new_destination_races_staggered_and_first_answer_wins() {
    let mut m = manager(cfg());
    assert!(
        m.poll_timeout().is_some_and(|t| t == 0),
        "a new destination wants a race now"
    );
    m.handle_timeout(0);
    let a = drain(&mut m);
    assert_eq!(
        m.stats().race_probes,
        1,
        "only the best candidate at first: {a:?}"
    );
    assert!(a.contains(&Action::Probe {
        path: PathId(0),
        seq: 100
    }));
    m.handle_timeout(10 * MS);
    drain(&mut m);
    assert_eq!(m.stats().race_probes, 2);
    // The second candidate answers first: it wins.
    m.on_probe_reply(PathId(1), 100, 15 * MS);
    let a = drain(&mut m);
    assert_eq!(
        a,
        vec![Action::MoveFlows {
            dst_site: DST,
            from: None,
            to: PathId(1)
        }]
    );
    assert_eq!(m.active_path(DST), Some(PathId(1)));
    // The race is over: no third race probe.
    m.handle_timeout(20 * MS);
    drain(&mut m);
    assert_eq!(m.stats().race_probes, 2);
    // Sent at 10 ms, answered at 15 ms.
    assert_eq!(m.path_view(PathId(1)).unwrap().srtt, Some(5 * MS));
}

/// The dataplane's active path (reported up and answering) is taken over at
/// once: no race, one initial move to it; a second one for the same
/// destination, or one on an uplink without carrier, is ignored; from then
/// on probes judge it as any other path.
#[test]
fn an_adopted_path_is_active_without_a_race() {
    let mut m = manager(cfg());
    m.adopt_active(PathId(4), 0);
    m.adopt_active(PathId(1), 0);
    assert_eq!(m.active_path(DST), Some(PathId(4)));
    assert_eq!(m.path_state(PathId(4)), Some(PathState::Up));
    m.handle_timeout(0);
    m.handle_timeout(50 * MS);
    let a = drain(&mut m);
    assert_eq!(m.stats().races_started, 0, "{a:?}");
    assert_eq!((m.stats().adopted, m.stats().initial_moves), (1, 1));
    assert!(a.contains(&Action::MoveFlows {
        dst_site: DST,
        from: None,
        to: PathId(4)
    }));
    assert_eq!(m.active_path(DST), Some(PathId(4)));
    // A path on an uplink without carrier is not taken.
    let mut m = manager(cfg());
    m.on_link_event(UplinkId(1), false, 0);
    m.adopt_active(PathId(2), 0);
    assert_ne!(m.active_path(DST), Some(PathId(2)));
    assert_eq!(m.stats().adopted, 0);
}

/// Path 0 direct (active), path 1 direct on the other uplink, losing a few
/// percent of its data (lossy but up), path 2 through waypoint 3; an ack
/// gap on path 0 starts a race among all three.
fn race_with_a_lossy_candidate() -> (PathManager, Nanos, Vec<(PathId, u32)>) {
    let c = PathConfig {
        degrade_loss: 0.01,
        ..cfg()
    };
    let mut m = PathManager::new(c, 7, 0).expect("valid config");
    for (u, wp) in [(0, None), (1, None), (0, Some(3))] {
        m.add_path(key(u, 0, wp), 0).expect("path");
    }
    let mut d = Driver::new(3);
    d.run_until(&mut m, 20 * SEC);
    assert_eq!(m.active_path(DST), Some(PathId(0)));
    let t = d.now;
    // 2 % loss: below `bad_feedback_loss` (no failure), above `degrade_loss`.
    for k in 0..20 {
        m.on_data_feedback(PathId(1), 98, 2, t + k);
    }
    drain(&mut m);
    assert_eq!(m.path_state(PathId(1)), Some(PathState::Up));
    let t = t + 100;
    m.on_ack_gap(PathId(0), t);
    let mut probes = Vec::new();
    for k in 0..3 {
        m.handle_timeout(t + k * 10 * MS);
        for a in drain(&mut m) {
            if let Action::Probe { path, seq } = a {
                probes.push((path, seq));
            }
        }
    }
    (m, t, probes)
}

#[test]
fn a_race_prefers_a_clean_answer_to_a_lossy_one() {
    let (mut m, t, probes) = race_with_a_lossy_candidate();
    let seq = |p: u32| probes.iter().find(|x| x.0 == PathId(p)).expect("raced").1;
    // The lossy path answers first: not taken while the waypoint is racing.
    m.on_probe_reply(PathId(1), seq(1), t + 25 * MS);
    assert!(
        !drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::MoveFlows { .. })),
        "moved to the lossy path"
    );
    m.on_probe_reply(PathId(2), seq(2), t + 35 * MS);
    assert!(drain(&mut m).contains(&Action::MoveFlows {
        dst_site: DST,
        from: Some(PathId(0)),
        to: PathId(2)
    }));
}

#[test]
fn a_lossy_answer_wins_when_no_clean_one_comes() {
    let (mut m, t, probes) = race_with_a_lossy_candidate();
    let seq = |p: u32| probes.iter().find(|x| x.0 == PathId(p)).expect("raced").1;
    m.on_probe_reply(PathId(1), seq(1), t + 25 * MS);
    drain(&mut m);
    // The waypoint never answers: at the end of the race the lossy path is
    // better than none.
    let mut moved = None;
    let mut now = t + 25 * MS;
    while moved.is_none() && now < t + 5 * SEC {
        now = m.poll_timeout().expect("a race has a deadline").max(now);
        m.handle_timeout(now);
        moved = drain(&mut m).into_iter().find_map(|a| match a {
            Action::MoveFlows { to, .. } => Some(to),
            _ => None,
        });
    }
    assert_eq!(moved, Some(PathId(1)));
}

/// Path 0 direct (active), path 1 through waypoint 3, both answering; an ack
/// gap on path 0 (a false alarm: it still answers) starts a race of both.
fn false_alarm_race() -> (PathManager, Nanos, Vec<(PathId, u32)>) {
    let mut m = PathManager::new(cfg(), 7, 0).expect("valid config");
    for wp in [None, Some(3)] {
        m.add_path(key(0, 0, wp), 0).expect("path");
    }
    let mut d = Driver::new(2);
    d.run_until(&mut m, 20 * SEC);
    assert_eq!(m.active_path(DST), Some(PathId(0)));
    let t = d.now + 1;
    m.on_ack_gap(PathId(0), t);
    let mut probes = Vec::new();
    for k in 0..2 {
        m.handle_timeout(t + k * 10 * MS);
        for a in drain(&mut m) {
            if let Action::Probe { path, seq } = a {
                probes.push((path, seq));
            }
        }
    }
    (m, t, probes)
}

#[test]
fn a_path_whose_acks_stopped_does_not_win_its_own_race_while_another_answers() {
    let (mut m, t, probes) = false_alarm_race();
    let seq = |p: u32| probes.iter().find(|x| x.0 == PathId(p)).expect("raced").1;
    // The direct path answers first: the dataplane left it, so this is no reason to keep it.
    m.on_probe_reply(PathId(0), seq(0), t + 10 * MS);
    assert!(
        !drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::MoveFlows { .. })),
        "the suspect path won its own race"
    );
    m.on_probe_reply(PathId(1), seq(1), t + 30 * MS);
    assert_eq!(
        drain(&mut m),
        vec![Action::MoveFlows {
            dst_site: DST,
            from: Some(PathId(0)),
            to: PathId(1)
        }]
    );
}

#[test]
fn a_path_whose_acks_stopped_gets_the_flows_back_when_nothing_else_answers() {
    let (mut m, t, probes) = false_alarm_race();
    let seq = |p: u32| probes.iter().find(|x| x.0 == PathId(p)).expect("raced").1;
    m.on_probe_reply(PathId(0), seq(0), t + 10 * MS);
    drain(&mut m);
    // The detour never answers: at the end of the race the flows are told to go back to the
    // direct path (the dataplane carries them elsewhere), although it stays the active one.
    let mut moved = None;
    let mut now = t + 10 * MS;
    while moved.is_none() && now < t + 5 * SEC {
        now = m.poll_timeout().expect("a race has a deadline").max(now);
        m.handle_timeout(now);
        moved = drain(&mut m).into_iter().find_map(|a| match a {
            Action::MoveFlows { from, to, .. } => Some((from, to)),
            _ => None,
        });
    }
    assert_eq!(moved, Some((Some(PathId(0)), PathId(0))));
    assert_eq!(m.active_path(DST), Some(PathId(0)));
    // Told once: nothing more to announce.
    for k in 1..=20 {
        m.handle_timeout(now + k * 100 * MS);
        assert!(
            !drain(&mut m)
                .iter()
                .any(|a| matches!(a, Action::MoveFlows { .. }))
        );
    }
}

#[test]
fn warm_manager_uses_the_cheapest_path() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    assert_eq!(m.active_path(DST), Some(PathId(0)));
    for p in 0..5 {
        assert_eq!(m.path_state(PathId(p)), Some(PathState::Up));
    }
    let v = m.path_view(PathId(4)).unwrap();
    assert!(
        v.rank > m.path_view(PathId(0)).unwrap().rank,
        "waypoint penalty"
    );
}

#[test]
fn ack_gap_on_active_races_at_once_and_moves_to_first_answer() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    let races = m.stats().races_started;
    m.on_ack_gap(PathId(0), t);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Suspect));
    let a = drain(&mut m);
    assert_eq!(m.stats().races_started, races + 1);
    let first = a.iter().find_map(|x| match x {
        Action::Probe { path, seq } => Some((*path, *seq)),
        _ => None,
    });
    let (p, seq) = first.expect("a race probe in the same call");
    assert_ne!(p, PathId(0), "the suspect path ranks below its peers");
    m.on_probe_reply(p, seq, t + 10 * MS);
    let a = drain(&mut m);
    assert_eq!(
        a,
        vec![Action::MoveFlows {
            dst_site: DST,
            from: Some(PathId(0)),
            to: p
        }]
    );
}

#[test]
fn lost_probe_on_active_path_with_acked_data_is_not_a_failure() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    m.on_data_feedback(PathId(0), 50, 0, t);
    m.handle_timeout(t);
    let probe = drain(&mut m).into_iter().find_map(|a| match a {
        Action::Probe {
            path: PathId(0),
            seq,
        } => Some(seq),
        _ => None,
    });
    // Force a probe on path 0 if none was due, via its timeout path.
    if let Some(seq) = probe {
        m.on_probe_timeout(PathId(0), seq, t + MS);
    }
    let races = m.stats().races_started;
    m.on_data_feedback(PathId(0), 50, 0, t + 2 * MS);
    for o in m.paths[0].outstanding.clone() {
        m.on_probe_timeout(PathId(0), o.seq, t + 3 * MS);
    }
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Up));
    assert_eq!(m.stats().races_started, races);
    // A bad data report is a failure, though.
    m.on_data_feedback(PathId(0), 10, 40, t + 4 * MS);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Suspect));
    assert_eq!(m.stats().races_started, races + 1);
}

#[test]
fn with_two_bad_reports_wanted_one_loss_burst_is_not_a_failure() {
    let mut m = manager(PathConfig {
        bad_feedback_reports: 2,
        ..cfg()
    });
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    let races = m.stats().races_started;
    // A congestion burst (35 %), a clean report, another burst: never two in a row.
    for (k, (acked, lost)) in [(65, 35), (98, 2), (65, 35), (99, 1)]
        .into_iter()
        .enumerate()
    {
        m.on_data_feedback(PathId(0), acked, lost, t + k as u64 * MS);
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Up), "report {k}");
    }
    assert_eq!(m.stats().races_started, races);
    // A path that keeps losing fails on the second report.
    m.on_data_feedback(PathId(0), 60, 40, t + 10 * MS);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Up));
    m.on_data_feedback(PathId(0), 50, 50, t + 11 * MS);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Suspect));
    assert_eq!(m.stats().races_started, races + 1);
}

#[test]
fn with_a_hold_a_loss_burst_shorter_than_it_is_not_a_failure() {
    let mut m = manager(PathConfig {
        bad_feedback_reports: 2,
        bad_feedback_hold: 2 * SEC,
        ..cfg()
    });
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    let races = m.stats().races_started;
    // 1.5 s of 40 % loss, reports every 250 ms (MONtra starting above the wire), then clean.
    for k in 0..7 {
        m.on_data_feedback(PathId(0), 60, 40, t + k * 250 * MS);
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Up), "report {k}");
    }
    m.on_data_feedback(PathId(0), 99, 1, t + 1750 * MS);
    assert_eq!(m.stats().races_started, races);
    // Loss that lasts 2 s is a failure.
    let t = t + 2 * SEC;
    for k in 0..9 {
        m.on_data_feedback(PathId(0), 50, 50, t + k * 250 * MS);
    }
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Suspect));
    assert_eq!(m.stats().races_started, races + 1);
}

/// With `bad_feedback_min_lost` 3 (the sites' setting), reports of a few packets at a bad
/// rate (a flow at its floor: 1 lost of 3) neither fail the path nor move its loss average;
/// reports with 3 losses or more at that rate do.
#[test]
fn a_few_packets_lost_at_a_bad_rate_are_inconclusive() {
    let mut m = manager(PathConfig {
        bad_feedback_min_lost: 3,
        ..cfg()
    });
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    let races = m.stats().races_started;
    let loss = m.path_view(PathId(0)).expect("path").loss;
    for k in 0..8 {
        m.on_data_feedback(PathId(0), 2, 1, t + k * 250 * MS);
        m.on_data_feedback(PathId(0), 0, 2, t + k * 250 * MS + MS);
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Up), "report {k}");
    }
    assert_eq!(m.stats().inconclusive_feedback, 16);
    assert_eq!(m.stats().races_started, races);
    assert_eq!(m.path_view(PathId(0)).expect("path").loss, loss);
    m.on_data_feedback(PathId(0), 4, 3, t + 3 * SEC);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Suspect));
    assert_eq!(m.stats().races_started, races + 1);
}

#[test]
fn carrier_loss_downs_all_paths_of_the_uplink_and_moves_at_once() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    m.on_link_event(UplinkId(0), false, t);
    for p in [0, 1, 4] {
        assert_eq!(m.path_state(PathId(p)), Some(PathState::Down));
    }
    let a = drain(&mut m);
    assert!(
        matches!(
            a.as_slice(),
            [Action::MoveFlows {
                from: Some(PathId(0)),
                to: PathId(2 | 3),
                ..
            }]
        ),
        "{a:?}"
    );
    m.handle_timeout(t);
    let a = drain(&mut m);
    assert!(a.contains(&Action::ReportLinks {
        failed: vec![PathId(0), PathId(1), PathId(4)],
        degraded: vec![]
    }));
    // No probes on a dead uplink.
    m.handle_timeout(t + 10 * SEC);
    assert!(drain(&mut m).iter().all(|a| !matches!(
        a,
        Action::Probe {
            path: PathId(0 | 1 | 4),
            ..
        }
    )));
}

/// A partition heals: the direct path was clean until it was cut and answers every probe
/// since it came back, so the traffic returns ~`repair_failback_after` after the path is seen
/// up, not after the 10 s hold and 32 clean probes (which kept a rejoining site's traffic on a
/// detour to the end of the demo's partition scenario).
/// Latest return after a repair by the fast rule: seen (the down path's next probe),
/// recovered (3 answers over >= 1 s), up for the fast hold, the next evaluation.
fn fast_return_bound(c: &PathConfig) -> Nanos {
    c.probe_interval_down_max
        + 2 * c.recover_min_time
        + c.repair_failback_after
        + c.reeval_interval
        + SEC
}

#[test]
fn a_clean_repair_wins_the_traffic_back_within_seconds() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    // Silent failure of uplink 0 for 60 s.
    for p in [0, 1, 4] {
        d.working[p] = false;
    }
    let cut = d.now;
    m.on_ack_gap(PathId(0), cut);
    d.run_until(&mut m, cut + 60 * SEC);
    let moved = d.moves_after(cut);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(matches!(moved[0].2, PathId(2 | 3)));
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Down));
    // Repair.
    for p in [0, 1, 4] {
        d.working[p] = true;
    }
    let repair = d.now;
    d.run_until(&mut m, repair + 120 * SEC);
    let back = d.moves_after(repair);
    assert_eq!(back.len(), 1, "exactly one move back: {back:?}");
    assert!(matches!(back[0].2, PathId(0 | 1)));
    let c = m.config();
    let bound = fast_return_bound(c);
    assert!(
        back[0].0 >= repair + c.repair_failback_after && back[0].0 - repair <= bound,
        "back {} ms after the repair",
        (back[0].0 - repair) / MS
    );
    assert!(
        back[0].0 - repair < c.health.failback_after_ns,
        "the slow rule"
    );
    assert_eq!(m.stats().return_moves, 1);
    assert!(m.stats().clean_repairs >= 1);
}

/// A partition heals: every path of the destination had failed, and the detour (path 4, via a
/// waypoint) came back first and took the traffic. The direct paths lost one probe in 8
/// before the cut (their link was full), more than a clean cut allows
/// (`repair_old_losses`); the detour is no choice of policy, so their repair is judged with
/// `repair_old_losses_forced` and a direct path wins the traffic back by the fast rule, not
/// after the slow rule's 10 s hold and 32 clean probes (~31 s).
#[test]
fn a_forced_detour_returns_to_the_recovered_direct_path() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.drop_every = vec![8, 8, 8, 8, 0];
    d.run_until(&mut m, 40 * SEC);
    assert!(matches!(m.active_path(DST), Some(PathId(0))));
    for p in 0..5 {
        d.working[p] = false;
    }
    let cut = d.now;
    m.on_ack_gap(PathId(0), cut);
    d.run_until(&mut m, cut + 6 * SEC);
    for p in 0..5 {
        assert_eq!(m.path_state(PathId(p)), Some(PathState::Down), "path {p}");
    }
    // The detour comes back first and takes the traffic; the direct paths 6 s later.
    d.working[4] = true;
    d.run_until(&mut m, d.now + 6 * SEC);
    assert_eq!(m.active_path(DST), Some(PathId(4)));
    for p in 0..4 {
        d.working[p] = true;
    }
    d.drop_every = vec![0; 5];
    let repair = d.now;
    d.run_until(&mut m, repair + 40 * SEC);
    let moves = d.moves_after(cut);
    assert!(
        moves.iter().any(|&(_, _, to)| to == PathId(4)),
        "the detour took the traffic: {moves:?}"
    );
    let back = d.moves_after(repair);
    let &(at, _, to) = back.first().unwrap();
    assert!(matches!(to, PathId(0..=3)), "{moves:?}");
    let bound = fast_return_bound(m.config());
    assert!(
        at - repair <= bound,
        "back {} ms after the repair",
        (at - repair) / MS
    );
    // Once back, it stays on direct paths (the cheaper uplink's may win later).
    assert!(back.iter().all(|&(_, _, to)| to != PathId(4)), "{back:?}");
}

/// A partition heals with the detour a moment ahead of the direct paths: a destination whose
/// active path is down does not move to the detour while a direct path answers again (its
/// recovery run has begun), whatever the offset between the two.
#[test]
fn a_down_destination_waits_for_a_recovering_direct_path_rather_than_a_detour() {
    fn no_detour_while_direct_recovers(m: &PathManager, a: &Action) {
        if let Action::MoveFlows { to: PathId(4), .. } = a {
            for p in 0..4 {
                let v = m.path_view(PathId(p)).unwrap();
                let recovering =
                    v.state != PathState::Up && v.history.1 > 0 && v.history.0 & 1 == 1;
                assert!(!recovering, "to the detour while path {p} recovers: {v:?}");
            }
        }
    }
    let mut waited = 0;
    for offset_ms in [0, 100, 300, 600, 1000, 1500, 2500, 4000] {
        let mut m = manager(cfg());
        let mut d = Driver::new(5);
        d.check = Some(no_detour_while_direct_recovers);
        d.run_until(&mut m, 20 * SEC);
        for p in 0..5 {
            d.working[p] = false;
        }
        let cut = d.now;
        m.on_ack_gap(PathId(0), cut);
        d.run_until(&mut m, cut + 20 * SEC);
        d.working[4] = true;
        d.run_until(&mut m, d.now + offset_ms * MS);
        for p in 0..4 {
            d.working[p] = true;
        }
        let repair = d.now;
        d.run_until(&mut m, repair + 30 * SEC);
        let moves = d.moves_after(cut);
        waited += usize::from(moves.iter().all(|&(_, _, to)| to != PathId(4)));
        assert!(
            matches!(m.active_path(DST), Some(PathId(0..=3))),
            "offset {offset_ms} ms: {moves:?}"
        );
    }
    // Some offsets put the direct paths' recovery before the detour's end of it.
    assert!(waited > 0, "the detour won every time");
}

/// The five paths after 20 s of use, every one of them then silent for `outage` (the active
/// path's acks stopped at the start of it).
fn all_down_for(outage: Nanos) -> (PathManager, Driver) {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    d.working = vec![false; 5];
    m.on_ack_gap(PathId(0), d.now);
    d.run_until(&mut m, d.now + outage);
    (m, d)
}

/// A down path that answers again is judged by its probes: a bad data report in its recovery
/// run (its flows' packets sent while it was down) does not start the run again. Two
/// managers see the same rejoin, one also a report of 50 packets lost: both are up at once.
#[test]
fn a_bad_data_report_does_not_break_a_recovery_run() {
    let up_at = |report: bool| {
        let (mut m, mut d) = all_down_for(20 * SEC);
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Down));
        d.working[0] = true;
        let answered = |m: &PathManager| m.path_view(PathId(0)).unwrap().history.0 & 1 == 1;
        while !answered(&m) {
            d.run_until(&mut m, d.now + 10 * MS);
        }
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Down));
        if report {
            m.on_data_feedback(PathId(0), 0, 50, d.now);
        }
        let start = d.now;
        while m.path_state(PathId(0)) != Some(PathState::Up) && d.now < start + 20 * SEC {
            d.run_until(&mut m, d.now + 10 * MS);
        }
        d.now - start
    };
    let (clean, reported) = (up_at(false), up_at(true));
    assert!(clean < 5 * SEC, "{} ms", clean / MS);
    assert_eq!(
        reported,
        clean,
        "{} ms against {} ms",
        reported / MS,
        clean / MS
    );
}

/// A partition heals: every path was down for 30 s (probed 4 s apart by then) and all work
/// again at once. The first down path to answer has the others probed at once, so every
/// path answers within a second of the first, not at its own next probe up to 4 s later.
#[test]
fn a_down_path_that_answers_has_the_other_down_paths_probed() {
    let (mut m, mut d) = all_down_for(30 * SEC);
    d.working = vec![true; 5];
    let mut first = [None; 5];
    let end = d.now + 10 * SEC;
    while first.iter().any(Option::is_none) && d.now < end {
        d.run_until(&mut m, d.now + MS);
        for (p, f) in first.iter_mut().enumerate() {
            let v = m.path_view(PathId(u32::try_from(p).unwrap())).unwrap();
            if f.is_none() && v.history.0 & 1 == 1 {
                *f = Some(d.now);
            }
        }
    }
    let t: Vec<Nanos> = first
        .iter()
        .map(|f| f.expect("every path answered"))
        .collect();
    let spread = t.iter().max().unwrap() - t.iter().min().unwrap();
    // A probe sent just before the heal is lost and times out first: one path answers ~0.5 s
    // after the others here (2.7 s apart without the early probes).
    assert!(spread < SEC, "first answers {} ms apart", spread / MS);
}

/// A path cut a second time within `repair_damping` of a clean repair flaps: after its second
/// repair it waits for the 10 s hold and 32 clean probes.
#[test]
fn a_path_cut_twice_waits_for_the_hold_and_clean_history() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let mut repair = 0;
    for _ in 0..2 {
        for p in [0, 1, 4] {
            d.working[p] = false;
        }
        let cut = d.now;
        m.on_ack_gap(PathId(0), cut);
        d.run_until(&mut m, cut + 20 * SEC);
        assert_eq!(m.path_state(PathId(0)), Some(PathState::Down));
        for p in [0, 1, 4] {
            d.working[p] = true;
        }
        repair = d.now;
        d.run_until(&mut m, repair + 60 * SEC);
    }
    let back = d.moves_after(repair);
    assert_eq!(back.len(), 1, "exactly one move back: {back:?}");
    assert!(matches!(back[0].2, PathId(0 | 1)));
    assert!(
        back[0].0 >= repair + m.config().health.failback_after_ns,
        "returned too early: {} ms",
        (back[0].0 - repair) / MS
    );
    assert_eq!(m.stats().return_moves, 2);
}

/// A partition heals: the repaired direct path is reported neither failed nor degraded a few
/// seconds after it answers again (down probing, recovery run), not after its loss average
/// has forgotten the outage (it kept the link failed for PFO 11-13 s in the demo).
#[test]
fn a_repaired_path_is_reported_clean_once_it_recovers() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    for p in [0, 1, 4] {
        d.working[p] = false;
    }
    let cut = d.now;
    m.on_ack_gap(PathId(0), cut);
    d.run_until(&mut m, cut + 30 * SEC);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Down));
    for p in [0, 1, 4] {
        d.working[p] = true;
    }
    let repair = d.now;
    d.run_until(&mut m, repair + 20 * SEC);
    let clean = d.log.iter().find_map(|(at, a)| match a {
        Action::ReportLinks { failed, degraded }
            if *at >= repair && !failed.contains(&PathId(0)) && !degraded.contains(&PathId(0)) =>
        {
            Some(*at)
        }
        _ => None,
    });
    let at = clean.expect("path 0 reported clean again");
    let c = m.config();
    let bound = c.probe_interval_down_max + 2 * SEC + c.report_min_interval;
    assert!(
        at - repair <= bound,
        "clean after {} ms",
        (at - repair) / MS
    );
}

/// The direct path carries the planned load: its queue makes the RTT 60 ms and MONtra's flows
/// lose 6 % there; the waypoint's probes come back in 10 ms. By default the manager moves the
/// traffic to the waypoint after `return_clean_probes`; with `return_via_waypoint` off it stays
/// on the working direct path (PFO's route).
#[test]
fn a_loaded_direct_path_is_left_for_a_waypoint_only_if_allowed() {
    for allowed in [true, false] {
        let mut m = PathManager::new(
            PathConfig {
                return_via_waypoint: allowed,
                ..cfg()
            },
            7,
            0,
        )
        .expect("valid config");
        m.add_path(key(0, 0, None), 0).expect("path");
        m.add_path(key(0, 0, Some(3)), 0).expect("path");
        let mut d = Driver::new(2);
        d.run_until(&mut m, 2 * SEC);
        assert_eq!(m.active_path(DST), Some(PathId(0)));
        d.rtt[0] = 60 * MS;
        d.data_loss = 3;
        d.run_until(&mut m, 120 * SEC);
        let moved = d.moves_after(2 * SEC);
        if allowed {
            assert!(moved.iter().any(|x| x.2 == PathId(1)), "{moved:?}");
        } else {
            assert!(moved.is_empty(), "{moved:?}");
            assert_eq!(m.active_path(DST), Some(PathId(0)));
        }
    }
}

#[test]
fn down_paths_are_explored_with_backoff_within_the_explore_budget() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.working[1] = false;
    d.run_until(&mut m, 600 * SEC);
    let probes_on = |p: u32| {
        d.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Probe { path, .. } if path.0 == p))
            .count()
    };
    let dead = probes_on(1);
    let alive = probes_on(0);
    assert_eq!(m.path_state(PathId(1)), Some(PathState::Down));
    assert!(dead >= 10, "exploration continues: {dead}");
    // Backoff 1, 2, 4 s, then every 4 s (`probe_interval_down_max`: a
    // repaired path is seen within ~5 s) against one probe a second on an
    // up path.
    assert!(dead * 3 < alive, "dead {dead} alive {alive}");
    assert!(dead * 5 > alive, "dead {dead} alive {alive}");
}

#[test]
fn background_probes_stay_within_budget() {
    let mut c = cfg();
    for u in &mut c.uplinks {
        u.capacity_bytes_per_s = 10_000; // budget 50 B/s: about one 96-byte probe every 2 s
    }
    let mut m = manager(c);
    let mut d = Driver::new(5);
    d.run_until(&mut m, 1000 * SEC);
    let (_, bytes) = m.uplink_probe_usage(UplinkId(0)).unwrap();
    // 1000 s x 50 B/s + bucket depths (4 probes each) + the initial race (3 probes).
    assert!(bytes <= 50_000 + 8 * 96 + 3 * 96, "{bytes} bytes");
    assert!(bytes >= 40_000, "the budget is used: {bytes}");
}

#[test]
fn forged_and_garbage_inputs_are_counted_and_ignored() {
    let mut m = manager(cfg());
    let mut d = Driver::new(5);
    d.run_until(&mut m, 20 * SEC);
    let t = d.now;
    let before: Vec<_> = (0..5).map(|p| m.path_view(PathId(p))).collect();
    let bogus = PathId(999);
    m.on_probe_reply(bogus, 1, t);
    m.on_probe_reply_measured(bogus, 1, MS, t);
    m.on_probe_timeout(bogus, 1, t);
    m.on_probe_sent(bogus, 1, t);
    m.on_data_feedback(bogus, 1, 1, t);
    m.on_ack_gap(bogus, t);
    m.on_probe_reply(PathId(u32::MAX), 0, t);
    assert_eq!(m.stats().unknown_path, 7);
    m.on_probe_reply(PathId(0), 12345, t);
    m.on_probe_reply(PathId(0), 12345, t);
    assert_eq!(m.stats().unmatched_reply, 2);
    m.on_probe_timeout(PathId(0), 777, t);
    assert_eq!(m.stats().unmatched_timeout, 1);
    m.on_probe_sent(PathId(0), 777, t);
    assert_eq!(m.stats().unmatched_sent, 1);
    m.on_link_event(UplinkId(42), false, t);
    assert_eq!(m.stats().unknown_uplink, 1);
    m.on_data_feedback(PathId(0), 0, 0, t);
    assert_eq!(m.stats().empty_feedback, 1);
    let after: Vec<_> = (0..5).map(|p| m.path_view(PathId(p))).collect();
    assert_eq!(before, after, "ignored inputs change nothing");
    // Time going backwards is clamped and counted.
    m.handle_timeout(t - SEC);
    assert_eq!(m.stats().time_regressions, 1);
    // Absurd measured RTTs fall back to our own measurement.
    m.handle_timeout(t + 5 * SEC);
    let probe = drain(&mut m).into_iter().find_map(|a| match a {
        Action::Probe { path, seq } => Some((path, seq)),
        _ => None,
    });
    let (p, seq) = probe.expect("background probes after 5 s");
    m.on_probe_reply_measured(p, seq, 3600 * SEC, t + 5 * SEC + 12 * MS);
    assert_eq!(m.stats().absurd_rtt, 1);
    let srtt = m.path_view(p).unwrap().srtt.unwrap();
    assert!(srtt < 20 * MS, "srtt {srtt}");
    m.check_invariants().unwrap();
}

#[test]
fn sequence_numbers_wrap() {
    let mut m = manager(PathConfig {
        initial_seq: Some(u32::MAX - 2),
        ..cfg()
    });
    let mut d = Driver::new(5);
    d.run_until(&mut m, 30 * SEC);
    let seqs: Vec<u32> = d
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Probe {
                path: PathId(0),
                seq,
            } => Some(*seq),
            _ => None,
        })
        .collect();
    assert!(
        seqs.contains(&u32::MAX) && seqs.contains(&0) && seqs.contains(&5),
        "{seqs:?}"
    );
    assert_eq!(m.stats().unmatched_reply, 0);
    assert_eq!(m.path_state(PathId(0)), Some(PathState::Up));
}

#[test]
fn undrained_action_queue_is_bounded() {
    let mut m = manager(PathConfig {
        action_queue_cap: 16,
        ..cfg()
    });
    for i in 0..10_000u64 {
        m.handle_timeout(i * 100 * MS);
    }
    assert!(m.actions.len() <= 16);
    assert!(m.stats().dropped_actions > 0);
    m.check_invariants().unwrap();
}

#[test]
fn config_and_registration_errors() {
    let mut m = manager(cfg());
    assert_eq!(
        m.add_path(key(0, 0, None), 0),
        Err(ConfigError::DuplicatePath)
    );
    assert_eq!(
        m.add_path(key(9, 0, None), 0),
        Err(ConfigError::UnknownUplink(UplinkId(9)))
    );
    let bad = PathConfig {
        race_width: 0,
        ..cfg()
    };
    assert!(PathManager::new(bad, 1, 0).is_err());
    let mut small = PathManager::new(
        PathConfig {
            max_paths: 1,
            ..cfg()
        },
        1,
        0,
    )
    .unwrap();
    small.add_path(key(0, 0, None), 0).unwrap();
    assert_eq!(
        small.add_path(key(0, 1, None), 0),
        Err(ConfigError::TooManyPaths)
    );
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u32),
    Timeout,
    Reply(u32, u32, i32),
    Measured(u32, u32, u64),
    Lost(u32, u32),
    Sent(u32, u32),
    Feedback(u32, u64, u64),
    Gap(u32),
    Link(u16, bool),
    AnswerAll(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..2_000_000_000).prop_map(Op::Advance),
        Just(Op::Timeout),
        (0u32..8, any::<u32>(), -5i32..5).prop_map(|(p, s, d)| Op::Reply(p, s, d)),
        (0u32..8, any::<u32>(), any::<u64>()).prop_map(|(p, s, r)| Op::Measured(p, s, r)),
        (0u32..8, any::<u32>()).prop_map(|(p, s)| Op::Lost(p, s)),
        (0u32..8, any::<u32>()).prop_map(|(p, s)| Op::Sent(p, s)),
        (0u32..8, 0u64..200, 0u64..200).prop_map(|(p, a, l)| Op::Feedback(p, a, l)),
        (0u32..8).prop_map(Op::Gap),
        (0u16..3, any::<bool>()).prop_map(|(u, b)| Op::Link(u, b)),
        (1u32..50_000_000).prop_map(Op::AnswerAll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random (and hostile) event sequences: no panic, invariants after every call, no timer
    /// in the past after `handle_timeout`.
    #[test]
    fn random_events_keep_invariants(ops in proptest::collection::vec(op(), 1..200), seed in any::<u64>()) {
        let mut m = PathManager::new(PathConfig { initial_seq: None, ..cfg() }, seed, 0).unwrap();
        for (u, r, wp) in [(0, 0, None), (0, 1, None), (1, 0, None), (1, 1, None), (0, 0, Some(3))] {
            m.add_path(key(u, r, wp), 0).unwrap();
        }
        let mut now: Nanos = 0;
        let mut sent: Vec<(PathId, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(dt) => now += u64::from(dt),
                Op::Timeout => {
                    m.handle_timeout(now);
                    prop_assert!(m.poll_timeout().is_some_and(|t| t > now));
                }
                Op::Reply(p, s, d) => {
                    // Either a real outstanding seq (shifted by d) or garbage.
                    let seq = sent.iter().rev().find(|x| x.0 .0 == p).map_or(s, |x| x.1.wrapping_add_signed(d));
                    m.on_probe_reply(PathId(p), seq, now);
                }
                Op::Measured(p, s, r) => m.on_probe_reply_measured(PathId(p), s, r, now),
                Op::Lost(p, s) => m.on_probe_timeout(PathId(p), s, now),
                Op::Sent(p, s) => m.on_probe_sent(PathId(p), s, now),
                Op::Feedback(p, a, l) => m.on_data_feedback(PathId(p), a, l, now),
                Op::Gap(p) => m.on_ack_gap(PathId(p), now),
                Op::Link(u, b) => m.on_link_event(UplinkId(u), b, now),
                Op::AnswerAll(dt) => {
                    now += u64::from(dt);
                    for (p, s) in std::mem::take(&mut sent) {
                        m.on_probe_reply(p, s, now);
                    }
                }
            }
            while let Some(a) = m.poll_action() {
                if let Action::Probe { path, seq } = a {
                    sent.push((path, seq));
                }
            }
            if sent.len() > 1000 {
                sent.drain(..500);
            }
            if let Err(e) = m.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}

/// The start of `--scenario imprecise`: the active path fills its bottleneck's queue with its
/// flows' data (acked, but lossy: 50 % lost, a bad feedback report), a probe waits behind it
/// and times out. Acked data vouches for the path: it stays up, no race, no move. Without the
/// acks the same lost probe makes it suspect and starts a race.
#[test]
fn a_probe_lost_behind_acked_data_is_not_a_failure() {
    for acked in [true, false] {
        // As a site's control runs it (`site_path_config`): 2 bad reports over 2 s fail a path.
        let mut m = manager(PathConfig {
            bad_feedback_reports: 2,
            bad_feedback_hold: 2 * SEC,
            ..cfg()
        });
        let mut d = Driver::new(5);
        d.run_until(&mut m, 20 * SEC);
        let t = d.now;
        let a = m.active_path(DST).expect("an active path");
        drain(&mut m);
        // The driver's last good feedback (at most `t`) is older than `data_vouch` by then.
        let lost_at = t + 300 * MS;
        if acked {
            m.on_data_acked(a, lost_at - 100 * MS);
            m.on_data_feedback(a, 50, 50, lost_at - 100 * MS);
        }
        let races = m.stats().races_started;
        let seqs: Vec<u32> = m
            .paths
            .iter()
            .find(|e| Some(e.key) == m.path_key(a))
            .map(|e| e.outstanding.iter().map(|o| o.seq).collect())
            .unwrap_or_default();
        let seq = seqs.first().copied().unwrap_or_else(|| {
            // No probe in flight: one is sent and lost.
            let i = usize::try_from(a.0).unwrap();
            m.send_probe(i, false, t);
            m.paths[i].outstanding.back().unwrap().seq
        });
        m.on_probe_timeout(a, seq, lost_at);
        let state = m.path_state(a);
        if acked {
            assert_eq!(state, Some(PathState::Up));
            assert_eq!(m.stats().races_started, races);
            assert!(
                drain(&mut m)
                    .iter()
                    .all(|x| !matches!(x, Action::MoveFlows { .. }))
            );
        } else {
            assert_eq!(state, Some(PathState::Suspect));
            assert_eq!(m.stats().races_started, races + 1);
        }
    }
}

/// A probe the dataplane refused (its probe slots busy) never left: however many are refused,
/// the path keeps its state and no race starts; the same probes lost are failures.
#[test]
fn refused_probes_are_not_failures() {
    for refused in [true, false] {
        let mut m = manager(PathConfig {
            bad_feedback_reports: 2,
            bad_feedback_hold: 2 * SEC,
            ..cfg()
        });
        let mut d = Driver::new(5);
        d.run_until(&mut m, 20 * SEC);
        let t = d.now + SEC;
        let a = m.active_path(DST).expect("an active path");
        drain(&mut m);
        let i = usize::try_from(a.0).unwrap();
        let races = m.stats().races_started;
        for k in 0..5u64 {
            m.paths[i].outstanding.clear();
            m.send_probe(i, false, t + k * MS);
            let seq = m.paths[i].outstanding.back().unwrap().seq;
            if refused {
                m.on_probe_refused(a, seq, t + k * MS);
            } else {
                m.on_probe_timeout(a, seq, t + k * MS);
            }
        }
        if refused {
            assert_eq!(m.path_state(a), Some(PathState::Up));
            assert_eq!(m.stats().races_started, races);
            assert!(m.paths[i].outstanding.is_empty());
        } else {
            assert_ne!(m.path_state(a), Some(PathState::Up));
        }
    }
}

/// A destination's first race: the detour's echo (its probes time the first leg only) comes
/// back first, but the direct path of the race answers too and is the first choice; with the
/// direct path dead the detour is taken when the race ends.
#[test]
fn the_first_choice_waits_for_a_direct_path_that_may_answer() {
    for direct_works in [true, false] {
        let mut m = PathManager::new(cfg(), 7, 0).expect("valid config");
        let direct = m.add_path(key(0, 0, None), 0).unwrap();
        let via = m.add_path(key(0, 0, Some(3)), 0).unwrap();
        let mut d = Driver::new(2);
        d.rtt = vec![10 * MS, MS];
        d.working = vec![direct_works, true];
        d.run_until(&mut m, 3 * SEC);
        let first = d
            .log
            .iter()
            .find_map(|(t, a)| match a {
                Action::MoveFlows { to, .. } => Some((*t, *to)),
                _ => None,
            })
            .expect("a first choice");
        if direct_works {
            assert_eq!(first.1, direct, "{:?}", d.log);
            assert!(first.0 <= 50 * MS, "{first:?}");
        } else {
            assert_eq!(first.1, via, "{:?}", d.log);
            assert!(first.0 <= 2 * SEC, "{first:?}");
        }
    }
}
