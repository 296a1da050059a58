//! Client session tests against a scripted server, in virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::smtp::reply::Enhanced;

/// A scripted server: the test feeds replies and reads what the client sent.
struct Script {
    s: ClientSession,
    now: Instant,
    /// What the client wrote since the last [`Script::sent`].
    wire: Vec<u8>,
    events: Vec<ClientEvent>,
    /// The body pushed on WantBody, in chunks.
    body: Vec<Vec<u8>>,
    /// Transactions sent, in order, whenever the session is idle.
    next: VecDeque<Transaction>,
    /// Say QUIT once idle with `next` empty.
    auto_quit: bool,
}

impl Script {
    fn new() -> Self {
        Self::with(ClientConfig::new("client.example"))
    }

    fn with(cfg: ClientConfig) -> Self {
        let now = Instant::now();
        Self {
            s: ClientSession::new(cfg, now),
            now,
            wire: Vec::new(),
            events: Vec::new(),
            body: vec![b"Subject: hi\r\n\r\nHello\r\n".to_vec()],
            next: VecDeque::new(),
            auto_quit: false,
        }
    }

    /// A session greeted and past EHLO with `ext` keyword lines.
    fn ready(ext: &[&str]) -> Self {
        let mut t = Self::new();
        t.reply("220 mx.example ESMTP\r\n");
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        let mut text = String::from("250-mx.example hello\r\n");
        for e in ext {
            text.push_str(&format!("250-{e}\r\n"));
        }
        text.push_str("250 HELP\r\n");
        t.reply(&text);
        assert_eq!(t.take_events(), [ClientEvent::Ready]);
        t
    }

    /// Feeds server bytes (pushing the body on WantBody).
    fn reply(&mut self, text: &str) {
        self.feed(text.as_bytes());
    }

    fn feed(&mut self, mut input: &[u8]) {
        self.drain();
        while !input.is_empty() && !self.s.is_closed() {
            let n = self.s.handle_input(self.now, input);
            input = &input[n..];
            let progressed = self.drain();
            if n == 0 && !progressed {
                break;
            }
        }
    }

    /// Drains transmits and events; returns whether anything happened.
    fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            any |= self.s.poll_transmit(&mut self.wire) > 0;
            let Some(ev) = self.s.poll_event() else {
                if self.s.state == State::Idle && self.s.active.is_none() && self.s.queued.is_none()
                {
                    if let Some(m) = self.next.pop_front() {
                        self.s.send(self.now, m).unwrap();
                        continue;
                    } else if self.auto_quit && !self.s.quit_requested {
                        self.s.quit(self.now).unwrap();
                        continue;
                    }
                }
                return any;
            };
            any = true;
            if ev == ClientEvent::WantBody {
                for chunk in self.body.clone() {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        let Ok(n) = self.s.push_body(self.now, rest) else {
                            break;
                        };
                        rest = &rest[n..];
                        let _ = self.s.poll_transmit(&mut self.wire);
                    }
                }
                let _ = self.s.end_body(self.now);
            }
            self.events.push(ev);
        }
    }

    fn sent(&mut self) -> String {
        self.drain();
        String::from_utf8(std::mem::take(&mut self.wire)).unwrap()
    }

    fn take_events(&mut self) -> Vec<ClientEvent> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn send(&mut self, tx: Transaction) {
        self.s.send(self.now, tx).unwrap();
    }

    /// Jumps to the armed deadline and fires it.
    fn time_out(&mut self) -> Stage {
        let (at, stage) = self.s.poll_timeout().expect("a timer is armed");
        self.now = at;
        self.s.handle_timeout(at - Duration::from_millis(1));
        assert!(!self.s.is_closed(), "no early firing");
        self.s.handle_timeout(at);
        stage
    }

    /// The TransactionDone outcomes among `events`.
    fn done(events: &[ClientEvent]) -> Vec<Outcome> {
        let mut found = events.iter().filter_map(|e| match e {
            ClientEvent::TransactionDone { outcomes } => Some(outcomes.clone()),
            _ => None,
        });
        let outcomes = found.next().expect("TransactionDone");
        assert!(found.next().is_none(), "one TransactionDone");
        outcomes
    }
}

fn tx(rcpts: &[&str]) -> Transaction {
    Transaction {
        from: "<sender@here.example>".into(),
        recipients: rcpts.iter().map(|r| format!("<{r}>")).collect(),
        size: 1000,
        body_8bit: false,
        smtputf8: false,
    }
}

fn delivered(code: u16, text: &str) -> Outcome {
    Outcome::Delivered {
        reply: Reply::new(code, Some(Enhanced(2, 0, 0)), text.to_owned()),
    }
}

