//! The bucket listing of a backfill: ListObjectsV2 one page (≤ 1000 keys) at a time, so memory
//! stays bounded by a page whatever the number of objects; keys come in UTF-8 binary order.
//!
//! Retry policy of ListObjectsV2 ([`LIST`]): five tries, 0.5 s doubling to 10 s, for anything
//! (throttling, 5xx, network); then the backfill stops with its checkpoint where it was.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::backoff::Policy;

/// See the module documentation.
const LIST: Policy = Policy::new(5, 500, 10_000);

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// A listing in progress: the next page is asked for with the continuation token.
pub struct Listing {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    done: bool,
}

impl Listing {
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        start_after: Option<String>,
    ) -> Listing {
        Listing {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            start_after,
            token: None,
            done: false,
        }
    }

    /// The next page, `None` after the last one.
    pub async fn next_page(&mut self) -> anyhow::Result<Option<Vec<Listed>>> {
        if self.done {
            return Ok(None);
        }
        let mut attempt = 1;
        let out = loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix);
            req = match (&self.token, &self.start_after) {
                (Some(t), _) => req.continuation_token(t),
                (None, Some(after)) => req.start_after(after),
                (None, None) => req,
            };
            match req.send().await {
                Ok(out) => break out,
                Err(e) => {
                    let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                    if attempt >= LIST.attempts {
                        return Err(anyhow::anyhow!(text)).with_context(|| {
                            format!("listing s3://{}/{}", self.bucket, self.prefix)
                        });
                    }
                    tracing::warn!(bucket = %self.bucket, attempt, error = %text, "ListObjectsV2 failed; retrying");
                    tokio::time::sleep(LIST.delay(attempt)).await;
                    attempt += 1;
                }
            }
        };
        self.token = out.next_continuation_token().map(str::to_string);
        self.done = self.token.is_none();
        let page = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    size: o.size().map_or(0, |s| s.max(0) as u64),
                    last_modified: o
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect();
        Ok(Some(page))
    }

    /// The first key under the prefix, if any (one key asked for: the layout probe).
    pub async fn first_key(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> anyhow::Result<Option<String>> {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))
            .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        Ok(out
            .contents()
            .first()
            .and_then(|o| o.key())
            .map(str::to_string))
    }
}

/// The selected objects of a listing, one at a time: the listing's pages filtered by the time
/// range, ended early past `--to` when the keys follow the layout under the prefix.
pub struct Selector {
    listing: Listing,
    page: std::vec::IntoIter<Listed>,
    range: super::select::TimeRange,
    prefix: String,
    /// The keys under the prefix follow the Firehose layout (the first key does).
    layout: bool,
    /// Never selected: the checkpoint object, when it lives in the bucket being backfilled.
    skip_key: Option<String>,
    ended: bool,
}

impl Selector {
    pub fn new(
        listing: Listing,
        range: super::select::TimeRange,
        layout: bool,
        skip_key: Option<String>,
    ) -> Selector {
        Selector {
            prefix: listing.prefix.clone(),
            listing,
            page: Vec::new().into_iter(),
            range,
            layout,
            skip_key,
            ended: false,
        }
    }

    /// The next selected object, `None` at the end of the listing.
    pub async fn next(&mut self) -> anyhow::Result<Option<Listed>> {
        use super::select::{object_time, past_end};
        loop {
            if self.ended {
                return Ok(None);
            }
            let Some(o) = self.page.next() else {
                match self.listing.next_page().await? {
                    Some(page) => self.page = page.into_iter(),
                    None => self.ended = true,
                }
                continue;
            };
            if let Some(to) = self.range.to {
                if self.layout && past_end(&self.prefix, &o.key, to) {
                    self.ended = true;
                    continue;
                }
            }
            if self.skip_key.as_deref() == Some(o.key.as_str()) {
                continue;
            }
            // No time at all (S3 always gives LastModified): taken only by an open range.
            let selected = match object_time(&o.key, o.last_modified) {
                Some(t) => self.range.selects(t),
                None => self.range == Default::default(),
            };
            if selected {
                return Ok(Some(o));
            }
        }
    }
}
