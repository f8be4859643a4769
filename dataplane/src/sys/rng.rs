//! The seeded pseudo-random generators of the dataplane and the control
//! process, in one place: [`Rng`] (xoshiro256++) for Poisson pacing gaps,
//! MONtra and link simulations; [`SplitMix64`], its seed expander, which the
//! control's path manager and path simulations draw from directly (probe
//! jitter and sequence numbers, failure traces: their seeded scenarios are
//! pinned to this stream). Both turn bits into numbers the same way. Pure
//! (no OS); here because every part of mongate uses them. [`os_seed`] is
//! the one exception: a seed from the kernel's random source, for the hash
//! keys that must not be guessed.
//!
//! Written here rather than pulled from `rand` so that simulations are
//! bit-for-bit reproducible from a seed, whatever the dependency versions.

/// 64 bits from the kernel's random source (`getrandom(2)`, the pool
/// behind `/dev/urandom`): the seeds that must not be guessed (the session
/// table's and the neighbour table's hash keys), chosen once at start. Not
/// for simulations, which take their seed from the caller.
pub fn os_seed() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most `b.len() - got` bytes into `b[got..]`, a
        // valid, writable buffer of that length.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        match usize::try_from(n) {
            Ok(n) => got += n,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(u64::from_le_bytes(b))
}

/// xoshiro256++ (Blackman & Vigna), seeded through splitmix64.
///
/// Not cryptographic. Period 2^256 - 1; passes BigCrush. One `next_u64` is a
/// handful of shifts, rotates and adds.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of splitmix64: used to expand a 64-bit seed into the 256-bit state.
#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 2^-53: scales a 53-bit integer into [0, 1).
const F53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// The high 32 of 64 random bits.
#[inline]
fn high_u32(bits: u64) -> u32 {
    // `>> 32` leaves exactly 32 bits.
    u32::try_from(bits >> 32).unwrap_or(0)
}

/// 64 random bits as a uniform in [0, 1), multiples of 2^-53.
#[inline]
fn unit_f64(bits: u64) -> f64 {
    // The top 53 bits fit a f64 mantissa exactly.
    let v = (bits >> 11) as f64;
    v * F53
}

/// 64 random bits as a uniform integer in `0..n` (Lemire's multiply-shift;
/// bias below 2^-32 for n < 2^32); 0 for `n == 0`.
#[inline]
fn below_n(bits: u64, n: u64) -> u64 {
    let m = u128::from(bits) * u128::from(n);
    // The high half of a u64 x u64 product always fits a u64.
    u64::try_from(m >> 64).unwrap_or(0)
}

/// The numbers both generators derive from their `next_u64` alike.
macro_rules! uniform_methods {
    () => {
        /// Next 32 random bits (the high half of [`Self::next_u64`]).
        #[inline]
        pub fn next_u32(&mut self) -> u32 {
            high_u32(self.next_u64())
        }

        /// Uniform in [0, 1), multiples of 2^-53.
        #[inline]
        pub fn next_f64(&mut self) -> f64 {
            unit_f64(self.next_u64())
        }

        /// Uniform integer in `0..n` (Lemire's multiply-shift; bias below
        /// 2^-32 for n < 2^32). Returns 0 for `n == 0`.
        #[inline]
        pub fn below(&mut self, n: u64) -> u64 {
            below_n(self.next_u64(), n)
        }

        /// True with probability `p` (below 0: never; 1 or above: always).
        #[inline]
        pub fn chance(&mut self, p: f64) -> bool {
            self.next_f64() < p
        }
    };
}

/// SplitMix64 (Steele, Lea, Flood 2014): the seed expander of [`Rng`], and
/// the generator of the control's path manager and path simulations.
/// Not cryptographic; equal seeds give equal streams.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    uniform_methods!();
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = splitmix64(&mut sm);
        }
        // splitmix64 is a bijection of its counter, so four consecutive
        // outputs are never all zero; keep the guard for clarity anyway.
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    /// A generator for stream `stream` of the same seed (e.g. one per flow),
    /// statistically independent of the other streams.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        Self::new(seed ^ splitmix64(&mut stream.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    uniform_methods!();

    /// Uniform in (0, 1]: never zero, so its logarithm is finite.
    #[inline]
    pub fn next_f64_open0(&mut self) -> f64 {
        let v = ((self.next_u64() >> 11) + 1) as f64;
        v * F53
    }

    /// A standard exponential variate (mean 1): `-ln(U)`, U uniform in (0, 1]
    /// (inversion: exact in distribution up to the 2^-53 grid of U). Largest
    /// possible value: 53 ln 2 ~= 36.7. Uses `f64::ln`, which measured faster
    /// than [`fast_ln`] here (see `docs/montra.md`).
    #[inline]
    pub fn exp1(&mut self) -> f64 {
        -self.next_f64_open0().ln()
    }

    /// An exponential gap in nanoseconds with mean `1e9 / rate_per_s`, rounded
    /// to the nearest nanosecond. A rate that is zero, negative or NaN gives
    /// `u64::MAX` ("never").
    #[inline]
    pub fn exp_gap_ns(&mut self, rate_per_s: f64) -> u64 {
        // NaN fails the comparison too.
        if rate_per_s.is_nan() || rate_per_s <= 0.0 {
            return u64::MAX;
        }
        let g = self.exp1() * (1e9 / rate_per_s) + 0.5;
        // Float-to-int `as` saturates (and g >= 0.5 > 0): no wrap, no UB; a gap
        // beyond u64::MAX ns (584 years) becomes "never".
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ns = g as u64;
        ns
    }
}

