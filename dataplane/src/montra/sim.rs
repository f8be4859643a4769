//! A deterministic, seeded packet-level simulator of MONtra flows, and a
//! fluid model, to check the controller against PFO targets before trusting
//! it on the wire.
//!
//! Packet level: each flow has a [`RateController`], a Poisson [`FlowPacer`],
//! an [`AckTracker`] at the sender and an [`AckAggregator`] at the receiver.
//! Links are FIFO servers of a given capacity with a drop-tail queue and a
//! propagation delay; acks travel back after the sum of the path's delays
//! (no loss, no queueing on the reverse path). Sources are backlogged.
//! Not a hot path: allocation is fine here.

use super::acks::{AckAggregator, AckInfo, AckPolicy, AckTracker, TrackerConfig};
use super::controller::{ControllerConfig, ControllerTarget, RateController};
use crate::pacing::FlowPacer;
use crate::sys::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One directed link.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    /// Capacity, bits/s.
    pub capacity_bps: f64,
    /// Propagation delay, ns.
    pub delay_ns: u64,
    /// Packets the queue holds besides the one in service (a packet arriving
    /// to a full queue is always dropped).
    pub queue_pkts: usize,
    /// Drops before the queue is full.
    pub aqm: Aqm,
}

/// A link's queue discipline below the hard limit `queue_pkts`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aqm {
    /// Drop only when the queue is full.
    DropTail,
    /// Gentle RED on the instantaneous queue length `q` (packets waiting,
    /// not counting the one in service), as fractions of `queue_pkts`:
    /// an arriving packet is dropped with probability 0 below `min`, rising
    /// linearly to `max_p` at `max`, then linearly to 1 at a full queue.
    /// Drop decisions are independent of which flow the packet belongs to, so
    /// (unlike drop-tail with deterministic service) each flow loses in
    /// proportion to its arrivals: the loss model MONtra's analysis assumes.
    Red {
        /// Start of early drops, fraction of `queue_pkts`.
        min: f64,
        /// End of the gentle slope's first part, fraction of `queue_pkts`.
        max: f64,
        /// Drop probability at `max`.
        max_p: f64,
    },
}

impl Aqm {
    /// RED with early drops from a quarter to three quarters of the queue,
    /// 10 % at three quarters.
    pub const RED: Aqm = Aqm::Red {
        min: 0.25,
        max: 0.75,
        max_p: 0.1,
    };

    /// Whether a packet arriving to `waiting` packets (plus one in service)
    /// is dropped early (the full-queue drop is separate).
    fn drops(self, waiting: usize, limit: usize, rng: &mut Rng) -> bool {
        let Aqm::Red { min, max, max_p } = self else {
            return false;
        };
        let q = waiting.saturating_sub(1) as f64 / limit.max(1) as f64;
        let p = if q < min {
            0.0
        } else if q < max {
            max_p * (q - min) / (max - min).max(1e-9)
        } else {
            max_p + (1.0 - max_p) * (q - max) / (1.0 - max).max(1e-9)
        };
        p > 0.0 && rng.next_f64() < p
    }
}

/// One flow (a class's route), backlogged from `start_ns`.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    /// Link indices, in order.
    pub route: Vec<usize>,
    /// MONtra weight.
    pub weight: f64,
    /// Target goodput, packets/s (for convergence reporting; 0 = none).
    pub target_pps: f64,
    /// Start time, ns.
    pub start_ns: u64,
    /// Rate cap given to the controller (`ControllerTarget::cap_pps`), packets/s;
    /// infinity = none.
    pub cap_pps: f64,
}

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Links.
    pub links: Vec<LinkSpec>,
    /// Flows.
    pub flows: Vec<FlowSpec>,
    /// Controller tunables (kappa, bounds).
    pub controller: ControllerConfig,
    /// Initial rate of every flow, packets/s.
    pub x0: f64,
    /// A flow with a target starts at it instead of `x0`, as the gateway's
    /// controllers do (`overlay::Settings::initial_fraction` = 1).
    pub start_at_target: bool,
    /// Packet size, bytes.
    pub packet_bytes: u32,
    /// Receiver ack policy.
    pub ack_policy: AckPolicy,
    /// Seed of everything random.
    pub seed: u64,
    /// Simulated duration, ns.
    pub duration_ns: u64,
    /// Goodput sampling interval, ns.
    pub sample_ns: u64,
}

