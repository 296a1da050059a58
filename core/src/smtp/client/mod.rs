//! The sending SMTP session, used for remote delivery (RFC 5321 §3, §4;
//! PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152).
//!
//! A sans-IO state machine in the same shape as the server session. The
//! front end connects, then feeds the server's bytes and the time, and
//! polls, in this order, until each is empty, and only then blocks:
//!
//! 1. [`ClientSession::poll_transmit`]: bytes to write to the server;
//! 2. [`ClientSession::poll_event`]: [`ClientEvent`]s. On
//!    [`ClientEvent::WantBody`] it streams the message with
//!    [`ClientSession::push_body`] (which takes what fits: back-pressure)
//!    and [`ClientSession::end_body`], writing out transmits in between;
//! 3. [`ClientSession::poll_timeout`]: when to call
//!    [`ClientSession::handle_timeout`].
//!
//! There is one state per reply the session waits for (greeting, EHLO,
//! HELO, RSET, MAIL, each RCPT, DATA, end of data, QUIT), each with its
//! RFC 5321 §4.5.3.2 timer. With PIPELINING, MAIL, the RCPTs and DATA go
//! out in one write and the states then only match the replies in order.
//!
//! Outcomes follow the reply codes: 2yz delivered, 4yz temporary, 5yz
//! permanent. A rejected RCPT fails only its recipient; the reply to the
//! final `.` applies to every accepted recipient. Timeouts, a lost
//! connection, a 421 or a protocol error fail every recipient still open
//! temporarily and close the session. Every transaction accepted by
//! [`ClientSession::send`] ends in exactly one
//! [`ClientEvent::TransactionDone`].
//!
//! LMTP (RFC 2033), for local delivery to e.g. Dovecot, is the same
//! session with [`ClientConfig::lmtp`] set: it greets with LHLO (§4.1;
//! there is no HELO fallback), and after the final `.` it reads one reply
//! per recipient whose RCPT was accepted, in RCPT order (§4.2), each with
//! the end-of-data timer, so each recipient gets its own outcome.
//!
//! STARTTLS (RFC 3207), opportunistic (RFC 7435), when
//! [`ClientConfig::starttls`] is set and the server's EHLO offers it:
//!
//! 1. the session sends `STARTTLS`; on `220` it emits
//!    [`ClientEvent::StartTls`] and reads nothing more in plaintext (bytes
//!    the server sent behind the 220 are dropped: never trust what came
//!    before the handshake);
//! 2. the caller writes pending transmits, runs a TLS client on the
//!    connection (`hato_core::tls::TlsStream::client` with
//!    `tls::client_config`, which encrypts but does not verify the
//!    certificate), and from then on feeds decrypted bytes to
//!    `handle_input` and encrypts what `poll_transmit` gives;
//! 3. when the handshake is done it calls
//!    [`ClientSession::tls_established`]: the session forgets the first
//!    EHLO reply and sends EHLO again (RFC 3207 §4.2), then goes on;
//! 4. if the handshake fails it calls [`ClientSession::tls_failed`]: the
//!    session closes ([`CloseReason::TlsFailed`]; a queued transaction
//!    fails temporarily). The caller may then retry on a new connection
//!    with `starttls` off, in plaintext.
//!
//! A server that answers STARTTLS with anything but 220 (e.g. 454) is used
//! in plaintext, as before. A server that does not offer STARTTLS is used
//! in plaintext.
//!
//! SMTPUTF8 (RFC 6531): a transaction marked `smtputf8` declares it in
//! MAIL when the server offers it; to a server that does not, it goes on
//! undeclared if every envelope address is ASCII, and otherwise fails
//! permanently (the bounce says 5.6.7, RFC 6531 §3.2).
//!
//! Not supported (yet): AUTH, CHUNKING. An 8-bit body
//! for a server without 8BITMIME fails permanently: hato does not convert
//! messages to 7 bits (RFC 6152 §3 allows bouncing instead).

mod body;
mod ehlo;
mod reply;
mod types;

pub use body::BODY_BUFFER;
pub use ehlo::Extensions;
pub use reply::MAX_REPLY_LINES;
pub use types::{
    ClientConfig, ClientEvent, CloseReason, Failure, Outcome, ProtocolError, Stage, Timeouts,
    Transaction, UsageError,
};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::smtp::reply::Reply;

use body::Stuffer;
use reply::ReplyReader;