/// ln 2.
const LN2: f64 = core::f64::consts::LN_2;

/// Natural logarithm of a positive, normal `x` (anything the uniform
/// generators produce), absolute error below 1e-10.
///
/// `x = 2^e * m` with `m` in [sqrt(1/2), sqrt(2)); `ln m = 2 atanh(t)`,
/// `t = (m-1)/(m+1)`, `|t| <= 0.1716`, summed to the t^11 term
/// (truncation < 2e-11). Kept for targets with a slow libm; on the dev VM it
/// measured ~2x *slower* than `f64::ln` (`benches/pacing.rs`). Subnormals, zero, negatives, infinities and NaN give
/// a value that is not meaningful (but no panic); the caller passes (0, 1].
#[inline]
pub fn fast_ln(x: f64) -> f64 {
    let bits = x.to_bits();
    // Biased exponent: 11 bits, fits i32.
    let biased = i32::from(u16::try_from((bits >> 52) & 0x7ff).unwrap_or(0));
    let mut e = biased - 1023;
    // Mantissa with exponent 0: m in [1, 2).
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let p = 1.0
        + t2 * (1.0 / 3.0
            + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0 + t2 * (1.0 / 11.0)))));
    f64::from(e) * LN2 + 2.0 * t * p
}

/// Kolmogorov-Smirnov statistic of sorted samples `v` against Exp(mean).
#[cfg(test)]
pub(crate) fn ks_exp(v: &[f64], mean: f64) -> f64 {
    let n = v.len() as f64;
    let mut d: f64 = 0.0;
    for (i, &x) in v.iter().enumerate() {
        let f = 1.0 - (-x / mean).exp();
        let i = i as f64;
        d = d.max(f - i / n).max((i + 1.0) / n - f);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_seeds_differ() {
        let a = os_seed().unwrap();
        let b = os_seed().unwrap();
        assert_ne!(a, b, "two 64-bit draws of the kernel's pool");
    }

    #[test]
    fn splitmix64_is_the_reference_stream() {
        // First outputs for seed 0 (Steele, Lea, Flood; as in Vigna's
        // reference splitmix64.c).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u32(), b.next_u32());
            let f = a.next_f64();
            assert_eq!(f, b.next_f64());
            assert!((0.0..1.0).contains(&f));
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(a.below(0), 0);
        assert!(!a.chance(0.0) && a.chance(1.0));
    }

    #[test]
    fn deterministic_per_seed_and_streams_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let mut s1 = Rng::with_stream(7, 1);
        let mut s2 = Rng::with_stream(7, 2);
        assert_ne!(s1.next_u64(), s2.next_u64());
    }

    #[test]
    fn xoshiro_reference_vector() {
        // Reference: state {1, 2, 3, 4} gives 41943041, 58720359, 3588806011781223
        // (from the authors' C code).
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 41_943_041);
        assert_eq!(r.next_u64(), 58_720_359);
        assert_eq!(r.next_u64(), 3_588_806_011_781_223);
    }

    #[test]
    fn fast_ln_matches_std() {
        let mut r = Rng::new(1);
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            let x = r.next_f64_open0();
            worst = worst.max((fast_ln(x) - x.ln()).abs());
        }
        for x in [
            1.0,
            0.5,
            0.25,
            F53,
            0.707_106_781_186_547_5,
            0.999_999_999,
            1e-300,
        ] {
            worst = worst.max((fast_ln(x) - x.ln()).abs());
        }
        assert!(worst < 1e-10, "worst abs error {worst}");
    }

    #[test]
    fn uniforms_in_range_and_mean() {
        let mut r = Rng::new(3);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = r.next_f64_open0();
            assert!(u > 0.0 && u <= 1.0);
            let v = r.next_f64();
            assert!((0.0..1.0).contains(&v));
            sum += u;
        }
        let mean = sum / f64::from(n);
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn u32_and_chance() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(u64::from(a.next_u32()), b.next_u64() >> 32);
        let n = 100_000;
        let hits = (0..n).filter(|_| a.chance(0.25)).count();
        let share = hits as f64 / f64::from(n);
        assert!((share - 0.25).abs() < 0.01, "share {share}");
        assert!((0..1000).all(|_| !a.chance(0.0) && a.chance(1.0)));
        assert!((0..1000).all(|_| !a.chance(-1.0) && a.chance(2.0)));
    }

    #[test]
    fn exp_gap_edge_rates() {
        let mut r = Rng::new(9);
        assert_eq!(r.exp_gap_ns(0.0), u64::MAX);
        assert_eq!(r.exp_gap_ns(-5.0), u64::MAX);
        assert_eq!(r.exp_gap_ns(f64::NAN), u64::MAX);
        // Infinite rate: zero gap.
        assert_eq!(r.exp_gap_ns(f64::INFINITY), 0);
        // Tiny rate: saturates instead of wrapping.
        assert!(r.exp_gap_ns(1e-300) > 1_000_000_000);
    }

    /// Kolmogorov-Smirnov of the exponential variate itself (continuous).
    #[test]
    fn exp1_ks() {
        let mut r = Rng::new(2024);
        let n = 100_000usize;
        let mut v: Vec<f64> = (0..n).map(|_| r.exp1()).collect();
        v.sort_by(f64::total_cmp);
        let d = ks_exp(&v, 1.0);
        // Critical value at alpha = 0.01: 1.628 / sqrt(n).
        let crit = 1.628 / (n as f64).sqrt();
        assert!(d < crit, "D = {d}, critical {crit}");
    }
}