/// Results.
#[derive(Clone, Debug)]
pub struct SimResult {
    /// Goodput per flow per sample interval, packets/s.
    pub goodput: Vec<Vec<f64>>,
    /// Mean goodput per flow over the second half of the run, packets/s.
    pub mean_goodput_second_half: Vec<f64>,
    /// Loss fraction seen by each flow's tracker over the whole run.
    pub loss: Vec<f64>,
    /// Sampling interval of `goodput`, ns.
    pub sample_ns: u64,
    /// Targets copied from the config.
    pub targets: Vec<f64>,
    /// Packets of each flow dropped by the links over the second half of the run.
    pub dropped_second_half: Vec<u64>,
    /// Packets of each flow sent over the second half of the run.
    pub sent_second_half: Vec<u64>,
    /// Packets of each flow declared lost by its tracker over the second half.
    pub lost_second_half: Vec<u64>,
    /// Acks of each flow naming packets already declared lost, whole run.
    pub spurious: Vec<u64>,
}

impl SimResult {
    /// First time (ns) after which every flow's 5 s moving-average goodput
    /// stays within `tol` (relative) of its target; `None` if never.
    pub fn convergence_ns(&self, tol: f64) -> Option<u64> {
        self.convergence_avg_ns(tol, 5_000_000_000)
    }

    /// As [`SimResult::convergence_ns`] with a moving average over `avg_ns`.
    pub fn convergence_avg_ns(&self, tol: f64, avg_ns: u64) -> Option<u64> {
        let per = usize::try_from((avg_ns / self.sample_ns.max(1)).max(1)).unwrap_or(1);
        let mut worst = 0u64;
        for (g, &target) in self.goodput.iter().zip(&self.targets) {
            if target <= 0.0 {
                continue;
            }
            let mut last_bad: Option<usize> = None;
            for i in per..=g.len() {
                let avg = g[i - per..i].iter().sum::<f64>() / per as f64;
                if (avg - target).abs() > tol * target {
                    last_bad = Some(i);
                }
            }
            let first_good = match last_bad {
                Some(i) if i == g.len() => return None,
                Some(i) => i + 1,
                None => per,
            };
            worst = worst.max(first_good as u64 * self.sample_ns);
        }
        Some(worst)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Depart {
        flow: usize,
        generation: u64,
    },
    Hop {
        flow: usize,
        seq: u64,
        ts: u64,
        hop: usize,
    },
    Ack {
        flow: usize,
        cum: u64,
        bitmap: u64,
        echo: u64,
        delay: u64,
    },
    AckTimer {
        flow: usize,
    },
    LossTimer {
        flow: usize,
    },
    Sample,
    Half,
}

struct Link {
    spec: LinkSpec,
    tx_ns: u64,
    busy_until: u64,
    in_system: VecDeque<u64>,
}

struct Flow {
    spec: FlowSpec,
    ctl: RateController,
    pacer: FlowPacer,
    rng: Rng,
    tx: AckTracker,
    rx: AckAggregator,
    generation: u64,
    back_delay: u64,
    ack_timer_at: Option<u64>,
    delivered_in_sample: u64,
    dropped: u64,
    // (dropped, sent, lost) at half time.
    at_half: (u64, u64, u64),
}

/// Runs the packet-level simulation.
pub fn run(cfg: &SimConfig) -> SimResult {
    let mut links: Vec<Link> = cfg
        .links
        .iter()
        .map(|&spec| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive, small
            let tx_ns = (f64::from(cfg.packet_bytes) * 8.0 * 1e9 / spec.capacity_bps)
                .round()
                .max(1.0) as u64;
            Link {
                spec,
                tx_ns,
                busy_until: 0,
                in_system: VecDeque::new(),
            }
        })
        .collect();
    let max_weight = cfg.flows.iter().map(|f| f.weight).fold(0.0, f64::max);
    let mut flows: Vec<Flow> = cfg
        .flows
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let plan = ControllerTarget {
                weight: spec.weight,
                max_weight,
                cap_pps: spec.cap_pps,
                target_pps: spec.target_pps,
            };
            let path_delay: u64 = spec.route.iter().map(|&l| cfg.links[l].delay_ns).sum();
            let x0 = if cfg.start_at_target && spec.target_pps > 0.0 {
                spec.target_pps
            } else {
                cfg.x0
            };
            Flow {
                spec: spec.clone(),
                ctl: RateController::new(cfg.controller, plan, x0, spec.start_ns),
                pacer: FlowPacer::new(x0, spec.start_ns),
                rng: Rng::with_stream(cfg.seed, i as u64),
                tx: AckTracker::new(TrackerConfig {
                    initial_rtt_ns: 2 * path_delay + 10_000_000,
                    max_ack_delay_ns: cfg.ack_policy.max_delay_ns,
                    ..TrackerConfig::default()
                }),
                rx: AckAggregator::new(cfg.ack_policy),
                generation: 0,
                back_delay: path_delay,
                ack_timer_at: None,
                delivered_in_sample: 0,
                dropped: 0,
                at_half: (0, 0, 0),
            }
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut tie = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, t: u64, e: Ev| {
        tie += 1;
        heap.push(Reverse((t, tie, e)));
    };
    for (i, f) in flows.iter().enumerate() {
        push(
            &mut heap,
            f.spec.start_ns,
            Ev::Depart {
                flow: i,
                generation: 0,
            },
        );
        push(
            &mut heap,
            f.spec.start_ns + 5_000_000,
            Ev::LossTimer { flow: i },
        );
    }
    push(&mut heap, cfg.sample_ns, Ev::Sample);
    push(&mut heap, cfg.duration_ns / 2, Ev::Half);
    let mut goodput: Vec<Vec<f64>> = vec![Vec::new(); flows.len()];
    // Random early drops: one stream for all links, after the flows' streams.
    let mut link_rng = Rng::with_stream(cfg.seed, u64::MAX);

