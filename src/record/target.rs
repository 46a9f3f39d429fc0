//! Where a document goes: its deterministic `_id` and its index name.
//!
//! The `_id` hashes bucket, key, object version (or ETag), byte offset and sub-position, so a
//! redelivered message overwrites its documents and a rewritten object gets new ones. The index
//! is `ES_INDEX` rendered with the document's `@timestamp` (UTC).

use std::cell::RefCell;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::provenance::ObjectContext;
use crate::config::IndexPattern;

/// Index names kept per thread by [`IndexNames::name`].
const INDEX_CACHE_DAYS: usize = 4;

thread_local! {
    /// Index names last rendered on this thread: (pattern, UTC day, name).
    static INDEX_CACHE: RefCell<Vec<(String, i64, Arc<str>)>> = const { RefCell::new(Vec::new()) };
}

/// `ES_INDEX`, rendered per document.
#[derive(Debug, Clone)]
pub struct IndexNames {
    pattern: IndexPattern,
    /// The pattern uses date items only, so its name is the same for a whole UTC day.
    daily: bool,
}

impl IndexNames {
    pub fn new(pattern: IndexPattern) -> IndexNames {
        IndexNames {
            daily: date_only(pattern.as_str()),
            pattern,
        }
    }

    /// The name for a document of time `ts`; a date-only pattern is rendered once per UTC day
    /// and thread (strftime formatting costs more than everything else the normalizer does to a
    /// record).
    pub fn name(&self, ts: DateTime<Utc>) -> Arc<str> {
        if !self.daily {
            return self.pattern.render(ts).into();
        }
        let day = ts.timestamp().div_euclid(86_400);
        INDEX_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, _, name)) = cache
                .iter()
                .find(|(pattern, d, _)| *d == day && pattern == self.pattern.as_str())
            {
                return name.clone();
            }
            let name: Arc<str> = self.pattern.render(ts).into();
            // A few days at once (late records, objects spanning midnight) stay cached.
            if cache.len() >= INDEX_CACHE_DAYS {
                cache.remove(0);
            }
            cache.push((self.pattern.as_str().to_string(), day, name.clone()));
            name
        })
    }
}

/// True when every strftime item of `pattern` depends on the date alone (year, month, day, week,
/// weekday): then the rendered name cannot change within a UTC day.
fn date_only(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            i += 1;
            // Padding flags, width and chrono's modifiers.
            while i < b.len() && matches!(b[i], b'-' | b'_' | b'0'..=b'9' | b'.' | b':' | b'#') {
                i += 1;
            }
            match b.get(i) {
                Some(c) if b"YCymbBhdeaAwuUWGgVjDxFv%nt".contains(c) => {}
                _ => return false,
            }
        }
        i += 1;
    }
    true
}

/// A document `_id`: 32 lowercase hex digits, held inline (no allocation per document).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DocId([u8; 32]);

impl DocId {
    /// `s` if it is an id of the worker's (32 lowercase hex digits).
    pub fn parse(s: &str) -> Option<DocId> {
        let bytes: [u8; 32] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(DocId(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ever hex digits (see document_id).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for DocId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 128-bit xxh3 of the record's coordinates, hex: stable across runs, versions and machines.
pub fn document_id(obj: &ObjectContext, offset: u64, sub: Option<u32>) -> DocId {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        obj.bucket.as_bytes(),
        obj.key.as_bytes(),
        obj.version.as_bytes(),
    ] {
        hasher.update(part);
        hasher.update(&[0]);
    }
    hasher.update(&offset.to_le_bytes());
    if let Some(sub) = sub {
        hasher.update(&sub.to_le_bytes());
    }
    let hash = hasher.digest128();
    // Hand-rolled hex: `format!` costs more than the hash itself.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((hash >> ((31 - i) * 4)) & 0xf) as usize];
    }
    DocId(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_support::object_context as ctx;

    #[test]
    fn document_ids_hash_the_records_coordinates() {
        let id = document_id(&ctx(), 7, Some(3));
        let hash = {
            let mut key = b"b\x002026/11/24/10/obj\x00etag1\x00".to_vec();
            key.extend_from_slice(&7u64.to_le_bytes());
            key.extend_from_slice(&3u32.to_le_bytes());
            xxhash_rust::xxh3::xxh3_128(&key)
        };
        assert_eq!(id.as_str(), format!("{hash:032x}"));
        assert_eq!(DocId::parse(id.as_str()), Some(id));
        for not_ours in [
            "",
            "abc",
            &id.as_str().to_uppercase(),
            &format!("{}0", id.as_str()),
        ] {
            assert_eq!(DocId::parse(not_ours), None, "{not_ours:?}");
        }
    }

    #[test]
    fn index_names_per_day_are_cached_only_for_date_patterns() {
        assert!(date_only("f4a-%Y.%m.%d"));
        assert!(date_only("logs-%G-w%V-%a"));
        assert!(date_only("static-name"));
        assert!(!date_only("f4a-%Y.%m.%d.%H"));
        assert!(!date_only("f4a-%s"));
        assert!(!date_only("f4a-%Y%"));
        let cfg = |pattern: &str| {
            crate::config::Config::from_lookup(|k| match k {
                "SQS_QUEUE_URL" => Some("http://localhost/q".to_string()),
                "ES_INDEX" => Some(pattern.to_string()),
                _ => None,
            })
            .unwrap()
            .record
            .index
        };
        let default = IndexNames::new(crate::record::test_support::default_index());
        let ts = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let daily = IndexNames::new(cfg("d-%Y.%m.%d"));
        let hourly = IndexNames::new(cfg("h-%Y.%m.%d.%H"));
        assert!(daily.daily && !hourly.daily);
        // Interleaved patterns and days on one thread: every name is still right.
        for (t, d, h) in [
            (
                "2026-11-24T23:59:59.999Z",
                "d-2026.11.24",
                "h-2026.11.24.23",
            ),
            ("2026-11-24T00:00:00Z", "d-2026.11.24", "h-2026.11.24.00"),
            ("2026-11-25T00:00:00Z", "d-2026.11.25", "h-2026.11.25.00"),
            ("1969-12-31T23:59:59Z", "d-1969.12.31", "h-1969.12.31.23"),
            ("2026-11-25T13:00:00Z", "d-2026.11.25", "h-2026.11.25.13"),
        ] {
            assert_eq!(&*daily.name(ts(t)), d);
            assert_eq!(&*hourly.name(ts(t)), h);
            assert_eq!(*default.name(ts(t)), default.pattern.render(ts(t)));
        }
    }
}
