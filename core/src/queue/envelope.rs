//! The queue file: a versioned text header holding the envelope, a blank
//! line, then the message bytes exactly as received (CRLF line endings).
//!
//! ```text
//! hato-queue 1
//! id: 0QJ2V4H1K8A3C01G02
//! received: 1795500900
//! client-ip: 192.0.2.1
//! helo: client.example.net
//! from: <alice@example.net>
//! smtputf8: no
//! body: 7bit
//! auth: alice@example.org
//! rcpt: local bob@example.org <Bob@Example.ORG>
//! rcpt: remote carol@partner.example <carol@partner.example>
//!
//! Received: from ...
//! ```
//!
//! Lines end in LF. Each line is `key: value`; `rcpt` lines repeat, in the
//! order the recipients were accepted (their position is the recipient
//! index the progress file refers to), and hold three fields separated by
//! one space: the destination kind (`local` / `remote`), the destination
//! address and the forward-path as the client wrote it.
//!
//! Values come from parsed SMTP paths and hold no CR or LF, but the encoder
//! does not rely on it: `\` is written `\\` and every control character
//! `\xHH`, so no value can end its line early or forge a header line. In
//! `rcpt` fields a space is written `\x20` too. Nothing else is escaped, so
//! UTF-8 addresses (RFC 6531) stay readable.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::policy::Destination;
use crate::smtp::command::Body;
use crate::smtp::server::Envelope;
use crate::time::UnixTime;

/// The first line of every queue file this version writes.
pub const VERSION_LINE: &str = "hato-queue 1";

/// The longest queue id hato accepts.
pub const MAX_QUEUE_ID_LEN: usize = 64;

/// Tells whether `id` is a queue id: 1 to 64 upper-case ASCII letters and
/// digits, so it is safe as a file name under `queue/`.
pub fn is_valid_queue_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_QUEUE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// The forward-path as the client gave it, with brackets: `<x@y>`.
    pub original: String,
    /// Where the message goes for this recipient.
    pub destination: Destination,
}

/// The envelope of a queued message, as stored in its queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEnvelope {
    /// The queue id (also the file name).
    pub id: String,
    /// When the message was received.
    pub received: UnixTime,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The HELO / EHLO name the client gave.
    pub helo: String,
    /// The reverse-path with brackets: `<a@b>` or `<>`.
    pub from: String,
    /// Whether MAIL FROM carried `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// Whether MAIL FROM carried `BODY=8BITMIME` (RFC 6152).
    pub body_8bit: bool,
    /// The user who authenticated (SMTP AUTH) before sending it, if one
    /// did: the `auth` line, written only then.
    pub auth: Option<String>,
    /// The accepted recipients, in order.
    pub recipients: Vec<QueuedRecipient>,
}

/// Why a queue file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFileError {
    /// No blank line ends the header (the file is cut short or not a queue file).
    NoHeaderEnd,
    /// The first line is not a version this build reads.
    UnknownVersion,
    /// The header is not UTF-8.
    NotUtf8,
    /// A header line is wrong.
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: &'static str,
    },
    /// A required key is missing.
    Missing(&'static str),
}

impl fmt::Display for QueueFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHeaderEnd => f.write_str("queue file header has no end (truncated file?)"),
            Self::UnknownVersion => {
                write!(f, "not a queue file: first line is not `{VERSION_LINE}`")
            }
            Self::NotUtf8 => f.write_str("queue file header is not UTF-8"),
            Self::Line { line, message } => write!(f, "queue file line {line}: {message}"),
            Self::Missing(key) => write!(f, "queue file has no `{key}` line"),
        }
    }
}

impl std::error::Error for QueueFileError {}

impl QueueEnvelope {
    /// Builds the queue envelope of the transaction the session accepted.
    pub fn from_session(id: String, received: UnixTime, env: &Envelope) -> Self {
        Self {
            id,
            received,
            client_ip: env.client_ip,
            helo: env.helo.clone(),
            from: env.from.to_string(),
            smtputf8: env.params.smtputf8,
            body_8bit: env.params.body == Some(Body::EightBitMime),
            auth: None,
            recipients: env
                .recipients
                .iter()
                .map(|r| QueuedRecipient {
                    original: r.path.to_string(),
                    destination: r.destination.clone(),
                })
                .collect(),
        }
    }

