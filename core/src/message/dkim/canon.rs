//! The "relaxed" canonicalization algorithms of RFC 6376: for header
//! fields (§3.4.2) and, streaming, for the body (§3.4.4).
//!
//! The body canonicalizer takes the body in chunks split anywhere (even
//! between the CR and the LF of a line end) and hands its output on in
//! pieces, so a message of tens of megabytes is never held in memory.

/// Space and horizontal tab: WSP of RFC 5234 Appendix B.1.
fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Appends the relaxed canonical form of one header field to `out`
/// (RFC 6376 §3.4.2): the name in lower case, no white space around the
/// colon, the value unfolded (every CRLF removed), each run of WSP made
/// one space, no WSP at the start or end of the value; then CRLF when
/// `crlf` is set (the DKIM-Signature field itself is hashed without it,
/// §3.7). `field` is the field as it stands in the message, without its
/// final CRLF. A field without a colon is taken as a name with an empty
/// value.
pub(super) fn relaxed_header(field: &[u8], crlf: bool, out: &mut Vec<u8>) {
    let (name, value) = match field.iter().position(|&b| b == b':') {
        Some(i) => (&field[..i], &field[i + 1..]),
        None => (field, &[][..]),
    };
    let name = trim_wsp(name);
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'\r' && value.get(i + 1) == Some(&b'\n') {
            // Unfolding: the CRLF goes, the WSP after it stays (§3.4.2).
            i += 2;
            continue;
        }
        if is_wsp(b) {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            started = true;
        }
        i += 1;
    }
    if crlf {
        out.extend_from_slice(b"\r\n");
    }
}

fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_wsp(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_wsp(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Canonicalized output is handed on in pieces of about this size.
const FLUSH_AT: usize = 16 * 1024;

/// The relaxed body canonicalization of RFC 6376 §3.4.4, fed in chunks.
///
/// - WSP at the end of a line is removed; each other run of WSP becomes
///   one space.
/// - Empty lines at the end of the body are removed: they are only
///   counted, and written out when a later line has content.
/// - A last line without CRLF gets one (what a receiver sees, since SMTP
///   ends the data with CRLF); WSP at its end is removed like any other.
/// - An empty body (or one of empty lines only) canonicalizes to nothing.
///
/// A line ends at CRLF only; a CR or LF on its own is an ordinary octet.
#[derive(Debug, Default)]
pub(super) struct RelaxedBody {
    /// The previous chunk ended with CR: it may be the start of a CRLF.
    pending_cr: bool,
    /// WSP seen on the current line since its last other octet.
    pending_wsp: bool,
    /// The current line has had an octet other than WSP.
    line_has_text: bool,
    /// Empty lines seen and not yet written.
    empty_lines: u64,
    /// Output waiting to be handed on.
    out: Vec<u8>,
}

impl RelaxedBody {
    /// Takes the next piece of the body; `sink` receives canonical output.
    pub(super) fn feed(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8])) {
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.end_line();
                    self.flush_if_full(sink);
                    continue;
                }
                self.text(b'\r');
            }
            match b {
                b'\r' => self.pending_cr = true,
                b' ' | b'\t' => self.pending_wsp = true,
                _ => self.text(b),
            }
            self.flush_if_full(sink);
        }
        self.flush_if_full(sink);
    }

    /// Ends the body: a CR left over is text, a last line without CRLF
    /// gets one, trailing empty lines are dropped; the rest is handed on.
    pub(super) fn finish(mut self, sink: &mut impl FnMut(&[u8])) {
        if self.pending_cr {
            self.pending_cr = false;
            self.text(b'\r');
        }
        if self.line_has_text {
            self.end_line();
        }
        if !self.out.is_empty() {
            sink(&self.out);
        }
    }

    /// An octet that is neither WSP nor a line end.
    fn text(&mut self, b: u8) {
        for _ in 0..self.empty_lines {
            self.out.extend_from_slice(b"\r\n");
        }
        self.empty_lines = 0;
        if self.pending_wsp {
            self.out.push(b' ');
            self.pending_wsp = false;
        }
        self.out.push(b);
        self.line_has_text = true;
    }

    fn end_line(&mut self) {
        if self.line_has_text {
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.empty_lines += 1;
        }
        self.line_has_text = false;
        self.pending_wsp = false;
    }

    fn flush_if_full(&mut self, sink: &mut impl FnMut(&[u8])) {
        if self.out.len() >= FLUSH_AT {
            sink(&self.out);
            self.out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(field: &str) -> String {
        let mut out = Vec::new();
        relaxed_header(field.as_bytes(), true, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn body_in_chunks(body: &[u8], size: usize) -> Vec<u8> {
        let mut c = RelaxedBody::default();
        let mut out = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            c.feed(chunk, &mut |b: &[u8]| out.extend_from_slice(b));
        }
        c.finish(&mut |b: &[u8]| out.extend_from_slice(b));
        out
    }

    fn body(b: &str) -> String {
        let whole = body_in_chunks(b.as_bytes(), b.len());
        for size in 1..=4 {
            assert_eq!(
                body_in_chunks(b.as_bytes(), size),
                whole,
                "chunks of {size}"
            );
        }
        String::from_utf8(whole).unwrap()
    }

    #[test]
    fn header_names_are_lowercased_and_values_unfolded() {
        // The example of RFC 6376 §3.4.5.
        assert_eq!(header("A: X"), "a:X\r\n");
        assert_eq!(header("B : Y\t\r\n\tZ  "), "b:Y Z\r\n");
        assert_eq!(header("Subject:   two   words \t"), "subject:two words\r\n");
        assert_eq!(header("X-Empty:"), "x-empty:\r\n");
        let mut out = Vec::new();
        relaxed_header(b"DKIM-Signature: v=1;\r\n\tb=", false, &mut out);
        assert_eq!(out, b"dkim-signature:v=1; b=");
    }

    #[test]
    fn body_whitespace_is_reduced_and_trailing_lines_dropped() {
        // The example of RFC 6376 §3.4.5.
        assert_eq!(body(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
        assert_eq!(body("a\r\n\r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
        assert_eq!(body("line   \t\r\n \t \r\n\r\n"), "line\r\n");
    }

    #[test]
    fn empty_bodies_canonicalize_to_nothing() {
        assert_eq!(body(""), "");
        assert_eq!(body("\r\n"), "");
        assert_eq!(body("\r\n \r\n\t\r\n"), "");
    }

    #[test]
    fn a_last_line_without_crlf_gets_one() {
        assert_eq!(body("no end"), "no end\r\n");
        assert_eq!(body("no end  "), "no end\r\n");
        assert_eq!(body("a\r\nb\r"), "a\r\nb\r\r\n");
    }

    #[test]
    fn lone_cr_and_lf_are_text() {
        assert_eq!(body("a\rb\r\n"), "a\rb\r\n");
        assert_eq!(body("a \nb\r\n"), "a \nb\r\n");
        assert_eq!(body("x\r\r\n"), "x\r\r\n");
    }

    /// RFC 6376 §3.4.4 written plainly, on the whole body at once.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = body;
        loop {
            let (line, more) = match rest.windows(2).position(|w| w == b"\r\n") {
                Some(i) => (&rest[..i], Some(&rest[i + 2..])),
                None => (rest, None),
            };
            let mut out = Vec::new();
            for &b in line {
                let wsp = b == b' ' || b == b'\t';
                if wsp && out.last() == Some(&b' ') {
                    continue;
                }
                out.push(if wsp { b' ' } else { b });
            }
            while out.last() == Some(&b' ') {
                out.pop();
            }
            match more {
                Some(r) => {
                    lines.push(out);
                    rest = r;
                }
                None => {
                    if !out.is_empty() {
                        lines.push(out);
                    }
                    break;
                }
            }
        }
        while lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        lines
            .iter()
            .flat_map(|l| [&l[..], b"\r\n"].concat())
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn streaming_matches_the_plain_reading_in_any_chunking(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n', 0xe9]),
                0..200,
            ),
            size in 1usize..17,
        ) {
            proptest::prop_assert_eq!(body_in_chunks(&body, size), reference(&body));
        }
    }

    #[test]
    fn long_bodies_are_handed_on_in_pieces() {
        let line = "word ".repeat(20) + "\r\n";
        let text = line.repeat(2000);
        let mut c = RelaxedBody::default();
        let mut pieces = 0;
        let mut total = 0;
        c.feed(text.as_bytes(), &mut |b: &[u8]| {
            pieces += 1;
            total += b.len();
        });
        c.finish(&mut |b: &[u8]| {
            pieces += 1;
            total += b.len();
        });
        assert!(pieces > 5, "{pieces}");
        assert_eq!(total, ("word ".repeat(19) + "word\r\n").len() * 2000);
    }
}
