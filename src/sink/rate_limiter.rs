//! Rate limiter stage: the token buckets every bulk attempt passes before it is sent.
//!
//! - Documents: `RATE_LIMIT_DOCS_PER_SEC` with a bucket of `RATE_LIMIT_BURST` (governor). A bulk
//!   request takes one token per document before each attempt, retries and dead-letter writes
//!   included, so the cluster never sees more than the rate plus one burst however the work is
//!   split. governor refuses a request larger than its burst, so big batches take their tokens in
//!   burst-sized chunks: they wait longer, they are never rejected and never sent early.
//! - Bytes (optional): `RATE_LIMIT_BYTES_PER_SEC` bounds the bulk body bytes the same way.
//! - Adaptive (AIMD, `RATE_LIMIT_ADAPTIVE`): when the cluster says it is overloaded (HTTP 429 or
//!   `es_rejected_execution_exception` items) the effective document rate drops to 70%, at most
//!   once per second; every second without such a signal it climbs back by 2% of the configured
//!   rate, up to that ceiling. Tasks that together exceed what the cluster absorbs thus converge to what
//!   it takes. The bucket itself keeps the configured rate; a lower effective rate makes each
//!   document cost proportionally more tokens, so changing the rate needs no new bucket.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Governor};

use crate::config::RateConfig;
use crate::events;

/// Share of the ceiling regained per second without an overload signal: from 70% back to the
/// ceiling in 15 s. Slow enough that a task probing a cluster's limit hits it rarely.
const INCREASE_PER_SEC: f64 = 0.02;
/// Factor applied to the effective rate on an overload signal.
const DECREASE_FACTOR: f64 = 0.7;
/// Overload signals closer together than this count as one (one overload, many failed requests).
const DECREASE_HOLD: Duration = Duration::from_secs(1);

struct Bucket {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Option<Bucket> {
        let rate = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Bucket {
            limiter: Governor::direct(Quota::per_second(rate).allow_burst(burst)),
            burst,
        })
    }

    async fn take(&self, n: u64) {
        let mut left = n;
        while left > 0 {
            let chunk = left.min(self.burst.get() as u64) as u32;
            if let Some(chunk) = NonZeroU32::new(chunk) {
                // Cannot fail: a chunk never exceeds the burst.
                let _ = self.limiter.until_n_ready(chunk).await;
            }
            left -= chunk as u64;
        }
    }
}

/// Additive-increase / multiplicative-decrease state of the effective document rate.
#[derive(Debug, Clone)]
pub struct Aimd {
    ceiling: f64,
    floor: f64,
    effective: f64,
    last_update: Instant,
    last_decrease: Option<Instant>,
    /// Fractional tokens owed from earlier requests (cost per document is rarely whole).
    carry: f64,
}

impl Aimd {
    pub fn new(ceiling: u32, floor: u32, now: Instant) -> Aimd {
        let ceiling = ceiling.max(1) as f64;
        Aimd {
            ceiling,
            floor: (floor.max(1) as f64).min(ceiling),
            effective: ceiling,
            last_update: now,
            last_decrease: None,
            carry: 0.0,
        }
    }

    pub fn effective(&self) -> f64 {
        self.effective
    }

    /// Regain `INCREASE_PER_SEC` of the ceiling per second since the last update.
    pub fn climb(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.last_update)
            .as_secs_f64();
        self.last_update = now;
        self.effective =
            (self.effective + self.ceiling * INCREASE_PER_SEC * secs).min(self.ceiling);
    }

    /// An overload signal; returns the new rate if it changed.
    pub fn overloaded(&mut self, now: Instant) -> Option<f64> {
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_HOLD)
        {
            return None;
        }
        self.climb(now);
        self.last_decrease = Some(now);
        let before = self.effective;
        self.effective = (self.effective * DECREASE_FACTOR).max(self.floor);
        (self.effective < before).then_some(self.effective)
    }

    /// Tokens of the ceiling-rate bucket that `docs` documents cost at the effective rate.
    pub fn tokens_for(&mut self, docs: u64, now: Instant) -> u64 {
        self.climb(now);
        let cost = docs as f64 * self.ceiling / self.effective + self.carry;
        let whole = cost.floor();
        self.carry = cost - whole;
        whole as u64
    }
}

