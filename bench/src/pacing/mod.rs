//! `mongate-bench pacing`: the Poisson pacer under the real clock.
//!
//! Drives a [`PacingTable`] exactly as a worker does — every flow backlogged
//! (a released packet is re-queued at once), a busy loop that reads
//! CLOCK_MONOTONIC and calls `poll(now)` into a 64-packet batch — and records
//! each departure's time (the `now` of the poll that released it, as a worker
//! would transmit it) and its scheduled time into preallocated buffers. Then
//! reports, per (rate, flows): achieved rate / set rate, the KS statistic of
//! the aggregate inter-departure gaps against Exp(rate) (the superposition of
//! independent Poisson flows is Poisson), the lateness of departures against
//! their schedule and, with many flows, the spread of the per-flow rates.
//!
//! Statistics are in [`stats`] (pure, unit-tested); this module is the thin
//! clock-driven runner.

pub mod stats;

use std::fmt::Write as _;

use mongate_dataplane::engine::{Batch, Packet};
use mongate_dataplane::pacing::{PacingConfig, PacingTable};
use mongate_dataplane::sys::clock::now_ns;

use stats::{dispersion_index, ks_critical_001, ks_exp, mean_u64, percentile};

/// Parameters of a pacing benchmark.
#[derive(Clone, Debug)]
pub struct PacingBench {
    /// Aggregate set rates, packets/s.
    pub rates: Vec<f64>,
    /// Flow counts (the aggregate rate is split evenly among them).
    pub flows: Vec<u32>,
    /// Seconds per (rate, flows) cell.
    pub seconds: f64,
    /// Timer-wheel tick shift (tick = 2^shift ns; the worker uses 10).
    pub tick_shift: u32,
    /// Packets queued per flow (kept full: backlogged).
    pub queue_capacity: u32,
    /// Largest lateness made up by sending faster (the worker's 100 us).
    pub max_lag_ns: u64,
    /// Gaps used for the headline KS test (the first ones of the run).
    pub ks_samples: usize,
    /// Seed of the gap generator.
    pub seed: u64,
}

impl Default for PacingBench {
    fn default() -> Self {
        Self {
            rates: vec![1_000.0, 10_000.0, 100_000.0, 1_000_000.0],
            flows: vec![1],
            seconds: 2.0,
            tick_shift: 10,
            queue_capacity: 4,
            max_lag_ns: PacingConfig::default().max_lag_ns,
            ks_samples: 100_000,
            seed: 1,
        }
    }
}

