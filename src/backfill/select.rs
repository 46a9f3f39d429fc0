//! Which objects a backfill takes: the time of an object, the `--from`/`--to` range, and where
//! the listing may start.
//!
//! An object's time is the date-hour in its key when the key follows Firehose's
//! `YYYY/MM/DD/HH/` layout (anywhere in the key: under any prefix), else its LastModified. A
//! key hour covers the whole hour, so an object is selected when that hour overlaps the range
//! (Firehose names an object by the hour its buffer opened; records of the hour may sit in it).
//! Pure functions, tested here.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// `--from` (inclusive) and `--to` (exclusive); `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// How an object's time was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectTime {
    /// The `YYYY/MM/DD/HH/` of its key: the start of that hour.
    KeyHour(DateTime<Utc>),
    LastModified(DateTime<Utc>),
}

impl TimeRange {
    /// Whether an object of time `t` is selected.
    pub fn selects(&self, t: ObjectTime) -> bool {
        let (start, end) = match t {
            ObjectTime::KeyHour(h) => (h, h + Duration::hours(1)),
            // An instant: [t, t] overlaps [from, to) iff from <= t < to.
            ObjectTime::LastModified(t) => (t, t),
        };
        let after_from = self.from.is_none_or(|from| end > from || start >= from);
        let before_to = self.to.is_none_or(|to| start < to);
        after_from && before_to
    }
}

/// The time of an object: its key's Firehose date-hour, else `last_modified`.
pub fn object_time(key: &str, last_modified: Option<DateTime<Utc>>) -> Option<ObjectTime> {
    key_hour(key)
        .map(ObjectTime::KeyHour)
        .or(last_modified.map(ObjectTime::LastModified))
}

/// The first `YYYY/MM/DD/HH/` run of path segments in `key` (at its start or after a `/`).
pub fn key_hour(key: &str) -> Option<DateTime<Utc>> {
    let parts: Vec<&str> = key.split('/').collect();
    // The hour segment must be followed by at least one more segment (the object's name).
    parts.windows(5).find_map(|w| {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(w[0], 4) && digits(w[1], 2) && digits(w[2], 2) && digits(w[3], 2)) {
            return None;
        }
        let date =
            NaiveDate::from_ymd_opt(w[0].parse().ok()?, w[1].parse().ok()?, w[2].parse().ok()?)?;
        let at = date.and_hms_opt(w[3].parse().ok()?, 0, 0)?;
        Some(Utc.from_utc_datetime(&at))
    })
}

/// The listing's `StartAfter` for `--from`: just before the first key of `from`'s hour when the
/// keys follow the Firehose layout directly under `prefix` (`prefix` + `YYYY/MM/DD/HH`, which
/// sorts before every `prefix` + `YYYY/MM/DD/HH/...`).
pub fn start_after(prefix: &str, from: DateTime<Utc>) -> String {
    format!("{prefix}{}", from.format("%Y/%m/%d/%H"))
}

/// True when `key` is `prefix` + `YYYY/MM/DD/HH/...`: the layout [`start_after`] and
/// [`past_end`] rely on.
pub fn layout_under(prefix: &str, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    // `DDDD/DD/DD/DD/` and a name after it.
    let shape = rest.len() > 14
        && rest.as_bytes()[..14]
            .iter()
            .enumerate()
            .all(|(i, b)| match i {
                4 | 7 | 10 | 13 => *b == b'/',
                _ => b.is_ascii_digit(),
            });
    shape && key_hour(rest).is_some()
}

/// True when the listing (in key order, under a `prefix` in the Firehose layout) has passed the
/// last hour `to` can select: every later key in the layout is later still.
pub fn past_end(prefix: &str, key: &str, to: DateTime<Utc>) -> bool {
    layout_under(prefix, key) && key_hour(&key[prefix.len()..]).is_some_and(|h| h >= to)
}

/// A `TIME` of `--from`/`--to`: RFC 3339, or a date (`YYYY-MM-DD`, UTC) or a date and time
/// without offset (`YYYY-MM-DDTHH:MM[:SS]`, UTC). A date alone is the start of that day, or with
/// `end_of_day` (`--to`), the start of the next one: `--to 2026-11-21` includes all of the 21st.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        return Ok(if end_of_day {
            day + Duration::days(1)
        } else {
            day
        });
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(format!(
        "{s:?} is not a time: RFC 3339 (2026-11-20T10:00:00Z), a date (2026-11-20, UTC) or a UTC date and time (2026-11-20T10:00)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn key_hours_under_any_prefix() {
        assert_eq!(
            key_hour("2026/11/20/10/stream-1-2026-11-20-10-00-00-abc.gz"),
            Some(t("2026-11-20T10:00:00Z"))
        );
        assert_eq!(
            key_hour("logs/app/2026/11/20/23/x"),
            Some(t("2026-11-20T23:00:00Z"))
        );
        assert_eq!(
            key_hour("logs/2026/11/20/23"),
            None,
            "no object name after the hour"
        );
        assert_eq!(key_hour("2026/13/20/10/x"), None);
        assert_eq!(key_hour("2026/11/20/24/x"), None);
        assert_eq!(key_hour("a/2026-11-20/x"), None);
        assert_eq!(key_hour("12026/11/20/10/x"), None);
    }

    #[test]
    fn an_hour_is_selected_when_it_overlaps_the_range() {
        let r = TimeRange {
            from: Some(t("2026-11-20T10:30:00Z")),
            to: Some(t("2026-11-20T12:00:00Z")),
        };
        let hour = |s| ObjectTime::KeyHour(t(s));
        assert!(!r.selects(hour("2026-11-20T09:00:00Z")));
        assert!(r.selects(hour("2026-11-20T10:00:00Z")));
        assert!(r.selects(hour("2026-11-20T11:00:00Z")));
        assert!(!r.selects(hour("2026-11-20T12:00:00Z")));
        let lm = |s| ObjectTime::LastModified(t(s));
        assert!(!r.selects(lm("2026-11-20T10:29:59Z")));
        assert!(r.selects(lm("2026-11-20T10:30:00Z")));
        assert!(!r.selects(lm("2026-11-20T12:00:00Z")));
        assert!(TimeRange::default().selects(lm("1970-01-01T00:00:00Z")));
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(
            parse_time("2026-11-20", false).unwrap(),
            t("2026-11-20T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20", true).unwrap(),
            t("2026-11-21T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20T10:00:00+02:00", true).unwrap(),
            t("2026-11-20T08:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20T10:05", false).unwrap(),
            t("2026-11-20T10:05:00Z")
        );
        assert!(parse_time("yesterday", false).is_err());
    }

    #[test]
    fn the_listing_starts_and_ends_by_the_layout() {
        let from = t("2026-11-20T10:30:00Z");
        let after = start_after("fh/", from);
        assert_eq!(after, "fh/2026/11/20/10");
        assert!(after.as_str() < "fh/2026/11/20/10/a");
        assert!(after.as_str() > "fh/2026/11/20/09/z");
        assert!(layout_under("fh/", "fh/2026/11/20/10/a"));
        assert!(!layout_under("fh/", "fh/app/2026/11/20/10/a"));
        assert!(!layout_under("", "manifest.json"));
        assert!(past_end(
            "fh/",
            "fh/2026/11/20/12/a",
            t("2026-11-20T12:00:00Z")
        ));
        assert!(!past_end(
            "fh/",
            "fh/2026/11/20/11/a",
            t("2026-11-20T12:00:00Z")
        ));
    }
}
