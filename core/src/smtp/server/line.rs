//! Splitting command input into lines (RFC 5321 §2.3.8, §4.5.3.1.4).
//!
//! A line ends only at CRLF. A bare CR or bare LF never ends a line: the
//! line is marked and refused when its CRLF arrives, so a bare LF can never
//! start a new command (the SMTP smuggling family). Lines are bounded at
//! [`MAX_AUTH_LINE`] octets with the CRLF, the most any line may have (an
//! AUTH command or response, RFC 4954 §4); a longer one is skipped to its
//! CRLF and refused. The session refuses other lines over
//! [`MAX_COMMAND_LINE`] (RFC 5321 §4.5.3.1.4). Only a line split across
//! reads is copied, into a bounded buffer.

/// The longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// The longest AUTH command or SASL response line, CRLF included: RFC 4954
/// §4 raises the limit to 12288 octets for them.
pub(crate) const MAX_AUTH_LINE: usize = 12288;

/// What the reader found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole line lies in the input at this range (CRLF excluded).
    InInput(std::ops::Range<usize>),
    /// A whole line was assembled in the carry buffer; take it with
    /// [`LineReader::take_carried`].
    Carried,
    /// A line over the limit ended; it was thrown away.
    TooLong,
    /// A line holding a bare CR or LF ended; it was thrown away.
    BareLineEnding,
}

/// Incremental line splitter with a bounded carry-over buffer.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    carry: Vec<u8>,
    len: usize,
    bare: bool,
    prev_cr: bool,
}

impl LineReader {
    /// Reads from `input` up to the end of the next line. Returns the bytes
    /// consumed and what ended there, if anything. A line that lies whole in
    /// `input` stays there; a line split across reads is assembled in the
    /// carry buffer (bounded: at most [`MAX_AUTH_LINE`] bytes are kept).
    pub(crate) fn read(&mut self, input: &[u8]) -> (usize, Option<Line>) {
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' && self.prev_cr {
                let consumed = i + 1;
                return (consumed, Some(self.finish(&input[..consumed])));
            }
            // A CR not followed by LF, or an LF not preceded by CR, is bare.
            if self.prev_cr || b == b'\n' {
                self.bare = true;
            }
            self.prev_cr = b == b'\r';
            self.len += 1;
        }
        self.keep(input);
        (input.len(), None)
    }

    /// Moves the carried line out (without CRLF); give the buffer back with
    /// [`LineReader::restore`] so its allocation is reused.
    pub(crate) fn take_carried(&mut self) -> Vec<u8> {
        let mut line = std::mem::take(&mut self.carry);
        line.truncate(line.len().saturating_sub(2));
        line
    }

    /// Returns the buffer lent out by [`LineReader::take_carried`].
    pub(crate) fn restore(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.carry = buf;
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_AUTH_LINE.saturating_sub(self.carry.len());
        self.carry
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, tail: &[u8]) -> Line {
        let total = self.len + 1;
        let bare = self.bare;
        let carried = !self.carry.is_empty();
        self.len = 0;
        self.bare = false;
        self.prev_cr = false;
        if total > MAX_AUTH_LINE {
            self.carry.clear();
            return Line::TooLong;
        }
        if bare {
            self.carry.clear();
            return Line::BareLineEnding;
        }
        if !carried {
            return Line::InInput(0..tail.len() - 2);
        }
        self.keep(tail);
        Line::Carried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut r = LineReader::default();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest: &[u8] = chunk;
            while !rest.is_empty() {
                let (n, line) = r.read(rest);
                match line {
                    Some(Line::InInput(range)) => {
                        out.push(String::from_utf8_lossy(&rest[range]).into_owned())
                    }
                    Some(Line::Carried) => {
                        let l = r.take_carried();
                        out.push(String::from_utf8_lossy(&l).into_owned());
                        r.restore(l);
                    }
                    Some(Line::TooLong) => out.push("<too long>".into()),
                    Some(Line::BareLineEnding) => out.push("<bare>".into()),
                    None => {}
                }
                rest = &rest[n..];
            }
        }
        out
    }

    #[test]
    fn crlf_ends_lines_even_split_between_reads() {
        assert_eq!(lines(&[b"NOOP\r\nQU", b"IT\r", b"\n"]), ["NOOP", "QUIT"]);
    }

    #[test]
    fn bare_lf_and_bare_cr_never_end_a_line() {
        assert_eq!(lines(&[b"NOOP\nQUIT\r\n"]), ["<bare>"]);
        assert_eq!(lines(&[b"NOOP\rQUIT\r\nNOOP\r\n"]), ["<bare>", "NOOP"]);
        assert_eq!(lines(&[b"NOOP\r", b"\rQUIT\r\n"]), ["<bare>"]);
    }

    #[test]
    fn overlong_line_is_skipped_to_its_end() {
        let long = vec![b'a'; 100_000];
        assert_eq!(lines(&[&long, b"\r\nNOOP\r\n"]), ["<too long>", "NOOP"]);
        // The reader's bound is the AUTH line's (RFC 4954 §4); the session
        // refuses other commands over 512 octets itself.
        let exact = [vec![b'b'; MAX_AUTH_LINE - 2], b"\r\n".to_vec()].concat();
        assert_eq!(lines(&[&exact]).len(), 1);
        assert_ne!(lines(&[&exact])[0], "<too long>");
        let over = [vec![b'b'; MAX_AUTH_LINE - 1], b"\r\n".to_vec()].concat();
        assert_eq!(lines(&[&over]), ["<too long>"]);
        // Split across reads, the carried line is kept whole.
        let (a, b) = exact.split_at(6000);
        assert_eq!(lines(&[a, b])[0].len(), MAX_AUTH_LINE - 2);
    }
}