fn refused(stage: Stage, code: u16, esc: Enhanced, text: &str) -> Outcome {
    Outcome::refused(stage, Reply::new(code, Some(esc), text.to_owned()))
}

#[test]
fn plain_transaction_one_command_at_a_time() {
    let mut t = Script::ready(&["8BITMIME", "SIZE 100000"]);
    t.send(tx(&["a@there.example"]));
    assert_eq!(t.sent(), "MAIL FROM:<sender@here.example> SIZE=1000\r\n");
    t.reply("250 2.1.0 Ok\r\n");
    assert_eq!(t.sent(), "RCPT TO:<a@there.example>\r\n");
    t.reply("250 2.1.5 Ok\r\n");
    assert_eq!(t.sent(), "DATA\r\n");
    t.reply("354 go ahead\r\n");
    assert_eq!(t.sent(), "Subject: hi\r\n\r\nHello\r\n.\r\n");
    t.reply("250 2.0.0 queued as X1\r\n");
    let ev = t.take_events();
    let want = delivered(250, "queued as X1");
    assert_eq!(
        ev,
        [
            ClientEvent::WantBody,
            ClientEvent::RecipientResult {
                index: 0,
                outcome: want.clone()
            },
            ClientEvent::TransactionDone {
                outcomes: vec![want]
            },
        ]
    );
    assert_eq!(t.s.poll_timeout(), None, "idle has no timer");
    t.s.quit(t.now).unwrap();
    assert_eq!(t.sent(), "QUIT\r\n");
    t.reply("221 2.0.0 Bye\r\n");
    assert!(t.s.is_closed());
    assert_eq!(
        t.take_events(),
        [ClientEvent::Closed {
            reason: CloseReason::Quit
        }]
    );
}

#[test]
fn pipelined_transaction_with_a_rejected_recipient() {
    let mut t = Script::ready(&["PIPELINING", "8BITMIME"]);
    t.send(tx(&[
        "a@there.example",
        "nobody@there.example",
        "b@there.example",
    ]));
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example>\r\nRCPT TO:<a@there.example>\r\n\
         RCPT TO:<nobody@there.example>\r\nRCPT TO:<b@there.example>\r\nDATA\r\n"
    );
    t.reply("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 go\r\n");
    assert_eq!(t.sent(), "Subject: hi\r\n\r\nHello\r\n.\r\n");
    t.reply("250 2.0.0 Ok\r\n");
    let ev = t.take_events();
    let no_user = refused(Stage::Rcpt, 550, Enhanced(5, 1, 1), "No such user");
    assert_eq!(
        ev[0],
        ClientEvent::RecipientResult {
            index: 1,
            outcome: no_user.clone()
        }
    );
    let ok = delivered(250, "Ok");
    assert_eq!(Script::done(&ev), [ok.clone(), no_user, ok]);
}

#[test]
fn all_recipients_rejected_sends_no_data_and_resets() {
    let mut t = Script::ready(&[]);
    t.send(tx(&["x@there.example", "y@there.example"]));
    t.reply("250 Ok\r\n");
    t.reply("550 5.1.1 unknown\r\n");
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example>\r\nRCPT TO:<x@there.example>\r\nRCPT TO:<y@there.example>\r\n"
    );
    t.reply("450 4.2.1 mailbox busy\r\n");
    assert_eq!(t.sent(), "RSET\r\n", "no DATA");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [
            refused(Stage::Rcpt, 550, Enhanced(5, 1, 1), "unknown"),
            refused(Stage::Rcpt, 450, Enhanced(4, 2, 1), "mailbox busy"),
        ]
    );
    assert!(matches!(
        Script::done(&ev)[1],
        Outcome::Temporary(Failure::Reply { .. })
    ));
    // A transaction sent during the RSET waits for its reply.
    t.send(tx(&["z@there.example"]));
    assert_eq!(t.sent(), "");
    t.reply("250 2.0.0 Ok\r\n");
    assert_eq!(t.sent(), "MAIL FROM:<sender@here.example>\r\n");
}

#[test]
fn pipelined_all_recipients_rejected_reads_the_data_refusal() {
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(tx(&["x@there.example"]));
    let _ = t.sent();
    t.reply("250 Ok\r\n550 no\r\n554 5.5.1 no valid recipients\r\n");
    assert_eq!(t.sent(), "RSET\r\n");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::refused(Stage::Rcpt, Reply::new(550, None, "no"))]
    );
    t.reply("250 Ok\r\n");
    assert_eq!(t.s.state, State::Idle);
}

