//! The link model of one direction: pure, time passed in, seeded.
//!
//! A frame arriving at `now` goes through, in order:
//!
//! 1. **loss** — Bernoulli, or a Gilbert-Elliott two-state chain (bursts);
//!    a lost frame consumes nothing downstream;
//! 2. **queue** — drop-tail: refused when `queue_pkts` earlier frames are
//!    still waiting for the shaper;
//! 3. **rate** — a token bucket of `rate_bps` bits/s (frame length incl. the
//!    Ethernet header, plus `overhead_bytes`) and depth `burst_bytes`, in
//!    exact integer arithmetic (no drift, no float);
//! 4. **delay + jitter** — the frame leaves `delay_ns + jitter` after the
//!    shaper released it; jitter is uniform or normal with standard
//!    deviation `jitter_ns`, never below zero total delay;
//! 5. **order** — FIFO unless `reorder`: departure is
//!    `max(previous departure, shaper release + delay + jitter)`.
//!
//! [`LinkModel::on_arrival`] returns the verdict: drop (with its cause) or
//! hold until an absolute departure time. The caller (the AF_XDP bridge, or
//! a test) keeps the frame until then.

use mongate_dataplane::sys::Rng;

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;
/// Longest delay or jitter accepted (a minute): keeps all sums far from overflow.
pub const MAX_DELAY_NS: u64 = 60_000_000_000;
/// Largest queue accepted (its ring of release times is allocated up front).
pub const MAX_QUEUE_PKTS: u32 = 1 << 20;
/// Default bucket depth: one full Ethernet frame (1500-byte MTU + 14).
pub const DEFAULT_BURST_BYTES: u32 = 1514;

/// Distribution of the jitter added to the delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterDist {
    /// Uniform on `[-sqrt(3) j, +sqrt(3) j]` (standard deviation `j`).
    #[default]
    Uniform,
    /// Normal with standard deviation `j` (Box-Muller; |z| <= 8.6 by construction).
    Normal,
}

impl std::str::FromStr for JitterDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "normal" => Ok(Self::Normal),
            _ => Err(format!(
                "unknown jitter distribution {s:?}: use uniform or normal"
            )),
        }
    }
}

/// Random loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Loss {
    /// No random loss.
    #[default]
    None,
    /// Each frame lost independently with probability `p`.
    Bernoulli {
        /// Loss probability in [0, 1].
        p: f64,
    },
    /// Gilbert-Elliott: a good and a bad state, each with its own loss
    /// probability. Per frame the state moves first (good -> bad with
    /// `p_gb`, bad -> good with `p_bg`), then the frame is lost with the
    /// new state's probability. Mean loss =
    /// `(p_bg * loss_good + p_gb * loss_bad) / (p_gb + p_bg)`; mean burst
    /// length in the bad state = `1 / p_bg` frames.
    GilbertElliott {
        /// Good -> bad transition probability per frame.
        p_gb: f64,
        /// Bad -> good transition probability per frame.
        p_bg: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// The long-run loss ratio this process produces.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli { p } => p,
            Loss::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => {
                if p_gb + p_bg == 0.0 {
                    loss_good // never leaves the (initial) good state
                } else {
                    (p_bg * loss_good + p_gb * loss_bad) / (p_gb + p_bg)
                }
            }
        }
    }
}

/// Configuration of one direction of a link.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DirectionConfig {
    /// Rate in bits/s counted over the Ethernet frame (header included, no
    /// FCS) plus `overhead_bytes`; 0 = unlimited.
    pub rate_bps: u64,
    /// Token bucket depth in bytes (frames larger than it pass when the
    /// bucket is full, i.e. the effective depth is at least one frame).
    pub burst_bytes: u32,
    /// Bytes added to each frame for the rate (e.g. 24 = preamble, SFD,
    /// FCS, inter-frame gap of real Ethernet); default 0.
    pub overhead_bytes: u32,
    /// One-way delay.
    pub delay_ns: u64,
    /// Jitter: standard deviation of the delay (0 = none).
    pub jitter_ns: u64,
    /// Jitter distribution.
    pub jitter_dist: JitterDist,
    /// Let jitter reorder frames (default false: FIFO).
    pub reorder: bool,
    /// Random loss.
    pub loss: Loss,
    /// Frames that may wait for the shaper (drop-tail beyond).
    pub queue_pkts: u32,
}

impl Default for DirectionConfig {
    /// A perfect link: unlimited rate, no delay, no loss, 1000-frame queue.
    fn default() -> Self {
        Self {
            rate_bps: 0,
            burst_bytes: DEFAULT_BURST_BYTES,
            overhead_bytes: 0,
            delay_ns: 0,
            jitter_ns: 0,
            jitter_dist: JitterDist::Uniform,
            reorder: false,
            loss: Loss::None,
            queue_pkts: 1000,
        }
    }
}

