//! Per-client request rates: a token bucket per client id, refilled at the
//! client's rate (requests per second, `scimd client create|update --rate`)
//! and holding at most one second's worth (at least one request). A client
//! without a rate is not limited. The rates are re-read from the store with
//! the protection mode, so a change reaches every replica within seconds;
//! each replica counts its own requests.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct RateLimits {
    rates: RwLock<HashMap<String, f64>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// The rates of the clients that have one.
    pub fn set_rates(&self, rates: HashMap<String, f64>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|client, _| rates.contains_key(client));
        *self.rates.write().unwrap_or_else(|e| e.into_inner()) = rates;
    }

    /// Takes one request from `client_id`'s bucket; when it is empty, how
    /// long until it holds one again.
    pub fn admit(&self, client_id: &str) -> Result<(), Duration> {
        let rate = match self
            .rates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
        {
            Some(rate) if *rate > 0.0 => *rate,
            _ => return Ok(()),
        };
        let burst = rate.max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(client_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let limits = RateLimits::default();
        limits.set_rates(HashMap::from([("slow".to_string(), 2.0)]));
        assert!(limits.admit("slow").is_ok());
        assert!(limits.admit("slow").is_ok());
        let wait = limits.admit("slow").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        for _ in 0..100 {
            assert!(limits.admit("free").is_ok());
        }
        std::thread::sleep(Duration::from_millis(550));
        assert!(limits.admit("slow").is_ok());
    }
}
