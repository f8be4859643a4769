//! `mongate-bench linkem`: command-line arguments, run until a deadline or
//! SIGINT/SIGTERM, print the counters.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::worker::IdlePolicy;

use super::bridge::{BridgeConfig, DirReport, LinkReport, spawn};
use super::model::{DirectionConfig, JitterDist, Loss};
use super::{mbps_to_bps, ms_to_ns};

/// Arguments of `mongate-bench linkem`. Per-direction options (`--ab-*`,
/// `--ba-*`) override the shared ones for frames from `a` to `b` / `b` to `a`.
#[derive(Clone, Debug, clap::Args)]
pub struct LinkemArgs {
    /// First interface (in the current network namespace).
    #[arg(long)]
    pub a: String,
    /// Second interface.
    #[arg(long)]
    pub b: String,
    /// Rate in Mbit/s, Ethernet header included (0 = unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub rate_mbps: f64,
    /// One-way delay in ms.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Jitter in ms: standard deviation of the one-way delay.
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Jitter distribution: uniform or normal.
    #[arg(long, default_value = "uniform")]
    pub jitter_dist: JitterDist,
    /// Let jitter reorder frames (default: FIFO).
    #[arg(long)]
    pub reorder: bool,
    /// Random loss: a probability (0.01) or a percentage (1%).
    #[arg(long, default_value = "0")]
    pub loss: String,
    /// Gilbert-Elliott burst loss instead of --loss:
    /// P_GB,P_BG[,LOSS_BAD[,LOSS_GOOD]] (defaults 1 and 0).
    #[arg(long)]
    pub ge: Option<String>,
    /// Frames that may wait for the rate limiter (drop-tail beyond).
    #[arg(long, default_value_t = 1000)]
    pub queue_pkts: u32,
    /// Token bucket depth in bytes (at least one frame is always allowed).
    #[arg(long, default_value_t = super::model::DEFAULT_BURST_BYTES)]
    pub burst_bytes: u32,
    /// Bytes added per frame for the rate (24 = Ethernet preamble + FCS + gap).
    #[arg(long, default_value_t = 0)]
    pub overhead_bytes: u32,
    /// a->b rate override (Mbit/s).
    #[arg(long)]
    pub ab_rate_mbps: Option<f64>,
    /// b->a rate override (Mbit/s).
    #[arg(long)]
    pub ba_rate_mbps: Option<f64>,
    /// a->b delay override (ms).
    #[arg(long)]
    pub ab_delay_ms: Option<f64>,
    /// b->a delay override (ms).
    #[arg(long)]
    pub ba_delay_ms: Option<f64>,
    /// a->b jitter override (ms).
    #[arg(long)]
    pub ab_jitter_ms: Option<f64>,
    /// b->a jitter override (ms).
    #[arg(long)]
    pub ba_jitter_ms: Option<f64>,
    /// a->b loss override.
    #[arg(long)]
    pub ab_loss: Option<String>,
    /// b->a loss override.
    #[arg(long)]
    pub ba_loss: Option<String>,
    /// Seed of the random draws (a->b uses SEED, b->a SEED+1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Core to pin the bridge to.
    #[arg(long)]
    pub core: Option<usize>,
    /// How long to run: seconds, or `forever` (until SIGINT/SIGTERM).
    #[arg(long, default_value = "forever")]
    pub seconds: String,
    /// Frames of 2 KiB in the UMEM (bounds frames in flight: ~5/16 per direction).
    #[arg(long, default_value_t = 16384)]
    pub frames: u32,
    /// XDP attach mode: native, generic or auto.
    #[arg(long, default_value = "auto")]
    pub xdp_mode: XdpMode,
    /// Busy-poll (one full core, lowest timing error) instead of sleeping 10 us when idle.
    #[arg(long)]
    pub busy: bool,
    /// Run the bridge thread SCHED_FIFO: on-time releases on a loaded machine.
    #[arg(long)]
    pub realtime: bool,
    /// Print the counters as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `0.01` or `1%` into a probability.
pub fn parse_prob(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a probability (0.01) or a percentage (1%)"))?;
    let p = v * scale;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{s:?} is outside [0, 1] (or 0%..100%)"))
    }
}

