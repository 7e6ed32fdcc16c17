//! Latency percentiles, the unit of every latency figure the bench reports
//! (end to end, and per stage).

use serde::Serialize;

/// Latency percentiles, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

impl Latency {
    /// Percentiles of `nanos` (nearest rank; sorts in place).
    pub fn of(nanos: &mut [u64]) -> Latency {
        nanos.sort_unstable();
        let rank = |q: f64| -> f64 {
            if nanos.is_empty() {
                return 0.0;
            }
            let i = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len()) - 1;
            nanos[i] as f64 / 1e6
        };
        Latency {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            p999_ms: rank(0.999),
            max_ms: rank(1.0),
            samples: nanos.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut nanos: Vec<u64> = (1..=1000).rev().map(|i| i * 1_000_000).collect();
        let l = Latency::of(&mut nanos);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(l.samples, 1000);
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
