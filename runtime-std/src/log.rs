//! One `key=value` line per event on stderr (DESIGN.md §5).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hato_core::time::UnixTime;

/// Returns the wall clock as [`UnixTime`].
pub fn unix_now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// A log line under construction: `time=... key=value ...`.
#[derive(Debug)]
pub struct Line {
    text: String,
}

impl Line {
    /// Starts a line for `event`, stamped with the current time.
    pub fn new(event: &str) -> Self {
        let mut text = String::with_capacity(160);
        let _ = write!(text, "time={} event={}", unix_now().rfc3339(), event);
        Self { text }
    }

    /// Adds `key=value`, quoting the value when it holds spaces, quotes,
    /// `=` or control characters (which are escaped, so one event is one line).
    #[must_use]
    pub fn kv(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.text.push(' ');
        self.text.push_str(key);
        self.text.push('=');
        // Formatted in place; only a value that needs quoting is moved
        // out and written again (no String per value otherwise).
        let start = self.text.len();
        let _ = write!(self.text, "{value}");
        if !is_plain(&self.text[start..]) {
            let raw = self.text.split_off(start);
            push_quoted(&mut self.text, &raw);
        }
        self
    }

    /// Adds `key=value` when the value is present.
    #[must_use]
    pub fn opt(self, key: &str, value: Option<impl fmt::Display>) -> Self {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    /// Returns the text of the line, without newline.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Writes the line to stderr in one write.
    pub fn emit(mut self) {
        self.text.push('\n');
        let _ = std::io::stderr().lock().write_all(self.text.as_bytes());
    }
}

/// Whether `value` can stand unquoted after `key=`.
fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=')
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_spaces_are_quoted_and_escaped() {
        let l = Line::new("refuse")
            .kv("peer", "192.0.2.1")
            .kv("reason", "unknown local user <x@y>")
            .kv("helo", "a\"b\r\nc")
            .kv("empty", "")
            .kv("n", 42);
        let s = l.as_str();
        assert!(s.starts_with("time="));
        assert!(s.ends_with(
            r#" event=refuse peer=192.0.2.1 reason="unknown local user <x@y>" helo="a\"b\r\nc" empty="" n=42"#
        ));
    }
}
