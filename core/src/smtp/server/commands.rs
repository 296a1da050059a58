//! One handler per command (RFC 5321 §4.1.1), with the sequencing rules of
//! §4.1.4, the reply codes of §4.3.2, and the checks of the built-in
//! defences that belong to each command. Checks that need state shared
//! between sessions become an [`Event::Ask`]; the command finishes in
//! [`Session::answered`].

use std::time::Instant;

use crate::message::{received_header, ReceivedInfo};
use crate::policy::{check_recipient, Client, Destination, ListenerKind};
use crate::refusal::RefuseReason;
use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::command::{Command, MailParams};
use crate::smtp::parse::parse_command;
use crate::smtp::reply::{replies, Enhanced, Reply};
use crate::time::UnixTime;

use super::data::DataReceiver;
use super::submission::HeaderFix;
use super::{guard, CloseReason, Envelope, Event, Pending, Question, Recipient, Session, State};

impl Session {
    /// Runs one complete command line.
    pub(super) fn dispatch(&mut self, now: Instant, line: &[u8]) {
        if let Some(step) = self.sasl.take() {
            return self.sasl_line(step, line);
        }
        let cmd = match parse_command(line) {
            Ok(cmd) => cmd,
            Err(e) => return self.reject("command", RefuseReason::Syntax(e)),
        };
        match cmd {
            Command::Helo(name) => self.helo(name, false),
            Command::Ehlo(name) => self.helo(name, true),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => {
                let (mark, bad_before) = (self.out.len(), self.bad_recipients);
                self.rcpt(to);
                self.throttle_since(now, mark, bad_before);
            }
            Command::Data => self.data(),
            Command::Rset => {
                self.tx = None;
                self.reply(&replies::OK);
            }
            Command::Noop => self.reply(&replies::OK),
            Command::Quit => self.quit(),
            Command::Vrfy(_) => self.reply(&replies::VRFY_CANNOT),
            Command::Expn(_) => {
                // Lists are never expanded: harvesting defence (RFC 5321 §3.5.2).
                let reply = replies::EXPN_DISABLED;
                self.reply(&reply);
                self.events.push_back(Event::Refused {
                    stage: "expn",
                    code: reply.code,
                    reason: RefuseReason::NotImplemented("EXPN".into()),
                });
            }
            Command::Help(_) => self.reply(&replies::HELP),
            Command::StartTls => self.start_tls(now),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::NotImplemented(verb) => {
                let verb = verb.to_ascii_uppercase();
                self.reject("command", RefuseReason::NotImplemented(verb));
            }
        }
    }

    /// Finishes the command whose question the front end answered.
    pub(super) fn answered(
        &mut self,
        now: Instant,
        pending: Pending,
        answer: Result<(), RefuseReason>,
    ) {
        match (pending, answer) {
            (Pending::Connect, Ok(())) => self.greet(now),
            (Pending::Connect, Err(reason)) => {
                self.refuse("connect", reason);
                self.close(CloseReason::Refused);
            }
            (Pending::Helo { name, extended }, Ok(())) => self.accept_helo(name, extended),
            (Pending::Helo { .. }, Err(reason)) => self.reject("helo", reason),
            (Pending::Mail { from, params }, Ok(())) => self.accept_mail(from, params),
            (Pending::Mail { .. }, Err(reason)) => self.reject("mail", reason),
            (Pending::Rcpt { to, destination }, Ok(())) => self.accept_rcpt(to, destination),
            (Pending::Rcpt { .. }, Err(reason)) => self.reject("rcpt", reason),
            (Pending::Auth { user, mechanism }, answer) => {
                self.auth_answered(user, mechanism, answer);
            }
        }
        self.arm_command_timer(now);
    }

    /// HELO / EHLO (§4.1.1.1): the name is recorded, never required to match
    /// DNS (RFC 1123 §5.2.5); only `deny.from` names can refuse it.
    fn helo(&mut self, name: &str, extended: bool) {
        let name = name.to_owned();
        if guard::denies_names(&self.cfg) {
            let question = Question::Helo { name: name.clone() };
            return self.ask(Pending::Helo { name, extended }, question);
        }
        self.accept_helo(name, extended);
    }

