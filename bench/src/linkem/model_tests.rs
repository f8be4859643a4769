use proptest::prelude::*;

use super::*;

fn model(cfg: DirectionConfig) -> LinkModel {
    LinkModel::new(cfg, 42).unwrap()
}

fn hold(v: Verdict) -> u64 {
    match v {
        Verdict::Hold(t) => t,
        Verdict::Drop(c) => panic!("dropped: {c:?}"),
    }
}

#[test]
fn perfect_link_passes_at_once() {
    let mut m = model(DirectionConfig::default());
    for (i, len) in [60u32, 1514, 9000, 0, u32::MAX].into_iter().enumerate() {
        let now = 1_000 * i as u64;
        assert_eq!(m.on_arrival(now, len), Verdict::Hold(now));
    }
    assert_eq!(m.stats().held, 5);
}

#[test]
fn zero_rate_is_unlimited() {
    let mut m = model(DirectionConfig {
        queue_pkts: 1,
        ..DirectionConfig::default()
    });
    // 10k back-to-back frames at the same instant: none waits, none queued.
    for _ in 0..10_000 {
        assert_eq!(m.on_arrival(5, 1514), Verdict::Hold(5));
    }
    assert_eq!(m.stats().queue_full, 0);
    assert_eq!(m.queue_len(), 0);
}

#[test]
fn delay_is_added() {
    let mut m = model(DirectionConfig {
        delay_ns: 5_000_000,
        ..DirectionConfig::default()
    });
    assert_eq!(m.on_arrival(100, 64), Verdict::Hold(5_000_100));
    assert_eq!(m.on_arrival(200, 64), Verdict::Hold(5_000_200));
}

#[test]
fn token_bucket_exact_values() {
    // 8 Mbit/s = 1 byte per microsecond; bucket 1514 bytes, full at start.
    let mut m = model(DirectionConfig {
        rate_bps: 8_000_000,
        ..DirectionConfig::default()
    });
    assert_eq!(hold(m.on_arrival(0, 1000)), 0);
    // 514 bytes left; 486 more take 486 us.
    assert_eq!(hold(m.on_arrival(0, 1000)), 486_000);
    // Then one frame per 1000 us.
    assert_eq!(hold(m.on_arrival(0, 1000)), 1_486_000);
    assert_eq!(hold(m.on_arrival(0, 1000)), 2_486_000);
    assert_eq!(m.queue_len(), 3);
    // Idle long enough to refill: immediate again.
    assert_eq!(hold(m.on_arrival(100_000_000, 1000)), 100_000_000);
}

#[test]
fn token_bucket_rounds_up_without_drift() {
    // 3 bit/s, 1-byte frames, bucket = one frame: the n-th frame (from 0)
    // is released at exactly ceil(n * 8e9 / 3) ns, however many came before.
    let mut m = model(DirectionConfig {
        rate_bps: 3,
        burst_bytes: 0,
        queue_pkts: MAX_QUEUE_PKTS,
        ..DirectionConfig::default()
    });
    for n in 0u128..5_000 {
        let want = u64::try_from((n * 8_000_000_000).div_ceil(3)).unwrap();
        assert_eq!(hold(m.on_arrival(0, 1)), want, "frame {n}");
    }
}

#[test]
fn overhead_counts_toward_the_rate() {
    let mut m = model(DirectionConfig {
        rate_bps: 8_000_000,
        burst_bytes: 0,
        overhead_bytes: 24,
        ..DirectionConfig::default()
    });
    assert_eq!(hold(m.on_arrival(0, 76)), 0);
    // (76 + 24) bytes at 1 byte/us.
    assert_eq!(hold(m.on_arrival(0, 76)), 100_000);
}

#[test]
fn long_run_rate_is_the_configured_rate() {
    // Offered: 1500-byte frames every 100 us (120 Mbit/s) into 10 Mbit/s.
    let rate = 10_000_000u64;
    let mut m = model(DirectionConfig {
        rate_bps: rate,
        queue_pkts: MAX_QUEUE_PKTS,
        ..DirectionConfig::default()
    });
    let mut last = 0;
    let n = 20_000u64;
    for i in 0..n {
        last = hold(m.on_arrival(i * 100_000, 1500));
    }
    // n frames minus the initial bucket's worth, over `last` ns.
    let bits = (n - 1) as f64 * 1500.0 * 8.0;
    let achieved = bits / (last as f64 / 1e9);
    assert!(
        (achieved / rate as f64 - 1.0).abs() < 1e-6,
        "achieved {achieved} bit/s"
    );
}

