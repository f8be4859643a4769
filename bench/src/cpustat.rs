//! CPU time of one core from `/proc/stat`, turned into CPU ns per packet.
//!
//! A throughput limit moves with everything else on a shared 2-core
//! machine; the CPU a core spends per packet at a fixed offered load far
//! below every limit is steadier, and it counts the work wherever it runs
//! on that core: the worker's user time, the kernel's system time (syscalls,
//! the threaded NAPI poller), hard and soft interrupts (RPS, veth delivery).
//!
//! Busy = user + nice + system + irq + softirq. `guest` and `guest_nice`
//! are left out: the kernel already counts them inside `user` and `nice`.
//! `iowait` and `steal` are not work of this core's packets either. The
//! counters are in USER_HZ ticks (`sysconf(_SC_CLK_TCK)`, 100 on Linux), and
//! the kernel samples them at its own tick: a figure from a few seconds is
//! good to about one tick in a few hundred.

/// The DUT's idle policy in the CPU trials (`forward` and `gateway`): the
/// worker sleeps (50 us) as soon as a loop finds nothing, so the figure counts
/// its work and its wake-ups. With the gateway's own 200 spins the worker
/// spins through the 20 us gaps of 0.05 Mpps and never sleeps: the core read
/// ~95 % busy whatever the work (docs/benchmarks.md).
pub const TRIAL_IDLE: mongate_dataplane::worker::IdlePolicy =
    mongate_dataplane::worker::IdlePolicy {
        spin: 0,
        sleep_us: 50,
    };

/// One core's line of `/proc/stat`, in USER_HZ ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuTimes {
    /// Normal processes in user mode (includes guest).
    pub user: u64,
    /// Niced processes in user mode (includes guest_nice).
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Idle waiting for I/O.
    pub iowait: u64,
    /// Hard interrupts.
    pub irq: u64,
    /// Soft interrupts.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    /// Ticks spent working: user + nice + system + irq + softirq.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }

    /// All ticks that passed (busy + idle + iowait + steal).
    pub fn total(&self) -> u64 {
        self.busy() + self.idle + self.iowait + self.steal
    }

    /// `after - self`, field by field; an error if any counter went back
    /// (not the same core, or not two readings of one boot).
    pub fn delta_to(&self, after: &CpuTimes) -> Result<CpuTimes, String> {
        let d = |name: &str, a: u64, b: u64| {
            b.checked_sub(a)
                .ok_or_else(|| format!("/proc/stat: {name} went back from {a} to {b}"))
        };
        Ok(CpuTimes {
            user: d("user", self.user, after.user)?,
            nice: d("nice", self.nice, after.nice)?,
            system: d("system", self.system, after.system)?,
            idle: d("idle", self.idle, after.idle)?,
            iowait: d("iowait", self.iowait, after.iowait)?,
            irq: d("irq", self.irq, after.irq)?,
            softirq: d("softirq", self.softirq, after.softirq)?,
            steal: d("steal", self.steal, after.steal)?,
        })
    }
}

/// The line `cpuN ...` of `/proc/stat` text. Needs at least the first seven
/// counters (user .. softirq, Linux >= 2.6); steal is 0 when absent.
pub fn parse_core(stat: &str, core: usize) -> Result<CpuTimes, String> {
    let label = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .ok_or_else(|| format!("/proc/stat: no line for {label}"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|w| {
            w.parse::<u64>()
                .map_err(|_| format!("/proc/stat: {label}: {w:?} is not a counter"))
        })
        .collect::<Result<_, _>>()?;
    if fields.len() < 7 {
        return Err(format!(
            "/proc/stat: {label}: {} counters, need at least 7",
            fields.len()
        ));
    }
    Ok(CpuTimes {
        user: fields[0],
        nice: fields[1],
        system: fields[2],
        idle: fields[3],
        iowait: fields[4],
        irq: fields[5],
        softirq: fields[6],
        steal: fields.get(7).copied().unwrap_or(0),
    })
}

/// Reads `core`'s counters from `/proc/stat`.
pub fn read_core(core: usize) -> Result<CpuTimes, String> {
    let text =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("read /proc/stat: {e}"))?;
    parse_core(&text, core)
}

/// USER_HZ: ticks per second of `/proc/stat`.
#[allow(unsafe_code)]
pub fn user_hz() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

/// Runs `f` between two readings of `core`'s counters: `f`'s result and
/// the counters' change (or why there is none; `f` runs regardless).
pub fn around<R>(core: usize, f: impl FnOnce() -> R) -> (R, Result<CpuTimes, String>) {
    let before = read_core(core);
    let r = f();
    let after = read_core(core);
    (r, before.and_then(|b| b.delta_to(&after?)))
}