    while let Some(Reverse((now, _, ev))) = heap.pop() {
        if now > cfg.duration_ns {
            break;
        }
        match ev {
            Ev::Depart { flow, generation } => {
                let f = &mut flows[flow];
                if generation != f.generation {
                    continue; // superseded by a rate change
                }
                let (seq, evicted) = f.tx.on_send(now);
                if evicted > 0 {
                    f.ctl.on_losses(evicted);
                }
                f.ctl.on_send(now, false);
                push(
                    &mut heap,
                    now,
                    Ev::Hop {
                        flow,
                        seq,
                        ts: now,
                        hop: 0,
                    },
                );
                let next = f.pacer.on_departure(&mut f.rng, now, 0, 1.0);
                f.generation += 1;
                push(
                    &mut heap,
                    next,
                    Ev::Depart {
                        flow,
                        generation: f.generation,
                    },
                );
            }
            Ev::Hop { flow, seq, ts, hop } => {
                let route_len = flows[flow].spec.route.len();
                if hop == route_len {
                    // Delivered.
                    let f = &mut flows[flow];
                    f.delivered_in_sample += 1;
                    if let Some(a) = f.rx.on_packet(seq, ts, now) {
                        let back = f.back_delay;
                        push(&mut heap, now + back, ack_ev(flow, &a));
                    }
                    if let Some(d) = f.rx.next_deadline_ns()
                        && f.ack_timer_at.is_none_or(|t| t > d || t < now)
                    {
                        f.ack_timer_at = Some(d);
                        push(&mut heap, d, Ev::AckTimer { flow });
                    }
                    continue;
                }
                let l = &mut links[flows[flow].spec.route[hop]];
                while l.in_system.front().is_some_and(|&t| t <= now) {
                    l.in_system.pop_front();
                }
                if l.in_system.len() > l.spec.queue_pkts {
                    flows[flow].dropped += 1;
                    continue; // drop-tail
                }
                if l.spec
                    .aqm
                    .drops(l.in_system.len(), l.spec.queue_pkts, &mut link_rng)
                {
                    flows[flow].dropped += 1;
                    continue; // early drop
                }
                let finish = l.busy_until.max(now) + l.tx_ns;
                l.busy_until = finish;
                l.in_system.push_back(finish);
                push(
                    &mut heap,
                    finish + l.spec.delay_ns,
                    Ev::Hop {
                        flow,
                        seq,
                        ts,
                        hop: hop + 1,
                    },
                );
            }
            Ev::AckTimer { flow } => {
                let f = &mut flows[flow];
                f.ack_timer_at = None;
                if let Some(a) = f.rx.poll(now) {
                    let back = f.back_delay;
                    push(&mut heap, now + back, ack_ev(flow, &a));
                } else if let Some(d) = f.rx.next_deadline_ns() {
                    f.ack_timer_at = Some(d);
                    push(&mut heap, d, Ev::AckTimer { flow });
                }
            }
            Ev::Ack {
                flow,
                cum,
                bitmap,
                echo,
                delay,
            } => {
                let f = &mut flows[flow];
                let o = f.tx.on_ack(
                    &AckInfo {
                        cum,
                        bitmap,
                        echo_ts_ns: echo,
                        ack_delay_ns: delay,
                    },
                    now,
                );
                f.ctl.on_acks(o.acked, now);
                f.ctl.on_losses(o.lost);
                apply_rate(f, now, flow, &mut heap, &mut push);
            }
            Ev::LossTimer { flow } => {
                let f = &mut flows[flow];
                let lost = f.tx.poll(now);
                if lost > 0 {
                    f.ctl.on_losses(lost);
                    apply_rate(f, now, flow, &mut heap, &mut push);
                }
                push(&mut heap, now + 5_000_000, Ev::LossTimer { flow });
            }
            Ev::Half => {
                for f in &mut flows {
                    let s = f.tx.stats();
                    f.at_half = (f.dropped, s.sent, s.lost);
                }
            }
            Ev::Sample => {
                for (i, f) in flows.iter_mut().enumerate() {
                    goodput[i].push(f.delivered_in_sample as f64 * 1e9 / cfg.sample_ns as f64);
                    f.delivered_in_sample = 0;
                }
                push(&mut heap, now + cfg.sample_ns, Ev::Sample);
            }
        }
    }
    let mean_goodput_second_half = goodput
        .iter()
        .map(|g| {
            let h = &g[g.len() / 2..];
            let n = h.len().max(1) as f64;
            h.iter().sum::<f64>() / n
        })
        .collect();
    let loss = flows
        .iter()
        .map(|f| {
            let s = f.tx.stats();
            s.lost as f64 / (s.acked + s.lost).max(1) as f64
        })
        .collect();
    SimResult {
        goodput,
        mean_goodput_second_half,
        loss,
        sample_ns: cfg.sample_ns,
        targets: cfg.flows.iter().map(|f| f.target_pps).collect(),
        dropped_second_half: flows.iter().map(|f| f.dropped - f.at_half.0).collect(),
        sent_second_half: flows
            .iter()
            .map(|f| f.tx.stats().sent - f.at_half.1)
            .collect(),
        lost_second_half: flows
            .iter()
            .map(|f| f.tx.stats().lost - f.at_half.2)
            .collect(),
        spurious: flows.iter().map(|f| f.tx.stats().spurious).collect(),
    }
}

