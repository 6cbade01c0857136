//! Per-principal request rates: a token bucket each, refilled continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub fn new(per_second: f64, burst: Option<f64>) -> Result<Rate, String> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!("rate must be a positive number, not {per_second}"));
        }
        let burst = burst.unwrap_or(per_second.max(1.0));
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(format!("burst must be at least 1, not {burst}"));
        }
        Ok(Rate { per_second, burst })
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Principals past their rate.
#[derive(Default)]
pub struct Quotas {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Principals kept before idle full buckets are forgotten (they would refill anyway).
const KEEP: usize = 10_000;

impl Quotas {
    /// Takes one request from `principal`'s bucket; `Err(wait)` when it is empty, with the time
    /// until the next token.
    pub fn take(&self, principal: &str, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > KEEP {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_second < rate.burst
            });
        }
        let bucket = buckets.entry(principal.to_string()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate.per_second;
        bucket.tokens = (bucket.tokens + refill).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_the_rate() {
        let q = Quotas::default();
        let rate = Rate::new(10.0, Some(3.0)).unwrap();
        for _ in 0..3 {
            assert!(q.take("a", rate).is_ok());
        }
        let wait = q.take("a", rate).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(q.take("b", rate).is_ok(), "buckets are per principal");
        std::thread::sleep(Duration::from_millis(120));
        assert!(q.take("a", rate).is_ok());
        assert!(Rate::new(0.0, None).is_err() && Rate::new(1.0, Some(0.5)).is_err());
    }
}
