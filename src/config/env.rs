//! Reading one variable: trimming, "empty means unset", numbers and booleans with their ranges,
//! and the [`ConfigError`] that names the variable, the value and what is accepted.

use chrono::format::{Item, StrftimeItems};

/// A configuration value that cannot be used. Displayed as one line an operator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}={value}: {problem} (accepted: {accepted})")]
pub struct ConfigError {
    pub var: String,
    /// Already quoted, or `<unset>` / `<redacted>`.
    pub value: String,
    pub problem: String,
    pub accepted: String,
}

/// `ES_INDEX`: a strftime pattern rendered with each record's `@timestamp` (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    pattern: String,
    /// No `%` at all: the name is used as is and never formatted.
    literal: bool,
}

impl IndexPattern {
    pub fn render(&self, ts: chrono::DateTime<chrono::Utc>) -> String {
        if self.literal {
            self.pattern.clone()
        } else {
            // Validated at start-up, so formatting cannot fail (an invalid item would panic in Display).
            ts.format(&self.pattern).to_string()
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// The rendered name changes from one day to the next (it holds the date), so the date of
    /// an index can be read back from its name (retention).
    pub fn has_date(&self) -> bool {
        let day = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::Duration::days(11_000);
        [1, 31, 366].iter().all(|d| {
            self.render(day) != self.render(day + chrono::Duration::days(*d))
                && self.render(day) != self.render(day - chrono::Duration::days(*d))
        })
    }
}

/// The variables, through a lookup (the process environment, or a map in tests).
pub(super) struct Env<'a> {
    pub(super) get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// An unset or empty variable counts as unset: ECS task definitions often carry "" for "default".
    pub(super) fn string(&self, var: &str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn uint(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.string(var) else {
            return Ok(default);
        };
        let accepted = format!("an integer from {min} to {max}");
        let n: u64 = raw
            .parse()
            .map_err(|_| err(var, Some(&raw), "is not a whole number", &accepted))?;
        if n < min || n > max {
            return Err(err(var, Some(&raw), "is out of range", &accepted));
        }
        Ok(n)
    }

    pub(super) fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.string(var).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(err(
                var,
                Some(other),
                "is not a boolean",
                "true, false, 1, 0, yes, no",
            )),
        }
    }
}

pub(super) fn err(var: &str, value: Option<&str>, problem: &str, accepted: &str) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        value: value.map_or_else(|| "<unset>".to_string(), |v| format!("{v:?}")),
        problem: problem.to_string(),
        accepted: accepted.to_string(),
    }
}

pub(super) fn check_http_url(var: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() > "https://".len();
    if ok {
        Ok(())
    } else {
        Err(err(
            var,
            Some(value),
            "is not an http(s) URL",
            "http://host:port or https://host:port",
        ))
    }
}

/// Validates an index name or strftime pattern: every `%` item must be known (chrono panics while
/// formatting an unknown one) and the rendered name must be a legal Elasticsearch index name.
pub(super) fn index_pattern(var: &'static str, pattern: &str) -> Result<IndexPattern, ConfigError> {
    let accepted = "a lowercase index name, optionally with strftime items such as %Y %m %d %H";
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(err(
            var,
            Some(pattern),
            "has an invalid strftime item",
            accepted,
        ));
    }
    let literal = !pattern.contains('%');
    let sample = if literal {
        pattern.to_string()
    } else {
        chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
            .format(pattern)
            .to_string()
    };
    let illegal = |c: char| {
        c.is_uppercase()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
            )
    };
    if sample.is_empty()
        || sample.len() > 255
        || sample.starts_with(['-', '_', '+', '.'])
        || sample.chars().any(illegal)
    {
        return Err(err(
            var,
            Some(pattern),
            "is not a valid index name",
            accepted,
        ));
    }
    Ok(IndexPattern {
        pattern: pattern.to_string(),
        literal,
    })
}
