//! Resumable object reads: a body stream that survives breaks mid-object.
//!
//! [`ResumableBody`] sits between an opened object's stream and the reader (decompressor, framer).
//! It counts the bytes it has handed on; when the stream fails, or ends before the announced
//! length, it reopens the object from exactly that byte ([`ObjectStore::open_from`]: a `Range`
//! request conditional on the ETag or version) and goes on feeding the same reader. The reader
//! never sees the break, so no record is read twice and no document is sent twice.
//!
//! Policy ([`RESUME`]): up to five reopen tries per break, 0.2 s doubling to 5 s, counted from the
//! last byte that arrived (a stream that breaks now and then but makes progress each time goes on;
//! one that delivers nothing runs out). When the object changed since it was opened (412) or the
//! tries run out, the original stream error is returned: the object fails as before and its
//! message is released for a later try from byte 0. Every break is counted in
//! `f4a.objects.resumed` and logged ([`crate::events::object_resume`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::{Body, ObjectStore, OpenedObject, ResumeAt, ResumeError};
use crate::backoff::Policy;
use crate::events::{self, ResumeOutcome};

/// See the module documentation.
pub(crate) const RESUME: Policy = Policy::new(5, 200, 5_000);

type Reopening = Pin<Box<dyn Future<Output = Result<Body, ResumeError>> + Send>>;

enum State {
    Reading(Body),
    /// Waiting out the backoff, then reopening; `error` is the break being repaired.
    Reopening {
        fut: Reopening,
        error: io::Error,
    },
    /// Given up (or done): every further read returns this.
    Failed(io::ErrorKind, String),
}

/// An object's body that reopens itself where it broke. See the module documentation.
pub(crate) struct ResumableBody {
    store: Arc<dyn ObjectStore>,
    at: ResumeAt,
    length: Option<u64>,
    /// Reopen tries since the last byte arrived.
    tries: u32,
    state: State,
}

impl ResumableBody {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        opened: OpenedObject,
    ) -> ResumableBody {
        ResumableBody {
            store,
            at: ResumeAt {
                bucket: bucket.to_string(),
                key: opened.key,
                etag: opened.etag,
                version_id: opened.version_id,
                offset: 0,
            },
            length: opened.length,
            tries: 0,
            state: State::Reading(opened.body),
        }
    }

    /// The stream broke with `error`: schedule a reopen after the backoff, or give up.
    fn broke(&mut self, error: io::Error) {
        if self.tries >= RESUME.attempts {
            events::object_resume(
                &self.at.bucket,
                &self.at.key,
                self.at.offset,
                self.tries,
                ResumeOutcome::Exhausted,
                &error.to_string(),
            );
            self.state = State::Failed(error.kind(), error.to_string());
            return;
        }
        self.tries += 1;
        // The first try at once: a reset connection is usually fine on the next one.
        let delay = match self.tries {
            1 => std::time::Duration::ZERO,
            n => RESUME.delay(n - 1),
        };
        let (store, at) = (self.store.clone(), self.at.clone());
        let fut = Box::pin(async move {
            tokio::time::sleep(delay).await;
            store.open_from(&at).await
        });
        self.state = State::Reopening { fut, error };
    }
}

impl AsyncRead for ResumableBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Failed(kind, text) => {
                    return Poll::Ready(Err(io::Error::new(*kind, text.clone())))
                }
                State::Reading(body) => {
                    let before = buf.filled().len();
                    match ready!(Pin::new(body).poll_read(cx, buf)) {
                        Ok(()) => {
                            let n = (buf.filled().len() - before) as u64;
                            if n > 0 {
                                this.at.offset += n;
                                this.tries = 0;
                                return Poll::Ready(Ok(()));
                            }
                            // The end: real, or a connection closed before the announced length.
                            match this.length {
                                Some(len) if this.at.offset < len => this.broke(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!(
                                        "the body ended after {} of {len} bytes",
                                        this.at.offset
                                    ),
                                )),
                                _ => return Poll::Ready(Ok(())),
                            }
                        }
                        Err(e) => this.broke(e),
                    }
                }
                State::Reopening { fut, error } => {
                    let outcome = ready!(fut.as_mut().poll(cx));
                    let error = std::mem::replace(error, io::Error::other(""));
                    match outcome {
                        Ok(body) => {
                            events::object_resume(
                                &this.at.bucket,
                                &this.at.key,
                                this.at.offset,
                                this.tries,
                                ResumeOutcome::Resumed,
                                &error.to_string(),
                            );
                            this.state = State::Reading(body);
                        }
                        Err(ResumeError::Changed(why)) => {
                            events::object_resume(
                                &this.at.bucket,
                                &this.at.key,
                                this.at.offset,
                                this.tries,
                                ResumeOutcome::Changed,
                                &why,
                            );
                            this.state = State::Failed(error.kind(), error.to_string());
                        }
                        Err(ResumeError::Failed(why)) => {
                            tracing::debug!(bucket = %this.at.bucket, key = %this.at.key, offset = this.at.offset, attempt = this.tries, error = %why, "reopening the object failed");
                            this.broke(error);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::source::memory::MemoryStore;
    use crate::source::ObjectRef;

    fn obj() -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
            alt_key: None,
            version_id: None,
            size: None,
            event_time: None,
        }
    }

    async fn opened(store: &Arc<MemoryStore>) -> ResumableBody {
        let o = store.open(&obj()).await.unwrap();
        ResumableBody::new(store.clone(), "b", o)
    }

    #[tokio::test]
    async fn reads_on_across_breaks_fetching_each_byte_once() {
        let store = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        store.put("b", "k", data.clone());
        store.cut_at("b", "k", &[0, 1, 40_000, 40_000, 99_999]);
        let mut out = Vec::new();
        opened(&store).await.read_to_end(&mut out).await.unwrap();
        assert!(out == data, "the same bytes in the same order");
        assert_eq!(store.served("b", "k"), data.len() as u64);
    }

    #[tokio::test]
    async fn a_changed_object_fails_the_read() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", "k", vec![1u8; 10_000]);
        store.cut_at("b", "k", &[5_000]);
        let mut body = opened(&store).await;
        let mut first = vec![0u8; 5_000];
        body.read_exact(&mut first).await.unwrap();
        store.put("b", "k", vec![2u8; 10_000]);
        let err = body.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", "k", vec![1u8; 10_000]);
        store.cut_at("b", "k", &[5_000]);
        let mut body = opened(&store).await;
        let mut first = vec![0u8; 5_000];
        body.read_exact(&mut first).await.unwrap();
        store.fail("b", "k", "SlowDown");
        let t0 = tokio::time::Instant::now();
        assert!(body.read_to_end(&mut Vec::new()).await.is_err());
        // Five tries: at once, then four backoffs of at most 0.2 + 0.4 + 0.8 + 1.6 s.
        let waited = t0.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(1_500)
                && waited <= std::time::Duration::from_millis(3_000),
            "{waited:?}"
        );
        assert!(body.read(&mut [0u8; 10]).await.is_err(), "and stays failed");
    }
}
