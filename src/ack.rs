//! Ack groups and tokens: the no-loss rule.
//!
//! Every document carries an [`AckToken`] of its message's [`AckGroup`]. The sink resolves a
//! token as indexed or dead-lettered; a token dropped unresolved (the worker gave up on the
//! document, or is shutting down) marks the group failed. A message is deleted only when its group
//! drained with no failure: nothing can be lost by forgetting to report it, because forgetting is
//! itself a failure.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Outcome counts of one message's documents.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupOutcome {
    pub indexed: u64,
    pub dead_lettered: u64,
    /// At least one document was neither indexed nor dead-lettered: keep the message.
    pub failed: bool,
}

#[derive(Debug, Default)]
pub struct AckGroup {
    pending: AtomicUsize,
    failed: AtomicBool,
    indexed: AtomicU64,
    dead_lettered: AtomicU64,
    drained: Notify,
}

impl AckGroup {
    /// A group with one pending reference held by its producer, released by [`AckGroup::wait`].
    pub fn new() -> Arc<AckGroup> {
        let g = AckGroup::default();
        g.pending.store(1, Ordering::SeqCst);
        Arc::new(g)
    }

    pub fn token(self: &Arc<Self>) -> AckToken {
        self.pending.fetch_add(1, Ordering::SeqCst);
        AckToken {
            group: Some(self.clone()),
        }
    }

    /// Call once, after the last token was handed out: waits until every token is resolved.
    pub async fn wait(self: &Arc<Self>) -> GroupOutcome {
        self.release();
        while self.pending.load(Ordering::SeqCst) != 0 {
            self.drained.notified().await;
        }
        GroupOutcome {
            indexed: self.indexed.load(Ordering::SeqCst),
            dead_lettered: self.dead_lettered.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            // notify_one keeps a permit if the waiter is not parked yet.
            self.drained.notify_one();
        }
    }
}

/// How a document left the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Indexed,
    DeadLettered,
}

/// One document's share of its message. Dropping it unresolved marks the message failed.
#[derive(Debug)]
pub struct AckToken {
    group: Option<Arc<AckGroup>>,
}

impl AckToken {
    pub fn resolve(mut self, how: Delivered) {
        if let Some(g) = self.group.take() {
            match how {
                Delivered::Indexed => g.indexed.fetch_add(1, Ordering::SeqCst),
                Delivered::DeadLettered => g.dead_lettered.fetch_add(1, Ordering::SeqCst),
            };
            g.release();
        }
    }

    /// A token belonging to no message (benchmarks, tools).
    pub fn detached() -> AckToken {
        AckToken { group: None }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if let Some(g) = self.group.take() {
            g.failed.store(true, Ordering::SeqCst);
            g.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn group_waits_for_all_tokens() {
        let g = AckGroup::new();
        let a = g.token();
        let b = g.token();
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.resolve(Delivered::Indexed);
        b.resolve(Delivered::DeadLettered);
        let out = waiter.await.unwrap();
        assert_eq!(
            out,
            GroupOutcome {
                indexed: 1,
                dead_lettered: 1,
                failed: false
            }
        );
    }

    #[tokio::test]
    async fn dropped_token_fails_the_group() {
        let g = AckGroup::new();
        let t = g.token();
        drop(t);
        assert!(g.wait().await.failed);
    }

    #[tokio::test]
    async fn empty_group_completes() {
        assert_eq!(AckGroup::new().wait().await, GroupOutcome::default());
    }
}
