//! Property tests of the server session (DESIGN.md §6.2): it never panics,
//! it does not care how the input is cut into reads, and every reply it
//! sends is RFC 5321 §4.2 shaped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use hato_core::config::Config;
use hato_core::directory::Directory;
use hato_core::policy::ListenerKind;
use hato_core::smtp::server::{Event, MAX_COMMAND_LINE};
use hato_spec_tests::core_run::{Driver, CLIENT};
use hato_spec_tests::setup::{HOSTNAME, USERS};
use proptest::prelude::*;

/// Small limits (but for the message size, given), so that random input
/// reaches them.
fn config(max_message_size: u64) -> Arc<Config> {
    let mut cfg = Config::defaults(HOSTNAME);
    cfg.limits.max_message_size = max_message_size;
    cfg.limits.max_recipients = 4;
    cfg.timeouts.command = Duration::from_secs(10);
    cfg.timeouts.data = Duration::from_secs(10);
    Arc::new(cfg)
}

/// The limit most tests use, small so that random input reaches it.
const SMALL: u64 = 300;

fn driver(listener: ListenerKind, max_message_size: u64) -> Driver {
    let dir = Arc::new(Directory::parse(USERS).unwrap());
    Driver::new(
        config(max_message_size),
        dir,
        listener,
        CLIENT.parse().unwrap(),
    )
}

/// Pieces that random input is made of: whole commands, line-ending
/// fragments, dots, NULs, data lines, long lines and random bytes.
fn token() -> impl Strategy<Value = Vec<u8>> {
    const WORDS: &[&[u8]] = &[
        b"EHLO client.example\r\n",
        b"HELO client.example\r\n",
        b"MAIL FROM:<sender@remote.example>\r\n",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
        b"MAIL FROM:<sender@remote.example> SIZE=9999\r\n",
        b"RCPT TO:<alice@example.test>\r\n",
        b"RCPT TO:<mallory@example.test>\r\n",
        b"RCPT TO:<bob@outside.example>\r\n",
        b"RCPT TO:<Postmaster>\r\n",
        b"DATA\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"VRFY alice\r\n",
        b"EXPN list\r\n",
        b"HELP\r\n",
        b"BDAT 10 LAST\r\n",
        b"Subject: x\r\n",
        b"body line\r\n",
        b"\r\n.\r\n",
        b".\r\n",
        b"..\r\n",
        b"\r\n",
        b"\r",
        b"\n",
        b".",
        b"\0",
        b"\n.\n",
        b"\r.\r",
        b"\xff\xfe",
    ];
    prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(<[u8]>::to_vec),
        2 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => (0usize..700).prop_map(|n| vec![b'a'; n]),
        1 => Just(b"QUIT\r\n".to_vec()),
    ]
}

/// Random input (half the time after a valid start of a transaction, with
/// now and then a piece larger than the session's 64K body buffer) and the
/// cut points that split it into reads.
fn input_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    const START: &[u8] =
        b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n";
    let piece = prop_oneof![
        20 => token(),
        1 => Just(vec![b'x'; 70_000]),
    ];
    (
        prop_oneof![Just(Vec::new()), Just(START.to_vec())],
        proptest::collection::vec(piece, 0..60),
    )
        .prop_map(|(start, tokens)| [start, tokens.concat()].concat())
        .prop_flat_map(|input| {
            let len = input.len();
            let cuts = proptest::collection::vec(0..=len, 0..12);
            (Just(input), cuts)
        })
}

fn chunks<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(&input[start..c]);
        start = c;
    }
    out
}

/// Checks RFC 5321 §4.2 shape: every line is `[2-5][0-9][0-9][ -]text`,
/// ends with CRLF, has no other CR or LF, is at most 512 octets, and the
/// lines of one multi-line reply share their code.
fn check_replies(out: &[u8]) -> Result<(), TestCaseError> {
    let mut rest = out;
    let mut open_code: Option<&[u8]> = None;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n");
        prop_assert!(
            end.is_some(),
            "reply without CRLF: {:?}",
            String::from_utf8_lossy(rest)
        );
        let end = end.unwrap();
        let line = &rest[..end];
        let shown = String::from_utf8_lossy(line).into_owned();
        prop_assert!(
            end + 2 <= MAX_COMMAND_LINE,
            "reply line over 512 octets: {shown:?}"
        );
        prop_assert!(line.len() >= 4, "short reply line {shown:?}");
        prop_assert!((b'2'..=b'5').contains(&line[0]), "bad code {shown:?}");
        prop_assert!(
            line[1].is_ascii_digit() && line[2].is_ascii_digit(),
            "bad code {shown:?}"
        );
        prop_assert!(
            line[3] == b' ' || line[3] == b'-',
            "bad separator {shown:?}"
        );
        prop_assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "bare CR/LF {shown:?}"
        );
        if let Some(code) = open_code {
            prop_assert_eq!(code, &line[..3], "code changes inside a multi-line reply");
        }
        open_code = (line[3] == b'-').then(|| &line[..3]);
        rest = &rest[end + 2..];
    }
    prop_assert!(
        open_code.is_none(),
        "multi-line reply without its last line"
    );
    Ok(())
}

