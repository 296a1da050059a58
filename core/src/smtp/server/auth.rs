//! SMTP AUTH (RFC 4954) with the SASL mechanisms PLAIN (RFC 4616) and
//! LOGIN (draft-murchison-sasl-login). The session only parses the
//! exchange; whether the password is right is asked of the front end
//! ([`Question::Auth`]), which checks the users file off the session.
//!
//! AUTH is offered inside TLS, and in plaintext only on the submission
//! listener to a loopback client (local tools); the smtp listener never
//! offers it without TLS, so port 25 never relays on a password sent in
//! the clear (RFC 4954 §4, §14).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::policy::ListenerKind;
use crate::refusal::RefuseReason;
use crate::smtp::reply::{Enhanced, Reply};

use super::{Event, Pending, Question, Secret, Session};

/// `Username:` in base64, the LOGIN mechanism's first challenge.
const LOGIN_USER: &str = "VXNlcm5hbWU6";
/// `Password:` in base64.
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// An AUTH exchange waiting for the client's next line.
#[derive(Debug)]
pub(super) enum SaslStep {
    /// PLAIN without an initial response: the response line.
    Plain,
    /// LOGIN: the user name line.
    LoginUser,
    /// LOGIN: the password line.
    LoginPassword {
        /// The user name already given.
        user: String,
    },
}

impl Session {
    /// Tells whether AUTH is offered (and accepted) on this connection.
    pub(super) fn auth_offered(&self) -> bool {
        self.tls.is_some()
            || (self.peer.listener != ListenerKind::Smtp && self.peer.remote.ip().is_loopback())
    }

    /// AUTH mechanism [initial-response] (RFC 4954 §4).
    pub(super) fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.authenticated {
            return self.reject("auth", RefuseReason::BadSequence("already authenticated"));
        }
        if self.helo.is_none() {
            return self.reject("auth", RefuseReason::BadSequence("send EHLO first"));
        }
        if self.tx.is_some() {
            return self.reject(
                "auth",
                RefuseReason::BadSequence("AUTH not allowed during a mail transaction"),
            );
        }
        if !self.auth_offered() {
            return self.reject("auth", RefuseReason::AuthNeedsTls);
        }
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                Some(response) => self.plain(response),
                None => self.challenge(SaslStep::Plain, ""),
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                Some(response) => self.login_user(response),
                None => self.challenge(SaslStep::LoginUser, LOGIN_USER),
            }
        } else {
            let m = mechanism
                .chars()
                .take(32)
                .collect::<String>()
                .to_uppercase();
            self.reject("auth", RefuseReason::AuthMechanism(m));
        }
    }

    fn challenge(&mut self, step: SaslStep, text: &str) {
        self.sasl = Some(step);
        self.reply(&Reply::new(334, None, text.to_owned()));
    }

    /// One line of an AUTH exchange: `*` cancels (RFC 4954 §4).
    pub(super) fn sasl_line(&mut self, step: SaslStep, line: &[u8]) {
        let Ok(line) = std::str::from_utf8(line) else {
            return self.reject("auth", RefuseReason::AuthBadResponse);
        };
        let line = line.trim_matches([' ', '\t']);
        if line == "*" {
            return self.reject("auth", RefuseReason::AuthCancelled);
        }
        match step {
            SaslStep::Plain => self.plain(line),
            SaslStep::LoginUser => self.login_user(line),
            SaslStep::LoginPassword { user } => match decode(line) {
                Some(password) => self.ask_auth(user, password, "LOGIN"),
                None => self.reject("auth", RefuseReason::AuthBadResponse),
            },
        }
    }

    /// PLAIN: `authzid NUL authcid NUL passwd` (RFC 4616 §2); an
    /// authorization identity other than the user's own is refused.
    fn plain(&mut self, response: &str) {
        let Some(message) = decode(response) else {
            return self.reject("auth", RefuseReason::AuthBadResponse);
        };
        let mut parts = message.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.reject("auth", RefuseReason::AuthBadResponse);
        };
        if user.is_empty() {
            return self.reject("auth", RefuseReason::AuthBadResponse);
        }
        if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user) {
            return self.reject("auth", RefuseReason::AuthFailed(user.to_ascii_lowercase()));
        }
        let (user, password) = (user.to_owned(), password.to_owned());
        self.ask_auth(user, password, "PLAIN");
    }

    fn login_user(&mut self, response: &str) {
        match decode(response) {
            Some(user) if !user.is_empty() => {
                self.challenge(SaslStep::LoginPassword { user }, LOGIN_PASSWORD);
            }
            _ => self.reject("auth", RefuseReason::AuthBadResponse),
        }
    }

    fn ask_auth(&mut self, user: String, password: String, mechanism: &'static str) {
        let user = user.to_ascii_lowercase();
        let question = Question::Auth {
            user: user.clone(),
            password: Secret(password),
            mechanism,
        };
        self.ask(Pending::Auth { user, mechanism }, question);
    }

    /// The front end checked the password.
    pub(super) fn auth_answered(
        &mut self,
        user: String,
        mechanism: &'static str,
        answer: Result<(), RefuseReason>,
    ) {
        match answer {
            Ok(()) => {
                self.authenticated = true;
                self.auth_user = Some(user.clone());
                self.events
                    .push_back(Event::Authenticated { user, mechanism });
                self.reply(&Reply::fixed(
                    235,
                    Enhanced(2, 7, 0),
                    "Authentication successful",
                ));
            }
            Err(reason) => self.reject("auth", reason),
        }
    }
}

/// Decodes one base64 response into UTF-8 text; `=` is the empty response.
fn decode(text: &str) -> Option<String> {
    if text == "=" {
        return Some(String::new());
    }
    let bytes = STANDARD.decode(text).ok()?;
    String::from_utf8(bytes).ok()
}
