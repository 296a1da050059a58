//! Reading what hato delivered: a Maildir file starts with the three
//! header fields hato adds (`Return-Path:`, `Delivered-To:`, and its
//! folded `Received:`), then holds the message as received, with LF line
//! endings.

/// A delivered file, split into hato's header fields and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The `Return-Path:` field's value, e.g. `<bob@example.org>`.
    pub return_path: &'a str,
    /// The `Delivered-To:` field's value.
    pub delivered_to: &'a str,
    /// The whole `Received:` field, with its continuation lines and the
    /// final LF.
    pub received: &'a str,
    /// The message as the client sent it (after dot-unstuffing), with LF
    /// line endings.
    pub message: &'a [u8],
}

/// Splits a delivered file.
///
/// # Errors
/// The file does not start with the three fields hato writes.
pub fn split_delivered(file: &[u8]) -> Result<Delivered<'_>, String> {
    let (return_path, rest) = field(file, "Return-Path: ")?;
    let (delivered_to, rest) = field(rest, "Delivered-To: ")?;
    if !rest.starts_with(b"Received: ") {
        return Err(format!(
            "no Received: field after Delivered-To: {}",
            preview(rest)
        ));
    }
    // The field ends at the first LF not followed by a blank or a tab.
    let mut end = None;
    let mut i = 0;
    while let Some(lf) = rest[i..].iter().position(|&b| b == b'\n') {
        let next = i + lf + 1;
        if !matches!(rest.get(next), Some(b' ' | b'\t')) {
            end = Some(next);
            break;
        }
        i = next;
    }
    let end = end.ok_or("the Received: field does not end")?;
    let received =
        std::str::from_utf8(&rest[..end]).map_err(|_| "the Received: field is not UTF-8")?;
    Ok(Delivered {
        return_path,
        delivered_to,
        received,
        message: &rest[end..],
    })
}

/// Takes `name value LF` from the start of `bytes`.
fn field<'a>(bytes: &'a [u8], name: &str) -> Result<(&'a str, &'a [u8]), String> {
    let rest = bytes
        .strip_prefix(name.as_bytes())
        .ok_or_else(|| format!("expected {name:?} at {}", preview(bytes)))?;
    let lf = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("{name:?} does not end with LF"))?;
    let value =
        std::str::from_utf8(&rest[..lf]).map_err(|_| format!("{name:?} value is not UTF-8"))?;
    Ok((value, &rest[lf + 1..]))
}

fn preview(bytes: &[u8]) -> String {
    crate::transcript::escape(&bytes[..bytes.len().min(80)])
}

/// Returns `bytes` with every CRLF turned into LF (what a Maildir holds).
pub fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Returns the unfolded value of the first header field `name` (any case)
/// in the header section of `message` (LF or CRLF line endings).
pub fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                found = Some(v.trim_start().to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_file_splits() {
        let file = b"Return-Path: <b@x.example>\nDelivered-To: alice@example.test\n\
Received: from h ([127.0.0.1])\n\tby m with ESMTP id 0A;\n\tThu, 1 Jan 1970 00:00:00 +0000\n\
Subject: hi\n\nbody\n";
        let d = split_delivered(file).unwrap();
        assert_eq!(d.return_path, "<b@x.example>");
        assert_eq!(d.delivered_to, "alice@example.test");
        assert!(d.received.starts_with("Received: from h"));
        assert!(d.received.ends_with("+0000\n"));
        assert_eq!(d.message, b"Subject: hi\n\nbody\n");
        assert!(split_delivered(b"Subject: x\n\n").is_err());
    }

    #[test]
    fn headers_are_found_and_unfolded() {
        let m = b"Subject: a\r\n b\r\nMessage-ID: <1@x>\r\n\r\nMessage-ID: <2@x>\r\n";
        assert_eq!(header(m, "subject").as_deref(), Some("a b"));
        assert_eq!(header(m, "Message-Id").as_deref(), Some("<1@x>"));
        assert_eq!(header(m, "To"), None);
        assert_eq!(crlf_to_lf(b"a\r\nb\rc\n"), b"a\nb\rc\n");
    }
}