#[test]
fn pipelined_data_accepted_without_recipients_sends_only_the_dot() {
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(tx(&["x@there.example"]));
    let _ = t.sent();
    t.reply("250 Ok\r\n550 no\r\n354 go\r\n");
    assert_eq!(t.sent(), ".\r\n");
    assert!(!t.take_events().contains(&ClientEvent::WantBody));
    t.reply("554 no message\r\n");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::refused(Stage::Rcpt, Reply::new(550, None, "no"))]
    );
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let mut t = Script::new();
    t.reply("220 old.example\r\n");
    assert_eq!(t.sent(), "EHLO client.example\r\n");
    t.reply("502 5.5.2 what?\r\n");
    assert_eq!(t.sent(), "HELO client.example\r\n");
    t.reply("250 old.example\r\n");
    assert_eq!(t.take_events(), [ClientEvent::Ready]);
    assert_eq!(t.s.extensions(), &Extensions::default());
    // No SIZE parameter and no pipelining for a HELO server.
    t.send(tx(&["a@old.example"]));
    assert_eq!(t.sent(), "MAIL FROM:<sender@here.example>\r\n");
}

#[test]
fn helo_refused_too_fails_the_queued_transaction_and_quits() {
    let mut t = Script::new();
    t.send(tx(&["a@old.example"]));
    t.reply("220 old.example\r\n500 no\r\n");
    t.reply("550 go away\r\n");
    assert_eq!(
        t.sent(),
        "EHLO client.example\r\nHELO client.example\r\nQUIT\r\n"
    );
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::refused(
            Stage::Helo,
            Reply::new(550, None, "go away")
        )]
    );
    t.reply("221 bye\r\n");
    assert_eq!(
        t.take_events(),
        [ClientEvent::Closed {
            reason: CloseReason::Refused(Reply::new(550, None, "go away"))
        }]
    );
}

#[test]
fn a_temporary_ehlo_refusal_is_no_reason_for_helo() {
    let mut t = Script::new();
    t.reply("220 mx\r\n450 later\r\n");
    assert_eq!(t.sent(), "EHLO client.example\r\nQUIT\r\n");
}

#[test]
fn greeting_refused_fails_permanently_with_its_reply() {
    let mut t = Script::new();
    t.send(tx(&["a@there.example"]));
    t.reply("554 5.7.1 no service\r\n");
    assert_eq!(t.sent(), "QUIT\r\n");
    let ev = t.take_events();
    assert!(matches!(
        &Script::done(&ev)[0],
        Outcome::Permanent(Failure::Reply {
            stage: Stage::Greeting,
            ..
        })
    ));
    t.s.handle_eof(t.now);
    assert!(t.s.is_closed());
}

#[test]
fn temporary_failure_at_mail_fails_every_recipient() {
    let mut t = Script::ready(&[]);
    t.send(tx(&["a@there.example", "b@there.example"]));
    let _ = t.sent();
    t.reply("451 4.3.0 try later\r\n");
    assert_eq!(t.sent(), "", "no RCPT after a refused MAIL");
    let ev = t.take_events();
    let o = refused(Stage::Mail, 451, Enhanced(4, 3, 0), "try later");
    assert_eq!(Script::done(&ev), [o.clone(), o]);
    assert_eq!(t.s.state, State::Idle);
}

#[test]
fn pipelined_mail_refusal_still_reads_every_reply() {
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(tx(&["a@there.example", "b@there.example"]));
    let _ = t.sent();
    t.reply("452 4.3.1 full\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no\r\n");
    assert_eq!(t.sent(), "RSET\r\n");
    let ev = t.take_events();
    let o = refused(Stage::Mail, 452, Enhanced(4, 3, 1), "full");
    assert_eq!(Script::done(&ev), [o.clone(), o]);
}

#[test]
fn permanent_failure_after_data_applies_to_accepted_recipients() {
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(tx(&["a@there.example", "b@there.example"]));
    let _ = t.sent();
    t.reply("250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n354 go\r\n");
    let _ = t.sent();
    t.reply("554 5.7.1 spam\r\n");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [
            refused(Stage::DataEnd, 554, Enhanced(5, 7, 1), "spam"),
            refused(Stage::Rcpt, 452, Enhanced(4, 5, 3), "too many"),
        ]
    );
    assert_eq!(t.sent(), "", "no RSET after the final reply");
}

#[test]
fn data_refused_fails_accepted_recipients_and_resets() {
    let mut t = Script::ready(&[]);
    t.send(tx(&["a@there.example"]));
    t.reply("250 ok\r\n250 ok\r\n451 4.3.0 not now\r\n");
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example>\r\nRCPT TO:<a@there.example>\r\nDATA\r\nRSET\r\n"
    );
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [refused(Stage::DataInit, 451, Enhanced(4, 3, 0), "not now")]
    );
}