/// Where the session stands: which reply it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The 220 greeting.
    Greeting,
    /// The EHLO reply.
    Ehlo,
    /// The HELO reply (after EHLO was refused with 5yz).
    Helo,
    /// Nothing to do: waiting for `send` or `quit`.
    Idle,
    /// The RSET reply after an aborted transaction.
    Rset,
    /// The MAIL reply.
    Mail,
    /// The reply to RCPT number n.
    Rcpt(usize),
    /// The 354.
    DataInit,
    /// Sending the body; no reply is read until `end_body`.
    Body,
    /// The reply to the final `.`.
    DataEnd,
    /// The 221.
    Quit,
    /// The 220 to STARTTLS.
    StartTls,
    /// The caller runs the TLS handshake; plaintext input is dropped.
    Handshake,
    /// Over.
    Closed,
}

impl State {
    /// Returns the stage the state is in (the timer's name).
    fn stage(self) -> Stage {
        match self {
            Self::Greeting => Stage::Greeting,
            Self::Ehlo => Stage::Ehlo,
            Self::Helo => Stage::Helo,
            Self::Rset | Self::Idle => Stage::Rset,
            Self::Mail => Stage::Mail,
            Self::Rcpt(_) => Stage::Rcpt,
            Self::DataInit => Stage::DataInit,
            Self::Body => Stage::DataBlock,
            Self::DataEnd => Stage::DataEnd,
            Self::Quit | Self::Closed => Stage::Quit,
            Self::StartTls | Self::Handshake => Stage::StartTls,
        }
    }
}

/// The transaction in progress.
#[derive(Debug)]
struct Active {
    tx: Transaction,
    outcomes: Vec<Option<Outcome>>,
    /// MAIL was refused: every recipient gets this (pipelined replies that
    /// follow are still read).
    mail_refused: Option<Outcome>,
    /// RCPTs accepted so far.
    accepted: usize,
    /// Commands went out in one write.
    pipelined: bool,
    /// 354 came with no recipient accepted: only the `.` was sent.
    empty_data: bool,
}

/// One SMTP client session over one connection.
#[derive(Debug)]
pub struct ClientSession {
    cfg: ClientConfig,
    state: State,
    reader: ReplyReader,
    ext: Extensions,
    /// A transaction accepted by `send`, not started yet.
    queued: Option<Transaction>,
    active: Option<Active>,
    stuffer: Stuffer,
    quit_requested: bool,
    /// Why the session closes once QUIT is answered.
    close_reason: Option<CloseReason>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    deadline: Option<(Instant, Stage)>,
    /// The connection runs inside TLS (after STARTTLS).
    tls: bool,
}

impl ClientSession {
    /// Starts a session on a fresh connection: it waits for the greeting.
    pub fn new(cfg: ClientConfig, now: Instant) -> Self {
        let reader = ReplyReader::new(cfg.max_line);
        let mut s = Self {
            cfg,
            state: State::Greeting,
            reader,
            ext: Extensions::default(),
            queued: None,
            active: None,
            stuffer: Stuffer::new(),
            quit_requested: false,
            close_reason: None,
            out: Vec::with_capacity(512),
            events: VecDeque::new(),
            deadline: None,
            tls: false,
        };
        s.enter(now, State::Greeting);
        s
    }

    /// Queues a transaction; it starts as soon as the session is ready
    /// (at once when idle). Its end is [`ClientEvent::TransactionDone`].
    ///
    /// # Errors
    /// [`UsageError::Busy`] while another transaction is queued or runs,
    /// [`UsageError::Closed`] after `quit` or the end, and
    /// [`UsageError::NoRecipients`] / [`UsageError::BadAddress`] for a
    /// transaction that cannot be sent.
    pub fn send(&mut self, now: Instant, tx: Transaction) -> Result<(), UsageError> {
        if self.state == State::Closed || self.quit_requested {
            return Err(UsageError::Closed);
        }
        if self.queued.is_some() || self.active.is_some() {
            return Err(UsageError::Busy);
        }
        if tx.recipients.is_empty() {
            return Err(UsageError::NoRecipients);
        }
        let bad = |s: &String| s.bytes().any(|b| b < 0x20 || b == 0x7f);
        if bad(&tx.from) || tx.recipients.iter().any(bad) {
            return Err(UsageError::BadAddress);
        }
        self.queued = Some(tx);
        if self.state == State::Idle {
            self.go_idle(now);
        }
        Ok(())
    }