    /// Either HELO or EHLO resets the transaction.
    fn accept_helo(&mut self, name: String, extended: bool) {
        self.tx = None;
        self.events.push_back(Event::Helo {
            name: name.clone(),
            extended,
        });
        self.helo = Some((name, extended));
        let host = &self.cfg.hostname;
        let text = if extended {
            let starttls = if self.starttls_offered() {
                "\nSTARTTLS"
            } else {
                ""
            };
            let auth = if self.auth_offered() && !self.authenticated {
                "\nAUTH PLAIN LOGIN"
            } else {
                ""
            };
            format!(
                "{host}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8{starttls}{auth}\nHELP",
                self.cfg.limits.max_message_size
            )
        } else {
            host.clone()
        };
        self.reply(&Reply::new(250, None, text));
    }

    /// MAIL FROM (§4.1.1.2): starts a transaction.
    fn mail(&mut self, from: ReversePath, params: MailParams) {
        if let Err(reason) = self.check_mail(&from, &params) {
            return self.reject("mail", reason);
        }
        if let Some(user) = &self.auth_user {
            let question = Question::UserRate { user: user.clone() };
            return self.ask(Pending::Mail { from, params }, question);
        }
        if !self.trusted {
            let question = Question::Mail {
                from: from.to_string(),
            };
            return self.ask(Pending::Mail { from, params }, question);
        }
        self.accept_mail(from, params);
    }

    fn check_mail(&self, from: &ReversePath, params: &MailParams) -> Result<(), RefuseReason> {
        if self.trapped {
            return Err(RefuseReason::TrapBlocked);
        }
        if self.helo.is_none() {
            return Err(RefuseReason::BadSequence("send HELO or EHLO first"));
        }
        if self.tx.is_some() {
            return Err(RefuseReason::BadSequence("nested MAIL command"));
        }
        if self.peer.listener != ListenerKind::Smtp && !self.authenticated {
            return Err(RefuseReason::AuthRequired);
        }
        let max = self.cfg.limits.max_transactions;
        if self.transactions >= max {
            return Err(RefuseReason::TooManyTransactions(max));
        }
        if !params.smtputf8 && !guard::displays_ascii(&from) {
            return Err(RefuseReason::Utf8WithoutSmtputf8);
        }
        let limit = self.cfg.limits.max_message_size;
        if let Some(declared) = params.size.filter(|&s| s > limit) {
            return Err(RefuseReason::DeclaredSizeTooLarge { declared, limit });
        }
        self.check_owned_sender(from)?;
        guard::check_sender(&self.cfg, from)
    }

    fn accept_mail(&mut self, from: ReversePath, params: MailParams) {
        let Some((helo, extended)) = self.helo.clone() else {
            return self.reject("mail", RefuseReason::BadSequence("send HELO or EHLO first"));
        };
        self.transactions += 1;
        self.events.push_back(Event::Mail {
            from: from.to_string(),
        });
        self.tx = Some(Envelope {
            helo,
            extended,
            client_ip: self.peer.remote.ip(),
            from,
            params,
            recipients: Vec::new(),
        });
        self.reply(&replies::SENDER_OK);
    }