#[test]
fn message_over_the_size_limit_is_not_sent() {
    let mut t = Script::ready(&["SIZE 500", "PIPELINING"]);
    t.send(tx(&["a@there.example"]));
    assert_eq!(t.sent(), "");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::Permanent(Failure::TooLarge {
            size: 1000,
            limit: 500
        })]
    );
    // The connection stays usable.
    let mut small = tx(&["a@there.example"]);
    small.size = 400;
    t.send(small);
    assert!(t
        .sent()
        .starts_with("MAIL FROM:<sender@here.example> SIZE=400\r\n"));
}

#[test]
fn eight_bit_body_to_a_seven_bit_server_fails_permanently() {
    let mut t = Script::ready(&["PIPELINING"]);
    let mut m = tx(&["a@there.example"]);
    m.body_8bit = true;
    t.send(m.clone());
    assert_eq!(t.sent(), "");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::Permanent(Failure::EightBitUnsupported)]
    );
    let mut t = Script::ready(&["8BITMIME"]);
    t.send(m);
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example> BODY=8BITMIME\r\n"
    );
}

#[test]
fn every_stage_has_its_timeout() {
    let d = Timeouts::default();
    let min = |m: u64| Duration::from_secs(60 * m);
    let cases: Vec<(&str, Stage, Duration)> = vec![
        ("", Stage::Greeting, min(5)),
        ("220 mx\r\n", Stage::Ehlo, min(5)),
        ("220 mx\r\n500 no\r\n", Stage::Helo, min(5)),
        ("220 mx\r\n250 mx\r\n", Stage::Mail, min(5)),
        ("220 mx\r\n250 mx\r\n250 ok\r\n", Stage::Rcpt, min(5)),
        (
            "220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n",
            Stage::DataInit,
            min(2),
        ),
        (
            "220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n",
            Stage::DataEnd,
            min(10),
        ),
        (
            "220 mx\r\n250 mx\r\n250 ok\r\n550 no\r\n",
            Stage::Rset,
            min(5),
        ),
    ];
    assert_eq!(d.data_block, min(3));
    for (script, stage, after) in cases {
        let mut t = Script::new();
        let start = t.now;
        t.send(tx(&["a@there.example"]));
        t.reply(script);
        let _ = t.take_events();
        let (at, s) = t.s.poll_timeout().unwrap();
        assert_eq!(s, stage, "{script:?}");
        assert_eq!(at - start, after, "{stage:?}");
        assert_eq!(t.time_out(), stage);
        assert!(t.s.is_closed());
        let ev = t.take_events();
        assert_eq!(
            ev.last(),
            Some(&ClientEvent::Closed {
                reason: CloseReason::Timeout(stage)
            })
        );
        if stage != Stage::Rset {
            assert_eq!(
                Script::done(&ev),
                [Outcome::Temporary(Failure::Timeout(stage))],
                "{stage:?}"
            );
        }
    }
}

#[test]
fn a_stalled_body_times_out_per_block() {
    let mut t2 = Script::ready(&[]);
    t2.s.send(t2.now, tx(&["a@there.example"])).unwrap();
    for r in ["250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
        let _ = t2.s.handle_input(t2.now, r.as_bytes());
    }
    assert_eq!(t2.s.poll_timeout().map(|(_, s)| s), Some(Stage::DataBlock));
    t2.now += Duration::from_secs(120);
    t2.s.push_body(t2.now, b"line\r\n").unwrap();
    let (at, _) = t2.s.poll_timeout().unwrap();
    assert_eq!(at, t2.now + Duration::from_secs(180), "re-armed per block");
    assert_eq!(t2.time_out(), Stage::DataBlock);
    let ev = t2.take_events();
    assert_eq!(
        Script::done(&ev),
        [Outcome::Temporary(Failure::Timeout(Stage::DataBlock))]
    );
    assert_eq!(
        t2.s.push_body(t2.now, b"x"),
        Err(UsageError::NotSendingBody)
    );
}

#[test]
fn multi_line_replies_split_across_reads() {
    let mut t = Script::new();
    for piece in [
        "2",
        "20 mx\r",
        "\n250-mx.exa",
        "mple\r\n250-PIPE",
        "LINING\r\n250 SIZE 99",
        "9\r\n",
    ] {
        t.reply(piece);
    }
    assert_eq!(t.take_events(), [ClientEvent::Ready]);
    assert!(t.s.extensions().pipelining);
    assert_eq!(t.s.extensions().size_limit(), Some(999));
}

