//! The receiving SMTP session (RFC 5321 with the RFC 821 / 1123
//! requirements; ESMTP PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME
//! RFC 6152, ENHANCEDSTATUSCODES RFC 2034, SMTPUTF8 RFC 6531, STARTTLS
//! RFC 3207, AUTH RFC 4954, submission rules of RFC 6409).
//!
//! A sans-IO state machine in the quinn-proto / rustls shape. The front end
//! feeds it bytes and time and polls it, in this order, until each is empty,
//! and only then blocks:
//!
//! 1. [`Session::poll_transmit`]: bytes to write to the client;
//! 2. [`Session::take_body`]: message data to append to the spool file;
//! 3. [`Session::poll_event`]: events to log or act on; [`Event::DataStart`]
//!    and [`Event::DataEnd`] need an answer through [`Session::handle_verdict`];
//! 4. [`Session::poll_timeout`]: when to call [`Session::handle_timeout`].
//!
//! [`Session::handle_input`] returns how many bytes it consumed. It stops
//! early while a verdict is pending or the body buffer is full; the front end
//! keeps the rest and offers it again after draining. This is the
//! back-pressure: nothing is buffered without bound.
//!
//! TLS: the session only ever sees plaintext. When the front end has a
//! certificate it calls [`Session::offer_starttls`]; STARTTLS then ends in
//! [`Event::StartTls`] and, after the handshake, the front end calls
//! [`Session::tls_established`]. For implicit TLS (RFC 8314, the
//! submissions listener) the front end runs TLS from the first byte and
//! calls `tls_established` when the handshake is done.

mod auth;
mod commands;
mod data;
mod envelope;
mod event;
mod guard;
mod line;
mod starttls;
mod submission;

pub use envelope::{Envelope, Recipient};
pub use event::{CloseReason, Event, Question, Secret, UsageError, Verdict};
pub use line::MAX_COMMAND_LINE;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::directory::Directory;
use crate::policy::ListenerKind;
use crate::refusal::RefuseReason;
use crate::smtp::reply::Reply;
use crate::time::{Timer, TimerTable};
use crate::tls::TlsInfo;

use auth::SaslStep;
use data::{DataReceiver, Taint};
use line::{Line, LineReader};
use submission::HeaderFix;

/// How much message data the session gathers before the front end must
/// take it (the size of one spool write).
pub const BODY_CHUNK: usize = 64 * 1024;

/// The two ends of the connection and the listener it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// Which listener.
    pub listener: ListenerKind,
}

/// Where the session stands (h11-style explicit states).
#[derive(Debug)]
enum State {
    /// Before the greeting: the greet pause runs, or the front end is asked
    /// whether the client may connect. Input now is an early talker.
    Greeting,
    /// Reading command lines.
    Command,
    /// A command waits for the front end's answer to [`Event::Ask`].
    AwaitAnswer(Pending),
    /// A reply is held back by the bad-recipient throttle; no input is
    /// read until [`Timer::Throttle`] fires and the reply goes out.
    Throttled,
    /// DATA accepted by the session; waiting for the front end's spool.
    AwaitDataStart,
    /// STARTTLS answered with 220: waiting for the front end's handshake.
    /// Plaintext offered now was pipelined behind STARTTLS and is dropped.
    AwaitTls,
    /// Receiving message data.
    Data(DataReceiver),
    /// End of data seen; waiting for the front end's fsync.
    AwaitQueued {
        /// The queue id to report.
        queue_id: String,
    },
    /// Over: no more input is read.
    Closed,
}

