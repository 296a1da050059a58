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
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quit => "quit",
            Self::PeerClosed => "peer-closed",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
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
