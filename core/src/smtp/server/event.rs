//! What the session tells the front end, and how the front end answers.

use std::fmt;

use crate::policy::Destination;
use crate::refusal::RefuseReason;
use crate::time::UnixTime;

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
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quit => "quit",
            Self::PeerClosed => "peer-closed",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
            Self::Refused => "refused",
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
