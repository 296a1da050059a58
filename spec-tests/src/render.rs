//! The rendered conversation that is snapshotted and compared: the
//! transcript's steps interleaved with the server's reply lines.

use crate::transcript::escape;

/// A conversation being written down.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conversation {
    text: String,
}

impl Conversation {
    /// Records a client write, shown as its transcript text.
    pub fn client(&mut self, shown: &str) {
        self.line("C: ", shown);
    }

    /// Records a pause.
    pub fn wait(&mut self, shown: &str) {
        self.line("W: ", shown);
    }

    /// Records bytes from the server, one `S:` line per CRLF-ended line.
    /// A last line without CRLF is shown with a trailing `\c`.
    pub fn server(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, tail, crlf) = match find_crlf(rest) {
                Some(i) => (&rest[..i], &rest[i + 2..], true),
                None => (rest, &rest[rest.len()..], false),
            };
            let mut shown = normalize(&escape(line));
            if !crlf {
                shown.push_str("\\c");
            }
            self.line("S: ", &shown);
            rest = tail;
        }
    }

    /// Records a note of the harness (`-- closed`, ...).
    pub fn note(&mut self, note: &str) {
        self.line("-- ", note);
    }

    /// Returns the text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the text, consuming the conversation.
    pub fn into_string(self) -> String {
        self.text
    }

    fn line(&mut self, prefix: &str, text: &str) {
        self.text.push_str(prefix);
        self.text.push_str(text);
        // Keep the snapshot free of trailing blanks (`C: ` for an empty line).
        let trimmed = self.text.trim_end_matches(' ').len();
        self.text.truncate(trimmed);
        self.text.push('\n');
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// Replaces what must differ between runs: the queue id after `queued as `.
pub fn normalize(line: &str) -> String {
    const MARK: &str = "queued as ";
    let Some(at) = line.find(MARK) else {
        return line.to_owned();
    };
    let start = at + MARK.len();
    let end = line[start..]
        .find(char::is_whitespace)
        .map_or(line.len(), |i| start + i);
    format!("{}<ID>{}", &line[..start], &line[end..])
}

/// Counts the complete replies in `bytes`: CRLF-ended lines that are not
/// continuation lines (a continuation line has `-` as its 4th character).
pub fn count_replies(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while let Some(i) = find_crlf(rest) {
        let line = &rest[..i];
        if line.get(3) != Some(&b'-') {
            n += 1;
        }
        rest = &rest[i + 2..];
    }
    n
}

/// Describes where two renderings first differ, with both in full.
pub fn explain_difference(what: &str, expected: &str, actual: &str) -> String {
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    let mut s = format!(
        "{what} differs from the core, first at line {}:\n  core: {:?}\n  {what}: {:?}\n",
        first + 1,
        expected.lines().nth(first).unwrap_or("<end>"),
        actual.lines().nth(first).unwrap_or("<end>"),
    );
    s.push_str("--- core ---\n");
    s.push_str(expected);
    s.push_str(&format!("--- {what} ---\n"));
    s.push_str(actual);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_normalized() {
        assert_eq!(
            normalize("250 2.0.0 Ok: queued as 1A2B3C"),
            "250 2.0.0 Ok: queued as <ID>"
        );
        assert_eq!(
            normalize("250 x queued as ab cd"),
            "250 x queued as <ID> cd"
        );
        assert_eq!(normalize("250 Ok"), "250 Ok");
    }

    #[test]
    fn replies_are_counted_at_their_last_line() {
        assert_eq!(count_replies(b"250-a\r\n250-b\r\n250 c\r\n354 go\r\n"), 2);
        assert_eq!(count_replies(b"250-a\r\n250 c"), 0);
        assert_eq!(count_replies(b""), 0);
    }

    #[test]
    fn server_lines_are_split_at_crlf() {
        let mut c = Conversation::default();
        c.server(b"250-a\r\n250 b\r\n421 x");
        assert_eq!(c.as_str(), "S: 250-a\nS: 250 b\nS: 421 x\\c\n");
    }
}
