//! Reading server replies (RFC 5321 §4.2): `code-text` continuation lines,
//! a final `code text` (or bare `code`) line, and the optional enhanced
//! status code of RFC 2034 / RFC 3463 at the start of each line's text.
//!
//! Lines are bounded (`max_line`), replies too ([`MAX_REPLY_LINES`]); what
//! does not parse is a [`ProtocolError`], never a panic. A bare LF ends a
//! line as CRLF does: a lenient reading of replies smuggles nothing, since
//! the client never forwards them.

use crate::smtp::reply::{Enhanced, Reply};

use super::types::ProtocolError;

/// The most lines one reply may have (EHLO replies have a dozen).
pub const MAX_REPLY_LINES: usize = 100;

/// Collects reply lines across reads.
#[derive(Debug)]
pub(super) struct ReplyReader {
    max_line: usize,
    /// The partial line carried from the last read.
    line: Vec<u8>,
    /// Lines of the reply so far (text after the code, enhanced code removed).
    text: Vec<String>,
    code: Option<u16>,
    esc: Option<Enhanced>,
}

impl ReplyReader {
    pub(super) fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(8),
            line: Vec::new(),
            text: Vec::new(),
            code: None,
            esc: None,
        }
    }

    /// Reads from `input` up to the end of one reply. Returns the bytes
    /// consumed and, when a reply is complete (or broken), the result.
    pub(super) fn read(&mut self, input: &[u8]) -> (usize, Option<Result<Reply, ProtocolError>>) {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if self.line.len() + rest.len() > self.max_line {
                    return (
                        input.len(),
                        Some(Err(self.fail(ProtocolError::LineTooLong))),
                    );
                }
                self.line.extend_from_slice(rest);
                return (input.len(), None);
            };
            used += nl + 1;
            if self.line.len() + nl + 1 > self.max_line {
                return (used, Some(Err(self.fail(ProtocolError::LineTooLong))));
            }
            let result = if self.line.is_empty() {
                self.line_done(&rest[..nl])
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..nl]);
                let r = self.line_done(&line);
                line.clear();
                self.line = line;
                r
            };
            if let Some(r) = result {
                return (used, Some(r));
            }
        }
        (used, None)
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.line.clear();
        self.text.clear();
        self.code = None;
        self.esc = None;
        e
    }

    /// Takes one line (without its LF); returns the reply when it was the last.
    fn line_done(&mut self, line: &[u8]) -> Option<Result<Reply, ProtocolError>> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((code, last, text)) = split_line(line) else {
            return Some(Err(self.fail(ProtocolError::BadReplyLine)));
        };
        if self.code.is_some_and(|c| c != code) {
            return Some(Err(self.fail(ProtocolError::CodeChanged)));
        }
        if self.text.len() >= MAX_REPLY_LINES {
            return Some(Err(self.fail(ProtocolError::TooManyLines)));
        }
        self.code = Some(code);
        let (esc, text) = split_enhanced(code, text);
        if self.text.is_empty() {
            self.esc = esc;
        }
        self.text.push(String::from_utf8_lossy(text).into_owned());
        if !last {
            return None;
        }
        let text = self.text.join("\n");
        self.text.clear();
        self.code = None;
        Some(Ok(Reply::new(code, self.esc.take(), text)))
    }
}

/// Splits `250-text` / `250 text` / `250` into code, is-last and text.
fn split_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let digits = line.get(..3)?;
    if !(b'2'..=b'5').contains(&digits[0])
        || !(b'0'..=b'5').contains(&digits[1])
        || !digits[2].is_ascii_digit()
    {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// Takes an enhanced status code `c.s.d` off the front of `text` when its
/// class matches the reply code's first digit (RFC 2034 §4).
fn split_enhanced(code: u16, text: &[u8]) -> (Option<Enhanced>, &[u8]) {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let word = &text[..end];
    let mut parts = word.split(|&b| b == b'.');
    let (Some(c), Some(s), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let num = |p: &[u8], max: usize| -> Option<u16> {
        if p.is_empty() || p.len() > max || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(p).ok()?.parse().ok()
    };
    match (num(c, 1), num(s, 3), num(d, 3)) {
        (Some(c), Some(s), Some(d)) if c == code / 100 => {
            let rest = text.get(end + 1..).unwrap_or(&[]);
            (Some(Enhanced(c as u8, s, d)), rest)
        }
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> (usize, Option<Result<Reply, ProtocolError>>) {
        ReplyReader::new(512).read(input)
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let (n, r) = one(b"250 2.1.0 Sender ok\r\nrest");
        assert_eq!(n, 21);
        let r = r.unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.esc, Some(Enhanced(2, 1, 0)));
        assert_eq!(r.text, "Sender ok");
    }

    #[test]
    fn multi_line_reply_joins_text() {
        let (n, r) = one(b"250-mx.example greets you\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
        assert_eq!(n, 57);
        let r = r.unwrap().unwrap();
        assert_eq!(r.text, "mx.example greets you\nPIPELINING\nSIZE 100");
        assert_eq!(r.esc, None);
    }

    #[test]
    fn bare_code_and_bare_lf_are_accepted() {
        let r = one(b"354\n").1.unwrap().unwrap();
        assert_eq!((r.code, r.text.as_ref()), (354, ""));
    }

    #[test]
    fn enhanced_code_of_another_class_stays_text() {
        let r = one(b"550 2.0.0 odd\r\n").1.unwrap().unwrap();
        assert_eq!((r.esc, r.text.as_ref()), (None, "2.0.0 odd"));
        let r = one(b"421 4.4.2\r\n").1.unwrap().unwrap();
        assert_eq!((r.esc, r.text.as_ref()), (Some(Enhanced(4, 4, 2)), ""));
    }

    #[test]
    fn partial_lines_carry_across_reads() {
        let mut rd = ReplyReader::new(512);
        assert_eq!(rd.read(b"250-a\r\n25"), (9, None));
        assert_eq!(rd.read(b"0 b"), (3, None));
        let (n, r) = rd.read(b"\r\n");
        assert_eq!(n, 2);
        assert_eq!(r.unwrap().unwrap().text, "a\nb");
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2500 x\r\n",
            b"600 x\r\n",
            b"199 x\r\n",
            b"2a0 x\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                one(bad).1,
                Some(Err(ProtocolError::BadReplyLine)),
                "{bad:?}"
            );
        }
        assert_eq!(
            one(b"250-a\r\n251 b\r\n").1,
            Some(Err(ProtocolError::CodeChanged))
        );
    }

    #[test]
    fn long_lines_and_long_replies_are_refused() {
        let mut rd = ReplyReader::new(16);
        assert_eq!(rd.read(b"250 0123456789"), (14, None));
        assert_eq!(rd.read(b"abc"), (3, Some(Err(ProtocolError::LineTooLong))));
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(one(&many).1, Some(Err(ProtocolError::TooManyLines)));
    }
}