/// What one core spent on a number of packets.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CpuCost {
    /// Busy CPU ns per packet (user + nice + system + irq + softirq).
    pub cpu_ns_per_packet: f64,
    /// Of it, user time (the worker's own loop, a userspace program).
    pub user_ns_per_packet: f64,
    /// Of it, system + irq + softirq (syscalls, NAPI, RPS, veth).
    pub kernel_ns_per_packet: f64,
    /// Share of the interval the core was idle (idle + iowait over all).
    pub idle_share: f64,
    /// Busy ticks counted.
    pub busy_ticks: u64,
    /// All ticks of the interval.
    pub total_ticks: u64,
    /// Packets the figure divides by.
    pub packets: u64,
    /// The core's busy share with no traffic, measured just before (other
    /// jobs on the core, the DUT's idle loop), if measured.
    pub background_busy_share: Option<f64>,
    /// `cpu_ns_per_packet` less that background for the same time (never
    /// below 0). Meaningful only while the core had idle time left: a job
    /// that takes every idle cycle is no background one can subtract.
    pub net_ns_per_packet: Option<f64>,
}

impl CpuCost {
    /// With the core's busy share `share` (0..=1) with no traffic.
    pub fn with_background(mut self, share: f64, hz: u64) -> Self {
        if share.is_finite() && hz > 0 && self.packets > 0 {
            let share = share.clamp(0.0, 1.0);
            let net = (self.busy_ticks as f64 - share * self.total_ticks as f64).max(0.0);
            self.background_busy_share = Some(share);
            self.net_ns_per_packet = Some(net * 1e9 / hz as f64 / self.packets as f64);
        }
        self
    }
}

/// A CPU trial's figure: its counters' change `delta` (`None`: not read)
/// over `packets`, less the core's `background` busy share if measured;
/// or why there is none.
pub fn trial_cost(
    delta: Option<Result<CpuTimes, String>>,
    packets: u64,
    background: Option<f64>,
) -> (Option<CpuCost>, Option<String>) {
    let hz = user_hz();
    let cost = delta
        .unwrap_or_else(|| Err("no /proc/stat reading".into()))
        .and_then(|d| cost(&d, hz, packets))
        .map(|c| match background {
            Some(bg) => c.with_background(bg, hz),
            None => c,
        });
    match cost {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    }
}

/// The busy share of `core` over `d` (busy / all ticks); an error if no
/// tick passed.
pub fn busy_share(d: &CpuTimes) -> Result<f64, String> {
    match d.total() {
        0 => Err("/proc/stat: no tick passed between the readings".into()),
        t => Ok(d.busy() as f64 / t as f64),
    }
}

/// `core`'s busy share over `secs` seconds of nothing else done here.
pub fn background(core: usize, secs: f64) -> Result<f64, String> {
    let (_, d) = around(core, || {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 60.0)))
    });
    busy_share(&d?)
}

/// The cost of `packets` from the counters' change `d` at `hz` ticks per
/// second; an error for no packets or no time.
pub fn cost(d: &CpuTimes, hz: u64, packets: u64) -> Result<CpuCost, String> {
    if packets == 0 {
        return Err("no packet counted: no CPU per packet".into());
    }
    if hz == 0 || d.total() == 0 {
        return Err("/proc/stat: no tick passed between the readings".into());
    }
    let ns = |ticks: u64| ticks as f64 * 1e9 / hz as f64 / packets as f64;
    Ok(CpuCost {
        cpu_ns_per_packet: ns(d.busy()),
        user_ns_per_packet: ns(d.user + d.nice),
        kernel_ns_per_packet: ns(d.system + d.irq + d.softirq),
        idle_share: (d.idle + d.iowait) as f64 / d.total() as f64,
        busy_ticks: d.busy(),
        total_ticks: d.total(),
        packets,
        background_busy_share: None,
        net_ns_per_packet: None,
    })
}