    /// Writes the header, ending with the blank line; the message bytes follow.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + 96 * self.recipients.len());
        out.push_str(VERSION_LINE);
        out.push('\n');
        field(&mut out, "id", &self.id);
        let _ = writeln!(out, "received: {}", self.received.0);
        let _ = writeln!(out, "client-ip: {}", self.client_ip);
        field(&mut out, "helo", &self.helo);
        field(&mut out, "from", &self.from);
        let _ = writeln!(out, "smtputf8: {}", yes_no(self.smtputf8));
        let body = if self.body_8bit { "8bitmime" } else { "7bit" };
        let _ = writeln!(out, "body: {body}");
        if let Some(user) = &self.auth {
            field(&mut out, "auth", user);
        }
        for r in &self.recipients {
            let (kind, dest) = match &r.destination {
                Destination::Local(a) => ("local", a),
                Destination::Remote(a) => ("remote", a),
            };
            out.push_str("rcpt: ");
            out.push_str(kind);
            out.push(' ');
            escape_into(&mut out, dest, true);
            out.push(' ');
            escape_into(&mut out, &r.original, true);
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }

    /// Reads the header at the start of `file`; returns the envelope and
    /// the offset at which the message bytes start. `file` may hold only a
    /// prefix of the queue file, as long as the header is complete.
    ///
    /// # Errors
    /// Any deviation from the format: unknown version, unknown, repeated
    /// or missing keys, bad escapes, values that do not parse.
    pub fn decode(file: &[u8]) -> Result<(Self, usize), QueueFileError> {
        let end = header_len(file).ok_or(QueueFileError::NoHeaderEnd)?;
        let head = file.get(..end - 1).ok_or(QueueFileError::NoHeaderEnd)?;
        let head = std::str::from_utf8(head).map_err(|_| QueueFileError::NotUtf8)?;
        let mut lines = head.split('\n');
        if lines.next() != Some(VERSION_LINE) {
            return Err(QueueFileError::UnknownVersion);
        }
        let mut d = Decoder::default();
        for (n, line) in lines.enumerate() {
            let line_no = n + 2;
            if line.is_empty() {
                // The final "\n" of the header before the blank line.
                continue;
            }
            d.line(line).map_err(|message| QueueFileError::Line {
                line: line_no,
                message,
            })?;
        }
        Ok((d.finish()?, end))
    }
}

