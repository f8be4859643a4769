//! Statistics of a paced departure stream: the Kolmogorov-Smirnov statistic
//! against an exponential distribution, its critical value, percentiles and
//! the dispersion index of per-flow counts.
//!
//! Pure: plain functions on slices, no clock, no I/O.

/// Coefficient of the asymptotic KS critical value at alpha = 0.01:
/// `D_crit = 1.628 / sqrt(n)` (one-sample, large n).
pub const KS_COEFF_ALPHA_001: f64 = 1.628;

/// CDF of the exponential distribution of mean `mean` at `x` (0 below 0).
#[inline]
pub fn exp_cdf(x: f64, mean: f64) -> f64 {
    if x <= 0.0 || mean <= 0.0 {
        return if mean <= 0.0 && x >= 0.0 { 1.0 } else { 0.0 };
    }
    -(-x / mean).exp_m1()
}

/// Kolmogorov-Smirnov statistic `D = sup |F_n(x) - F(x)|` of the samples
/// `sorted` (ascending; the caller sorts) against Exp(`mean`). `None` for no
/// samples. Ties are handled exactly: the empirical CDF jumps once per
/// distinct value (so integer-valued gaps are judged fairly).
pub fn ks_exp(sorted: &[f64], mean: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        // The run of samples equal to x: the ECDF goes from i/n to j/n at x.
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == x {
            j += 1;
        }
        let f = exp_cdf(x, mean);
        let (lo, hi) = (i as f64 / n, j as f64 / n);
        d = d.max(f - lo).max(hi - f);
        i = j;
    }
    Some(d)
}

/// Critical value of the KS statistic at alpha = 0.01 for `n` samples
/// (infinity for `n == 0`).
pub fn ks_critical_001(n: usize) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    let n = n as f64;
    KS_COEFF_ALPHA_001 / n.sqrt()
}

/// The `p`-th percentile (`p` in [0, 100]) of ascending `sorted` by the
/// nearest-rank rule; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = if p.is_nan() {
        100.0
    } else {
        p.clamp(0.0, 100.0)
    };
    let n = sorted.len() as f64;
    // Nearest rank: ceil(p/100 * n), at least 1; within 1..=len.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((p / 100.0 * n).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Mean of `v` (0 when empty).
pub fn mean_u64(v: &[u64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
}

/// Dispersion index `var / mean` of counts (1 for Poisson counts, 0 for
/// identical counts); `None` when empty or the mean is 0.
pub fn dispersion_index(counts: &[u64]) -> Option<f64> {
    let m = mean_u64(counts);
    if counts.is_empty() || m <= 0.0 {
        return None;
    }
    let var = counts
        .iter()
        .map(|&c| {
            let d = c as f64 - m;
            d * d
        })
        .sum::<f64>()
        / counts.len() as f64;
    Some(var / m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` exact quantiles of Exp(mean) at (i + 0.5) / n.
    fn exp_quantiles(n: usize, mean: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let u = (i as f64 + 0.5) / n as f64;
                -mean * (-u).ln_1p()
            })
            .collect()
    }

    #[test]
    fn cdf_values() {
        assert_eq!(exp_cdf(-1.0, 2.0), 0.0);
        assert_eq!(exp_cdf(0.0, 2.0), 0.0);
        assert!((exp_cdf(2.0, 2.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-15);
        assert!(exp_cdf(1e9, 1.0) <= 1.0);
        // Degenerate mean: a point mass at 0.
        assert_eq!(exp_cdf(1.0, 0.0), 1.0);
    }

    #[test]
    fn ks_of_exact_quantiles_is_half_a_step() {
        let n = 10_000;
        let v = exp_quantiles(n, 1000.0);
        let d = ks_exp(&v, 1000.0).unwrap();
        // Midpoint quantiles: D = 0.5 / n exactly (up to rounding).
        assert!((d - 0.5 / 10_000.0).abs() < 1e-9, "D = {d}");
        assert!(d < ks_critical_001(n));
    }

    #[test]
    fn ks_detects_wrong_distributions() {
        let n = 10_000;
        let crit = ks_critical_001(n);
        // Uniform gaps on [0, 2 mean): same mean, wrong shape.
        let uni: Vec<f64> = (0..n)
            .map(|i| {
                let u = (i as f64 + 0.5) / n as f64;
                2000.0 * u
            })
            .collect();
        let d = ks_exp(&uni, 1000.0).unwrap();
        assert!(d > 0.1 && d > 5.0 * crit, "uniform D = {d}");
        // Periodic gaps: one value, D = max(F(mean), 1 - F(mean)) = 1 - e^-1.
        let per = vec![1000.0; n];
        let d = ks_exp(&per, 1000.0).unwrap();
        assert!(
            (d - (1.0 - (-1.0f64).exp())).abs() < 1e-12,
            "periodic D = {d}"
        );
        // Exponential with the wrong mean (2 %) is caught at this n.
        let v = exp_quantiles(n, 1020.0);
        let d = ks_exp(&v, 1000.0).unwrap();
        assert!(d > crit * 0.3 && d < 0.02, "scaled D = {d}");
        assert_eq!(ks_exp(&[], 1.0), None);
    }

    #[test]
    fn critical_value() {
        assert!((ks_critical_001(10_000) - 0.01628).abs() < 1e-12);
        assert!(ks_critical_001(0).is_infinite());
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, f64::NAN), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.9), Some(7));
    }

    #[test]
    fn dispersion_of_counts() {
        assert_eq!(dispersion_index(&[5, 5, 5, 5]), Some(0.0));
        // Counts 0 and 2: mean 1, variance 1.
        assert_eq!(dispersion_index(&[0, 2, 0, 2]), Some(1.0));
        assert_eq!(dispersion_index(&[]), None);
        assert_eq!(dispersion_index(&[0, 0]), None);
        assert!((mean_u64(&[1, 2, 3]) - 2.0).abs() < 1e-15);
    }
}