/// Per-flow rate spread (cells with more than one flow).
#[derive(Clone, Debug, serde::Serialize)]
pub struct FlowSpread {
    /// Departures each flow would have on average (`rate / flows * seconds`).
    pub expected_per_flow: f64,
    /// 1st / 50th / 99th percentile of per-flow departures / expected.
    pub ratio_p1: f64,
    /// Median ratio.
    pub ratio_p50: f64,
    /// 99th percentile ratio.
    pub ratio_p99: f64,
    /// Smallest and largest ratio.
    pub ratio_min: f64,
    /// Largest ratio.
    pub ratio_max: f64,
    /// Dispersion index `var / mean` of the per-flow counts (1 for Poisson).
    pub dispersion: f64,
}

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PacingCell {
    /// Aggregate set rate, packets/s.
    pub rate_pps: f64,
    /// Flows.
    pub flows: u32,
    /// Wheel tick, ns.
    pub tick_ns: u64,
    /// Measured span (first poll to last poll), s.
    pub seconds: f64,
    /// Departures recorded.
    pub departures: u64,
    /// Departures / span.
    pub achieved_pps: f64,
    /// `achieved / set`.
    pub ratio: f64,
    /// Standard error of `ratio` for a Poisson count of this size, `1/sqrt(n)`.
    pub ratio_stderr: f64,
    /// Departures / span of their *scheduled* times (what the drawn gaps ask
    /// for): `achieved / scheduled` isolates the pacer's timing from the
    /// Poisson noise of the count.
    pub scheduled_pps: f64,
    /// True when `|ratio - 1| <= 1 %` or within 2.576 standard errors (99 %)
    /// of 1 — the Poisson noise floor of a short run.
    pub rate_ok: bool,
    /// KS statistic of the first `ks_n` gaps against Exp(rate).
    pub ks_d: f64,
    /// Gaps in the headline test.
    pub ks_n: usize,
    /// Critical value at alpha 0.01 for `ks_n`.
    pub ks_crit: f64,
    /// `ks_d < ks_crit`.
    pub ks_pass: bool,
    /// KS statistic over all gaps of the run.
    pub ks_d_all: f64,
    /// Gaps in the run.
    pub ks_n_all: usize,
    /// Critical value at alpha 0.01 for all gaps.
    pub ks_crit_all: f64,
    /// Fraction of zero gaps (departures released by the same poll).
    pub zero_gap_fraction: f64,
    /// Lateness of departures vs their scheduled time: mean, ns.
    pub late_mean_ns: f64,
    /// Lateness p50, ns.
    pub late_p50_ns: u64,
    /// Lateness p99, ns.
    pub late_p99_ns: u64,
    /// Lateness max, ns.
    pub late_max_ns: u64,
    /// Polls (clock reads) per departure.
    pub polls_per_departure: f64,
    /// Recording buffer filled before the end (the run stopped early).
    pub truncated: bool,
    /// Longest gap between two clock reads of the loop, ns.
    pub max_poll_gap_ns: u64,
    /// Clock-read gaps longer than `max_lag_ns` (preemption, interrupts).
    pub stalls: u64,
    /// Time of those gaps beyond `max_lag_ns`, summed: rate the pacer cannot
    /// make up (ns).
    pub stalled_ns: u64,
    /// Per-flow rate spread (more than one flow).
    pub per_flow: Option<FlowSpread>,
}

/// The whole report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PacingReport {
    /// Core the loop ran on (if pinned).
    pub core: Option<usize>,
    /// 1-minute load average at the start.
    pub load_avg_1m: Option<f64>,
    /// Seconds per cell.
    pub seconds: f64,
    /// Cells, in order of flows then rates.
    pub cells: Vec<PacingCell>,
}