#[test]
fn queue_is_drop_tail_and_drains() {
    let mut m = model(DirectionConfig {
        rate_bps: 8_000_000,
        burst_bytes: 0,
        queue_pkts: 3,
        ..DirectionConfig::default()
    });
    assert_eq!(hold(m.on_arrival(0, 1000)), 0); // bucket: not queued
    for k in 1..=3u64 {
        assert_eq!(hold(m.on_arrival(0, 1000)), k * 1_000_000);
    }
    assert_eq!(m.on_arrival(0, 1000), Verdict::Drop(DropCause::QueueFull));
    assert_eq!(m.stats().queue_full, 1);
    assert_eq!(m.stats().max_queue, 3);
    // At 1 ms the first queued frame has left: room for one.
    assert_eq!(hold(m.on_arrival(1_000_000, 1000)), 4_000_000);
    assert_eq!(
        m.on_arrival(1_000_000, 1000),
        Verdict::Drop(DropCause::QueueFull)
    );
}

#[test]
fn huge_queue_is_accepted_and_beyond_is_refused() {
    let mut m = model(DirectionConfig {
        rate_bps: 1_000,
        queue_pkts: MAX_QUEUE_PKTS,
        ..DirectionConfig::default()
    });
    for _ in 0..10_000 {
        assert!(matches!(m.on_arrival(0, 1500), Verdict::Hold(_)));
    }
    let bad = DirectionConfig {
        queue_pkts: MAX_QUEUE_PKTS + 1,
        ..DirectionConfig::default()
    };
    assert_eq!(
        LinkModel::new(bad, 1).unwrap_err(),
        ConfigError::Queue(MAX_QUEUE_PKTS + 1)
    );
    let zero = DirectionConfig {
        queue_pkts: 0,
        ..DirectionConfig::default()
    };
    assert!(LinkModel::new(zero, 1).is_err());
}

#[test]
fn bad_configs_are_refused() {
    for loss in [
        Loss::Bernoulli { p: 1.5 },
        Loss::Bernoulli { p: -0.1 },
        Loss::Bernoulli { p: f64::NAN },
        Loss::GilbertElliott {
            p_gb: 0.1,
            p_bg: 2.0,
            loss_good: 0.0,
            loss_bad: 1.0,
        },
    ] {
        let c = DirectionConfig {
            loss,
            ..DirectionConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Probability { .. })));
    }
    let c = DirectionConfig {
        delay_ns: MAX_DELAY_NS + 1,
        ..DirectionConfig::default()
    };
    assert!(matches!(c.validate(), Err(ConfigError::TooLong { .. })));
    let c = DirectionConfig {
        jitter_ns: u64::MAX,
        ..DirectionConfig::default()
    };
    assert!(matches!(c.validate(), Err(ConfigError::TooLong { .. })));
}

fn count_lost(loss: Loss, n: u64, seed: u64) -> (u64, Vec<bool>) {
    let mut m = LinkModel::new(
        DirectionConfig {
            loss,
            ..DirectionConfig::default()
        },
        seed,
    )
    .unwrap();
    let v: Vec<bool> = (0..n)
        .map(|i| m.on_arrival(i, 100) == Verdict::Drop(DropCause::Loss))
        .collect();
    (m.stats().lost, v)
}

#[test]
fn bernoulli_loss_within_four_sigma() {
    let n = 100_000u64;
    for (p, seed) in [(0.01, 1), (0.01, 2), (0.1, 3), (0.5, 4)] {
        let (lost, _) = count_lost(Loss::Bernoulli { p }, n, seed);
        let mean = n as f64 * p;
        let sigma = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (lost as f64 - mean).abs() < 4.0 * sigma,
            "p={p}: lost {lost}, expected {mean} +- {}",
            4.0 * sigma
        );
    }
}

#[test]
fn loss_extremes_are_exact() {
    assert_eq!(count_lost(Loss::Bernoulli { p: 0.0 }, 10_000, 9).0, 0);
    assert_eq!(count_lost(Loss::Bernoulli { p: 1.0 }, 10_000, 9).0, 10_000);
    assert_eq!(count_lost(Loss::None, 10_000, 9).0, 0);
}

