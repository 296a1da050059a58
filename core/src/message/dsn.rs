//! Bounces: the delivery status notification of RFC 3464, sent as the
//! `multipart/report; report-type=delivery-status` of RFC 6522, and the
//! decision whom it goes to.
//!
//! The report has three parts (RFC 6522 §3):
//! 1. `text/plain`: what happened, in plain words, with each failed
//!    recipient, why, and the remote server's reply;
//! 2. `message/delivery-status` (RFC 3464 §2): per-message fields
//!    (`Reporting-MTA`, `Arrival-Date`, §2.2) then one block per recipient
//!    (`Original-Recipient` only for an ORCPT, `Final-Recipient`, `Action`, `Status`,
//!    `Remote-MTA`, `Diagnostic-Code`, `Last-Attempt-Date`, §2.3);
//! 3. `text/rfc822-headers` (RFC 6522 §4): the original message's header
//!    block, never its body.
//!
//! The report comes from `MAILER-DAEMON@<hostname>`, carries
//! `Auto-Submitted: auto-replied` (RFC 3834 §5) and is sent with the null
//! reverse-path `<>` (RFC 5321 §4.5.5, §6.1), so it is never bounced in
//! turn: [`should_bounce`] sends the failure of a null-sender message to
//! the postmaster instead.
//!
//! Pure: the caller passes the time, the ids and a seed for the MIME
//! boundary. The output has CRLF line endings and no line over 998
//! octets (RFC 5322 §2.1.1): long diagnostics are folded, long text wrapped.

use std::fmt::Write as _;

use super::fold::{fold_field, one_line, one_line_ascii, wrap_into};
use crate::smtp::reply::{Enhanced, Reply};
use crate::time::UnixTime;

/// The reverse-path of every bounce (RFC 5321 §4.5.5).
pub const BOUNCE_REVERSE_PATH: &str = "<>";

/// The local part of the report's `From:` address.
pub const MAILER_DAEMON: &str = "MAILER-DAEMON";

/// Whom the report about a failed message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceTarget {
    /// The envelope sender (the address, without brackets).
    Sender(String),
    /// The message had the null reverse-path: it was itself a bounce (or
    /// another notification), and bouncing it could loop. The
    /// administrator is told instead.
    Postmaster,
    /// Nobody: the sender is not an address a report can go to.
    None,
}

/// Decides whom to tell that a message failed, from its envelope sender
/// as stored in the queue (`<a@b>` or `<>`; brackets optional). Never a
/// bounce to the null sender: that goes to the postmaster.
pub fn should_bounce(sender: &str) -> BounceTarget {
    let inner = sender
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(sender)
        .trim();
    if inner.is_empty() {
        return BounceTarget::Postmaster;
    }
    let usable = inner.contains('@')
        && !inner.starts_with('@')
        && !inner.ends_with('@')
        && !inner.contains(|c: char| c.is_control() || c == '<' || c == '>');
    if usable {
        BounceTarget::Sender(inner.to_owned())
    } else {
        BounceTarget::None
    }
}

/// What the report says about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// Delivery failed for good (`Action: failed`).
    Failure,
    /// Delivery is late but still being tried (`Action: delayed`).
    Delay,
}

/// A remote server that answered, and what it said.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFailure<'a> {
    /// The server's name (or address), for `Remote-MTA: dns; <name>`.
    pub mta: &'a str,
    /// Its reply, for `Diagnostic-Code: smtp; <reply>` and the status.
    pub reply: &'a Reply,
}

/// One recipient the report is about.
#[derive(Debug, Clone, Copy)]
pub struct DsnRecipient<'a> {
    /// The recipient's ORCPT parameter (RFC 3461 §4.2), for
    /// `Original-Recipient`. RFC 3461 §6.3 (d): the field appears if and
    /// only if the client gave ORCPT, so `None` (always, while hato does
    /// not offer the DSN extension) leaves it out.
    pub original: Option<&'a str>,
    /// The address delivery was tried to (`Final-Recipient`).
    pub address: &'a str,
    /// Why, in plain words ("the remote server refused the recipient").
    pub reason: &'a str,
    /// The status code when no reply gives one (a local failure); `None`
    /// derives it from the reply, or uses 5.0.0 / 4.0.0.
    pub status: Option<Enhanced>,
    /// The remote server and its reply, when one answered.
    pub remote: Option<RemoteFailure<'a>>,
    /// The last attempt, for `Last-Attempt-Date`.
    pub last_attempt: Option<UnixTime>,
}

