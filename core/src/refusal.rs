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
    /// Past `limits.messages_per_host` (mail bomb guard).
    RateExceeded {
        /// The configured count...
        count: u32,
        /// ...per this many seconds.
        per_secs: u64,
    },
    /// The client's IP is penalised after too many unknown recipients.
    Penalized,
    /// The client's IP wrote to a spam trap and is blocked.
    TrapBlocked,
    /// Listed in a DNS block list.
    Dnsbl {
        /// The list's zone.
        zone: String,
    },
    /// Denied by `deny.from` (an address, or a name matching the HELO name
    /// or the verified reverse-DNS name).
    DeniedClient(String),
    /// The envelope sender is in `deny.senders`.
    DeniedSender(String),
    /// The recipient is a spam trap.
    SpamTrap(String),
    /// Greylisted: first sight of this (client, sender, recipient).
    Greylisted,
    /// The client talked before the greeting (greet pause).
    EarlyTalker,
    /// Too many refused commands in one session.
    TooManyErrors(usize),
    /// Too many mail transactions in one connection.
    TooManyTransactions(usize),
    /// Too many unknown recipients in one session (directory harvest).
    TooManyBadRecipients(usize),
    /// More connections than `limits.max_connections`.
    TooManyConnections(usize),
    /// More connections from one address than `limits.max_connections_per_host`.
    TooManyConnectionsFromHost(usize),
    /// AUTH with a wrong user name or password (RFC 4954 §6).
    AuthFailed(String),
    /// The users file cannot be read: AUTH fails closed (RFC 4954 §6, 454).
    AuthUnavailable(String),
    /// Past `limits.auth_failures` for the client's address or the user.
    AuthTooManyFailures(String),
    /// An AUTH mechanism other than PLAIN and LOGIN.
    AuthMechanism(String),
    /// An AUTH response that is not valid base64 or not a valid PLAIN message.
    AuthBadResponse,
    /// The client answered `*` to a challenge (RFC 4954 §4).
    AuthCancelled,
    /// AUTH in plaintext where it is offered only inside TLS.
    AuthNeedsTls,
    /// Envelope sender or From:/Sender: header not owned by the
    /// authenticated user (RFC 6409 §6.1).
    SenderNotOwned {
        /// The user.
        user: String,
        /// The address they tried to send as.
        address: String,
    },
    /// Past `limits.messages_per_user` for an authenticated user.
    UserRateExceeded {
        /// The user.
        user: String,
        /// The configured count...
        count: u32,
        /// ...per this many seconds.
        per_secs: u64,
    },
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
            Self::RateExceeded { .. } => Reply::fixed(
                451,
                Enhanced(4, 7, 1),
                "Too many messages from your address; slow down and try again later",
            ),
            Self::Penalized => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many unknown recipients from your address; try again later",
            ),
            Self::TrapBlocked => Reply::fixed(
                554,
                Enhanced(5, 7, 1),
                "Your address is blocked for sending to a spam trap",
            ),
            Self::Dnsbl { zone } => Reply::new(
                554,
                Some(Enhanced(5, 7, 1)),
                format!("Service unavailable; client address listed by {zone}"),
            ),
            Self::DeniedClient(_) => Reply::fixed(554, Enhanced(5, 7, 1), "Access denied"),
            Self::DeniedSender(_) => {
                Reply::fixed(553, Enhanced(5, 7, 1), "Sender address rejected")
            }
            Self::SpamTrap(_) => Reply::fixed(
                550,
                Enhanced(5, 7, 1),
                "Mailbox unavailable; your address is now blocked",
            ),
            Self::Greylisted => {
                Reply::fixed(451, Enhanced(4, 7, 1), "Greylisted: please try again later")
            }
            Self::EarlyTalker => Reply::fixed(
                554,
                Enhanced(5, 5, 0),
                "Protocol error: you talked before the greeting",
            ),
            Self::TooManyErrors(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many errors, closing connection",
            ),
            Self::TooManyTransactions(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many messages in one connection; reconnect to send more",
            ),
            Self::TooManyBadRecipients(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many unknown recipients, closing connection",
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
            Self::AuthFailed(_) => {
                Reply::fixed(535, Enhanced(5, 7, 8), "Authentication credentials invalid")
            }
            Self::AuthUnavailable(_) => {
                Reply::fixed(454, Enhanced(4, 7, 0), "Temporary authentication failure")
            }
            Self::AuthTooManyFailures(_) => Reply::fixed(
                421,
                Enhanced(4, 7, 0),
                "Too many failed authentications; try again later",
            ),
            Self::AuthMechanism(_) => Reply::fixed(
                504,
                Enhanced(5, 5, 4),
                "Unrecognized authentication type; use PLAIN or LOGIN",
            ),
            Self::AuthBadResponse => Reply::fixed(501, Enhanced(5, 5, 2), "Cannot decode response"),
            Self::AuthCancelled => Reply::fixed(501, Enhanced(5, 7, 0), "Authentication cancelled"),
            Self::AuthNeedsTls => Reply::fixed(
                538,
                Enhanced(5, 7, 11),
                "Encryption required for authentication; use STARTTLS first",
            ),
            Self::SenderNotOwned { .. } => Reply::fixed(
                553,
                Enhanced(5, 7, 1),
                "Sender address not owned by authenticated user",
            ),
            Self::UserRateExceeded { .. } => Reply::fixed(
                451,
                Enhanced(4, 7, 1),
                "Too many messages from your account; try again later",
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
            Self::RateExceeded { count, per_secs } => {
                write!(
                    f,
                    "message rate over {count} per {per_secs}s from this address"
                )
            }
            Self::Penalized => f.write_str("address penalised after too many unknown recipients"),
            Self::TrapBlocked => f.write_str("address blocked after writing to a spam trap"),
            Self::Dnsbl { zone } => write!(f, "listed in DNS block list {zone}"),
            Self::DeniedClient(what) => write!(f, "client denied by deny.from entry {what}"),
            Self::DeniedSender(what) => write!(f, "sender denied by deny.senders entry {what}"),
            Self::SpamTrap(trap) => write!(f, "wrote to spam trap {trap}"),
            Self::Greylisted => {
                f.write_str("greylisted (first attempt of this client, sender and recipient)")
            }
            Self::EarlyTalker => f.write_str("client talked before the greeting"),
            Self::TooManyErrors(n) => write!(f, "too many errors in session (limit {n})"),
            Self::TooManyTransactions(n) => {
                write!(f, "too many transactions in connection (limit {n})")
            }
            Self::TooManyBadRecipients(n) => {
                write!(
                    f,
                    "too many unknown recipients in session (limit {n}): harvest attempt"
                )
            }
            Self::Utf8WithoutSmtputf8 => f.write_str("non-ASCII address without SMTPUTF8"),
            Self::TooManyConnections(n) => write!(f, "too many connections (limit {n})"),
            Self::TooManyConnectionsFromHost(n) => {
                write!(f, "too many connections from this address (limit {n})")
            }
            Self::AuthFailed(user) => write!(f, "authentication failed for user {user}"),
            Self::AuthUnavailable(why) => {
                write!(f, "authentication unavailable (failing closed): {why}")
            }
            Self::AuthTooManyFailures(what) => {
                write!(f, "too many failed authentications ({what})")
            }
            Self::AuthMechanism(m) => write!(f, "unknown AUTH mechanism {m}"),
            Self::AuthBadResponse => f.write_str("AUTH response not valid base64 or SASL"),
            Self::AuthCancelled => f.write_str("AUTH cancelled by the client"),
            Self::AuthNeedsTls => f.write_str("AUTH without TLS where TLS is required"),
            Self::SenderNotOwned { user, address } => {
                write!(f, "user {user} may not send as {address}")
            }
            Self::UserRateExceeded {
                user,
                count,
                per_secs,
            } => write!(f, "user {user} sent over {count} messages per {per_secs}s"),
        }
    }
}