    /// Ends the session politely: QUIT once no transaction runs.
    ///
    /// # Errors
    /// [`UsageError::Busy`] while a transaction is queued or runs.
    pub fn quit(&mut self, now: Instant) -> Result<(), UsageError> {
        if self.state == State::Closed || self.quit_requested {
            return Ok(());
        }
        if self.queued.is_some() || self.active.is_some() {
            return Err(UsageError::Busy);
        }
        self.quit_requested = true;
        if self.state == State::Idle {
            self.go_idle(now);
        }
        Ok(())
    }

    /// Feeds bytes from the server; returns how many were consumed. While
    /// the body is being sent nothing is read (0): offer the rest again
    /// after `end_body`. Reading also stops after a reply that leaves the
    /// session idle, so that the next `send` comes first.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        if self.state == State::Handshake {
            // Sent behind the 220, before TLS: never read as a reply.
            return input.len();
        }
        let mut used = 0;
        while used < input.len() && !matches!(self.state, State::Body | State::Closed) {
            let (n, result) = self.reader.read(&input[used..]);
            used += n;
            match result {
                None => {}
                Some(Ok(reply)) => {
                    self.on_reply(now, reply);
                    if self.state == State::Handshake {
                        // The 220 to STARTTLS: whatever follows it in
                        // plaintext is dropped, never read as a reply.
                        return input.len();
                    }
                    if self.state == State::Idle {
                        // Let the front end start the next transaction
                        // before more input is read.
                        break;
                    }
                }
                Some(Err(e)) => self.protocol_error(e),
            }
        }
        used
    }

    /// Tells the session the server closed the connection.
    pub fn handle_eof(&mut self, _now: Instant) {
        match self.state {
            State::Closed => {}
            State::Quit => {
                let reason = self.close_reason.take().unwrap_or(CloseReason::Quit);
                self.close(reason);
            }
            _ => {
                self.fail_open(&Outcome::Temporary(Failure::ConnectionLost));
                self.close(CloseReason::PeerClosed);
            }
        }
    }

    /// Fires the timer when due; spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((at, stage)) = self.deadline else {
            return;
        };
        if at > now {
            return;
        }
        self.deadline = None;
        if self.state == State::Quit {
            let reason = self.close_reason.take();
            self.close(reason.unwrap_or(CloseReason::Timeout(stage)));
            return;
        }
        self.fail_open(&Outcome::Temporary(Failure::Timeout(stage)));
        self.close(CloseReason::Timeout(stage));
    }

    /// Takes body octets (CRLF text, not stuffed) after
    /// [`ClientEvent::WantBody`]; returns how many it took. Fewer than
    /// offered means its buffer is full: drain `poll_transmit` first.
    ///
    /// # Errors
    /// [`UsageError::NotSendingBody`] unless a body is wanted now.
    pub fn push_body(&mut self, now: Instant, data: &[u8]) -> Result<usize, UsageError> {
        if self.state != State::Body {
            return Err(UsageError::NotSendingBody);
        }
        self.arm(now, self.cfg.timeouts.data_block, Stage::DataBlock);
        Ok(self.stuffer.push(data, &mut self.out, BODY_BUFFER))
    }

    /// Ends the body: the session writes the final `.` and waits for the reply.
    ///
    /// # Errors
    /// [`UsageError::NotSendingBody`] unless a body is being sent.
    pub fn end_body(&mut self, now: Instant) -> Result<(), UsageError> {
        if self.state != State::Body {
            return Err(UsageError::NotSendingBody);
        }
        self.stuffer.finish(&mut self.out);
        self.enter(now, State::DataEnd);
        Ok(())
    }

    /// Appends pending output to `out`; returns how many bytes.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.extend_from_slice(&self.out);
        self.out.clear();
        n
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Returns the next deadline and the stage it belongs to.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Stage)> {
        self.deadline
    }

    /// Tells whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Returns what the server announced in its EHLO reply.
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// Tells whether the connection runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The caller's TLS handshake after [`ClientEvent::StartTls`] is done:
    /// the session forgets the server's first EHLO reply and sends EHLO
    /// again, inside TLS (RFC 3207 §4.2).
    ///
    /// # Errors
    /// [`UsageError::NotHandshaking`] when no handshake was asked for.
    pub fn tls_established(&mut self, now: Instant) -> Result<(), UsageError> {
        if self.state != State::Handshake {
            return Err(UsageError::NotHandshaking);
        }
        self.tls = true;
        self.ext = Extensions::default();
        self.reader = ReplyReader::new(self.cfg.max_line);
        let name = self.cfg.helo_name.clone();
        self.command(&["EHLO ", &name]);
        self.enter(now, State::Ehlo);
        Ok(())
    }

    /// The caller's TLS handshake failed: the session closes
    /// ([`CloseReason::TlsFailed`]); a queued transaction fails
    /// temporarily. Retry on a new connection without STARTTLS if wanted.
    ///
    /// # Errors
    /// [`UsageError::NotHandshaking`] when no handshake was asked for.
    pub fn tls_failed(&mut self, _now: Instant) -> Result<(), UsageError> {
        if self.state != State::Handshake {
            return Err(UsageError::NotHandshaking);
        }
        self.fail_open(&Outcome::Temporary(Failure::ConnectionLost));
        self.close(CloseReason::TlsFailed);
        Ok(())
    }

    /// Moves to `state`, arming its timer.
    fn enter(&mut self, now: Instant, state: State) {
        self.state = state;
        let t = &self.cfg.timeouts;
        let after = match state {
            State::Greeting => t.greeting,
            State::Ehlo | State::Helo => t.ehlo,
            State::Mail => t.mail,
            State::Rcpt(_) => t.rcpt,
            State::DataInit => t.data_init,
            State::Body => t.data_block,
            State::DataEnd => t.data_end,
            State::Rset | State::Quit | State::StartTls => t.other,
            State::Handshake => t.ehlo,
            State::Idle | State::Closed => {
                self.deadline = None;
                return;
            }
        };
        self.arm(now, after, state.stage());
    }

    fn arm(&mut self, now: Instant, after: Duration, stage: Stage) {
        self.deadline = Some((now + after, stage));
    }

    fn command(&mut self, parts: &[&str]) {
        for p in parts {
            self.out.extend_from_slice(p.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
    }

    fn on_reply(&mut self, now: Instant, reply: Reply) {
        let stage = self.state.stage();
        if reply.code == 421 && self.state != State::Quit {
            // RFC 5321 §3.8: the server is closing the channel.
            self.fail_open(&Outcome::Temporary(Failure::Reply {
                stage,
                reply: reply.clone(),
            }));
            self.close(CloseReason::Refused(reply));
            return;
        }
        let positive = reply.code < 400;
        match self.state {
            State::Greeting if positive => {
                let name = self.cfg.helo_name.clone();
                let verb = if self.cfg.lmtp { "LHLO " } else { "EHLO " };
                self.command(&[verb, &name]);
                self.enter(now, State::Ehlo);
            }
            State::Ehlo if positive => {
                self.ext = Extensions::parse(&reply.text);
                if self.cfg.starttls && self.ext.starttls && !self.tls {
                    self.command(&["STARTTLS"]);
                    self.enter(now, State::StartTls);
                } else {
                    self.ready(now);
                }
            }
            State::StartTls if reply.code == 220 => {
                self.enter(now, State::Handshake);
                self.events.push_back(ClientEvent::StartTls);
            }
            // Opportunistic: a refused STARTTLS (454, 5yz) goes on in plaintext.
            State::StartTls => self.ready(now),
            // RFC 5321 §3.2: a server that does not know EHLO gets HELO
            // (LMTP has no HELO: RFC 2033 §4.1).
            State::Ehlo if reply.code >= 500 && !self.cfg.lmtp => {
                let name = self.cfg.helo_name.clone();
                self.command(&["HELO ", &name]);
                self.enter(now, State::Helo);
            }
            State::Helo if positive => {
                self.ext = Extensions::default();
                self.ready(now);
            }
            State::Rset if positive => self.go_idle(now),
            State::Greeting | State::Ehlo | State::Helo | State::Rset => {
                self.refused_quit(now, stage, reply);
            }
            State::Mail => self.mail_reply(now, reply),
            State::Rcpt(i) => self.rcpt_reply(now, i, reply),
            State::DataInit => self.data_init_reply(now, reply),
            State::DataEnd => self.data_end_reply(now, reply),
            State::Quit => {
                let reason = self.close_reason.take().unwrap_or(CloseReason::Quit);
                self.close(reason);
            }
            State::Idle | State::Body | State::Handshake | State::Closed => {
                self.protocol_error(ProtocolError::Unexpected);
            }
        }
    }

    fn ready(&mut self, now: Instant) {
        self.events.push_back(ClientEvent::Ready);
        self.go_idle(now);
    }

    /// Becomes idle, then runs what waits: QUIT, or a queued transaction.
    fn go_idle(&mut self, now: Instant) {
        self.enter(now, State::Idle);
        if self.quit_requested {
            self.command(&["QUIT"]);
            self.enter(now, State::Quit);
        } else if let Some(tx) = self.queued.take() {
            self.start(now, tx);
        }
    }

    /// Starts a transaction: checks SIZE and 8BITMIME, then MAIL (and with
    /// PIPELINING the RCPTs and DATA too).
    fn start(&mut self, now: Instant, tx: Transaction) {
        let n = tx.recipients.len();
        let utf8_addresses = !tx.from.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii());
        let refuse = if tx.body_8bit && !self.ext.eight_bit_mime {
            Some(Failure::EightBitUnsupported)
        } else if tx.smtputf8 && utf8_addresses && !self.ext.smtputf8 {
            Some(Failure::Utf8Unsupported)
        } else {
            self.ext
                .size_limit()
                .filter(|&limit| tx.size > limit)
                .map(|limit| Failure::TooLarge {
                    size: tx.size,
                    limit,
                })
        };
        let pipelined = self.ext.pipelining;
        self.active = Some(Active {
            tx,
            outcomes: vec![None; n],
            mail_refused: None,
            accepted: 0,
            pipelined,
            empty_data: false,
        });
        if let Some(failure) = refuse {
            self.fail_open(&Outcome::Permanent(failure));
            self.go_idle(now);
            return;
        }
        let Some(a) = &self.active else {
            return;
        };
        let mut mail = format!("MAIL FROM:{}", bracket(&a.tx.from));
        if self.ext.size.is_some() && a.tx.size > 0 {
            mail.push_str(&format!(" SIZE={}", a.tx.size));
        }
        if a.tx.body_8bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if a.tx.smtputf8 && self.ext.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let mut lines = vec![mail];
        if pipelined {
            lines.extend(a.tx.recipients.iter().map(|r| rcpt_line(r)));
            lines.push("DATA".into());
        }
        for line in lines {
            self.command(&[&line]);
        }
        self.enter(now, State::Mail);
    }

    fn mail_reply(&mut self, now: Instant, reply: Reply) {
        let Some(a) = &mut self.active else {
            return self.protocol_error(ProtocolError::Unexpected);
        };
        if reply.is_negative() {
            let outcome = Outcome::refused(Stage::Mail, reply);
            if !a.pipelined {
                // Nothing else was sent; no transaction is open.
                self.fail_open(&outcome);
                return self.finish(now, false);
            }
            a.mail_refused = Some(outcome);
        } else if !a.pipelined {
            let line = rcpt_line(&a.tx.recipients[0]);
            self.command(&[&line]);
        }
        self.enter(now, State::Rcpt(0));
    }

    fn rcpt_reply(&mut self, now: Instant, i: usize, reply: Reply) {
        let Some(a) = &mut self.active else {
            return self.protocol_error(ProtocolError::Unexpected);
        };
        if let Some(o) = a.mail_refused.clone() {
            self.set_outcome(i, o);
        } else if reply.is_negative() {
            self.set_outcome(i, Outcome::refused(Stage::Rcpt, reply));
        } else {
            a.accepted += 1;
        }
        let Some(a) = &self.active else {
            return;
        };
        let (n, accepted, pipelined) = (a.tx.recipients.len(), a.accepted, a.pipelined);
        if i + 1 < n {
            if !pipelined {
                let line = rcpt_line(&a.tx.recipients[i + 1]);
                self.command(&[&line]);
            }
            self.enter(now, State::Rcpt(i + 1));
        } else if pipelined {
            self.enter(now, State::DataInit);
        } else if accepted == 0 {
            // Every RCPT refused: no DATA; clear the open transaction.
            self.finish(now, true);
        } else {
            self.command(&["DATA"]);
            self.enter(now, State::DataInit);
        }
    }

    fn data_init_reply(&mut self, now: Instant, reply: Reply) {
        let Some(a) = &mut self.active else {
            return self.protocol_error(ProtocolError::Unexpected);
        };
        if reply.code / 100 == 3 {
            if a.accepted == 0 || a.mail_refused.is_some() {
                // RFC 2920 §3.1: DATA accepted with no recipient: send an
                // empty message (the terminator alone).
                a.empty_data = true;
                self.out.extend_from_slice(b".\r\n");
                self.enter(now, State::DataEnd);
            } else {
                self.stuffer = Stuffer::new();
                self.enter(now, State::Body);
                self.events.push_back(ClientEvent::WantBody);
            }
            return;
        }
        let failure = if reply.is_negative() {
            Outcome::refused(Stage::DataInit, reply)
        } else {
            // A 2yz to DATA is not a 354: nothing was delivered.
            Outcome::Temporary(Failure::Reply {
                stage: Stage::DataInit,
                reply,
            })
        };
        self.fail_open(&failure);
        self.finish(now, true);
    }

    fn data_end_reply(&mut self, now: Instant, reply: Reply) {
        let Some(a) = &self.active else {
            return self.protocol_error(ProtocolError::Unexpected);
        };
        if self.cfg.lmtp && !a.empty_data {
            return self.lmtp_data_end_reply(now, reply);
        }
        if !a.empty_data {
            self.fail_open(&data_end_outcome(reply));
        }
        self.finish(now, false);
    }

    /// One of the LMTP replies after the final `.` (RFC 2033 §4.2): it
    /// belongs to the first accepted recipient still open; the transaction
    /// ends with the last one.
    fn lmtp_data_end_reply(&mut self, now: Instant, reply: Reply) {
        let open = |a: &Active| a.outcomes.iter().position(Option::is_none);
        let Some(i) = self.active.as_ref().and_then(open) else {
            return self.protocol_error(ProtocolError::Unexpected);
        };
        self.set_outcome(i, data_end_outcome(reply));
        if self.active.as_ref().and_then(open).is_some() {
            self.enter(now, State::DataEnd);
        } else {
            self.finish(now, false);
        }
    }

    /// Records the final outcome of recipient `i` (once) and reports it.
    fn set_outcome(&mut self, i: usize, outcome: Outcome) {
        let Some(slot) = self.active.as_mut().and_then(|a| a.outcomes.get_mut(i)) else {
            return;
        };
        if slot.is_none() {
            *slot = Some(outcome.clone());
            self.events
                .push_back(ClientEvent::RecipientResult { index: i, outcome });
        }
    }

    /// Gives every open recipient (of the running or the queued
    /// transaction) `outcome` and ends that transaction.
    fn fail_open(&mut self, outcome: &Outcome) {
        if self.active.is_none() {
            let Some(tx) = self.queued.take() else {
                return;
            };
            let n = tx.recipients.len();
            self.active = Some(Active {
                tx,
                outcomes: vec![None; n],
                mail_refused: None,
                accepted: 0,
                pipelined: false,
                empty_data: false,
            });
        }
        let n = self.active.as_ref().map_or(0, |a| a.outcomes.len());
        for i in 0..n {
            self.set_outcome(i, outcome.clone());
        }
        self.report_done();
    }

    /// Ends the transaction: TransactionDone, then RSET or idle.
    fn finish(&mut self, now: Instant, rset: bool) {
        self.report_done();
        if rset {
            self.command(&["RSET"]);
            self.enter(now, State::Rset);
        } else {
            self.go_idle(now);
        }
    }

    fn report_done(&mut self) {
        let Some(a) = self.active.take() else {
            return;
        };
        let outcomes = a
            .outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Temporary(Failure::ConnectionLost)))
            .collect();
        self.events
            .push_back(ClientEvent::TransactionDone { outcomes });
    }

    /// A refused greeting, EHLO, HELO or RSET: fail what waits, say QUIT.
    fn refused_quit(&mut self, now: Instant, stage: Stage, reply: Reply) {
        self.fail_open(&Outcome::refused(stage, reply.clone()));
        self.close_reason = Some(CloseReason::Refused(reply));
        self.command(&["QUIT"]);
        self.enter(now, State::Quit);
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        self.fail_open(&Outcome::Temporary(Failure::Protocol(e.clone())));
        self.close(CloseReason::Protocol(e));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.deadline = None;
        self.events.push_back(ClientEvent::Closed { reason });
    }
}

/// Returns the outcome of a reply to the final `.`: 2yz delivered, 3yz
/// (not a valid answer) temporary, 4yz temporary, 5yz permanent.
fn data_end_outcome(reply: Reply) -> Outcome {
    if reply.code / 100 == 2 {
        Outcome::Delivered { reply }
    } else if reply.code / 100 == 3 {
        Outcome::Temporary(Failure::Reply {
            stage: Stage::DataEnd,
            reply,
        })
    } else {
        Outcome::refused(Stage::DataEnd, reply)
    }
}

/// Returns `s` in angle brackets (as given when it has them).
fn bracket(s: &str) -> String {
    if s.starts_with('<') && s.ends_with('>') {
        s.to_owned()
    } else {
        format!("<{s}>")
    }
}

fn rcpt_line(to: &str) -> String {
    format!("RCPT TO:{}", bracket(to))
}

#[cfg(test)]
mod tests;
