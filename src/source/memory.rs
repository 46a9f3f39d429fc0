//! In-memory [`Queue`] and [`ObjectStore`], for tests that need neither LocalStack nor real time.
//!
//! [`MemoryQueue`] keeps SQS's visibility semantics on the tokio clock (so `tokio::time::pause`
//! drives it): a received message is invisible until its visibility timeout ends, a visibility
//! change sets what is left of it, every receive gives a new receipt and raises the receive
//! count, and a stale receipt is refused. Visibility is computed from the clock when asked, with
//! no background task. Every call is recorded with its time ([`MemoryQueue::calls`]), and calls
//! can be made to fail. [`MemoryStore`] holds objects by bucket and key; their bodies can be made
//! to break at given offsets ([`MemoryStore::cut_at`]), and it counts the bytes it served (the
//! fault injection lives in `faults`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Body, EntryRefused, FetchError, Message, ObjectRef, ObjectStore, OpenedObject, Queue,
    QueueError, ResumeAt, ResumeError,
};

mod faults;

use faults::{At, Faults};

/// A call the queue received, with its (tokio) time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A receive and the ids it returned.
    Receive {
        at: Instant,
        ids: Vec<String>,
    },
    /// A receive made to fail ([`MemoryQueue::fail_receives`]).
    ReceiveFailed {
        at: Instant,
    },
    Delete {
        at: Instant,
        id: String,
    },
    /// One change (a batch is recorded as one per entry, `batch` set).
    ChangeVisibility {
        at: Instant,
        id: String,
        seconds: i32,
        batch: bool,
    },
}

#[derive(Debug)]
struct Stored {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: i32,
    /// The receipt of the latest receive.
    receipt: Option<String>,
    traceparent: Option<String>,
}

#[derive(Debug, Default)]
struct QueueState {
    next_id: u64,
    messages: Vec<Stored>,
    deleted: Vec<String>,
    calls: Vec<Call>,
    failing_receives: u32,
    failing_deletes: u32,
}

/// An in-memory SQS queue.
pub struct MemoryQueue {
    name: String,
    visibility_timeout: Duration,
    wait_time: Duration,
    state: Mutex<QueueState>,
    sent: Notify,
}

