//! The Received: trace header of RFC 5321 §4.4 (syntax of §4.4 `Time-stamp-line`):
//! `from` the HELO name and the client's IP, `by` our host name, `with`
//! SMTP / ESMTP / ESMTPS / ESMTPA / ESMTPSA (RFC 3848 protocol types: S
//! for TLS, A for an authenticated client), or UTF8SMTP / UTF8SMTPS /
//! UTF8SMTPA / UTF8SMTPSA for a transaction with SMTPUTF8 (RFC 6531 §4.3),
//! `id` the queue id, `for` the single recipient when there is only one,
//! and the date.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::time::UnixTime;

/// What a Received header records.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    /// The name the client gave in HELO / EHLO.
    pub helo: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// Whether the client used EHLO (ESMTP) or HELO (SMTP).
    pub extended: bool,
    /// The session ran inside TLS (`ESMTPS`).
    pub tls: bool,
    /// The client had authenticated (`ESMTPA`).
    pub authenticated: bool,
    /// MAIL carried SMTPUTF8 (`UTF8SMTP`, RFC 6531 §4.3).
    pub smtputf8: bool,
    /// The queue id.
    pub queue_id: &'a str,
    /// The recipient, when the message has exactly one.
    pub single_recipient: Option<&'a str>,
    /// When the message was received.
    pub date: UnixTime,
}

/// Returns the header field, folded, ending in CRLF.
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    // Written in place: no temporary strings for the address, the
    // sanitized words or the date.
    let mut h = String::with_capacity(192);
    let _ = write!(h, "Received: from {} ([", Sanitized(info.helo));
    let _ = match info.client_ip {
        IpAddr::V4(v4) => write!(h, "{v4}"),
        IpAddr::V6(v6) => write!(h, "IPv6:{v6}"),
    };
    let _ = write!(
        h,
        "])\r\n\tby {} with {} id {}",
        info.hostname,
        protocol(info),
        info.queue_id
    );
    if let Some(rcpt) = info.single_recipient {
        let _ = write!(h, "\r\n\tfor <{}>", Sanitized(rcpt));
    }
    let _ = write!(h, ";\r\n\t{}\r\n", info.date.rfc5322());
    h
}

/// The RFC 3848 protocol type (RFC 6531 §4.3 with SMTPUTF8); its S and A
/// qualify ESMTP only.
fn protocol(info: &ReceivedInfo<'_>) -> &'static str {
    if info.extended && info.smtputf8 {
        return match (info.tls, info.authenticated) {
            (false, false) => "UTF8SMTP",
            (true, false) => "UTF8SMTPS",
            (false, true) => "UTF8SMTPA",
            (true, true) => "UTF8SMTPSA",
        };
    }
    match (info.extended, info.tls, info.authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

/// Writes a client-supplied word so that it cannot break the header:
/// printable ASCII and UTF-8 only, no parentheses, semicolons or angle
/// brackets (each replaced by `_`).
struct Sanitized<'a>(&'a str);

impl std::fmt::Display for Sanitized<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unsafe_char = |c: char| c.is_control() || "();<>\\".contains(c);
        let mut rest = self.0;
        while let Some(at) = rest.find(unsafe_char) {
            f.write_str(&rest[..at])?;
            f.write_char('_')?;
            let len = rest[at..].chars().next().map_or(1, char::len_utf8);
            rest = &rest[at + len..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_header_names_everything() {
        let h = received_header(&ReceivedInfo {
            helo: "client.example",
            client_ip: "192.0.2.1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            hostname: "mail.example.test",
            extended: true,
            tls: false,
            authenticated: false,
            smtputf8: false,
            queue_id: "ABC123",
            single_recipient: Some("alice@example.test"),
            date: UnixTime(0),
        });
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.1])\r\n\tby mail.example.test with ESMTP id ABC123\r\n\tfor <alice@example.test>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn hostile_helo_cannot_break_the_header() {
        let h = received_header(&ReceivedInfo {
            helo: "x)\r\nBcc: victim",
            client_ip: "::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST.into()),
            hostname: "h",
            extended: false,
            tls: false,
            authenticated: false,
            smtputf8: false,
            queue_id: "Q",
            single_recipient: None,
            date: UnixTime(0),
        });
        assert!(
            h.starts_with("Received: from x___Bcc: victim ([IPv6:::1])\r\n\tby h with SMTP id Q;")
        );
    }

    #[test]
    fn smtputf8_transactions_are_utf8smtp() {
        let info = |tls, authenticated| ReceivedInfo {
            helo: "c",
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            hostname: "h",
            extended: true,
            tls,
            authenticated,
            smtputf8: true,
            queue_id: "Q",
            single_recipient: None,
            date: UnixTime(0),
        };
        for (tls, auth, proto) in [
            (false, false, "with UTF8SMTP id"),
            (true, false, "with UTF8SMTPS id"),
            (false, true, "with UTF8SMTPA id"),
            (true, true, "with UTF8SMTPSA id"),
        ] {
            assert!(received_header(&info(tls, auth)).contains(proto), "{proto}");
        }
    }

    #[test]
    fn sanitizing_replaces_whole_characters() {
        let s = Sanitized("a\u{85}b(\u{e9})<x>;\\").to_string();
        assert_eq!(s, "a_b_\u{e9}__x___");
    }
}