fn ack_ev(flow: usize, a: &AckInfo) -> Ev {
    Ev::Ack {
        flow,
        cum: a.cum,
        bitmap: a.bitmap,
        echo: a.echo_ts_ns,
        delay: a.ack_delay_ns,
    }
}

/// Pushes the controller's rate into the pacer and re-times the pending departure.
fn apply_rate(
    f: &mut Flow,
    now: u64,
    flow: usize,
    heap: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>,
    push: &mut impl FnMut(&mut BinaryHeap<Reverse<(u64, u64, Ev)>>, u64, Ev),
) {
    let before = f.pacer.next_departure_ns;
    f.pacer.set_rate(f.ctl.rate(), now, &mut f.rng);
    if f.pacer.next_departure_ns != before && now >= f.spec.start_ns {
        f.generation += 1;
        push(
            heap,
            f.pacer.next_departure_ns,
            Ev::Depart {
                flow,
                generation: f.generation,
            },
        );
    }
}

/// Fluid model of the same network: `dx_f/dt = kappa_eff (w_f (1-q_f) - x_f q_f)`
/// with link loss `p_l = max(0, 1 - C_l / y_l)` (`y_l` the offered load) and
/// `q_f = 1 - prod (1 - p_l)`. Capacities and rates in packets/s. Returns the
/// rates after `duration_s` and the flows' loss fractions.
pub fn fluid(
    caps_pps: &[f64],
    routes: &[Vec<usize>],
    weights: &[f64],
    kappa: f64,
    x0: f64,
    duration_s: f64,
) -> (Vec<f64>, Vec<f64>) {
    let no_caps = vec![f64::INFINITY; routes.len()];
    fluid_capped(caps_pps, routes, weights, &no_caps, kappa, x0, duration_s)
}

