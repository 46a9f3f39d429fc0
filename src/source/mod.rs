//! The source wing: messages from a queue, the objects they name, and what the worker tells the
//! queue back.
//!
//! Two outside systems, each behind a small trait holding only what the worker uses:
//! - [`Queue`] (SQS, `sqs::SqsQueue`): receive, delete, change visibility;
//! - [`ObjectStore`] (S3, `s3::S3Store`): open an object as a stream, and reopen it from a byte
//!   offset when the stream breaks (`resume::ResumableBody` does that under the reader).
//!
//! [`memory`] has in-memory implementations of both, with SQS's visibility semantics, for tests
//! that need neither LocalStack nor real time. Above the traits: [`notification`] turns a message
//! body into object references, `inflight` tracks the messages being worked on (heartbeat,
//! delete, release, release at shutdown) over any [`Queue`], and `aws` configures the SDK.

use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

pub(crate) mod aws;
pub(crate) mod inflight;
pub mod memory;
pub mod notification;
pub(crate) mod resume;
pub mod s3;
pub(crate) mod sqs;

pub use notification::ObjectRef;

/// One message as the worker sees it, whatever the queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    /// Names this delivery of the message in delete and visibility calls; a new one per receive.
    pub receipt: String,
    pub body: String,
    /// 1 on the first delivery: the redelivery delay grows with it.
    pub receive_count: i32,
    /// The W3C `traceparent` message attribute, if the producer set one.
    pub traceparent: Option<String>,
    /// The `AWSTraceHeader` system attribute, set by X-Ray-instrumented senders.
    pub aws_trace_header: Option<String>,
}

/// A queue call that failed (after the implementation's own retries, if it has any).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueueError(pub String);

/// One entry of a batch visibility change that the queue refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRefused {
    /// Position of the entry in the batch.
    pub index: usize,
    pub code: String,
    pub reason: String,
}

/// The queue of object notifications.
///
/// Contract, as SQS behaves: a received message is invisible to every receiver for the
/// visibility timeout the queue was set up with; [`Queue::change_visibility`] sets what is left
/// of it (0: visible at once) and fails for a message that is visible already; a message comes
/// back with a higher `receive_count` until it is deleted. Errors are returned after the
/// implementation's retry policy for that call gave up.
#[async_trait::async_trait]
pub trait Queue: Send + Sync {
    /// The queue's name, for logs and span attributes.
    fn name(&self) -> &str;
    /// Up to `max` (1–10) messages, waiting up to the long-poll time when none is visible. Not
    /// retried: the receive loop backs off and tries again.
    async fn receive(&self, max: usize) -> Result<Vec<Message>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    async fn change_visibility(&self, receipt: &str, seconds: i32) -> Result<(), QueueError>;
    /// Up to 10 receipts at once; the entries the queue refused.
    async fn change_visibility_batch(
        &self,
        receipts: &[&str],
        seconds: i32,
    ) -> Result<Vec<EntryRefused>, QueueError>;
}

/// Opening an object failed. Typed because the caller acts on it: a missing object is skipped,
/// anything else releases the message for a later try.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not found under either spelling of the key: the object was deleted after the event.
    #[error("object s3://{bucket}/{key} does not exist")]
    Missing { bucket: String, key: String },
    /// Worth retrying later: throttling, 5xx, network, and also access or bucket errors that an
    /// operator can fix (the message then ends in the queue's dead-letter queue, not lost).
    #[error("fetching s3://{bucket}/{key} failed: {reason}")]
    Failed {
        bucket: String,
        key: String,
        reason: String,
    },
}

/// An opened object: its metadata and its body as a stream, never collected.
pub struct OpenedObject {
    /// The key that was found (the notification's, or its other spelling).
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    /// The body's length as announced (`Content-Length`): a stream that ends before it broke.
    pub length: Option<u64>,
    pub body: Body,
}

/// An object's body as a stream.
pub type Body = Box<dyn AsyncRead + Send + Unpin>;

/// Where to continue an object whose body stream broke: the same object as opened (its found
/// key, and its version or ETag so that a changed object is refused), from `offset`.
#[derive(Debug, Clone)]
pub struct ResumeAt {
    pub bucket: String,
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub offset: u64,
}

/// Reopening an object failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResumeError {
    /// Its ETag or version is not the one opened (S3's 412): what was read is of another object.
    #[error("the object changed since it was opened: {0}")]
    Changed(String),
    /// Anything else (throttling, 5xx, network): worth another try.
    #[error("{0}")]
    Failed(String),
}

/// Where the objects are.
///
/// Contract: [`ObjectStore::open`] tries the reference's key, then its other spelling
/// (`alt_key`) if the first does not exist; [`FetchError::Missing`] only when neither does. The
/// body streams; an error while reading it is an I/O error of the stream.
/// [`ObjectStore::open_from`] gives the rest of the object as opened, from a byte offset, and
/// [`ResumeError::Changed`] when it is no longer the same object.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, FetchError>;

    /// One try (no retries: the caller has its own policy). A store that cannot reopen at an
    /// offset keeps this default, and a broken stream then releases its message as before.
    async fn open_from(&self, at: &ResumeAt) -> Result<Body, ResumeError> {
        Err(ResumeError::Failed(format!(
            "this store cannot reopen s3://{}/{} at an offset",
            at.bucket, at.key
        )))
    }
}