    /// RCPT TO (§4.1.1.3): one recipient, decided by policy now, so that an
    /// unknown user is refused here and never bounced later.
    fn rcpt(&mut self, to: ForwardPath) {
        if self.trapped {
            return self.reject("rcpt", RefuseReason::TrapBlocked);
        }
        let Some(tx) = &self.tx else {
            return self.reject("rcpt", RefuseReason::BadSequence("need MAIL before RCPT"));
        };
        let max = self.cfg.limits.max_recipients;
        if tx.recipients.len() >= max {
            return self.reject("rcpt", RefuseReason::TooManyRecipients(max));
        }
        if !tx.params.smtputf8 && !guard::displays_ascii(&to) {
            return self.reject("rcpt", RefuseReason::Utf8WithoutSmtputf8);
        }
        if let Some(trap) = guard::spam_trap(&self.cfg, &to) {
            self.trapped = true;
            self.events.push_back(Event::TrapHit { trap: trap.clone() });
            return self.reject("rcpt", RefuseReason::SpamTrap(trap));
        }
        let client = Client {
            ip: self.peer.remote.ip(),
            local_ip: self.peer.local.ip(),
            listener: self.peer.listener,
            authenticated: self.authenticated,
        };
        let destination = match check_recipient(&self.cfg, &self.dir, &client, &to) {
            Ok(d) => d,
            Err(reason @ RefuseReason::UnknownUser(_)) => return self.unknown_recipient(reason),
            Err(reason) => return self.reject("rcpt", reason),
        };
        if self.cfg.greylisting.enabled && !self.trusted && !self.authenticated {
            let from = self.tx.as_ref().map(|tx| tx.from.to_string());
            let question = Question::Greylist {
                from: from.unwrap_or_default(),
                to: to.to_string(),
            };
            return self.ask(Pending::Rcpt { to, destination }, question);
        }
        self.accept_rcpt(to, destination);
    }

    fn accept_rcpt(&mut self, to: ForwardPath, destination: Destination) {
        self.events.push_back(Event::Rcpt {
            to: to.to_string(),
            destination: destination.clone(),
        });
        if let Some(tx) = &mut self.tx {
            tx.recipients.push(Recipient {
                path: to,
                destination,
            });
        }
        self.reply(&replies::RECIPIENT_OK);
    }

    /// DATA (§4.1.1.4): asks the front end for a spool file first.
    fn data(&mut self) {
        if self.trapped {
            return self.reject("data", RefuseReason::TrapBlocked);
        }
        let Some(tx) = &self.tx else {
            return self.reject("data", RefuseReason::BadSequence("need MAIL before DATA"));
        };
        if tx.recipients.is_empty() {
            return self.reject("data", RefuseReason::NoValidRecipients);
        }
        self.state = State::AwaitDataStart;
        self.events.push_back(Event::DataStart);
    }

    /// The spool is open: 354, then the Received header leads the body.
    pub(super) fn start_data(&mut self, now: Instant, queue_id: String, date: UnixTime) {
        if let Some(tx) = &self.tx {
            let single = match tx.recipients.as_slice() {
                [only] => Some(only.path.to_string()),
                _ => None,
            };
            let header = received_header(&ReceivedInfo {
                helo: &tx.helo,
                client_ip: tx.client_ip,
                hostname: &self.cfg.hostname,
                extended: tx.extended,
                tls: self.tls.is_some(),
                authenticated: self.authenticated,
                smtputf8: tx.params.smtputf8,
                queue_id: &queue_id,
                single_recipient: single.as_deref().map(|s| s.trim_matches(['<', '>'])),
                date,
            });
            // Room for a whole chunk at once: growing a Vec by doubling
            // to BODY_CHUNK would allocate and copy a dozen times.
            self.body.reserve(super::BODY_CHUNK);
            self.body.extend_from_slice(header.as_bytes());
        }
        self.data_refusal = None;
        self.header = self
            .authenticated
            .then(|| HeaderFix::new(self.body.len(), date));
        self.queue_id = Some(queue_id);
        self.state = State::Data(DataReceiver::new(self.cfg.limits.max_message_size));
        self.timers.stop(crate::time::Timer::Command);
        self.timers
            .set(crate::time::Timer::Data, now, self.cfg.timeouts.data);
        self.reply(&replies::START_DATA);
    }

    /// The message is durable: 250 with the queue id.
    pub(super) fn finish_queued(&mut self, now: Instant) {
        let id = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitQueued { queue_id } => queue_id,
            _ => String::new(),
        };
        self.tx = None;
        self.reply(&Reply::new(
            250,
            Some(Enhanced(2, 0, 0)),
            format!("Ok: queued as {id}"),
        ));
        self.arm_command_timer(now);
    }

    /// QUIT (§4.1.1.10): 221 and close.
    fn quit(&mut self) {
        let text = format!("{} closing connection", self.cfg.hostname);
        self.reply(&Reply::new(221, Some(Enhanced(2, 0, 0)), text));
        self.close(CloseReason::Quit);
    }
}