/// Parses `P_GB,P_BG[,LOSS_BAD[,LOSS_GOOD]]`.
pub fn parse_ge(s: &str) -> Result<Loss, String> {
    let parts: Vec<&str> = s.split(',').collect();
    if !(2..=4).contains(&parts.len()) {
        return Err(format!(
            "--ge {s:?}: expected P_GB,P_BG[,LOSS_BAD[,LOSS_GOOD]]"
        ));
    }
    let get = |i: usize, default: f64| match parts.get(i) {
        Some(p) => parse_prob(p),
        None => Ok(default),
    };
    Ok(Loss::GilbertElliott {
        p_gb: get(0, 0.0)?,
        p_bg: get(1, 0.0)?,
        loss_bad: get(2, 1.0)?,
        loss_good: get(3, 0.0)?,
    })
}

fn ms(what: &str, v: f64) -> anyhow::Result<u64> {
    ms_to_ns(v).ok_or_else(|| anyhow::anyhow!("--{what} {v}: must be in 0..=60000 ms"))
}

impl LinkemArgs {
    /// The bridge configuration these arguments describe.
    pub fn to_config(&self) -> anyhow::Result<BridgeConfig> {
        let base_loss = match &self.ge {
            Some(g) => {
                if parse_prob(&self.loss).map_err(anyhow::Error::msg)? > 0.0 {
                    anyhow::bail!("--loss and --ge are exclusive");
                }
                parse_ge(g).map_err(anyhow::Error::msg)?
            }
            None => match parse_prob(&self.loss).map_err(anyhow::Error::msg)? {
                0.0 => Loss::None,
                p => Loss::Bernoulli { p },
            },
        };
        let dir = |rate: Option<f64>,
                   delay: Option<f64>,
                   jitter: Option<f64>,
                   loss: &Option<String>|
         -> anyhow::Result<DirectionConfig> {
            let rate = rate.unwrap_or(self.rate_mbps);
            Ok(DirectionConfig {
                rate_bps: mbps_to_bps(rate).ok_or_else(|| {
                    anyhow::anyhow!("rate {rate} Mbit/s: must be in 0..=10000000")
                })?,
                burst_bytes: self.burst_bytes,
                overhead_bytes: self.overhead_bytes,
                delay_ns: ms("delay-ms", delay.unwrap_or(self.delay_ms))?,
                jitter_ns: ms("jitter-ms", jitter.unwrap_or(self.jitter_ms))?,
                jitter_dist: self.jitter_dist,
                reorder: self.reorder,
                loss: match loss {
                    Some(l) => match parse_prob(l).map_err(anyhow::Error::msg)? {
                        0.0 => Loss::None,
                        p => Loss::Bernoulli { p },
                    },
                    None => base_loss,
                },
                queue_pkts: self.queue_pkts,
            })
        };
        let mut c = BridgeConfig::new(
            &self.a,
            &self.b,
            dir(
                self.ab_rate_mbps,
                self.ab_delay_ms,
                self.ab_jitter_ms,
                &self.ab_loss,
            )?,
        );
        c.ba = dir(
            self.ba_rate_mbps,
            self.ba_delay_ms,
            self.ba_jitter_ms,
            &self.ba_loss,
        )?;
        c.seed = self.seed;
        c.core = self.core;
        c.frames = self.frames;
        c.xdp_mode = self.xdp_mode;
        c.realtime = self.realtime;
        if self.busy {
            c.idle = IdlePolicy {
                spin: u32::MAX,
                sleep_us: 0,
            };
        }
        c.validate()?;
        Ok(c)
    }

    fn duration(&self) -> anyhow::Result<Option<Duration>> {
        if self.seconds == "forever" {
            return Ok(None);
        }
        let s: f64 = self
            .seconds
            .parse()
            .map_err(|_| anyhow::anyhow!("--seconds {:?}: a number or `forever`", self.seconds))?;
        if !(s > 0.0 && s <= 1e7) {
            anyhow::bail!("--seconds {s}: must be in (0, 1e7] or `forever`");
        }
        Ok(Some(Duration::from_secs_f64(s)))
    }
}

/// Runs the emulator as the arguments say and prints its counters.
pub fn run(args: &LinkemArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let limit = args.duration()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("linkem attaches XDP programs and AF_XDP sockets: run as root");
    }
    let stop = mongate_dataplane::app::signals::stop_on_signals();
    let h = spawn(cfg)?;
    eprintln!(
        "linkem: bridging {} <-> {} (Ctrl-C to stop)",
        args.a, args.b
    );
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && h.is_running() && limit.is_none_or(|l| t0.elapsed() < l)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = h.stop()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(())
}

