//! `@timestamp`: parsing what records carry, and writing RFC 3339 UTC with milliseconds.
//!
//! Accepted: RFC 3339 / ISO 8601 strings (offset optional, `T` or space) and epoch seconds or
//! milliseconds (micro-, nanoseconds) as numbers or numeric strings.

use bytes::BufMut;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

/// `2026-11-24T10:00:00.123Z`: RFC 3339, UTC, milliseconds. Written by hand for the years
/// 0–9999 (chrono's general formatter is a large share of the normalizer's cost per record).
pub fn rfc3339_millis(ts: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_millis(ts, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`rfc3339_millis`] appended to `buf`.
pub fn write_rfc3339_millis(ts: DateTime<Utc>, buf: &mut impl BufMut) {
    use chrono::{Datelike, Timelike};
    let year = ts.year();
    if !(0..=9999).contains(&year) {
        buf.put_slice(ts.to_rfc3339_opts(SecondsFormat::Millis, true).as_bytes());
        return;
    }
    let millis = ts.timestamp_subsec_millis().min(999);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: u32, digits: usize| {
        for d in 0..digits {
            out[at + digits - 1 - d] = b'0' + (value / 10u32.pow(d as u32) % 10) as u8;
        }
    };
    put(0, year as u32, 4);
    put(5, ts.month(), 2);
    put(8, ts.day(), 2);
    put(11, ts.hour(), 2);
    put(14, ts.minute(), 2);
    put(17, ts.second().min(59), 2);
    put(20, millis, 3);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = c;
    }
    buf.put_slice(&out);
}

/// RFC 3339 / ISO 8601 strings (offset optional, `T` or space) and epoch numbers: below 1e11 they
/// are seconds (fractions allowed), below 1e14 milliseconds, then microseconds, then nanoseconds.
pub fn parse_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => n.as_f64().and_then(from_epoch),
        Value::String(s) => parse_timestamp_text(s),
        _ => None,
    }
}

/// [`parse_timestamp`] of a value's JSON text, without building a `Value` for the usual cases.
pub(super) fn parse_raw_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    match raw.as_bytes().first() {
        Some(b'"') if !raw.contains('\\') => parse_timestamp_text(&raw[1..raw.len() - 1]),
        Some(b'-' | b'0'..=b'9') => raw.parse::<f64>().ok().and_then(from_epoch),
        _ => serde_json::from_str::<Value>(raw)
            .ok()
            .as_ref()
            .and_then(parse_timestamp),
    }
}

fn parse_timestamp_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.to_utc());
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc());
        }
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return s.parse::<f64>().ok().and_then(from_epoch);
    }
    None
}

fn from_epoch(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() {
        return None;
    }
    let a = x.abs();
    let units_per_sec = if a < 1e11 {
        1.0
    } else if a < 1e14 {
        1e3
    } else if a < 1e17 {
        1e6
    } else {
        1e9
    };
    // Whole seconds and the remainder apart: one f64 product in nanoseconds loses the millis.
    let secs = (x / units_per_sec).floor();
    if !(-1e13..=1e13).contains(&secs) {
        return None;
    }
    let rem_micros = ((x - secs * units_per_sec) * (1e6 / units_per_sec)).round();
    let nanos = (rem_micros as u32).min(999_999) * 1000;
    DateTime::from_timestamp(secs as i64, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps() {
        let t =
            |v: Value| parse_timestamp(&v).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        assert_eq!(
            t(json!("2026-11-24T10:00:00.5+02:00")).unwrap(),
            "2026-11-24T08:00:00.500Z"
        );
        assert_eq!(
            t(json!("2026-11-24 10:00:00")).unwrap(),
            "2026-11-24T10:00:00.000Z"
        );
        assert_eq!(
            t(json!("2026-11-24T10:00:00.123+0000")).unwrap(),
            "2026-11-24T10:00:00.123Z"
        );
        assert_eq!(t(json!(1764000000)).unwrap(), "2025-11-24T16:00:00.000Z");
        assert_eq!(t(json!(1764000000.25)).unwrap(), "2025-11-24T16:00:00.250Z");
        assert_eq!(
            t(json!(1764000000123u64)).unwrap(),
            "2025-11-24T16:00:00.123Z"
        );
        assert_eq!(
            t(json!("1764000000123")).unwrap(),
            "2025-11-24T16:00:00.123Z"
        );
        assert_eq!(t(json!("yesterday")), None);
        assert_eq!(t(json!(true)), None);
        assert_eq!(t(json!(1e300)), None);
        assert_eq!(t(json!("")), None);
    }

    #[test]
    fn hand_written_formats_match_the_general_ones() {
        for t in [
            "2026-11-24T10:00:00.123Z",
            "1970-01-01T00:00:00Z",
            "0001-02-03T04:05:06.999999Z",
            "9999-12-31T23:59:59.5Z",
            "2024-02-29T12:34:56.007Z",
        ] {
            let ts = DateTime::parse_from_rfc3339(t).unwrap().to_utc();
            assert_eq!(
                rfc3339_millis(ts),
                ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                "{t}"
            );
        }
        let far = DateTime::from_timestamp(300_000_000_000, 0).unwrap();
        assert_eq!(
            rfc3339_millis(far),
            far.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }
}
