//! The defences that keep state shared by all sessions and across restarts
//! (`data_dir/state/policy`), over real TCP against both binaries: the
//! per-host message rate (and that it survives a graceful restart), spam
//! traps blocking the client's address, `deny.from` by address (refused at
//! connect) and by name (refused at HELO), greylisting, and duplicate
//! suppression by Message-ID. Every refusal must be in the log with its
//! reason.
//!
//! The test client connects from 127.0.0.1, which is in the default
//! `relay.trusted_networks`; the session spares trusted clients the rate
//! and greylisting questions, so those tests empty the list (and turn the
//! greeting pause, which applies to untrusted clients, off).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::raw::{overrides, untrusted, RawClient as Raw};
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// Waits until the queue is empty and `address` holds `n` messages.
fn wait_delivered(data: &DataDir, server: &Server, address: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = data.delivered(address).unwrap().len();
        if got == n && data.queue_files().unwrap().is_empty() {
            return;
        }
        assert!(
            got <= n && Instant::now() < deadline,
            "{address}: {got} delivered, want {n}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const RATE_REASON: &str = "message rate over 3 per 60s from this address";

fn rate_limit_survives_a_restart(binary: Binary) {
    let data = DataDir::new("rate").unwrap();
    let config = untrusted(&[("limits.messages_per_host", "\"3/1m\"")]);
    let mut server = Server::start_with(binary, data.clone(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::greeted(addr);
    assert!(c.cmd("EHLO bomber.example").starts_with("250 "));
    for i in 0..3 {
        let reply = c.cmd("MAIL FROM:<b@bomber.example>");
        assert!(reply.starts_with("250 "), "message {i}: {reply}");
        assert!(c.cmd("RSET").starts_with("250 "));
    }
    assert_eq!(
        c.cmd("MAIL FROM:<b@bomber.example>"),
        "451 4.7.1 Too many messages from your address; slow down and try again later"
    );
    // Another connection from the same address: still over the rate.
    let mut other = Raw::greeted(addr);
    assert!(other.cmd("HELO bomber.example").starts_with("250 "));
    assert!(other
        .cmd("MAIL FROM:<b@bomber.example>")
        .starts_with("451 4.7.1"));
    let refused = server.wait_refusals(RATE_REASON, 2);
    assert_eq!(refused.len(), 2, "{}", server.log_text());
    assert_eq!(log_value(&refused[0], "stage"), Some("mail"));
    assert_eq!(log_value(&refused[0], "code"), Some("451"));
    drop((c, other));

    let status = server.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status}");
    let saved = std::fs::read_to_string(data.path().join("state/policy")).unwrap();
    assert!(saved.starts_with("hato-policy 1\n"), "{saved}");
    assert!(saved.contains("\nrate 127.0.0.1 3 60 "), "{saved}");

    // The cool-down (1m) holds across the restart.
    let server = Server::start_with(binary, data.clone(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::greeted(addr);
    assert!(c.cmd("EHLO bomber.example").starts_with("250 "));
    assert!(c
        .cmd("MAIL FROM:<b@bomber.example>")
        .starts_with("451 4.7.1"));
    assert_eq!(
        server.wait_refusals(RATE_REASON, 1).len(),
        1,
        "{}",
        server.log_text()
    );
    let load = server.events("policy-state");
    assert_eq!(load.len(), 1, "{}", server.log_text());
    assert_eq!(log_value(&load[0], "loaded"), Some("1"), "{}", load[0]);
}

fn spam_trap_blocks_the_client(binary: Binary) {
    let config = untrusted(&[("deny.spam_traps", "[\"trap@example.test\"]")]);
    let server = Server::start_with(binary, DataDir::new("trap").unwrap(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::greeted(addr);
    assert!(c.cmd("EHLO spammer.example").starts_with("250 "));
    assert!(c.cmd("MAIL FROM:<s@spammer.example>").starts_with("250 "));
    let reply = c.cmd("RCPT TO:<trap@example.test>");
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    let traps = server.wait_events("trap", 1);
    assert_eq!(traps.len(), 1, "{}", server.log_text());
    assert_eq!(log_value(&traps[0], "trap"), Some("trap@example.test"));
    assert_eq!(log_value(&traps[0], "peer"), Some("127.0.0.1"));
    assert_eq!(log_value(&traps[0], "for"), Some("86400s"));
    drop(c);

    // The next connection is refused before any command.
    let mut next = Raw::connect(addr);
    assert_eq!(
        next.line(),
        "554 5.7.1 Your address is blocked for sending to a spam trap"
    );
    assert!(next.closed());
    let refused = server.wait_refusals("address blocked after writing to a spam trap", 1);
    assert_eq!(refused.len(), 1, "{}", server.log_text());
    assert_eq!(log_value(&refused[0], "stage"), Some("connect"));
    assert_eq!(log_value(&refused[0], "code"), Some("554"));
}

fn deny_from_network_refuses_at_connect(binary: Binary) {
    let config = overrides(&[("deny.from", "[\"192.0.2.0/24\", \"127.0.0.0/8\"]")]);
    let server = Server::start_with(binary, DataDir::new("deny-net").unwrap(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::connect(addr);
    assert_eq!(c.line(), "554 5.7.1 Access denied");
    assert!(c.closed());
    let refused = server.wait_refusals("client denied by deny.from entry 127.0.0.0/8", 1);
    assert_eq!(refused.len(), 1, "{}", server.log_text());
    assert_eq!(log_value(&refused[0], "stage"), Some("connect"));
    assert!(
        server.events("connect").is_empty(),
        "no session was started"
    );
}

fn deny_from_name_refuses_at_helo(binary: Binary) {
    let config = overrides(&[("deny.from", "[\"spam.example\", \"192.0.2.0/24\"]")]);
    let server = Server::start_with(binary, DataDir::new("deny-name").unwrap(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut c = Raw::greeted(addr);
    for name in ["spam.example", "MX1.Spam.Example."] {
        let reply = c.cmd(&format!("EHLO {name}"));
        assert_eq!(reply, "554 5.7.1 Access denied", "{name}");
    }
    // Neither a lookalike nor the parent domain is denied.
    assert!(c.cmd("EHLO notspam.example").starts_with("250 "));
    let refused = server.wait_refusals("client denied by deny.from entry spam.example", 2);
    assert_eq!(refused.len(), 2, "{}", server.log_text());
    assert_eq!(log_value(&refused[0], "stage"), Some("helo"));
}

fn greylisting_defers_then_passes(binary: Binary) {
    let config = untrusted(&[
        ("greylisting.enabled", "true"),
        ("greylisting.delay", "\"1s\""),
    ]);
    let data = DataDir::new("grey").unwrap();
    let server = Server::start_with(binary, data.clone(), &config).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let attempt = || {
        let mut c = Raw::greeted(addr);
        assert!(c.cmd("EHLO mta.sender.example").starts_with("250 "));
        assert!(c.cmd("MAIL FROM:<news@sender.example>").starts_with("250 "));
        (c.cmd(&format!("RCPT TO:<{ALICE}>")), c)
    };
    let first = Instant::now();
    let (reply, _) = attempt();
    assert_eq!(reply, "451 4.7.1 Greylisted: please try again later");
    let (reply, _) = attempt();
    assert!(reply.starts_with("451 4.7.1"), "at once again: {reply}");
    // Past the delay (whole seconds: at most 2 s later) the retry passes.
    std::thread::sleep(Duration::from_millis(1000));
    let (mut reply, mut c) = attempt();
    while reply.starts_with("451 ") && first.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
        (reply, c) = attempt();
    }
    assert!(reply.starts_with("250 "), "{reply}\n{}", server.log_text());
    assert!(first.elapsed() >= Duration::from_secs(1));
    assert_eq!(c.cmd("DATA").get(..3), Some("354"));
    let end = c.cmd("Subject: greylisted\r\n\r\nhello\r\n.");
    assert!(end.starts_with("250 "), "{end}");
    wait_delivered(&data, &server, ALICE, 1);
    let refused = server.wait_refusals(
        "greylisted (first attempt of this client, sender and recipient)",
        2,
    );
    assert!(refused.len() >= 2, "{}", server.log_text());
    assert_eq!(log_value(&refused[0], "stage"), Some("rcpt"));
    // Auto-allowed after that success: no delay for the next message.
    let (reply, _) = attempt();
    assert!(reply.starts_with("250 "), "{reply}");
}

fn greylisting_spares_trusted_clients(binary: Binary) {
    let config = overrides(&[("greylisting.enabled", "true")]);
    let server =
        Server::start_with(binary, DataDir::new("grey-trusted").unwrap(), &config).unwrap();
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("lan-host.example").unwrap();
    c.send_mail("a@lan.example", &[ALICE], b"Subject: x\r\n\r\nx\r\n")
        .unwrap();
    assert!(server.events("refuse").is_empty(), "{}", server.log_text());
}

fn duplicates_are_delivered_once(binary: Binary) {
    let data = DataDir::new("dup").unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("mua.example").unwrap();
    let with_id = b"From: <a@mua.example>\r\nMessage-ID: <bomb-1@mua.example>\r\n\
                    Subject: again\r\n\r\nsame message\r\n";
    c.send_mail("a@mua.example", &[ALICE], with_id).unwrap();
    wait_delivered(&data, &server, ALICE, 1);
    // The copy is accepted (250), dropped for alice, delivered to bob.
    let copy = c
        .send_mail("a@mua.example", &[ALICE, BOB], with_id)
        .unwrap();
    let copy_id = copy.queue_id().unwrap().to_owned();
    // The same address twice in one message (Bcc repeated): one copy.
    c.send_mail(
        "a@mua.example",
        &[BOB, BOB],
        b"Message-ID: <bomb-2@mua.example>\r\n\r\nx\r\n",
    )
    .unwrap();
    // Without a Message-ID nothing is suppressed.
    for _ in 0..2 {
        c.send_mail("a@mua.example", &[ALICE], b"Subject: no id\r\n\r\nx\r\n")
            .unwrap();
    }
    wait_delivered(&data, &server, ALICE, 3);
    wait_delivered(&data, &server, BOB, 2);
    let dups = server.wait_events("duplicate", 2);
    assert_eq!(dups.len(), 2, "{}", server.log_text());
    assert_eq!(log_value(&dups[0], "id"), Some(copy_id.as_str()));
    assert_eq!(log_value(&dups[0], "to"), Some("<alice@example.test>"));
    assert_eq!(
        log_value(&dups[0], "message_id"),
        Some("<bomb-1@mua.example>")
    );
    assert_eq!(log_value(&dups[1], "to"), Some("<bob@example.test>"));
    assert_eq!(
        log_value(&dups[1], "message_id"),
        Some("<bomb-2@mua.example>")
    );
}

hato_spec_tests::both_binaries!(
    rate_limit_survives_a_restart,
    spam_trap_blocks_the_client,
    deny_from_network_refuses_at_connect,
    deny_from_name_refuses_at_helo,
    greylisting_defers_then_passes,
    greylisting_spares_trusted_clients,
    duplicates_are_delivered_once,
);
