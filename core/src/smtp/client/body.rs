//! Sending the message body after 354 (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! Dot-stuffing (§4.5.2): a line that starts with `.` gets one more `.`.
//! Line endings are made CRLF (§2.3.8): a bare LF or a bare CR becomes
//! CRLF, so the body can never carry a `<LF>.<LF>`-style terminator to a
//! lenient server (the SMTP-smuggling family of attacks). A body that does
//! not end with CRLF gets one before the final `.CRLF`.

/// The most stuffed body octets the session holds before the front end
/// must send them.
pub const BODY_BUFFER: usize = 64 * 1024;

/// Dot-stuffs a body streamed in chunks.
#[derive(Debug)]
pub(super) struct Stuffer {
    at_line_start: bool,
    pending_cr: bool,
}

impl Stuffer {
    pub(super) fn new() -> Self {
        Self {
            at_line_start: true,
            pending_cr: false,
        }
    }

    /// Stuffs `input` into `out` until `out` holds `cap` octets or more;
    /// returns how many input octets were consumed.
    pub(super) fn push(&mut self, input: &[u8], out: &mut Vec<u8>, cap: usize) -> usize {
        let mut i = 0;
        while i < input.len() && out.len() < cap {
            let b = input[i];
            if self.pending_cr {
                self.pending_cr = false;
                self.newline(out);
                if b == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    i += 1;
                }
                b'\n' => {
                    self.newline(out);
                    i += 1;
                }
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    self.at_line_start = false;
                    let room = cap.saturating_sub(out.len()).max(1);
                    let end = input[i..]
                        .iter()
                        .take(room)
                        .position(|&c| c == b'\r' || c == b'\n')
                        .map_or_else(|| (i + room).min(input.len()), |p| i + p);
                    out.extend_from_slice(&input[i..end]);
                    i = end;
                }
            }
        }
        i
    }

    /// Ends the body: a last line ending if needed, then `.CRLF`.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            self.pending_cr = false;
            self.newline(out);
        }
        out.extend_from_slice(b".\r\n");
    }

    fn newline(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Stuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            assert_eq!(s.push(c, &mut out, usize::MAX), c.len());
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(
            stuff(&[b".a\r\nb.c\r\n.\r\n..\r\n"]),
            b"..a\r\nb.c\r\n..\r\n...\r\n.\r\n"
        );
    }

    #[test]
    fn stuffing_works_across_chunk_boundaries() {
        assert_eq!(
            stuff(&[b"a\r", b"\n", b".", b"b\r\n"]),
            b"a\r\n..b\r\n.\r\n"
        );
    }

    #[test]
    fn bare_line_endings_become_crlf() {
        assert_eq!(
            stuff(&[b"a\n.\nb\r", b"c\r"]),
            b"a\r\n..\r\nb\r\nc\r\n.\r\n"
        );
    }

    #[test]
    fn a_missing_last_line_ending_is_added() {
        assert_eq!(stuff(&[b"abc"]), b"abc\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
    }

    #[test]
    fn the_buffer_bound_stops_consumption() {
        let mut s = Stuffer::new();
        let mut out = Vec::new();
        let input = vec![b'x'; 100];
        assert_eq!(s.push(&input, &mut out, 40), 40);
        assert_eq!(s.push(&input[40..], &mut out, 40), 0);
        out.clear();
        assert_eq!(s.push(&input[40..], &mut out, 100), 60);
    }
}
