//! Rate limiter stage: the token bucket every document passes before it is sent.
//!
//! A bulk request takes one token per document before each attempt, retries included, so the
//! cluster never sees more than `RATE_LIMIT_DOCS_PER_SEC` (plus one `RATE_LIMIT_BURST`) however
//! the work is split. governor refuses a request larger than the burst, so big batches take their
//! tokens in burst-sized chunks: they wait longer, they are never rejected and never sent early.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Governor};

pub struct RateLimiter {
    /// `None` when the rate is unlimited (`RATE_LIMIT_DOCS_PER_SEC=0`).
    docs: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl RateLimiter {
    pub fn new(docs_per_sec: Option<u32>, burst: u32) -> RateLimiter {
        let docs = docs_per_sec.and_then(NonZeroU32::new).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            (
                Governor::direct(Quota::per_second(rate).allow_burst(burst)),
                burst,
            )
        });
        RateLimiter { docs }
    }

    /// Waits until `n` documents may be sent; returns how long that took.
    pub async fn acquire(&self, n: usize) -> Duration {
        let started = Instant::now();
        let Some((limiter, burst)) = &self.docs else {
            return Duration::ZERO;
        };
        let mut left = u32::try_from(n).unwrap_or(u32::MAX);
        while left > 0 {
            let take = left.min(burst.get());
            if let Some(take) = NonZeroU32::new(take) {
                // Cannot fail: `take` never exceeds the burst.
                let _ = limiter.until_n_ready(take).await;
            }
            left -= take;
        }
        started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_larger_than_burst_are_split_not_refused() {
        let l = RateLimiter::new(Some(1000), 10);
        let waited = l.acquire(60).await;
        // 10 at once, then 50 more at 1000/s.
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = RateLimiter::new(None, 1);
        assert_eq!(l.acquire(1_000_000).await, Duration::ZERO);
    }
}