/// A configuration the model refuses, with what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A probability outside [0, 1] or not a number.
    #[error("{what} = {value} is not a probability in [0, 1]")]
    Probability {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// Delay or jitter over a minute.
    #[error("{what} = {ns} ns exceeds the 60 s limit")]
    TooLong {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        ns: u64,
    },
    /// Queue of zero frames or beyond [`MAX_QUEUE_PKTS`].
    #[error("queue of {0} frames: must be in 1..={MAX_QUEUE_PKTS}")]
    Queue(u32),
}

impl DirectionConfig {
    /// Checks every field; the model only accepts a valid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prob = |what: &'static str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Probability { what, value })
            }
        };
        match self.loss {
            Loss::None => {}
            Loss::Bernoulli { p } => prob("loss", p)?,
            Loss::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => {
                prob("p_gb", p_gb)?;
                prob("p_bg", p_bg)?;
                prob("loss_good", loss_good)?;
                prob("loss_bad", loss_bad)?;
            }
        }
        for (what, ns) in [("delay", self.delay_ns), ("jitter", self.jitter_ns)] {
            if ns > MAX_DELAY_NS {
                return Err(ConfigError::TooLong { what, ns });
            }
        }
        if self.queue_pkts == 0 || self.queue_pkts > MAX_QUEUE_PKTS {
            return Err(ConfigError::Queue(self.queue_pkts));
        }
        Ok(())
    }
}

/// Why the model dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// Random loss.
    Loss,
    /// The shaper's queue was full (drop-tail).
    QueueFull,
}

/// The model's decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it.
    Drop(DropCause),
    /// Keep it and send it at this absolute time (ns, same clock as `now`);
    /// may equal `now`.
    Hold(u64),
}

/// Counters of one direction's model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelStats {
    /// Frames offered.
    pub arrived: u64,
    /// Bytes offered.
    pub arrived_bytes: u64,
    /// Frames lost at random.
    pub lost: u64,
    /// Frames refused by the full queue.
    pub queue_full: u64,
    /// Frames accepted (held until their departure).
    pub held: u64,
    /// Bytes accepted.
    pub held_bytes: u64,
    /// Largest queue occupancy seen (frames waiting for the shaper).
    pub max_queue: u32,
}

/// A loss probability as a threshold on a uniform `u64` draw: lost iff
/// `draw < threshold`; `1 << 64` means always, 0 never. Exact for p = 0 and 1.
fn threshold(p: f64) -> u128 {
    if p.is_nan() || p <= 0.0 {
        0
    } else if p >= 1.0 {
        1u128 << 64
    } else {
        // 0 < p < 1: the product is in (0, 2^64) and the cast saturates anyway.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let t = (p * 18_446_744_073_709_551_616.0) as u64;
        u128::from(t)
    }
}

/// Loss process with precomputed integer thresholds.
#[derive(Clone, Debug)]
enum LossState {
    None,
    Bernoulli(u128),
    Ge {
        to_bad: u128,
        to_good: u128,
        loss_good: u128,
        loss_bad: u128,
        bad: bool,
    },
}

/// One direction of an emulated link. See the module documentation.
#[derive(Clone, Debug)]
pub struct LinkModel {
    cfg: DirectionConfig,
    rng: Rng,
    loss: LossState,
    /// Theoretical arrival time of the token bucket, scaled: ns * rate.
    tat_s: u128,
    /// Shaper release times of the frames still waiting (non-decreasing):
    /// a ring of capacity `queue_pkts`.
    queue: Box<[u64]>,
    q_head: usize,
    q_len: usize,
    /// Last departure handed out (FIFO floor).
    last_depart: u64,
    /// Latest `now` seen (time never runs backwards inside the model).
    last_now: u64,
    /// Uniform jitter half-width (sqrt(3) * jitter).
    uniform_half: u64,
    stats: ModelStats,
}