/// Errors of the runner.
#[derive(Debug, thiserror::Error)]
pub enum PacingBenchError {
    /// Invalid parameter.
    #[error("pacing bench: {0}")]
    Param(String),
    /// The pacing table refused its configuration.
    #[error(transparent)]
    Table(#[from] mongate_dataplane::pacing::PacingError),
}

/// Buffers the measurement loop writes into (allocated before the clock starts).
struct Record {
    at: Vec<u64>,
    sched: Vec<u64>,
    flow: Vec<u32>,
}

/// Measures one cell.
pub fn run_cell(b: &PacingBench, rate: f64, flows: u32) -> Result<PacingCell, PacingBenchError> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e8) {
        return Err(PacingBenchError::Param(format!(
            "rate {rate} must be in (0, 1e8] pps"
        )));
    }
    if flows == 0 || flows > 10_000_000 {
        return Err(PacingBenchError::Param(format!(
            "flows {flows} must be in 1..=10000000"
        )));
    }
    if !(b.seconds.is_finite() && b.seconds > 0.0 && b.seconds <= 600.0) {
        return Err(PacingBenchError::Param(
            "seconds must be in (0, 600]".into(),
        ));
    }
    // Room for the expected count + 8 sd + slack; a run that fills it stops.
    let expect = rate * b.seconds;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // <= 6e10, checked below
    let cap = (expect * 1.05 + 8.0 * expect.sqrt() + 1024.0) as usize;
    if cap > 400_000_000 {
        return Err(PacingBenchError::Param(format!(
            "rate x seconds = {expect:.0} departures: too many to record (max ~3.8e8)"
        )));
    }
    let mut rec = Record {
        at: Vec::with_capacity(cap),
        sched: Vec::with_capacity(cap),
        flow: Vec::with_capacity(cap),
    };
    let per_flow_rate = rate / f64::from(flows);
    let qcap = b.queue_capacity.max(1);
    let start = now_ns();
    let mut t = PacingTable::new(
        PacingConfig {
            flows,
            queue_capacity: qcap,
            tick_shift: b.tick_shift,
            seed: b.seed,
            max_lag_ns: b.max_lag_ns,
            unit_bytes: 0,
        },
        start,
    )?;
    // Every flow starts at the same instant `t0`, after the set-up (which takes
    // ~1 us per flow): no departure falls due during the set-up, so none is
    // released late in a burst when the loop starts.
    let t0 = start + 50_000_000 + 5_000 * u64::from(flows);
    // Scheduled time of each flow's next departure (mirrors the pacer).
    let mut next = vec![0u64; flows as usize];
    for f in 0..flows {
        t.set_rate(f, per_flow_rate, t0);
        for _ in 0..qcap {
            // Cannot fail: the queue is empty and the flow exists.
            let _ = t.enqueue(f, Packet::new(u64::from(f), 64, 0, start), start);
        }
        next[f as usize] = t.pacer(f).map_or(u64::MAX, |p| p.next_departure_ns);
    }
    // Fault in the buffers' pages before the clock starts.
    let touch = |v: &mut Vec<u64>| {
        v.resize(cap, 0);
        v.clear();
    };
    touch(&mut rec.at);
    touch(&mut rec.sched);
    rec.flow.resize(cap, 0);
    rec.flow.clear();

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // <= 600 s
    let span_ns = (b.seconds * 1e9) as u64;
    let mut out = Batch::new();
    let mut polls = 0u64;
    let mut truncated = false;
    let end = t0 + span_ns;
    let mut now = now_ns();
    // (If the set-up overran t0, the first departures show up as late.)
    while now < t0 {
        now = now_ns();
    }
    let mut stall = Stalls::default();
    while now < end {
        let prev = now;
        now = now_ns();
        stall.note(now - prev, b.max_lag_ns);
        polls += 1;
        out.clear();
        if t.poll(now, &mut out) == 0 {
            continue;
        }
        if rec.at.len() + out.len() > cap {
            truncated = true;
            break;
        }
        for p in out.as_slice() {
            // addr carries the flow id (< flows <= 1e7).
            let f = u32::try_from(p.addr).unwrap_or(0);
            let fi = f as usize;
            rec.at.push(now);
            rec.sched.push(next[fi]);
            rec.flow.push(f);
            next[fi] = t.pacer(f).map_or(u64::MAX, |q| q.next_departure_ns);
            // Backlogged: the slot just freed is refilled at once.
            let _ = t.enqueue(f, *p, now);
        }
    }
    let t1 = now;
    let mut cell = analyse(b, rate, flows, &rec, t0, t1, polls, truncated);
    cell.max_poll_gap_ns = stall.max_ns;
    cell.stalls = stall.count;
    cell.stalled_ns = stall.total_ns;
    Ok(cell)
}

/// Clock-read gaps longer than `max_lag` (the thread was descheduled or
/// interrupted): departures due in them are delayed beyond what the pacer
/// makes up, so they lower the achieved rate.
#[derive(Default)]
struct Stalls {
    max_ns: u64,
    count: u64,
    total_ns: u64,
}

