//! What the sending session is given (configuration, transactions) and what
//! it reports (events, per-recipient outcomes, why it closed).

use std::fmt;
use std::time::Duration;

use crate::smtp::reply::Reply;

/// The reply waits of RFC 5321 §4.5.3.2, seen from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Initial 220 message (§4.5.3.2.1). Default 5 minutes.
    pub greeting: Duration,
    /// EHLO or HELO reply (not named by §4.5.3.2; as MAIL). Default 5 minutes.
    pub ehlo: Duration,
    /// MAIL reply (§4.5.3.2.2). Default 5 minutes.
    pub mail: Duration,
    /// Each RCPT reply (§4.5.3.2.3). Default 5 minutes.
    pub rcpt: Duration,
    /// DATA initiation, the 354 (§4.5.3.2.4). Default 2 minutes.
    pub data_init: Duration,
    /// Each data block sent (§4.5.3.2.5). Default 3 minutes.
    pub data_block: Duration,
    /// The reply to the final `.` (§4.5.3.2.6). Default 10 minutes.
    pub data_end: Duration,
    /// RSET and QUIT replies. Default 5 minutes.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MIN: u64 = 60;
        Self {
            greeting: Duration::from_secs(5 * MIN),
            ehlo: Duration::from_secs(5 * MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
            other: Duration::from_secs(5 * MIN),
        }
    }
}

/// How a client session behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The name sent with EHLO / HELO / LHLO (our host name).
    pub helo_name: String,
    /// The reply timers.
    pub timeouts: Timeouts,
    /// The longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5
    /// allows 512; hato accepts more from lenient servers). Default 2048.
    pub max_line: usize,
    /// Speak LMTP (RFC 2033) instead of SMTP: LHLO instead of EHLO (no
    /// HELO fallback), and after the final `.` one reply per accepted
    /// recipient, in RCPT order. Default false.
    pub lmtp: bool,
    /// Use STARTTLS (RFC 3207) when the server offers it. Default off.
    pub starttls: bool,
}

impl ClientConfig {
    /// Returns the default configuration for `helo_name`.
    pub fn new(helo_name: impl Into<String>) -> Self {
        Self {
            helo_name: helo_name.into(),
            timeouts: Timeouts::default(),
            max_line: 2048,
            lmtp: false,
            starttls: false,
        }
    }

    /// Returns the default LMTP configuration for `lhlo_name`.
    pub fn lmtp(lhlo_name: impl Into<String>) -> Self {
        Self {
            lmtp: true,
            ..Self::new(lhlo_name)
        }
    }
}

/// One message for one or more recipients of the same destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The reverse-path: `<a@b>` or `<>` (brackets added when missing).
    pub from: String,
    /// The forward-paths, `<c@d>` (brackets added when missing). Outcomes
    /// are reported by index into this list.
    pub recipients: Vec<String>,
    /// The message size in octets, for the SIZE check (RFC 1870).
    pub size: u64,
    /// The body holds octets above 127 (RFC 6152 8BITMIME).
    pub body_8bit: bool,
    /// The message was received with SMTPUTF8 (RFC 6531): declare it.
    pub smtputf8: bool,
}

/// The reply wait (or sending step) the session is in; names the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the 220 greeting.
    Greeting,
    /// Waiting for the EHLO reply (LHLO in LMTP).
    Ehlo,
    /// Waiting for the HELO reply.
    Helo,
    /// Waiting for the RSET reply.
    Rset,
    /// Waiting for the MAIL reply.
    Mail,
    /// Waiting for a RCPT reply.
    Rcpt,
    /// Waiting for the 354 to DATA.
    DataInit,
    /// Sending the message body.
    DataBlock,
    /// Waiting for the reply to the final `.` (in LMTP, one per accepted
    /// recipient).
    DataEnd,
    /// Waiting for the 221 to QUIT.
    Quit,
    /// Waiting for the 220 to STARTTLS, or for the caller's TLS handshake.
    StartTls,
}

impl Stage {
    /// Returns the lower-case name used in logs and bounces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::Rset => "RSET",
            Self::Mail => "MAIL FROM",
            Self::Rcpt => "RCPT TO",
            Self::DataInit => "DATA",
            Self::DataBlock => "message data",
            Self::DataEnd => "end of data",
            Self::Quit => "QUIT",
            Self::StartTls => "STARTTLS",
        }
    }
}

/// A reply that does not follow RFC 5321 §4.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A line longer than [`ClientConfig::max_line`].
    LineTooLong,
    /// A line that does not start with a three-digit reply code.
    BadReplyLine,
    /// A continuation line with another code than the first line.
    CodeChanged,
    /// A multi-line reply with too many lines.
    TooManyLines,
    /// A reply when none was expected.
    Unexpected,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LineTooLong => "reply line too long",
            Self::BadReplyLine => "malformed reply line",
            Self::CodeChanged => "reply code changed within a multi-line reply",
            Self::TooManyLines => "multi-line reply too long",
            Self::Unexpected => "unexpected reply",
        })
    }
}

