//! The session's own defences: greet pause and early talkers (sendmail's
//! greet_pause), the limit on refused commands, the bad-recipient throttle
//! against directory harvesting (sendmail's BadRcptThrottle: replies are
//! held on a timer, never slept on), deny.senders and spam traps. Checks
//! that need state shared between sessions are questions (`Event::Ask`).

use std::time::{Duration, Instant};

use crate::config::{Config, DenyFrom};
use crate::policy::ListenerKind;
use crate::refusal::RefuseReason;
use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::reply::Reply;
use crate::time::Timer;

use super::{CloseReason, Pending, Question, Session, State};

/// The longest delay of one throttled reply.
const MAX_THROTTLE: Duration = Duration::from_secs(16);

impl Session {
    /// Begins the session: the greet pause for untrusted clients of the
    /// smtp listener, otherwise the greeting (or the connect question) now.
    pub(super) fn start(&mut self, now: Instant) {
        let pause = self.cfg.limits.greet_pause;
        let pauses = self.peer.listener == ListenerKind::Smtp && !self.trusted && !pause.is_zero();
        if pauses {
            self.timers.set(Timer::Greet, now, pause);
        } else {
            self.greet_pause_over(now);
        }
    }

    /// The pause is over: ask about the client when DNS block lists are
    /// configured, greet otherwise.
    pub(super) fn greet_pause_over(&mut self, now: Instant) {
        if !matches!(self.state, State::Greeting) {
            return;
        }
        if self.cfg.dnsbl.zones.is_empty() {
            self.greet(now);
        } else {
            self.ask(Pending::Connect, Question::Connect);
        }
    }

    /// Sends the 220 greeting and starts reading commands.
    pub(super) fn greet(&mut self, now: Instant) {
        let greeting = Reply::new(220, None, format!("{} ESMTP hato", self.cfg.hostname));
        self.reply(&greeting);
        self.state = State::Command;
        self.arm_command_timer(now);
    }

    /// Input before the greeting: a client that does not wait for the
    /// server (typical of spam engines) is refused with 554 and closed.
    pub(super) fn early_talker(&mut self, input: &[u8]) -> usize {
        self.timers.stop(Timer::Greet);
        self.refuse("connect", RefuseReason::EarlyTalker);
        self.close(CloseReason::Refused);
        input.len()
    }

    /// Counts a refused command; past `limits.max_errors` the session ends
    /// with 421.
    pub(super) fn count_error(&mut self) {
        self.errors += 1;
        let max = self.cfg.limits.max_errors;
        if self.errors >= max && !self.is_closed() {
            self.refuse("command", RefuseReason::TooManyErrors(max));
            self.close(CloseReason::Refused);
        }
    }

    /// An unknown local recipient: refused; past
    /// `limits.bad_recipients_limit` the session ends with 421 and the
    /// client's address is penalised.
    pub(super) fn unknown_recipient(&mut self, reason: RefuseReason) {
        self.bad_recipients += 1;
        let limit = self.cfg.limits.bad_recipients_limit;
        if self.bad_recipients >= limit {
            self.events.push_back(super::Event::Penalize);
            return self.reject("rcpt", RefuseReason::TooManyBadRecipients(limit));
        }
        self.reject("rcpt", reason);
    }

    /// Holds the reply of an RCPT (the bytes after `mark` in the output)
    /// when the session had `limits.bad_recipients_delay_after` unknown
    /// recipients before it (`bad_before`): 1 s, then 2, 4, 8, at most 16 s,
    /// growing with each unknown recipient. Good and bad addresses are
    /// delayed alike, so the delay tells a harvester nothing.
    pub(super) fn throttle_since(&mut self, now: Instant, mark: usize, bad_before: usize) {
        let after = self.cfg.limits.bad_recipients_delay_after;
        if bad_before < after || self.out.len() == mark {
            return;
        }
        // A reply that ended the session (421) goes out at once: held, it
        // would be lost when the front end closes the connection.
        if !matches!(self.state, State::Command) {
            return;
        }
        let step = u32::try_from(bad_before - after).unwrap_or(u32::MAX).min(4);
        let delay = Duration::from_secs(1u64 << step).min(MAX_THROTTLE);
        self.held.extend(self.out.drain(mark..));
        self.state = State::Throttled;
        self.timers.stop(Timer::Command);
        self.timers.set(Timer::Throttle, now, delay);
    }

    /// The throttle's time is up: the held reply goes out.
    pub(super) fn release_held(&mut self, now: Instant) {
        self.out.append(&mut self.held);
        if matches!(self.state, State::Throttled) {
            self.state = State::Command;
            self.arm_command_timer(now);
        }
    }
}

/// Tells whether a refusal is a protocol error that counts toward
/// `limits.max_errors`. Policy refusals with their own limits (unknown
/// users, rates, greylisting) do not.
pub(super) fn counts_as_error(reason: &RefuseReason) -> bool {
    matches!(
        reason,
        RefuseReason::Syntax(_)
            | RefuseReason::LineTooLong
            | RefuseReason::BareLineEndingInCommand
            | RefuseReason::BadSequence(_)
            | RefuseReason::NotImplemented(_)
            | RefuseReason::NoValidRecipients
            | RefuseReason::RelayDenied(_)
            | RefuseReason::AuthRequired
            | RefuseReason::Utf8WithoutSmtputf8
    )
}

/// Tells whether `deny.from` holds names (which need a HELO question).
pub(super) fn denies_names(cfg: &Config) -> bool {
    cfg.deny.from.iter().any(|e| matches!(e, DenyFrom::Name(_)))
}

/// `deny.senders`: an entry with `@` is one address; without, a domain and
/// every domain below it. The null sender of bounces is never refused here.
pub(super) fn check_sender(cfg: &Config, from: &ReversePath) -> Result<(), RefuseReason> {
    let ReversePath::Mailbox(m) = from else {
        return Ok(());
    };
    if cfg.deny.senders.is_empty() {
        return Ok(()); // nothing to compare: no need to build the address
    }
    let address = m.to_string().to_ascii_lowercase();
    let domain = m.domain().map(|d| d.normalized()).unwrap_or_default();
    for entry in &cfg.deny.senders {
        let hit = if entry.contains('@') {
            *entry == address
        } else {
            domain == *entry || domain.ends_with(&format!(".{entry}"))
        };
        if hit {
            return Err(RefuseReason::DeniedSender(entry.clone()));
        }
    }
    Ok(())
}

/// Tells whether `value` is written in ASCII only, without building the
/// string (MAIL and RCPT check their paths for SMTPUTF8, RFC 6531 §3.4).
pub(super) fn displays_ascii(value: &impl std::fmt::Display) -> bool {
    struct AsciiOnly;
    impl std::fmt::Write for AsciiOnly {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if s.is_ascii() {
                Ok(())
            } else {
                Err(std::fmt::Error)
            }
        }
    }
    std::fmt::write(&mut AsciiOnly, format_args!("{value}")).is_ok()
}

/// Returns the spam trap `to` names, if it is one.
pub(super) fn spam_trap(cfg: &Config, to: &ForwardPath) -> Option<String> {
    if cfg.deny.spam_traps.is_empty() {
        return None;
    }
    let ForwardPath::Mailbox { mailbox, .. } = to else {
        return None;
    };
    let domain = mailbox.domain()?.normalized();
    let address = format!("{}@{domain}", mailbox.local.value).to_ascii_lowercase();
    cfg.deny.spam_traps.iter().find(|t| **t == address).cloned()
}
