//! Finding a message's Message-ID (RFC 5322 §3.6.4), for duplicate
//! suppression: the same Message-ID to the same recipient within
//! `limits.duplicate_window` is delivered once.

use mailparse::MailHeaderMap as _;

/// The longest Message-ID taken (a header line's limit, RFC 5322 §2.1.1);
/// a longer one counts as none, so it never suppresses anything.
pub const MAX_MESSAGE_ID_LEN: usize = 998;

/// Returns the Message-ID of a message from the start of its data (the
/// header block; what follows it is not looked at, and a block cut short
/// is read as far as it goes). The value is the first `<...>` of the first
/// `Message-ID:` field, brackets included, exactly as written (case
/// kept); without brackets, its first word. `None` when there is no such
/// field, it is empty or too long, or the header block cannot be read.
pub fn message_id(headers: &[u8]) -> Option<String> {
    let (fields, _) = mailparse::parse_headers(headers).ok()?;
    let value = fields.get_first_value("Message-ID")?;
    let value = value.trim();
    let id = match value.find('<') {
        Some(start) => {
            let len = value[start..].find('>')?;
            &value[start..=start + len]
        }
        None => value.split_whitespace().next()?,
    };
    let usable = id.len() > 2 && id.len() <= MAX_MESSAGE_ID_LEN && !id.contains(char::is_control);
    usable.then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_found_after_the_received_header() {
        let m = b"Received: from client.example (client.example [192.0.2.1])\r\n\
                  \tby mail.example.org; Tue, 24 Nov 2026 06:15:00 +0000\r\n\
                  From: <a@x.example>\r\n\
                  Message-ID: <1234.5678@mua.example>\r\n\
                  Subject: hi\r\n\
                  \r\n\
                  Message-ID: <not-this@body.example>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<1234.5678@mua.example>"));
    }

    #[test]
    fn the_field_name_is_matched_without_case_and_folding_is_undone() {
        let m = b"message-id:\r\n <Folded@Example.ORG> (comment)\r\n\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<Folded@Example.ORG>"));
    }

    #[test]
    fn the_first_message_id_field_counts() {
        let m = b"Message-Id: <one@x>\r\nMessage-Id: <two@x>\r\n\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<one@x>"));
    }

    #[test]
    fn an_id_without_brackets_is_its_first_word() {
        assert_eq!(
            message_id(b"Message-ID: bare@x.example junk\r\n\r\n").as_deref(),
            Some("bare@x.example")
        );
    }

    #[test]
    fn no_usable_message_id_is_none() {
        for m in [
            &b"Subject: no id\r\n\r\nMessage-ID: <in-body@x>\r\n"[..],
            b"Message-ID:\r\n\r\n",
            b"Message-ID: <>\r\n\r\n",
            b"Message-ID: <unclosed@x\r\n\r\n",
            b"",
            b"\r\n",
        ] {
            assert_eq!(message_id(m), None, "{:?}", String::from_utf8_lossy(m));
        }
        let long = format!("Message-ID: <{}@x>\r\n\r\n", "a".repeat(1000));
        assert_eq!(message_id(long.as_bytes()), None);
    }

    #[test]
    fn a_header_block_cut_short_is_read_as_far_as_it_goes() {
        assert_eq!(
            message_id(b"Message-ID: <cut@x>\r\nSubject: and th").as_deref(),
            Some("<cut@x>")
        );
    }

    #[test]
    fn garbage_never_panics() {
        const PARTS: &[u8] = b"Message-ID:<>@ \r\n\tx\x00\xff";
        let mut seed = 7u64;
        for _ in 0..500 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    PARTS[(seed >> 33) as usize % PARTS.len()]
                })
                .collect();
            let _ = message_id(&bytes);
        }
    }
}