/// [`fluid`] with a rate cap per flow (`rate_caps_pps[f]`, infinity = none),
/// as [`FlowSpec::cap_pps`] gives the packet-level controller.
pub fn fluid_capped(
    caps_pps: &[f64],
    routes: &[Vec<usize>],
    weights: &[f64],
    rate_caps_pps: &[f64],
    kappa: f64,
    x0: f64,
    duration_s: f64,
) -> (Vec<f64>, Vec<f64>) {
    let wmax = weights.iter().copied().fold(0.0, f64::max);
    let k = if wmax > 0.0 { kappa / wmax } else { 0.0 };
    let mut x = vec![x0; routes.len()];
    let mut q = vec![0.0; routes.len()];
    let dt = 1e-3;
    let mut t = 0.0;
    while t < duration_s {
        let mut y = vec![0.0; caps_pps.len()];
        for (f, r) in routes.iter().enumerate() {
            for &l in r {
                y[l] += x[f];
            }
        }
        for (f, r) in routes.iter().enumerate() {
            let pass: f64 = r
                .iter()
                .map(|&l| {
                    if y[l] > caps_pps[l] {
                        caps_pps[l] / y[l]
                    } else {
                        1.0
                    }
                })
                .product();
            q[f] = 1.0 - pass;
            let cap = rate_caps_pps.get(f).copied().unwrap_or(f64::INFINITY);
            x[f] = (x[f] + dt * k * (weights[f] * (1.0 - q[f]) - x[f] * q[f]))
                .min(cap)
                .max(1e-3);
        }
        t += dt;
    }
    (x, q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::montra::scale_weights_for_loss_budget;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    // Links of the triangle (directed, data direction).
    const AC: usize = 0;
    const AB: usize = 1;
    const BC: usize = 2;

    fn triangle() -> Vec<LinkSpec> {
        let l = |mbps: f64| LinkSpec {
            capacity_bps: mbps * 1e6,
            delay_ns: 10 * MS,
            queue_pkts: 50,
            aqm: Aqm::DropTail,
        };
        vec![l(10.0), l(10.0), l(5.0)]
    }

    fn config(flows: Vec<FlowSpec>, seed: u64) -> SimConfig {
        SimConfig {
            links: triangle(),
            flows,
            controller: ControllerConfig {
                kappa: 50.0,
                x_min: 2.0,
                ..ControllerConfig::default()
            },
            x0: 10.0,
            start_at_target: false,
            packet_bytes: 1250, // 10 Mbps = 1000 pps
            ack_policy: AckPolicy::default(),
            seed,
            duration_ns: 120 * S,
            sample_ns: 100 * MS,
        }
    }

    /// Weights from the mapping w_f = x̂_f * sum(mu_l), scaled to a 2% loss budget.
    fn weights(targets: &[f64], dual_sums: &[f64]) -> Vec<f64> {
        let mut w: Vec<f64> = targets.iter().zip(dual_sums).map(|(t, m)| t * m).collect();
        scale_weights_for_loss_budget(&mut w, targets, 0.02);
        w
    }

    fn check(res: &SimResult, tol: f64, name: &str) {
        for (i, (&m, &t)) in res
            .mean_goodput_second_half
            .iter()
            .zip(&res.targets)
            .enumerate()
        {
            eprintln!(
                "{name}: flow {i}: goodput {m:.1} pps (target {t}), loss {:.4}",
                res.loss[i]
            );
            assert!(
                (m - t).abs() <= tol * t,
                "{name}: flow {i}: {m} vs target {t}"
            );
        }
        let conv = res.convergence_ns(0.1);
        let c = conv.map(|c| c as f64 / 1e9);
        eprintln!("{name}: convergence (5 s average within 10%): {c:?} s");
        assert!(conv.is_some(), "{name}: never converged");
    }

    #[test]
    fn triangle_paper_targets() {
        // PFO: A->C direct 10 Mbps (1000 pps), A->C via B 5 Mbps (500 pps).
        // KKT: both paths saturated, mu_AC = mu_BC = 1, mu_AB = 0.
        let t = [1000.0, 500.0];
        let w = weights(&t, &[1.0, 1.0]);
        let flows = vec![
            FlowSpec {
                route: vec![AC],
                weight: w[0],
                target_pps: t[0],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
            FlowSpec {
                route: vec![AB, BC],
                weight: w[1],
                target_pps: t[1],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
        ];
        let res = run(&config(flows, 1));
        check(&res, 0.03, "paper triangle");
    }

    #[test]
    fn triangle_with_shared_bottleneck() {
        // Targets: A->C direct 1000, A->C via B 250, B->C 250 pps; B-C shared.
        // KKT of max sum w log x: w_f / x_f = sum mu; mu_AC = mu_BC = 1.
        let t = [1000.0, 250.0, 250.0];
        let w = weights(&t, &[1.0, 1.0, 1.0]);
        let flows = vec![
            FlowSpec {
                route: vec![AC],
                weight: w[0],
                target_pps: t[0],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
            FlowSpec {
                route: vec![AB, BC],
                weight: w[1],
                target_pps: t[1],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
            FlowSpec {
                route: vec![BC],
                weight: w[2],
                target_pps: t[2],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
        ];
        let res = run(&config(flows, 2));
        // Drop-tail bias: the via-B flow reaches B-C smoothed by A-B (spacing
        // >= one A-B transmission time) and loses less there than the Poisson
        // B->C flow, so it gets ~7% more than its share (docs/montra.md).
        check(&res, 0.10, "shared triangle");
        assert!(
            (res.mean_goodput_second_half[1] + res.mean_goodput_second_half[2] - 500.0).abs()
                < 0.03 * 500.0
        );
        // Unequal split of the shared link: 3:1 weights -> 375 / 125.
        let t = [1000.0, 375.0, 125.0];
        let w = weights(&t, &[1.0, 1.0, 1.0]);
        let flows = vec![
            FlowSpec {
                route: vec![AC],
                weight: w[0],
                target_pps: t[0],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
            FlowSpec {
                route: vec![AB, BC],
                weight: w[1],
                target_pps: t[1],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
            FlowSpec {
                route: vec![BC],
                weight: w[2],
                target_pps: t[2],
                start_ns: 0,
                cap_pps: f64::INFINITY,
            },
        ];
        let res = run(&config(flows, 3));
        // Same drop-tail bias, stronger for the smaller Poisson flow: check the
        // shared link is filled and split clearly unequally (measured 386/105).
        let m = &res.mean_goodput_second_half;
        for (i, g) in m.iter().enumerate() {
            eprintln!("3:1 triangle: flow {i}: goodput {g:.1} (target {})", t[i]);
        }
        assert!((m[0] - 1000.0).abs() < 30.0);
        assert!((m[1] + m[2] - 500.0).abs() < 0.03 * 500.0);
        assert!(
            m[1] > 2.5 * m[2] && m[1] < 4.5 * m[2],
            "split {} / {}",
            m[1],
            m[2]
        );
    }

    #[test]
    fn deterministic_for_a_seed() {
        let flows = vec![FlowSpec {
            route: vec![BC],
            weight: 10.0,
            target_pps: 500.0,
            start_ns: 0,
            cap_pps: f64::INFINITY,
        }];
        let mut c = config(flows, 9);
        c.duration_ns = 5 * S;
        let a = run(&c);
        let b = run(&c);
        assert_eq!(a.goodput, b.goodput);
    }

    #[test]
    fn fluid_model_equilibrium() {
        // Shared triangle in the fluid model: converges to the targets and
        // satisfies w/x = q/(1-q) for every flow.
        let t = [1000.0, 250.0, 250.0];
        let w = weights(&t, &[1.0, 1.0, 1.0]);
        let routes = vec![vec![AC], vec![AB, BC], vec![BC]];
        let (x, q) = fluid(&[1000.0, 1000.0, 500.0], &routes, &w, 200.0, 10.0, 200.0);
        for f in 0..3 {
            let goodput = x[f] * (1.0 - q[f]);
            eprintln!(
                "fluid flow {f}: x {:.2} goodput {goodput:.2} q {:.4}",
                x[f], q[f]
            );
            assert!(
                (goodput - t[f]).abs() < 0.01 * t[f],
                "flow {f}: {goodput} vs {}",
                t[f]
            );
            assert!((w[f] / x[f] - q[f] / (1.0 - q[f])).abs() < 1e-3 * (w[f] / x[f]));
            // Loss budget: about 2%.
            assert!((q[f] - 0.02).abs() < 0.002, "q {}", q[f]);
        }
    }

    /// A site whose heaviest flow settles at a low loss (0.7 %: its path's
    /// price is a third of the dearest one's, so it loses a third of the
    /// budget) has a loop gain `kappa_eff` of `ramp (1-q)/q` = 8.5/s. With
    /// 40 ms of round trip behind a 100 ms drop-tail buffer that loop
    /// overshoots into a saw-tooth (ramp until the queue overflows, a burst
    /// of losses cuts 15-25 %) and the link idles in its troughs: the flow
    /// delivers 4-5 % under its target, as on Abilene's links (docs/montra.md,
    /// "Gain near the target"). Capped at 3/s at and above 0.9 x its target,
    /// the same flow fills the link; its equilibrium is the same.
    #[test]
    fn a_low_loss_flow_fills_its_link_with_the_gain_capped_near_its_target() {
        let target = 980.0;
        let goodput = |near_max_gain: f64, seed: u64| {
            let link = LinkSpec {
                capacity_bps: 10e6,
                delay_ns: 20 * MS,
                queue_pkts: 94,
                aqm: Aqm::DropTail,
            };
            let cfg = budget_flows(
                vec![link],
                &[0],
                &[target],
                0.007,
                near_max_gain,
                seed,
                120,
                100 * MS,
            );
            run(&cfg).mean_goodput_second_half[0] / target
        };
        let mut free_sum = 0.0;
        for seed in [1, 2, 3, 4] {
            let free = goodput(f64::INFINITY, seed);
            let capped = goodput(ControllerConfig::default().near_max_gain, seed);
            eprintln!("seed {seed}: goodput / target {free:.4} free, {capped:.4} capped");
            assert!(
                capped > 0.995,
                "seed {seed}: capped gain {capped:.4} of the target"
            );
            assert!(
                capped > free + 0.01,
                "seed {seed}: {capped:.4} vs {free:.4}"
            );
            free_sum += free;
        }
        // The saw-tooth's cycle is seconds long: its average varies by seed.
        assert!(
            free_sum / 4.0 < 0.98,
            "no saw-tooth without the cap? {free_sum:.4} / 4"
        );
    }

    /// Flows weighted for a loss `budget` at their targets `t` (packets of 1250 B per second),
    /// flow `i` on link `routes[i]`, starting at their targets, capped at 2 x; the site's ramp
    /// 0.06 x the first target.
    #[allow(clippy::too_many_arguments)]
    fn budget_flows(
        links: Vec<LinkSpec>,
        routes: &[usize],
        t: &[f64],
        budget: f64,
        near_max_gain: f64,
        seed: u64,
        secs: u64,
        sample_ns: u64,
    ) -> SimConfig {
        let mut w = t.to_vec();
        scale_weights_for_loss_budget(&mut w, t, budget);
        SimConfig {
            links,
            flows: routes
                .iter()
                .zip(t)
                .zip(w)
                .map(|((&l, &target_pps), weight)| FlowSpec {
                    route: vec![l],
                    weight,
                    target_pps,
                    start_ns: 0,
                    cap_pps: 2.0 * target_pps,
                })
                .collect(),
            controller: ControllerConfig {
                kappa: 0.06 * t.first().copied().unwrap_or(0.0),
                x_min: 2.0,
                near_max_gain,
                ..ControllerConfig::default()
            },
            x0: 10.0,
            start_at_target: true,
            packet_bytes: 1250,
            ack_policy: AckPolicy::default(),
            seed,
            duration_ns: secs * S,
            sample_ns,
        }
    }

    /// The imprecise demo's two full links (session 28): A's direct flow told
    /// 4 % more than its 6 Mbit/s link carries, its via-B flow planned at the
    /// whole 5 Mbit/s link, both weighted for a 2 % budget, 100 ms drop-tail
    /// buffers. At the old near-target gain cap of 3/s (the triangle's own
    /// loop gain is 2.9/s) each saw-tooths: the queue overflows, the loss
    /// burst cuts the flow past the buffer's slack and the link idles in the
    /// trough (98.5-99.1 % of the link carried over 6 seeds; on the wire
    /// 1-2 % under, the dips of both links in phase). The default 1.5/s
    /// carries 99.1-99.5 %, at the same loss (the weights set it).
    #[test]
    fn full_links_are_carried_better_at_the_default_near_target_gain() {
        let caps = [553.0, 461.0];
        let run_with = |gain: f64, seed: u64| {
            // 100 ms of the link's packets.
            let link = |pps: f64, delay_ms: u64, queue_pkts: usize| LinkSpec {
                capacity_bps: pps * 8.0 * 1250.0,
                delay_ns: delay_ms * MS,
                queue_pkts,
                aqm: Aqm::DropTail,
            };
            run(&budget_flows(
                vec![link(caps[0], 5, 55), link(caps[1], 10, 46)],
                &[0, 1],
                &[caps[0] * 1.04, caps[1]],
                0.02,
                gain,
                seed,
                60,
                S,
            ))
        };
        let seeds = 1..=6u64;
        let n = 6.0;
        let mut old = [0.0; 2];
        let mut new = [0.0; 2];
        let mut loss = [0.0; 2];
        for seed in seeds {
            let (a, b) = (
                run_with(3.0, seed),
                run_with(ControllerConfig::default().near_max_gain, seed),
            );
            for i in 0..2 {
                old[i] += a.mean_goodput_second_half[i] / caps[i] / n;
                new[i] += b.mean_goodput_second_half[i] / caps[i] / n;
                loss[i] += b.loss[i] / n;
            }
        }
        eprintln!("carried / link: gain 3 {old:.4?}, default {new:.4?}; loss {loss:.4?}");
        for i in 0..2 {
            assert!(
                new[i] >= 0.99,
                "link {i}: {:.4} carried at the default gain",
                new[i]
            );
            assert!(
                new[i] >= old[i] + 0.002,
                "link {i}: {:.4} vs {:.4} at 3/s",
                new[i],
                old[i]
            );
            // The weights, not the gain, set the loss: the budget (x 1.04 when told 4 % over).
            assert!(
                (0.018..0.023).contains(&loss[i]),
                "link {i}: loss {:.4}",
                loss[i]
            );
        }
    }

    /// Why Abilene's 0.78 Mbit/s flows miss 5 % in a 19-s window (session 28,
    /// docs/montra.md, "Why a small flow misses"): a small flow beside a big one
    /// on a full link sees the link's loss whatever it sends, so only its own
    /// loss count holds it. It drifts back with the time constant
    /// `1 / (kappa_eff q)` (33 s here) and wanders by about
    /// `sqrt(kappa_eff / 2x)` (~10 %); the big flow is held by the link.
    /// The equilibrium is right for both, and the windows of the small one
    /// are noisy. No relay and no wire here: both flows Poisson-paced.
    #[test]
    fn a_small_flow_beside_a_big_one_is_held_only_by_its_own_losses() {
        // KansasCity->Indianapolis: 8.437 and 0.782 of 9.22 Mbit/s of payload.
        let t = [843.7, 78.2];
        let mut windows = [Vec::new(), Vec::new()];
        let mut mean_small = 0.0;
        let seeds = 8u32;
        for seed in 1..=u64::from(seeds) {
            let link = LinkSpec {
                capacity_bps: 921.9 * 8.0 * 1250.0,
                delay_ns: 10 * MS,
                // 100 ms.
                queue_pkts: 92,
                aqm: Aqm::DropTail,
            };
            let gain = ControllerConfig::default().near_max_gain;
            let r = run(&budget_flows(
                vec![link],
                &[0, 0],
                &t,
                0.02,
                gain,
                seed,
                400,
                S,
            ));
            mean_small += r.mean_goodput_second_half[1] / t[1] / f64::from(seeds);
            for (k, out) in windows.iter_mut().enumerate() {
                // 19-s windows (the topology demo's) after 20 s.
                out.extend(
                    r.goodput[k]
                        .get(20..)
                        .unwrap_or_default()
                        .chunks_exact(19)
                        .map(|c| c.iter().sum::<f64>() / 19.0 / t[k]),
                );
            }
        }
        let stats = |v: &[f64]| {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
            let within = v.iter().filter(|x| (*x - 1.0).abs() <= 0.05).count();
            (m, sd, within, v.len())
        };
        let (big, small) = (stats(&windows[0]), stats(&windows[1]));
        eprintln!(
            "19-s windows (mean, sd, within 5 %, of): big {big:.3?}, small {small:.3?}; small's mean {mean_small:.3}"
        );
        // Both on their targets on average.
        assert!((big.0 - 1.0).abs() < 0.01, "{big:?}");
        assert!((mean_small - 1.0).abs() < 0.05, "{mean_small}");
        // The big flow: every window within 5 %.
        assert_eq!(big.2, big.3, "{big:?}");
        // The small flow: the spread of its own loss count (~10 %), not the link's.
        assert!((0.04..0.15).contains(&small.1), "{small:?}");
        assert!(small.1 > 5.0 * big.1, "{small:?} {big:?}");
        assert!(small.2 < small.3 * 3 / 4, "{small:?}");
    }
}
