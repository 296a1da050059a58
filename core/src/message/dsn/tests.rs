use std::borrow::Cow;

use mailparse::MailHeaderMap as _;

use super::*;

const ORIGINAL: &[u8] = b"Received: from client.example ([192.0.2.1])\r\n\
    \tby mail.example.test with ESMTP id 0ORIGINAL0001;\r\n\
    \tTue, 24 Nov 2026 06:15:00 +0000\r\n\
    From: Bob <bob@example.test>\r\n\
    To: dave@partner.example\r\n\
    Subject: Quarterly figures\r\n\
    Message-ID: <q1@example.test>\r\n\
    \r\n\
    SECRET BODY LINE\r\n";

fn reply(code: u16, esc: Option<Enhanced>, text: &str) -> Reply {
    Reply {
        code,
        esc,
        text: Cow::Owned(text.to_owned()),
    }
}

fn input<'a>(kind: DsnKind, recipients: &'a [DsnRecipient<'a>]) -> DsnInput<'a> {
    DsnInput {
        kind,
        hostname: "mail.example.test",
        to: "bob@example.test",
        original_sender: "<bob@example.test>",
        queue_id: "0ORIGINAL0001",
        dsn_id: "0BOUNCE000001",
        arrival: UnixTime(1_795_500_900),
        now: UnixTime(1_795_501_000),
        retry_until: None,
        recipients,
        original_headers: ORIGINAL,
        boundary_seed: 0x1234,
    }
}

fn text(dsn: &Dsn) -> &str {
    std::str::from_utf8(&dsn.bytes).unwrap()
}

fn assert_well_formed(bytes: &[u8]) {
    // CRLF only, and no line over 998 octets.
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(bytes.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
}

/// Splits a `message/delivery-status` body into its blocks of fields.
fn status_blocks(body: &[u8]) -> Vec<Vec<mailparse::MailHeader<'_>>> {
    let mut blocks = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (headers, used) = mailparse::parse_headers(rest).unwrap();
        if headers.is_empty() {
            break;
        }
        blocks.push(headers);
        rest = &rest[used..];
    }
    blocks
}

