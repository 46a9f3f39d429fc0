//! One object: from the S3 stream to encoded documents in the batcher's channel.
//!
//! The [`ObjectIndexer`] opens the object (an [`ObjectStore`]), then on a blocking thread
//! runs the record wing over it ([`crate::record`]: decompress, frame, decode, normalize), encodes
//! each record once ([`Doc::encode`]) and sends it into the bounded channel, blocking while the
//! batcher is full: the backpressure that reaches back to SQS. Every document carries a token of
//! its message's [`AckGroup`] and the message's span context (bulk spans link to it). The body
//! is a [`ResumableBody`]: a break mid-object is repaired under the reader.
//!
//! It knows nothing of SQS: whoever has an object reference and an ack group can index it (a
//! message today; a listing of a bucket for a backfill, say).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;
use tracing::Instrument;

use crate::ack::AckGroup;
use crate::config::DocumentIds;
use crate::events;
use crate::record::dead_letter::raw_head;
use crate::record::decompress::{open, Content, SourceTap};
use crate::record::zip::Entry;
use crate::record::{
    Changes, DeadLetters, DeadRecord, Decoder, DropReason, Framer, Item, Limits, Normalizer,
    ObjectContext, Verdict,
};
use crate::sink::batcher::{CHUNK_BYTES, CHUNK_DOCS};
use crate::sink::Doc;
use crate::source::resume::ResumableBody;
use crate::source::{FetchError, ObjectRef, ObjectStore};
use crate::status;

/// Per-object counts, logged when the object is read.
#[derive(Debug, Default)]
struct ObjectStats {
    records: u64,
    undecodable: u64,
    timestamp_fallbacks: u64,
    timestamp_invalid: u64,
    decompressed_bytes: u64,
    /// The compression detected from the content.
    compression: &'static str,
    /// Dropped by the item limits, per reason (sampled, drop_where).
    dropped_sampled: u64,
    dropped_where: u64,
    /// Kept but changed by the item limits, per reason.
    changed: ChangeCounts,
}

/// Kept documents the item limits changed, per reason (`f4a.documents.changed`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChangeCounts {
    pub(crate) fields_filtered: u64,
    pub(crate) max_fields: u64,
    pub(crate) max_fields_per_index: u64,
    pub(crate) max_depth: u64,
    pub(crate) max_string_bytes: u64,
}

impl ChangeCounts {
    fn add(&mut self, c: &Changes) {
        self.fields_filtered += u64::from(c.filtered);
        self.max_fields += u64::from(c.max_fields);
        self.max_fields_per_index += u64::from(c.max_fields_per_index);
        self.max_depth += u64::from(c.max_depth);
        self.max_string_bytes += u64::from(c.max_string_bytes);
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("reading s3://{bucket}/{key} failed: {reason}")]
    Read {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("the pipeline is shutting down")]
    Stopped,
}

/// Indexes objects: everything one object needs, shared by all of them.
pub(crate) struct ObjectIndexer {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) normalizer: Arc<Normalizer>,
    /// The item limits; `None` when all are off (the default).
    pub(crate) limits: Option<Arc<Limits>>,
    /// `ES_INDEX_MODE=data_stream`: documents go with op_type `create`.
    pub(crate) create: bool,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) max_record_bytes: usize,
    /// `ES_DOCUMENT_ID`: whether the action lines carry the deterministic `_id`.
    pub(crate) document_ids: DocumentIds,
    /// Into the batcher; bounded, so readers block when the sink is the bottleneck.
    pub(crate) docs: mpsc::Sender<Vec<Doc>>,
}

