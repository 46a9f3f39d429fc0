//! Retention by the data's own date (`RETENTION_DAYS`, `DEAD_LETTER_RETENTION_DAYS`,
//! `RETENTION_DRY_RUN`, `RETENTION_MAX_DELETES_PER_RUN`).
//!
//! An index is deleted only when `ES_INDEX` renders exactly its name from a date (read back from
//! the name, so a backfilled old day goes as soon as it is old, whatever its creation time) and
//! that date is more than `RETENTION_DAYS` days before today (UTC): never today, never a future
//! date, never an index the pattern did not produce, never the dead-letter index. At most
//! `RETENTION_MAX_DELETES_PER_RUN` per run, oldest first (the rest go at the next run). Every
//! index is deleted by its own name (no wildcard: `action.destructive_requires_name` holds); a
//! 404 means another task deleted it first. Dead-letter entries older than
//! `DEAD_LETTER_RETENTION_DAYS` are deleted from `DEAD_LETTER_INDEX` by query. Only the
//! `delete_index` (and, for dead letters, `delete`) index privileges are needed: no ILM/ISM.

use chrono::format::{parse, Parsed, StrftimeItems};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde_json::json;

use super::admin::ClusterAdmin;
use crate::config::{index_glob, Config, IndexPattern, RetentionConfig};
use crate::metrics;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Deleted (or, in a dry run, to be deleted), oldest first.
    pub deleted: Vec<String>,
    /// Old enough but left for the next run (the per-run bound).
    pub deferred: usize,
    pub dead_letters_deleted: u64,
}

pub struct Retention {
    index: IndexPattern,
    dead_letter_index: String,
    cfg: RetentionConfig,
    /// A 401/403 was logged: not logged again.
    forbidden_logged: bool,
}

impl Retention {
    /// `None` when both retentions are off (the default).
    pub fn new(cfg: &Config) -> Option<Retention> {
        let r = cfg.cluster.retention;
        (r.days.is_some() || r.dead_letter_days.is_some()).then(|| Retention {
            index: cfg.record.index.clone(),
            dead_letter_index: cfg.record.dead_letter_index.clone(),
            cfg: r,
            forbidden_logged: false,
        })
    }

    pub async fn run(&mut self, admin: &dyn ClusterAdmin, now: DateTime<Utc>) -> RetentionReport {
        let mut report = RetentionReport::default();
        if let Some(days) = self.cfg.days {
            self.indices(admin, now, days, &mut report).await;
        }
        if let Some(days) = self.cfg.dead_letter_days {
            self.dead_letters(admin, days, &mut report).await;
        }
        report
    }

