//! Every reason hato refuses something, the reply each maps to, and the
//! log text (DESIGN.md §5): an administrator reads why in the log.

use std::fmt;

use crate::smtp::parse::ParseError;
use crate::smtp::reply::{Enhanced, Reply};

/// Why a command, a recipient or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The command line could not be parsed.
    Syntax(ParseError),
    /// A command line longer than 512 octets (RFC 5321 §4.5.3.1.4).
    LineTooLong,
    /// A command line holding a bare CR or LF (RFC 5321 §2.3.8).
    BareLineEndingInCommand,
    /// A command out of order (RFC 5321 §4.1.4), e.g. RCPT before MAIL.
    BadSequence(&'static str),
    /// DATA without any accepted recipient.
    NoValidRecipients,
    /// A local mailbox that does not exist (RFC 5321 §3.3; refused at RCPT,
    /// never accepted and bounced).
    UnknownUser(String),
    /// A recipient in a domain that is not ours, from a client that may not relay.
    RelayDenied(String),
    /// More recipients than `limits.max_recipients` (RFC 5321 §4.5.3.1.10).
    TooManyRecipients(usize),
    /// SIZE= declares more than `limits.max_message_size` (RFC 1870).
    DeclaredSizeTooLarge {
        /// What the client declared.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// The message data grew past `limits.max_message_size`.
    MessageTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Message data holding a bare CR or LF: refused as a whole so that no
    /// reading of it can find a second message (SMTP smuggling).
    BareLineEndingInData,
    /// MAIL on the submission port before authentication (RFC 6409 §4.3).
    AuthRequired,
    /// A command defined by an RFC that hato does not implement.
    NotImplemented(String),
    /// The client was silent past a timeout (RFC 5321 §4.5.3.2).
    Timeout(&'static str),
    /// The server is shutting down.
    ShuttingDown,
    /// The message could not be written to the queue (disk full, I/O error).
    QueueUnavailable(String),
    /// A non-ASCII address in a transaction without SMTPUTF8 (RFC 6531 §3.5).
    Utf8WithoutSmtputf8,
    /// More connections than `limits.max_connections`.
    TooManyConnections(usize),
    /// More connections from one address than `limits.max_connections_per_host`.
    TooManyConnectionsFromHost(usize),
}

impl RefuseReason {
    /// Returns the reply the client gets.
    pub fn reply(&self) -> Reply {
        match self {
            Self::Syntax(e) => e.reply(),
            Self::LineTooLong => Reply::fixed(500, Enhanced(5, 5, 2), "Line too long"),
            Self::BareLineEndingInCommand => Reply::fixed(
                500,
                Enhanced(5, 5, 2),
                "Bare CR or LF in command; lines must end with CRLF",
            ),
            Self::BadSequence(what) => Reply::new(
                503,
                Some(Enhanced(5, 5, 1)),
                format!("Bad sequence of commands: {what}"),
            ),
            Self::NoValidRecipients => Reply::fixed(554, Enhanced(5, 5, 1), "No valid recipients"),
            Self::UnknownUser(_) => Reply::fixed(
                550,
                Enhanced(5, 1, 1),
                "Mailbox unavailable: no such user here",
            ),
            Self::RelayDenied(_) => Reply::fixed(550, Enhanced(5, 7, 1), "Relaying denied"),
            Self::TooManyRecipients(_) => {
                Reply::fixed(452, Enhanced(4, 5, 3), "Too many recipients")
            }
            Self::DeclaredSizeTooLarge { limit, .. } | Self::MessageTooLarge { limit } => {
                Reply::new(
                    552,
                    Some(Enhanced(5, 3, 4)),
                    format!("Message size exceeds fixed limit of {limit} bytes"),
                )
            }
            Self::BareLineEndingInData => Reply::fixed(
                550,
                Enhanced(5, 5, 2),
                "Message refused: bare CR or LF in data; lines must end with CRLF",
            ),
            Self::AuthRequired => Reply::fixed(530, Enhanced(5, 7, 0), "Authentication required"),
            Self::NotImplemented(_) => {
                Reply::fixed(502, Enhanced(5, 5, 1), "Command not implemented")
            }
            Self::Timeout(_) => Reply::fixed(421, Enhanced(4, 4, 2), "Timeout, closing connection"),
            Self::ShuttingDown => Reply::fixed(
                421,
                Enhanced(4, 3, 2),
                "Service shutting down, closing connection",
            ),
            Self::QueueUnavailable(_) => Reply::fixed(
                451,
                Enhanced(4, 3, 0),
                "Local error in processing; try again later",
            ),
            Self::Utf8WithoutSmtputf8 => Reply::fixed(
                553,
                Enhanced(5, 6, 7),
                "Non-ASCII address needs MAIL FROM with SMTPUTF8",
            ),
            Self::TooManyConnections(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many connections, try again later",
            ),
            Self::TooManyConnectionsFromHost(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many connections from your address, try again later",
            ),
        }
    }
}

impl fmt::Display for RefuseReason {
    /// Writes the log text: what was refused and why, in plain words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "{e}"),
            Self::LineTooLong => f.write_str("command line over 512 octets"),
            Self::BareLineEndingInCommand => f.write_str("bare CR or LF in command line"),
            Self::BadSequence(what) => write!(f, "bad sequence: {what}"),
            Self::NoValidRecipients => f.write_str("DATA without valid recipients"),
            Self::UnknownUser(a) => write!(f, "unknown local user {a}"),
            Self::RelayDenied(a) => write!(
                f,
                "relay denied for {a}: not a local domain and client not trusted"
            ),
            Self::TooManyRecipients(n) => write!(f, "too many recipients (limit {n})"),
            Self::DeclaredSizeTooLarge { declared, limit } => {
                write!(f, "declared size {declared} over limit {limit}")
            }
            Self::MessageTooLarge { limit } => write!(f, "message over size limit {limit}"),
            Self::BareLineEndingInData => {
                f.write_str("bare CR or LF in message data (smuggling guard)")
            }
            Self::AuthRequired => f.write_str("MAIL on submission port without authentication"),
            Self::NotImplemented(c) => write!(f, "command not implemented: {c}"),
            Self::Timeout(what) => write!(f, "timeout waiting for {what}"),
            Self::ShuttingDown => f.write_str("server shutting down"),
            Self::QueueUnavailable(e) => write!(f, "queue unavailable: {e}"),
            Self::Utf8WithoutSmtputf8 => f.write_str("non-ASCII address without SMTPUTF8"),
            Self::TooManyConnections(n) => write!(f, "too many connections (limit {n})"),
            Self::TooManyConnectionsFromHost(n) => {
                write!(f, "too many connections from this address (limit {n})")
            }
        }
    }
}
