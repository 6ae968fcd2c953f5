//! Latency percentiles by the nearest-rank method.

use serde::Serialize;
use std::time::Duration;

/// Returns the `p`-th percentile (0 < `p` <= 100) of `sorted`, which must be
/// in ascending order, by the nearest-rank method: the value at rank
/// `ceil(p / 100 * n)`, counting from 1. Returns `None` for an empty slice
/// or a `p` outside that range.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    // The small subtraction keeps float error from pushing an exact rank
    // such as 99.9 % of 1000 = 999 up to the next value.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

/// End-to-end latency figures in milliseconds. The figures are `None` when
/// no sample was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) samples: usize,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p90_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p99_9_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
}

impl LatencySummary {
    /// Sorts `samples` and computes the percentiles.
    pub(crate) fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let millis = |p: f64| percentile(&samples, p).map(to_millis);
        Self {
            samples: samples.len(),
            p50_ms: millis(50.0),
            p90_ms: millis(90.0),
            p99_ms: millis(99.0),
            p99_9_ms: millis(99.9),
            max_ms: samples.last().copied().map(to_millis),
        }
    }
}

fn to_millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&ms| Duration::from_millis(ms)).collect()
    }

    #[test]
    fn percentile_of_one_to_ten() {
        let sorted = millis(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&sorted, 90.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&sorted, 91.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&sorted, 99.9), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&sorted, 0.1), Some(Duration::from_millis(1)));
    }

    #[test]
    fn percentile_of_thousand_values() {
        let values: Vec<u64> = (1..=1000).collect();
        let sorted = millis(&values);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(500)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(990)));
        assert_eq!(percentile(&sorted, 99.9), Some(Duration::from_millis(999)));
    }

    #[test]
    fn percentile_rejects_empty_and_out_of_range() {
        let sorted = millis(&[3]);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&sorted, 0.0), None);
        assert_eq!(percentile(&sorted, 100.5), None);
        assert_eq!(percentile(&sorted, f64::NAN), None);
        assert_eq!(percentile(&sorted, 1.0), Some(Duration::from_millis(3)));
    }

    #[test]
    fn summary_sorts_samples() {
        let summary = LatencySummary::from_samples(millis(&[40, 10, 30, 20]));
        assert_eq!(summary.samples, 4);
        assert_eq!(summary.p50_ms, Some(20.0));
        assert_eq!(summary.p90_ms, Some(40.0));
        assert_eq!(summary.max_ms, Some(40.0));
    }

    #[test]
    fn summary_of_no_samples() {
        let summary = LatencySummary::from_samples(Vec::new());
        assert_eq!(summary.samples, 0);
        assert_eq!(summary.p50_ms, None);
        assert_eq!(summary.max_ms, None);
    }
}
