//! Exponential backoff with jitter, shared by every retry loop (bulk, SQS, S3).
//!
//! "Equal jitter": half of the delay is fixed and half random, so retries of many tasks spread out
//! (no synchronised storms against a recovering cluster) yet never collapse into a tight loop.
//! Each outside call names its [`Policy`] beside the reason for it (`source::sqs`, `source::s3`);
//! bulk requests take theirs from `RETRY_*`.

use std::time::Duration;

/// How often a call is tried and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Tries in all, the first included (`u32::MAX`: until it works).
    pub attempts: u32,
    initial: Duration,
    max: Duration,
}

impl Policy {
    pub const fn new(attempts: u32, initial_ms: u64, max_ms: u64) -> Policy {
        Policy {
            attempts,
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// The wait after failed try number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        delay(attempt, self.initial, self.max)
    }
}

/// Delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped at `max`,
/// then jittered into `[d/2, d]`.
pub fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    let d = initial.saturating_mul(factor).min(max);
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        for attempt in 1..40 {
            let d = delay(attempt, i, m);
            let full = i.saturating_mul(2u32.saturating_pow(attempt - 1)).min(m);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(delay(30, i, m) >= Duration::from_millis(2500));
    }
}
