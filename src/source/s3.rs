//! The S3 implementation of [`ObjectStore`]: GetObject as a stream.
//!
//! The body is never collected: the object indexer bridges it to a blocking `Read` and
//! decompresses it on the fly, so memory stays bounded by the buffers whatever the object size.
//!
//! Retry policy of GetObject ([`GET_OBJECT`]): four tries, 0.5 s doubling to 10 s, for throttling,
//! 5xx and network errors; errors an operator must fix (no bucket, access denied, an archived
//! object, an unknown version) are not retried here, the message is released and comes back.
//! `NoSuchKey` tries the other spelling of the key (S3 events URL-encode keys, EventBridge does
//! not; the notification gives both).
//!
//! [`ObjectStore::open_from`] is one ranged GetObject (`Range: bytes=<offset>-`) conditional on
//! the ETag opened (`If-Match`) and pinned to its version when it had one; 412 means the object
//! changed. The retries around it are `resume::RESUME`'s.

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use chrono::{DateTime, Utc};

use super::{Body, FetchError, ObjectRef, ObjectStore, OpenedObject, ResumeAt, ResumeError};
use crate::backoff::Policy;

/// See the module documentation.
const GET_OBJECT: Policy = Policy::new(4, 500, 10_000);

/// S3 through the AWS SDK.
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// `path_style` for endpoints other than AWS's (LocalStack), which do not resolve bucket
    /// subdomains.
    pub fn new(sdk: &aws_config::SdkConfig, path_style: bool) -> S3Store {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn open(&self, obj: &ObjectRef) -> Result<OpenedObject, FetchError> {
        let s3 = &self.client;
        let keys: Vec<&str> = std::iter::once(obj.key.as_str())
            .chain(obj.alt_key.as_deref())
            .collect();
        let failed = |reason: String| FetchError::Failed {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            reason,
        };
        'keys: for key in keys {
            for attempt in 1..=GET_OBJECT.attempts {
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
                            "NoSuchBucket"
                                | "AccessDenied"
                                | "InvalidObjectState"
                                | "NoSuchVersion"
                        ) || attempt == GET_OBJECT.attempts
                        {
                            return Err(failed(text));
                        }
                        tracing::warn!(bucket = %obj.bucket, key, attempt, error = %text, "GetObject failed; retrying");
                        tokio::time::sleep(GET_OBJECT.delay(attempt)).await;
                    }
                }
            }
        }
        Err(FetchError::Missing {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        })
    }

    async fn open_from(&self, at: &ResumeAt) -> Result<Body, ResumeError> {
        let mut req = self
            .client
            .get_object()
            .bucket(&at.bucket)
            .key(&at.key)
            .range(format!("bytes={}-", at.offset));
        if let Some(etag) = &at.etag {
            req = req.if_match(format!("\"{etag}\""));
        }
        if let Some(v) = &at.version_id {
            req = req.version_id(v);
        }
        match req.send().await {
            Ok(out) => Ok(Box::new(out.body.into_async_read())),
            Err(e) => {
                let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                let status = e.raw_response().map(|r| r.status().as_u16());
                let code = e
                    .as_service_error()
                    .and_then(|se| aws_sdk_s3::error::ProvideErrorMetadata::code(se));
                if status == Some(412)
                    || matches!(
                        code,
                        Some("PreconditionFailed" | "NoSuchVersion" | "NoSuchKey")
                    )
                {
                    Err(ResumeError::Changed(text))
                } else {
                    Err(ResumeError::Failed(text))
                }
            }
        }
    }
}

fn opened(key: &str, out: GetObjectOutput) -> OpenedObject {
    OpenedObject {
        key: key.to_string(),
        etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
        version_id: out.version_id().map(str::to_string),
        last_modified: out
            .last_modified()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
        length: out.content_length().and_then(|n| u64::try_from(n).ok()),
        body: Box::new(out.body.into_async_read()),
    }
}