/// Everything a report is made from.
#[derive(Debug, Clone, Copy)]
pub struct DsnInput<'a> {
    /// Failure or delay warning.
    pub kind: DsnKind,
    /// Our host name: `Reporting-MTA`, the `From:` domain, the Message-ID.
    pub hostname: &'a str,
    /// Whom the report goes to (`To:`), without brackets: the original
    /// sender, or the postmaster (see [`should_bounce`]).
    pub to: &'a str,
    /// The original envelope sender (brackets optional; empty or `<>` for
    /// the null sender), as the text part names it.
    pub original_sender: &'a str,
    /// The original message's queue id.
    pub queue_id: &'a str,
    /// A unique id for the report itself (its own queue id): the
    /// Message-ID is `<dsn_id@hostname>`.
    pub dsn_id: &'a str,
    /// When the original message arrived.
    pub arrival: UnixTime,
    /// Now: the report's `Date:`.
    pub now: UnixTime,
    /// For a delay warning: until when delivery goes on (`Will-Retry-Until`).
    pub retry_until: Option<UnixTime>,
    /// The recipients the report is about (at least one).
    pub recipients: &'a [DsnRecipient<'a>],
    /// The original message's header block; anything after the first
    /// empty line (the body) is ignored, so the whole message may be given.
    pub original_headers: &'a [u8],
    /// A seed for the MIME boundary (the core draws no random numbers).
    pub boundary_seed: u64,
}

/// A composed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The message: header and MIME body, CRLF line endings.
    pub bytes: Vec<u8>,
    /// Its Message-ID, with brackets.
    pub message_id: String,
    /// Whether the message holds 8-bit octets (UTF-8 addresses or original
    /// headers): it must then be sent with `BODY=8BITMIME` (RFC 6152).
    pub body_8bit: bool,
}