impl Stalls {
    #[inline]
    fn note(&mut self, gap_ns: u64, max_lag_ns: u64) {
        self.max_ns = self.max_ns.max(gap_ns);
        if gap_ns > max_lag_ns {
            self.count += 1;
            self.total_ns += gap_ns - max_lag_ns;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    b: &PacingBench,
    rate: f64,
    flows: u32,
    rec: &Record,
    t0: u64,
    t1: u64,
    polls: u64,
    truncated: bool,
) -> PacingCell {
    let n = rec.at.len();
    let (nf, span_s) = (n as f64, (t1.saturating_sub(t0)).max(1) as f64 / 1e9);
    let achieved = nf / span_s;
    let ratio = achieved / rate;
    let stderr = if n > 0 {
        1.0 / nf.sqrt()
    } else {
        f64::INFINITY
    };
    // Scheduled span: from the start to the last scheduled departure.
    let sched_last = rec.sched.iter().copied().max().unwrap_or(t0);
    let sched_span_s = (sched_last.saturating_sub(t0)).max(1) as f64 / 1e9;
    let scheduled = nf / sched_span_s;
    let rate_ok = n > 0 && ((ratio - 1.0).abs() <= 0.01 || (ratio - 1.0).abs() <= 2.576 * stderr);

    let mut gaps: Vec<f64> = rec.at.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let zero_gap_fraction =
        gaps.iter().filter(|&&g| g == 0.0).count() as f64 / gaps.len().max(1) as f64;
    let mean = 1e9 / rate;
    let ks_n = gaps.len().min(b.ks_samples.max(1));
    let mut head: Vec<f64> = gaps[..ks_n].to_vec();
    head.sort_by(f64::total_cmp);
    let ks_d = ks_exp(&head, mean).unwrap_or(1.0);
    let ks_crit = ks_critical_001(ks_n);
    gaps.sort_by(f64::total_cmp);
    let ks_d_all = ks_exp(&gaps, mean).unwrap_or(1.0);

    let mut late: Vec<u64> = rec
        .at
        .iter()
        .zip(&rec.sched)
        .map(|(&a, &s)| a.saturating_sub(s))
        .collect();
    late.sort_unstable();

    let per_flow = (flows > 1).then(|| {
        let mut counts = vec![0u64; flows as usize];
        for &f in &rec.flow {
            counts[f as usize] += 1;
        }
        let expected = rate / f64::from(flows) * span_s;
        let mut c = counts.clone();
        c.sort_unstable();
        let r = |p: f64| percentile(&c, p).unwrap_or(0) as f64 / expected;
        FlowSpread {
            expected_per_flow: expected,
            ratio_p1: r(1.0),
            ratio_p50: r(50.0),
            ratio_p99: r(99.0),
            ratio_min: r(0.0),
            ratio_max: r(100.0),
            dispersion: dispersion_index(&counts).unwrap_or(0.0),
        }
    });

    let polls_per_departure = polls as f64 / nf.max(1.0);
    PacingCell {
        rate_pps: rate,
        flows,
        tick_ns: 1u64 << b.tick_shift.min(40),
        seconds: span_s,
        departures: n as u64,
        achieved_pps: achieved,
        ratio,
        ratio_stderr: stderr,
        scheduled_pps: scheduled,
        rate_ok,
        ks_d,
        ks_n,
        ks_crit,
        ks_pass: ks_d < ks_crit,
        ks_d_all,
        ks_n_all: gaps.len(),
        ks_crit_all: ks_critical_001(gaps.len()),
        zero_gap_fraction,
        late_mean_ns: mean_u64(&late),
        late_p50_ns: percentile(&late, 50.0).unwrap_or(0),
        late_p99_ns: percentile(&late, 99.0).unwrap_or(0),
        late_max_ns: percentile(&late, 100.0).unwrap_or(0),
        polls_per_departure,
        truncated,
        max_poll_gap_ns: 0,
        stalls: 0,
        stalled_ns: 0,
        per_flow,
    }
}

/// The 1-minute load average (`/proc/loadavg`), if readable.
pub fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs every (flows, rate) cell, pinned to `core` if given.
pub fn run_pacing(
    b: &PacingBench,
    core: Option<usize>,
    mut progress: impl FnMut(&PacingCell),
) -> Result<PacingReport, PacingBenchError> {
    if let Some(c) = core
        && !mongate_dataplane::worker::pin_to_core(c)
    {
        return Err(PacingBenchError::Param(format!("cannot pin to core {c}")));
    }
    let load = load_avg_1m();
    let mut cells = Vec::new();
    for &flows in &b.flows {
        for &rate in &b.rates {
            let cell = run_cell(b, rate, flows)?;
            progress(&cell);
            cells.push(cell);
        }
    }
    Ok(PacingReport {
        core,
        load_avg_1m: load,
        seconds: b.seconds,
        cells,
    })
}

/// Human-readable table of a report.
pub fn table(r: &PacingReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pacing bench: core {:?}, load avg {:?}, {} s per cell",
        r.core, r.load_avg_1m, r.seconds
    );
    let _ = writeln!(
        s,
        "{:>9} {:>7} {:>6} {:>9} {:>8} {:>7} {:>8} {:>4} {:>8} {:>8} {:>4} {:>8} {:>6} {:>9} {:>9} {:>7} {:>9}",
        "rate",
        "flows",
        "tick",
        "depart",
        "ratio",
        "+-1se",
        "ach/sch",
        "ok",
        "KS D",
        "crit",
        "pass",
        "D(all)",
        "zero",
        "late mean",
        "late p99",
        "stalls",
        "stalled"
    );
    for c in &r.cells {
        let _ = writeln!(
            s,
            "{:>9.0} {:>7} {:>6} {:>9} {:>8.4} {:>7.4} {:>8.4} {:>4} {:>8.5} {:>8.5} {:>4} {:>8.5} {:>6.3} {:>7.0}ns {:>7}ns {:>7} {:>7.2}ms{}",
            c.rate_pps,
            c.flows,
            c.tick_ns,
            c.departures,
            c.ratio,
            c.ratio_stderr,
            c.achieved_pps / c.scheduled_pps,
            if c.rate_ok { "yes" } else { "NO" },
            c.ks_d,
            c.ks_crit,
            if c.ks_pass { "yes" } else { "NO" },
            c.ks_d_all,
            c.zero_gap_fraction,
            c.late_mean_ns,
            c.late_p99_ns,
            c.stalls,
            c.stalled_ns as f64 / 1e6,
            if c.truncated { "  (truncated)" } else { "" }
        );
    }
    let spread: Vec<&PacingCell> = r.cells.iter().filter(|c| c.per_flow.is_some()).collect();
    if !spread.is_empty() {
        let _ = writeln!(
            s,
            "\nper-flow rate / set rate (Poisson sd of a count of m is 1/sqrt(m)):"
        );
        let _ = writeln!(
            s,
            "{:>9} {:>7} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10}",
            "rate", "flows", "m/flow", "min", "p1", "p50", "p99", "max", "var/mean"
        );
        for c in spread {
            if let Some(p) = &c.per_flow {
                let _ = writeln!(
                    s,
                    "{:>9.0} {:>7} {:>10.1} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>10.3}",
                    c.rate_pps,
                    c.flows,
                    p.expected_per_flow,
                    p.ratio_min,
                    p.ratio_p1,
                    p.ratio_p50,
                    p.ratio_p99,
                    p.ratio_max,
                    p.dispersion
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        let b = PacingBench::default();
        assert!(run_cell(&b, 0.0, 1).is_err());
        assert!(run_cell(&b, f64::NAN, 1).is_err());
        assert!(run_cell(&b, 1000.0, 0).is_err());
        let long = PacingBench {
            seconds: 1e9,
            ..PacingBench::default()
        };
        assert!(run_cell(&long, 1000.0, 1).is_err());
        let huge = PacingBench {
            seconds: 600.0,
            ..PacingBench::default()
        };
        assert!(run_cell(&huge, 1e8, 1).is_err());
    }

    #[test]
    fn analyse_of_a_synthetic_record() {
        // 4 departures at 1 ms spacing, each 10 us late: ratio and lateness
        // are computed from the record, not the clock.
        let b = PacingBench::default();
        let rec = Record {
            at: vec![1_010_000, 2_010_000, 3_010_000, 4_010_000],
            sched: vec![1_000_000, 2_000_000, 3_000_000, 4_000_000],
            flow: vec![0, 1, 0, 1],
        };
        let c = analyse(&b, 1000.0, 2, &rec, 0, 4_000_000_000, 10, false);
        assert_eq!(c.departures, 4);
        assert!((c.achieved_pps - 1.0).abs() < 1e-9);
        assert_eq!((c.late_p50_ns, c.late_max_ns), (10_000, 10_000));
        assert!((c.late_mean_ns - 10_000.0).abs() < 1e-9);
        // Periodic gaps of the mean: far from exponential.
        assert!((c.ks_d - (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        let p = c.per_flow.unwrap();
        assert_eq!(p.dispersion, 0.0);
        assert!((c.polls_per_departure - 2.5).abs() < 1e-12);
    }
}
