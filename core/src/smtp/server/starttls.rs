//! STARTTLS on the session's side (RFC 3207): the command, dropping what
//! was pipelined behind it, and forgetting everything once TLS is up.
//!
//! RFC 3207 §4.2: after the handshake "the server MUST discard any
//! knowledge obtained from the client, such as the argument to the EHLO
//! command". Bytes the client sent after STARTTLS in plaintext, before
//! the handshake, are dropped and reported, never executed after it
//! (the CVE-2011-0411 class of command injection, RFC 3207 §6).

use std::time::Instant;

use crate::refusal::RefuseReason;
use crate::smtp::reply::{Enhanced, Reply};
use crate::tls::TlsInfo;

use super::line::LineReader;
use super::{Event, Session, State};

impl Session {
    /// Lets the session offer STARTTLS: the front end has a certificate
    /// and will answer [`Event::StartTls`].
    pub fn offer_starttls(&mut self) {
        self.starttls = true;
    }

    /// Tells whether the connection runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Tells whether STARTTLS is advertised now.
    pub(super) fn starttls_offered(&self) -> bool {
        self.starttls && self.tls.is_none()
    }

    /// STARTTLS (RFC 3207 §4): 220, then [`Event::StartTls`].
    pub(super) fn start_tls(&mut self, now: Instant) {
        if self.tls.is_some() {
            return self.reject("starttls", RefuseReason::BadSequence("TLS already active"));
        }
        if !self.starttls {
            return self.reject("starttls", RefuseReason::NotImplemented("STARTTLS".into()));
        }
        if self.tx.is_some() {
            return self.reject(
                "starttls",
                RefuseReason::BadSequence("STARTTLS not allowed during a mail transaction"),
            );
        }
        self.reply(&Reply::fixed(220, Enhanced(2, 0, 0), "Ready to start TLS"));
        self.state = State::AwaitTls;
        self.arm_command_timer(now);
        self.events.push_back(Event::StartTls);
    }

    /// Plaintext offered while waiting for the handshake: it was pipelined
    /// behind STARTTLS, so it is dropped and reported.
    pub(super) fn discard_pipelined(&mut self, input: &[u8]) -> usize {
        if !input.is_empty() {
            self.events
                .push_back(Event::Discarded { bytes: input.len() });
        }
        input.len()
    }

    /// The TLS handshake finished (after STARTTLS, or at the start of an
    /// implicit-TLS connection): the session forgets the client's EHLO,
    /// any transaction, authentication and partial input (RFC 3207 §4.2),
    /// and reads commands again. No reply is sent; the client speaks next.
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.tls = Some(info.clone());
        self.helo = None;
        self.tx = None;
        self.sasl = None;
        self.authenticated = false;
        self.auth_user = None;
        self.lines = LineReader::default();
        self.events.push_back(Event::TlsEstablished(info));
        if matches!(self.state, State::AwaitTls) {
            self.state = State::Command;
            self.arm_command_timer(now);
        }
    }

    /// The TLS layer failed (handshake or record): the session ends
    /// without a reply, since none could be read.
    pub fn tls_failed(&mut self, _now: Instant) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if matches!(self.state, State::Data(_)) {
            self.events.push_back(Event::DataDiscarded);
        }
        self.close(super::CloseReason::TlsFailed);
    }
}
