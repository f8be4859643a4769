//! `mongate demo --scenario flash-crowd`: the demand of class A->C jumps halfway through the
//! run, from 2 sessions at A's host to 8 (the class's `N_c` in the instance). Admission must
//! hold the plan in force (the sessions beyond what it admitted go best effort, the class
//! gets no more than its planned rate), the next plan must admit what fits (A's control
//! counts the refused sessions as demand and re-plans at once), and the summary reports the
//! utility over time against PFO's optimum for the demand of the moment.

use std::collections::BTreeMap;

use super::run::CROWD_CLASS;
use super::{FlashCrowd, Options, Scenario, Summary, run};

/// Sessions of A->C before and after the crowd.
pub const CROWD_SESSIONS: (u16, u16) = (2, 8);

/// Seconds skipped after the crowd before the "after" phase is averaged (re-plan, MONtra).
const SETTLE_S: f64 = 5.0;

/// The best-effort queue's rate per peer (`overlay::Settings::best_effort_pps`, 100 units of
/// 1250 B), Mbit/s: refused sessions may get this much through.
const BEST_EFFORT_MBPS: f64 = 1.0;

/// One phase, averaged over its seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CrowdPhase {
    /// Seconds from the start averaged over (first, last).
    pub seconds: (f64, f64),
    /// Sessions A's host had open.
    pub sessions_offered: u16,
    /// Sessions of A->C the plan in force admitted (at the end of the phase).
    pub admitted: u32,
    /// A->C's planned rate, Mbit/s.
    pub target_mbps: f64,
    /// A->C's delivered rate, Mbit/s.
    pub delivered_mbps: f64,
    /// Mission utility of the delivered rates (sessions counted: admitted and open).
    pub utility: f64,
    /// PFO's optimum for the demand of the phase.
    pub optimum: f64,
}

/// `--scenario flash-crowd`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FlashCrowdSummary {
    /// `flash_crowd`.
    pub scenario: Scenario,
    /// The class whose demand jumps.
    pub class: String,
    /// Second of the crowd.
    pub at_s: u32,
    /// Before the crowd (its last 5 s).
    pub before: CrowdPhase,
    /// After it (from 5 s after the crowd to the end).
    pub after: CrowdPhase,
    /// From the crowd to the plan of A's control that admitted more sessions of the class, s.
    pub replan_after_s: Option<f64>,
    /// The largest excess of the class's delivered rate over its planned rate in any second
    /// (the larger of that second's and the previous second's target), Mbit/s: admission
    /// holds the plan when it stays under the best-effort queue's rate (1 Mbit/s).
    pub worst_excess_mbps: f64,
    /// Per second: (t, sessions admitted by the plan in force at A, utility, optimum for the
    /// demand of that second).
    pub series: Vec<(f64, u32, f64, f64)>,
    /// Every bound met.
    pub ok: bool,
    /// One line.
    pub verdict: String,
    /// The run's plots (`--plots`), as in the run's `plots`: name -> file.
    pub plots: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The whole run.
    pub run: Summary,
}

/// Runs the flash-crowd scenario: `o.seconds` (at least 20), the crowd at half of it.
pub fn run_flash_crowd(o: &Options) -> anyhow::Result<FlashCrowdSummary> {
    if o.seconds < 20 {
        anyhow::bail!(
            "--scenario flash-crowd needs --seconds 20 or more (the crowd comes at half)"
        );
    }
    let at_s = o.seconds / 2;
    let (before, after) = CROWD_SESSIONS;
    let mut oo = o.clone();
    oo.flash_crowd = Some(FlashCrowd {
        at_s,
        before,
        after,
    });
    eprintln!(
        "==== flash crowd: class {CROWD_CLASS} from {before} to {after} sessions at t={at_s}s ===="
    );
    let s = run(&oo)?;
    summarize(s, at_s, before, after)
}

