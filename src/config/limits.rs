//! The item limits (`FIELDS_INCLUDE`, `FIELDS_EXCLUDE`, `DROP_WHERE`, `SAMPLE_PERCENT`,
//! `MAX_FIELDS_PER_DOCUMENT`, `MAX_DEPTH`, `MAX_STRING_BYTES`), parsed once at start-up into
//! rules the record wing applies ([`crate::record::Limits`]). All are off when unset. A rule that
//! cannot be parsed (an unknown operator, an invalid regex, an empty path segment) is a
//! [`ConfigError`] naming the variable: exit 2, never a worker that silently keeps or drops
//! the wrong records.

use regex::Regex;

use super::env::{err, Env};
use super::ConfigError;

/// The item limits; [`LimitsConfig::is_off`] when none is set.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// `FIELDS_INCLUDE`: when set, only these fields (and the provenance) are kept.
    pub include: Vec<FieldPattern>,
    /// `FIELDS_EXCLUDE`: removed (after the include list); the provenance never is.
    pub exclude: Vec<FieldPattern>,
    /// `DROP_WHERE`: a record matching any of them is dropped.
    pub drop_where: Vec<DropRule>,
    /// `SAMPLE_PERCENT`: the share of records kept, decided by their `_id`; `None`: all.
    pub sample_percent: Option<f64>,
    /// `MAX_FIELDS_PER_DOCUMENT`: more fields than this are moved into `f4a.overflow`.
    pub max_fields: Option<usize>,
    /// `MAX_FIELDS_PER_INDEX`: field paths a target index may get from this worker; documents
    /// bringing new ones beyond are indexed with those moved into `f4a.overflow`.
    pub max_fields_per_index: Option<usize>,
    /// `MAX_DEPTH`: fields nested deeper than this are moved into `f4a.overflow`.
    pub max_depth: Option<usize>,
    /// `MAX_STRING_BYTES`: longer strings are moved into `f4a.overflow`.
    pub max_string_bytes: Option<usize>,
}

impl LimitsConfig {
    pub fn is_off(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.drop_where.is_empty()
            && self.sample_percent.is_none()
            && self.max_fields.is_none()
            && self.max_fields_per_index.is_none()
            && self.max_depth.is_none()
            && self.max_string_bytes.is_none()
    }
}

/// A dotted field path whose segments may hold `*` (any characters within one segment). It
/// matches a field when it matches the field's path or one of its ancestors (`kubernetes`
/// matches `kubernetes.pod.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPattern {
    pub segments: Vec<String>,
}

/// One `DROP_WHERE` condition.
#[derive(Debug, Clone)]
pub struct DropRule {
    /// Dotted path (a top-level key with dots is found too).
    pub field: String,
    pub op: DropOp,
}

#[derive(Debug, Clone)]
pub enum DropOp {
    /// `field=value`: the field's value (its text for a number or boolean) equals `value`.
    Eq(String),
    /// `field!=value`: the field is missing or differs.
    Ne(String),
    /// `field=~regex`: the field's value matches `regex` (unanchored).
    Matches(Regex),
}

pub(super) fn limits(env: &Env<'_>) -> Result<LimitsConfig, ConfigError> {
    let cap = |var: &'static str, max: u64| -> Result<Option<usize>, ConfigError> {
        Ok(match env.uint(var, 0, 0, max)? {
            0 => None,
            n => Some(n as usize),
        })
    };
    Ok(LimitsConfig {
        include: field_patterns(env, "FIELDS_INCLUDE")?,
        exclude: field_patterns(env, "FIELDS_EXCLUDE")?,
        drop_where: drop_rules(env)?,
        sample_percent: sample_percent(env)?,
        max_fields: cap("MAX_FIELDS_PER_DOCUMENT", 100_000)?,
        max_fields_per_index: cap("MAX_FIELDS_PER_INDEX", 1_000_000)?,
        max_depth: cap("MAX_DEPTH", 1_000)?,
        max_string_bytes: cap("MAX_STRING_BYTES", 256 * 1024 * 1024)?,
    })
}

fn field_patterns(env: &Env<'_>, var: &'static str) -> Result<Vec<FieldPattern>, ConfigError> {
    let Some(raw) = env.string(var) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let segments: Vec<String> = entry.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(err(
                var,
                Some(&raw),
                &format!("{entry:?} has an empty path segment"),
                "a comma-separated list of dotted field paths, `*` matching within a segment (kubernetes.labels.*, *_id)",
            ));
        }
        out.push(FieldPattern { segments });
    }
    Ok(out)
}