/// Returns the length of the header including its blank line, when `file`
/// holds all of it.
pub fn header_len(file: &[u8]) -> Option<usize> {
    file.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn field(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(": ");
    escape_into(out, value, false);
    out.push('\n');
}

fn escape_into(out: &mut String, value: &str, space: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() || (space && c == ' ') => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn unescape(value: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_control() {
            return Err("unescaped control character");
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .filter(u8::is_ascii)
                    .ok_or("bad \\x escape")?;
                out.push(char::from(byte));
            }
            _ => return Err("bad escape"),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Decoder {
    id: Option<String>,
    received: Option<UnixTime>,
    client_ip: Option<IpAddr>,
    helo: Option<String>,
    from: Option<String>,
    smtputf8: Option<bool>,
    body_8bit: Option<bool>,
    auth: Option<String>,
    recipients: Vec<QueuedRecipient>,
}

fn set<T>(slot: &mut Option<T>, value: T) -> Result<(), &'static str> {
    if slot.is_some() {
        return Err("key given twice");
    }
    *slot = Some(value);
    Ok(())
}

impl Decoder {
    fn line(&mut self, line: &str) -> Result<(), &'static str> {
        let (key, value) = line.split_once(": ").ok_or("expected `key: value`")?;
        match key {
            "id" => {
                let id = unescape(value)?;
                if !is_valid_queue_id(&id) {
                    return Err("bad queue id");
                }
                set(&mut self.id, id)
            }
            "received" => {
                let t = value.parse().map_err(|_| "bad time")?;
                set(&mut self.received, UnixTime(t))
            }
            "client-ip" => {
                let ip = value.parse().map_err(|_| "bad IP address")?;
                set(&mut self.client_ip, ip)
            }
            "helo" => set(&mut self.helo, unescape(value)?),
            "from" => set(&mut self.from, unescape(value)?),
            "smtputf8" => set(&mut self.smtputf8, parse_yes_no(value)?),
            "body" => {
                let b = match value {
                    "7bit" => false,
                    "8bitmime" => true,
                    _ => return Err("body must be 7bit or 8bitmime"),
                };
                set(&mut self.body_8bit, b)
            }
            "auth" => set(&mut self.auth, unescape(value)?),
            "rcpt" => {
                self.recipients.push(parse_rcpt(value)?);
                Ok(())
            }
            _ => Err("unknown key"),
        }
    }

    fn finish(self) -> Result<QueueEnvelope, QueueFileError> {
        use QueueFileError::Missing;
        Ok(QueueEnvelope {
            id: self.id.ok_or(Missing("id"))?,
            received: self.received.ok_or(Missing("received"))?,
            client_ip: self.client_ip.ok_or(Missing("client-ip"))?,
            helo: self.helo.ok_or(Missing("helo"))?,
            from: self.from.ok_or(Missing("from"))?,
            smtputf8: self.smtputf8.ok_or(Missing("smtputf8"))?,
            body_8bit: self.body_8bit.ok_or(Missing("body"))?,
            auth: self.auth,
            recipients: self.recipients,
        })
    }
}

fn parse_yes_no(value: &str) -> Result<bool, &'static str> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("expected yes or no"),
    }
}