#[test]
fn dot_stuffing_and_line_endings_in_the_body() {
    let mut t = Script::ready(&["PIPELINING"]);
    t.body = vec![
        b".hidden\r\n".to_vec(),
        b"\r\n.\r".to_vec(),
        b"\n..x\nend".to_vec(),
    ];
    t.send(tx(&["a@there.example"]));
    let _ = t.sent();
    t.reply("250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(t.sent(), "..hidden\r\n\r\n..\r\n...x\r\nend\r\n.\r\n");
}

#[test]
fn a_large_body_streams_through_the_bounded_buffer() {
    let mut t = Script::ready(&["PIPELINING"]);
    let line = b"0123456789012345678901234567890123456789\r\n".to_vec();
    t.body = vec![line.repeat(10_000)];
    t.send(tx(&["a@there.example"]));
    let _ = t.sent();
    t.reply("250 ok\r\n250 ok\r\n354 go\r\n");
    let sent = t.sent();
    assert_eq!(sent.len(), line.len() * 10_000 + 3);
    assert!(sent.ends_with("\r\n.\r\n"));
    // One push never takes more than the buffer holds.
    let mut t = Script::ready(&[]);
    t.s.send(t.now, tx(&["a@there.example"])).unwrap();
    for r in ["250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
        let _ = t.s.handle_input(t.now, r.as_bytes());
    }
    let _ = t.s.poll_transmit(&mut Vec::new());
    let big = vec![b'x'; 3 * BODY_BUFFER];
    let n = t.s.push_body(t.now, &big).unwrap();
    assert_eq!(n, BODY_BUFFER);
    assert_eq!(t.s.push_body(t.now, &big[n..]), Ok(0), "full until drained");
    assert_eq!(
        t.s.handle_input(t.now, b"250 ok\r\n"),
        0,
        "no reading during the body"
    );
}

#[test]
fn two_transactions_on_one_connection() {
    let mut t = Script::ready(&["PIPELINING", "8BITMIME"]);
    for (i, rcpt) in ["a@there.example", "b@there.example"].iter().enumerate() {
        let mut m = tx(&[rcpt]);
        m.from = if i == 0 {
            "sender@here.example".into()
        } else {
            "<>".into()
        };
        t.send(m);
        let want_from = if i == 0 {
            "<sender@here.example>"
        } else {
            "<>"
        };
        assert_eq!(
            t.sent(),
            format!("MAIL FROM:{want_from}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n")
        );
        assert_eq!(t.s.send(t.now, tx(&["c@d"])), Err(UsageError::Busy));
        t.reply("250 ok\r\n250 ok\r\n354 go\r\n");
        let _ = t.sent();
        t.reply(&format!("250 2.0.0 queued as Q{i}\r\n"));
        let ev = t.take_events();
        assert_eq!(
            Script::done(&ev),
            [delivered(250, &format!("queued as Q{i}"))]
        );
    }
    t.s.quit(t.now).unwrap();
    assert_eq!(t.s.send(t.now, tx(&["c@d"])), Err(UsageError::Closed));
    assert_eq!(t.sent(), "QUIT\r\n");
    t.s.handle_eof(t.now);
    assert_eq!(
        t.take_events(),
        [ClientEvent::Closed {
            reason: CloseReason::Quit
        }]
    );
}

#[test]
fn garbage_replies_are_protocol_errors() {
    for garbage in ["hello there\r\n", "2", "250-a\r\n354 b\r\n", "999 x\r\n"] {
        let mut t = Script::ready(&[]);
        t.send(tx(&["a@there.example"]));
        t.reply(garbage);
        if garbage == "2" {
            t.s.handle_eof(t.now);
            let ev = t.take_events();
            assert_eq!(
                Script::done(&ev),
                [Outcome::Temporary(Failure::ConnectionLost)]
            );
            continue;
        }
        assert!(t.s.is_closed(), "{garbage:?}");
        let ev = t.take_events();
        assert!(matches!(
            &Script::done(&ev)[0],
            Outcome::Temporary(Failure::Protocol(_))
        ));
        assert!(matches!(
            ev.last(),
            Some(ClientEvent::Closed {
                reason: CloseReason::Protocol(_)
            })
        ));
    }
    let mut t = Script::ready(&[]);
    t.reply("250 unasked\r\n");
    assert_eq!(
        t.take_events(),
        [ClientEvent::Closed {
            reason: CloseReason::Protocol(ProtocolError::Unexpected)
        }]
    );
}

#[test]
fn service_closing_fails_open_recipients_temporarily() {
    let mut t = Script::ready(&[]);
    t.send(tx(&["a@there.example"]));
    t.reply("250 ok\r\n421 4.3.2 shutting down\r\n");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [refused(
            Stage::Rcpt,
            421,
            Enhanced(4, 3, 2),
            "shutting down"
        )]
    );
    assert!(t.s.is_closed());
}