/// A command that waits for the answer to its question.
#[derive(Debug)]
enum Pending {
    /// The greeting (`Question::Connect`).
    Connect,
    /// HELO / EHLO (`Question::Helo`).
    Helo { name: String, extended: bool },
    /// MAIL FROM (`Question::Mail`).
    Mail {
        from: crate::smtp::address::ReversePath,
        params: crate::smtp::command::MailParams,
    },
    /// RCPT TO (`Question::Greylist`).
    Rcpt {
        to: crate::smtp::address::ForwardPath,
        destination: crate::policy::Destination,
    },
    /// AUTH (`Question::Auth`).
    Auth {
        user: String,
        mechanism: &'static str,
    },
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<Config>,
    dir: Arc<Directory>,
    peer: Peer,
    state: State,
    lines: LineReader,
    helo: Option<(String, bool)>,
    tx: Option<Envelope>,
    queue_id: Option<String>,
    /// AUTH succeeded (`auth_user` says as whom).
    authenticated: bool,
    /// The user the client authenticated as.
    auth_user: Option<String>,
    /// An AUTH exchange waiting for the client's next line.
    sasl: Option<SaslStep>,
    /// STARTTLS may be offered (the front end has a certificate).
    starttls: bool,
    /// The connection runs inside TLS.
    tls: Option<TlsInfo>,
    /// Submission: the header block being checked and completed.
    header: Option<HeaderFix>,
    /// Submission: the message is refused at the end of data.
    data_refusal: Option<RefuseReason>,
    /// The client is in `relay.trusted_networks`: no greet pause, no
    /// message rate, no greylisting.
    trusted: bool,
    /// Refused commands so far (`limits.max_errors`).
    errors: usize,
    /// MAIL commands accepted so far (`limits.max_transactions`).
    transactions: usize,
    /// Unknown local recipients so far (the bad-recipient throttle).
    bad_recipients: usize,
    /// The client wrote to a spam trap: it gets nothing more.
    trapped: bool,
    /// Replies held back by the throttle.
    held: Vec<u8>,
    out: Vec<u8>,
    body: Vec<u8>,
    events: VecDeque<Event>,
    timers: TimerTable,
}