#[test]
fn a_failure_report_parses_as_multipart_report_with_three_parts() {
    let refused = reply(
        550,
        Some(Enhanced(5, 1, 1)),
        "<dave@partner.example>: Recipient address rejected:\nUser unknown in local table",
    );
    let rcpts = [
        DsnRecipient {
            original: Some("<Dave@Partner.example>"),
            address: "dave@partner.example",
            reason: "The remote server refused the recipient.",
            status: None,
            remote: Some(RemoteFailure {
                mta: "mx1.partner.example",
                reply: &refused,
            }),
            last_attempt: Some(UnixTime(1_795_500_990)),
        },
        DsnRecipient {
            original: None,
            address: "erin@other.example",
            reason: "The domain other.example accepts no mail (null MX).",
            status: Some(Enhanced(5, 1, 10)),
            remote: None,
            last_attempt: None,
        },
    ];
    let dsn = compose(&input(DsnKind::Failure, &rcpts));
    assert_well_formed(&dsn.bytes);
    assert!(!dsn.body_8bit);
    assert_eq!(dsn.message_id, "<0BOUNCE000001@mail.example.test>");

    let mail = mailparse::parse_mail(&dsn.bytes).unwrap();
    let h = &mail.headers;
    assert_eq!(
        h.get_first_value("From").as_deref(),
        Some("Mail Delivery System <MAILER-DAEMON@mail.example.test>")
    );
    assert_eq!(
        h.get_first_value("To").as_deref(),
        Some("<bob@example.test>")
    );
    assert_eq!(
        h.get_first_value("Subject").as_deref(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(
        h.get_first_value("Date").as_deref(),
        Some("Tue, 24 Nov 2026 06:16:40 +0000")
    );
    assert_eq!(
        h.get_first_value("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(h.get_first_value("MIME-Version").as_deref(), Some("1.0"));
    assert_eq!(mail.ctype.mimetype, "multipart/report");
    assert_eq!(
        mail.ctype.params.get("report-type").map(String::as_str),
        Some("delivery-status")
    );
    assert_eq!(mail.subparts.len(), 3);

    let human = mail.subparts[0].get_body().unwrap();
    assert_eq!(mail.subparts[0].ctype.mimetype, "text/plain");
    for needle in [
        "<dave@partner.example>:",
        "The remote server refused the recipient.",
        "The server mx1.partner.example answered:",
        "550 5.1.1 <dave@partner.example>: Recipient address rejected: User",
        "<erin@other.example>:",
        "null MX",
        "0ORIGINAL0001",
    ] {
        assert!(human.contains(needle), "{needle} not in:\n{human}");
    }

    assert_eq!(mail.subparts[1].ctype.mimetype, "message/delivery-status");
    let raw = mail.subparts[1].get_body_raw().unwrap();
    let blocks = status_blocks(&raw);
    assert_eq!(blocks.len(), 3, "{}", String::from_utf8_lossy(&raw));
    let per_message = &blocks[0];
    assert_eq!(
        per_message.get_first_value("Reporting-MTA").as_deref(),
        Some("dns; mail.example.test")
    );
    assert_eq!(
        per_message.get_first_value("Arrival-Date").as_deref(),
        Some("Tue, 24 Nov 2026 06:15:00 +0000")
    );
    let dave = &blocks[1];
    assert_eq!(
        dave.get_first_value("Original-Recipient").as_deref(),
        Some("rfc822; Dave@Partner.example")
    );
    assert_eq!(
        dave.get_first_value("Final-Recipient").as_deref(),
        Some("rfc822; dave@partner.example")
    );
    assert_eq!(dave.get_first_value("Action").as_deref(), Some("failed"));
    assert_eq!(dave.get_first_value("Status").as_deref(), Some("5.1.1"));
    assert_eq!(
        dave.get_first_value("Remote-MTA").as_deref(),
        Some("dns; mx1.partner.example")
    );
    assert_eq!(
        dave.get_first_value("Diagnostic-Code").as_deref(),
        Some(
            "smtp; 550 5.1.1 <dave@partner.example>: Recipient address rejected: User unknown in local table"
        )
    );
    assert_eq!(
        dave.get_first_value("Last-Attempt-Date").as_deref(),
        Some("Tue, 24 Nov 2026 06:16:30 +0000")
    );
    let erin = &blocks[2];
    assert_eq!(erin.get_first_value("Original-Recipient"), None);
    assert_eq!(erin.get_first_value("Status").as_deref(), Some("5.1.10"));
    assert_eq!(erin.get_first_value("Diagnostic-Code"), None);

    assert_eq!(mail.subparts[2].ctype.mimetype, "text/rfc822-headers");
    let headers = mail.subparts[2].get_body_raw().unwrap();
    let (fields, _) = mailparse::parse_headers(&headers).unwrap();
    assert_eq!(
        fields.get_first_value("Subject").as_deref(),
        Some("Quarterly figures")
    );
    assert!(!text(&dsn).contains("SECRET BODY LINE"));
}

#[test]
fn a_delay_warning_says_delayed_and_when_retries_stop() {
    let busy = reply(451, None, "Try again later");
    let rcpts = [DsnRecipient {
        original: None,
        address: "dave@partner.example",
        reason: "The remote server asked to try later.",
        status: None,
        remote: Some(RemoteFailure {
            mta: "mx1.partner.example",
            reply: &busy,
        }),
        last_attempt: Some(UnixTime(1_795_500_990)),
    }];
    let mut i = input(DsnKind::Delay, &rcpts);
    i.retry_until = Some(UnixTime(1_795_932_900));
    let dsn = compose(&i);
    assert_well_formed(&dsn.bytes);
    let t = text(&dsn);
    assert!(t.contains("Subject: Delayed Mail (still being retried)\r\n"));
    assert!(t.contains("Action: delayed\r\n"));
    assert!(t.contains("Status: 4.3.0\r\n"), "derived from 451");
    assert!(t.contains("Diagnostic-Code: smtp; 451 Try again later\r\n"));
    assert!(t.contains("Will-Retry-Until: Sun, 29 Nov 2026 06:15:00 +0000\r\n"));
    assert!(t.contains("You do not need to send it again."));
}

#[test]
fn status_comes_from_the_given_code_then_the_reply_then_the_class() {
    let with_esc = reply(550, Some(Enhanced(5, 7, 1)), "no");
    let without = reply(552, None, "too big");
    let odd = reply(599, None, "?");
    let r = |status, reply: Option<&'static Reply>| DsnRecipient {
        original: None,
        address: "a@b",
        reason: "",
        status,
        remote: reply.map(|reply| RemoteFailure { mta: "m", reply }),
        last_attempt: None,
    };
    let with_esc: &'static Reply = Box::leak(Box::new(with_esc));
    let without: &'static Reply = Box::leak(Box::new(without));
    let odd: &'static Reply = Box::leak(Box::new(odd));
    let f = DsnKind::Failure;
    assert_eq!(
        status_of(f, &r(Some(Enhanced(5, 4, 4)), Some(with_esc))),
        Enhanced(5, 4, 4)
    );
    assert_eq!(status_of(f, &r(None, Some(with_esc))), Enhanced(5, 7, 1));
    assert_eq!(status_of(f, &r(None, Some(without))), Enhanced(5, 2, 2));
    assert_eq!(status_of(f, &r(None, Some(odd))), Enhanced(5, 0, 0));
    assert_eq!(status_of(f, &r(None, None)), Enhanced(5, 0, 0));
    assert_eq!(status_of(DsnKind::Delay, &r(None, None)), Enhanced(4, 0, 0));
    assert_eq!(status_from_code(421), Some(Enhanced(4, 4, 2)));
    assert_eq!(status_from_code(354), None);
}

#[test]
fn long_and_hostile_diagnostics_stay_in_their_field() {
    let long = format!(
        "{}\r\nBcc: injected@example.net\n{}",
        "blah ".repeat(400),
        "x".repeat(3000)
    );
    let hostile = reply(554, None, &long);
    let rcpts = [DsnRecipient {
        original: Some("<dave@partner.example>\r\nX-Injected: yes"),
        address: "dave@partner.example",
        reason: "refused\r\nX-Injected: yes",
        status: None,
        remote: Some(RemoteFailure {
            mta: "mx\r\nX-Injected: yes",
            reply: &hostile,
        }),
        last_attempt: None,
    }];
    let dsn = compose(&input(DsnKind::Failure, &rcpts));
    assert_well_formed(&dsn.bytes);
    let mail = mailparse::parse_mail(&dsn.bytes).unwrap();
    let raw = mail.subparts[1].get_body_raw().unwrap();
    let blocks = status_blocks(&raw);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].get_first_value("X-Injected"), None);
    assert_eq!(blocks[1].get_first_value("Bcc"), None);
    let diag = blocks[1].get_first_value("Diagnostic-Code").unwrap();
    assert!(diag.starts_with("smtp; 554 blah blah"));
    assert_eq!(
        diag.matches('x').count(),
        3000 + 1,
        "every x, and the one of example.net: {diag}"
    );
}

#[test]
fn utf8_addresses_use_the_xtext_form_and_mark_the_body_8bit() {
    let rcpts = [DsnRecipient {
        original: None,
        address: "jörg@bücher.example",
        reason: "no such user",
        status: Some(Enhanced(5, 1, 1)),
        remote: None,
        last_attempt: None,
    }];
    let mut i = input(DsnKind::Failure, &rcpts);
    i.original_headers = "Subject: Grüße\r\n\r\nbody".as_bytes();
    let dsn = compose(&i);
    assert_well_formed(&dsn.bytes);
    assert!(dsn.body_8bit);
    let t = text(&dsn);
    assert!(t.contains("Final-Recipient: utf-8; j\\x{F6}rg@b\\x{FC}cher.example\r\n"));
    assert!(t.contains("charset=utf-8"));
    assert!(t.contains("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 8bit"));
    let mail = mailparse::parse_mail(&dsn.bytes).unwrap();
    assert!(mail.subparts[0]
        .get_body()
        .unwrap()
        .contains("<jörg@bücher.example>:"));
}

#[test]
fn the_boundary_never_occurs_in_the_parts() {
    let seeded = "=_hato_dsn_0000000000001234_0";
    let headers = format!("Subject: {seeded}\r\nX-Also: --{seeded}--\r\n\r\n");
    let rcpts = [DsnRecipient {
        original: None,
        address: "a@b.example",
        reason: "r",
        status: None,
        remote: None,
        last_attempt: None,
    }];
    let mut i = input(DsnKind::Failure, &rcpts);
    i.original_headers = headers.as_bytes();
    let dsn = compose(&i);
    assert!(text(&dsn).contains("boundary=\"=_hato_dsn_0000000000001234_1\""));
    let mail = mailparse::parse_mail(&dsn.bytes).unwrap();
    assert_eq!(mail.subparts.len(), 3);
    let headers = mail.subparts[2].get_body_raw().unwrap();
    let (fields, _) = mailparse::parse_headers(&headers).unwrap();
    assert_eq!(fields.get_first_value("Subject").as_deref(), Some(seeded));
}

#[test]
fn the_header_block_is_cut_at_the_body_and_normalised() {
    assert_eq!(
        original_header_block(b"A: 1\nB: 2\r\n\tcont\r\n\r\nbody\r\n"),
        b"A: 1\r\nB: 2\r\n\tcont\r\n"
    );
    assert_eq!(original_header_block(b"A: 1"), b"A: 1\r\n");
    assert_eq!(original_header_block(b"A: \r1\r\n"), b"A:  1\r\n");
    let long = format!("X: {}\r\n\r\n", "y".repeat(2000));
    let block = original_header_block(long.as_bytes());
    assert!(block.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    assert_eq!(block.iter().filter(|&&b| b == b'y').count(), 2000);
}

#[test]
fn composing_is_deterministic() {
    let rcpts = [DsnRecipient {
        original: None,
        address: "a@b.example",
        reason: "r",
        status: None,
        remote: None,
        last_attempt: None,
    }];
    let a = compose(&input(DsnKind::Failure, &rcpts));
    let b = compose(&input(DsnKind::Failure, &rcpts));
    assert_eq!(a, b);
    let mut other = input(DsnKind::Failure, &rcpts);
    other.boundary_seed = 99;
    assert_ne!(compose(&other).bytes, a.bytes);
}

#[test]
fn bounces_go_to_the_sender_and_a_bounce_of_a_bounce_to_the_postmaster() {
    assert_eq!(
        should_bounce("<bob@example.test>"),
        BounceTarget::Sender("bob@example.test".into())
    );
    assert_eq!(
        should_bounce("bob@example.test"),
        BounceTarget::Sender("bob@example.test".into())
    );
    assert_eq!(
        should_bounce("<\"b o\"@example.test>"),
        BounceTarget::Sender("\"b o\"@example.test".into())
    );
    assert_eq!(should_bounce("<>"), BounceTarget::Postmaster);
    assert_eq!(should_bounce(""), BounceTarget::Postmaster);
    for unusable in ["<postmaster>", "<@x>", "<a@>", "<a@b\r\nc>", "<<a@b>>"] {
        assert_eq!(should_bounce(unusable), BounceTarget::None, "{unusable}");
    }
}