fn summarize(
    run: Summary,
    at_s: u32,
    before: u16,
    after: u16,
) -> anyhow::Result<FlashCrowdSummary> {
    let inst =
        mongate_control::pfo::Instance::from_json(mongate_testbed::topology::triangle::INSTANCE)
            .map_err(|e| anyhow::anyhow!("demo instance: {e}"))?;
    let (opt_before, opt_after) = run.crowd_optimum.unwrap_or((0.0, 0.0));
    let at = f64::from(at_s);
    // Admitted sessions per class in force at `t` at the class's source site.
    let admitted = |site: &str, class: &str, t: f64| -> u32 {
        run.plans
            .iter()
            .rfind(|p| p.site == site && p.t_s <= t)
            .and_then(|p| p.sessions.get(class).copied())
            .unwrap_or(0)
    };
    let source = |class: &str| class.split("->").next().unwrap_or("").to_owned();
    let offered = |class: &str, t: f64| -> u32 {
        if class == CROWD_CLASS {
            // The sample at `at` (+ a few µs) covers the second before the crowd.
            u32::from(if t < at + 0.5 { before } else { after })
        } else {
            6
        }
    };
    // Per second: per class (target, delivered).
    let per_class = |row: &[(f64, f64)]| -> BTreeMap<String, (f64, f64)> {
        let mut m: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (f, x) in run.flows.iter().zip(row) {
            let e = m.entry(f.class.clone()).or_default();
            e.0 += x.0;
            e.1 += x.1;
        }
        m
    };
    let mut series = Vec::new();
    let mut worst_excess: f64 = 0.0;
    let mut prev_target = 0.0;
    for (t, row) in &run.flow_series {
        let m = per_class(row);
        let mut u = 0.0;
        for class in &inst.classes {
            let (_, y) = m.get(&class.id).copied().unwrap_or_default();
            let n = admitted(&source(&class.id), &class.id, *t).min(offered(&class.id, *t));
            if n > 0 {
                u += f64::from(n) * class.utility.eval(y / f64::from(n));
            }
        }
        let (target, delivered) = m.get(CROWD_CLASS).copied().unwrap_or_default();
        worst_excess = worst_excess.max(delivered - target.max(prev_target));
        prev_target = target;
        let opt = if *t < at + 0.5 { opt_before } else { opt_after };
        series.push((*t, admitted("A", CROWD_CLASS, *t), u, opt));
    }
    let phase = |lo: f64, hi: f64, sessions: u16, optimum: f64| -> CrowdPhase {
        let idx: Vec<usize> = (0..run.flow_series.len())
            .filter(|&i| run.flow_series[i].0 > lo && run.flow_series[i].0 <= hi + 0.5)
            .collect();
        if idx.is_empty() {
            return CrowdPhase::default();
        }
        let m = idx.len() as f64;
        let (mut tg, mut dl, mut ut) = (0.0, 0.0, 0.0);
        for &i in &idx {
            let c = per_class(&run.flow_series[i].1);
            let (a, b) = c.get(CROWD_CLASS).copied().unwrap_or_default();
            tg += a;
            dl += b;
            ut += series[i].2;
        }
        let last = run.flow_series[idx[idx.len() - 1]].0;
        CrowdPhase {
            seconds: (run.flow_series[idx[0]].0, last),
            sessions_offered: sessions,
            admitted: admitted("A", CROWD_CLASS, last),
            target_mbps: tg / m,
            delivered_mbps: dl / m,
            utility: ut / m,
            optimum,
        }
    };
    let b = phase(at - 5.0, at, before, opt_before);
    let end = run.flow_series.last().map_or(0.0, |x| x.0);
    let a = phase(at + SETTLE_S, end, after, opt_after);
    let replan_after_s = run
        .plans
        .iter()
        .find(|p| {
            p.site == "A"
                && p.t_s >= at - 0.5
                && p.sessions.get(CROWD_CLASS).copied().unwrap_or(0) > b.admitted
        })
        .map(|p| p.t_s - at);
    let within = |x: f64, of: f64| of > 0.0 && (x / of - 1.0).abs() <= 0.05;
    let ok = a.admitted > b.admitted
        && replan_after_s.is_some_and(|s| s <= 3.0)
        && worst_excess <= BEST_EFFORT_MBPS
        && within(a.delivered_mbps, a.target_mbps)
        && within(a.utility, a.optimum);
    let verdict = format!(
        "{}: {CROWD_CLASS} {} -> {} sessions at {at_s} s; admitted {} -> {} (re-plan {}); worst excess over plan {:.2} Mbit/s; after: {:.2} of {:.2} Mbit/s, utility {:.2} of the optimum {:.2} ({:.1} %)",
        if ok {
            "flash crowd handled"
        } else {
            "flash crowd NOT handled"
        },
        before,
        after,
        b.admitted,
        a.admitted,
        replan_after_s.map_or("none".to_owned(), |s| format!("after {s:.2} s")),
        worst_excess,
        a.delivered_mbps,
        a.target_mbps,
        a.utility,
        a.optimum,
        if a.optimum > 0.0 {
            100.0 * a.utility / a.optimum
        } else {
            0.0
        }
    );
    Ok(FlashCrowdSummary {
        scenario: Scenario::FlashCrowd,
        class: CROWD_CLASS.to_owned(),
        at_s,
        before: b,
        after: a,
        replan_after_s,
        worst_excess_mbps: worst_excess,
        series,
        ok,
        verdict,
        plots: run.plots.clone(),
        run,
    })
}
