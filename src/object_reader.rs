//! Object reader stage: opens an S3 object as a stream.
//!
//! The GetObject body is never collected: the caller bridges it to a blocking `Read` and
//! decompresses it on the fly ([`crate::record::decompress`]), so memory stays bounded by the
//! buffers whatever the object size.
//!
//! Errors are typed because the caller acts on them: a missing object is skipped, a failure of
//! S3 or the network is retried later (the message is released), corrupt data is dead-lettered.

use std::time::Duration;

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use chrono::{DateTime, Utc};

use crate::backoff;
use crate::notification::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// NoSuchKey under both spellings of the key: the object was deleted after the event.
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

/// An opened object: its metadata and its body as an async stream.
pub struct OpenedObject {
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    pub content_length: Option<i64>,
    pub body: aws_sdk_s3::primitives::ByteStream,
}

/// GetObject with retries for transient errors, trying the alternative key spelling on NoSuchKey.
pub async fn open(s3: &aws_sdk_s3::Client, obj: &ObjectRef) -> Result<OpenedObject, FetchError> {
    let keys: Vec<&str> = std::iter::once(obj.key.as_str())
        .chain(obj.alt_key.as_deref())
        .collect();
    let failed = |reason: String| FetchError::Failed {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        reason,
    };
    'keys: for key in keys {
        for attempt in 1..=4u32 {
            let mut req = s3.get_object().bucket(&obj.bucket).key(key);
            if let Some(v) = &obj.version_id {
                req = req.version_id(v);
            }
            match req.send().await {
                Ok(out) => return Ok(opened(key, out)),
                Err(e) => {
                    if let Some(GetObjectError::NoSuchKey(_)) = e.as_service_error() {
                        continue 'keys;
                    }
                    let code = e
                        .as_service_error()
                        .and_then(|se| aws_sdk_s3::error::ProvideErrorMetadata::code(se))
                        .unwrap_or("");
                    let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                    // Not worth retrying in a loop here: the message is released and comes back.
                    if matches!(
                        code,
                        "NoSuchBucket" | "AccessDenied" | "InvalidObjectState" | "NoSuchVersion"
                    ) || attempt == 4
                    {
                        return Err(failed(text));
                    }
                    tracing::warn!(bucket = %obj.bucket, key, attempt, error = %text, "GetObject failed; retrying");
                    tokio::time::sleep(backoff::delay(
                        attempt,
                        Duration::from_millis(500),
                        Duration::from_secs(10),
                    ))
                    .await;
                }
            }
        }
    }
    Err(FetchError::Missing {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
    })
}

fn opened(key: &str, out: GetObjectOutput) -> OpenedObject {
    OpenedObject {
        key: key.to_string(),
        etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
        version_id: out.version_id().map(str::to_string),
        last_modified: out
            .last_modified()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
        content_length: out.content_length(),
        body: out.body,
    }
}
