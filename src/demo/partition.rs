//! `mongate demo --scenario partition`: site A is cut off from B and C (all
//! its links down) at a third of the run and rejoins at two thirds. The
//! others must re-plan among themselves (B's traffic to C takes the capacity
//! A's detour through B had), the traffic of A must come back once it
//! rejoins, and the plans must settle (no oscillation).

use super::{Options, Scenario, Summary, run};

/// The site cut off.
pub const PARTITIONED_SITE: &str = "A";

/// Seconds skipped after each event before a phase is averaged (failure
/// detection, re-plan, MONtra settling).
const SETTLE_S: usize = 6;

/// After the rejoin, every planned flow's 5-s average within this of its target.
const BACK_BAND: f64 = 0.05;

/// A flow target moving by more than this from one second to the next
/// counts as a change of plan.
const TARGET_CHANGE: f64 = 0.02;

/// One phase of the run, averaged over its seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartitionPhase {
    /// Seconds from the start averaged over (first, last).
    pub seconds: (f64, f64),
    /// Per class: (id, planned Mbit/s, delivered Mbit/s).
    pub classes: Vec<(String, f64, f64)>,
    /// Mission utility of the delivered rates.
    pub utility: f64,
}

/// `--scenario partition`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionSummary {
    /// `partition`.
    pub scenario: Scenario,
    /// The site cut off, and the seconds it was cut and rejoined.
    pub site: String,
    /// Second of the cut.
    pub cut_s: u32,
    /// Second of the rejoin.
    pub rejoin_s: u32,
    /// Before the cut, during the partition, after the rejoin.
    pub before: PartitionPhase,
    /// During the partition (from `SETTLE_S` after the cut).
    pub during: PartitionPhase,
    /// After the rejoin (from `SETTLE_S` after the traffic is back).
    pub after: PartitionPhase,
    /// The classes that neither start nor end at the cut site were re-planned
    /// among the others: their planned rate during the partition minus
    /// before, Mbit/s (the capacity the cut site's traffic had).
    pub others_replanned_gain_mbps: f64,
    /// Those classes delivered within 5 % of their new plan during the
    /// partition: worst |error| of a flow's 5-s average over the phase (as
    /// `back_after_s` reads the rejoin: a full link's flow moves by +-5 %
    /// from second to second on the demo's tbf).
    pub others_worst_error_during: f64,
    /// The same with 3-s averages (printed, not a bound).
    pub others_worst_error_during_3s: f64,
    /// The site's own traffic during the partition over before (nothing can
    /// cross: ~0).
    pub cut_site_share_during: f64,
    /// Seconds from the rejoin until every planned flow stayed within 5 %
    /// of its target to the end; `None` if never.
    pub back_after_s: Option<f64>,
    /// Seconds after the traffic was back in which some flow's target moved
    /// by more than 2 % (re-plans after the rejoin): 0 means no oscillation.
    pub target_changes_after_back: usize,
    /// Every bound met.
    pub ok: bool,
    /// One line.
    pub verdict: String,
    /// The run's plots (`--plots`), as in the run's `plots`: name -> file.
    pub plots: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The whole run.
    pub run: Summary,
}

/// Runs the partition scenario: `o.seconds` (at least 30) with site A cut
/// off from a third to two thirds of it.
pub fn run_partition(o: &Options) -> anyhow::Result<PartitionSummary> {
    if o.seconds < 30 {
        anyhow::bail!(
            "--scenario partition needs --seconds 30 or more (a third each: before, cut off, rejoined)"
        );
    }
    let cut = o.seconds / 3;
    let rejoin = 2 * o.seconds / 3;
    let mut oo = o.clone();
    oo.partition = Some((PARTITIONED_SITE.to_string(), cut, rejoin));
    eprintln!(
        "==== partition: site {PARTITIONED_SITE} cut off from the others at t={cut}s, rejoins at t={rejoin}s ===="
    );
    let s = run(&oo)?;
    Ok(summarize(s, PARTITIONED_SITE, cut, rejoin))
}

