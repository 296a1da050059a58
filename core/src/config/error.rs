//! [`ConfigError`], and turning the TOML reader's errors into ones that
//! name the dotted key, the line, and what to write instead.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::{NOT_YET, TABLES};

/// A configuration the server refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `limits.max_message_size`, when one is at fault.
    pub key: Option<String>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `key`, at the start of `span` in `text`.
    pub(super) fn at(text: &str, span: Range<usize>, key: &str, message: String) -> Self {
        Self {
            key: Some(key.to_owned()),
            line: Some(line_of(text, span.start)),
            message,
        }
    }

    /// An error about a value that came from the command line.
    pub(super) fn flag(flag: &str, message: String) -> Self {
        Self {
            key: Some(flag.to_owned()),
            line: None,
            message,
        }
    }
}

/// The 1-based line holding byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// Writes a key path as TOML would accept it: `limits.max_message_size`,
/// `aliases."sales@example.org"`.
pub(super) fn dotted<S: AsRef<str>>(path: &[S]) -> String {
    let bare = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let parts: Vec<String> = path
        .iter()
        .map(|k| {
            let k = k.as_ref();
            if bare(k) {
                k.to_owned()
            } else {
                format!("{k:?}")
            }
        })
        .collect();
    parts.join(".")
}

/// A file that is not TOML at all (unclosed quote, duplicate key, …).
pub(super) fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError {
        key: None,
        line: e.span().map(|s| line_of(text, s.start)),
        message: format!(
            "this is not valid TOML: {}; check the quotes, brackets and commas, and that no key \
             is written twice",
            e.message().trim_end()
        ),
    }
}

/// An error serde met while reading the parsed document `doc` into the
/// raw structs: an unknown key, a value of the wrong kind, or a value its
/// parser refused.
pub(super) fn from_serde(
    text: &str,
    doc: &Spanned<DeTable<'_>>,
    e: &toml::de::Error,
) -> ConfigError {
    let span = e.span();
    let path = span
        .as_ref()
        .and_then(|s| find_key(doc.get_ref(), s.start))
        .unwrap_or_default();
    let line = span.map(|s| line_of(text, s.start));
    let key = (!path.is_empty()).then(|| dotted(&path));
    let msg = e.message().trim_end();
    let message = if msg.starts_with("unknown field") && !path.is_empty() {
        unknown_key(&path)
    } else if let Some((found, expected)) = msg
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        format!("found {}; write {expected}", plain(found))
    } else {
        msg.to_owned()
    };
    ConfigError { key, line, message }
}

/// Names a value serde found in words an administrator uses.
fn plain(found: &str) -> String {
    let inner = |s: &str| s.trim_matches('`').to_owned();
    match found {
        "map" => "a table".into(),
        "sequence" => "a list".into(),
        _ => match found.split_once(' ') {
            Some(("string", s)) => format!("the text {s}"),
            Some(("integer", n)) => match n.split_once(" as ") {
                Some((n, _)) => format!("the number {} (too large)", inner(n)),
                None => format!("the number {}", inner(n)),
            },
            Some(("floating", n)) => {
                format!("the number {}", inner(n.trim_start_matches("point ")))
            }
            Some(("boolean", b)) => inner(b),
            _ => found.to_owned(),
        },
    }
}

/// Says that `path` is not a key hato knows, and which keys its table has.
fn unknown_key(path: &[String]) -> String {
    let full = dotted(path);
    if NOT_YET.contains(&full.as_str()) {
        return format!(
            "`{full}` is not supported by this version of hato yet; remove it (hato refuses \
             to start rather than silently ignore a setting)"
        );
    }
    let (table, key) = match path {
        [table @ .., key] => (dotted(table), key.as_str()),
        [] => (String::new(), ""),
    };
    let Some((_, keys)) = TABLES.iter().find(|(t, _)| *t == table) else {
        return format!("`{full}` is not a setting of hato; remove it");
    };
    let (place, list) = if table.is_empty() {
        (
            "at the top level".to_owned(),
            "the top-level keys are".to_owned(),
        )
    } else {
        (
            format!("in [{table}]"),
            format!("the keys of [{table}] are"),
        )
    };
    let mut msg = format!("unknown key `{key}` {place}; {list}: {}", keys.join(", "));
    if let Some(near) = keys.iter().find(|k| distance(k, key) <= 2) {
        msg.push_str(&format!(" (did you mean `{near}`?)"));
    } else if !table.is_empty() && TABLES[0].1.contains(&key) {
        msg.push_str(&format!(
            " (`{key}` belongs at the top of the file, before the first [table])"
        ));
    }
    msg
}

/// Finds the keys leading to the key or value at byte `at`, innermost last.
fn find_key(table: &DeTable<'_>, at: usize) -> Option<Vec<String>> {
    for (k, v) in table {
        if k.span().contains(&at) {
            return Some(vec![k.get_ref().to_string()]);
        }
        let inner = match v.get_ref() {
            DeValue::Table(t) => find_key(t, at),
            DeValue::Array(a) => a.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(t) => find_key(t, at),
                _ => None,
            }),
            _ => None,
        };
        if let Some(mut rest) = inner {
            rest.insert(0, k.get_ref().to_string());
            return Some(rest);
        }
        if v.span().contains(&at) {
            return Some(vec![k.get_ref().to_string()]);
        }
    }
    None
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }

    #[test]
    fn dotted_keys_quote_what_is_not_bare() {
        assert_eq!(
            dotted(&["limits", "max_message_size"]),
            "limits.max_message_size"
        );
        assert_eq!(
            dotted(&["aliases", "sales@example.org"]),
            "aliases.\"sales@example.org\""
        );
    }

    #[test]
    fn unknown_key_suggests_the_near_one() {
        let m = unknown_key(&["limits".into(), "max_mesage_size".into()]);
        assert!(m.contains("did you mean `max_message_size`"), "{m}");
        let m = unknown_key(&["limits".into(), "hostname".into()]);
        assert!(m.contains("belongs at the top of the file"), "{m}");
    }

    #[test]
    fn display_puts_line_then_key_then_message() {
        let e = ConfigError::at("a\nb = 1\n", 2..3, "b", "bad".into());
        assert_eq!(e.to_string(), "line 2: b: bad");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("max_mesage_size", "max_message_size"), 1);
        assert_eq!(distance("smtp", "smtp"), 0);
        assert_eq!(distance("", "abc"), 3);
    }
}