#[test]
fn usage_errors_are_refused_without_side_effects() {
    let mut t = Script::ready(&[]);
    assert_eq!(t.s.send(t.now, tx(&[])), Err(UsageError::NoRecipients));
    let mut evil = tx(&["a@b"]);
    evil.recipients[0] = "<a@b>\r\nRCPT TO:<c@d>".into();
    assert_eq!(t.s.send(t.now, evil), Err(UsageError::BadAddress));
    assert_eq!(t.s.end_body(t.now), Err(UsageError::NotSendingBody));
    assert_eq!(t.sent(), "");
    t.send(tx(&["a@b"]));
    assert_eq!(t.s.quit(t.now), Err(UsageError::Busy));
}

#[test]
fn quit_before_the_greeting_is_sent_after_ehlo() {
    let mut t = Script::new();
    t.s.quit(t.now).unwrap();
    t.reply("220 mx\r\n250 mx\r\n");
    assert_eq!(t.sent(), "EHLO client.example\r\nQUIT\r\n");
    assert_eq!(t.s.poll_timeout().map(|(_, s)| s), Some(Stage::Quit));
    assert_eq!(t.time_out(), Stage::Quit);
    assert!(t.s.is_closed());
}

/// A whole conversation's server side, for the split proptest.
const SERVER: &str = "220 mx.example ESMTP\r\n\
    250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n\
    250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n354 go\r\n\
    250 2.0.0 queued\r\n\
    250 2.1.0 ok\r\n451 4.3.0 later\r\n554 5.5.1 no recipients\r\n\
    250 2.0.0 reset\r\n221 2.0.0 bye\r\n";

/// Runs the conversation with the server's bytes cut at `cuts`; returns
/// what the client sent and its events.
fn converse(cuts: &[usize]) -> (Vec<u8>, Vec<ClientEvent>) {
    let mut t = Script::new();
    t.body = vec![b".a\r\nb\r\n".to_vec()];
    t.next = VecDeque::from([
        tx(&["a@there.example", "b@there.example"]),
        tx(&["c@there.example"]),
    ]);
    t.auto_quit = true;
    let bytes = SERVER.as_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    for w in points.windows(2) {
        t.feed(&bytes[w[0]..w[1]]);
    }
    t.drain();
    (t.wire, t.events)
}

proptest! {
    #[test]
    fn output_does_not_depend_on_how_replies_are_split(
        cuts in proptest::collection::vec(any::<usize>(), 0..20)
    ) {
        let whole = converse(&[]);
        prop_assert_eq!(converse(&cuts), whole);
    }

    #[test]
    fn random_replies_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        eof in any::<bool>(),
    ) {
        let mut t = Script::ready(&["PIPELINING", "SIZE 100"]);
        let _ = t.s.send(t.now, tx(&["a@b", "c@d"]));
        t.feed(&input);
        if eof {
            t.s.handle_eof(t.now);
        } else if t.s.poll_timeout().is_some() {
            let _ = t.time_out();
        }
        let ev = t.take_events();
        let dones = ev
            .iter()
            .filter(|e| matches!(e, ClientEvent::TransactionDone { .. }))
            .count();
        prop_assert!(dones <= 1);
    }
}

#[test]
fn the_split_conversation_is_the_expected_one() {
    let (wire, events) = converse(&[]);
    let wire = String::from_utf8(wire).unwrap();
    assert!(
        wire.starts_with("EHLO client.example\r\nMAIL FROM:<sender@here.example> SIZE=1000\r\n")
    );
    assert!(wire.contains("\r\n..a\r\nb\r\n.\r\n"));
    assert!(wire.ends_with("RSET\r\nQUIT\r\n"));
    let dones = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::TransactionDone { .. }))
        .count();
    assert_eq!(dones, 2);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Closed {
            reason: CloseReason::Quit
        })
    );
}

/// An LMTP session past LHLO, announcing `ext`.
fn lmtp_ready(ext: &[&str]) -> Script {
    let mut t = Script::with(ClientConfig::lmtp("client.example"));
    t.reply("220 lmtp.example LMTP ready\r\n");
    assert_eq!(t.sent(), "LHLO client.example\r\n");
    let mut text = String::from("250-lmtp.example\r\n");
    for e in ext {
        text.push_str(&format!("250-{e}\r\n"));
    }
    text.push_str("250 ENHANCEDSTATUSCODES\r\n");
    t.reply(&text);
    assert_eq!(t.take_events(), [ClientEvent::Ready]);
    t
}