/// What a run produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    transmitted: Vec<u8>,
    events: Vec<Event>,
    bodies: Vec<Vec<u8>>,
    closed: bool,
}

fn run(input: &[u8], cuts: &[usize], max_message_size: u64) -> Outcome {
    let mut d = driver(ListenerKind::Smtp, max_message_size);
    let mut transmitted = d.take_output();
    for chunk in chunks(input, cuts) {
        d.feed(chunk);
        transmitted.extend(d.take_output());
    }
    d.eof();
    transmitted.extend(d.take_output());
    assert!(d.errors.is_empty(), "driver misuse: {:?}", d.errors);
    Outcome {
        transmitted,
        events: d.events,
        bodies: d.bodies,
        closed: d.session.is_closed(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary reads, pauses (timeouts) and an EOF never panic, the session
    /// always takes all input or closes, and every reply is well formed.
    #[test]
    fn session_survives_arbitrary_input(
        steps in proptest::collection::vec(
            prop_oneof![
                6 => token().prop_map(Ok),
                1 => (0u64..15).prop_map(|s| Err(Duration::from_secs(s))),
            ],
            0..80,
        ),
        listener in prop_oneof![Just(ListenerKind::Smtp), Just(ListenerKind::Submission)],
    ) {
        let mut d = driver(listener, SMALL);
        let mut out = d.take_output();
        for step in steps {
            match step {
                Ok(bytes) => d.feed(&bytes),
                Err(pause) => d.wait(pause),
            }
            out.extend(d.take_output());
            prop_assert!(
                d.pending.is_empty() || d.session.is_closed(),
                "the session stopped taking input while open"
            );
        }
        d.eof();
        out.extend(d.take_output());
        prop_assert!(d.session.is_closed());
        prop_assert!(d.errors.is_empty(), "driver misuse: {:?}", d.errors);
        check_replies(&out)?;
    }

    /// Arbitrary bytes in arbitrary reads never panic either.
    #[test]
    fn session_survives_random_bytes(
        reads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
    ) {
        let mut d = driver(ListenerKind::Smtp, SMALL);
        let mut out = d.take_output();
        for r in reads {
            d.feed(&r);
            out.extend(d.take_output());
        }
        d.eof();
        out.extend(d.take_output());
        check_replies(&out)?;
    }

    /// Feeding input whole or cut into arbitrary reads gives the same bytes
    /// out, the same events and the same message bodies.
    #[test]
    fn output_does_not_depend_on_how_input_is_split(
        (input, cuts) in input_and_cuts(),
        limit in prop_oneof![Just(SMALL), Just(1u64 << 20)],
    ) {
        let whole = run(&input, &[], limit);
        let split = run(&input, &cuts, limit);
        check_replies(&whole.transmitted)?;
        prop_assert_eq!(
            String::from_utf8_lossy(&whole.transmitted),
            String::from_utf8_lossy(&split.transmitted)
        );
        prop_assert_eq!(&whole.events, &split.events);
        prop_assert_eq!(&whole.bodies, &split.bodies);
        prop_assert_eq!(whole.closed, split.closed);
    }

    /// Any text the client dot-stuffs comes out unstuffed and whole, queued
    /// once, however the data is cut into reads (RFC 5321 §4.5.2).
    #[test]
    fn dot_stuffing_round_trips(
        lines in proptest::collection::vec("[.]{0,3}[ -~]{0,40}", 0..30),
        cuts in proptest::collection::vec(0usize..4000, 0..10),
    ) {
        let mut message = Vec::new();
        let mut wire = b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".to_vec();
        for line in &lines {
            message.extend_from_slice(line.as_bytes());
            message.extend_from_slice(b"\r\n");
            if line.starts_with('.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\nQUIT\r\n");
        let mut d = driver(ListenerKind::Smtp, 1 << 20);
        let mut out = d.take_output();
        for chunk in chunks(&wire, &cuts) {
            d.feed(chunk);
            out.extend(d.take_output());
        }
        check_replies(&out)?;
        prop_assert_eq!(d.bodies.len(), 1);
        prop_assert!(d.received[0].starts_with(b"Received: from c.example ([127.0.0.1])\r\n"));
        prop_assert!(d.received[0].ends_with(b"\r\n"));
        prop_assert_eq!(
            String::from_utf8_lossy(&d.bodies[0]),
            String::from_utf8_lossy(&message)
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        prop_assert_eq!(text.matches("queued as").count(), 1);
        prop_assert!(d.session.is_closed(), "QUIT after the data was not seen: {}", text);
    }
}
