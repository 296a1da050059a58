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
                    // Copy the run of plain lines in one go.
                    let rest = &input[i..];
                    let run = plain_run(rest);
                    let mut take = run.min(high_water - body.len());
                    if take < run && take > 0 && rest[take - 1] == b'\r' {
                        // Never stop between CR and LF: the CR is read again
                        // next time, in `Text`, as the start of a line end.
                        take -= 1;
                    }
                    self.emit(body, &rest[..take]);
                    i += take;
                    // take is 0 only before a CR that must stay unread
                    // for lack of room: read it byte by byte, as in a run
                    // of length 0 (the receiver may then go a byte or two
                    // over `high_water`, as it always could at a CRLF).
                    if (take == run || take == 0) && i < input.len() {
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

/// Returns the length of the run at the start of `text` (read inside a
/// line) that can be copied as it is: ordinary bytes, and CRLF line ends
/// followed by a byte that is neither a dot nor CR nor LF (which starts a
/// plain line). The run stops at the first CR or LF that is anything else
/// (a line end before a dot or another line end, one at the end of
/// `text`, a bare CR or LF), which the caller handles byte by byte.
fn plain_run(text: &[u8]) -> usize {
    let mut from = 0;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', text.get(from..).unwrap_or_default()) {
        let end = from + at;
        match text.get(end..end + 3) {
            Some([b'\r', b'\n', next]) if !matches!(next, b'.' | b'\r' | b'\n') => from = end + 3,
            _ => return end,
        }
    }
    text.len()
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

    /// The receiver as it was before the run fast path: one byte at a
    /// time through the same states. The oracle for the fast path.
    fn bytewise(input: &[u8], limit: u64) -> (Vec<u8>, Ingested, Option<Taint>) {
        let mut d = DataReceiver::new(limit);
        let mut body = Vec::new();
        for (i, &b) in input.iter().enumerate() {
            let r = d.ingest(&[b], &mut body, usize::MAX);
            if r.ended {
                let ended = Ingested {
                    consumed: i + 1,
                    ended: true,
                };
                return (body, ended, d.taint());
            }
        }
        let open = Ingested {
            consumed: input.len(),
            ended: false,
        };
        (body, open, d.taint())
    }

    /// Feeds `input` in pieces of `piece` bytes with a body buffer that
    /// is emptied whenever it reaches `high_water`.
    fn pieces(
        input: &[u8],
        limit: u64,
        piece: usize,
        high_water: usize,
    ) -> (Vec<u8>, Ingested, Option<Taint>) {
        let mut d = DataReceiver::new(limit);
        let (mut all, mut body, mut used) = (Vec::new(), Vec::new(), 0);
        while used < input.len() {
            let end = (used + piece).min(input.len());
            let r = d.ingest(&input[used..end], &mut body, high_water);
            all.append(&mut body);
            used += r.consumed;
            if r.ended {
                let ended = Ingested {
                    consumed: used,
                    ended: true,
                };
                return (all, ended, d.taint());
            }
        }
        let open = Ingested {
            consumed: used,
            ended: false,
        };
        (all, open, d.taint())
    }

    proptest::proptest! {
        #[test]
        fn runs_read_exactly_like_single_bytes(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'.', b'\r', b'\n', b'x']),
                0..200,
            ),
            piece in 1usize..40,
            high_water in 1usize..40,
        ) {
            let one_by_one = bytewise(&input, 150);
            proptest::prop_assert_eq!(&run(&input, 150), &one_by_one);
            proptest::prop_assert_eq!(&pieces(&input, 150, piece, high_water), &one_by_one);
        }
    }

    #[test]
    fn plain_lines_are_one_run() {
        assert_eq!(plain_run(b"ab\r\ncd\r\nef"), 10);
        assert_eq!(plain_run(b"ab\r\n.cd"), 2);
        assert_eq!(plain_run(b"ab\r\n\r\ncd"), 2);
        assert_eq!(plain_run(b"ab\r\n"), 2);
        assert_eq!(plain_run(b"ab\ncd"), 2);
        assert_eq!(plain_run(b"ab\rcd"), 2);
        assert_eq!(plain_run(b""), 0);
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