#[test]
fn lmtp_reads_one_reply_per_accepted_recipient_in_order() {
    let mut t = lmtp_ready(&["PIPELINING", "8BITMIME"]);
    t.send(tx(&[
        "a@here.example",
        "nobody@here.example",
        "b@here.example",
    ]));
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example>\r\nRCPT TO:<a@here.example>\r\n\
         RCPT TO:<nobody@here.example>\r\nRCPT TO:<b@here.example>\r\nDATA\r\n"
    );
    t.reply("250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 User doesn't exist\r\n250 2.1.5 OK\r\n354 OK\r\n");
    assert_eq!(t.sent(), "Subject: hi\r\n\r\nHello\r\n.\r\n");
    let _ = t.take_events();
    // The first reply is a's: b stays open, with the end-of-data timer.
    t.reply("250 2.0.0 <a@here.example> Saved\r\n");
    let a = delivered(250, "<a@here.example> Saved");
    assert_eq!(
        t.take_events(),
        [ClientEvent::RecipientResult {
            index: 0,
            outcome: a.clone()
        }]
    );
    assert_eq!(t.s.poll_timeout().map(|(_, s)| s), Some(Stage::DataEnd));
    t.reply("452 4.2.2 <b@here.example> Quota exceeded\r\n");
    let ev = t.take_events();
    let b = refused(
        Stage::DataEnd,
        452,
        Enhanced(4, 2, 2),
        "<b@here.example> Quota exceeded",
    );
    let nobody = refused(Stage::Rcpt, 550, Enhanced(5, 1, 1), "User doesn't exist");
    assert_eq!(
        ev[0],
        ClientEvent::RecipientResult {
            index: 2,
            outcome: b.clone()
        }
    );
    assert_eq!(Script::done(&ev), [a, nobody, b]);
    assert_eq!(t.s.poll_timeout(), None, "idle again");
    t.s.quit(t.now).unwrap();
    assert_eq!(t.sent(), "QUIT\r\n");
}

#[test]
fn lmtp_without_pipelining_gives_each_recipient_its_own_final_reply() {
    let mut t = lmtp_ready(&[]);
    t.send(tx(&["a@here.example", "b@here.example"]));
    t.reply("250 OK\r\n");
    t.reply("250 OK\r\n");
    t.reply("250 OK\r\n");
    assert_eq!(
        t.sent(),
        "MAIL FROM:<sender@here.example>\r\nRCPT TO:<a@here.example>\r\n\
         RCPT TO:<b@here.example>\r\nDATA\r\n"
    );
    t.reply("354 go\r\n");
    t.reply("550 5.7.1 rejected by sieve\r\n250 2.0.0 saved\r\n");
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [
            refused(Stage::DataEnd, 550, Enhanced(5, 7, 1), "rejected by sieve"),
            delivered(250, "saved"),
        ]
    );
    assert!(matches!(
        Script::done(&ev)[0],
        Outcome::Permanent(Failure::Reply { .. })
    ));
}

#[test]
fn lmtp_connection_lost_between_replies_keeps_the_delivered_ones() {
    let mut t = lmtp_ready(&["PIPELINING"]);
    t.send(tx(&["a@here.example", "b@here.example"]));
    t.reply("250 OK\r\n250 OK\r\n250 OK\r\n354 go\r\n250 2.0.0 saved\r\n");
    t.s.handle_eof(t.now);
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [
            delivered(250, "saved"),
            Outcome::Temporary(Failure::ConnectionLost)
        ]
    );
    assert!(t.s.is_closed());
}

#[test]
fn lmtp_timeout_between_replies_fails_the_rest_temporarily() {
    let mut t = lmtp_ready(&["PIPELINING"]);
    t.send(tx(&["a@here.example", "b@here.example"]));
    t.reply("250 OK\r\n250 OK\r\n250 OK\r\n354 go\r\n250 2.0.0 saved\r\n");
    assert_eq!(t.time_out(), Stage::DataEnd);
    let ev = t.take_events();
    assert_eq!(
        Script::done(&ev),
        [
            delivered(250, "saved"),
            Outcome::Temporary(Failure::Timeout(Stage::DataEnd))
        ]
    );
}

#[test]
fn lmtp_refused_lhlo_is_not_retried_with_helo() {
    let mut t = Script::with(ClientConfig::lmtp("client.example"));
    t.send(tx(&["a@here.example"]));
    t.reply("220 lmtp.example LMTP\r\n");
    assert_eq!(t.sent(), "LHLO client.example\r\n");
    t.reply("500 5.5.1 unknown command\r\n");
    assert_eq!(t.sent(), "QUIT\r\n");
    let ev = t.take_events();
    assert!(matches!(
        Script::done(&ev)[0],
        Outcome::Permanent(Failure::Reply {
            stage: Stage::Ehlo,
            ..
        })
    ));
}

/// A session with STARTTLS on, past the first EHLO of a server offering it.
fn starttls_offered() -> Script {
    let now = Instant::now();
    let mut cfg = ClientConfig::new("client.example");
    cfg.starttls = true;
    let mut t = Script::new();
    t.s = ClientSession::new(cfg, now);
    t.now = now;
    t.reply("220 mx.example ESMTP\r\n");
    assert_eq!(t.sent(), "EHLO client.example\r\n");
    t.reply("250-mx.example\r\n250-STARTTLS\r\n250 PIPELINING\r\n");
    assert_eq!(t.sent(), "STARTTLS\r\n");
    assert!(t.take_events().is_empty(), "not ready before TLS");
    t
}

