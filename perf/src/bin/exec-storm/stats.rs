//! The statistics: pooled samples, trimmed means with their standard error, medians, tails,
//! and each configuration's overhead against the run with no listener.

use crate::listener::Config;
use crate::workloads::Workload;
pub(crate) use santa_perf::stats::{TRIM, median, percentile, trimmed_mean, trimmed_se};

/// Every configuration's samples, by (its index in [`Config::ALL`], workload).
pub(crate) type Results = std::collections::BTreeMap<(usize, Workload), Sample>;

/// One workload under one configuration, pooled over the rounds.
#[derive(Default, Clone)]
pub(crate) struct Sample {
    /// Per-exec (watched − control) differences, ns (storm: latencies).
    pub(crate) values: Vec<i64>,
    /// The watched execs' latencies, ns.
    pub(crate) latencies: Vec<u64>,
    /// (round, trimmed mean of that round's values), for the per-round overheads.
    pub(crate) rounds: Vec<(usize, f64)>,
    /// The listener's CPU (ns) and the execs of each round, parallel to `rounds`.
    pub(crate) round_cpu: Vec<(u64, usize)>,
    pub(crate) listener_cpu_ns: u64,
    pub(crate) execs: usize,
    pub(crate) refused: usize,
}

pub(crate) fn config_index(c: Config) -> usize {
    Config::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// The per-exec overhead: the trimmed mean of (watched − control) minus the same with no
/// listener, ns.
pub(crate) fn overhead(results: &Results, config: Config, w: Workload) -> Option<f64> {
    let s = results.get(&(config_index(config), w))?;
    let base = results.get(&(config_index(Config::None), w))?;
    Some(trimmed_mean(&s.values) - trimmed_mean(&base.values))
}

/// Half the width of the overhead's 95 % confidence interval (1.96 standard errors of the
/// difference of two trimmed means), ns.
pub(crate) fn overhead_ci(results: &Results, config: Config, w: Workload) -> Option<f64> {
    let s = results.get(&(config_index(config), w))?;
    let base = results.get(&(config_index(Config::None), w))?;
    if config == Config::None {
        return Some(0.0);
    }
    let ci = 1.96 * (trimmed_se(&s.values).powi(2) + trimmed_se(&base.values).powi(2)).sqrt();
    ci.is_finite().then_some(ci)
}

/// The same with medians instead of trimmed means, ns.
pub(crate) fn overhead_median(results: &Results, config: Config, w: Workload) -> Option<f64> {
    let s = results.get(&(config_index(config), w))?;
    let base = results.get(&(config_index(Config::None), w))?;
    Some((median(&s.values) - median(&base.values)) as f64)
}

/// The overhead of each round (against that round's no-listener figure), ns.
pub(crate) fn round_overheads(results: &Results, config: Config, w: Workload) -> Vec<f64> {
    let (Some(s), Some(base)) = (
        results.get(&(config_index(config), w)),
        results.get(&(config_index(Config::None), w)),
    ) else {
        return Vec::new();
    };
    s.rounds
        .iter()
        .filter_map(|(r, m)| {
            base.rounds
                .iter()
                .find(|(br, _)| br == r)
                .map(|(_, bm)| m - bm)
        })
        .collect()
}

/// `config`'s overhead as a multiple of the minimal responder's, same workload, same run.
pub(crate) fn ratio_to_min(results: &Results, config: Config, w: Workload) -> Option<f64> {
    let m = overhead(results, Config::MinResponder, w)?;
    let c = overhead(results, config, w)?;
    (m > 0.0).then_some(c / m)
}

/// p50/p99/p99.9/max of `latencies`, ns.
pub(crate) fn tails(latencies: &[u64]) -> [f64; 4] {
    let mut sorted: Vec<i64> = latencies.iter().map(|&v| v as i64).collect();
    sorted.sort_unstable();
    [
        percentile(&sorted, 0.5) as f64,
        percentile(&sorted, 0.99) as f64,
        percentile(&sorted, 0.999) as f64,
        *sorted.last().unwrap_or(&0) as f64,
    ]
}

pub(crate) fn cpu_per_exec(s: &Sample) -> f64 {
    if s.execs > 0 {
        s.listener_cpu_ns as f64 / s.execs as f64
    } else {
        0.0
    }
}
