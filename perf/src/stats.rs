//! Robust summaries of exec timings (ns), shared by the exec-storm and backstop-cost harnesses:
//! quantiles, and the trimmed mean of per-exec differences with its standard error.

/// The `q` quantile (0.0–1.0) of `sorted` (ascending), nearest rank; 0 for no samples.
pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median of `v` (in any order).
pub fn median(v: &[i64]) -> i64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    percentile(&s, 0.5)
}

/// The fraction trimmed from each end for the overhead estimate (PERF-NOTES: a trimmed mean of
/// per-exec differences). A quarter from each end (the interquartile mean): on a shared 2-core
/// machine a preempted exec lands in a fifth or more of the pairs, and a 10 % trim let those
/// swing the figure by ±100 µs between runs.
pub const TRIM: f64 = 0.25;

/// The standard error of [`trimmed_mean`] (Tukey–McLaughlin: the winsorized standard
/// deviation over (1 − 2·TRIM)·√n), ns. Execs within a run are not independent (drift), so this
/// understates the uncertainty; the per-round overheads show the rest.
pub fn trimmed_se(v: &[i64]) -> f64 {
    let n = v.len();
    if n < 4 {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let cut = (n as f64 * TRIM).floor() as usize;
    let (lo, hi) = (s[cut], s[n - 1 - cut]);
    let w: Vec<f64> = s.iter().map(|&x| x.clamp(lo, hi) as f64).collect();
    let mean = w.iter().sum::<f64>() / n as f64;
    let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    var.sqrt() / ((1.0 - 2.0 * TRIM) * (n as f64).sqrt())
}

/// The mean of `v` without its lowest and highest `TRIM` fractions.
pub fn trimmed_mean(v: &[i64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let cut = (s.len() as f64 * TRIM).floor() as usize;
    let kept = &s[cut..s.len() - cut];
    kept.iter().map(|&x| x as f64).sum::<f64>() / kept.len() as f64
}
