//! The session-level defences over real TCP, against both binaries: the
//! connection limits (a flood gets 421 4.7.0 before any command), greet
//! pause and early talkers, the bad-recipient throttle (timings grow, then
//! 421), the transaction limit. Each refusal must be in the log with its
//! reason. The test client is 127.0.0.1, so tests that need an untrusted
//! client empty `relay.trusted_networks`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::raw::{overrides, untrusted, RawClient as Raw};
use hato_spec_tests::server::{Binary, DataDir, Server};

fn start(binary: Binary, overrides: &[(String, String)]) -> Server {
    let data = DataDir::new("defences").unwrap();
    Server::start_with(binary, data, overrides).unwrap()
}

fn flood(binary: Binary, limits: &[(&str, &str)], admitted: usize, reply: &str, reason: &str) {
    let server = start(binary, &overrides(limits));
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut held: Vec<Raw> = (0..admitted).map(|_| Raw::connect(addr)).collect();
    for c in &mut held {
        assert!(
            c.line().starts_with("220 "),
            "the first {admitted} are served"
        );
    }
    // One more: 421 before any command is read, then close.
    let mut over = Raw::connect(addr);
    assert_eq!(over.line(), reply);
    assert!(over.closed());
    // A client that leaves frees its slot.
    held[0].send("QUIT");
    assert!(held[0].line().starts_with("221 "));
    drop(held.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Raw::connect(addr);
        let greeting = again.line();
        if greeting.starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {greeting}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !server.wait_refusals(reason, 1).is_empty(),
        "{}",
        server.log_text()
    );
}

fn connection_flood_per_host(binary: Binary) {
    flood(
        binary,
        &[("limits.max_connections_per_host", "3")],
        3,
        "421 4.7.0 Too many connections from your address, try again later",
        "too many connections from this address (limit 3)",
    );
}

fn connection_flood_global(binary: Binary) {
    flood(
        binary,
        &[("limits.max_connections", "2")],
        2,
        "421 4.7.0 Too many connections, try again later",
        "too many connections (limit 2)",
    );
}

fn greet_pause_and_early_talker(binary: Binary) {
    let server = start(
        binary,
        &overrides(&[
            ("relay.trusted_networks", "[]"),
            ("limits.greet_pause", "\"1s\""),
        ]),
    );
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let started = Instant::now();
    let mut patient = Raw::connect(addr);
    assert!(patient.line().starts_with("220 "));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "greeting after {waited:?}"
    );
    let mut talker = Raw::connect(addr);
    talker.send("EHLO spam.example");
    assert_eq!(
        talker.line(),
        "554 5.5.0 Protocol error: you talked before the greeting"
    );
    assert!(talker.closed());
    assert_eq!(
        server
            .wait_refusals("client talked before the greeting", 1)
            .len(),
        1,
        "{}",
        server.log_text()
    );
}

fn dictionary_attack_is_throttled(binary: Binary) {
    let overrides = untrusted(&[
        ("limits.bad_recipients_delay_after", "1"),
        ("limits.bad_recipients_limit", "4"),
    ]);
    let server = start(binary, &overrides);
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::connect(addr);
    assert!(c.line().starts_with("220 "));
    c.send("EHLO harvester.example");
    assert!(c.line().starts_with("250 "));
    c.send("MAIL FROM:<h@harvester.example>");
    assert!(c.line().starts_with("250 "));
    let mut took = Vec::new();
    for user in ["aaron", "abby", "adam"] {
        let t = Instant::now();
        c.send(&format!("RCPT TO:<{user}@example.test>"));
        assert!(c.line().starts_with("550 5.1.1"), "{user}");
        took.push(t.elapsed());
    }
    // First answer at once, then held 1 s, then 2 s.
    assert!(took[0] < Duration::from_millis(500), "{took:?}");
    assert!(
        took[1] >= Duration::from_millis(950) && took[1] < Duration::from_millis(1900),
        "{took:?}"
    );
    assert!(took[2] >= Duration::from_millis(1950), "{took:?}");
    c.send("RCPT TO:<alan@example.test>");
    assert_eq!(
        c.line(),
        "421 4.7.0 Too many unknown recipients, closing connection"
    );
    assert!(c.closed());
    let log = server.log_text();
    assert_eq!(server.wait_refusals("harvest attempt", 1).len(), 1, "{log}");
    assert_eq!(
        server.wait_refusals("unknown local user", 3).len(),
        3,
        "{log}"
    );
    // The penalised address is refused at connect for a while.
    std::thread::sleep(Duration::from_millis(200));
    let mut next = Raw::connect(addr);
    let greeting = next.line();
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
}

fn transactions_per_connection(binary: Binary) {
    let server = start(binary, &overrides(&[("limits.max_transactions", "2")]));
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::connect(addr);
    assert!(c.line().starts_with("220 "));
    c.send("HELO client.example");
    assert!(c.line().starts_with("250 "));
    for _ in 0..2 {
        c.send("MAIL FROM:<a@sender.example>");
        assert!(c.line().starts_with("250 "));
        c.send("RSET");
        assert!(c.line().starts_with("250 "));
    }
    c.send("MAIL FROM:<a@sender.example>");
    assert_eq!(
        c.line(),
        "421 4.7.0 Too many messages in one connection; reconnect to send more"
    );
    assert!(c.closed());
    assert_eq!(
        server
            .wait_refusals("too many transactions in connection (limit 2)", 1)
            .len(),
        1,
        "{}",
        server.log_text()
    );
}

hato_spec_tests::both_binaries!(
    connection_flood_per_host,
    connection_flood_global,
    greet_pause_and_early_talker,
    dictionary_attack_is_throttled,
    transactions_per_connection,
);
