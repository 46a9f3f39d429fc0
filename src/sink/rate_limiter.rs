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
//!   once per second; without such a signal it climbs back, quickly to 90% of the rate at which
//!   the cluster last refused, slowly across that rate, then faster again (see `Aimd`), never
//!   above the configured rate. The climb is measured in the cluster's observed capacity, not the
//!   configured rate, so the worker settles just below what the cluster takes however far above
//!   it the configured rate is. The bucket itself keeps the configured rate; a lower effective
//!   rate makes each document cost proportionally more tokens, so changing the rate needs no new
//!   bucket.
//! - Fleet share (`FLEET_DOCS_PER_SEC`, see `sink::fleet`): the configured rate is the budget of
//!   the whole fleet and [`RateLimiter::set_share`] sets this task's factor of it. The factor
//!   multiplies the effective rate the same way (each document costs `1 / factor` more tokens),
//!   so the ceiling is the share, the burst in documents shrinks with it (the fleet's bursts add
//!   up to one burst), and the adaptive rate composes: share × AIMD factor. A factor of 0 (a
//!   joining task) holds every request until a share is set.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Governor};
use tokio::sync::watch;

use crate::config::RateConfig;
use crate::events;

/// Climb speeds, as shares per second. Below `RECOVER_UNTIL` of the rate at the last overload the
/// rate climbs fast (`RECOVER_PER_SEC` of that rate: from 70% back to 90% in 2 s); from there to
/// the rate of the last overload it probes slowly (`PROBE_PER_SEC`: 90% to 100% in 12.5 s),
/// because that is where the cluster said no; past it, the cluster may have grown, so it climbs by
/// `GROW_PER_SEC` of the current rate (doubling in about 35 s) up to the ceiling. Speeds are shares
/// of the *observed* capacity, never of the configured ceiling: a ceiling five times the cluster's
/// capacity must not make the worker probe five times as hard.
const RECOVER_UNTIL: f64 = 0.9;
const RECOVER_PER_SEC: f64 = 0.10;
const PROBE_PER_SEC: f64 = 0.008;
const GROW_PER_SEC: f64 = 0.02;
/// An overload below the remembered overload rate (but not while recovering) lowers that rate by
/// at most this factor: overload signals that do not depend on the rate (another client filling
/// the write queue, a node restarting) must not ratchet the worker down to its floor.
const OVERLOAD_MEMORY: f64 = 0.95;
/// Factor applied to the effective rate on an overload signal.
const DECREASE_FACTOR: f64 = 0.7;
/// Factor for an overload while still recovering from the last one (below `RECOVER_UNTIL` of
/// it): the last decrease was not enough, the cluster takes far less than we thought. A worker
/// configured at 50 times the capacity gets there in seven decreases instead of eleven.
const DEEP_DECREASE_FACTOR: f64 = 0.5;
/// Overload signals closer together than this count as one (one overload, many failed requests).
const DECREASE_HOLD: Duration = Duration::from_secs(1);
/// Longest step of the piecewise climb (the speed changes at the thresholds).
const CLIMB_STEP: f64 = 0.25;

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