impl MemoryQueue {
    /// A queue whose receives hide messages for `visibility_timeout` and long-poll `wait_time`.
    pub fn new(name: &str, visibility_timeout: Duration, wait_time: Duration) -> MemoryQueue {
        MemoryQueue {
            name: name.to_string(),
            visibility_timeout,
            wait_time,
            state: Mutex::default(),
            sent: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues a message, visible at once; returns its id.
    pub fn send(&self, body: &str) -> String {
        self.send_traced(body, None)
    }

    /// Enqueues a message with a `traceparent` attribute.
    pub fn send_traced(&self, body: &str, traceparent: Option<&str>) -> String {
        let id = {
            let mut st = self.state();
            st.next_id += 1;
            let id = format!("msg-{}", st.next_id);
            st.messages.push(Stored {
                id: id.clone(),
                body: body.to_string(),
                visible_at: Instant::now(),
                receive_count: 0,
                receipt: None,
                traceparent: traceparent.map(str::to_string),
            });
            id
        };
        self.sent.notify_waiters();
        id
    }

    /// The next `n` receives fail.
    pub fn fail_receives(&self, n: u32) {
        self.state().failing_receives = n;
    }

    /// The next `n` deletes fail.
    pub fn fail_deletes(&self, n: u32) {
        self.state().failing_deletes = n;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Ids of the deleted messages, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }

    /// Messages not deleted: (visible now, in flight).
    pub fn depth(&self) -> (usize, usize) {
        let now = Instant::now();
        let st = self.state();
        let visible = st.messages.iter().filter(|m| m.visible_at <= now).count();
        (visible, st.messages.len() - visible)
    }

    /// How often message `id` was received, if it is still in the queue.
    pub fn receive_count(&self, id: &str) -> Option<i32> {
        let st = self.state();
        st.messages
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.receive_count)
    }

    /// The message that `receipt` names, if it is the message's latest receipt.
    fn current<'s>(st: &'s mut QueueState, receipt: &str) -> Option<&'s mut Stored> {
        st.messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
    }

    fn set_visibility(&self, receipt: &str, seconds: i32, batch: bool) -> Result<(), String> {
        let now = Instant::now();
        let mut st = self.state();
        let Some(m) = Self::current(&mut st, receipt) else {
            return Err(format!("ReceiptHandleIsInvalid: {receipt}"));
        };
        if m.visible_at <= now {
            return Err(format!("MessageNotInflight: {}", m.id));
        }
        m.visible_at = now + Duration::from_secs(seconds.max(0) as u64);
        let id = m.id.clone();
        st.calls.push(Call::ChangeVisibility {
            at: now,
            id,
            seconds,
            batch,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, max: usize) -> Result<Vec<Message>, QueueError> {
        let deadline = Instant::now() + self.wait_time;
        loop {
            let sent = self.sent.notified();
            let next_visible = {
                let now = Instant::now();
                let mut st = self.state();
                if st.failing_receives > 0 {
                    st.failing_receives -= 1;
                    st.calls.push(Call::ReceiveFailed { at: now });
                    return Err(QueueError("ServiceUnavailable: injected".into()));
                }
                let mut out = Vec::new();
                for m in st.messages.iter_mut().filter(|m| m.visible_at <= now) {
                    if out.len() >= max {
                        break;
                    }
                    m.receive_count += 1;
                    m.visible_at = now + self.visibility_timeout;
                    let receipt = format!("{}#{}", m.id, m.receive_count);
                    m.receipt = Some(receipt.clone());
                    out.push(Message {
                        id: m.id.clone(),
                        receipt,
                        body: m.body.clone(),
                        receive_count: m.receive_count,
                        traceparent: m.traceparent.clone(),
                        aws_trace_header: None,
                    });
                }
                if !out.is_empty() || now >= deadline {
                    let ids = out.iter().map(|m| m.id.clone()).collect();
                    st.calls.push(Call::Receive { at: now, ids });
                    return Ok(out);
                }
                st.messages.iter().map(|m| m.visible_at).min()
            };
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = sent => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let now = Instant::now();
        let mut st = self.state();
        if st.failing_deletes > 0 {
            st.failing_deletes -= 1;
            return Err(QueueError("ServiceUnavailable: injected".into()));
        }
        let Some(i) = st
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
        else {
            return Err(QueueError(format!("ReceiptHandleIsInvalid: {receipt}")));
        };
        let m = st.messages.remove(i);
        st.calls.push(Call::Delete {
            at: now,
            id: m.id.clone(),
        });
        st.deleted.push(m.id);
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, seconds: i32) -> Result<(), QueueError> {
        self.set_visibility(receipt, seconds, false)
            .map_err(QueueError)?;
        self.sent.notify_waiters();
        Ok(())
    }

    async fn change_visibility_batch(
        &self,
        receipts: &[&str],
        seconds: i32,
    ) -> Result<Vec<EntryRefused>, QueueError> {
        let refused = receipts
            .iter()
            .enumerate()
            .filter_map(|(index, receipt)| {
                self.set_visibility(receipt, seconds, true)
                    .err()
                    .map(|reason| EntryRefused {
                        index,
                        code: reason.split(':').next().unwrap_or_default().to_string(),
                        reason,
                    })
            })
            .collect();
        self.sent.notify_waiters();
        Ok(refused)
    }
}

#[derive(Debug, Clone)]
struct StoredObject {
    body: Bytes,
    etag: String,
    last_modified: DateTime<Utc>,
}

/// An in-memory bucket store.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<At, StoredObject>>,
    faults: Faults,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Stores `body` under `bucket`/`key`, last modified now.
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Bytes>) {
        let body = body.into();
        let etag = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
        let stored = StoredObject {
            body,
            etag,
            last_modified: Utc::now(),
        };
        lock(&self.objects).insert(at(bucket, key), stored);
    }

    /// Opening `bucket`/`key` fails with `reason` until [`MemoryStore::heal`].
    pub fn fail(&self, bucket: &str, key: &str, reason: &str) {
        self.faults.fail(at(bucket, key), reason);
    }

    pub fn heal(&self, bucket: &str, key: &str) {
        self.faults.heal(&at(bucket, key));
    }

    /// The body of `bucket`/`key` breaks (a connection reset) when a reader reaches each of
    /// `offsets`, once per offset, whichever opening of the object is being read.
    pub fn cut_at(&self, bucket: &str, key: &str, offsets: &[u64]) {
        self.faults.cut_at(at(bucket, key), offsets);
    }

    /// Body bytes handed out for `bucket`/`key` over every opening.
    pub fn served(&self, bucket: &str, key: &str) -> u64 {
        self.faults.served(&at(bucket, key))
    }
}