/// One line: busy ns per packet, its parts, idle, background.
pub fn summary(c: &CpuCost, loss: f64) -> String {
    format!(
        "{:.0} ns/packet (user {:.0}, kernel {:.0}), idle {:.1}%, {} packets, loss {:.3}%{}",
        c.cpu_ns_per_packet,
        c.user_ns_per_packet,
        c.kernel_ns_per_packet,
        c.idle_share * 100.0,
        c.packets,
        loss * 100.0,
        match (c.background_busy_share, c.net_ns_per_packet) {
            (Some(bg), Some(n)) => format!(
                "; background {:.1}% busy, net {:.0} ns/packet",
                bg * 100.0,
                n
            ),
            _ => String::new(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  5000 10 3000 90000 50 20 400 0 0 0
cpu0 3000 5 2000 40000 30 10 100 0 0 0
cpu1 2000 5 1000 50000 20 10 300 7 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
";

    #[test]
    fn parses_the_core_line_not_the_total() {
        let c = parse_core(STAT, 1).expect("cpu1");
        assert_eq!(
            c,
            CpuTimes {
                user: 2000,
                nice: 5,
                system: 1000,
                idle: 50000,
                iowait: 20,
                irq: 10,
                softirq: 300,
                steal: 7,
            }
        );
        assert_eq!(c.busy(), 2000 + 5 + 1000 + 10 + 300);
        assert_eq!(parse_core(STAT, 0).expect("cpu0").user, 3000);
        // "cpu1" must not match "cpu10".
        let ten = "cpu10 1 1 1 1 1 1 1\ncpu1 9 0 0 0 0 0 0\n";
        assert_eq!(parse_core(ten, 1).expect("cpu1").user, 9);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(
            parse_core(STAT, 2)
                .unwrap_err()
                .contains("no line for cpu2")
        );
        assert!(
            parse_core("cpu1 1 2 3\n", 1)
                .unwrap_err()
                .contains("need at least 7")
        );
        assert!(
            parse_core("cpu1 1 2 x 4 5 6 7\n", 1)
                .unwrap_err()
                .contains("not a counter")
        );
        assert!(parse_core("cpu1 1 2 -3 4 5 6 7\n", 1).is_err());
        assert!(parse_core("", 0).is_err());
        // Old kernels: 7 counters, no steal.
        assert_eq!(parse_core("cpu0 1 2 3 4 5 6 7\n", 0).expect("7").steal, 0);
    }

    #[test]
    fn a_trial_without_a_reading_says_why() {
        let (c, e) = trial_cost(None, 100, Some(0.1));
        assert!(c.is_none() && e.is_some_and(|e| e.contains("/proc/stat")));
        let (c, e) = trial_cost(Some(Err("boom".into())), 100, None);
        assert!(c.is_none() && e.as_deref() == Some("boom"));
        let d = CpuTimes {
            user: 50,
            system: 50,
            idle: 100,
            ..CpuTimes::default()
        };
        let (c, e) = trial_cost(Some(Ok(d)), 1000, Some(0.0));
        let c = c.expect("a figure");
        assert!(e.is_none());
        assert_eq!((c.busy_ticks, c.total_ticks, c.packets), (100, 200, 1000));
        assert_eq!(c.background_busy_share, Some(0.0));
    }

    #[test]
    fn delta_and_cost() {
        let a = parse_core(STAT, 1).expect("before");
        let b = parse_core(
            "cpu1 2100 5 1050 50300 20 10 350 7 0 0\n", // +100 user, +50 sys, +300 idle, +50 softirq
            1,
        )
        .expect("after");
        let d = a.delta_to(&b).expect("delta");
        assert_eq!((d.busy(), d.total()), (200, 500));
        // 200 ticks at 100 Hz = 2 s over 1e6 packets = 2000 ns each.
        let c = cost(&d, 100, 1_000_000).expect("cost");
        assert!((c.cpu_ns_per_packet - 2000.0).abs() < 1e-9);
        assert!((c.user_ns_per_packet - 1000.0).abs() < 1e-9);
        assert!((c.kernel_ns_per_packet - 1000.0).abs() < 1e-9);
        assert!((c.idle_share - 0.6).abs() < 1e-12);
        assert!(b.delta_to(&a).unwrap_err().contains("went back"));
        // A background of 20 % busy: 100 of the 500 ticks are not ours.
        let n = c.with_background(0.2, 100);
        assert_eq!(n.background_busy_share, Some(0.2));
        assert!((n.net_ns_per_packet.expect("net") - 1000.0).abs() < 1e-9);
        // More background than busy: 0, not negative.
        assert_eq!(c.with_background(0.9, 100).net_ns_per_packet, Some(0.0));
        assert!((busy_share(&d).expect("share") - 0.4).abs() < 1e-12);
        assert!(busy_share(&CpuTimes::default()).is_err());
        assert!(cost(&d, 100, 0).is_err());
        assert!(cost(&CpuTimes::default(), 100, 10).is_err());
    }
}