#[test]
fn starttls_then_ehlo_again_inside_tls() {
    let mut t = starttls_offered();
    t.reply("220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(t.take_events(), [ClientEvent::StartTls]);
    assert_eq!(t.s.poll_timeout().map(|(_, s)| s), Some(Stage::StartTls));
    // Bytes behind the 220, before the handshake, are never replies.
    t.reply("250 2.0.0 injected\r\n");
    assert!(t.take_events().is_empty());
    t.s.tls_established(t.now).unwrap();
    assert!(t.s.is_tls());
    assert_eq!(t.sent(), "EHLO client.example\r\n");
    assert_eq!(
        t.s.extensions(),
        &Extensions::default(),
        "first EHLO forgotten"
    );
    t.reply("250-mx.example\r\n250 SIZE 10000\r\n");
    assert_eq!(t.take_events(), [ClientEvent::Ready]);
    assert_eq!(t.s.extensions().size_limit(), Some(10000));
    assert_eq!(t.sent(), "", "no second STARTTLS");
    t.send(tx(&["a@x.example"]));
    assert_eq!(t.sent(), "MAIL FROM:<sender@here.example> SIZE=1000\r\n");
}

#[test]
fn a_refused_starttls_goes_on_in_plaintext() {
    let mut t = starttls_offered();
    t.reply("454 4.7.0 TLS not available\r\n");
    assert_eq!(t.take_events(), [ClientEvent::Ready]);
    assert!(!t.s.is_tls());
    assert!(
        t.s.extensions().pipelining,
        "the plaintext EHLO still holds"
    );
}

#[test]
fn a_failed_handshake_closes_and_fails_the_queued_transaction() {
    let mut t = starttls_offered();
    t.send(tx(&["a@x.example"]));
    t.reply("220 go ahead\r\n");
    t.take_events();
    t.s.tls_failed(t.now).unwrap();
    let events = t.take_events();
    assert_eq!(
        Script::done(&events),
        [Outcome::Temporary(Failure::ConnectionLost)]
    );
    assert!(events.contains(&ClientEvent::Closed {
        reason: CloseReason::TlsFailed
    }));
    assert!(t.s.is_closed());
}

#[test]
fn a_stuck_handshake_times_out() {
    let mut t = starttls_offered();
    t.reply("220 go ahead\r\n");
    assert_eq!(t.time_out(), Stage::StartTls);
    assert!(t.s.is_closed());
}

#[test]
fn tls_calls_outside_a_handshake_are_usage_errors() {
    let mut t = Script::ready(&["STARTTLS"]);
    assert_eq!(t.s.tls_established(t.now), Err(UsageError::NotHandshaking));
    assert_eq!(t.s.tls_failed(t.now), Err(UsageError::NotHandshaking));
    // STARTTLS off (the default): offered but not used.
    assert_eq!(t.sent(), "");
    assert!(t.s.extensions().starttls);
}

#[test]
fn bytes_in_the_same_read_as_the_220_to_starttls_are_dropped() {
    let mut t = starttls_offered();
    t.reply("220 2.0.0 go ahead\r\nnot a reply, and not TLS\r\n250 injected\r\n");
    assert_eq!(t.take_events(), [ClientEvent::StartTls]);
    assert!(!t.s.is_closed(), "no protocol error from the junk");
    t.s.tls_established(t.now).unwrap();
    assert_eq!(t.sent(), "EHLO client.example\r\n");
}

#[test]
fn smtputf8_is_declared_when_offered_and_utf8_addresses_fail_without_it() {
    let mut m = tx(&["jörg@there.example"]);
    m.smtputf8 = true;
    // Offered: declared in MAIL (RFC 6531 §3.4).
    let mut t = Script::ready(&["SMTPUTF8"]);
    t.send(m.clone());
    assert_eq!(t.sent(), "MAIL FROM:<sender@here.example> SMTPUTF8\r\n");
    // Not offered, and the address needs it: not sent, failed for good.
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(m);
    assert_eq!(t.sent(), "");
    assert_eq!(
        Script::done(&t.take_events()),
        [Outcome::Permanent(Failure::Utf8Unsupported)]
    );
    // Not offered, but every address is ASCII: sent undeclared.
    let mut ascii = tx(&["a@there.example"]);
    ascii.smtputf8 = true;
    let mut t = Script::ready(&["PIPELINING"]);
    t.send(ascii);
    assert!(t.sent().starts_with("MAIL FROM:<sender@here.example>\r\n"));
}