fn parse_rcpt(value: &str) -> Result<QueuedRecipient, &'static str> {
    let mut fields = value.split(' ');
    let (Some(kind), Some(dest), Some(original), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("rcpt needs kind, destination and original path");
    };
    let dest = unescape(dest)?;
    let destination = match kind {
        "local" => Destination::Local(dest),
        "remote" => Destination::Remote(dest),
        _ => return Err("rcpt kind must be local or remote"),
    };
    Ok(QueuedRecipient {
        original: unescape(original)?,
        destination,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::smtp::address::{Domain, ForwardPath, Host, LocalPart, Mailbox, ReversePath};
    use crate::smtp::command::MailParams;
    use crate::smtp::server::Recipient;

    fn sample() -> QueueEnvelope {
        QueueEnvelope {
            id: "0QJ2V4H1K8A3C01G02".into(),
            received: UnixTime(1_795_500_900),
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            helo: "client.example.net".into(),
            from: "<alice@example.net>".into(),
            smtputf8: false,
            body_8bit: false,
            auth: None,
            recipients: vec![
                QueuedRecipient {
                    original: "<Bob@Example.ORG>".into(),
                    destination: Destination::Local("bob@example.org".into()),
                },
                QueuedRecipient {
                    original: "<\"c d\"@partner.example>".into(),
                    destination: Destination::Remote("\"c d\"@partner.example".into()),
                },
            ],
        }
    }

    #[test]
    fn encodes_the_documented_header() {
        let text = String::from_utf8(sample().encode()).unwrap();
        assert_eq!(
            text,
            "hato-queue 1\nid: 0QJ2V4H1K8A3C01G02\nreceived: 1795500900\n\
             client-ip: 192.0.2.1\nhelo: client.example.net\nfrom: <alice@example.net>\n\
             smtputf8: no\nbody: 7bit\nrcpt: local bob@example.org <Bob@Example.ORG>\n\
             rcpt: remote \"c\\x20d\"@partner.example <\"c\\x20d\"@partner.example>\n\n"
        );
    }

    #[test]
    fn decode_returns_the_body_offset() {
        let env = sample();
        let mut file = env.encode();
        let header = file.len();
        file.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
        let (back, offset) = QueueEnvelope::decode(&file).unwrap();
        assert_eq!(back, env);
        assert_eq!(offset, header);
        assert_eq!(&file[offset..], b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn control_characters_cannot_forge_header_lines() {
        let mut env = sample();
        env.helo = "evil\nrcpt: local root@example.org <root@example.org>".into();
        env.from = "<a\r\n\\x0A@b>".into();
        let bytes = env.encode();
        let (back, _) = QueueEnvelope::decode(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.recipients.len(), 2);
    }

    #[test]
    fn from_session_copies_paths_with_brackets() {
        let mailbox = |l: &str, d: &str| Mailbox {
            local: LocalPart::dot_string(l),
            host: Host::Domain(Domain::new(d)),
        };
        let env = Envelope {
            helo: "c.example".into(),
            extended: true,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            from: ReversePath::Null,
            params: MailParams {
                size: None,
                body: Some(Body::EightBitMime),
                smtputf8: true,
            },
            recipients: vec![Recipient {
                path: ForwardPath::Mailbox {
                    mailbox: mailbox("Bob", "Example.org"),
                    had_route: false,
                },
                destination: Destination::Local("bob@example.org".into()),
            }],
        };
        let q = QueueEnvelope::from_session("ABC1".into(), UnixTime(5), &env);
        assert_eq!(q.from, "<>");
        assert!(q.smtputf8 && q.body_8bit);
        assert_eq!(q.recipients[0].original, "<Bob@Example.org>");
    }

    #[test]
    fn rejects_damaged_headers() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let cases = [
            ("", QueueFileError::NoHeaderEnd),
            ("hato-queue 2\nid: A\n\n", QueueFileError::UnknownVersion),
            (
                &good.replace("smtputf8: no\n", ""),
                QueueFileError::Missing("smtputf8"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(QueueEnvelope::decode(text.as_bytes()).err(), Some(want));
        }
        for bad in [
            good.replace("id: 0QJ", "id: ../"),
            good.replace("helo: ", "helo: \\q"),
            good.replace("client.example.net", "\\x0"),
            good.replace("client.example.net", "\\x+1"),
            good.replace("helo: ", "helo: \\xC3"),
            good.replace("body: 7bit\n", "body: 7bit\nbody: 7bit\n"),
            good.replace("body: 7bit\n", "body: 7bit\nx-unknown: 1\n"),
            good.replace("rcpt: local", "rcpt: elsewhere"),
            good.replace("<Bob@Example.ORG>", "<Bob@Example.ORG> extra"),
            good.replace("helo: client", "helo: cli\rent"),
        ] {
            assert!(QueueEnvelope::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    fn destination() -> impl Strategy<Value = Destination> {
        prop_oneof![
            any::<String>().prop_map(Destination::Local),
            any::<String>().prop_map(Destination::Remote),
        ]
    }

    fn envelope() -> impl Strategy<Value = QueueEnvelope> {
        let recipient =
            (any::<String>(), destination()).prop_map(|(original, destination)| QueuedRecipient {
                original,
                destination,
            });
        (
            "[A-Z0-9]{1,64}",
            any::<u64>(),
            any::<IpAddr>(),
            any::<String>(),
            any::<String>(),
            (any::<(bool, bool)>(), any::<Option<String>>()),
            prop::collection::vec(recipient, 0..5),
        )
            .prop_map(
                |(id, t, client_ip, helo, from, ((smtputf8, body_8bit), auth), recipients)| {
                    QueueEnvelope {
                        auth,
                        id,
                        received: UnixTime(t),
                        client_ip,
                        helo,
                        from,
                        smtputf8,
                        body_8bit,
                        recipients,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            let _ = QueueEnvelope::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_header_like_text(
            lines in prop::collection::vec("[a-z-]{0,9}(: )?[ -~\\\\]{0,20}", 0..12),
        ) {
            let text = format!("{VERSION_LINE}\n{}\n\n", lines.join("\n"));
            let _ = QueueEnvelope::decode(text.as_bytes());
        }

        #[test]
        fn encode_then_decode_round_trips(env in envelope(), body in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut file = env.encode();
            let header = file.len();
            file.extend_from_slice(&body);
            let decoded = QueueEnvelope::decode(&file);
            prop_assert_eq!(decoded, Ok((env, header)));
        }
    }
}
