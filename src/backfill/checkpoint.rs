//! The checkpoint of a backfill: the last key up to which every selected object is settled, with
//! the run's parameters, so an interrupted run (Ctrl-C, SIGTERM, a crash) continues after it.
//!
//! Kept in a local file (written to a temporary name, then renamed: never half-written) or in
//! an S3 object (`--checkpoint s3://bucket/key`, for a backfill run as a task with no disk of
//! its own). A checkpoint of other parameters (another bucket, prefix or range) is refused
//! rather than silently used. It is removed when a run settles everything: the next run starts
//! from the beginning.

use std::path::PathBuf;

use anyhow::Context as _;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub bucket: String,
    pub prefix: String,
    /// `--from` and `--to` as given (RFC 3339 after parsing), `None` when open.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Every selected object up to and including this key is settled.
    pub last_key: String,
}

impl State {
    /// Whether `other` is a checkpoint of the same run (every parameter but the key).
    pub fn same_run(&self, other: &State) -> bool {
        (&self.bucket, &self.prefix, &self.from, &self.to)
            == (&other.bucket, &other.prefix, &other.from, &other.to)
    }
}

/// Where the checkpoint lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    /// `s3://bucket/key` or a file path.
    pub fn parse(s: &str) -> Result<Location, String> {
        match s.strip_prefix("s3://") {
            Some(rest) => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                }),
                _ => Err(format!("{s:?} is not s3://BUCKET/KEY")),
            },
            None if s.is_empty() => Err("is empty: a file path or s3://BUCKET/KEY".to_string()),
            None => Ok(Location::File(PathBuf::from(s))),
        }
    }

    /// The default: `f4a-backfill-<bucket>.checkpoint` in the current directory.
    pub fn default_for(bucket: &str) -> Location {
        Location::File(PathBuf::from(format!("f4a-backfill-{bucket}.checkpoint")))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Reads and writes one checkpoint.
pub struct Checkpoint {
    pub location: Location,
    s3: aws_sdk_s3::Client,
}

impl Checkpoint {
    pub fn new(location: Location, s3: aws_sdk_s3::Client) -> Checkpoint {
        Checkpoint { location, s3 }
    }

    /// The stored state; `None` when there is none yet.
    pub async fn load(&self) -> anyhow::Result<Option<State>> {
        let text = match &self.location {
            Location::File(p) => match tokio::fs::read(p).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
            Location::S3 { bucket, key } => {
                match self.s3.get_object().bucket(bucket).key(key).send().await {
                    Ok(out) => out
                        .body
                        .collect()
                        .await
                        .with_context(|| format!("reading {}", self.location))?
                        .to_vec(),
                    Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                        return Ok(None)
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            aws_sdk_s3::error::DisplayErrorContext(&e).to_string()
                        ))
                        .with_context(|| format!("reading {}", self.location))
                    }
                }
            }
        };
        let state = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a backfill checkpoint", self.location))?;
        Ok(Some(state))
    }

    pub async fn save(&self, state: &State) -> anyhow::Result<()> {
        let body = serde_json::to_vec(state)?;
        match &self.location {
            Location::File(p) => {
                let tmp = p.with_extension("tmp");
                tokio::fs::write(&tmp, &body)
                    .await
                    .with_context(|| format!("writing {}", tmp.display()))?;
                tokio::fs::rename(&tmp, p)
                    .await
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Location::S3 { bucket, key } => {
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
                    })
                    .with_context(|| format!("writing {}", self.location))?;
            }
        }
        Ok(())
    }

    /// After a run that settled everything.
    pub async fn remove(&self) -> anyhow::Result<()> {
        match &self.location {
            Location::File(p) => match tokio::fs::remove_file(p).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", p.display()))
                }
                _ => Ok(()),
            },
            Location::S3 { bucket, key } => {
                self.s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
                    })
                    .with_context(|| format!("removing {}", self.location))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("s3://b/k/x.json").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "k/x.json".into()
            }
        );
        assert!(Location::parse("s3://b").is_err());
        assert!(Location::parse("s3:///k").is_err());
        assert_eq!(
            Location::parse("/tmp/cp").unwrap(),
            Location::File("/tmp/cp".into())
        );
    }
}