impl Session {
    /// Starts a session. The 220 greeting is queued at once, after the
    /// greet pause (`limits.greet_pause`, for untrusted clients of the smtp
    /// listener), or after the front end answers [`Question::Connect`]
    /// (asked when DNS block lists are configured).
    pub fn new(cfg: Arc<Config>, dir: Arc<Directory>, peer: Peer, now: Instant) -> Self {
        let trusted = cfg
            .relay
            .trusted_networks
            .iter()
            .any(|n| n.contains(peer.remote.ip()));
        let mut s = Self {
            cfg,
            dir,
            peer,
            state: State::Greeting,
            lines: LineReader::default(),
            helo: None,
            tx: None,
            queue_id: None,
            authenticated: false,
            auth_user: None,
            sasl: None,
            starttls: false,
            tls: None,
            header: None,
            data_refusal: None,
            trusted,
            errors: 0,
            transactions: 0,
            bad_recipients: 0,
            trapped: false,
            held: Vec::new(),
            out: Vec::new(),
            body: Vec::new(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
        };
        s.start(now);
        s
    }

    /// Feeds bytes from the client; returns how many were consumed.
    /// Fewer than `input.len()` means: drain the outputs, then offer the rest.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            let n = match self.state {
                State::Greeting => self.early_talker(&input[used..]),
                State::Command => self.read_command(now, &input[used..]),
                State::Data(_) => self.read_data(now, &input[used..]),
                State::AwaitTls => self.discard_pipelined(&input[used..]),
                State::AwaitDataStart
                | State::AwaitQueued { .. }
                | State::AwaitAnswer(_)
                | State::Throttled
                | State::Closed => 0,
            };
            if n == 0 {
                break;
            }
            used += n;
            if self.body.len() >= BODY_CHUNK {
                break;
            }
        }
        used
    }

    /// Tells the session the client closed its side.
    pub fn handle_eof(&mut self, _now: Instant) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if matches!(self.state, State::Data(_)) {
            self.events.push_back(Event::DataDiscarded);
        }
        self.close(CloseReason::PeerClosed);
    }

    /// Answers [`Event::DataStart`] or [`Event::DataEnd`].
    ///
    /// # Errors
    /// [`UsageError`] when no such question is pending or the verdict does
    /// not fit it; the session is unchanged.
    pub fn handle_verdict(&mut self, now: Instant, verdict: Verdict) -> Result<(), UsageError> {
        match (&self.state, verdict) {
            (State::AwaitDataStart, Verdict::DataAccepted { queue_id, date }) => {
                self.start_data(now, queue_id, date);
                Ok(())
            }
            (State::AwaitQueued { .. }, Verdict::Queued) => {
                self.finish_queued(now);
                Ok(())
            }
            (State::AwaitDataStart | State::AwaitQueued { .. }, Verdict::Refuse(reason)) => {
                self.tx = None;
                self.state = State::Command;
                self.refuse("data", reason);
                self.arm_command_timer(now);
                Ok(())
            }
            (State::AwaitAnswer(_), Verdict::Answer(answer)) => {
                let State::AwaitAnswer(pending) =
                    std::mem::replace(&mut self.state, State::Command)
                else {
                    return Err(UsageError::NoVerdictPending);
                };
                self.answered(now, pending, answer);
                Ok(())
            }
            (State::AwaitDataStart | State::AwaitQueued { .. } | State::AwaitAnswer(_), _) => {
                Err(UsageError::WrongVerdict)
            }
            _ => Err(UsageError::NoVerdictPending),
        }
    }

    /// Fires expired timers; spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            let what = match timer {
                Timer::Greet => {
                    self.greet_pause_over(now);
                    continue;
                }
                Timer::Throttle => {
                    self.release_held(now);
                    continue;
                }
                Timer::Command => "command",
                Timer::Data => "message data",
            };
            if matches!(self.state, State::Data(_)) {
                self.events.push_back(Event::DataDiscarded);
            }
            self.refuse("timeout", RefuseReason::Timeout(what));
            self.close(CloseReason::Timeout);
        }
    }

    /// Ends the session because the server shuts down: 421 and close
    /// (RFC 5321 §3.8). A message being received is discarded.
    pub fn shutdown(&mut self, _now: Instant) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if matches!(self.state, State::Data(_)) {
            self.events.push_back(Event::DataDiscarded);
        }
        self.refuse("shutdown", RefuseReason::ShuttingDown);
        self.close(CloseReason::Shutdown);
    }

    /// Appends pending replies to `out`; returns how many bytes.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.extend_from_slice(&self.out);
        self.out.clear();
        n
    }

    /// Swaps pending message data into `buf`, which must be empty; its old
    /// allocation is reused for the next chunk.
    pub fn take_body(&mut self, buf: &mut Vec<u8>) {
        debug_assert!(buf.is_empty(), "take_body needs an empty buffer");
        if self.header.is_some() {
            // Submission: the header block is held until it is complete.
            return;
        }
        buf.clear();
        std::mem::swap(&mut self.body, buf);
    }

    /// Returns how many bytes of message data wait for
    /// [`Session::take_body`]. A front end may leave them until they reach
    /// [`BODY_CHUNK`] or an event is pending, so that a small message is
    /// written to the spool file in one go.
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Returns the next deadline and which timer it is.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    /// Tells whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Returns the transaction in progress (MAIL and RCPTs so far).
    pub fn envelope(&self) -> Option<&Envelope> {
        self.tx.as_ref()
    }

    /// Returns the connection's addresses.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Returns the queue id of the message being received or last queued.
    pub fn queue_id(&self) -> Option<&str> {
        self.queue_id.as_deref()
    }

    fn read_command(&mut self, now: Instant, input: &[u8]) -> usize {
        let (n, line) = self.lines.read(input);
        let Some(line) = line else {
            return n;
        };
        match line {
            Line::TooLong => self.reject("command", RefuseReason::LineTooLong),
            Line::BareLineEnding => self.reject("command", RefuseReason::BareLineEndingInCommand),
            Line::InInput(range) => self.dispatch_bounded(now, &input[range]),
            Line::Carried => {
                let carried = self.lines.take_carried();
                self.dispatch_bounded(now, &carried);
                self.lines.restore(carried);
            }
        }
        // The timer counts from the end of the last command, not the last
        // byte: a client trickling one byte at a time still times out.
        self.arm_command_timer(now);
        n
    }

    /// Runs a command line, refusing one over [`MAX_COMMAND_LINE`]
    /// unless it is an AUTH command or a SASL response, which may be up to
    /// [`line::MAX_AUTH_LINE`] (RFC 4954 §4).
    fn dispatch_bounded(&mut self, now: Instant, line: &[u8]) {
        let auth = self.sasl.is_some()
            || line
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
        if line.len() + 2 > MAX_COMMAND_LINE && !auth {
            return self.reject("command", RefuseReason::LineTooLong);
        }
        self.dispatch(now, line);
    }

    fn read_data(&mut self, now: Instant, input: &[u8]) -> usize {
        let State::Data(receiver) = &mut self.state else {
            return 0;
        };
        let r = receiver.ingest(input, &mut self.body, BODY_CHUNK);
        let size = receiver.size();
        let taint = receiver.taint();
        self.scan_header(r.ended);
        if !r.ended {
            self.timers.set(Timer::Data, now, self.cfg.timeouts.data);
            return r.consumed;
        }
        self.timers.stop(Timer::Data);
        self.header = None;
        let refusal = self.data_refusal.take();
        match (taint, refusal) {
            (None, Some(reason)) => {
                self.body.clear();
                self.events.push_back(Event::DataDiscarded);
                self.tx = None;
                self.state = State::Command;
                self.refuse("data", reason);
                self.arm_command_timer(now);
            }
            (None, None) => {
                let queue_id = self.queue_id.clone().unwrap_or_default();
                self.state = State::AwaitQueued { queue_id };
                self.events.push_back(Event::DataEnd { size });
            }
            (Some(taint), _) => {
                self.body.clear();
                self.events.push_back(Event::DataDiscarded);
                let reason = match taint {
                    Taint::TooLarge => RefuseReason::MessageTooLarge {
                        limit: self.cfg.limits.max_message_size,
                    },
                    Taint::BareLineEnding => RefuseReason::BareLineEndingInData,
                };
                self.tx = None;
                self.state = State::Command;
                self.refuse("data", reason);
                self.arm_command_timer(now);
            }
        }
        r.consumed
    }

    fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Sends the reply of `reason` and reports the refusal.
    fn refuse(&mut self, stage: &'static str, reason: RefuseReason) {
        let reply = reason.reply();
        self.reply(&reply);
        self.events.push_back(Event::Refused {
            stage,
            code: reply.code,
            reason,
        });
    }

    /// Refuses a command: as [`Session::refuse`], then ends the session on
    /// a 421 and counts protocol errors toward `limits.max_errors`.
    fn reject(&mut self, stage: &'static str, reason: RefuseReason) {
        let closes = reason.reply().code == 421;
        let counts = guard::counts_as_error(&reason);
        self.refuse(stage, reason);
        if closes {
            self.close(CloseReason::Refused);
        } else if counts {
            self.count_error();
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.tx = None;
        self.timers.stop_all();
        self.events.push_back(Event::Closed(reason));
    }

    fn ask(&mut self, pending: Pending, question: Question) {
        self.state = State::AwaitAnswer(pending);
        self.events.push_back(Event::Ask(question));
    }

    fn arm_command_timer(&mut self, now: Instant) {
        // A STARTTLS handshake must also end within the command timeout.
        if matches!(self.state, State::Command | State::AwaitTls) {
            self.timers
                .set(Timer::Command, now, self.cfg.timeouts.command);
        } else {
            self.timers.stop(Timer::Command);
        }
    }
}

#[cfg(test)]
mod tests;