pub struct RateLimiter {
    docs: Option<Bucket>,
    bytes: Option<Bucket>,
    adaptive: Option<Mutex<Aimd>>,
    configured: Option<u32>,
}

impl RateLimiter {
    /// The limiter `cfg` describes (`RATE_LIMIT_*`).
    pub fn new(cfg: &RateConfig) -> RateLimiter {
        let docs = cfg.docs_per_sec.and_then(|r| Bucket::new(r, cfg.burst));
        let adaptive = match (cfg.docs_per_sec, cfg.adaptive_floor, &docs) {
            (Some(rate), Some(floor), Some(_)) => {
                Some(Mutex::new(Aimd::new(rate, floor, Instant::now())))
            }
            _ => None,
        };
        RateLimiter {
            docs,
            bytes: cfg.bytes_per_sec.and_then(|r| Bucket::new(r, r)),
            adaptive,
            configured: cfg.docs_per_sec,
        }
    }

    fn aimd(&self) -> Option<std::sync::MutexGuard<'_, Aimd>> {
        self.adaptive
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until `docs` documents of `bytes` bytes may be sent; returns how long that took.
    pub async fn acquire(&self, docs: usize, bytes: usize) -> Duration {
        if self.docs.is_none() && self.bytes.is_none() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        if let Some(bucket) = &self.docs {
            let tokens = match self.aimd() {
                Some(mut a) => a.tokens_for(docs as u64, started),
                None => docs as u64,
            };
            bucket.take(tokens).await;
        }
        if let Some(bucket) = &self.bytes {
            bucket.take(bytes as u64).await;
        }
        started.elapsed()
    }

    /// The cluster said it is overloaded: lower the effective rate (adaptive mode only).
    pub fn overloaded(&self) {
        if let Some(mut a) = self.aimd() {
            if let Some(rate) = a.overloaded(Instant::now()) {
                events::rate_lowered(rate, self.configured.unwrap_or(0));
            }
        }
    }

    /// Documents per second currently allowed (`None` = unlimited).
    pub fn effective_rate(&self) -> Option<f64> {
        match self.aimd() {
            Some(mut a) => {
                a.climb(Instant::now());
                Some(a.effective())
            }
            None => self.configured.map(f64::from),
        }
    }

    pub fn configured_rate(&self) -> Option<u32> {
        self.configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_larger_than_burst_are_split_not_refused() {
        let l = RateLimiter::new(&RateConfig::docs_per_sec(1000).with_burst(10));
        let waited = l.acquire(60, 0).await;
        // 10 at once, then 50 more at 1000/s.
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
    }

    #[tokio::test]
    async fn bytes_are_limited_too() {
        let l = RateLimiter::new(&RateConfig::unlimited().with_bytes_per_sec(10_000));
        let waited = l.acquire(1, 15_000).await;
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = RateLimiter::new(&RateConfig::unlimited().adaptive(1));
        assert_eq!(l.acquire(1_000_000, 1 << 30).await, Duration::ZERO);
        assert_eq!(l.effective_rate(), None);
    }

    #[test]
    fn aimd_halves_once_per_hold_and_climbs_back() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1000, 10, t0);
        let close = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() < 1e-6);
        assert!(close(a.overloaded(t0), 700.0));
        assert_eq!(
            a.overloaded(t0 + Duration::from_millis(100)),
            None,
            "one overload, many failures"
        );
        let t1 = t0 + Duration::from_secs(2);
        // +2 s of climbing (20/s), then 70%: (700 + 40) * 0.7
        assert!(close(a.overloaded(t1), 518.0));
        a.climb(t1 + Duration::from_secs(4));
        assert!(close(Some(a.effective()), 598.0));
        a.climb(t1 + Duration::from_secs(100));
        assert_eq!(a.effective(), 1000.0, "capped at the ceiling");
        for k in 0..50 {
            a.overloaded(t1 + Duration::from_secs(200 + 2 * k));
        }
        assert!(a.effective() >= 10.0, "never below the floor");
    }

    #[test]
    fn lower_rate_costs_more_tokens_with_carry() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1000, 1, t0);
        assert_eq!(a.tokens_for(10, t0), 10);
        a.overloaded(t0);
        a.effective = 300.0; // cost 3.33 tokens per document
        let total: u64 = (0..3).map(|_| a.tokens_for(1, t0)).sum();
        assert_eq!(total, 10);
    }
}
