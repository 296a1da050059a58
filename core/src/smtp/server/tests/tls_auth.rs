//! STARTTLS, AUTH and the submission rules, through the public API.

use super::*;
use crate::tls::TlsInfo;

fn info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1_3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

/// `\0alice@example.test\0secret` in base64.
const ALICE_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=";

fn starttls_driver(listener: ListenerKind, ip: &str) -> Driver {
    let mut d = Driver::on(listener, ip, |c| c.limits.greet_pause = Duration::ZERO);
    d.session.offer_starttls();
    d
}

fn asked(d: &Driver) -> Vec<Question> {
    d.events
        .iter()
        .filter_map(|e| match e {
            Event::Ask(q) => Some(q.clone()),
            _ => None,
        })
        .collect()
}

/// A submission session from loopback, logged in as alice.
fn alice() -> Driver {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |c| {
        c.aliases
            .insert("sales".into(), "alice@example.test".into());
    });
    let out = d.send(format!("EHLO c\r\nAUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
    assert!(
        out.ends_with("235 2.7.0 Authentication successful\r\n"),
        "{out}"
    );
    d
}

#[test]
fn ehlo_offers_starttls_and_port_25_offers_no_auth_in_plaintext() {
    let mut d = starttls_driver(ListenerKind::Smtp, "192.0.2.9");
    let out = d.send(b"EHLO c\r\n");
    assert!(out.contains("250-STARTTLS\r\n"), "{out}");
    assert!(!out.contains("AUTH"), "{out}");
    let out = d.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
    assert!(out.starts_with("538 5.7.11 "), "{out}");
    assert!(asked(&d).is_empty(), "no password check without TLS");
}

#[test]
fn commands_pipelined_behind_starttls_are_dropped_not_run() {
    let mut d = starttls_driver(ListenerKind::Smtp, "192.0.2.9");
    d.send(b"EHLO c\r\n");
    let out = d.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@sender.example>\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    assert!(d.events.contains(&Event::StartTls));
    assert!(d.events.contains(&Event::Discarded { bytes: 36 }));
    // Still nothing after more plaintext, until the handshake is done.
    assert_eq!(d.send(b"NOOP\r\n"), "");
    d.session.tls_established(d.now, info());
    assert!(d.session.is_tls());
    assert_eq!(d.drain(), "", "the client speaks first after TLS");
    // The EHLO before TLS is forgotten (RFC 3207 §4.2).
    let out = d.send(b"MAIL FROM:<x@sender.example>\r\n");
    assert!(out.starts_with("503 5.5.1"), "{out}");
    let out = d.send(b"EHLO c\r\n");
    assert!(!out.contains("STARTTLS"), "{out}");
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n"), "{out}");
    let out = d.send(b"STARTTLS\r\n");
    assert!(out.starts_with("503 5.5.1"), "{out}");
}

#[test]
fn a_partial_line_before_starttls_does_not_survive_it() {
    let mut d = starttls_driver(ListenerKind::Smtp, "192.0.2.9");
    d.send(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<x@");
    d.session.tls_established(d.now, info());
    let out = d.send(b"y.example>\r\n");
    assert!(out.starts_with("500 5.5.1 Command unrecognized"), "{out}");
}

#[test]
fn starttls_is_refused_when_not_offered_or_mid_transaction() {
    let mut d = Driver::new();
    let out = d.send(b"EHLO c\r\n");
    assert!(!out.contains("STARTTLS"));
    assert!(d.send(b"STARTTLS\r\n").starts_with("502 5.5.1"));
    let mut d = starttls_driver(ListenerKind::Smtp, "127.0.0.1");
    d.send(b"EHLO c\r\nMAIL FROM:<x@sender.example>\r\n");
    assert!(d.send(b"STARTTLS\r\n").starts_with("503 5.5.1"));
}

#[test]
fn a_failed_handshake_closes_without_reply() {
    let mut d = starttls_driver(ListenerKind::Smtp, "127.0.0.1");
    d.send(b"EHLO c\r\nSTARTTLS\r\n");
    d.session.tls_failed(d.now);
    assert_eq!(d.drain(), "");
    assert!(d.session.is_closed());
    assert!(d.events.contains(&Event::Closed(CloseReason::TlsFailed)));
}

#[test]
fn the_handshake_must_finish_within_the_command_timeout() {
    let mut d = starttls_driver(ListenerKind::Smtp, "127.0.0.1");
    d.send(b"EHLO c\r\nSTARTTLS\r\n");
    d.advance(Duration::from_secs(301));
    assert!(d.session.is_closed());
}

#[test]
fn auth_plain_asks_the_front_end_and_answers_235() {
    let d = alice();
    assert_eq!(
        asked(&d),
        vec![Question::Auth {
            user: "alice@example.test".into(),
            password: Secret("secret".into()),
            mechanism: "PLAIN",
        }]
    );
    assert!(d.events.contains(&Event::Authenticated {
        user: "alice@example.test".into(),
        mechanism: "PLAIN"
    }));
    assert_eq!(format!("{:?}", Secret("x".into())), "Secret(..)");
}

#[test]
fn auth_login_takes_two_challenges() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    let out = d.send(b"EHLO c\r\n");
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n"), "{out}");
    assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    // alice@example.test
    assert_eq!(
        d.send(b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n"),
        "334 UGFzc3dvcmQ6\r\n"
    );
    // secret
    d.answers
        .push_back(Err(RefuseReason::AuthFailed("alice".into())));
    assert_eq!(
        d.send(b"c2VjcmV0\r\n"),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert!(matches!(
        &asked(&d)[..],
        [Question::Auth {
            mechanism: "LOGIN",
            ..
        }]
    ));
}

#[test]
fn auth_plain_without_initial_response_gets_an_empty_challenge() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    d.send(b"EHLO c\r\n");
    assert_eq!(d.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    let out = d.send(format!("{ALICE_PLAIN}\r\n").as_bytes());
    assert!(out.starts_with("235 "), "{out}");
}

#[test]
fn auth_errors_have_their_codes() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    d.send(b"EHLO c\r\n");
    assert!(d.send(b"AUTH CRAM-MD5\r\n").starts_with("504 5.5.4 "));
    assert!(d
        .send(b"AUTH PLAIN !!!notbase64\r\n")
        .starts_with("501 5.5.2 "));
    // Two NULs are required.
    assert!(d.send(b"AUTH PLAIN YWxpY2U=\r\n").starts_with("501 5.5.2 "));
    d.send(b"AUTH LOGIN\r\n");
    assert!(d.send(b"*\r\n").starts_with("501 5.7.0 "));
    // After the cancel, commands are commands again.
    assert!(d.send(b"NOOP\r\n").starts_with("250 "));
    assert_eq!(d.answers.len(), 0, "nothing was asked: {:?}", asked(&d));
    assert!(asked(&d).is_empty());
}

#[test]
fn auth_unavailable_is_454_and_too_many_failures_is_421() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    d.send(b"EHLO c\r\n");
    d.answers
        .push_back(Err(RefuseReason::AuthUnavailable("users file".into())));
    let out = d.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
    assert!(out.starts_with("454 4.7.0 "), "{out}");
    let out = d.send(b"MAIL FROM:<alice@example.test>\r\n");
    assert!(out.starts_with("530 5.7.0 "), "fails closed: {out}");
    d.answers
        .push_back(Err(RefuseReason::AuthTooManyFailures("ip".into())));
    let out = d.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
    assert!(out.starts_with("421 4.7.0 "), "{out}");
    assert!(d.session.is_closed());
}

#[test]
fn auth_from_afar_needs_tls_even_on_submission() {
    let mut d = starttls_driver(ListenerKind::Submission, "192.0.2.9");
    let out = d.send(b"EHLO c\r\n");
    assert!(!out.contains("AUTH"), "{out}");
    assert!(d
        .send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes())
        .starts_with("538 "));
    d.send(b"STARTTLS\r\n");
    d.session.tls_established(d.now, info());
    let out = d.send(format!("EHLO c\r\nAUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
    assert!(
        out.ends_with("235 2.7.0 Authentication successful\r\n"),
        "{out}"
    );
    // An authenticated client relays.
    let out = d.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<carol@outside.example>\r\n");
    assert!(out.ends_with("250 2.1.5 Recipient ok\r\n"), "{out}");
    d.send(b"DATA\r\n");
    d.send(b"From: alice@example.test\r\n\r\nhi\r\n.\r\n");
    let body = String::from_utf8(d.body.clone()).unwrap();
    assert!(body.contains(" with ESMTPSA id Q1"), "{body}");
}

#[test]
fn an_authenticated_user_sends_only_as_herself_or_her_aliases() {
    let mut d = alice();
    let out = d.send(b"MAIL FROM:<bob@example.test>\r\n");
    assert_eq!(
        out,
        "553 5.7.1 Sender address not owned by authenticated user\r\n"
    );
    let out = d.send(b"MAIL FROM:<sales@example.test>\r\n");
    assert!(out.starts_with("250 "), "{out}");
    assert!(asked(&d).contains(&Question::UserRate {
        user: "alice@example.test".into()
    }));
}

#[test]
fn the_user_rate_refuses_mail_with_451() {
    let mut d = alice();
    d.answers.push_back(Err(RefuseReason::UserRateExceeded {
        user: "alice@example.test".into(),
        count: 100,
        per_secs: 3600,
    }));
    let out = d.send(b"MAIL FROM:<alice@example.test>\r\n");
    assert!(out.starts_with("451 4.7.1 "), "{out}");
}

fn submit(d: &mut Driver, message: &str) -> String {
    d.body.clear();
    d.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<carol@outside.example>\r\nDATA\r\n");
    d.send(message.as_bytes())
}

#[test]
fn a_spoofed_from_header_is_refused_at_end_of_data() {
    let mut d = alice();
    let out = submit(
        &mut d,
        "From: Bob <bob@example.test>\r\nSubject: hi\r\n\r\nbody\r\n.\r\n",
    );
    assert_eq!(
        out,
        "553 5.7.1 Sender address not owned by authenticated user\r\n"
    );
    assert!(d.events.contains(&Event::DataDiscarded));
    assert!(d.body.is_empty(), "nothing reached the spool");
    let out = submit(
        &mut d,
        "From: \"Sales\" <sales@example.test>\r\nSender: alice@example.test\r\n\r\nbody\r\n.\r\n",
    );
    assert!(out.starts_with("250 2.0.0 Ok: queued as Q1"), "{out}");
}

#[test]
fn message_id_and_date_are_added_when_missing() {
    let mut d = alice();
    submit(
        &mut d,
        "From: alice@example.test\r\nSubject: hi\r\n\r\nbody\r\n.\r\n",
    );
    let body = String::from_utf8(d.body.clone()).unwrap();
    assert!(
        body.contains("by mail.example.test with ESMTPA id Q1"),
        "{body}"
    );
    let client = &body[body.find("From:").unwrap()..];
    assert_eq!(
        client,
        "From: alice@example.test\r\nSubject: hi\r\nMessage-ID: <Q1@mail.example.test>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n\r\nbody\r\n"
    );
    submit(
        &mut d,
        "Date: Tue, 24 Nov 2026 06:15:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n.\r\n",
    );
    let body = String::from_utf8(d.body.clone()).unwrap();
    assert_eq!(body.matches("Message-ID").count(), 1, "{body}");
    assert_eq!(body.matches("Date:").count(), 1, "{body}");
}

#[test]
fn a_huge_header_block_is_released_not_held_forever() {
    let mut d = alice();
    let mut message = String::from("From: alice@example.test\r\n");
    for i in 0..3000 {
        message.push_str(&format!("X-Filler-{i}: {}\r\n", "x".repeat(40)));
    }
    message.push_str("\r\nbody\r\n.\r\n");
    let out = submit(&mut d, &message);
    assert!(out.starts_with("250 "), "{out}");
    assert!(String::from_utf8_lossy(&d.body).contains("Message-ID: <Q1@mail.example.test>"));
}

#[test]
fn unauthenticated_mail_is_not_touched() {
    let mut d = Driver::new();
    d.send(TX);
    d.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n");
    let body = String::from_utf8(d.body.clone()).unwrap();
    assert!(!body.contains("Message-ID"), "{body}");
}

#[test]
fn auth_lines_may_be_12288_octets_and_other_commands_512() {
    let mut d = Driver::on(ListenerKind::Submission, "127.0.0.1", |_| {});
    d.send(b"EHLO c\r\n");
    // A NOOP over 512 octets is refused, as before.
    let noop = format!("NOOP {}\r\n", "x".repeat(600));
    assert!(d.send(noop.as_bytes()).starts_with("500 "), "long NOOP");
    // An AUTH PLAIN with a long password (RFC 4954 §4: lines up to 12288).
    let long = format!("\0alice@example.test\0{}", "p".repeat(3000));
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(long.as_bytes())
    };
    assert!(b64.len() > 4000);
    let out = d.send(format!("AUTH PLAIN {b64}\r\n").as_bytes());
    assert!(out.starts_with("235 "), "{out}");
    assert!(matches!(
        &asked(&d)[..],
        [Question::Auth { password, .. }] if password.0.len() == 3000
    ));
}