    async fn indices(
        &mut self,
        admin: &dyn ClusterAdmin,
        now: DateTime<Utc>,
        days: u32,
        report: &mut RetentionReport,
    ) {
        let glob = index_glob(&self.index);
        let path = format!("_cat/indices/{glob}?format=json&h=index&expand_wildcards=all");
        let names: Vec<String> = match admin.get(&path).await {
            Ok(r) if r.is_success() => r
                .json()
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter_map(|row| row["index"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            Ok(r) if matches!(r.status, 401 | 403) => {
                return self.forbidden("GET _cat/indices", "monitor")
            }
            Ok(r) => {
                tracing::warn!(
                    status = r.status,
                    "retention: listing the indices failed; trying again in an hour"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: listing the indices failed; trying again in an hour");
                return;
            }
        };
        let cutoff = now.date_naive() - Duration::days(i64::from(days));
        let mut old: Vec<(NaiveDate, String)> = names
            .into_iter()
            .filter(|n| *n != self.dead_letter_index)
            .filter_map(|n| Some((index_date(&self.index, &n)?, n)))
            .filter(|(date, _)| *date < cutoff)
            .collect();
        old.sort();
        report.deferred = old.len().saturating_sub(self.cfg.max_deletes_per_run);
        old.truncate(self.cfg.max_deletes_per_run);
        for (date, name) in old {
            if self.cfg.dry_run {
                tracing::info!(index = %name, %date, retention_days = days, "retention (dry run): would delete this index");
                report.deleted.push(name);
                continue;
            }
            match admin.delete(&name).await {
                Ok(r) if r.is_success() => {
                    tracing::info!(index = %name, %date, retention_days = days, "retention: index deleted");
                    metrics::get().index_deleted();
                    report.deleted.push(name);
                }
                // Another task deleted it first.
                Ok(r) if r.status == 404 => report.deleted.push(name),
                Ok(r) if matches!(r.status, 401 | 403) => {
                    return self.forbidden("DELETE index", "delete_index");
                }
                Ok(r) => {
                    tracing::warn!(index = %name, status = r.status, "retention: deleting the index failed; trying again in an hour")
                }
                Err(e) => {
                    tracing::warn!(index = %name, error = %e, "retention: deleting the index failed; trying again in an hour")
                }
            }
        }
        if report.deferred > 0 {
            tracing::info!(
                deferred = report.deferred,
                "retention: more old indices than RETENTION_MAX_DELETES_PER_RUN; the rest go at the next run"
            );
        }
    }

    async fn dead_letters(
        &mut self,
        admin: &dyn ClusterAdmin,
        days: u32,
        report: &mut RetentionReport,
    ) {
        let range = json!({"query": {"range": {"@timestamp": {"lt": format!("now-{days}d/d")}}}});
        if self.cfg.dry_run {
            tracing::info!(index = %self.dead_letter_index, retention_days = days, "retention (dry run): would delete the dead-letter entries older than this");
            return;
        }
        let path = format!(
            "{}/_delete_by_query?conflicts=proceed&ignore_unavailable=true",
            self.dead_letter_index
        );
        match admin.post(&path, range).await {
            Ok(r) if r.is_success() => {
                report.dead_letters_deleted = r.json()["deleted"].as_u64().unwrap_or(0);
                if report.dead_letters_deleted > 0 {
                    tracing::info!(index = %self.dead_letter_index, deleted = report.dead_letters_deleted, retention_days = days, "retention: old dead-letter entries deleted");
                }
            }
            Ok(r) if r.status == 404 => {}
            Ok(r) if matches!(r.status, 401 | 403) => self.forbidden("_delete_by_query", "delete"),
            Ok(r) => tracing::warn!(
                status = r.status,
                "retention: deleting old dead-letter entries failed; trying again in an hour"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "retention: deleting old dead-letter entries failed; trying again in an hour")
            }
        }
    }

    fn forbidden(&mut self, what: &str, privilege: &str) {
        if !self.forbidden_logged {
            tracing::error!(
                request = what,
                privilege,
                "retention is not permitted (HTTP 401/403): the worker's user needs the index privilege named here on ES_INDEX's indices; indexing goes on, nothing is deleted"
            );
            self.forbidden_logged = true;
        }
    }
}

/// The date `pattern` rendered `name` from, if it did: parsing alone accepts names the pattern
/// would never write (`f4a-2026.1.5` for `f4a-%Y.%m.%d`), so the name must render back exactly.
pub fn index_date(pattern: &IndexPattern, name: &str) -> Option<NaiveDate> {
    let mut parsed = Parsed::new();
    parse(&mut parsed, name, StrftimeItems::new(pattern.as_str())).ok()?;
    let date = parsed.to_naive_date().ok()?;
    // An hourly pattern names no minute: fill what it does not name (an error only when set).
    let _ = parsed.set_minute(0);
    let _ = parsed.set_second(0);
    let time = parsed.to_naive_time().unwrap_or(NaiveTime::MIN);
    let ts = date.and_time(time).and_utc();
    (pattern.render(ts) == name).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::admin::MemoryAdmin;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|k| {
            if k == "SQS_QUEUE_URL" {
                return Some("http://localhost/q".into());
            }
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T06:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn dates_are_read_back_only_from_names_the_pattern_renders() {
        let p = cfg(&[]).record.index;
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        assert_eq!(index_date(&p, "f4a-2026.11.24"), d("2026-11-24"));
        assert_eq!(index_date(&p, "f4a-2026.1.5"), None);
        assert_eq!(index_date(&p, "f4a-dead-letter"), None);
        assert_eq!(index_date(&p, "f4a-2026.11.24-restored"), None);
        assert_eq!(index_date(&p, "other-2026.11.24"), None);
        let hourly = cfg(&[("ES_INDEX", "h-%Y.%m.%d.%H")]).record.index;
        assert_eq!(index_date(&hourly, "h-2026.11.24.13"), d("2026-11-24"));
    }

    #[tokio::test]
    async fn deletes_exactly_the_old_indices_of_the_pattern() {
        let admin = MemoryAdmin::new();
        let today = now().date_naive();
        for back in -2..=40i64 {
            let day = today - Duration::days(back);
            admin.add_index(&day.format("f4a-%Y.%m.%d").to_string());
        }
        for other in [
            "f4a-dead-letter",
            "unrelated-2020.01.01",
            "f4a-2020.01.01-kept",
            "f4a-2020.1.1",
        ] {
            admin.add_index(other);
        }
        let before = admin.indices();
        let mut dry = Retention::new(&cfg(&[
            ("RETENTION_DAYS", "30"),
            ("RETENTION_DRY_RUN", "true"),
        ]))
        .unwrap();
        let report = dry.run(&admin, now()).await;
        assert_eq!(report.deleted.len(), 10);
        assert_eq!(admin.indices(), before, "a dry run deletes nothing");

        let mut r = Retention::new(&cfg(&[
            ("RETENTION_DAYS", "30"),
            ("RETENTION_MAX_DELETES_PER_RUN", "6"),
        ]))
        .unwrap();
        let first = r.run(&admin, now()).await;
        assert_eq!(first.deleted.len(), 6);
        assert_eq!(first.deferred, 4);
        assert_eq!(first.deleted[0], "f4a-2026.10.23", "oldest first");
        let second = r.run(&admin, now()).await;
        assert_eq!(second.deleted.len(), 4);
        assert_eq!(second.deferred, 0);
        let after = admin.indices();
        assert_eq!(before.len() - after.len(), 10);
        for back in -2..=30i64 {
            let day = today - Duration::days(back);
            assert!(
                after.contains(&day.format("f4a-%Y.%m.%d").to_string()),
                "{day}"
            );
        }
        for other in [
            "f4a-dead-letter",
            "unrelated-2020.01.01",
            "f4a-2020.01.01-kept",
            "f4a-2020.1.1",
        ] {
            assert!(after.contains(&other.to_string()), "{other}");
        }
        assert!(r.run(&admin, now()).await.deleted.is_empty());
    }

    #[tokio::test]
    async fn forbidden_deletes_nothing_and_off_builds_nothing() {
        assert!(Retention::new(&cfg(&[])).is_none());
        let admin = MemoryAdmin::new();
        admin.add_index("f4a-2020.01.01");
        admin.forbid("f4a-2020");
        let mut r = Retention::new(&cfg(&[("RETENTION_DAYS", "1")])).unwrap();
        assert!(r.run(&admin, now()).await.deleted.is_empty());
        assert!(r.forbidden_logged);
        assert_eq!(admin.indices(), ["f4a-2020.01.01"]);
    }
}
