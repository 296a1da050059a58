//! What the session tells the front end, and how the front end answers.

use std::fmt;

use crate::policy::Destination;
use crate::refusal::RefuseReason;
use crate::time::UnixTime;
use crate::tls::TlsInfo;

/// Something the front end must log or act on. Drain with
/// [`Session::poll_event`](super::Session::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// HELO or EHLO accepted.
    Helo {
        /// The name the client gave.
        name: String,
        /// EHLO (true) or HELO.
        extended: bool,
    },
    /// MAIL FROM accepted; `from` is the path with brackets.
    Mail {
        /// `<a@b>` or `<>`.
        from: String,
    },
    /// RCPT TO accepted.
    Rcpt {
        /// The path with brackets.
        to: String,
        /// Where it goes.
        destination: Destination,
    },
    /// A command, recipient or message was refused. Always logged.
    Refused {
        /// The command it answered (`mail`, `rcpt`, `data`, ...).
        stage: &'static str,
        /// The reply code sent.
        code: u16,
        /// Why.
        reason: RefuseReason,
    },
    /// DATA was accepted in principle: open a spool file for
    /// [`Session::envelope`](super::Session::envelope) and answer with
    /// [`Verdict::DataAccepted`] (or [`Verdict::Refuse`]). The session
    /// reads no input until then.
    DataStart,
    /// The whole message has been handed out by `take_body`: make it
    /// durable, then answer with [`Verdict::Queued`] (or [`Verdict::Refuse`]).
    DataEnd {
        /// Message size in bytes (after unstuffing, without the Received header).
        size: u64,
    },
    /// The message being received is refused or cut off: delete its spool file.
    DataDiscarded,
    /// The session is over; close the connection once transmits are sent.
    Closed(CloseReason),
    /// A question about state shared with other sessions (rates, greylist,
    /// block lists). The session reads no input until the front end calls
    /// [`Session::handle_verdict`](super::Session::handle_verdict) with
    /// [`Verdict::Answer`].
    Ask(Question),
    /// The client reached `limits.bad_recipients_limit`: penalise its IP for
    /// `limits.bad_recipients_penalty` (refused at connect meanwhile).
    Penalize,
    /// The client wrote to a spam trap: block its IP for `deny.trap_block`.
    TrapHit {
        /// The trap address.
        trap: String,
    },
    /// STARTTLS accepted (RFC 3207 §4): the `220` reply is queued ahead of
    /// this event. Write it, then run the server side of TLS on the
    /// connection ([`crate::tls::TlsStream::server`]): from now on every
    /// byte read is ciphertext. When the handshake has finished, call
    /// [`Session::tls_established`](super::Session::tls_established)
    /// before handing the session any plaintext. The session reads no
    /// plaintext until then (what it is offered is dropped, see
    /// [`Event::Discarded`]).
    StartTls,
    /// The handshake finished; the session forgot what it knew (RFC 3207 §4.2).
    TlsEstablished(TlsInfo),
    /// Bytes the client sent behind STARTTLS before the handshake were
    /// dropped, never executed (the CVE-2011-0411 class of injection).
    Discarded {
        /// How many bytes.
        bytes: usize,
    },
    /// AUTH succeeded (RFC 4954): the session now acts for `user`.
    Authenticated {
        /// The mailbox (users file address) the client logged in as.
        user: String,
        /// `PLAIN` or `LOGIN`.
        mechanism: &'static str,
    },
}

/// A password on its way to the front end: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the session asks the front end (see [`Event::Ask`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Before the greeting: may this client talk to us at all? (DNS block
    /// lists; penalties and trap blocks.)
    Connect,
    /// HELO / EHLO: is the client denied by name (`deny.from` names against
    /// the HELO name and the client's verified reverse-DNS name)?
    Helo {
        /// The name the client gave.
        name: String,
    },
    /// MAIL: is the client within `limits.messages_per_host`?
    Mail {
        /// The reverse-path with brackets.
        from: String,
    },
    /// RCPT, asked only when greylisting is on and the client is neither
    /// trusted nor authenticated: has this triplet waited long enough?
    Greylist {
        /// The reverse-path with brackets.
        from: String,
        /// The forward-path with brackets.
        to: String,
    },
    /// AUTH (RFC 4954): does `password` open `user`'s mailbox? The front
    /// end checks the users file off the session (argon2 is expensive),
    /// with bounded concurrency and the failure rate limits, and answers
    /// `Ok`, [`RefuseReason::AuthFailed`] (535),
    /// [`RefuseReason::AuthUnavailable`] (454: fail closed when the users
    /// file cannot be read) or [`RefuseReason::AuthTooManyFailures`] (421).
    Auth {
        /// The user name the client gave (lower case).
        user: String,
        /// The password.
        password: Secret,
        /// `PLAIN` or `LOGIN`.
        mechanism: &'static str,
    },
    /// MAIL from an authenticated client: is `user` within
    /// `limits.messages_per_user`?
    UserRate {
        /// The authenticated user.
        user: String,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection.
    PeerClosed,
    /// The client was silent past a timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// A refusal that ends the session (421, early talker, block lists).
    Refused,
    /// The TLS handshake or a TLS record failed.
    TlsFailed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quit => "quit",
            Self::PeerClosed => "peer-closed",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
            Self::Refused => "refused",
            Self::TlsFailed => "tls-failed",
        })
    }
}

/// The front end's answer to [`Event::DataStart`] or [`Event::DataEnd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answers `DataStart`: the spool file is open.
    DataAccepted {
        /// The queue id the message will carry.
        queue_id: String,
        /// The wall-clock time of receipt, for the Received header.
        date: UnixTime,
    },
    /// Answers `DataEnd`: the message and its envelope are fsynced.
    Queued,
    /// Answers either: the queue cannot take the message.
    Refuse(RefuseReason),
    /// Answers [`Event::Ask`]: `Ok` lets the command go on; `Err` refuses it
    /// with the reason's reply (and ends the session when the reply is 421
    /// or when it answers [`Question::Connect`]).
    Answer(Result<(), RefuseReason>),
}

/// The front end called the session at the wrong moment (h11's
/// `LocalProtocolError`): a bug in the front end, not the peer's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageError {
    /// A verdict arrived while none was asked for.
    NoVerdictPending,
    /// The verdict does not answer the pending question.
    WrongVerdict,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoVerdictPending => "verdict given while none was pending",
            Self::WrongVerdict => "verdict does not answer the pending event",
        })
    }
}

impl std::error::Error for UsageError {}
