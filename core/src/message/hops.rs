//! Mail-loop detection (RFC 5321 §6.3): every server that relays a
//! message adds a `Received:` header (§4.4), so a message that carries
//! more than a limit of them (hato's default 50, as most MTAs) is going
//! round in circles and is returned instead of being sent on again.

/// Counts the `Received:` header fields in a message's header block
/// (everything before the first empty line; the body is not looked at).
/// Continuation lines (starting with a space or tab) belong to the field
/// above them; the name is compared without case.
pub fn count_received(message: &[u8]) -> usize {
    let mut n = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(b"received")
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::count_received;

    #[test]
    fn counts_fields_in_the_header_block_only() {
        let msg = b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\nRECEIVED : x\r\nSubject: Received: no\r\nX-Received: no\r\n\r\nReceived: body\r\n";
        assert_eq!(count_received(msg), 2);
        assert_eq!(count_received(b""), 0);
        assert_eq!(
            count_received(b"Received: a\nReceived: b\n\nReceived: c\n"),
            2
        );
    }
}