fn summarize(run: Summary, site: &str, cut: u32, rejoin: u32) -> PartitionSummary {
    let (cut_i, rejoin_i) = (cut as usize, rejoin as usize);
    let n = run.flow_series.len();
    let phase = |lo: usize, hi: usize| -> PartitionPhase {
        let hi = hi.min(n);
        if lo >= hi {
            return PartitionPhase::default();
        }
        let secs = &run.flow_series[lo..hi];
        let mut classes: Vec<(String, f64, f64)> = Vec::new();
        for (k, f) in run.flows.iter().enumerate() {
            let m = secs.len() as f64;
            let t = secs
                .iter()
                .filter_map(|r| r.1.get(k))
                .map(|x| x.0)
                .sum::<f64>()
                / m;
            let a = secs
                .iter()
                .filter_map(|r| r.1.get(k))
                .map(|x| x.1)
                .sum::<f64>()
                / m;
            match classes.iter_mut().find(|c| c.0 == f.class) {
                Some(c) => {
                    c.1 += t;
                    c.2 += a;
                }
                None => classes.push((f.class.clone(), t, a)),
            }
        }
        let u =
            &run.utility_series[lo.min(run.utility_series.len())..hi.min(run.utility_series.len())];
        PartitionPhase {
            seconds: (secs[0].0, secs[secs.len() - 1].0),
            classes,
            utility: u.iter().map(|x| x.1).sum::<f64>() / u.len().max(1) as f64,
        }
    };
    // Series index i holds second i + 1.
    let before = phase(cut_i.saturating_sub(SETTLE_S), cut_i.saturating_sub(1));
    let during = phase(cut_i + SETTLE_S, rejoin_i.saturating_sub(1));
    // Back: from the first second after the rejoin from which, to the end, every planned
    // flow's 5-s average stays within 5 % of its target (a full link's flow moves by +-5 %
    // from second to second on the demo's tbf, which 3-s averages did not absorb).
    let in_band = |i: usize| -> bool {
        let lo = i.saturating_sub(4);
        (0..run.flows.len()).all(|k| {
            let t = run.flow_series[i].1.get(k).map_or(0.0, |x| x.0);
            let a = (lo..=i)
                .filter_map(|j| run.flow_series[j].1.get(k))
                .map(|x| x.1)
                .sum::<f64>()
                / (i + 1 - lo) as f64;
            t <= 0.0 || ((a - t) / t).abs() <= BACK_BAND
        })
    };
    let mut back_i = n;
    for i in (rejoin_i..n).rev() {
        if in_band(i) {
            back_i = i;
        } else {
            break;
        }
    }
    let back_after_s = (back_i < n).then(|| run.flow_series[back_i].0 - f64::from(rejoin));
    let after = phase((back_i + SETTLE_S).min(n.saturating_sub(3)), n);
    // Classes of the others: neither end at the cut site.
    let touches = |class: &str| class.split("->").any(|end| end.trim() == site);
    let class_figure = |p: &PartitionPhase, c: &str| {
        p.classes
            .iter()
            .find(|x| x.0 == c)
            .map_or((0.0, 0.0), |x| (x.1, x.2))
    };
    let others: Vec<String> = before
        .classes
        .iter()
        .map(|c| c.0.clone())
        .filter(|c| !touches(c))
        .collect();
    let planned = |p: &PartitionPhase, set: &[String]| -> f64 {
        set.iter().map(|c| class_figure(p, c).0).sum()
    };
    let delivered = |p: &PartitionPhase, set: &[String]| -> f64 {
        set.iter().map(|c| class_figure(p, c).1).sum()
    };
    let others_replanned_gain_mbps = planned(&during, &others) - planned(&before, &others);
    // The others' flows during the partition: 3-s averages against targets.
    let other_flows: Vec<usize> = run
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| others.contains(&f.class))
        .map(|(k, _)| k)
        .collect();
    // Worst |error| of the others' `w`-s averages, from the phase's start
    // (the averages only over seconds of the phase).
    let worst_of = |w: usize| -> f64 {
        let first = cut_i + SETTLE_S;
        // No whole window in the phase (a run too short): no figure, not a pass.
        let mut worst = f64::NAN;
        for i in (first + w - 1)..rejoin_i.saturating_sub(1).min(n) {
            worst = worst.max(0.0);
            for &k in &other_flows {
                let t = run.flow_series[i].1.get(k).map_or(0.0, |x| x.0);
                let a = (i + 1 - w..=i)
                    .filter_map(|j| run.flow_series[j].1.get(k))
                    .map(|x| x.1)
                    .sum::<f64>()
                    / w as f64;
                if t > 0.0 {
                    worst = worst.max(((a - t) / t).abs());
                }
            }
        }
        worst
    };
    let worst = worst_of(5);
    let worst_3s = worst_of(3);
    let mine: Vec<String> = before
        .classes
        .iter()
        .map(|c| c.0.clone())
        .filter(|c| c.starts_with(site))
        .collect();
    let cut_site_share_during = ratio(delivered(&during, &mine), delivered(&before, &mine));
    let mut target_changes_after_back = 0;
    if back_after_s.is_some() {
        for i in (back_i + 1)..n {
            let moved = run.flow_series[i]
                .1
                .iter()
                .zip(&run.flow_series[i - 1].1)
                .any(|(x, y)| {
                    let (a, b) = (x.0, y.0);
                    (a - b).abs() > TARGET_CHANGE * a.max(b).max(1e-9)
                });
            target_changes_after_back += usize::from(moved);
        }
    }
    let ok = others_replanned_gain_mbps > 0.5
        && worst <= 0.05
        && cut_site_share_during < 0.05
        && back_after_s.is_some()
        && target_changes_after_back == 0;
    let verdict = format!(
        "{}: during the partition the others were re-planned {:+.2} Mbit/s (delivered within {:.1} %, 5-s averages), {site}'s traffic {:.1} % of before; back {} after the rejoin; {} re-plans after that",
        if ok { "ok" } else { "NOT MET" },
        others_replanned_gain_mbps,
        100.0 * worst,
        100.0 * cut_site_share_during,
        back_after_s.map_or("never".into(), |t| format!("{t:.0} s")),
        target_changes_after_back
    );
    PartitionSummary {
        scenario: Scenario::Partition,
        site: site.into(),
        cut_s: cut,
        rejoin_s: rejoin,
        before,
        during,
        after,
        others_replanned_gain_mbps,
        others_worst_error_during: worst,
        others_worst_error_during_3s: worst_3s,
        cut_site_share_during,
        back_after_s,
        target_changes_after_back,
        ok,
        verdict,
        plots: run.plots.clone(),
        run,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
