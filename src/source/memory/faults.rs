//! The faults [`MemoryStore`](super::MemoryStore) can be told to inject, and what it counts:
//! objects whose opening fails, bodies that break (a connection reset) at given offsets, and the
//! body bytes served per object. Kept apart from the store so the store itself is only buckets
//! and keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::lock;
use crate::source::Body;

/// A bucket and key.
pub(super) type At = (String, String);

/// The offsets where one object's body breaks next, shared by its open bodies.
type Cuts = Arc<Mutex<Vec<u64>>>;

#[derive(Default)]
pub(super) struct Faults {
    /// Objects whose opening fails, with the reason.
    failing: Mutex<HashMap<At, String>>,
    /// Offsets at which an object's body stream breaks, each once (shared with its bodies).
    cuts: Mutex<HashMap<At, Cuts>>,
    /// Body bytes handed out, per object.
    served: Arc<Mutex<HashMap<At, u64>>>,
}

impl Faults {
    pub(super) fn fail(&self, at: At, reason: &str) {
        lock(&self.failing).insert(at, reason.to_string());
    }

    pub(super) fn heal(&self, at: &At) {
        lock(&self.failing).remove(at);
    }

    /// Why opening `at` fails, if it was told to.
    pub(super) fn failure(&self, at: &At) -> Option<String> {
        lock(&self.failing).get(at).cloned()
    }

    /// The body of `at` breaks when a reader reaches each of `offsets`, once per offset.
    pub(super) fn cut_at(&self, at: At, offsets: &[u64]) {
        let mut o = offsets.to_vec();
        o.sort_unstable();
        lock(&self.cuts).insert(at, Arc::new(Mutex::new(o)));
    }

    pub(super) fn served(&self, at: &At) -> u64 {
        lock(&self.served).get(at).copied().unwrap_or(0)
    }

    /// `data` from offset `from`, as a stream that breaks at the cuts of `at` and counts what it
    /// serves.
    pub(super) fn body(&self, at: &At, data: Bytes, from: u64) -> Body {
        Box::new(CutBody {
            at: at.clone(),
            data,
            pos: from,
            cuts: lock(&self.cuts).get(at).cloned().unwrap_or_default(),
            served: self.served.clone(),
        })
    }
}

/// A stored body as a stream that breaks at the store's cut offsets and counts what it serves.
struct CutBody {
    at: At,
    data: Bytes,
    pos: u64,
    cuts: Cuts,
    served: Arc<Mutex<HashMap<At, u64>>>,
}

impl tokio::io::AsyncRead for CutBody {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let pos = self.pos;
        let next_cut = {
            let mut cuts = lock(&self.cuts);
            match cuts.first().copied() {
                Some(c) if c <= pos => {
                    cuts.remove(0);
                    return std::task::Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        format!("connection reset at byte {pos} (injected)"),
                    )));
                }
                c => c,
            }
        };
        let end = (self.data.len() as u64).min(next_cut.unwrap_or(u64::MAX));
        let n = ((end.saturating_sub(pos)) as usize).min(buf.remaining());
        if n > 0 {
            let start = pos as usize;
            buf.put_slice(&self.data[start..start + n]);
        }
        self.pos += n as u64;
        *lock(&self.served).entry(self.at.clone()).or_default() += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}