impl LinkModel {
    /// A model for `cfg` (validated), its randomness fully determined by `seed`.
    pub fn new(cfg: DirectionConfig, seed: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let loss = match cfg.loss {
            Loss::None => LossState::None,
            Loss::Bernoulli { p } => LossState::Bernoulli(threshold(p)),
            Loss::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => LossState::Ge {
                to_bad: threshold(p_gb),
                to_good: threshold(p_bg),
                loss_good: threshold(loss_good),
                loss_bad: threshold(loss_bad),
                bad: false,
            },
        };
        // jitter <= 60 s, so sqrt(3) * jitter < 2^37: exact enough, no overflow.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let uniform_half = (cfg.jitter_ns as f64 * 3f64.sqrt()).round() as u64;
        let queue = vec![0u64; cfg.queue_pkts as usize].into_boxed_slice();
        Ok(Self {
            cfg,
            rng: Rng::new(seed),
            loss,
            tat_s: 0,
            queue,
            q_head: 0,
            q_len: 0,
            last_depart: 0,
            last_now: 0,
            uniform_half,
            stats: ModelStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DirectionConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// Frames currently waiting for the shaper, as of the last arrival.
    pub fn queue_len(&self) -> usize {
        self.q_len
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now` (ns).
    /// Never panics; `now` earlier than a previous call is treated as that
    /// previous time.
    pub fn on_arrival(&mut self, now: u64, len: u32) -> Verdict {
        let now = now.max(self.last_now);
        self.last_now = now;
        self.stats.arrived += 1;
        self.stats.arrived_bytes += u64::from(len);

        if self.lose() {
            self.stats.lost += 1;
            return Verdict::Drop(DropCause::Loss);
        }

        // Frames whose shaper release is past have left the queue.
        while self.q_len > 0 && self.queue[self.q_head] <= now {
            self.q_head = (self.q_head + 1) % self.queue.len();
            self.q_len -= 1;
        }
        if self.q_len >= self.queue.len() {
            self.stats.queue_full += 1;
            return Verdict::Drop(DropCause::QueueFull);
        }

        let release = self.shape(now, len);
        if release > now {
            let tail = (self.q_head + self.q_len) % self.queue.len();
            self.queue[tail] = release;
            self.q_len += 1;
            let q = u32::try_from(self.q_len).unwrap_or(u32::MAX);
            self.stats.max_queue = self.stats.max_queue.max(q);
        }

        let target = release
            .saturating_add(self.cfg.delay_ns)
            .saturating_add_signed(self.jitter())
            .max(release);
        let depart = if self.cfg.reorder {
            target
        } else {
            target.max(self.last_depart)
        };
        self.last_depart = self.last_depart.max(depart);
        self.stats.held += 1;
        self.stats.held_bytes += u64::from(len);
        Verdict::Hold(depart)
    }

    /// Draws the loss decision for one frame.
    fn lose(&mut self) -> bool {
        match &mut self.loss {
            LossState::None => false,
            LossState::Bernoulli(t) => u128::from(self.rng.next_u64()) < *t,
            LossState::Ge {
                to_bad,
                to_good,
                loss_good,
                loss_bad,
                bad,
            } => {
                let flip = if *bad { *to_good } else { *to_bad };
                if u128::from(self.rng.next_u64()) < flip {
                    *bad = !*bad;
                }
                let t = if *bad { *loss_bad } else { *loss_good };
                u128::from(self.rng.next_u64()) < t
            }
        }
    }

    /// Token bucket: the time the frame has its tokens, and spends them.
    ///
    /// In units scaled by the rate (`x_s = x_ns * rate`), a frame of `bits`
    /// costs `bits * 1e9`; with depth `B` bits the bucket holds enough for it
    /// at `t` iff `t_s >= tat_s - (B - bits) * 1e9`. Then
    /// `tat_s = max(tat_s, t_s) + bits * 1e9`. All in `u128`: exact.
    fn shape(&mut self, now: u64, len: u32) -> u64 {
        let rate = u128::from(self.cfg.rate_bps);
        if rate == 0 {
            return now;
        }
        let bits = (u128::from(len) + u128::from(self.cfg.overhead_bytes)) * 8;
        let depth = (u128::from(self.cfg.burst_bytes) * 8).max(bits);
        let now_s = u128::from(now) * rate;
        let slack = (depth - bits) * NS;
        let release_s = now_s.max(self.tat_s.saturating_sub(slack));
        self.tat_s = self.tat_s.max(now_s).saturating_add(bits * NS);
        // Round up: never release before the tokens are there.
        let release = release_s.div_ceil(rate);
        u64::try_from(release).unwrap_or(u64::MAX)
    }

    /// One jitter draw in ns (0 when jitter is off).
    fn jitter(&mut self) -> i64 {
        if self.cfg.jitter_ns == 0 {
            return 0;
        }
        match self.cfg.jitter_dist {
            JitterDist::Uniform => {
                let h = self.uniform_half;
                // h < 2^37: 2h + 1 and both casts are exact.
                let v = self.rng.below(2 * h + 1);
                i64::try_from(v).unwrap_or(0) - i64::try_from(h).unwrap_or(0)
            }
            JitterDist::Normal => {
                let u1 = self.rng.next_f64_open0();
                let u2 = self.rng.next_f64();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                // |z| <= sqrt(2 * 53 ln 2) < 8.6 and jitter <= 6e10: |v| < 6e11.
                #[allow(clippy::cast_possible_truncation)]
                let v = (z * self.cfg.jitter_ns as f64).round() as i64;
                v
            }
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