/// Additive-increase / multiplicative-decrease state of the effective document rate, with the
/// increase shaped around the rate of the last overload (as TCP CUBIC does around its last
/// window): quick back to near it, slow across it, faster again once well past it.
#[derive(Debug, Clone)]
pub struct Aimd {
    ceiling: f64,
    floor: f64,
    effective: f64,
    /// Effective rate when the cluster last said it was overloaded (`None`: never).
    overloaded_at: Option<f64>,
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
            overloaded_at: None,
            last_update: now,
            last_decrease: None,
            carry: 0.0,
        }
    }

    pub fn effective(&self) -> f64 {
        self.effective
    }

    /// Documents per second gained per second at rate `e`.
    fn speed(&self, e: f64) -> f64 {
        match self.overloaded_at {
            Some(w) if e < RECOVER_UNTIL * w => RECOVER_PER_SEC * w,
            Some(w) if e < w => PROBE_PER_SEC * w,
            _ => GROW_PER_SEC * e.max(self.floor),
        }
    }

    /// Climb for the time since the last update (see the speeds above), up to the ceiling.
    pub fn climb(&mut self, now: Instant) {
        let mut secs = now
            .saturating_duration_since(self.last_update)
            .as_secs_f64();
        self.last_update = now;
        while secs > 0.0 && self.effective < self.ceiling {
            let step = secs.min(CLIMB_STEP);
            self.effective = (self.effective + self.speed(self.effective) * step).min(self.ceiling);
            secs -= step;
        }
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
        let (factor, remembered) = match self.overloaded_at {
            Some(w) if before < RECOVER_UNTIL * w => (DEEP_DECREASE_FACTOR, before),
            Some(w) if before < w => (DECREASE_FACTOR, before.max(OVERLOAD_MEMORY * w)),
            _ => (DECREASE_FACTOR, before),
        };
        self.overloaded_at = Some(remembered);
        self.effective = (before * factor).max(self.floor);
        (self.effective < before).then_some(self.effective)
    }

    /// Tokens of the ceiling-rate bucket that `docs` documents cost at the effective rate.
    #[cfg(test)]
    pub fn tokens_for(&mut self, docs: u64, now: Instant) -> u64 {
        self.tokens_for_share(docs, now, 1.0)
    }

    /// As [`Aimd::tokens_for`], at `share` (0–1] of the effective rate (the fleet's factor).
    pub fn tokens_for_share(&mut self, docs: u64, now: Instant, share: f64) -> u64 {
        self.climb(now);
        scaled_tokens(docs, self.ceiling / self.effective / share, &mut self.carry)
    }
}

/// `docs × cost` tokens, whole, with the fraction carried to the next request.
fn scaled_tokens(docs: u64, cost: f64, carry: &mut f64) -> u64 {
    let cost = docs as f64 * cost + *carry;
    let whole = cost.floor();
    *carry = cost - whole;
    whole as u64
}

pub struct RateLimiter {
    docs: Option<Bucket>,
    bytes: Option<Bucket>,
    adaptive: Option<Mutex<Aimd>>,
    configured: Option<u32>,
    /// Fleet share factor (0–1]; 1 without a fleet. 0 holds requests.
    share: watch::Sender<f64>,
    /// Fractional tokens owed when the share is below 1 without adaptive mode.
    carry: Mutex<f64>,
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
            share: watch::Sender::new(1.0),
            carry: Mutex::new(0.0),
        }
    }

    /// This task's factor of the configured rate (the fleet budget): clamped to 0–1.
    pub fn set_share(&self, factor: f64) {
        let factor = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.share.send_replace(factor);
    }

    pub fn share(&self) -> f64 {
        *self.share.borrow()
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
            // A joining fleet member waits for its first share.
            let share = match self.share.subscribe().wait_for(|s| *s > 0.0).await {
                Ok(s) => *s,
                Err(_) => 1.0,
            };
            let tokens = match self.aimd() {
                Some(mut a) => a.tokens_for_share(docs as u64, Instant::now(), share),
                None if share >= 1.0 => docs as u64,
                None => {
                    let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
                    scaled_tokens(docs as u64, 1.0 / share, &mut carry)
                }
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

    /// Documents per second currently allowed (`None` = unlimited): share × adaptive rate.
    pub fn effective_rate(&self) -> Option<f64> {
        let share = self.share();
        match self.aimd() {
            Some(mut a) => {
                a.climb(Instant::now());
                Some(a.effective() * share)
            }
            None => self.configured.map(|r| r as f64 * share),
        }
    }

    pub fn configured_rate(&self) -> Option<u32> {
        self.configured
    }
}

#[cfg(test)]
#[path = "rate_limiter_tests.rs"]
mod tests;
