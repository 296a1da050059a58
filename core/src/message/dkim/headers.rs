//! The header section of a message being signed: collected while it
//! streams in (up to [`MAX_HEADER_BYTES`]), split into fields (RFC 5322
//! §2.2, §2.2.3), and the fields to sign chosen as RFC 6376 §5.4.2 says
//! a verifier will pick them: the last instance of a name first.

/// The header section is kept in memory while the message streams by; a
/// larger one is refused ([`super::DkimError::HeaderTooLarge`]).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The header fields signed when present, in this order (RFC 6376 §5.4.1
/// recommends those that carry the message's meaning).
pub const DEFAULT_HEADERS: [&str; 12] = [
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Fields that are also signed once more than they occur, present or not
/// ("over-signed", RFC 6376 §8.15): a field of this name added later,
/// e.g. a second From or a Reply-To that a mail reader might show, then
/// breaks the signature.
pub const OVERSIGNED: [&str; 6] = ["from", "reply-to", "subject", "date", "to", "cc"];

/// Collects the header section, byte by byte, until the empty line.
#[derive(Debug, Default)]
pub(super) struct HeaderSection {
    bytes: Vec<u8>,
    done: bool,
    too_large: bool,
}

impl HeaderSection {
    /// Takes bytes of the message; returns how many belonged to the header
    /// section (the empty line included). The rest is body.
    pub(super) fn feed(&mut self, chunk: &[u8]) -> usize {
        if self.done {
            return 0;
        }
        for (i, &b) in chunk.iter().enumerate() {
            if self.too_large {
                // Skip to the end of the header section all the same, so
                // that the body is not taken for headers.
                self.bytes.drain(..self.bytes.len().saturating_sub(3));
            }
            self.bytes.push(b);
            if b == b'\n' && (self.bytes.ends_with(b"\r\n\r\n") || self.bytes == b"\r\n") {
                self.done = true;
                return i + 1;
            }
            if self.bytes.len() > MAX_HEADER_BYTES {
                self.too_large = true;
            }
        }
        chunk.len()
    }

    /// Tells whether the section was larger than [`MAX_HEADER_BYTES`].
    pub(super) fn too_large(&self) -> bool {
        self.too_large
    }

    /// Returns the fields, each without its final CRLF. Continuation
    /// lines (starting with WSP) belong to the field before them; lines
    /// before the first field and lines without a colon are skipped.
    pub(super) fn fields(&self) -> Vec<&[u8]> {
        let mut fields: Vec<&[u8]> = Vec::new();
        let text = &self.bytes[..];
        let mut start: Option<usize> = None;
        let mut pos = 0;
        while pos < text.len() {
            let end = find_crlf(text, pos).unwrap_or(text.len());
            let line = &text[pos..end];
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            if !continuation {
                if let Some(s) = start.take() {
                    fields.push(trim_crlf(&text[s..pos]));
                }
                if line.is_empty() {
                    break;
                }
                if line.contains(&b':') {
                    start = Some(pos);
                }
            }
            pos = (end + 2).min(text.len());
        }
        if let Some(s) = start {
            fields.push(trim_crlf(&text[s..]));
        }
        fields
    }
}

fn find_crlf(text: &[u8], from: usize) -> Option<usize> {
    text.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn trim_crlf(field: &[u8]) -> &[u8] {
    field.strip_suffix(b"\r\n").unwrap_or(field)
}

/// Returns the field's name: the octets before the colon, without WSP.
pub(super) fn field_name(field: &[u8]) -> &[u8] {
    let name = field
        .iter()
        .position(|&b| b == b':')
        .map_or(field, |i| &field[..i]);
    let end = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &name[..end]
}

/// Chooses what to sign: returns the `h=` list (names, lower case, one
/// entry per instance, plus one more for each [`OVERSIGNED`] name) and the fields in the order they are hashed. For
/// repeated names the last instance is taken first (RFC 6376 §5.4.2);
/// an `h=` entry with no instance left stands for a field that must not
/// be added, and hashes nothing.
pub(super) fn select<'a>(
    fields: &[&'a [u8]],
    names: &[&'static str],
) -> (Vec<&'static str>, Vec<&'a [u8]>) {
    let mut h = Vec::new();
    let mut chosen = Vec::new();
    for &name in names {
        let instances: Vec<&[u8]> = fields
            .iter()
            .copied()
            .filter(|f| field_name(f).eq_ignore_ascii_case(name.as_bytes()))
            .collect();
        for field in instances.iter().rev() {
            h.push(name);
            chosen.push(*field);
        }
        if OVERSIGNED.contains(&name) {
            h.push(name);
        }
    }
    (h, chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &[u8], chunk: usize) -> (HeaderSection, Vec<u8>) {
        let mut s = HeaderSection::default();
        let mut body = Vec::new();
        for c in text.chunks(chunk) {
            let used = s.feed(c);
            body.extend_from_slice(&c[used..]);
        }
        (s, body)
    }

    #[test]
    fn the_empty_line_ends_the_header_section_in_any_chunking() {
        let msg = b"From: a@b\r\nSubject: x\r\n  y\r\n\r\nbody\r\n\r\nFrom: not a header\r\n";
        for size in 1..8 {
            let (s, body) = section(msg, size);
            assert_eq!(body, b"body\r\n\r\nFrom: not a header\r\n");
            let fields = s.fields();
            assert_eq!(fields, [&b"From: a@b"[..], &b"Subject: x\r\n  y"[..]]);
        }
    }

    #[test]
    fn a_message_of_headers_only_has_all_its_fields() {
        let (s, body) = section(b"From: a@b\r\nTo: c@d\r\n", 3);
        assert!(body.is_empty());
        assert_eq!(s.fields().len(), 2);
        let (s, body) = section(b"\r\nbody", 1);
        assert_eq!(body, b"body");
        assert!(s.fields().is_empty());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let (s, _) = section(b" lead\r\nno colon\r\nFrom : a\r\n\r\n", 100);
        assert_eq!(s.fields(), [&b"From : a"[..]]);
        assert_eq!(field_name(b"From \t: a"), b"From");
    }

    #[test]
    fn repeated_fields_are_chosen_last_first_and_from_is_oversigned() {
        let fields: Vec<&[u8]> = vec![b"Received: x", b"To: 1", b"FROM: f", b"To: 2", b"X: y"];
        let (h, chosen) = select(&fields, &DEFAULT_HEADERS);
        assert_eq!(
            h,
            ["from", "from", "reply-to", "subject", "date", "to", "to", "to", "cc"]
        );
        assert_eq!(chosen, [&b"FROM: f"[..], b"To: 2", b"To: 1"]);
        let (h, chosen) = select(&[&b"Subject: s"[..]], &DEFAULT_HEADERS);
        assert_eq!(
            h,
            ["from", "reply-to", "subject", "subject", "date", "to", "cc"]
        );
        assert_eq!(chosen.len(), 1);
    }

    #[test]
    fn a_huge_header_section_is_flagged_but_still_ends() {
        let mut msg = b"From: a\r\nX: ".to_vec();
        msg.extend(std::iter::repeat_n(b'x', MAX_HEADER_BYTES + 10));
        msg.extend_from_slice(b"\r\n\r\nbody");
        let (s, body) = section(&msg, 4096);
        assert!(s.too_large());
        assert_eq!(body, b"body");
    }
}