/// A human-readable summary of a run.
pub fn summary(r: &LinkReport) -> String {
    let mut s = format!(
        "linkem {} <-> {}: {:.1} s, ports {}\n",
        r.a,
        r.b,
        r.seconds,
        r.ports.join(", ")
    );
    for (name, d) in [
        (format!("{}->{}", r.a, r.b), &r.ab),
        (format!("{}->{}", r.b, r.a), &r.ba),
    ] {
        s.push_str(&dir_line(&name, d));
    }
    if r.tx_full > 0 {
        s.push_str(&format!("  tx ring full: {} frames dropped\n", r.tx_full));
    }
    s
}

fn dir_line(name: &str, d: &DirReport) -> String {
    let m = &d.model;
    let b = &d.bridge;
    let mean_late_us = if b.released > 0 {
        b.sum_late_ns as f64 / b.released as f64 / 1e3
    } else {
        0.0
    };
    let max_late_us = b.max_late_ns as f64 / 1e3;
    format!(
        "  {name}: in {} ({} B), lost {}, queue full {}, hold full {}, blocked {}, out {}, kernel rx drops {}, held at exit {}, release lateness mean {mean_late_us:.1} us max {max_late_us:.1} us\n",
        m.arrived,
        m.arrived_bytes,
        m.lost,
        m.queue_full,
        b.hold_full,
        b.blocked,
        d.tx_packets,
        d.kernel_rx_dropped,
        d.left_held,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: LinkemArgs,
    }

    fn parse(argv: &[&str]) -> anyhow::Result<BridgeConfig> {
        let mut v = vec!["t"];
        v.extend_from_slice(argv);
        T::try_parse_from(v)?.a.to_config()
    }

    #[test]
    fn probabilities() {
        assert_eq!(parse_prob("0.01"), Ok(0.01));
        assert_eq!(parse_prob("1%"), Ok(0.01));
        assert_eq!(parse_prob(" 100 % "), Ok(1.0));
        assert!(parse_prob("2").is_err());
        assert!(parse_prob("-1%").is_err());
        assert!(parse_prob("x").is_err());
        assert!(parse_prob("NaN").is_err());
        assert!(parse_ge("0.1").is_err());
        assert!(parse_ge("0.1,0.2,0.3,0.4,0.5").is_err());
        assert_eq!(
            parse_ge("0.01,0.25"),
            Ok(Loss::GilbertElliott {
                p_gb: 0.01,
                p_bg: 0.25,
                loss_bad: 1.0,
                loss_good: 0.0
            })
        );
    }

    #[test]
    fn shared_and_per_direction_options() {
        let c = parse(&[
            "--a",
            "x",
            "--b",
            "y",
            "--rate-mbps",
            "10",
            "--delay-ms",
            "5",
            "--jitter-ms",
            "1",
            "--loss",
            "1%",
            "--ba-delay-ms",
            "20",
            "--ab-loss",
            "0",
        ])
        .unwrap();
        assert_eq!(c.ab.rate_bps, 10_000_000);
        assert_eq!(c.ab.delay_ns, 5_000_000);
        assert_eq!(c.ba.delay_ns, 20_000_000);
        assert_eq!(c.ab.jitter_ns, 1_000_000);
        assert_eq!(c.ab.loss, Loss::None);
        assert_eq!(c.ba.loss, Loss::Bernoulli { p: 0.01 });
    }

    #[test]
    fn bad_arguments_are_errors() {
        for bad in [
            &["--a", "x", "--b", "x"][..],
            &["--a", "x", "--b", "y", "--delay-ms", "-1"],
            &["--a", "x", "--b", "y", "--rate-mbps", "nan"],
            &["--a", "x", "--b", "y", "--loss", "1.5"],
            &["--a", "x", "--b", "y", "--loss", "1%", "--ge", "0.1,0.2"],
            &["--a", "x", "--b", "y", "--queue-pkts", "0"],
            &["--a", "x", "--b", "y", "--frames", "5"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let a = T::try_parse_from(["t", "--a", "x", "--b", "y", "--seconds", "0"]).unwrap();
        assert!(a.a.duration().is_err());
        let a = T::try_parse_from(["t", "--a", "x", "--b", "y", "--seconds", "2.5"]).unwrap();
        assert_eq!(a.a.duration().unwrap(), Some(Duration::from_millis(2500)));
    }
}