/// Why a recipient was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server refused; its reply (kept for the bounce) and what it answered.
    Reply {
        /// The command (or wait) the reply answered.
        stage: Stage,
        /// The server's reply.
        reply: Reply,
    },
    /// No reply within the stage's timeout.
    Timeout(Stage),
    /// The server broke the protocol.
    Protocol(ProtocolError),
    /// The connection ended before the transaction did.
    ConnectionLost,
    /// The message is larger than the server's SIZE limit (RFC 1870 §6);
    /// it was not sent.
    TooLarge {
        /// The message size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// An 8-bit body for a server without 8BITMIME (RFC 6152 §3). hato
    /// does not convert to 7 bits; the message was not sent.
    EightBitUnsupported,
    /// UTF-8 envelope addresses for a server without SMTPUTF8 (RFC 6531
    /// §3.2); the message was not sent.
    Utf8Unsupported,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply { stage, reply } => {
                write!(f, "{reply} (in reply to {})", stage.as_str())
            }
            Self::Timeout(stage) => write!(f, "timeout waiting for {}", stage.as_str()),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::TooLarge { size, limit } => write!(
                f,
                "message size {size} exceeds the server's limit of {limit}"
            ),
            Self::EightBitUnsupported => f.write_str("8-bit message to a server without 8BITMIME"),
            Self::Utf8Unsupported => f.write_str("UTF-8 addresses to a server without SMTPUTF8"),
        }
    }
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took responsibility: the reply to the final `.`.
    Delivered {
        /// The server's reply.
        reply: Reply,
    },
    /// Try again later (4yz, timeouts, lost connections, protocol errors).
    Temporary(Failure),
    /// Do not try again (5yz, SIZE, 8BITMIME): bounce.
    Permanent(Failure),
}

impl Outcome {
    /// Returns the outcome of a negative reply at `stage`: temporary for
    /// 4yz, permanent otherwise.
    pub(super) fn refused(stage: Stage, reply: Reply) -> Self {
        if reply.code / 100 == 4 {
            Self::Temporary(Failure::Reply { stage, reply })
        } else {
            Self::Permanent(Failure::Reply { stage, reply })
        }
    }
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// QUIT was sent and answered (or the server hung up after it).
    Quit,
    /// The greeting, EHLO / HELO or RSET was refused (the reply), or the
    /// server sent 421 at any point.
    Refused(Reply),
    /// No reply within the stage's timeout.
    Timeout(Stage),
    /// The server broke the protocol.
    Protocol(ProtocolError),
    /// The server closed the connection.
    PeerClosed,
    /// The caller's TLS handshake after STARTTLS failed
    /// ([`ClientSession::tls_failed`](super::ClientSession::tls_failed)).
    TlsFailed,
}

/// Something the front end must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// EHLO (or HELO) succeeded; transactions can run.
    Ready,
    /// The server said 354: feed the body with `push_body`, then `end_body`.
    WantBody,
    /// The final outcome of one recipient (index into the transaction's list).
    RecipientResult {
        /// Index into [`Transaction::recipients`].
        index: usize,
        /// What became of it.
        outcome: Outcome,
    },
    /// The transaction is over; one outcome per recipient, in order. Comes
    /// exactly once for every transaction accepted by `send`.
    TransactionDone {
        /// Outcomes, index-aligned with [`Transaction::recipients`].
        outcomes: Vec<Outcome>,
    },
    /// The server accepted STARTTLS (220): after writing pending
    /// transmits, start the TLS client on this connection
    /// ([`crate::tls::TlsStream::client`]), move all further bytes through
    /// it, and call [`ClientSession::tls_established`](super::ClientSession::tls_established)
    /// when the handshake is done (or [`ClientSession::tls_failed`](super::ClientSession::tls_failed)).
    StartTls,
    /// The session is over; close the connection once transmits are sent.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// A call the session cannot take in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageError {
    /// A transaction is already queued or running.
    Busy,
    /// The session is closed (or closing after QUIT).
    Closed,
    /// No body is wanted now.
    NotSendingBody,
    /// A transaction without recipients.
    NoRecipients,
    /// An address holding CR, LF or another control character (it would
    /// inject commands).
    BadAddress,
    /// `tls_established` / `tls_failed` without a STARTTLS handshake.
    NotHandshaking,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Busy => "a transaction is already in progress",
            Self::Closed => "the session is closed",
            Self::NotSendingBody => "no message body is wanted now",
            Self::NoRecipients => "a transaction needs recipients",
            Self::BadAddress => "an address holds control characters",
            Self::NotHandshaking => "no STARTTLS handshake is in progress",
        })
    }
}

impl std::error::Error for UsageError {}
