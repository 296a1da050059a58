//! Session tests through the public API (arrange, act, assert), driven in
//! virtual time like quinn's `Pair`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::policy::ListenerKind;
use crate::time::UnixTime;

struct Driver {
    session: Session,
    now: Instant,
    body: Vec<u8>,
    events: Vec<Event>,
    greeting: String,
    /// Answers to the session's questions, in order; "allowed" when empty.
    answers: VecDeque<Result<(), RefuseReason>>,
}

impl Driver {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::on(ListenerKind::Smtp, "127.0.0.1", tweak)
    }

    fn on(listener: ListenerKind, ip: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::defaults("mail.example.test");
        tweak(&mut cfg);
        let dir = Directory::parse("alice@example.test:!\nbob@example.test:!\n").unwrap();
        let peer = Peer {
            remote: format!("{ip}:40000").parse().unwrap(),
            local: "127.0.0.1:2525".parse().unwrap(),
            listener,
        };
        let now = Instant::now();
        let mut d = Self {
            session: Session::new(Arc::new(cfg), Arc::new(dir), peer, now),
            now,
            body: Vec::new(),
            events: Vec::new(),
            greeting: String::new(),
            answers: VecDeque::new(),
        };
        d.greeting = d.drain();
        d
    }

    /// Feeds `input` whole, answering verdicts; returns what was sent.
    fn send(&mut self, input: &[u8]) -> String {
        let mut rest = input;
        let mut out = self.drain();
        while !rest.is_empty() && !self.session.is_closed() {
            let n = self.session.handle_input(self.now, rest);
            rest = &rest[n..];
            out.push_str(&self.drain());
            assert!(n > 0 || self.session.is_closed(), "session stalled");
        }
        out
    }

    fn drain(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let _ = self.session.poll_transmit(&mut out);
            let mut chunk = Vec::new();
            self.session.take_body(&mut chunk);
            self.body.extend_from_slice(&chunk);
            let Some(ev) = self.session.poll_event() else {
                break;
            };
            let verdict = match &ev {
                Event::DataStart => Some(Verdict::DataAccepted {
                    queue_id: "Q1".into(),
                    date: UnixTime(0),
                }),
                Event::DataEnd { .. } => Some(Verdict::Queued),
                Event::Ask(_) => Some(Verdict::Answer(self.answers.pop_front().unwrap_or(Ok(())))),
                _ => None,
            };
            self.events.push(ev);
            if let Some(v) = verdict {
                self.session.handle_verdict(self.now, v).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn advance(&mut self, by: Duration) -> String {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.drain()
    }

    fn refusals(&self) -> Vec<RefuseReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Refused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

const TX: &[u8] = b"EHLO client.example\r\nMAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n";

#[test]
fn greeting_names_the_host_and_arms_the_command_timer() {
    let d = Driver::new();
    assert_eq!(d.greeting, "220 mail.example.test ESMTP hato\r\n");
    assert_eq!(
        d.session.poll_timeout().map(|(_, t)| t),
        Some(Timer::Command)
    );
}

#[test]
fn whole_transaction_queues_message_with_received_header() {
    let mut d = Driver::new();
    let out = d.send(TX);
    assert!(out.contains("250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n"));
    assert!(out.ends_with(
        "250 2.1.0 Sender ok\r\n250 2.1.5 Recipient ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    ));
    let out = d.send(b"Subject: hi\r\n\r\n..dot\r\n.\r\n");
    assert_eq!(out, "250 2.0.0 Ok: queued as Q1\r\n");
    let body = String::from_utf8(d.body.clone()).unwrap();
    assert!(body.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby mail.example.test with ESMTP id Q1\r\n\tfor <alice@example.test>;"));
    assert!(body.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\n"));
    assert!(d.events.contains(&Event::DataEnd { size: 21 }));
    assert!(d.session.envelope().is_none(), "transaction ends after 250");
}

#[test]
fn mail_before_helo_and_rcpt_before_mail_are_bad_sequence() {
    let mut d = Driver::new();
    assert!(d
        .send(b"MAIL FROM:<a@b.example>\r\n")
        .starts_with("503 5.5.1"));
    assert!(d
        .send(b"HELO c\r\nRCPT TO:<alice@example.test>\r\n")
        .ends_with("503 5.5.1 Bad sequence of commands: need MAIL before RCPT\r\n"));
    assert!(d.send(b"DATA\r\n").starts_with("503 5.5.1"));
}

#[test]
fn data_without_accepted_recipient_is_refused() {
    let mut d = Driver::new();
    let out = d.send(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n");
    assert!(out.contains("550 5.1.1"));
    assert!(out.ends_with("554 5.5.1 No valid recipients\r\n"));
}

#[test]
fn rset_clears_the_transaction() {
    let mut d = Driver::new();
    d.send(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n");
    assert!(d.session.envelope().is_some());
    assert_eq!(d.send(b"RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert!(d.session.envelope().is_none());
    assert!(d
        .send(b"RCPT TO:<alice@example.test>\r\n")
        .starts_with("503"));
}

#[test]
fn relay_refused_for_outsiders_allowed_for_loopback() {
    let mut d = outsider(|c| c.limits.greet_pause = Duration::ZERO);
    let out =
        d.send(b"HELO c\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@elsewhere.example>\r\n");
    assert!(out.ends_with("550 5.7.1 Relaying denied\r\n"));
    assert_eq!(
        d.refusals(),
        [RefuseReason::RelayDenied("x@elsewhere.example".into())]
    );
    let mut d = Driver::new();
    let out = d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@elsewhere.example>\r\n");
    assert!(out.ends_with("250 2.1.5 Recipient ok\r\n"));
}

#[test]
fn declared_size_over_limit_is_refused_at_mail() {
    let mut d = Driver::with(|c| c.limits.max_message_size = 1000);
    let out = d.send(b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n");
    assert!(out.ends_with("552 5.3.4 Message size exceeds fixed limit of 1000 bytes\r\n"));
}

#[test]
fn oversized_data_is_refused_at_end_and_session_continues() {
    let mut d = Driver::with(|c| c.limits.max_message_size = 10);
    d.send(TX);
    let out = d.send(b"0123456789abcdef\r\n.\r\nNOOP\r\n");
    assert_eq!(
        out,
        "552 5.3.4 Message size exceeds fixed limit of 10 bytes\r\n250 2.0.0 Ok\r\n"
    );
    assert!(d.events.contains(&Event::DataDiscarded));
}

#[test]
fn hundred_recipients_accepted_then_452() {
    let mut d = Driver::new();
    d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n");
    let mut input = Vec::new();
    for _ in 0..101 {
        input.extend_from_slice(b"RCPT TO:<alice@example.test>\r\n");
    }
    let out = d.send(&input);
    assert_eq!(out.matches("250 2.1.5").count(), 100);
    assert!(out.ends_with("452 4.5.3 Too many recipients\r\n"));
}

#[test]
fn smuggled_end_of_data_stays_in_the_message() {
    for smuggle in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n"] {
        let mut d = Driver::new();
        d.send(TX);
        let mut input = b"Subject: a\r\n\r\nbody".to_vec();
        input.extend_from_slice(smuggle);
        input.extend_from_slice(
            b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsecond\r\n.\r\n",
        );
        let out = d.send(&input);
        assert_eq!(
            out, "550 5.5.2 Message refused: bare CR or LF in data; lines must end with CRLF\r\n",
            "{smuggle:?}"
        );
        assert!(!d.events.iter().any(|e| matches!(e, Event::DataEnd { .. })));
        assert!(d
            .events
            .iter()
            .all(|e| !matches!(e, Event::Mail { from } if from.contains("evil"))));
    }
}

#[test]
fn bare_lf_never_ends_a_command() {
    let mut d = Driver::new();
    let out = d.send(b"NOOP\nQUIT\r\nNOOP\r\n");
    assert_eq!(
        out,
        "500 5.5.2 Bare CR or LF in command; lines must end with CRLF\r\n250 2.0.0 Ok\r\n"
    );
    assert!(!d.session.is_closed());
}

#[test]
fn overlong_line_gets_500_and_session_recovers() {
    let mut d = Driver::new();
    let mut input = vec![b'x'; 100_000];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(
        d.send(&input),
        "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn silent_client_gets_421_after_command_timeout() {
    let mut d = Driver::with(|c| c.timeouts.command = Duration::from_secs(30));
    let (deadline, timer) = d.session.poll_timeout().unwrap();
    assert_eq!(timer, Timer::Command);
    assert_eq!(deadline, d.now + Duration::from_secs(30));
    assert_eq!(d.advance(Duration::from_secs(29)), "");
    assert_eq!(
        d.advance(Duration::from_secs(1)),
        "421 4.4.2 Timeout, closing connection\r\n"
    );
    assert!(d.session.is_closed());
    assert_eq!(d.session.poll_timeout(), None);
}

#[test]
fn trickled_command_does_not_extend_the_timeout() {
    let mut d = Driver::with(|c| c.timeouts.command = Duration::from_secs(10));
    for _ in 0..9 {
        d.now += Duration::from_secs(1);
        d.send(b"N");
    }
    assert!(d.advance(Duration::from_secs(1)).starts_with("421"));
}

#[test]
fn data_timeout_discards_the_message() {
    let mut d = Driver::with(|c| c.timeouts.data = Duration::from_secs(60));
    d.send(TX);
    d.send(b"partial");
    assert!(d.advance(Duration::from_secs(60)).starts_with("421 4.4.2"));
    assert!(d.events.contains(&Event::DataDiscarded));
}

#[test]
fn quit_says_221_and_closes() {
    let mut d = Driver::new();
    assert_eq!(
        d.send(b"QUIT\r\nNOOP\r\n"),
        "221 2.0.0 mail.example.test closing connection\r\n"
    );
    assert!(d.session.is_closed());
    assert_eq!(d.events.last(), Some(&Event::Closed(CloseReason::Quit)));
}

#[test]
fn shutdown_says_421() {
    let mut d = Driver::new();
    d.session.shutdown(d.now);
    assert_eq!(
        d.drain(),
        "421 4.3.2 Service shutting down, closing connection\r\n"
    );
    assert!(d.session.is_closed());
}

#[test]
fn vrfy_reveals_nothing_and_expn_is_disabled() {
    let mut d = Driver::new();
    assert!(d.send(b"VRFY alice\r\n").starts_with("252 2.5.2"));
    assert!(d.send(b"VRFY nobody\r\n").starts_with("252 2.5.2"));
    assert_eq!(d.send(b"EXPN staff\r\n"), "502 5.5.1 EXPN is disabled\r\n");
}

#[test]
fn submission_requires_auth_before_mail() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    let out = d.send(b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\n");
    assert!(out.ends_with("530 5.7.0 Authentication required\r\n"));
}

#[test]
fn pending_verdict_pauses_input() {
    let cfg = Arc::new(Config::defaults("mail.example.test"));
    let dir = Arc::new(Directory::parse("alice@example.test:!\n").unwrap());
    let peer = Peer {
        remote: "127.0.0.1:1".parse().unwrap(),
        local: "127.0.0.1:2".parse().unwrap(),
        listener: ListenerKind::Smtp,
    };
    let now = Instant::now();
    let mut s = Session::new(cfg, dir, peer, now);
    let input = [TX, b"body\r\n.\r\n"].concat();
    let n = s.handle_input(now, &input);
    assert_eq!(n, TX.len(), "stops right after DATA");
    assert_eq!(s.handle_input(now, &input[n..]), 0);
    assert_eq!(
        s.handle_verdict(now, Verdict::Queued),
        Err(UsageError::WrongVerdict)
    );
    let mut events = Vec::new();
    while let Some(e) = s.poll_event() {
        events.push(e);
    }
    assert_eq!(events.last(), Some(&Event::DataStart));
    s.handle_verdict(
        now,
        Verdict::DataAccepted {
            queue_id: "A".into(),
            date: UnixTime(0),
        },
    )
    .unwrap();
    assert_eq!(s.handle_input(now, &input[n..]), input.len() - n);
    assert_eq!(
        s.handle_verdict(
            now,
            Verdict::DataAccepted {
                queue_id: "B".into(),
                date: UnixTime(0)
            }
        ),
        Err(UsageError::WrongVerdict)
    );
    s.handle_verdict(now, Verdict::Queued).unwrap();
    assert_eq!(
        s.handle_verdict(now, Verdict::Queued),
        Err(UsageError::NoVerdictPending)
    );
}

#[test]
fn queue_failure_gets_451_and_session_continues() {
    let mut d = Driver::new();
    d.send(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n");
    let _ = d.session.handle_input(d.now, b"DATA\r\n");
    while d.session.poll_event().is_some() {}
    d.session
        .handle_verdict(
            d.now,
            Verdict::Refuse(RefuseReason::QueueUnavailable("disk full".into())),
        )
        .unwrap();
    assert_eq!(
        d.drain(),
        "451 4.3.0 Local error in processing; try again later\r\n"
    );
    assert!(d.send(b"NOOP\r\n").starts_with("250"));
}

#[test]
fn large_message_streams_in_bounded_chunks() {
    let mut d = Driver::new();
    d.send(TX);
    let line = [vec![b'a'; 998], b"\r\n".to_vec()].concat();
    let mut input = Vec::new();
    for _ in 0..1000 {
        input.extend_from_slice(&line);
    }
    input.extend_from_slice(b".\r\n");
    let mut rest: &[u8] = &input;
    let mut max_chunk = 0;
    while !rest.is_empty() {
        let n = d.session.handle_input(d.now, rest);
        rest = &rest[n..];
        let mut chunk = Vec::new();
        d.session.take_body(&mut chunk);
        max_chunk = max_chunk.max(chunk.len());
        d.body.extend_from_slice(&chunk);
        d.drain();
    }
    assert!(max_chunk <= BODY_CHUNK + 1000, "chunk {max_chunk}");
    assert!(d.events.contains(&Event::DataEnd { size: 1_000_000 }));
}

#[test]
fn non_ascii_address_needs_smtputf8() {
    let mut d = Driver::new();
    let out = d.send("EHLO c\r\nMAIL FROM:<jos\u{e9}@remote.example>\r\n".as_bytes());
    assert!(out.ends_with("553 5.6.7 Non-ASCII address needs MAIL FROM with SMTPUTF8\r\n"));
    let out = d.send(
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<r\u{e9}mi@elsewhere.example>\r\n".as_bytes(),
    );
    assert!(out.ends_with("553 5.6.7 Non-ASCII address needs MAIL FROM with SMTPUTF8\r\n"));
    let out = d.send("RSET\r\nMAIL FROM:<jos\u{e9}@remote.example> SMTPUTF8\r\nRCPT TO:<r\u{e9}mi@elsewhere.example>\r\n".as_bytes());
    assert!(
        out.ends_with("250 2.1.0 Sender ok\r\n250 2.1.5 Recipient ok\r\n"),
        "{out}"
    );
}

fn outsider(tweak: impl FnOnce(&mut Config)) -> Driver {
    Driver::on(ListenerKind::Smtp, "192.0.2.9", tweak)
}

#[test]
fn untrusted_client_waits_for_the_greet_pause() {
    let mut d = outsider(|c| c.limits.greet_pause = Duration::from_secs(1));
    assert_eq!(d.greeting, "");
    assert_eq!(d.session.poll_timeout().map(|(_, t)| t), Some(Timer::Greet));
    assert_eq!(d.advance(Duration::from_millis(999)), "");
    assert_eq!(
        d.advance(Duration::from_millis(1)),
        "220 mail.example.test ESMTP hato\r\n"
    );
    assert!(d.send(b"NOOP\r\n").starts_with("250"));
}

#[test]
fn early_talker_is_refused_and_closed() {
    let mut d = outsider(|c| c.limits.greet_pause = Duration::from_secs(1));
    let out = d.send(b"EHLO spam.example\r\nMAIL FROM:<x@y.example>\r\n");
    assert_eq!(
        out,
        "554 5.5.0 Protocol error: you talked before the greeting\r\n"
    );
    assert!(d.session.is_closed());
    assert_eq!(d.refusals(), [RefuseReason::EarlyTalker]);
}

#[test]
fn trusted_clients_and_submission_get_no_greet_pause() {
    let d = Driver::with(|c| c.limits.greet_pause = Duration::from_secs(5));
    assert!(d.greeting.starts_with("220"));
    let d = Driver::on(ListenerKind::Submission, "192.0.2.9", |c| {
        c.limits.greet_pause = Duration::from_secs(5);
    });
    assert!(d.greeting.starts_with("220"));
}

#[test]
fn dnsbl_listing_answer_refuses_the_greeting() {
    let mut d = Driver::on(ListenerKind::Smtp, "192.0.2.9", |c| {
        c.limits.greet_pause = Duration::ZERO;
        c.dnsbl.zones = vec!["bl.example".into()];
    });
    // The driver answered the connect question "allowed" already.
    assert!(d.greeting.starts_with("220"));
    assert!(d.events.contains(&Event::Ask(Question::Connect)));
    let mut d2 = Driver::on(ListenerKind::Smtp, "192.0.2.9", |c| {
        c.limits.greet_pause = Duration::from_secs(1);
        c.dnsbl.zones = vec!["bl.example".into()];
    });
    d2.answers.push_back(Err(RefuseReason::Dnsbl {
        zone: "bl.example".into(),
    }));
    let out = d2.advance(Duration::from_secs(1));
    assert_eq!(
        out,
        "554 5.7.1 Service unavailable; client address listed by bl.example\r\n"
    );
    assert!(d2.session.is_closed());
    d.send(b"QUIT\r\n");
}

#[test]
fn mail_asks_about_the_rate_for_untrusted_clients_only() {
    let mut d = outsider(|c| c.limits.greet_pause = Duration::ZERO);
    d.answers.push_back(Err(RefuseReason::RateExceeded {
        count: 20,
        per_secs: 5,
    }));
    let out = d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n");
    assert!(out.contains("451 4.7.1 Too many messages"), "{out}");
    assert!(out.ends_with("250 2.1.0 Sender ok\r\n"), "{out}");
    let mut trusted = Driver::new();
    trusted.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n");
    assert!(!trusted.events.iter().any(|e| matches!(e, Event::Ask(_))));
}

#[test]
fn too_many_errors_end_the_session() {
    let mut d = Driver::with(|c| c.limits.max_errors = 3);
    let out = d.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
    assert!(
        out.ends_with(
            "500 5.5.1 Command unrecognized\r\n421 4.7.0 Too many errors, closing connection\r\n"
        ),
        "{out}"
    );
    assert!(d.session.is_closed());
}

#[test]
fn too_many_transactions_end_the_session() {
    let mut d = Driver::with(|c| c.limits.max_transactions = 1);
    let out = d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\n");
    assert!(
        out.ends_with("421 4.7.0 Too many messages in one connection; reconnect to send more\r\n"),
        "{out}"
    );
    assert!(d.session.is_closed());
}

#[test]
fn bad_recipients_are_throttled_then_the_session_ends_with_a_penalty() {
    let mut d = Driver::with(|c| {
        c.limits.bad_recipients_delay_after = 2;
        c.limits.bad_recipients_limit = 5;
    });
    d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n");
    // Two unknown users answer at once.
    assert!(d
        .send(b"RCPT TO:<u1@example.test>\r\nRCPT TO:<u2@example.test>\r\n")
        .ends_with("550 5.1.1 Mailbox unavailable: no such user here\r\n"));
    // From now on replies are held: 1 s, then 2 s, growing.
    assert_eq!(d.send(b"RCPT TO:<u3@example.test>\r\n"), "");
    assert_eq!(d.advance(Duration::from_millis(999)), "");
    assert!(d.advance(Duration::from_millis(1)).starts_with("550 5.1.1"));
    // A good address is delayed too, so timing reveals nothing.
    assert_eq!(d.send(b"RCPT TO:<alice@example.test>\r\n"), "");
    assert_eq!(d.advance(Duration::from_millis(1999)), "");
    assert!(d.advance(Duration::from_millis(1)).starts_with("250 2.1.5"));
    d.send(b"RCPT TO:<u4@example.test>\r\n");
    assert!(d.advance(Duration::from_secs(2)).starts_with("550"));
    // The last straw ends the session at once (a held 421 would be lost).
    let out = d.send(b"RCPT TO:<u5@example.test>\r\n");
    assert_eq!(
        out,
        "421 4.7.0 Too many unknown recipients, closing connection\r\n"
    );
    assert!(d.events.contains(&Event::Penalize));
    assert!(d.session.is_closed());
}

#[test]
fn spam_trap_is_refused_reported_and_blocks_the_rest_of_the_session() {
    let mut d = Driver::with(|c| c.deny.spam_traps = vec!["trap@example.test".into()]);
    let out = d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<Trap@Example.Test>\r\nDATA\r\n");
    assert!(
        out.contains("550 5.7.1 Mailbox unavailable; your address is now blocked"),
        "{out}"
    );
    assert!(
        out.ends_with("554 5.7.1 Your address is blocked for sending to a spam trap\r\n"),
        "{out}"
    );
    assert!(d.events.contains(&Event::TrapHit {
        trap: "trap@example.test".into()
    }));
    assert!(!d.events.contains(&Event::DataStart));
}

#[test]
fn denied_senders_by_address_and_domain() {
    let mut d = Driver::with(|c| {
        c.deny.senders = vec!["spammer@bad.example".into(), "junk.example".into()];
    });
    d.send(b"HELO c\r\n");
    for from in [
        "<Spammer@Bad.Example>",
        "<x@junk.example>",
        "<x@mx.junk.example>",
    ] {
        let out = d.send(format!("MAIL FROM:{from}\r\n").as_bytes());
        assert_eq!(out, "553 5.7.1 Sender address rejected\r\n", "{from}");
    }
    assert!(d.send(b"MAIL FROM:<ok@bad.example>\r\n").starts_with("250"));
    assert!(d
        .send(b"RSET\r\nMAIL FROM:<>\r\n")
        .ends_with("250 2.1.0 Sender ok\r\n"));
}

#[test]
fn helo_asks_when_names_are_denied() {
    let mut d = Driver::with(|c| {
        c.deny.from = vec![crate::config::DenyFrom::Name("spam.example".into())];
    });
    d.answers
        .push_back(Err(RefuseReason::DeniedClient("spam.example".into())));
    assert_eq!(
        d.send(b"HELO host.spam.example\r\n"),
        "554 5.7.1 Access denied\r\n"
    );
    assert!(d.send(b"MAIL FROM:<a@b.example>\r\n").starts_with("503"));
    assert!(d.send(b"HELO ok.example\r\n").starts_with("250"));
}

#[test]
fn greylisting_is_asked_for_untrusted_clients() {
    let mut d = outsider(|c| {
        c.limits.greet_pause = Duration::ZERO;
        c.greylisting.enabled = true;
    });
    d.answers.push_back(Ok(())); // MAIL rate
    d.answers.push_back(Err(RefuseReason::Greylisted));
    let out = d.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\n");
    assert!(
        out.ends_with("451 4.7.1 Greylisted: please try again later\r\n"),
        "{out}"
    );
    assert!(d.events.contains(&Event::Ask(Question::Greylist {
        from: "<a@b.example>".into(),
        to: "<alice@example.test>".into()
    })));
}

mod tls_auth;