/// Composes the report.
pub fn compose(input: &DsnInput<'_>) -> Dsn {
    let host = one_line_ascii(input.hostname);
    let headers = original_header_block(input.original_headers);
    let text = text_part(input);
    let status = status_part(input, &host);
    let boundary = boundary(input.boundary_seed, &[&text, &status, &headers]);
    let message_id = format!("<{}@{host}>", one_line_ascii(input.dsn_id));
    let subject = match input.kind {
        DsnKind::Failure => "Undelivered Mail Returned to Sender",
        DsnKind::Delay => "Delayed Mail (still being retried)",
    };

    let mut out = Vec::with_capacity(2048 + headers.len());
    let mut head = String::with_capacity(512);
    let _ = write!(
        head,
        "From: Mail Delivery System <{MAILER_DAEMON}@{host}>\r\n"
    );
    head.push_str(&fold_field("To", &format!("<{}>", one_line(input.to))));
    head.push_str(&fold_field("Subject", subject));
    let _ = write!(head, "Date: {}\r\n", input.now.rfc5322());
    head.push_str(&fold_field("Message-ID", &message_id));
    head.push_str("Auto-Submitted: auto-replied\r\n");
    head.push_str("MIME-Version: 1.0\r\n");
    let _ = write!(
        head,
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    );
    head.push_str("\r\nThis is a MIME-encapsulated message (a delivery status notification).\r\n");
    out.extend_from_slice(head.as_bytes());

    let part = |out: &mut Vec<u8>, content_type: &str, body: &[u8]| {
        let cte = if body.is_ascii() { "7bit" } else { "8bit" };
        let header = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
    };
    let text_type = if text.is_ascii() {
        "text/plain; charset=us-ascii"
    } else {
        "text/plain; charset=utf-8"
    };
    part(&mut out, text_type, text.as_bytes());
    part(&mut out, "message/delivery-status", status.as_bytes());
    part(&mut out, "text/rfc822-headers", &headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body_8bit = !out.is_ascii();
    Dsn {
        bytes: out,
        message_id,
        body_8bit,
    }
}

/// Part 1: the explanation for a person.
fn text_part(input: &DsnInput<'_>) -> String {
    let host = one_line(input.hostname);
    let sender = bare(input.original_sender);
    let sender = if sender.is_empty() {
        "<> (the null sender: it was itself a notification)".to_owned()
    } else {
        format!("<{}>", one_line(sender))
    };
    let mut t = String::with_capacity(1024);
    let intro = match input.kind {
        DsnKind::Failure => format!(
            "This is the mail system at {host}.\n\nYour message could not be delivered to \
             the recipients listed below. It has been removed from the queue; this \
             report is the only notice you will get about it."
        ),
        DsnKind::Delay => {
            let until = input
                .retry_until
                .map_or_else(String::new, |t| format!(" until {}", t.rfc5322()));
            format!(
                "This is the mail system at {host}.\n\nYour message has not been delivered \
                 yet to the recipients listed below. It is still in the queue and delivery \
                 will be tried again{until}. You do not need to send it again."
            )
        }
    };
    wrap_into(&mut t, "", &intro);
    t.push_str("\r\n");
    wrap_into(
        &mut t,
        "",
        &format!(
            "Message {} from {sender}, received {}.",
            one_line(input.queue_id),
            input.arrival.rfc5322()
        ),
    );
    for r in input.recipients {
        t.push_str("\r\n");
        wrap_into(&mut t, "", &format!("<{}>:", one_line(bare(r.address))));
        wrap_into(&mut t, "    ", &one_line(r.reason));
        if let Some(remote) = r.remote {
            wrap_into(
                &mut t,
                "    ",
                &format!("The server {} answered:", one_line(remote.mta)),
            );
            wrap_into(&mut t, "        ", &reply_text(remote.reply));
        }
    }
    t.push_str("\r\n");
    wrap_into(
        &mut t,
        "",
        "The headers of your message are attached below; its body is not.",
    );
    t
}

/// Part 2: the machine-readable report of RFC 3464 §2.
fn status_part(input: &DsnInput<'_>, host: &str) -> String {
    let mut s = String::with_capacity(512);
    s.push_str(&fold_field("Reporting-MTA", &format!("dns; {host}")));
    s.push_str(&fold_field(
        "X-Hato-Queue-ID",
        &one_line_ascii(input.queue_id),
    ));
    let _ = write!(s, "Arrival-Date: {}\r\n", input.arrival.rfc5322());
    for r in input.recipients {
        s.push_str("\r\n");
        if let Some(original) = r.original {
            s.push_str(&fold_field("Original-Recipient", &address_field(original)));
        }
        s.push_str(&fold_field("Final-Recipient", &address_field(r.address)));
        let action = match input.kind {
            DsnKind::Failure => "failed",
            DsnKind::Delay => "delayed",
        };
        let _ = write!(s, "Action: {action}\r\n");
        let _ = write!(s, "Status: {}\r\n", status_of(input.kind, r));
        if let Some(remote) = r.remote {
            s.push_str(&fold_field(
                "Remote-MTA",
                &format!("dns; {}", one_line_ascii(remote.mta)),
            ));
            s.push_str(&fold_field(
                "Diagnostic-Code",
                &format!("smtp; {}", one_line_ascii(&reply_text(remote.reply))),
            ));
        }
        if let Some(t) = r.last_attempt {
            let _ = write!(s, "Last-Attempt-Date: {}\r\n", t.rfc5322());
        }
        if input.kind == DsnKind::Delay {
            if let Some(t) = input.retry_until {
                let _ = write!(s, "Will-Retry-Until: {}\r\n", t.rfc5322());
            }
        }
    }
    s
}

/// The status of one recipient: given, else the reply's enhanced code,
/// else derived from the reply code (RFC 3463 §3), else `5.0.0` for a
/// failure and `4.0.0` for a delay.
fn status_of(kind: DsnKind, r: &DsnRecipient<'_>) -> Enhanced {
    let default_class = match kind {
        DsnKind::Failure => 5,
        DsnKind::Delay => 4,
    };
    if let Some(status) = r.status {
        return status;
    }
    let Some(reply) = r.remote.map(|f| f.reply) else {
        return Enhanced(default_class, 0, 0);
    };
    if let Some(esc) = reply.esc.filter(|e| matches!(e.0, 2 | 4 | 5)) {
        return esc;
    }
    status_from_code(reply.code).unwrap_or(Enhanced(default_class, 0, 0))
}

/// Derives an enhanced status code from a basic reply code, for servers
/// that do not send one (RFC 3463 §3 subjects: 1 addressing, 2 mailbox,
/// 3 mail system, 4 network and routing, 5 protocol).
pub fn status_from_code(code: u16) -> Option<Enhanced> {
    let class = match code / 100 {
        2 => 2,
        4 => 4,
        5 => 5,
        _ => return None,
    };
    Some(match code {
        421 => Enhanced(4, 4, 2),
        450 | 550 => Enhanced(class, 2, 0),
        451 => Enhanced(4, 3, 0),
        452 => Enhanced(4, 2, 2),
        551 => Enhanced(5, 1, 6),
        552 => Enhanced(5, 2, 2),
        553 => Enhanced(5, 1, 3),
        500..=504 | 555 => Enhanced(5, 5, 0),
        _ => Enhanced(class, 0, 0),
    })
}

/// The reply as one line of text: code, enhanced code and the lines of
/// its text joined by spaces (the way it is shown to people and in
/// `Diagnostic-Code`).
fn reply_text(reply: &Reply) -> String {
    let mut s = reply.code.min(999).to_string();
    if let Some(esc) = reply.esc {
        let _ = write!(s, " {esc}");
    }
    for line in reply.text.split('\n') {
        let line = line.trim();
        if !line.is_empty() {
            s.push(' ');
            s.push_str(line);
        }
    }
    s
}

/// An address as `rfc822; addr` (RFC 3464 §2.3.2), or for one outside
/// printable ASCII (an SMTPUTF8 address, or a stray control character)
/// `utf-8; addr` with those characters written `\x{HEX}`: the
/// utf-8-addr-xtext form RFC 6533 §3 requires in `message/delivery-status`.
fn address_field(address: &str) -> String {
    let address = bare(address);
    if address.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return format!("rfc822; {address}");
    }
    let mut s = String::from("utf-8; ");
    for c in address.chars() {
        match c {
            '!'..='*' | ','..='<' | '>'..='[' | ']'..='~' => s.push(c),
            c => {
                let _ = write!(s, "\\x{{{:X}}}", u32::from(c));
            }
        }
    }
    s
}

/// Strips the brackets of a path: `<a@b>` → `a@b`.
fn bare(path: &str) -> &str {
    let path = path.trim();
    path.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(path)
}

/// Returns the header block of `message` (up to, not including, the empty
/// line that ends it), with every line ending made CRLF and lines longer
/// than 998 octets cut into folded pieces. A message that has no empty
/// line is all header block.
fn original_header_block(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len().min(64 * 1024));
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // Each piece after the first goes on a continuation line.
        for (i, piece) in line.chunks(900).enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend(piece.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Returns a boundary made from `seed` that occurs in none of `parts`
/// (RFC 2046 §5.1.1: it must not appear inside an encapsulated part; the
/// original headers are the sender's text and could hold any string).
fn boundary(seed: u64, parts: &[&dyn AsRef<[u8]>]) -> String {
    let mut n: u32 = 0;
    loop {
        let b = format!("=_hato_dsn_{seed:016x}_{n}");
        let clash = parts
            .iter()
            .any(|p| p.as_ref().windows(b.len()).any(|w| w == b.as_bytes()));
        if !clash {
            return b;
        }
        n = n.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests;