#[test]
fn gilbert_elliott_mean_and_bursts() {
    let ge = Loss::GilbertElliott {
        p_gb: 0.01,
        p_bg: 0.25,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let n = 1_000_000u64;
    let (lost, v) = count_lost(ge, n, 7);
    let ratio = lost as f64 / n as f64;
    assert!(
        (ratio / ge.mean() - 1.0).abs() < 0.1,
        "ratio {ratio}, mean {}",
        ge.mean()
    );
    // Mean burst (run of consecutive losses) = 1 / p_bg = 4 frames.
    let mut runs = 0u64;
    let mut prev = false;
    for &l in &v {
        if l && !prev {
            runs += 1;
        }
        prev = l;
    }
    let mean_run = lost as f64 / runs as f64;
    assert!((mean_run - 4.0).abs() < 0.4, "mean burst {mean_run}");
}

fn sample_jitter(dist: JitterDist, j: u64, n: u64) -> (f64, f64, i64, i64) {
    let delay = 100_000_000u64;
    let mut m = model(DirectionConfig {
        delay_ns: delay,
        jitter_ns: j,
        jitter_dist: dist,
        ..DirectionConfig::default()
    });
    // Arrivals 1 s apart: FIFO never binds.
    let xs: Vec<i64> = (0..n)
        .map(|i| {
            let now = i * 1_000_000_000;
            let d = hold(m.on_arrival(now, 100));
            i64::try_from(d - now).unwrap() - i64::try_from(delay).unwrap()
        })
        .collect();
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (
        mean,
        var.sqrt(),
        *xs.iter().min().unwrap(),
        *xs.iter().max().unwrap(),
    )
}

#[test]
fn jitter_has_the_configured_deviation() {
    let j = 2_000_000u64;
    let ji = 2_000_000i64;
    for dist in [JitterDist::Uniform, JitterDist::Normal] {
        let (mean, sd, min, max) = sample_jitter(dist, j, 100_000);
        assert!(mean.abs() < 0.02 * j as f64, "{dist:?} mean {mean}");
        assert!(
            (sd / j as f64 - 1.0).abs() < 0.02,
            "{dist:?} sd {sd} vs {j}"
        );
        if dist == JitterDist::Uniform {
            let h = 3_464_102; // round(2e6 * sqrt(3))
            assert!(min >= -h && max <= h);
            assert!(min < -h * 99 / 100 && max > h * 99 / 100);
        } else {
            assert!(max > 3 * ji && min < -3 * ji);
        }
    }
}

#[test]
fn jitter_never_makes_delay_negative() {
    let mut m = model(DirectionConfig {
        delay_ns: 1_000,
        jitter_ns: 1_000_000,
        jitter_dist: JitterDist::Normal,
        reorder: true,
        ..DirectionConfig::default()
    });
    for i in 0..10_000u64 {
        let now = i * 10_000_000;
        assert!(hold(m.on_arrival(now, 100)) >= now);
    }
}

#[test]
fn reorder_only_when_asked() {
    let run = |reorder: bool| {
        let mut m = model(DirectionConfig {
            delay_ns: 10_000_000,
            jitter_ns: 3_000_000,
            reorder,
            ..DirectionConfig::default()
        });
        let d: Vec<u64> = (0..2_000u64)
            .map(|i| hold(m.on_arrival(i * 10_000, 100)))
            .collect();
        d.windows(2).filter(|w| w[1] < w[0]).count()
    };
    assert_eq!(run(false), 0);
    assert!(run(true) > 100);
}

#[test]
fn time_running_backwards_is_clamped() {
    let mut m = model(DirectionConfig {
        delay_ns: 10,
        ..DirectionConfig::default()
    });
    assert_eq!(m.on_arrival(1_000, 64), Verdict::Hold(1_010));
    assert_eq!(m.on_arrival(5, 64), Verdict::Hold(1_010));
}

#[test]
fn seed_determines_everything() {
    let cfg = DirectionConfig {
        rate_bps: 50_000_000,
        delay_ns: 1_000_000,
        jitter_ns: 500_000,
        jitter_dist: JitterDist::Normal,
        loss: Loss::Bernoulli { p: 0.05 },
        ..DirectionConfig::default()
    };
    let run = |seed| {
        let mut m = LinkModel::new(cfg.clone(), seed).unwrap();
        (0..2_000u64)
            .map(|i| m.on_arrival(i * 50_000, 1000))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

fn arb_loss() -> impl Strategy<Value = Loss> {
    prop_oneof![
        Just(Loss::None),
        (0.0f64..=1.0).prop_map(|p| Loss::Bernoulli { p }),
        (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0).prop_map(|(a, b, c, d)| {
            Loss::GilbertElliott {
                p_gb: a,
                p_bg: b,
                loss_good: c,
                loss_bad: d,
            }
        }),
    ]
}

fn arb_config() -> impl Strategy<Value = DirectionConfig> {
    (
        prop_oneof![Just(0u64), any::<u64>(), 1u64..10_000_000_000],
        any::<u32>(),
        prop_oneof![Just(0u32), any::<u32>()],
        0..=MAX_DELAY_NS,
        prop_oneof![Just(0u64), 0..=MAX_DELAY_NS],
        prop_oneof![Just(JitterDist::Uniform), Just(JitterDist::Normal)],
        any::<bool>(),
        arb_loss(),
        1u32..200,
    )
        .prop_map(
            |(
                rate_bps,
                burst_bytes,
                overhead_bytes,
                delay_ns,
                jitter_ns,
                jitter_dist,
                reorder,
                loss,
                queue_pkts,
            )| {
                DirectionConfig {
                    rate_bps,
                    burst_bytes,
                    overhead_bytes,
                    delay_ns,
                    jitter_ns,
                    jitter_dist,
                    reorder,
                    loss,
                    queue_pkts,
                }
            },
        )
}

proptest! {
    /// Never panics on any valid configuration, any times and lengths;
    /// departures are never before arrival; FIFO unless reorder.
    #[test]
    fn never_panics_and_fifo_by_default(
        cfg in arb_config(),
        seed in any::<u64>(),
        arrivals in proptest::collection::vec((any::<u64>(), any::<u32>()), 1..300),
        sorted in any::<bool>(),
    ) {
        let mut arrivals = arrivals;
        if sorted {
            arrivals.sort_unstable();
        }
        let reorder = cfg.reorder;
        let mut m = LinkModel::new(cfg, seed).unwrap();
        let mut last_now = 0u64;
        let mut last_depart = 0u64;
        for (now, len) in arrivals {
            last_now = last_now.max(now);
            match m.on_arrival(now, len) {
                Verdict::Hold(d) => {
                    prop_assert!(d >= last_now);
                    if !reorder {
                        prop_assert!(d >= last_depart);
                    }
                    last_depart = last_depart.max(d);
                }
                Verdict::Drop(_) => {}
            }
        }
        let s = m.stats();
        prop_assert_eq!(s.arrived, s.lost + s.queue_full + s.held);
    }

    /// The token bucket alone never releases more than rate * t + depth bits
    /// by any time t (checked at every release).
    #[test]
    fn shaper_respects_rate_and_depth(
        rate in 1_000u64..10_000_000_000,
        burst in 0u32..100_000,
        lens in proptest::collection::vec(1u32..9_000, 1..300),
        gaps in proptest::collection::vec(0u64..2_000_000, 300),
    ) {
        let mut m = LinkModel::new(DirectionConfig {
            rate_bps: rate,
            burst_bytes: burst,
            queue_pkts: MAX_QUEUE_PKTS,
            ..DirectionConfig::default()
        }, 0).unwrap();
        let mut now = 0u64;
        let mut sent_bits = 0u128;
        let max_len = u128::from(*lens.iter().max().unwrap());
        let depth = (u128::from(burst) * 8).max(max_len * 8);
        for (len, gap) in lens.iter().zip(gaps.iter()) {
            now += gap;
            let Verdict::Hold(d) = m.on_arrival(now, *len) else {
                prop_assert!(false, "no loss or queue limit configured");
                unreachable!();
            };
            sent_bits += u128::from(*len) * 8;
            // Tokens available by d: depth + rate * d (from a full bucket at 0).
            prop_assert!(sent_bits * 1_000_000_000 <= depth * 1_000_000_000 + u128::from(rate) * u128::from(d));
        }
    }
}
