//! Direct delivery, for `hato` and `hato-smol`: a small message to local
//! mailboxes only is in the Maildirs when the client reads the 250, and
//! never touches `queue/`; a message larger than one chunk takes the queue;
//! a Maildir that cannot be written sends the message to the queue with
//! the recipients already delivered marked done, and the local-delivery
//! role then delivers the rest, without a second copy for the others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn send(server: &Server, to: &[&str], body: &str) -> String {
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("client.example").unwrap();
    let message = format!(
        "From: <sender@remote.example>\r\nTo: {}\r\nSubject: direct\r\n\r\n{body}",
        to.join(", ")
    );
    let reply = c
        .send_mail("sender@remote.example", to, message.as_bytes())
        .unwrap();
    c.quit().unwrap();
    reply.queue_id().unwrap().to_owned()
}

/// How long delivery through the queue may take.
const WAIT: Duration = Duration::from_secs(15);

fn line_of<'a>(lines: &'a [String], event: &str, id: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| log_value(l, "event") == Some(event) && log_value(l, "id") == Some(id))
        .collect()
}

fn small_local_mail_is_delivered_before_the_250(binary: Binary) {
    let data = DataDir::new(&format!("direct-small-{}", binary.name())).unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let id = send(&server, &[ALICE, BOB], "hello\r\n");
    // No waiting: the 250 came after the Maildir files were durable.
    let alice = data.delivered(ALICE).unwrap();
    assert_eq!(alice.len(), 1, "in alice's new/ when the 250 arrived");
    assert_eq!(data.delivered(BOB).unwrap().len(), 1);
    let text = std::fs::read_to_string(&alice[0]).unwrap();
    assert!(text.starts_with("Return-Path: <sender@remote.example>\nDelivered-To: alice@example.test\nReceived: from client.example"), "{text}");
    assert!(text.ends_with("Subject: direct\n\nhello\n"), "{text}");
    assert!(
        data.queued_messages().unwrap().is_empty() && data.incoming_files().unwrap().is_empty()
    );
    server.wait_until("the log has the dequeue line", WAIT, || {
        !server.events("dequeue").is_empty()
    });
    let lines = server.log_lines();
    let q = line_of(&lines, "queued", &id);
    assert_eq!(q.len(), 1, "{lines:?}");
    assert_eq!(log_value(q[0], "direct"), Some("yes"));
    let d = line_of(&lines, "deliver", &id);
    assert_eq!(d.len(), 2, "{lines:?}");
    assert!(d.iter().all(|l| log_value(l, "direct") == Some("yes")));
    assert_eq!(line_of(&lines, "dequeue", &id).len(), 1);
}

fn a_large_message_takes_the_queue(binary: Binary) {
    let data = DataDir::new(&format!("direct-large-{}", binary.name())).unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let body = "x".repeat(998) + "\r\n";
    let id = send(&server, &[ALICE], &body.repeat(300)); // 300 KB: several chunks
    server.wait_until("alice has it", WAIT, || {
        data.delivered(ALICE).unwrap().len() == 1
    });
    let text = std::fs::read_to_string(&data.delivered(ALICE).unwrap()[0]).unwrap();
    assert_eq!(text.matches(&"x".repeat(998)).count(), 300);
    server.wait_queue_empty(Duration::from_secs(15));
    let lines = server.log_lines();
    let q = line_of(&lines, "queued", &id);
    assert_eq!(q.len(), 1, "{lines:?}");
    assert_eq!(log_value(q[0], "direct"), None, "through the queue");
}

fn an_unwritable_maildir_queues_the_rest(binary: Binary) {
    let data = DataDir::new(&format!("direct-fallback-{}", binary.name())).unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    // bob's Maildir cannot be created: a file stands where it would go.
    let bob_dir = data
        .path()
        .join("mailboxes")
        .join("example.test")
        .join("bob");
    std::fs::create_dir_all(bob_dir.parent().unwrap()).unwrap();
    std::fs::write(&bob_dir, "in the way").unwrap();
    let id = send(&server, &[ALICE, BOB], "for both\r\n");
    assert_eq!(
        data.delivered(ALICE).unwrap().len(),
        1,
        "alice got it directly"
    );
    assert_eq!(
        data.queued_messages().unwrap(),
        std::slice::from_ref(&id),
        "queued for bob"
    );
    let progress = std::fs::read_to_string(data.queue_dir().join(format!("{id}.done"))).unwrap();
    assert!(
        progress.lines().any(|l| l == "0"),
        "alice marked done: {progress:?}"
    );
    // The log reaches the test through a pipe: wait for the line rather
    // than race the 250 that followed it.
    let defers = server.wait_events("defer", 1);
    let defer = line_of(&defers, "defer", &id);
    assert!(!defer.is_empty(), "{defers:?}");
    assert_eq!(log_value(defer[0], "to"), Some("<bob@example.test>"));

    // The administrator clears the way and flushes the queue.
    std::fs::remove_file(&bob_dir).unwrap();
    let out = Command::new(binary.path().unwrap())
        .args(["queue", "flush", "--config"])
        .arg(data.path().join("hato.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    server.wait_until("bob has it", WAIT, || {
        data.delivered(BOB).unwrap().len() == 1
    });
    server.wait_queue_empty(Duration::from_secs(15));
    assert_eq!(
        data.delivered(ALICE).unwrap().len(),
        1,
        "no second copy for alice"
    );
    // The file name alone would hide a second delivery (it is the same
    // name): the log must show alice's delivery once, bob's once.
    let lines = server.wait_events("deliver", 2);
    let delivers = line_of(&lines, "deliver", &id);
    let to = |who: &str| {
        delivers
            .iter()
            .filter(|l| log_value(l, "to") == Some(who))
            .count()
    };
    assert_eq!(
        (to("<alice@example.test>"), to("<bob@example.test>")),
        (1, 1),
        "{delivers:?}"
    );
}

hato_spec_tests::both_binaries!(
    small_local_mail_is_delivered_before_the_250,
    a_large_message_takes_the_queue,
    an_unwritable_maildir_queues_the_rest,
);
