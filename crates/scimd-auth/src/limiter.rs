//! Slows brute force on the token endpoint: after too many failed
//! authentications for one key (an address, or a client from an address)
//! within a window, every attempt for it (right or wrong) is refused until
//! the window ends. Successful requests are never counted, so a busy
//! legitimate client is not throttled. A panic while the table was locked
//! leaves its counts as they were: they are used as they are, so the limit
//! never lapses (it neither lets everyone through nor refuses everyone).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait when `key` is blocked.
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (start, failures) = windows.get(key)?;
        let elapsed = start.elapsed();
        (*failures >= self.max_failures && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    pub fn record_failure(&self, key: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 100_000 {
            let window = self.window;
            windows.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = windows
            .entry(key.to_string())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_only_that_key() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            l.record_failure("a");
        }
        assert_eq!(l.blocked("a"), None);
        l.record_failure("a");
        assert!(l.blocked("a").is_some_and(|s| s > 0 && s <= 60));
        assert_eq!(l.blocked("b"), None);
    }

    #[test]
    fn a_poisoned_table_still_limits() {
        let l = std::sync::Arc::new(FailureLimiter::new(1, Duration::from_secs(60)));
        l.record_failure("a");
        let poisoner = std::sync::Arc::clone(&l);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.windows.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(l.windows.is_poisoned());
        assert!(
            l.blocked("a").is_some(),
            "a poisoned lock let a blocked key through"
        );
        l.record_failure("b");
        assert!(l.blocked("b").is_some());
        assert_eq!(l.blocked("c"), None);
    }

    #[test]
    fn a_window_ends() {
        let l = FailureLimiter::new(1, Duration::from_millis(20));
        l.record_failure("a");
        assert!(l.blocked("a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(l.blocked("a"), None);
    }
}
