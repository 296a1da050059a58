//! Receiving message data after DATA (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! The data ends exactly at CRLF "." CRLF. Lines start only after CRLF, so a
//! bare LF or bare CR can neither end the data nor make a dot-line: the
//! sequences `\n.\n`, `\r.\r`, `\n.\r\n` and `\r\n.\n` are all plain data.
//! Any bare CR or LF marks the message, which is then refused as a whole
//! (see docs/security.md, "SMTP smuggling"). Leading dots are removed
//! (transparency, §4.5.2). The unstuffed bytes go into the caller's buffer;
//! once the message is known to be refused, bytes are counted but not kept.

/// Where in a line the receiver stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// At the start of a line (after CRLF).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, just after a CR.
    Cr,
    /// A dot at the start of a line.
    Dot,
    /// A dot at the start of a line, then CR.
    DotCr,
}

/// Why the message will be refused at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taint {
    /// More bytes than the size limit.
    TooLarge,
    /// A bare CR or LF.
    BareLineEnding,
}

/// The DATA phase of one message.
#[derive(Debug)]
pub(crate) struct DataReceiver {
    pos: Pos,
    size: u64,
    limit: u64,
    taint: Option<Taint>,
}

/// What [`DataReceiver::ingest`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ingested {
    /// Input bytes consumed.
    pub(crate) consumed: usize,
    /// Whether the end-of-data line was reached (and consumed).
    pub(crate) ended: bool,
}

impl DataReceiver {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            pos: Pos::LineStart,
            size: 0,
            limit,
            taint: None,
        }
    }

    /// Returns the message size so far (unstuffed bytes).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Returns why the message must be refused, if it must.
    pub(crate) fn taint(&self) -> Option<Taint> {
        self.taint
    }

    /// Consumes `input` into `body` until the end of data or until `body`
    /// holds `high_water` bytes.
    pub(crate) fn ingest(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        high_water: usize,
    ) -> Ingested {
        let mut i = 0;
        while i < input.len() {
            if body.len() >= high_water {
                break;
            }
            match self.pos {
                Pos::Text => {
                    // Copy the run of ordinary bytes in one go.
                    let ordinary = input[i..]
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(input.len() - i);
                    let take = ordinary.min(high_water - body.len());
                    self.emit(body, &input[i..i + take]);
                    i += take;
                    if take == ordinary && i < input.len() {
                        self.byte_in_text(input[i], body);
                        i += 1;
                    }
                }
                Pos::LineStart => {
                    let b = input[i];
                    i += 1;
                    if b == b'.' {
                        self.pos = Pos::Dot;
                    } else {
                        self.pos = Pos::Text;
                        self.byte_in_text(b, body);
                    }
                }
                Pos::Cr => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        self.emit(body, b"\r\n");
                        self.pos = Pos::LineStart;
                    } else {
                        self.taint_with(Taint::BareLineEnding);
                        self.emit(body, b"\r");
                        self.pos = Pos::Text;
                        self.byte_in_text(b, body);
                    }
                }
                Pos::Dot => {
                    let b = input[i];
                    i += 1;
                    if b == b'\r' {
                        self.pos = Pos::DotCr;
                    } else {
                        // The leading dot was transparency stuffing: drop it.
                        self.pos = Pos::Text;
                        self.byte_in_text(b, body);
                    }
                }
                Pos::DotCr => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        return Ingested {
                            consumed: i,
                            ended: true,
                        };
                    }
                    // "." CR x: a bare CR after a dropped leading dot.
                    self.taint_with(Taint::BareLineEnding);
                    self.emit(body, b"\r");
                    self.pos = Pos::Text;
                    self.byte_in_text(b, body);
                }
            }
        }
        Ingested {
            consumed: i,
            ended: false,
        }
    }

    /// Handles one byte met inside a line.
    fn byte_in_text(&mut self, b: u8, body: &mut Vec<u8>) {
        match b {
            b'\r' => self.pos = Pos::Cr,
            b'\n' => {
                self.taint_with(Taint::BareLineEnding);
                self.emit(body, b"\n");
                self.pos = Pos::Text;
            }
            _ => {
                self.emit(body, &[b]);
                self.pos = Pos::Text;
            }
        }
    }

    fn emit(&mut self, body: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            self.taint_with(Taint::TooLarge);
        }
        if self.taint.is_none() {
            body.extend_from_slice(bytes);
        }
    }

    fn taint_with(&mut self, taint: Taint) {
        self.taint.get_or_insert(taint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], limit: u64) -> (Vec<u8>, Ingested, Option<Taint>) {
        let mut d = DataReceiver::new(limit);
        let mut body = Vec::new();
        let r = d.ingest(input, &mut body, usize::MAX);
        (body, r, d.taint())
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_unstuffs() {
        let (body, r, t) = run(
            b"Subject: x\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<a@b>\r\n",
            1000,
        );
        assert_eq!(body, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert!(r.ended);
        assert_eq!(r.consumed, 32);
        assert_eq!(t, None);
    }

    #[test]
    fn bare_lf_and_cr_variants_never_end_data() {
        for smuggle in [
            &b"a\n.\nMAIL"[..],
            b"a\r.\rMAIL",
            b"a\n.\r\nMAIL",
            b"a\r\n.\nMAIL",
            b"a\r\n.\r.\r\n",
        ] {
            let (_, r, t) = run(smuggle, 1000);
            assert!(!r.ended, "{:?}", String::from_utf8_lossy(smuggle));
            assert_eq!(t, Some(Taint::BareLineEnding));
        }
    }

    #[test]
    fn empty_message_ends_at_first_dot_line() {
        let (body, r, _) = run(b".\r\n", 10);
        assert!(r.ended && body.is_empty());
    }

    #[test]
    fn oversize_is_counted_not_kept() {
        let (body, r, t) = run(b"0123456789\r\nabc\r\n.\r\n", 8);
        assert!(r.ended);
        assert_eq!(t, Some(Taint::TooLarge));
        assert!(body.len() <= 8);
    }

    #[test]
    fn high_water_pauses_and_resumes_without_loss() {
        let input = b"line one\r\n..two\r\nthree\r\n.\r\n";
        let mut d = DataReceiver::new(1000);
        let mut all = Vec::new();
        let mut rest: &[u8] = input;
        loop {
            let mut body = Vec::new();
            let r = d.ingest(rest, &mut body, 3);
            all.extend_from_slice(&body);
            rest = &rest[r.consumed..];
            if r.ended {
                break;
            }
            assert!(r.consumed > 0);
        }
        assert_eq!(all, b"line one\r\n.two\r\nthree\r\n");
        assert!(rest.is_empty());
    }
}