fn drop_rules(env: &Env<'_>) -> Result<Vec<DropRule>, ConfigError> {
    const ACCEPTED: &str =
        "conditions separated by `;`, each field=value, field!=value or field=~regex";
    let Some(raw) = env.string("DROP_WHERE") else {
        return Ok(vec![]);
    };
    let bad = |problem: String| err("DROP_WHERE", Some(&raw), &problem, ACCEPTED);
    let mut out = vec![];
    for cond in raw.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let Some(eq) = cond.find('=') else {
            return Err(bad(format!("{cond:?} has no operator")));
        };
        let (left, right) = (&cond[..eq], &cond[eq + 1..]);
        let (field, op) = if let Some(field) = left.strip_suffix('!') {
            (field, DropOp::Ne(right.trim().to_string()))
        } else if let Some(re) = right.strip_prefix('~') {
            let re =
                Regex::new(re.trim()).map_err(|e| bad(format!("{cond:?}: invalid regex: {e}")))?;
            (left, DropOp::Matches(re))
        } else if right.starts_with('=') || left.ends_with(['<', '>', '~']) {
            return Err(bad(format!("{cond:?} has an unknown operator")));
        } else {
            (left, DropOp::Eq(right.trim().to_string()))
        };
        let field = field.trim();
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(bad(format!("{cond:?} names no field")));
        }
        out.push(DropRule {
            field: field.to_string(),
            op,
        });
    }
    Ok(out)
}

fn sample_percent(env: &Env<'_>) -> Result<Option<f64>, ConfigError> {
    let Some(raw) = env.string("SAMPLE_PERCENT") else {
        return Ok(None);
    };
    match raw.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok((p < 100.0).then_some(p)),
        _ => Err(err(
            "SAMPLE_PERCENT",
            Some(&raw),
            "is not a percentage",
            "a number from 0 to 100 (decimals allowed)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<LimitsConfig, ConfigError> {
        let get = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        limits(&Env { get: &get })
    }

    #[test]
    fn unset_is_off() {
        assert!(parse(&[]).unwrap().is_off());
        assert!(parse(&[("SAMPLE_PERCENT", "100")]).unwrap().is_off());
        assert!(parse(&[("MAX_DEPTH", "0")]).unwrap().is_off());
    }

    #[test]
    fn rules_parse() {
        let c = parse(&[
            ("FIELDS_INCLUDE", "message, level,kubernetes.*"),
            ("FIELDS_EXCLUDE", "*.password"),
            ("DROP_WHERE", "level=debug; status != 200 ;path=~^/health ;"),
            ("SAMPLE_PERCENT", "12.5"),
            ("MAX_FIELDS_PER_DOCUMENT", "100"),
        ])
        .unwrap();
        assert_eq!(c.include.len(), 3);
        assert_eq!(c.include[2].segments, ["kubernetes", "*"]);
        assert_eq!(c.exclude[0].segments, ["*", "password"]);
        assert_eq!(c.drop_where.len(), 3);
        assert!(matches!(&c.drop_where[0].op, DropOp::Eq(v) if v == "debug"));
        assert_eq!(c.drop_where[1].field, "status");
        assert!(matches!(&c.drop_where[1].op, DropOp::Ne(v) if v == "200"));
        assert!(matches!(&c.drop_where[2].op, DropOp::Matches(r) if r.is_match("/healthz")));
        assert_eq!(c.sample_percent, Some(12.5));
        assert_eq!(c.max_fields, Some(100));
        assert!(!c.is_off());
    }

    #[test]
    fn bad_rules_name_the_variable() {
        for (var, value) in [
            ("DROP_WHERE", "level>3"),
            ("DROP_WHERE", "level==3"),
            ("DROP_WHERE", "level<=3"),
            ("DROP_WHERE", "=x"),
            ("DROP_WHERE", "msg=~(unclosed"),
            ("FIELDS_INCLUDE", "a..b"),
            ("FIELDS_EXCLUDE", "a.,b"),
            ("SAMPLE_PERCENT", "101"),
            ("SAMPLE_PERCENT", "half"),
            ("MAX_DEPTH", "-1"),
        ] {
            let e = parse(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{value}: {e}");
        }
        let e = parse(&[("DROP_WHERE", "msg=~(unclosed")]).unwrap_err();
        assert!(e.problem.contains("invalid regex"), "{e}");
    }
}