fn at(bucket: &str, key: &str) -> At {
    (bucket.to_string(), key.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait::async_trait]
impl ObjectStore for MemoryStore {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, FetchError> {
        for key in std::iter::once(&obj.key).chain(obj.alt_key.as_ref()) {
            let at = (obj.bucket.clone(), key.clone());
            if let Some(reason) = self.faults.failure(&at) {
                return Err(FetchError::Failed {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                    reason,
                });
            }
            if let Some(o) = lock(&self.objects).get(&at).cloned() {
                return Ok(OpenedObject {
                    key: key.clone(),
                    etag: Some(o.etag),
                    version_id: obj.version_id.clone(),
                    last_modified: Some(o.last_modified),
                    length: Some(o.body.len() as u64),
                    body: self.faults.body(&at, o.body, 0),
                });
            }
        }
        Err(FetchError::Missing {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        })
    }

    async fn open_from(&self, r: &ResumeAt) -> Result<Body, ResumeError> {
        let at = (r.bucket.clone(), r.key.clone());
        if let Some(reason) = self.faults.failure(&at) {
            return Err(ResumeError::Failed(reason));
        }
        let Some(o) = lock(&self.objects).get(&at).cloned() else {
            return Err(ResumeError::Changed("the object was deleted".into()));
        };
        if r.etag.as_ref().is_some_and(|e| *e != o.etag) {
            return Err(ResumeError::Changed("412 PreconditionFailed".into()));
        }
        Ok(self.faults.body(&at, o.body, r.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn visibility_receipts_and_redelivery() {
        let q = MemoryQueue::new("q", Duration::from_secs(30), Duration::from_secs(20));
        let id = q.send("hello");
        let first = q.receive(10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        let started = Instant::now();
        // Invisible: the next receive long-polls until the timeout ends, then gets it again.
        let again = q.receive(10).await.unwrap();
        assert!(again.is_empty(), "the long poll ends first");
        let again = q.receive(10).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        assert!(Instant::now() - started >= Duration::from_secs(30));
        assert!(q.delete(&first[0].receipt).await.is_err(), "stale receipt");
        q.change_visibility(&again[0].receipt, 0).await.unwrap();
        assert_eq!(q.depth(), (1, 0));
        assert!(
            q.change_visibility(&again[0].receipt, 5).await.is_err(),
            "not in flight"
        );
        let third = q.receive(1).await.unwrap();
        q.delete(&third[0].receipt).await.unwrap();
        assert_eq!(q.deleted(), [id]);
        assert_eq!(q.depth(), (0, 0));
    }

    #[tokio::test]
    async fn store_tries_the_other_spelling_and_fails_on_demand() {
        let s = MemoryStore::new();
        s.put("b", "a b", &b"x"[..]);
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "a+b".into(),
            alt_key: Some("a b".into()),
            version_id: None,
            size: None,
            event_time: None,
        };
        assert_eq!(s.open(&obj).await.unwrap().key, "a b");
        s.fail("b", "a+b", "AccessDenied");
        assert!(matches!(s.open(&obj).await, Err(FetchError::Failed { .. })));
        let gone = ObjectRef {
            key: "nope".into(),
            alt_key: None,
            ..obj
        };
        assert!(matches!(
            s.open(&gone).await,
            Err(FetchError::Missing { .. })
        ));
    }
}
