//! Object reader stage: opens an S3 object as a stream and undoes its compression.
//!
//! The GetObject body is never collected: it is bridged to a blocking [`Read`] and decompressed
//! on the fly, so memory stays bounded by the buffers whatever the object size. Gzip is detected
//! by its magic bytes (Firehose keys have no `.gz`), and concatenated gzip members (as Firehose
//! and `cat a.gz b.gz` produce) are all read.
//!
//! Errors are typed because the caller acts on them: a missing object is skipped, a failure of
//! S3 or the network is retried later (the message is released), corrupt data is dead-lettered.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;

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

/// Counts the compressed bytes read and remembers whether the source itself failed, so that a
/// read error can be told apart: S3/network (retry later) or corrupt content (dead-letter).
pub struct SourceTap<R> {
    inner: R,
    pub bytes: Arc<AtomicU64>,
    pub failed: Arc<AtomicBool>,
}

impl<R> SourceTap<R> {
    pub fn new(inner: R) -> Self {
        SourceTap {
            inner,
            bytes: Arc::default(),
            failed: Arc::default(),
        }
    }
}

impl<R: Read> Read for SourceTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// Wraps `src` in a gzip decoder when it starts with the gzip magic bytes.
pub fn decompress<R: Read + Send + 'static>(src: R) -> io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(64 * 1024, src);
    let head = buffered.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(data: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(io::Cursor::new(data))?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn plain_gzip_and_multi_member() {
        assert_eq!(read_all(b"{\"a\":1}\n".to_vec()).unwrap(), b"{\"a\":1}\n");
        assert_eq!(read_all(gz(b"abc\n")).unwrap(), b"abc\n");
        let mut two = gz(b"first\n");
        two.extend(gz(b"second\n"));
        assert_eq!(read_all(two).unwrap(), b"first\nsecond\n");
        assert_eq!(read_all(Vec::new()).unwrap(), b"");
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_panic() {
        let full = gz(&b"{\"a\":1}\n".repeat(1000));
        let cut = full[..full.len() / 2].to_vec();
        assert!(read_all(cut).is_err());
    }

    #[test]
    fn tap_tells_source_errors_apart() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let tap = SourceTap::new(Broken);
        let failed = tap.failed.clone();
        assert!(decompress(tap).is_err());
        assert!(failed.load(Ordering::Relaxed));
    }
}