impl ObjectIndexer {
    /// Streams `obj`'s records into the batcher, each document holding a token of `group`.
    /// Returns once the object is read (not once its documents are settled: that is `group`'s).
    pub(crate) async fn index(
        &self,
        obj: &ObjectRef,
        group: &Arc<AckGroup>,
        message_span: Option<&opentelemetry::trace::SpanContext>,
    ) -> Result<(), ObjectError> {
        let span = tracing::info_span!("object", aws.s3.bucket = %obj.bucket, aws.s3.key = %obj.key, bytes = tracing::field::Empty, records = tracing::field::Empty);
        async {
            let opened = self.store.open(obj).await?;
            let meta = Arc::new(ObjectContext {
                bucket: obj.bucket.clone(),
                key: opened.key.clone(),
                version: opened
                    .version_id
                    .clone()
                    .or(opened.etag.clone())
                    .unwrap_or_default(),
                last_modified: opened
                    .last_modified
                    .or(obj.event_time)
                    .unwrap_or_else(Utc::now),
                ingested: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                event_time: obj.event_time,
                provenance: Default::default(),
                with_id: self.document_ids == DocumentIds::Deterministic,
            });
            // A break mid-object is repaired under the reader: it reads on from the same byte.
            let body = ResumableBody::new(self.store.clone(), &obj.bucket, opened);
            let source = SourceTap::new(SyncIoBridge::new(body));
            let compressed = source.bytes.clone();
            let (limits, create) = (self.limits.clone(), self.create);
            let (normalizer, dead_letters, docs, group, max) = (
                self.normalizer.clone(),
                self.dead_letters.clone(),
                self.docs.clone(),
                group.clone(),
                self.max_record_bytes,
            );
            let meta2 = meta.clone();
            let trace = message_span.cloned();
            let decode_span = tracing::info_span!(
                "decode",
                records = tracing::field::Empty,
                undecodable = tracing::field::Empty,
                decompressed_bytes = tracing::field::Empty
            );
            let read = tokio::task::spawn_blocking(move || {
                let _entered = decode_span.enter();
                let out = Reader {
                    meta: &meta2,
                    normalizer: &normalizer,
                    limits: limits.as_deref(),
                    create,
                    dead_letters: &dead_letters,
                    max_record_bytes: max,
                    docs: &docs,
                    group: &group,
                    trace,
                    pending: RefCell::default(),
                };
                let read = out.read(source);
                if let Ok(stats) = &read {
                    decode_span.record("records", stats.records);
                    decode_span.record("undecodable", stats.undecodable);
                    decode_span.record("decompressed_bytes", stats.decompressed_bytes);
                }
                read
            })
            .await
            .map_err(|e| ObjectError::Read {
                bucket: meta.bucket.clone(),
                key: meta.key.clone(),
                reason: format!("reader task failed: {e}"),
            })?;
            let bytes = compressed.load(Ordering::Relaxed);
            let span = tracing::Span::current();
            span.record("bytes", bytes);
            match read {
                Ok(stats) => {
                    span.record("records", stats.records);
                    events::ObjectRead {
                        records: stats.records,
                        undecodable: stats.undecodable,
                        timestamp_fallbacks: stats.timestamp_fallbacks,
                        timestamp_invalid: stats.timestamp_invalid,
                        dropped_sampled: stats.dropped_sampled,
                        dropped_where: stats.dropped_where,
                        changed: stats.changed,
                        compressed_bytes: bytes,
                        decompressed_bytes: stats.decompressed_bytes,
                        compression: stats.compression,
                    }
                    .emit();
                    Ok(())
                }
                Err(ReadError::Stopped) => Err(ObjectError::Stopped),
                // Only a failing source is reported as Io (corrupt content is dead-lettered instead).
                Err(ReadError::Io(e)) => Err(ObjectError::Read {
                    bucket: meta.bucket.clone(),
                    key: meta.key.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        .instrument(span)
        .await
    }
}

enum ReadError {
    /// The S3 stream failed (network): retry the message later.
    Io(std::io::Error),
    Stopped,
}

/// Everything the blocking reader of one object needs.
struct Reader<'a> {
    meta: &'a Arc<ObjectContext>,
    normalizer: &'a Normalizer,
    limits: Option<&'a Limits>,
    create: bool,
    dead_letters: &'a DeadLetters,
    max_record_bytes: usize,
    docs: &'a mpsc::Sender<Vec<Doc>>,
    group: &'a Arc<AckGroup>,
    /// Documents not yet handed to the batcher (a chunk in the making) and their bytes.
    pending: RefCell<(Vec<Doc>, usize)>,
    /// The message's span, carried by every document so that bulk spans can link to it.
    trace: Option<opentelemetry::trace::SpanContext>,
}

impl Reader<'_> {
    /// Runs on a blocking thread: decompress → frame → decode → normalize → encode → send.
    /// Corrupt content (a truncated gzip, say) ends the object with one dead-letter entry and
    /// keeps every record read before it; a failing source is reported for a retry.
    fn read(
        &self,
        source: SourceTap<impl std::io::Read + Send + 'static>,
    ) -> Result<ObjectStats, ReadError> {
        let failed = source.failed.clone();
        let mut stats = ObjectStats::default();
        let content = match open(source) {
            Ok((compression, content)) => {
                stats.compression = compression.as_str();
                content
            }
            Err(e) if failed.load(Ordering::Relaxed) => return Err(ReadError::Io(e)),
            Err(e) => {
                let dead = DeadRecord {
                    offset: 0,
                    reason: format!("unreadable object: {e}"),
                    raw: String::new(),
                };
                self.send_dead(&dead, &mut stats)?;
                return Ok(stats);
            }
        };
        match content {
            Content::Stream(reader) => {
                self.read_part(reader, 0, &failed, &mut stats)?;
            }
            // Each entry is a part of the object: framed on its own, its offsets following the
            // previous entries' (a skipped entry counts its stored bytes), so ids stay distinct.
            Content::Zip(mut entries) => {
                let mut base = 0;
                loop {
                    match entries.next_entry() {
                        Ok(Some(Entry::Data { reader, .. })) => {
                            match self.read_part(reader, base, &failed, &mut stats)? {
                                Some(end) => base = end,
                                None => break,
                            }
                        }
                        Ok(Some(Entry::Skipped {
                            name,
                            reason,
                            bytes,
                        })) => {
                            let dead = DeadRecord {
                                offset: base,
                                reason,
                                raw: name,
                            };
                            self.send_dead(&dead, &mut stats)?;
                            base += bytes.max(1);
                        }
                        Ok(None) => break,
                        Err(e) if failed.load(Ordering::Relaxed) => return Err(ReadError::Io(e)),
                        Err(e) => {
                            let dead = DeadRecord {
                                offset: base,
                                reason: format!("corrupt or truncated ZIP archive: {e}"),
                                raw: String::new(),
                            };
                            self.send_dead(&dead, &mut stats)?;
                            break;
                        }
                    }
                }
                stats.decompressed_bytes = base;
            }
        }
        self.flush()?;
        Ok(stats)
    }

    /// Frames and decodes one part of the object (the whole of it, or one ZIP entry) whose
    /// offsets start at `base`. Returns the offset after it, or `None` when damage ended it (one
    /// dead-letter entry sent for the rest).
    fn read_part(
        &self,
        reader: impl std::io::Read,
        base: u64,
        failed: &AtomicBool,
        stats: &mut ObjectStats,
    ) -> Result<Option<u64>, ReadError> {
        let mut framer = Framer::at(reader, self.max_record_bytes, base);
        let mut decoder = Decoder::new(self.max_record_bytes);
        let end = loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    decoder.decode(&frame, |item| self.handle(item, stats))?;
                }
                Ok(None) => break Some(framer.position()),
                Err(e) if failed.load(Ordering::Relaxed) => return Err(ReadError::Io(e)),
                Err(e) => {
                    let (offset, partial) = framer.partial();
                    let dead = DeadRecord {
                        offset,
                        reason: format!(
                            "corrupt or truncated data after {} decompressed bytes: {e}",
                            framer.position()
                        ),
                        raw: raw_head(partial),
                    };
                    self.send_dead(&dead, stats)?;
                    break None;
                }
            }
        };
        stats.decompressed_bytes = framer.position();
        Ok(end)
    }

    /// Normalizes, encodes and sends one decoded item.
    fn handle(&self, item: Item<'_>, stats: &mut ObjectStats) -> Result<(), ReadError> {
        let (n, offset, sub) = match self.normalizer.normalize_item(item, self.meta) {
            Ok(normalized) => normalized,
            Err(dead) => return self.send_dead(&dead, stats),
        };
        stats.records += 1;
        stats.timestamp_fallbacks += u64::from(n.timestamp_fallback);
        stats.timestamp_invalid += u64::from(n.timestamp_invalid);
        let n = match self.limits {
            None => n,
            Some(limits) => match limits.apply(n) {
                Verdict::Keep(n, changes) => {
                    stats.changed.add(&changes);
                    n
                }
                // Dropping is the user's intent: no token, nothing sent, counted by reason.
                Verdict::Drop(DropReason::Sampled) => {
                    stats.dropped_sampled += 1;
                    return Ok(());
                }
                Verdict::Drop(DropReason::DropWhere) => {
                    stats.dropped_where += 1;
                    return Ok(());
                }
            },
        };
        self.send(Doc::encode(
            n,
            self.meta.clone(),
            offset,
            sub,
            false,
            self.group.token(),
        ))
    }

    fn send_dead(&self, dead: &DeadRecord, stats: &mut ObjectStats) -> Result<(), ReadError> {
        events::record_undecodable(&self.meta.bucket, &self.meta.key, dead.offset, &dead.reason);
        stats.undecodable += 1;
        let target = self.normalizer.fallback_index(self.meta);
        let n = self
            .dead_letters
            .undecodable(dead, self.meta, Some(&target));
        self.send(Doc::encode(
            n,
            self.meta.clone(),
            dead.offset,
            None,
            true,
            self.group.token(),
        ))
    }

    fn send(&self, mut doc: Doc) -> Result<(), ReadError> {
        if self.create && !doc.dead_letter {
            doc = doc.into_create();
        }
        doc.trace = self.trace.clone();
        let full = {
            let (docs, bytes) = &mut *self.pending.borrow_mut();
            *bytes += doc.body.len();
            docs.push(doc);
            docs.len() >= CHUNK_DOCS || *bytes >= CHUNK_BYTES
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the pending chunk to the batcher. Blocks while the batcher is full: the
    /// backpressure that reaches back to SQS.
    fn flush(&self) -> Result<(), ReadError> {
        let (chunk, _) = std::mem::take(&mut *self.pending.borrow_mut());
        if chunk.is_empty() {
            return Ok(());
        }
        status::board().docs_in(chunk.len());
        self.docs
            .blocking_send(chunk)
            .map_err(|_| ReadError::Stopped)
    }
}
